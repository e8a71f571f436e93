//! `cairn user`: API tokens, credentials that act as a named user (whose bucket grants
//! then apply) for clients that share one certificate or sit behind a gateway.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use cairn_client::Client;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Make an API token acting as USER and print it (once: only its hash is kept).
    /// Give it to a client as a token file (`--token-file`, or `token_file` in the
    /// cluster file); grant USER access with `cairn bucket grant`.
    Add {
        user: String,
        /// Write the token to this new file (mode 0600) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List API tokens: id, user, when made.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Revoke the API token ID: calls carrying it are refused from now on.
    Revoke { id: String },
}

pub async fn run(client: &Client, command: &UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add { user, out } => {
            // The file first: no token is made that cannot be handed over.
            let file = match out {
                Some(path) => Some((path, create_private(path)?)),
                None => None,
            };
            let token = match client.add_token(user).await {
                Ok(token) => token,
                Err(e) => {
                    if let Some((path, _)) = file {
                        let _ = std::fs::remove_file(path);
                    }
                    return Err(e.into());
                }
            };
            match file {
                Some((path, mut file)) => {
                    writeln!(file, "{}", token.reveal())
                        .with_context(|| format!("write the token file {path:?}"))?;
                    eprintln!(
                        "API token {} for user {user:?} written to {path:?}",
                        token.id()
                    );
                }
                None => {
                    eprintln!(
                        "API token {} for user {user:?} (shown once; store it in a file \
                         readable only by its user):",
                        token.id()
                    );
                    println!("{}", token.reveal());
                }
            }
            Ok(())
        }
        UserCommand::Ls { json } => {
            let tokens = client.list_tokens().await?;
            if *json {
                let v: Vec<_> = tokens
                    .iter()
                    .map(|(id, user, created)| {
                        serde_json::json!({"id": id, "user": user, "created": created})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{:<18} {:<24} CREATED", "ID", "USER");
                for (id, user, created) in tokens {
                    println!("{id:<18} {user:<24} {}", super::rfc3339(created));
                }
            }
            Ok(())
        }
        UserCommand::Revoke { id } => {
            client.revoke_token(id).await?;
            println!("API token {id} revoked");
            Ok(())
        }
    }
}

/// A new file readable and writable by its owner only.
fn create_private(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create the token file {path:?}"))
}

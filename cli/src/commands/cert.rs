//! `cairn cert init` and `cairn cert issue`.

use std::path::PathBuf;

use cairn_net::certs;
use cairn_net::Role;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Create the cluster CA: DIR/ca.pem and DIR/ca.key (keep the key private).
    Init {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue DIR/NAME.pem and DIR/NAME.key for a metadata replica (meta-ID), a storage node
    /// (node-ID, and gateway-ID with role gateway for its object API) or a client.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        /// What the certificate allows its holder to be.
        #[arg(long, value_parser = role_parser())]
        role: Role,
        #[arg(long)]
        name: String,
        /// Days of validity.
        #[arg(long, default_value_t = certs::DEFAULT_DAYS)]
        days: i64,
    },
}

/// `--role`: one of the roles' names, listed in `--help` and in errors.
fn role_parser() -> impl clap::builder::TypedValueParser<Value = Role> {
    use clap::builder::{PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(Role::ALL.map(Role::name))
        .map(|name| name.parse::<Role>().expect("a possible value names a role"))
}

pub fn run(command: CertCommand) -> anyhow::Result<()> {
    match command {
        CertCommand::Init { dir } => {
            certs::init_ca(&dir)?;
            println!(
                "created {}/ca.pem and {}/ca.key",
                dir.display(),
                dir.display()
            );
        }
        CertCommand::Issue {
            dir,
            role,
            name,
            days,
        } => {
            let files = certs::issue(&dir, role, &name, certs::Validity::days(days))?;
            println!(
                "issued {} and {} (role {role}, valid {days} days)",
                files.cert().display(),
                files.key().display()
            );
        }
    }
    Ok(())
}

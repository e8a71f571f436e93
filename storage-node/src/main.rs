//! `cairn-node`: parses flags and the config file, sets up tracing, runs the node until
//! SIGINT or SIGTERM. Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use cairn_storage_node::{ConfigOverrides, NodeConfig};
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Cairn storage node: stores shards on a local disk and serves them over gRPC.
#[derive(Debug, Parser)]
#[command(name = "cairn-node", version)]
struct Cli {
    /// TOML config file; flags and CAIRN_NODE_* variables override its keys.
    #[arg(long, env = "CAIRN_NODE_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: ConfigOverrides,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match NodeConfig::load(cli.config.as_deref(), cli.overrides) {
        Ok(cfg) => cfg,
        Err(e) => return fatal(&anyhow::Error::new(e)),
    };
    cairn_common::telemetry::init_tracing();
    cairn_common::telemetry::abort_on_panic();
    if let Err(e) = cairn_common::failpoint::configure_from_env() {
        return fatal(&anyhow::anyhow!(e));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fatal(&anyhow::Error::new(e).context("start the tokio runtime")),
    };
    runtime.block_on(serve(cfg))
}

async fn serve(cfg: NodeConfig) -> ExitCode {
    let shutdown = CancellationToken::new();
    let (mut interrupt, mut terminate) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            return fatal(&anyhow::Error::new(e).context("install signal handlers"))
        }
    };
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal = name, "shutting down");
        cairn_common::systemd::notify_stopping();
        on_signal.cancel();
    });
    match cairn_storage_node::run(cfg, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fatal(&e),
    }
}

/// One clear line on stderr, then a non-zero exit.
fn fatal(e: &anyhow::Error) -> ExitCode {
    eprintln!("cairn-node: {}", one_line(&format!("{e:#}")));
    ExitCode::FAILURE
}

/// Joins a multi-line message (such as a TOML parse error with its source excerpt) into
/// one line, dropping the excerpt's `|` and `^` lines.
fn one_line(message: &str) -> String {
    let excerpt = |line: &str| {
        let rest = line
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start();
        rest.starts_with('|')
    };
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !excerpt(line))
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_errors_become_one_line() {
        let toml = "parse config \"x\": TOML parse error at line 5, column 1\n  |\n5 | bogus=1\n  | ^^^^^\nunknown field `bogus`\n";
        assert_eq!(
            one_line(toml),
            "parse config \"x\": TOML parse error at line 5, column 1: unknown field `bogus`"
        );
        assert_eq!(one_line("plain"), "plain");
    }
}

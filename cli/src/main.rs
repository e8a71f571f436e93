//! `cairn`: the command-line client. Parses arguments and hands off to `commands`.

mod commands;

use clap::Parser;

fn main() {
    let args = commands::Cli::parse();
    if std::env::var_os("CAIRN_LOG").is_some() {
        cairn_common::telemetry::init_tracing();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn: start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(commands::run(args)) {
        eprintln!("cairn: {e:#}");
        std::process::exit(1);
    }
}

//! The `pipemedic` binary: parse the command line, start logging, run the
//! command, exit with its code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use pipemedic::cli::{self, Cli, Exit};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo talks to people on stdout; keep its log to warnings.
    let level = match cli.command {
        cli::Command::Demo { .. } => "warn",
        _ => "info",
    };
    pipemedic::telemetry::init(cli.log_format, level);
    let exit = cli::run(cli, pipemedic::config::process_env()).await;
    match &exit {
        Exit::Failure(e) => eprintln!("error: {e:#}"),
        Exit::BadInput(msg) => eprintln!("error: {}", msg.trim_end()),
        Exit::Ok | Exit::Anomalous => {}
    }
    exit.code()
}

//! The `probewatch` binary: command-line parsing and output only. Every
//! command is a few lines over the library crates under `crates/`
//! (`daemon`, `analysis`, `source`, `report`, `view`); the modules here
//! hold the clap types ([`cli`]) and each command's printing.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

mod cli;
mod extract;
mod history;
mod probe;
mod serve;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed stdout (`probewatch probe … | head`) is not an error.
            let broken_pipe = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) || e.chain().any(|c| {
                c.downcast_ref::<serde_json::Error>()
                    .is_some_and(|j| j.is_io())
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            eprintln!("probewatch: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .context("configuring the thread pool")?;
    }
    match cli.command {
        Command::Watch(args) => serve::watch(args),
        Command::Demo(args) => serve::demo(args),
        Command::CheckConfig { file } => serve::check_config(&file),
        Command::Extract(args) => extract::run(&args, cli.threads.unwrap_or(0)),
        Command::Probe(args) => probe::run(&args),
        Command::Report(args) => history::report(args),
        Command::ExportOpenmetrics(args) => history::export(args),
    }
}

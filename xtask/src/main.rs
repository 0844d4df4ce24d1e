//! Developer tooling of probewatch, kept out of the shipped binary:
//! `cargo xtask bench` (the benchmarks, each case in its own process) and
//! `cargo xtask soak` (the real daemon under checkpoints and scrapes).
//!
//! Both drive the real `probewatch` binary as a child process with the
//! harness's driver (`crates/harness`, shared with the integration tests);
//! it is built in release mode first (`cargo build --release --bin
//! probewatch`), or taken from `--probewatch` / `$PROBEWATCH_BIN`. Nothing
//! here is linked into the user's binary: the harness and its HTTP client
//! (`ureq`) are dependencies of this crate and dev-dependencies of the root
//! package only.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod bench_daemon;
mod bench_live;
mod bench_report;
mod soak;

#[derive(Parser)]
#[command(
    name = "xtask",
    about = "probewatch developer tooling: benchmarks and soak"
)]
struct Cli {
    /// Worker threads for numeric work (default: all cores), also passed
    /// to the cases' child processes.
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// The probewatch binary the benchmarks and the soak drive (default:
    /// $PROBEWATCH_BIN, else `target/release/probewatch`, built first).
    #[arg(long, global = true)]
    probewatch: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmarks: the shared PS-role dump, synthetic layers, the daemon and
    /// a real fine-tuning run, each case in its own process so peak memory
    /// is its own.
    Bench {
        /// Which cases (default: all).
        #[arg(long, value_delimiter = ',')]
        cases: Option<Vec<String>>,
        /// Smaller synthetic layers (2,000 points) for a quick look.
        #[arg(long)]
        quick: bool,
        /// Points of the synthetic layers (default 20,000; 2,000 with --quick).
        #[arg(long)]
        points: Option<usize>,
        /// Kill a case that runs longer than this (seconds).
        #[arg(long, default_value_t = 600)]
        case_timeout: u64,
        /// Run one case in this process and print its JSON line (internal).
        #[arg(long, hide = true)]
        case: Option<String>,
        /// Folder holding the shared dumps.
        #[arg(long, default_value = "../shared/data/dumps")]
        data: PathBuf,
    },
    /// Soak and load: the real daemon (a child process) fed a checkpoint
    /// every few hundred ms while clients scrape /metrics and /report; fails
    /// on a lost checkpoint, growing memory or descriptors, or a failed
    /// request.
    Soak(soak::SoakArgs),
}

/// The probewatch binary the child processes run, chosen once.
static PROBEWATCH: OnceLock<PathBuf> = OnceLock::new();

/// The binary `--probewatch` named (or the first use resolved), if any:
/// passed on to the benchmark cases' child processes.
pub(crate) fn chosen_probewatch() -> Option<&'static PathBuf> {
    PROBEWATCH.get()
}

/// The `probewatch` binary to drive: `--probewatch`, `$PROBEWATCH_BIN`, or
/// the release build beside this tool (built on first use).
pub(crate) fn probewatch_exe() -> Result<PathBuf> {
    if let Some(p) = PROBEWATCH.get() {
        return Ok(p.clone());
    }
    let path = if let Some(p) = std::env::var_os("PROBEWATCH_BIN") {
        PathBuf::from(p)
    } else {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--release", "--bin", "probewatch"])
            .status()
            .context("running cargo build --release --bin probewatch")?;
        if !status.success() {
            bail!("cargo build --release --bin probewatch failed ({status})");
        }
        let here = std::env::current_exe().context("locating xtask")?;
        here.with_file_name(format!("probewatch{}", std::env::consts::EXE_SUFFIX))
    };
    if !path.is_file() {
        bail!("{}: no probewatch binary there", path.display());
    }
    Ok(PROBEWATCH.get_or_init(|| path).clone())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
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
    if let Some(p) = cli.probewatch {
        PROBEWATCH.get_or_init(|| p);
    }
    match cli.command {
        Command::Bench {
            cases,
            quick,
            points,
            case_timeout,
            case,
            data,
        } => {
            if let Some(c) = case {
                let line = bench::run_case(&c, quick, &data, points)?;
                println!("{}", serde_json::to_string(&line)?);
                return Ok(());
            }
            let exe = std::env::current_exe().context("locating the xtask binary")?;
            let names: Vec<String> =
                cases.unwrap_or_else(|| bench::CASES.iter().map(|s| s.to_string()).collect());
            let mut out = std::io::stdout().lock();
            bench::print_header(&mut out, quick, cli.threads)?;
            for name in &names {
                let r = bench::run_in_child(
                    &exe,
                    name,
                    quick,
                    &data,
                    cli.threads,
                    points,
                    std::time::Duration::from_secs(case_timeout),
                )
                .with_context(|| format!("benchmark case {name}"))?;
                bench::print_row(&mut out, &r)?;
            }
            Ok(())
        }
        Command::Soak(args) => soak::run(&args),
    }
}

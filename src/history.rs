//! The history commands: `probewatch report` (a run's HTML report from the
//! store) and `probewatch export-openmetrics` (the stored history for
//! `promtool tsdb create-blocks-from openmetrics`). Rendering is the `report`
//! crate's, the backfill the `view` crate's; this module writes files.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::cli::{ExportArgs, ReportArgs, TimestampsArg};

/// `probewatch export-openmetrics`.
pub(crate) fn export(args: ExportArgs) -> Result<()> {
    let ExportArgs {
        store,
        run,
        timestamps,
        label_pairs,
        out,
    } = args;
    let options = view::export::ExportOptions {
        run,
        label_pairs,
        timestamps: match timestamps {
            TimestampsArg::Checkpoint => view::export::Timestamps::Checkpoint,
            TimestampsArg::Analysis => view::export::Timestamps::Analysis,
        },
    };
    let exported = view::export::export_store(&store, &options)?;
    match &out {
        Some(path) => std::fs::write(path, &exported.text)
            .with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout()
            .lock()
            .write_all(exported.text.as_bytes())
            .context("writing to stdout")?,
    }
    for (run, n) in &exported.runs {
        eprintln!("probewatch: exported run {run}: {n} checkpoints");
    }
    Ok(())
}

/// `probewatch report`.
pub(crate) fn report(args: ReportArgs) -> Result<()> {
    report_to(&args.store, args.run, args.task, args.layer, args.out)
}

/// The run's page into a file, or the list of runs.
fn report_to(
    store: &std::path::Path,
    run: Option<String>,
    task: Option<String>,
    layer: Option<usize>,
    out: Option<PathBuf>,
) -> Result<()> {
    use report::{ReportOptions, render_from_store, run_names};
    let (Some(run), Some(out)) = (run, out) else {
        let names = run_names(store)?;
        anyhow::ensure!(
            !names.is_empty(),
            "{}: the store holds no run yet",
            store.display()
        );
        println!("runs in {}:", store.display());
        for n in names {
            println!("  {n}");
        }
        anyhow::bail!("name a run with --run and an output file with --out");
    };
    let opts = ReportOptions {
        task,
        layer,
        refresh_seconds: None,
        links: false,
    };
    let t = std::time::Instant::now();
    let html = render_from_store(store, &run, &opts)?;
    let tmp = out.with_extension("html.tmp");
    std::fs::write(&tmp, &html).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &out).with_context(|| format!("renaming into {}", out.display()))?;
    eprintln!(
        "wrote {}: run {run}, {} KiB, in {:.2} s",
        out.display(),
        html.len().div_ceil(1024),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

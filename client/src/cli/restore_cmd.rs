//! `strata restore`: arguments, progress and summary.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use strata_client::backup::progress::Progress;
use strata_client::restore::{self, Overwrite, RestoreOptions};

use super::Ctx;
use super::progress_ui::{ProgressUi, human_bytes};

/// Overwrite policy as a command-line value.
#[derive(Clone, Copy, ValueEnum)]
pub enum OverwriteArg {
    /// Replace existing files.
    Always,
    /// Replace existing files unless their size and modification time match.
    IfChanged,
    /// Never replace existing files.
    Never,
}

/// Arguments of `strata restore`.
#[derive(Args)]
pub struct RestoreArgs {
    /// Snapshot id (a unique prefix) or `latest`.
    snapshot: String,
    /// Directory to restore into; the snapshot's absolute paths are recreated below it.
    #[arg(long)]
    target: PathBuf,
    /// Restore only paths matching this glob (and what is below them). Repeatable.
    #[arg(long = "include", value_name = "PATTERN")]
    includes: Vec<String>,
    /// Skip paths matching this glob. Repeatable.
    #[arg(long = "exclude", value_name = "PATTERN")]
    excludes: Vec<String>,
    /// What to do with files that already exist.
    #[arg(long, value_enum, default_value = "always")]
    overwrite: OverwriteArg,
    /// Chunk downloads in flight (at most 64 MiB of chunk data whatever this says).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

/// Runs `strata restore`.
pub async fn run(ctx: &Ctx, a: RestoreArgs) -> anyhow::Result<i32> {
    let repo = Arc::new(ctx.repo().await?);
    let snapshot = repo.find_snapshot(&a.snapshot).await?;
    let overwrite = match a.overwrite {
        OverwriteArg::Always => Overwrite::Always,
        OverwriteArg::IfChanged => Overwrite::IfChanged,
        OverwriteArg::Never => Overwrite::Never,
    };
    let opts = RestoreOptions {
        target: a.target.clone(),
        includes: a.includes,
        excludes: a.excludes,
        overwrite,
        concurrency: a.concurrency.max(1),
    };
    let progress = Arc::new(Progress::default());
    let ui = ProgressUi::start(progress.clone(), "restore", ctx.json);
    let started = std::time::Instant::now();
    let stats = restore::run(repo, &snapshot, &opts, progress).await;
    ui.finish();
    let stats = stats?;
    let secs = started.elapsed().as_secs_f64();
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({ "message_type": "summary", "snapshot_id": snapshot.record.id.to_hex(), "target": a.target, "stats": stats, "seconds": secs })
        );
    } else {
        println!(
            "restored snapshot {} to {}: {} files ({}), {} dirs, {} symlinks, {} hard links, {} existing files kept, in {secs:.1} s",
            &snapshot.record.id.to_hex()[..8],
            a.target.display(),
            stats.files,
            human_bytes(stats.bytes),
            stats.dirs,
            stats.symlinks,
            stats.hardlinks,
            stats.skipped
        );
    }
    Ok(0)
}

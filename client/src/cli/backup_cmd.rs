//! `strata backup`: arguments, progress and the final summary.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use strata_client::backup::filter::Patterns;
use strata_client::backup::progress::Progress;
use strata_client::backup::{self, BackupOptions, ParentChoice};
use strata_client::error::exit;

use super::Ctx;
use super::progress_ui::{ProgressUi, human_bytes};

/// Arguments of `strata backup`.
#[derive(Args)]
pub struct BackupArgs {
    /// Files and directories to back up.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Skip paths matching this glob (`*.tmp`, `/home/*/.cache`). Repeatable.
    #[arg(long = "exclude", value_name = "PATTERN")]
    excludes: Vec<String>,
    /// Read exclude patterns from a file, one per line. Repeatable.
    #[arg(long = "exclude-file", value_name = "FILE")]
    exclude_files: Vec<PathBuf>,
    /// Do not cross into other file systems below the given paths.
    #[arg(long, short = 'x')]
    one_file_system: bool,
    /// Tag the snapshot. Repeatable.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Host name to record [default: this machine's name].
    #[arg(long, env = "STRATA_HOST")]
    host: Option<String>,
    /// Compare against this snapshot instead of the latest one of the same host and paths.
    #[arg(long, conflicts_with = "force")]
    parent: Option<String>,
    /// Read every file, even unchanged ones.
    #[arg(long)]
    force: bool,
    /// Uploads in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Upload at most this many bytes per second (e.g. 5MiB), to leave bandwidth for others.
    #[arg(long, value_parser = strata_proto::units::parse_size)]
    limit_upload: Option<u64>,
    /// Chunk bytes read ahead of the uploads at most (e.g. 64MiB); the client's memory grows with it.
    #[arg(long, default_value = "128MiB", value_parser = strata_proto::units::parse_size)]
    upload_buffer: u64,
}

/// This machine's host name.
pub fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into())
}

/// Runs `strata backup`.
pub async fn run(ctx: &Ctx, a: BackupArgs) -> anyhow::Result<i32> {
    let mut excludes = a.excludes;
    for f in &a.exclude_files {
        excludes.extend(Patterns::from_file(f)?);
    }
    Patterns::new(&excludes)?;
    let mut paths = Vec::new();
    for p in &a.paths {
        let abs = std::path::absolute(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        std::fs::symlink_metadata(&abs).map_err(|e| anyhow::anyhow!("cannot back up {}: {e}", abs.display()))?;
        paths.push(abs);
    }
    anyhow::ensure!(a.upload_buffer >= 1 << 20, "--upload-buffer must be at least 1MiB (got {} bytes)", a.upload_buffer);
    let upload_budget_bytes = usize::try_from(a.upload_buffer).unwrap_or(usize::MAX);
    let repo = Arc::new(ctx.repo().await?);
    let opts = BackupOptions {
        paths,
        excludes,
        one_file_system: a.one_file_system,
        tags: a.tags,
        host: a.host.unwrap_or_else(hostname),
        parent: if a.force { ParentChoice::None } else { a.parent.map(ParentChoice::Id).unwrap_or(ParentChoice::Latest) },
        concurrency: a.concurrency.max(1),
        upload_budget_bytes,
        limit_upload_bytes_per_sec: a.limit_upload,
    };
    let progress = Arc::new(Progress::default());
    let ui = ProgressUi::start(progress.clone(), "backup", ctx.json);
    let started = std::time::Instant::now();
    let outcome = backup::run(repo.clone(), opts, progress).await;
    ui.finish();
    let outcome = outcome?;
    let s = &outcome.stats;
    let secs = started.elapsed().as_secs_f64();
    let code = if s.files_failed > 0 || s.files_changed_during_read > 0 { exit::PARTIAL } else { exit::OK };
    if ctx.json {
        for w in &outcome.warnings {
            println!("{}", serde_json::json!({ "message_type": "error", "message": w }));
        }
        let total_chunks = s.chunks_uploaded + s.chunks_deduplicated;
        println!(
            "{}",
            serde_json::json!({
                "message_type": "summary",
                "snapshot_id": outcome.snapshot.to_hex(),
                "parent": outcome.parent.map(|p| p.to_hex()),
                "files_new": s.files_new,
                "files_changed": s.files_changed,
                "files_unmodified": s.files_unmodified,
                "files_failed": s.files_failed,
                "files_changed_during_read": s.files_changed_during_read,
                "dirs": s.dirs,
                "bytes_read": s.bytes_read,
                "bytes_total": s.bytes_total,
                "bytes_uploaded": s.bytes_uploaded,
                "blob_bytes_uploaded": s.blob_bytes_uploaded,
                "chunks_uploaded": s.chunks_uploaded,
                "chunks_deduplicated": s.chunks_deduplicated,
                "dedup_ratio": if total_chunks > 0 { s.chunks_deduplicated as f64 / total_chunks as f64 } else { 0.0 },
                "seconds": secs,
            })
        );
    } else {
        for w in &outcome.warnings {
            eprintln!("warning: {w}");
        }
        println!(
            "Files:      {} new, {} changed, {} unmodified, {} failed",
            s.files_new, s.files_changed, s.files_unmodified, s.files_failed
        );
        println!("Dirs:       {}", s.dirs);
        println!("Read:       {} of {} in the snapshot", human_bytes(s.bytes_read), human_bytes(s.bytes_total));
        println!(
            "Uploaded:   {} in {} new chunks ({} stored after compression and encryption); {} chunks already stored",
            human_bytes(s.bytes_uploaded),
            s.chunks_uploaded,
            human_bytes(s.blob_bytes_uploaded),
            s.chunks_deduplicated
        );
        println!("Duration:   {secs:.1} s");
        println!("snapshot {} saved", outcome.snapshot.to_hex());
        if code == exit::PARTIAL {
            eprintln!(
                "warning: {} files could not be read and {} changed while being read (see above)",
                s.files_failed, s.files_changed_during_read
            );
        }
    }
    Ok(code)
}

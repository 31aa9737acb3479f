//! `strata backup`: read, deduplicate, encrypt and upload, then commit a snapshot.
//!
//! Stages overlap: the walker reads and chunks on a blocking thread while the uploader queries and stores
//! chunks; a pre-scan counts files and bytes meanwhile so progress can show an ETA. The snapshot is committed
//! only after every chunk it references is acknowledged, inside an upload session that is renewed while the
//! backup runs (garbage collection never frees what an open session may use). An interrupted backup leaves
//! its uploaded chunks in place; running it again uploads only what is still missing.

pub mod filter;
mod parent_trees;
pub mod progress;
pub mod rate;
pub mod upload;
pub mod walk;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use strata_proto::{ChunkId, SnapshotId, SnapshotRecord};

use self::filter::Patterns;
use self::progress::Progress;
use self::upload::Uploader;
use self::walk::Walker;
use crate::repo::summary::{BackupStats, SnapshotSummary};
use crate::repo::{RepoError, Repository, Snapshot};

/// Which snapshot a backup compares against to skip unchanged files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentChoice {
    /// The latest snapshot of the same host and paths.
    Latest,
    /// None: read every file.
    None,
    /// This one.
    Id(String),
}

/// What to back up and how.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Absolute paths.
    pub paths: Vec<PathBuf>,
    /// Exclude patterns.
    pub excludes: Vec<String>,
    /// Stay on the file system of each path.
    pub one_file_system: bool,
    /// Tags of the snapshot.
    pub tags: Vec<String>,
    /// Host name recorded.
    pub host: String,
    /// Parent selection.
    pub parent: ParentChoice,
    /// Uploads in flight.
    pub concurrency: usize,
    /// Bytes of chunks that may wait for upload.
    pub upload_budget_bytes: usize,
    /// Most blob bytes per second to upload (`None`: unlimited).
    pub limit_upload_bytes_per_sec: Option<u64>,
}

/// The result of a backup.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    /// The new snapshot.
    pub snapshot: SnapshotId,
    /// Its parent, if one was used.
    pub parent: Option<SnapshotId>,
    /// Counts.
    pub stats: BackupStats,
    /// Files skipped or read while changing.
    pub warnings: Vec<String>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn same_paths(a: &[String], b: &[String]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

async fn choose_parent(repo: &Repository, opts: &BackupOptions, paths: &[String]) -> Result<Option<Snapshot>, RepoError> {
    match &opts.parent {
        ParentChoice::None => Ok(None),
        ParentChoice::Id(spec) => repo.find_snapshot(spec).await.map(Some),
        ParentChoice::Latest => {
            Ok(repo.snapshots().await?.into_iter().rev().find(|s| s.summary.host == opts.host && same_paths(&s.summary.paths, paths)))
        }
    }
}

/// Counts files and bytes under the targets for progress totals (stat only; errors ignored).
fn prescan(targets: Vec<PathBuf>, excludes: Patterns, progress: Arc<Progress>) {
    let mut stack = targets;
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if meta.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|c| !excludes.matches(c)));
            }
        } else if meta.is_file() {
            Progress::add(&progress.files_total, 1);
            Progress::add(&progress.bytes_total, meta.len());
        }
    }
    progress.totals_final.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Keeps the upload session alive until dropped.
struct Renewer(tokio::task::JoinHandle<()>);

impl Drop for Renewer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs a backup and commits its snapshot.
pub async fn run(repo: Arc<Repository>, opts: BackupOptions, progress: Arc<Progress>) -> Result<BackupOutcome, RepoError> {
    let excludes = Patterns::new(&opts.excludes).map_err(|e| RepoError::Io(e.to_string()))?;
    let paths: Vec<String> = opts.paths.iter().map(|p| p.display().to_string()).collect();
    let started_ms = now_ms();
    // The session opens before the parent is chosen: unchanged files reuse the parent's chunks without asking
    // the cluster, and garbage collection protects what a backup may use only from sessions already open.
    let (session, lease_ms) = repo.client().open_session().await?;
    let renewer = {
        let client = repo.client().clone();
        Renewer(tokio::spawn(async move {
            let period = Duration::from_millis((lease_ms / 4).max(1000));
            loop {
                tokio::time::sleep(period).await;
                if let Err(e) = client.renew_session(session).await {
                    tracing::warn!(error = %e, "could not renew the upload session");
                }
            }
        }))
    };
    let result = async {
        let parent = choose_parent(&repo, &opts, &paths).await?;
        let parent_root = match &parent {
            Some(p) => Some(repo.read_tree(&p.summary.root).await?),
            None => None,
        };
        upload_and_commit(&repo, &opts, &paths, started_ms, parent.as_ref(), parent_root, excludes, progress, session).await
    }
    .await;
    drop(renewer);
    if result.is_err() {
        // Best effort: a closed session stops fencing garbage collection at once instead of at lease expiry.
        let _ = repo.client().abort_session(session).await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn upload_and_commit(
    repo: &Arc<Repository>,
    opts: &BackupOptions,
    paths: &[String],
    started_ms: u64,
    parent: Option<&Snapshot>,
    parent_root: Option<crate::tree::Tree>,
    excludes: Patterns,
    progress: Arc<Progress>,
    session: strata_proto::SessionId,
) -> Result<BackupOutcome, RepoError> {
    {
        let (targets, excludes, progress) = (opts.paths.clone(), excludes.clone(), progress.clone());
        std::thread::spawn(move || prescan(targets, excludes, progress));
    }
    let limit = opts.limit_upload_bytes_per_sec.map(|r| Arc::new(rate::RateLimit::new(r)));
    let uploader = Arc::new(Uploader::start(repo.clone(), progress.clone(), opts.concurrency, opts.upload_budget_bytes, limit));
    let walker =
        Walker::new(repo.clone(), tokio::runtime::Handle::current(), uploader.clone(), excludes, opts.one_file_system, progress.clone());
    let targets = opts.paths.clone();
    let walked = tokio::task::spawn_blocking(move || walker.run(&targets, parent_root))
        .await
        .map_err(|e| RepoError::Io(format!("the file walker failed: {e}")));
    let uploader = Arc::try_unwrap(uploader).map_err(|_| RepoError::Io("upload stage still shared".into()))?;
    // Always drain the uploader, so an upload error is reported rather than a closed channel.
    let uploaded = uploader.finish().await;
    let walked = walked??;
    uploaded?;

    let (refs, ref_digests) = store_reference_lists(repo, &walked.refs, opts, &progress).await?;
    let mut stats = walked.stats;
    stats.chunks_uploaded = Progress::get(&progress.chunks_uploaded);
    stats.bytes_uploaded = Progress::get(&progress.bytes_uploaded);
    stats.blob_bytes_uploaded = Progress::get(&progress.blob_bytes_uploaded);
    stats.chunks_deduplicated = Progress::get(&progress.chunks_deduplicated);
    let summary = SnapshotSummary {
        host: opts.host.clone(),
        paths: paths.to_vec(),
        tags: opts.tags.clone(),
        time_ms: started_ms,
        root: walked.root,
        parent: parent.map(|p| p.record.id),
        stats: stats.clone(),
    };
    let id = Repository::new_snapshot_id();
    let record = SnapshotRecord { id, time_ms: started_ms, committed_ms: 0, summary: summary.seal(repo.master(), &id), refs, ref_digests };
    repo.client().commit_snapshot(session, record).await?;
    Ok(BackupOutcome { snapshot: id, parent: parent.map(|p| p.record.id), stats, warnings: walked.warnings })
}

/// Stores the snapshot's reference lists (plaintext sorted id groups); returns their blob ids and the digests
/// of their contents, which the commit records so that nobody can swap a list the cluster collects garbage by.
async fn store_reference_lists(
    repo: &Arc<Repository>,
    refs: &HashSet<ChunkId>,
    opts: &BackupOptions,
    progress: &Arc<Progress>,
) -> Result<(Vec<ChunkId>, Vec<[u8; 32]>), RepoError> {
    let mut sorted: Vec<ChunkId> = refs.iter().copied().collect();
    sorted.sort();
    let uploader = Uploader::start(repo.clone(), progress.clone(), opts.concurrency, opts.upload_budget_bytes, None);
    let (mut ids, mut digests) = (Vec::new(), Vec::new());
    for group in strata_proto::reflist::groups(&sorted) {
        let bytes = strata_proto::reflist::encode(group);
        let id = repo.reference_list_id(&bytes);
        ids.push(id);
        digests.push(strata_proto::reflist::digest(&bytes));
        uploader.send(id, bytes, true).await?;
    }
    uploader.finish().await?;
    Ok((ids, digests))
}

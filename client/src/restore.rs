//! `strata restore`: recreate a snapshot's files below a target directory, verified chunk by chunk.
//!
//! The snapshot's trees are read first into a plan; then directories, links and empty files are created;
//! then file contents are fetched with bounded concurrency (at most `concurrency` chunks and
//! [`IN_FLIGHT_BYTES`] of chunk data at a time) and written at their offsets. All-zero chunks of the chunker's
//! largest size (what a run of zeros is cut into) are recognised by id and never fetched; zero blocks inside
//! any chunk are not written, so sparse files stay sparse. Hard links are linked again, and modes, times and (as root) owners are applied last,
//! directories deepest first. Nothing is written outside the target: names were checked when trees were
//! decoded, and no existing symlink is followed.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use strata_proto::ChunkId;

use crate::backup::filter::Patterns;
use crate::backup::progress::Progress;
use crate::repo::{RepoError, Repository, Snapshot};
use crate::tree::{Node, NodeKind};

/// What to do with files that already exist in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Replace them.
    Always,
    /// Replace them unless size and modification time already match.
    IfChanged,
    /// Leave them alone.
    Never,
}

/// What to restore and where.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Directory to restore into (created if needed).
    pub target: PathBuf,
    /// Restore only paths matching these (empty: everything).
    pub includes: Vec<String>,
    /// Skip paths matching these.
    pub excludes: Vec<String>,
    /// Existing files.
    pub overwrite: Overwrite,
    /// Chunk fetches in flight (at most [`IN_FLIGHT_BYTES`] of chunk data whatever this says).
    pub concurrency: usize,
}

/// Counts of a restore.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RestoreStats {
    /// Regular files written.
    pub files: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symbolic links created.
    pub symlinks: u64,
    /// Hard links created.
    pub hardlinks: u64,
    /// Bytes of file content restored.
    pub bytes: u64,
    /// Existing files left alone by the overwrite policy.
    pub skipped: u64,
}

/// One entry to restore: its path in the snapshot and its node.
struct Item {
    /// Path relative to the target.
    rel: PathBuf,
    node: Node,
    /// Matches the include patterns (or there are none).
    wanted: bool,
}

fn os(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

/// Reads the snapshot's trees into a list sorted by path (parents first), applying the filters: excluded
/// paths and everything below them are dropped; with includes, what matches is kept with its parents.
async fn plan(repo: &Repository, root: &[ChunkId], includes: &Patterns, excludes: &Patterns) -> Result<Vec<Item>, RepoError> {
    let descend = |rel: &Path| !excludes.matches(&Path::new("/").join(rel));
    let mut out = Vec::new();
    for (dir, tree) in repo.read_trees(root, PathBuf::new(), descend).await? {
        for node in tree.nodes {
            let rel = dir.join(os(&node.name));
            let original = Path::new("/").join(&rel);
            if excludes.matches(&original) {
                continue;
            }
            let wanted = includes.is_empty() || includes.matches_or_under(&original);
            out.push(Item { rel, node, wanted });
        }
    }
    if !includes.is_empty() {
        let parents: std::collections::HashSet<PathBuf> =
            out.iter().filter(|i| i.wanted).flat_map(|i| i.rel.ancestors().map(Path::to_path_buf)).collect();
        out.retain(|i| i.wanted || parents.contains(&i.rel));
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

fn io_err(path: &Path, what: &str, e: impl std::fmt::Display) -> RepoError {
    RepoError::Io(format!("{}: {what}: {e}", path.display()))
}

/// Makes `path` a real directory (not a symlink to one), replacing a non-directory if allowed.
fn ensure_dir(path: &Path, overwrite: Overwrite) -> Result<(), RepoError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) if overwrite == Overwrite::Always => {
            std::fs::remove_file(path).map_err(|e| io_err(path, "cannot replace with a directory", e))?;
            std::fs::create_dir(path).map_err(|e| io_err(path, "cannot create directory", e))
        }
        Ok(_) => Err(io_err(path, "exists and is not a directory", "use --overwrite always to replace it")),
        Err(_) => std::fs::create_dir(path).map_err(|e| io_err(path, "cannot create directory", e)),
    }
}

/// Whether an existing entry at `path` should be left as it is.
fn keep_existing(path: &Path, node: &Node, overwrite: Overwrite) -> bool {
    let Ok(m) = std::fs::symlink_metadata(path) else { return false };
    match overwrite {
        Overwrite::Always => false,
        Overwrite::Never => true,
        Overwrite::IfChanged => {
            use std::os::unix::fs::MetadataExt;
            m.is_file() && m.len() == node.size && m.mtime().saturating_mul(1_000_000_000).saturating_add(m.mtime_nsec()) == node.mtime_ns
        }
    }
}

fn remove_existing(path: &Path) -> Result<(), RepoError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(io_err(path, "a directory is in the way of a file", "remove it first")),
        Ok(_) => std::fs::remove_file(path).map_err(|e| io_err(path, "cannot replace", e)),
        Err(_) => Ok(()),
    }
}

fn set_times(path: &Path, node: &Node, follow: bool) -> Result<(), RepoError> {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    let ts = TimeSpec::new(node.mtime_ns.div_euclid(1_000_000_000), node.mtime_ns.rem_euclid(1_000_000_000));
    let flag = if follow { UtimensatFlags::FollowSymlink } else { UtimensatFlags::NoFollowSymlink };
    utimensat(nix::fcntl::AT_FDCWD, path, &ts, &ts, flag).map_err(|e| io_err(path, "cannot set times", e))
}

fn set_owner(path: &Path, node: &Node) -> Result<(), RepoError> {
    use nix::unistd::{Gid, Uid, fchownat};
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(Uid::from_raw(node.uid)),
        Some(Gid::from_raw(node.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| io_err(path, "cannot set owner", e))
}

/// A file whose contents must be fetched.
struct FileJob {
    path: PathBuf,
    node: Node,
}

/// Restores `snapshot` below `opts.target`.
pub async fn run(
    repo: Arc<Repository>,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    progress: Arc<Progress>,
) -> Result<RestoreStats, RepoError> {
    let pattern_err = |e: crate::backup::filter::PatternError| RepoError::Io(e.to_string());
    let includes = Patterns::new(&opts.includes).map_err(pattern_err)?;
    let excludes = Patterns::new(&opts.excludes).map_err(pattern_err)?;
    let items = plan(&repo, &snapshot.summary.root, &includes, &excludes).await?;
    for i in items.iter().filter(|i| i.node.kind == NodeKind::File) {
        Progress::add(&progress.files_total, 1);
        Progress::add(&progress.bytes_total, i.node.size);
    }
    progress.totals_final.store(true, std::sync::atomic::Ordering::Relaxed);
    std::fs::create_dir_all(&opts.target).map_err(|e| io_err(&opts.target, "cannot create the target", e))?;

    let mut stats = RestoreStats::default();
    let mut jobs = Vec::new();
    let mut links: Vec<(PathBuf, PathBuf, Node)> = Vec::new();
    let mut first_of_inode: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for item in &items {
        let path = opts.target.join(&item.rel);
        let node = &item.node;
        match node.kind {
            NodeKind::Dir => {
                ensure_dir(&path, opts.overwrite)?;
                stats.dirs += 1;
            }
            NodeKind::Symlink | NodeKind::Fifo | NodeKind::File if keep_existing(&path, node, opts.overwrite) => {
                stats.skipped += 1;
                Progress::add(&progress.files_done, 1);
            }
            NodeKind::Symlink => {
                remove_existing(&path)?;
                std::os::unix::fs::symlink(os(&node.link_target), &path).map_err(|e| io_err(&path, "cannot create symlink", e))?;
                stats.symlinks += 1;
            }
            NodeKind::Fifo => {
                remove_existing(&path)?;
                nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(node.mode))
                    .map_err(|e| io_err(&path, "cannot create fifo", e))?;
            }
            NodeKind::File => {
                remove_existing(&path)?;
                if node.nlink > 1
                    && let Some(first) = first_of_inode.get(&(node.dev, node.inode))
                {
                    links.push((first.clone(), path, node.clone()));
                    continue;
                }
                if node.nlink > 1 {
                    first_of_inode.insert((node.dev, node.inode), path.clone());
                }
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                    .open(&path)
                    .map_err(|e| io_err(&path, "cannot create file", e))?;
                // Setting the length first leaves any all-zero chunk as a hole.
                f.set_len(node.size).map_err(|e| io_err(&path, "cannot size file", e))?;
                stats.files += 1;
                stats.bytes += node.size;
                jobs.push(FileJob { path, node: node.clone() });
            }
        }
    }

    fetch_contents(&repo, &jobs, opts.concurrency, &progress).await?;

    for (first, path, _) in &links {
        std::fs::hard_link(first, path).map_err(|e| io_err(path, "cannot create hard link", e))?;
        stats.hardlinks += 1;
    }
    // Metadata last: files and links, then directories deepest first so their times stick.
    for item in items.iter().filter(|i| i.node.kind != NodeKind::Dir) {
        let path = opts.target.join(&item.rel);
        let node = &item.node;
        if node.kind != NodeKind::Symlink {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(node.mode)).map_err(|e| io_err(&path, "cannot set mode", e))?;
        }
        set_owner(&path, node)?;
        set_times(&path, node, false)?;
    }
    for item in items.iter().rev().filter(|i| i.node.kind == NodeKind::Dir) {
        let path = opts.target.join(&item.rel);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(item.node.mode))
            .map_err(|e| io_err(&path, "cannot set mode", e))?;
        set_owner(&path, &item.node)?;
        set_times(&path, &item.node, false)?;
    }
    Ok(stats)
}

/// Block size at which runs of zeros are left as holes.
const HOLE_BLOCK: usize = 4096;

/// Writes `data` at `offset`, skipping 4 KiB-aligned blocks that are all zeros. The file was sized before,
/// so skipped blocks read back as zeros and take no space: sparse files come back as sparse as they were.
fn write_skipping_zero_blocks(f: &std::fs::File, data: &[u8], offset: u64) -> std::io::Result<()> {
    let mut start = 0;
    while start < data.len() {
        // Align block boundaries to the file, not the chunk.
        let end = (((offset as usize + start) / HOLE_BLOCK + 1) * HOLE_BLOCK - offset as usize).min(data.len());
        let block = &data[start..end];
        if block.iter().any(|b| *b != 0) {
            // Write this block and every following non-zero block in one call.
            let mut run_end = end;
            while run_end < data.len() {
                let next = (run_end + HOLE_BLOCK).min(data.len());
                if data[run_end..next].iter().all(|b| *b == 0) {
                    break;
                }
                run_end = next;
            }
            f.write_all_at(&data[start..run_end], offset + start as u64)?;
            start = run_end;
        } else {
            start = end;
        }
    }
    Ok(())
}

/// Chunk bytes being fetched, verified or written at once: enough to keep every node busy, bounded so that a
/// restore of large chunks stays within a laptop's memory.
pub const IN_FLIGHT_BYTES: u64 = 64 << 20;

/// Budget units of [`IN_FLIGHT_BYTES`] (a semaphore counts in `u32` permits).
const BUDGET_UNIT: u64 = 64 << 10;

/// Permits a chunk of `len` bytes holds while it is fetched and written.
fn budget_permits(len: u32) -> u32 {
    (u64::from(len).div_ceil(BUDGET_UNIT).clamp(1, IN_FLIGHT_BYTES / BUDGET_UNIT)) as u32
}

/// Fetches, verifies and writes every non-zero chunk of `jobs`, `concurrency` at a time within
/// [`IN_FLIGHT_BYTES`].
async fn fetch_contents(repo: &Arc<Repository>, jobs: &[FileJob], concurrency: usize, progress: &Arc<Progress>) -> Result<(), RepoError> {
    // Content-defined chunking cuts a run of zeros into chunks of the largest size, so only that length's
    // all-zero id is worth knowing. Hashing zeros for every distinct length cost a hash of the whole restore
    // before the first fetch; a shorter all-zero chunk (the end of a run) is fetched like any other and its
    // zero blocks are still left as holes.
    let zero = repo.ids().id(&vec![0u8; crate::chunker::MAX_CHUNK]);
    let mut writes = Vec::new();
    for job in jobs {
        let mut offset = 0u64;
        for c in &job.node.content {
            if c.id != zero {
                writes.push((job.path.clone(), offset, *c));
            } else {
                Progress::add(&progress.bytes_done, u64::from(c.len));
            }
            offset += u64::from(c.len);
        }
        if offset != job.node.size {
            return Err(RepoError::Io(format!(
                "{}: the snapshot's chunk lengths add up to {offset}, not its size {}",
                job.path.display(),
                job.node.size
            )));
        }
    }
    let budget = Arc::new(tokio::sync::Semaphore::new((IN_FLIGHT_BYTES / BUDGET_UNIT) as usize));
    let results: Vec<Result<(), RepoError>> = futures::stream::iter(writes)
        .map(|(path, offset, chunk)| {
            let (repo, progress, budget) = (repo.clone(), progress.clone(), budget.clone());
            async move {
                let _held = budget.acquire_many_owned(budget_permits(chunk.len)).await.map_err(|e| RepoError::Io(e.to_string()))?;
                let data = repo.get_chunk(chunk.id).await?;
                if data.len() != chunk.len as usize {
                    return Err(RepoError::Io(format!(
                        "{}: chunk {} has {} bytes, the tree says {}",
                        path.display(),
                        chunk.id,
                        data.len(),
                        chunk.len
                    )));
                }
                tokio::task::spawn_blocking(move || {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                        .open(&path)
                        .map_err(|e| io_err(&path, "cannot open", e))?;
                    write_skipping_zero_blocks(&f, &data, offset).map_err(|e| io_err(&path, "cannot write", e))?;
                    progress.set_current(&path.display().to_string());
                    Progress::add(&progress.bytes_done, data.len() as u64);
                    Ok(())
                })
                .await
                .map_err(|e| RepoError::Io(e.to_string()))?
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect::<Result<(), _>>()?;
    Progress::add(&progress.files_done, jobs.len() as u64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_blocks_stay_holes_and_data_is_exact() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("f");
        let f = std::fs::File::create(&path).unwrap();
        let len = 64 * HOLE_BLOCK + 100;
        f.set_len(len as u64 + 3000).unwrap();
        let mut data = vec![0u8; len];
        data[5000] = 1;
        data[40 * HOLE_BLOCK..42 * HOLE_BLOCK].fill(7);
        data[len - 1] = 9;
        write_skipping_zero_blocks(&f, &data, 3000).unwrap();
        let mut expected = vec![0u8; 3000];
        expected.extend_from_slice(&data);
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        use std::os::unix::fs::MetadataExt;
        let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(allocated < 16 * HOLE_BLOCK as u64, "{allocated} bytes allocated for a mostly empty file");
    }
}

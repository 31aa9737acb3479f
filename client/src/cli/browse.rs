//! `strata snapshots`, `strata ls` and `strata diff`: looking at what is stored.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use clap::Args;
use strata_client::repo::{RepoError, Repository, Snapshot};
use strata_client::tree::{Node, NodeKind};

use super::Ctx;
use super::progress_ui::human_bytes;

/// Filters shared by `snapshots` and `forget`.
#[derive(Args, Clone, Default)]
pub struct SnapshotFilter {
    /// Only snapshots of this host. Repeatable.
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Only snapshots that include this path. Repeatable.
    #[arg(long = "path")]
    pub paths: Vec<String>,
    /// Only snapshots with this tag. Repeatable.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
}

impl SnapshotFilter {
    /// Whether `s` passes the filter.
    pub fn accepts(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.summary.host))
            && self.paths.iter().all(|p| s.summary.paths.iter().any(|q| q == p))
            && self.tags.iter().all(|t| s.summary.tags.contains(t))
    }
}

/// Time as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn format_time_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = strata_client::retention::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// JSON form of a snapshot.
pub fn snapshot_json(s: &Snapshot) -> serde_json::Value {
    serde_json::json!({
        "id": s.record.id.to_hex(),
        "short_id": &s.record.id.to_hex()[..8],
        "time_ms": s.summary.time_ms,
        "time": format_time_ms(s.summary.time_ms),
        "host": s.summary.host,
        "paths": s.summary.paths,
        "tags": s.summary.tags,
        "parent": s.summary.parent.map(|p| p.to_hex()),
        "stats": s.summary.stats,
    })
}

/// `strata snapshots`.
pub async fn snapshots(ctx: &Ctx, filter: SnapshotFilter) -> anyhow::Result<i32> {
    let repo = ctx.repo().await?;
    let list: Vec<Snapshot> = repo.snapshots().await?.into_iter().filter(|s| filter.accepts(s)).collect();
    if ctx.json {
        println!("{}", serde_json::to_string(&list.iter().map(snapshot_json).collect::<Vec<_>>())?);
        return Ok(0);
    }
    println!("{:<10} {:<20} {:<16} {:<16} {:>10}  PATHS", "ID", "TIME (UTC)", "HOST", "TAGS", "SIZE");
    for s in &list {
        println!(
            "{:<10} {:<20} {:<16} {:<16} {:>10}  {}",
            &s.record.id.to_hex()[..8],
            format_time_ms(s.summary.time_ms),
            s.summary.host,
            s.summary.tags.join(","),
            human_bytes(s.summary.stats.bytes_total),
            s.summary.paths.join(" ")
        );
    }
    println!("{} snapshots", list.len());
    Ok(0)
}

/// Every entry below `root` as (absolute path in the snapshot, node), depth first in name order.
pub async fn entries(repo: &Repository, root: &[strata_proto::ChunkId]) -> Result<Vec<(PathBuf, Node)>, RepoError> {
    let mut out = Vec::new();
    for (dir, tree) in repo.read_trees(root, PathBuf::from("/"), |_| true).await? {
        for node in tree.nodes {
            out.push((dir.join(std::ffi::OsStr::from_bytes(&node.name)), node));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn kind_char(k: NodeKind) -> char {
    match k {
        NodeKind::File => '-',
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
    }
}

/// Arguments of `strata ls`.
#[derive(Args)]
pub struct LsArgs {
    /// Snapshot id (a unique prefix) or `latest`.
    snapshot: String,
    /// Only this path and what is below it.
    path: Option<PathBuf>,
}

/// `strata ls`.
pub async fn ls(ctx: &Ctx, a: LsArgs) -> anyhow::Result<i32> {
    let repo = ctx.repo().await?;
    let snap = repo.find_snapshot(&a.snapshot).await?;
    let below = a.path.map(|p| Path::new("/").join(p));
    for (path, node) in entries(&repo, &snap.summary.root).await? {
        if below.as_ref().is_some_and(|b| !path.starts_with(b)) {
            continue;
        }
        if ctx.json {
            println!(
                "{}",
                serde_json::json!({ "path": path.to_string_lossy(), "path_bytes_hex": hex::encode(path.as_os_str().as_bytes()), "type": kind_char(node.kind).to_string(), "mode": format!("{:o}", node.mode), "size": node.size, "mtime_ns": node.mtime_ns, "uid": node.uid, "gid": node.gid, "link_target": (!node.link_target.is_empty()).then(|| String::from_utf8_lossy(&node.link_target).into_owned()) })
            );
        } else {
            let target =
                if node.kind == NodeKind::Symlink { format!(" -> {}", String::from_utf8_lossy(&node.link_target)) } else { String::new() };
            println!(
                "{}{:04o} {:>6} {:>6} {:>12} {} {}{}",
                kind_char(node.kind),
                node.mode,
                node.uid,
                node.gid,
                node.size,
                format_time_ms((node.mtime_ns / 1_000_000) as u64),
                path.display(),
                target
            );
        }
    }
    Ok(0)
}

/// Arguments of `strata diff`.
#[derive(Args)]
pub struct DiffArgs {
    /// The older snapshot.
    from: String,
    /// The newer snapshot.
    to: String,
}

/// `strata diff`: paths added (+), removed (-) and modified (M) between two snapshots.
pub async fn diff(ctx: &Ctx, a: DiffArgs) -> anyhow::Result<i32> {
    let repo = ctx.repo().await?;
    let (from, to) = (repo.find_snapshot(&a.from).await?, repo.find_snapshot(&a.to).await?);
    let old: BTreeMap<PathBuf, Node> = entries(&repo, &from.summary.root).await?.into_iter().collect();
    let new: BTreeMap<PathBuf, Node> = entries(&repo, &to.summary.root).await?.into_iter().collect();
    let mut changes = Vec::new();
    for (path, n) in &new {
        match old.get(path) {
            None => changes.push(('+', path)),
            Some(o)
                if o.kind != n.kind
                    || o.content != n.content
                    || o.mode != n.mode
                    || o.link_target != n.link_target
                    || (n.kind == NodeKind::File && o.mtime_ns != n.mtime_ns) =>
            {
                changes.push(('M', path))
            }
            _ => {}
        }
    }
    changes.extend(old.keys().filter(|p| !new.contains_key(*p)).map(|p| ('-', p)));
    changes.sort_by(|a, b| a.1.cmp(b.1));
    let count = |c: char| changes.iter().filter(|(k, _)| *k == c).count();
    if ctx.json {
        for (c, p) in &changes {
            println!("{}", serde_json::json!({ "message_type": "change", "modifier": c.to_string(), "path": p.to_string_lossy() }));
        }
        println!(
            "{}",
            serde_json::json!({ "message_type": "statistics", "added": count('+'), "removed": count('-'), "modified": count('M') })
        );
    } else {
        for (c, p) in &changes {
            println!("{c}    {}", p.display());
        }
        println!("\n{} added, {} removed, {} modified", count('+'), count('-'), count('M'));
    }
    Ok(0)
}

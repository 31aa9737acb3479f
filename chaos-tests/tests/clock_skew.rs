//! Clocks that disagree: nodes whose wall clocks run minutes ahead of and behind the others, and a leader
//! whose clock jumps (libfaketime; monotonic time is left alone, as NTP leaves it).
//!
//! Upload sessions are leases on the wall clock, and garbage collection waits for open sessions. Whichever
//! node a client's requests reach, and whatever the leader's clock does, every backup must commit, a prune
//! must keep everything a snapshot references, and every snapshot must restore byte-exact.

use std::path::Path;
use std::time::Duration;

use strata_chaos::fs_tree::{Manifest, TreeSpec, generate};
use strata_chaos::workload::seed;
use strata_chaos::{Cluster, ClusterSpec, TenantCli};

fn backup_day(cli: &TenantCli, work: &Path, seed: u64, day: u64) -> (String, std::path::PathBuf, Manifest) {
    let source = work.join(format!("day{day}"));
    let tree = generate(&source, seed ^ day, &TreeSpec { sparse_bytes: 1 << 20, max_file_bytes: 300_000, files: 12 });
    let out = cli.run(&["--json", "backup", source.to_str().expect("UTF-8 path")]);
    assert!(out.status.success(), "backup of day {day} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or("null")).expect("backup summary");
    (summary["snapshot_id"].as_str().expect("snapshot id").to_owned(), source, tree)
}

fn assert_restores(cli: &TenantCli, work: &Path, snapshots: &[(String, std::path::PathBuf, Manifest)], when: &str) {
    for (id, source, tree) in snapshots {
        let diff = cli.restore_diff(id, source, tree, &work.join(format!("restore-{}-{id}", when.replace(' ', "-"))));
        assert!(diff.is_empty(), "snapshot {id} {when}: {} differences; first: {:#?}", diff.len(), &diff[..diff.len().min(5)]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_commit_prune_and_restore_whatever_the_clocks_say() -> anyhow::Result<()> {
    let Some(cluster) = Cluster::start_with_fake_clocks(ClusterSpec::default()).await? else {
        return Ok(());
    };
    let seed = seed();
    let leader = cluster.wait_new_leader(None, Duration::from_secs(30)).await?;
    let followers: Vec<usize> = (1..=cluster.nodes.len()).filter(|&i| i != leader).collect();
    // Two followers minutes off, one each way: every client spreads its requests over all nodes.
    cluster.set_clock(followers[0], 180).await?;
    cluster.set_clock(followers[1], -180).await?;

    let work = tempfile::tempdir()?;
    let cli = cluster.tenant_cli("skewed", &work.path().join("laptop")).await?;
    cli.json(&["init"]);
    let mut snapshots = Vec::new();
    for day in 0..4 {
        snapshots.push(backup_day(&cli, work.path(), seed, day));
    }
    let forgotten = cli.run(&["forget", "--keep-last", "2", "--yes"]);
    assert!(forgotten.status.success(), "forget failed: {}", String::from_utf8_lossy(&forgotten.stderr));
    cli.json(&["prune"]);
    let kept = snapshots.split_off(2);
    assert_restores(&cli, work.path(), &kept, "with skewed followers");

    // The leader's clock jumps ten minutes ahead, back, and ten minutes behind, a backup after each jump.
    let leader = cluster.wait_new_leader(None, Duration::from_secs(30)).await?;
    let mut more = Vec::new();
    for (day, offset) in [(10, 600), (11, 0), (12, -600)] {
        cluster.set_clock(leader, offset).await?;
        more.push(backup_day(&cli, work.path(), seed, day));
    }
    cli.json(&["prune"]);
    assert_restores(&cli, work.path(), &kept, "after the leader's clock jumped");
    assert_restores(&cli, work.path(), &more, "after the leader's clock jumped (taken meanwhile)");
    Ok(())
}

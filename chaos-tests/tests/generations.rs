//! Storage generations end to end: a new generation joins, the old one is drained (once cancelled halfway)
//! while backups and restores keep running, then it is dropped and switched off, and everything restores.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use strata_chaos::fs_tree::{Manifest, TreeSpec, generate, manifest};
use strata_chaos::{Cluster, ClusterSpec, TenantCli};

/// One generation's progress entry from `strata admin generation list --json`.
fn generation<'a>(list: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    list["generations"].as_array().expect("generations").iter().find(|g| g["generation"]["name"] == name).expect("generation listed")
}

/// Every snapshot a loop made with the tree it saved, and every failure it met.
type LoopOutcome = (Vec<(String, Manifest)>, Vec<String>);

/// Backs up and restores in a loop until told to stop.
struct BackupLoop {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<LoopOutcome>,
}

impl BackupLoop {
    fn start(cli: TenantCli, source: PathBuf, scratch: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut snapshots = Vec::new();
            let mut errors = Vec::new();
            for round in 0..60 {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                // Change the tree a little every round: a new file and a grown one.
                std::fs::write(source.join(format!("round-{round}.bin")), vec![round as u8; 300_000 + round * 1000]).expect("write");
                let expected = manifest(&source);
                let out = cli.run(&["--json", "backup", source.to_str().unwrap()]);
                if !out.status.success() {
                    errors.push(format!("backup {round}: {}", String::from_utf8_lossy(&out.stderr)));
                    continue;
                }
                let text = String::from_utf8_lossy(&out.stdout);
                let summary: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or("{}")).expect("summary");
                let id = summary["snapshot_id"].as_str().expect("snapshot id").to_owned();
                let diff = cli.restore_diff(&id, &source, &expected, &scratch.join(format!("r{round}")));
                if !diff.is_empty() {
                    errors.push(format!("restore {round}: {:?}", &diff[..diff.len().min(4)]));
                }
                let _ = std::fs::remove_dir_all(scratch.join(format!("r{round}")));
                snapshots.push((id, expected));
            }
            (snapshots, errors)
        });
        BackupLoop { stop, handle }
    }

    fn finish(self) -> LoopOutcome {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("backup loop")
    }
}

async fn wait_state(cluster: &Cluster, name: &str, state: &str, timeout: Duration) -> anyhow::Result<()> {
    cluster
        .wait_for(&format!("{name} to be {state}"), timeout, || async {
            let out = cluster.admin(&["generation", "list"]);
            out.status.success()
                && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                    .is_ok_and(|l| generation(&l, name)["generation"]["state"] == state)
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generation_is_drained_online_cancelled_drained_again_and_dropped() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(ClusterSpec { partition_bits: 4, ..ClusterSpec::default() }).await?;
    let work = tempfile::tempdir()?;
    let cli = cluster.tenant_cli("mover", &work.path().join("laptop")).await?;
    cli.json(&["init"]);
    let source = work.path().join("source");
    let first_tree = generate(&source, 11, &TreeSpec { sparse_bytes: 8 << 20, max_file_bytes: 2 << 20, files: 24 });
    let first = cli.backup(&source);

    // A second generation with another profile joins; the first keeps serving.
    let added = cluster.admin_json(&["generation", "add", "gen-b", "--ec", "3+2"]);
    assert!(added["message"].as_str().unwrap().contains("gen-b"), "{added}");
    cluster.join_nodes("gen-b", 6).await?;

    // Refusals say why.
    let refused = cluster.admin(&["generation", "drop", "gen-1"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("partitions are placed on it"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let refused = cluster.admin(&["generation", "drop", "gen-1", "--force"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("would be lost"), "{}", String::from_utf8_lossy(&refused.stderr));
    let refused = cluster.admin(&["generation", "cancel", "gen-1"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("only a Draining one"), "{}", String::from_utf8_lossy(&refused.stderr));

    let looping = BackupLoop::start(
        strata_chaos::TenantCli { profile: cli.profile.clone(), password_file: cli.password_file.clone(), tenant: cli.tenant },
        source.clone(),
        work.path().join("loop-restores"),
    );

    // Drain slowly, then cancel once some partitions have left.
    cluster.admin_json(&["generation", "rate", "256KiB"]);
    cluster.admin_json(&["generation", "drain", "gen-1"]);
    let placed_before = generation(&cluster.admin_json(&["generation", "list"]), "gen-1")["partitions"]["placed"].as_u64().unwrap_or(0);
    cluster
        .wait_for("a partition to leave gen-1", Duration::from_secs(120), || async {
            let list = cluster.admin_json(&["generation", "list"]);
            let g = generation(&list, "gen-1");
            g["partitions"]["placed"].as_u64().unwrap_or(0) + g["partitions"]["moving_out"].as_u64().unwrap_or(0) < placed_before
                || g["generation"]["state"] == "Drained"
        })
        .await?;
    cluster.admin_json(&["generation", "pause", "gen-1"]);
    assert_eq!(generation(&cluster.admin_json(&["generation", "list"]), "gen-1")["paused"], true);
    cluster.admin_json(&["generation", "resume", "gen-1"]);
    let cancelled = cluster.admin(&["generation", "cancel", "gen-1"]);
    let drained_already = !cancelled.status.success() && String::from_utf8_lossy(&cancelled.stderr).contains("Drained");
    eprintln!("cancel: {}", if drained_already { "too late, the drain had finished" } else { "turned the drain around" });
    if !drained_already {
        assert!(cancelled.status.success(), "{}", String::from_utf8_lossy(&cancelled.stderr));
        assert_eq!(generation(&cluster.admin_json(&["generation", "list"]), "gen-1")["generation"]["state"], "Active");
        let diff = cli.restore_diff(&first[..8], &source, &first_tree, &work.path().join("after-cancel"));
        assert!(diff.is_empty(), "first snapshot after the cancel: {diff:?}");
        // Drain again, at full speed, to the end.
        cluster.admin_json(&["generation", "rate", "0"]);
        cluster.admin_json(&["generation", "drain", "gen-1"]);
    }
    wait_state(&cluster, "gen-1", "Drained", Duration::from_secs(300)).await?;
    let (snapshots, errors) = looping.finish();
    assert!(errors.is_empty(), "backups or restores failed during the drain: {errors:#?}");
    assert!(snapshots.len() >= 2, "the loop made only {} snapshots", snapshots.len());
    eprintln!("{} snapshots backed up and restored during the drains", snapshots.len());

    let list = cluster.admin_json(&["generation", "list"]);
    assert_eq!(generation(&list, "gen-1")["safe_to_remove"], true, "{list}");
    cluster
        .wait_for("gen-1's nodes to retire their shards", Duration::from_secs(60), || async {
            let list = cluster.admin_json(&["generation", "list"]);
            generation(&list, "gen-1")["stored_shards"] == 0
        })
        .await?;
    wait_ca_key_outside_gen_1(&cluster).await?;
    let dropped = cluster.admin_json(&["generation", "drop", "gen-1"]);
    assert!(dropped["message"].as_str().unwrap().contains("can be stopped"), "{dropped}");
    cluster
        .wait_for("the Raft voters to have moved to gen-b", Duration::from_secs(60), || async {
            let out = cluster.admin(&["status"]);
            let Ok(status) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else { return false };
            let voters: Vec<u64> = status["voters"].as_array().map(|v| v.iter().filter_map(|x| x.as_u64()).collect()).unwrap_or_default();
            voters.len() == 5 && voters.iter().all(|v| *v >= 7)
        })
        .await?;
    for id in 1..=6 {
        cluster.kill(id)?;
    }
    // The laptop's profile is not edited: every address in it belonged to gen-1 and is dead now. The client
    // finds gen-b through the addresses the cluster map taught its earlier runs (`profile.nodes`).
    let profile = strata_client::Profile::load(&cli.profile)?;
    let gen_1: Vec<String> = cluster.nodes[..6].iter().map(|n| n.quic.clone()).collect();
    assert!(profile.nodes.iter().all(|a| gen_1.contains(a)), "the profile should name only gen-1 nodes: {:?}", profile.nodes);

    // Everything restores from gen-b alone: the first snapshot and every one made during the drains.
    let diff = cli.restore_diff(&first[..8], &source, &first_tree, &work.path().join("final-first"));
    assert!(diff.is_empty(), "first snapshot after the drop: {diff:?}");
    for (i, (id, expected)) in snapshots.iter().enumerate() {
        let diff = cli.restore_diff(&id[..8], &source, expected, &work.path().join(format!("final-{i}")));
        assert!(diff.is_empty(), "snapshot {id} after the drop: {:?}", &diff[..diff.len().min(4)]);
        let _ = std::fs::remove_dir_all(work.path().join(format!("final-{i}")));
    }
    // A new backup goes to gen-b.
    cli.json(&["backup", source.to_str().unwrap()]);

    // The node `init` created is gone with its CA key file, and the cluster still admits nodes (through any of
    // its nodes: one without the key names the holders) and renews certificates: the voters hold the key.
    let joined = cluster.join_nodes("gen-b", 1).await?;
    assert_eq!(joined, vec![13]);
    let status = cluster.admin_json(&["status"]);
    assert!(status["ca_holders"].as_array().is_some_and(|h| h.iter().all(|n| n.as_u64() >= Some(7))), "{status}");
    // A dropped node's certificate opens nothing any more.
    let old = cluster.pool_as_node(2)?;
    let refused = old.call(&cluster.nodes[6].quic, None, strata_proto::Request::Ping, bytes::Bytes::new()).await;
    assert!(refused.is_err(), "a removed node's certificate was accepted: {refused:?}");
    Ok(())
}

/// Waits until a node outside gen-1 (ids above 6) holds the CA key: the voters of gen-b take it over.
async fn wait_ca_key_outside_gen_1(cluster: &Cluster) -> anyhow::Result<()> {
    cluster
        .wait_for("a gen-b voter to hold the CA key", Duration::from_secs(60), || async {
            let out = cluster.admin(&["status"]);
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .is_ok_and(|s| s["ca_holders"].as_array().is_some_and(|h| h.iter().any(|n| n.as_u64() > Some(6))))
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_survives_killing_a_mover_and_the_leader() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(ClusterSpec { partition_bits: 4, ..ClusterSpec::default() }).await?;
    let work = tempfile::tempdir()?;
    let cli = cluster.tenant_cli("survivor", &work.path().join("laptop")).await?;
    cli.json(&["init"]);
    let source = work.path().join("source");
    let tree = generate(&source, 23, &TreeSpec { sparse_bytes: 4 << 20, max_file_bytes: 3 << 20, files: 30 });
    let id = cli.backup(&source);

    // Pause moves while gen-b assembles, so they all happen during the drain below, slowly.
    cluster.admin_json(&["generation", "add", "gen-b", "--ec", "3+2"]);
    cluster.admin_json(&["generation", "pause", "gen-b"]);
    let b = cluster.join_nodes("gen-b", 5).await?;
    cluster.admin_json(&["generation", "rate", "512KiB"]);
    cluster.admin_json(&["generation", "drain", "gen-1"]);
    cluster.admin_json(&["generation", "resume", "gen-b"]);

    // Kill -9 a gen-b node while it is moving partitions, and bring it back.
    let mut mover = None;
    cluster
        .wait_for("a gen-b node to be moving partitions", Duration::from_secs(60), || {
            let (cluster, b) = (&cluster, &b);
            async move {
                for &n in b {
                    if cluster.metric(n, "strata_migration_partitions_in_progress").await.unwrap_or(0.0) > 0.0 {
                        return true;
                    }
                }
                false
            }
        })
        .await?;
    for &n in &b {
        if cluster.metric(n, "strata_migration_partitions_in_progress").await.unwrap_or(0.0) > 0.0 {
            mover = Some(n);
            break;
        }
    }
    let mover = mover.expect("a mover was seen");
    cluster.kill(mover)?;
    cluster.restart(mover)?;
    cluster.wait_all_ready(Duration::from_secs(60)).await?;

    // Then the Raft leader, wherever it is (voters move to gen-b as soon as its nodes have caught up).
    let leader = cluster.wait_new_leader(None, Duration::from_secs(30)).await?;
    cluster.kill(leader)?;
    cluster.wait_new_leader(Some(leader), Duration::from_secs(60)).await?;
    cluster.restart(leader)?;
    cluster.wait_all_ready(Duration::from_secs(60)).await?;

    cluster.admin_json(&["generation", "rate", "0"]);
    wait_state(&cluster, "gen-1", "Drained", Duration::from_secs(300)).await?;
    let target = work.path().join("restore");
    let diff = cli.restore_diff(&id[..8], &source, &tree, &target);
    assert!(diff.is_empty(), "after the drain with kills: {:?}", &diff[..diff.len().min(4)]);

    // gen-1 goes away entirely; the snapshot still restores.
    cluster
        .wait_for("gen-1's shards to be retired", Duration::from_secs(60), || async {
            generation(&cluster.admin_json(&["generation", "list"]), "gen-1")["stored_shards"] == 0
        })
        .await?;
    wait_ca_key_outside_gen_1(&cluster).await?;
    cluster.admin_json(&["generation", "drop", "gen-1"]);
    for id in 1..=6 {
        cluster.kill(id)?;
    }
    cluster.retarget_profile(&cli)?;
    let diff = cli.restore_diff(&id[..8], &source, &tree, &work.path().join("restore-b"));
    assert!(diff.is_empty(), "from gen-b alone: {:?}", &diff[..diff.len().min(4)]);
    Ok(())
}

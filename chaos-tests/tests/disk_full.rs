//! Disks that fill for real: a node's data directory on a small ext4 file system of its own that a ballast
//! file fills, so its writes meet the kernel's `ENOSPC`, not the node's own capacity setting.
//!
//! With the reserve (`[storage] reserve_bytes`) a node refuses shards while the disk still has room for its
//! metadata log: the cluster acknowledges blobs on the other holders (five of six shards suffice), the node
//! keeps voting, applying the log and serving reads, and takes shards again once space is freed. Without a
//! reserve, a full disk can stop the node's Raft (openraft does not go on after a storage error): the node
//! must then stop by itself, naming the cause, rather than linger as a member that can no longer apply
//! anything, and come back on its data once space is freed.

use std::time::Duration;

use bytes::Bytes;
use strata_chaos::workload::{Workload, assert_intact, seed};
use strata_chaos::{Cluster, ClusterSpec};
use strata_proto::{Role, RoleSet};

const MIB: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_stop_at_the_reserve_so_a_full_disk_never_stops_the_metadata_log() -> anyhow::Result<()> {
    let spec = ClusterSpec { extra_config: "[storage]\nreserve_bytes = 67108864\n", ..ClusterSpec::default() };
    let mut cluster = Cluster::start(spec).await?;
    let seed = seed();
    let (_, admin) = cluster.create_tenant("filled").await?;
    let client = cluster.client_with_token(admin.expose()).await?;
    let before = Workload::mixed(seed, 40, 1, 1 << 20);
    before.put_all(&client, 8).await?;
    // Node 1 founded the cluster and is always a voter: its disk holds the metadata log as well as shards.
    let full = 1;
    if !cluster.move_to_small_disk(full, 256 * MIB).await? {
        return Ok(());
    }
    assert_intact(&before.verify_all(&client, 8).await, "after moving a node's data to its own disk");

    cluster.small_disk(full).fill(66 * MIB)?;
    eprintln!("chaos: node {full}'s disk has {} MiB left, its reserve is 64 MiB", cluster.small_disk(full).available()? >> 20);
    // About 4 MB of shards would land on the full node: it refuses them, the other five holders suffice.
    let during = Workload::mixed(seed ^ 1, 40, 64 << 10, 1 << 20);
    during.put_all(&client, 8).await?;
    let log = cluster.log_tail(full, 3000);
    assert!(log.contains("reserve_bytes"), "node {full} does not say its disk is full; its log ends:\n{}", cluster.log_tail(full, 30));
    // The metadata log goes on, on the full node too.
    for i in 0..5 {
        client.create_token(None, RoleSet::of(&[Role::Backup]), None, &format!("while full {i}")).await?;
    }
    cluster.wait_caught_up(full).await?;
    let log = cluster.log_tail(full, 3000);
    assert!(!log.contains("metadata log stopped"), "node {full}'s Raft stopped although its reserve was kept");

    let served = || cluster.metric_with(full, "strata_requests_total", &["op=\"get_shard\"", "result=\"ok\""]);
    let served_before = served().await.unwrap_or(0.0);
    assert_intact(&before.verify_all(&client, 8).await, "while a node's disk was full");
    assert_intact(&during.verify_all(&client, 8).await, "written while a node's disk was full");
    assert!(served().await.unwrap_or(0.0) > served_before, "node {full} served no shard while its disk was full");

    // Space comes back: the node stores shards again, without a restart.
    let stuck = cluster.metric(full, "strata_shards_stored").await.unwrap_or(0.0);
    cluster.small_disk(full).free()?;
    let after = Workload::mixed(seed ^ 2, 200, 4 << 10, 64 << 10);
    let mut stored = 0;
    cluster
        .wait_for(&format!("node {full} to store shards again once its disk had space"), Duration::from_secs(60), || {
            let blob = after.blobs[stored.min(after.blobs.len() - 1)];
            stored += 1;
            let (client, after, cluster) = (&client, &after, &cluster);
            async move {
                client.put_blob(blob.id, Bytes::from(after.contents(&blob))).await.is_ok()
                    && cluster.metric(full, "strata_shards_stored").await.is_some_and(|n| n > stuck)
            }
        })
        .await?;
    eprintln!("chaos: node {full} stores shards again after {stored} puts");
    let written_after = Workload { seed: after.seed, blobs: after.blobs[..stored.min(after.blobs.len())].to_vec() };
    assert_intact(&before.verify_all(&client, 8).await, "after freeing the disk");
    assert_intact(&during.verify_all(&client, 8).await, "after freeing the disk (written while full)");
    assert_intact(&written_after.verify_all(&client, 8).await, "after freeing the disk (written after)");
    client.close();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_write_its_metadata_log_stops_and_comes_back_intact() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(ClusterSpec::default()).await?;
    let seed = seed();
    let (_, admin) = cluster.create_tenant("filled").await?;
    let client = cluster.client_with_token(admin.expose()).await?;
    let before = Workload::mixed(seed, 40, 1, 1 << 20);
    before.put_all(&client, 8).await?;
    let leader = cluster.wait_new_leader(None, Duration::from_secs(30)).await?;
    let full = if leader == 1 { 2 } else { 1 };
    // No reserve: shards may fill the disk to the last byte, as another program filling it would.
    cluster.set_node_config(full, "[storage]\nreserve_bytes = 0\n")?;
    if !cluster.move_to_small_disk(full, 256 * MIB).await? {
        return Ok(());
    }
    cluster.small_disk(full).fill(0)?;
    eprintln!("chaos: node {full}'s disk is full and it keeps no reserve");

    // Blobs and metadata keep coming; the cluster acknowledges them without the full node, whose log appends
    // fail. It must stop by itself.
    let during = Workload::mixed(seed ^ 1, 60, 64 << 10, 512 << 10);
    let mut acknowledged = Vec::new();
    let mut status = None;
    for (i, b) in during.blobs.iter().enumerate() {
        if client.put_blob(b.id, Bytes::from(during.contents(b))).await.is_ok() {
            acknowledged.push(*b);
        }
        client.create_token(None, RoleSet::of(&[Role::Backup]), None, &format!("while full {i}")).await?;
        if let Ok(s) = cluster.wait_exit(full, Duration::from_millis(500)).await {
            status = Some(s);
            break;
        }
    }
    let status = match status {
        Some(s) => s,
        None => cluster.wait_exit(full, Duration::from_secs(30)).await?,
    };
    let log = cluster.log_tail(full, 3000);
    assert!(!status.success(), "node {full} exited with {status} although its metadata log failed");
    assert!(
        log.contains("the metadata log stopped") && log.contains("No space left on device"),
        "node {full} did not say why it stopped; its log ends:\n{}",
        cluster.log_tail(full, 20)
    );
    eprintln!("chaos: node {full} stopped by itself ({status}) after its metadata log failed");

    cluster.small_disk(full).free()?;
    cluster.restart(full)?;
    cluster.wait_all_ready(Duration::from_secs(60)).await?;
    cluster.wait_caught_up(full).await?;
    eprintln!("chaos: node {full} is back on its data and caught up");
    assert_intact(&before.verify_all(&client, 8).await, "after the node came back");
    let written_while_full = Workload { seed: during.seed, blobs: acknowledged };
    assert_intact(&written_while_full.verify_all(&client, 8).await, "after the node came back (written while full)");
    client.close();
    Ok(())
}

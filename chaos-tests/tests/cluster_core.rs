//! Cluster-core invariants with real node processes: what was acknowledged survives node kills, leader loss
//! and full restarts, byte for byte.

use std::time::Duration;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use strata_chaos::workload::{Workload, assert_intact, seed};
use strata_chaos::{Cluster, ClusterSpec};
use strata_proto::Role;

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_mixed_blobs_survive_two_kills_and_a_full_restart() -> anyhow::Result<()> {
    let seed = seed();
    let mut cluster = Cluster::start(ClusterSpec::default()).await?;
    let client = cluster.tenant_client("mixed", &[Role::Admin]).await?;
    let work = Workload::mixed(seed, 1000, 1, 8 * MIB);
    work.put_all(&client, 8).await?;
    assert_intact(&work.verify_all(&client, 8).await, "right after the puts");

    // Any two of six nodes may die: everything must still read back, rebuilt from the other four.
    let mut ids: Vec<usize> = (1..=6).collect();
    ids.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let (a, b) = (ids[0], ids[1]);
    cluster.kill(a)?;
    cluster.kill(b)?;
    assert_intact(&work.verify_all(&client, 8).await, &format!("with nodes {a} and {b} killed"));

    // Bring them back, then restart every node at once (kill -9, no clean shutdown) and check again.
    cluster.restart(a)?;
    cluster.restart(b)?;
    cluster.wait_all_ready(Duration::from_secs(60)).await?;
    for id in 1..=6 {
        cluster.kill(id)?;
    }
    for id in 1..=6 {
        cluster.restart(id)?;
    }
    cluster.wait_all_ready(Duration::from_secs(90)).await?;
    assert_intact(&work.verify_all(&client, 8).await, "after every node was killed and restarted");
    client.close();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_another_and_writes_continue() -> anyhow::Result<()> {
    let seed = seed();
    let mut cluster = Cluster::start(ClusterSpec::default()).await?;
    let client = cluster.tenant_client("leader", &[Role::Admin]).await?;
    let before = Workload::mixed(seed, 60, 1, MIB);
    before.put_all(&client, 8).await?;

    let old = cluster.leader().await.expect("a leader");
    cluster.kill(old)?;
    let new = cluster.wait_new_leader(Some(old), Duration::from_secs(30)).await?;
    eprintln!("leader moved from node {old} to node {new}");

    // Metadata writes go through the new leader; blob writes need only 5 of 6 shards.
    let op = cluster.operator().await?;
    op.create_tenant("created-after-failover").await?;
    let after = Workload::mixed(seed ^ 1, 60, 1, MIB);
    after.put_all(&client, 8).await?;
    assert_intact(&before.verify_all(&client, 8).await, "written before the leader died");
    assert_intact(&after.verify_all(&client, 8).await, "written after the failover");

    // The old leader rejoins as a follower and serves requests again.
    cluster.restart(old)?;
    cluster.wait_all_ready(Duration::from_secs(60)).await?;
    assert_ne!(cluster.leader().await, None);
    assert_intact(&after.verify_all(&client, 8).await, "after the old leader rejoined");
    op.close();
    client.close();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_does_not_stop_reads_or_writes() -> anyhow::Result<()> {
    let seed = seed();
    let mut cluster = Cluster::start(ClusterSpec::default()).await?;
    let client = cluster.tenant_client("pause", &[Role::Admin]).await?;
    let before = Workload::mixed(seed, 40, 1, MIB);
    before.put_all(&client, 4).await?;
    // Pause a node that is not the leader, so the test is about data, not elections.
    let leader = cluster.leader().await.expect("a leader");
    let victim = (1..=6).find(|i| *i != leader).expect("six nodes");
    cluster.pause(victim)?;
    let during = Workload::mixed(seed ^ 2, 40, 1, MIB);
    during.put_all(&client, 4).await?;
    assert_intact(&before.verify_all(&client, 4).await, "with a node paused");
    cluster.resume(victim)?;
    cluster.wait_all_ready(Duration::from_secs(30)).await?;
    assert_intact(&during.verify_all(&client, 4).await, "after the paused node resumed");
    client.close();
    Ok(())
}

//! Partitions and lossy links, on clusters whose nodes each live in their own network namespace.
//!
//! What must hold whatever the network does: every blob and snapshot the cluster acknowledged reads back
//! byte-exact once the network heals; a node cut off from its peers acknowledges nothing that needs them; and
//! with one node of a 4+2 cluster cut off, backups go on. The faults are nftables rules inside the nodes'
//! namespaces (`strata_chaos::netns`); the tests skip, saying why, where namespaces cannot be created.

use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_chaos::fs_tree::{Manifest, TreeSpec, generate};
use strata_chaos::workload::{Workload, assert_intact, seed};
use strata_chaos::{Cluster, ClusterSpec, TenantCli};
use strata_client::ClusterClient;
use strata_proto::{Request, Role, RoleSet, Secret};
use strata_transport::{RpcLimits, RpcPool};

const NODES: usize = 6;

/// A small tree to back up, different for every `seed`.
fn tree(root: &std::path::Path, seed: u64) -> Manifest {
    generate(root, seed, &TreeSpec { sparse_bytes: 1 << 20, max_file_bytes: 1 << 20, files: 16 })
}

fn assert_restores(cli: &TenantCli, work: &std::path::Path, snapshots: &[(&str, &std::path::Path, &Manifest)], when: &str) {
    for (i, (id, source, expected)) in snapshots.iter().enumerate() {
        let target = work.join(format!("restore-{when}-{i}").replace(' ', "-"));
        let diff = cli.restore_diff(id, source, expected, &target);
        assert!(diff.is_empty(), "snapshot {id} {when}: {} differences; first: {:#?}", diff.len(), &diff[..diff.len().min(5)]);
    }
}

/// One request straight to node `id`, with a short deadline and no retries: what that node alone answers.
async fn ask_only(cluster: &Cluster, id: usize, token: &Secret, request: Request) -> Result<strata_transport::Reply, String> {
    let addr = cluster.nodes[id - 1].quic.clone();
    let config = strata_transport::tls::client_config(&cluster.ca_pem(), None).map_err(|e| e.to_string())?;
    let endpoint = strata_transport::endpoint::client_endpoint(addr.parse().map_err(|e| format!("{e}"))?).map_err(|e| e.to_string())?;
    let limits = RpcLimits { request_timeout: Duration::from_secs(5), ..RpcLimits::default() };
    let pool = RpcPool::new(endpoint, config, limits);
    let reply = pool.call(&addr, Some(token), request, Bytes::new()).await.map_err(|e| e.to_string());
    pool.close_all();
    reply
}

/// A networked cluster of [`NODES`] nodes, a tenant `name` with its admin token and a client holding it, and
/// the run's seed; `None` where namespaces cannot be made (the test then skips).
async fn networked_cluster(name: &str) -> anyhow::Result<Option<(Cluster, Secret, ClusterClient, u64)>> {
    let Some(cluster) = Cluster::start_networked(ClusterSpec { nodes: NODES, ..ClusterSpec::default() }).await? else {
        return Ok(None);
    };
    let seed = seed();
    let (_, admin) = cluster.create_tenant(name).await?;
    let client = cluster.client_with_token(admin.expose()).await?;
    Ok(Some((cluster, admin, client, seed)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_peers_is_replaced_and_nothing_acknowledged_is_lost() -> anyhow::Result<()> {
    let Some((cluster, admin, client, seed)) = networked_cluster("blobs").await? else {
        return Ok(());
    };
    let before = Workload::mixed(seed, 40, 1, 1 << 20);
    before.put_all(&client, 8).await?;
    let work = tempfile::tempdir()?;
    let cli = cluster.tenant_cli("laptop", &work.path().join("laptop")).await?;
    cli.json(&["init"]);
    let (source1, source2) = (work.path().join("source1"), work.path().join("source2"));
    let tree1 = tree(&source1, seed);
    let snap1 = cli.backup(&source1);

    let old = cluster.wait_new_leader(None, Duration::from_secs(30)).await?;
    cluster.net().isolate(old)?;
    eprintln!("chaos: cut node {old}, the Raft leader, off from every other node (clients still reach it)");
    let others: Vec<usize> = (1..=NODES).filter(|&i| i != old).collect();
    let new = cluster.wait_leader_among(&others, Some(old), Duration::from_secs(30)).await?;
    eprintln!("chaos: node {new} leads the other {} nodes", others.len());

    // The old leader cannot commit on its own: a metadata write sent only to it is not acknowledged.
    let lonely = ask_only(
        &cluster,
        old,
        &admin,
        Request::CreateToken { tenant: None, roles: RoleSet::of(&[Role::Backup]), ttl_secs: None, label: "lonely".into() },
    )
    .await;
    assert!(lonely.is_err(), "node {old}, cut off from every peer, acknowledged a token it could not replicate: {lonely:?}");

    // The majority keeps taking writes and backups, and serves what was stored before.
    let started = Instant::now();
    let during = Workload::mixed(seed ^ 1, 40, 1, 1 << 20);
    during.put_all(&client, 8).await?;
    let tree2 = tree(&source2, seed ^ 2);
    let snap2 = cli.backup(&source2);
    eprintln!("chaos: 40 blobs and a backup while node {old} was cut off took {:.1} s", started.elapsed().as_secs_f64());
    assert_intact(&before.verify_all(&client, 8).await, "while the old leader was cut off");

    cluster.net().heal()?;
    eprintln!("chaos: healed the network");
    cluster.wait_caught_up(old).await?;

    assert_intact(&before.verify_all(&client, 8).await, "after healing");
    assert_intact(&during.verify_all(&client, 8).await, "after healing (written while the old leader was cut off)");
    assert_restores(&cli, work.path(), &[(&snap1, &source1, &tree1), (&snap2, &source2, &tree2)], "after healing");
    let listed = cli.run(&["--json", "snapshots"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "strata snapshots failed: {}", String::from_utf8_lossy(&listed.stderr));
    let ids: Vec<String> = match serde_json::from_str::<serde_json::Value>(&text)? {
        serde_json::Value::Array(list) => list.iter().filter_map(|s| s["id"].as_str().map(str::to_owned)).collect(),
        other => anyhow::bail!("strata --json snapshots printed {other}"),
    };
    assert_eq!(ids.len(), 2, "both snapshots are listed, once each: {ids:?}");
    assert!(ids.iter().any(|i| i.starts_with(&snap1)) && ids.iter().any(|i| i.starts_with(&snap2)), "{ids:?} vs {snap1}, {snap2}");
    client.close();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_cluster_acknowledges_only_what_it_can_keep_and_a_lossy_link_loses_nothing() -> anyhow::Result<()> {
    let Some((cluster, _, client, seed)) = networked_cluster("blobs").await? else {
        return Ok(());
    };
    let before = Workload::mixed(seed, 40, 1, 1 << 20);
    before.put_all(&client, 8).await?;

    // The leader and one other node on one side, four nodes on the other: the four hold a majority of the
    // voters (at most two of the five are on the leader's side) and four shards of every 4+2 stripe.
    let leader = cluster.wait_new_leader(None, Duration::from_secs(30)).await?;
    let minority = [leader, if leader == 1 { 2 } else { 1 }];
    let majority: Vec<usize> = (1..=NODES).filter(|i| !minority.contains(i)).collect();
    cluster.net().partition(&[&minority, &majority])?;
    eprintln!("chaos: split the cluster into {minority:?} and {majority:?} (clients reach both sides)");
    let new = cluster.wait_leader_among(&majority, Some(leader), Duration::from_secs(30)).await?;
    eprintln!("chaos: node {new} leads the majority");

    // Everything stored before is readable from the majority's four shards.
    assert_intact(&before.verify_all(&client, 8).await, "while the cluster was split");
    // A write needs five of six shards (`extra_shards_for_ack = 1`), so no side may acknowledge one; whatever
    // a node did acknowledge must say it stored that many, and must read back after healing.
    let during = Workload::mixed(seed ^ 1, 3, 1, 64 << 10);
    let mut acknowledged = Vec::new();
    for b in &during.blobs {
        match client.put_blob(b.id, Bytes::from(during.contents(b))).await {
            Ok(outcome) => {
                assert!(outcome.shards_stored >= 5, "blob {} acknowledged with {outcome:?} while split", b.index);
                acknowledged.push(*b);
            }
            Err(e) => eprintln!("chaos: put of blob {} refused while split: {e}", b.index),
        }
    }
    eprintln!("chaos: {} of {} puts acknowledged while split", acknowledged.len(), during.blobs.len());

    cluster.net().heal()?;
    cluster.wait_new_leader(None, Duration::from_secs(30)).await?;
    let lossy = majority[0];
    eprintln!("chaos: healed; node {lossy} now drops 20 % of the packets it sends and of those it receives");
    cluster.net().lossy(lossy, 20)?;
    let after = Workload::mixed(seed ^ 2, 30, 1, 1 << 20);
    after.put_all(&client, 8).await?;
    assert_intact(&after.verify_all(&client, 8).await, "over a lossy link");
    let dropped = cluster.net().dropped(lossy)?;
    eprintln!("chaos: node {lossy}'s link dropped {dropped} packets");
    assert!(dropped > 10, "the lossy link dropped only {dropped} packets: the fault did not act");
    cluster.net().heal()?;

    assert_intact(&before.verify_all(&client, 8).await, "after healing");
    let written_while_split = Workload { seed: during.seed, blobs: acknowledged };
    assert_intact(&written_while_split.verify_all(&client, 8).await, "after healing (acknowledged while split)");
    client.close();
    Ok(())
}

/// Cuts one direction of every link of node `node`: `deaf` drops what it receives, otherwise what it sends
/// (the host included, so that clients do not wait on it either).
fn one_way(cluster: &Cluster, node: usize, deaf: bool) -> anyhow::Result<()> {
    for other in (0..=NODES).filter(|&i| i != node) {
        if deaf { cluster.net().block(other, node)? } else { cluster.net().block(node, other)? }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_hear_or_cannot_speak_is_replaced_and_catches_up() -> anyhow::Result<()> {
    let Some((cluster, _, client, seed)) = networked_cluster("one-way").await? else {
        return Ok(());
    };
    let blobs = Workload::mixed(seed, 30, 1, 512 << 10);
    blobs.put_all(&client, 8).await?;

    for (round, deaf) in [(0, true), (1, false)] {
        let old = cluster.wait_new_leader(None, Duration::from_secs(30)).await?;
        one_way(&cluster, old, deaf)?;
        let what = if deaf { "receives nothing (it still sends)" } else { "sends nothing (it still receives)" };
        eprintln!("chaos: node {old}, the leader, {what}");
        let started = Instant::now();
        let others: Vec<usize> = (1..=NODES).filter(|&i| i != old).collect();
        let new = cluster.wait_leader_among(&others, Some(old), Duration::from_secs(60)).await?;
        eprintln!("chaos: node {new} leads the others after {:.1} s", started.elapsed().as_secs_f64());
        // The cluster commits metadata without the old leader.
        client.create_token(None, RoleSet::of(&[Role::Backup]), None, &format!("one-way round {round}")).await?;

        cluster.net().heal()?;
        cluster.wait_caught_up(old).await?;
    }
    let labels: Vec<String> =
        client.list_tokens(strata_client::cluster::Credential::Tenant, None).await?.into_iter().map(|t| t.label).collect();
    for round in 0..2 {
        let label = format!("one-way round {round}");
        assert_eq!(labels.iter().filter(|l| **l == label).count(), 1, "token {label:?} is listed once: {labels:?}");
    }
    assert_intact(&blobs.verify_all(&client, 8).await, "after two one-way partitions");
    client.close();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridged_split_then_duplicated_and_slow_links_lose_nothing() -> anyhow::Result<()> {
    let Some((cluster, _, client, seed)) = networked_cluster("bridged").await? else {
        return Ok(());
    };
    let before = Workload::mixed(seed, 30, 1, 512 << 10);
    before.put_all(&client, 8).await?;

    // A bridge: two halves that cannot see each other, and one node that sees both. Only that node reaches all
    // six holders, so writes go through it (clients move on from nodes that refuse).
    let (left, bridge, right) = ([1, 2], 3, [4, 5, 6]);
    cluster.net().cut(&left, &right)?;
    eprintln!("chaos: bridged split {left:?} | {bridge} | {right:?}");
    let started = Instant::now();
    let during = Workload::mixed(seed ^ 1, 20, 1, 256 << 10);
    during.put_all(&client, 4).await?;
    client.create_token(None, RoleSet::of(&[Role::Backup]), None, "bridged").await?;
    eprintln!("chaos: 20 puts and a metadata write across the bridge took {:.1} s", started.elapsed().as_secs_f64());
    assert_intact(&before.verify_all(&client, 8).await, "across a bridged split");
    cluster.net().heal()?;
    cluster.wait_new_leader(None, Duration::from_secs(30)).await?;

    // One node sends a fifth of its packets twice, another's link carries 4 Mbit/s each way.
    cluster.net().duplicate(2, 20)?;
    cluster.net().slow(5, 4_000)?;
    eprintln!("chaos: node 2 duplicates 20 % of what it sends; node 5's link is limited to 4 Mbit/s");
    let after = Workload::mixed(seed ^ 2, 30, 64 << 10, 512 << 10);
    let started = Instant::now();
    after.put_all(&client, 8).await?;
    assert_intact(&after.verify_all(&client, 8).await, "over duplicating and slow links");
    let duplicated = cluster.net().duplicated(2)?;
    eprintln!("chaos: 30 puts over those links took {:.1} s; node 2 sent {duplicated} packets twice", started.elapsed().as_secs_f64());
    assert!(duplicated > 10, "node 2 duplicated only {duplicated} packets: the fault did not act");
    let throttled = cluster.net().throttled(5)?;
    eprintln!("chaos: node 5's token buckets held packets back {throttled} times");
    assert!(throttled > 0, "node 5's link was never slowed: the fault did not act");
    cluster.net().heal()?;

    assert_intact(&before.verify_all(&client, 8).await, "after healing");
    assert_intact(&during.verify_all(&client, 8).await, "after healing (written across the bridge)");
    client.close();
    Ok(())
}

//! Admitting a node to a running cluster with `strata admin join-token` and `strata-node join`.

use std::process::Command;
use std::time::Duration;

use strata_chaos::{Cluster, ClusterSpec, free_tcp_addr, free_udp_addr, node_binary};
use strata_proto::NodeId;

fn join(token: &str, seed: &str, dir: &std::path::Path, quic: &str, metrics: &str, generation: &str) -> std::process::Output {
    Command::new(node_binary().expect("node binary"))
        .args(["join", "--token", token, "--seed", seed, "--listen", quic, "--metrics", metrics])
        .args(["--zone", "zone-new", "--capacity", "1GiB", "--generation", generation, "--data-dir"])
        .arg(dir)
        .output()
        .expect("run strata-node join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_with_a_one_time_token() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(ClusterSpec::default()).await?;
    let op = cluster.operator().await?;
    let token = op.create_join_token(600).await?;
    let dir = cluster.dir().join("node7");
    let (quic, metrics) = (free_udp_addr()?, free_tcp_addr()?);

    // Only the node holding the CA key can sign; a generation must exist; then the join succeeds.
    let elsewhere = join(token.expose(), &cluster.nodes[1].quic, &dir, &quic, &metrics, "gen-1");
    assert!(!elsewhere.status.success());
    assert!(
        String::from_utf8_lossy(&elsewhere.stderr).contains("does not hold the cluster CA key"),
        "{}",
        String::from_utf8_lossy(&elsewhere.stderr)
    );
    let no_gen = join(token.expose(), &cluster.nodes[0].quic, &dir, &quic, &metrics, "gen-nope");
    assert!(String::from_utf8_lossy(&no_gen.stderr).contains("does not exist"), "{}", String::from_utf8_lossy(&no_gen.stderr));
    let ok = join(token.expose(), &cluster.nodes[0].quic, &dir, &quic, &metrics, "gen-1");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("Joined as node-7"), "{}", String::from_utf8_lossy(&ok.stdout));

    // The token is used up.
    let again = join(token.expose(), &cluster.nodes[0].quic, &cluster.dir().join("node8"), &free_udp_addr()?, &free_tcp_addr()?, "gen-1");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("unknown or already used join token"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The new node starts, registers, becomes a Raft member and serves requests.
    let id = cluster.add_node(dir.join("node.toml"), quic.clone(), metrics)?;
    cluster.wait_all_ready(Duration::from_secs(60)).await?;
    cluster
        .wait_for("node 7 to be reachable in the cluster status", Duration::from_secs(30), || async {
            op.status()
                .await
                .is_ok_and(|s| s.nodes.iter().any(|n| n.descriptor.id == NodeId(id as u64) && n.reachable && n.descriptor.addr == quic))
        })
        .await?;
    let health = cluster.health(id).await.expect("node 7 answers /health");
    assert_eq!(health["registered"], true);
    op.close();
    Ok(())
}

//! Repair: a node lost for good is declared Down and its shards are rebuilt on the others, so afterwards the
//! cluster again survives any m further node losses.

use std::time::Duration;

use strata_chaos::fs_tree::{TreeSpec, generate};
use strata_chaos::{Cluster, ClusterSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_node_is_rebuilt_elsewhere_and_then_two_more_may_fail() -> anyhow::Result<()> {
    let spec = ClusterSpec { nodes: 7, partition_bits: 4, extra_config: "[repair]\nnode_down_after_ms = 3000\n", ..ClusterSpec::default() };
    let mut cluster = Cluster::start(spec).await?;
    let work = tempfile::tempdir()?;
    let cli = cluster.tenant_cli("repaired", &work.path().join("laptop")).await?;
    cli.json(&["init"]);
    let source = work.path().join("source");
    let expected = generate(&source, 5, &TreeSpec { sparse_bytes: 4 << 20, max_file_bytes: 2 << 20, files: 20 });
    let id = cli.backup(&source);

    // Node 4 dies for good. After the configured 3 s it is declared Down and every partition it held is rebuilt.
    cluster.kill(4)?;
    cluster
        .wait_for("node 4 to be declared Down and its partitions rebuilt", Duration::from_secs(180), || async {
            let out = cluster.admin(&["status"]);
            let Ok(s) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else { return false };
            let down =
                s["nodes"].as_array().is_some_and(|n| n.iter().any(|n| n["descriptor"]["id"] == 4 && n["descriptor"]["state"] == "Down"));
            let gens = s["migration"]["generations"].as_array().cloned().unwrap_or_default();
            let moving = gens.iter().any(|g| g["partitions"]["moving_out"].as_u64() != Some(0));
            down && s["migration"]["partitions_awaiting_repair"] == 0 && !moving
        })
        .await?;
    let status = cluster.admin_json(&["status"]);
    let on_4 = status["nodes"].as_array().unwrap().iter().find(|n| n["descriptor"]["id"] == 4).unwrap()["partitions"].clone();
    assert_eq!(on_4, 0, "no partition is placed on the lost node any more");

    // Full redundancy is back: two more nodes may fail and the snapshot still restores byte-exact.
    cluster.kill(5)?;
    cluster.kill(6)?;
    cluster.retarget_profile(&cli)?;
    let diff = cli.restore_diff(&id[..8], &source, &expected, &work.path().join("restore"));
    assert!(diff.is_empty(), "after repair and two more losses: {:?}", &diff[..diff.len().min(4)]);
    Ok(())
}

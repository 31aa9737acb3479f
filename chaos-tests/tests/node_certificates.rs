//! Node certificates over time, with real processes: short-lived certificates renew themselves while the
//! cluster runs, and a revoked node is refused at every handshake within seconds while its data is rebuilt.

use std::time::Duration;

use bytes::Bytes;
use strata_chaos::workload::{Workload, assert_intact, seed};
use strata_chaos::{Cluster, ClusterSpec};
use strata_proto::{Request, Role};

fn now_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_renew_themselves_before_they_expire() -> anyhow::Result<()> {
    // Certificates valid for 60 s: each node renews its own when 20 s are left.
    let mut cluster = Cluster::start(ClusterSpec { cert_lifetime: "60s", ..ClusterSpec::default() }).await?;
    let client = cluster.tenant_client("renewals", &[Role::Admin]).await?;
    let work = Workload::mixed(seed(), 40, 1, 1 << 20);
    work.put_all(&client, 4).await?;

    let mut first_expiry = Vec::new();
    for n in &cluster.nodes {
        first_expiry.push(cluster.metric(n.id, "strata_tls_cert_expiry_timestamp_seconds").await.unwrap_or(0.0));
    }
    assert!(first_expiry.iter().all(|e| (*e - now_secs()) < 70.0), "the dev certificates last 60 s: {first_expiry:?}");
    cluster
        .wait_for("every node to renew its certificate", Duration::from_secs(90), || async {
            for (i, n) in cluster.nodes.iter().enumerate() {
                if cluster.metric(n.id, "strata_tls_cert_expiry_timestamp_seconds").await.unwrap_or(0.0) <= first_expiry[i] {
                    return false;
                }
            }
            true
        })
        .await?;
    // Until every original certificate has expired...
    let last = first_expiry.iter().copied().fold(0.0, f64::max);
    cluster.wait_for("the original certificates to expire", Duration::from_secs(60), || async { now_secs() > last + 2.0 }).await?;

    // ... then make every connection new: a restarted node reconnects to its peers (both sides present their
    // renewed certificates, read back from the files the renewal rewrote) and clients connect afresh.
    cluster.kill(3)?;
    cluster.restart(3)?;
    cluster.wait_all_ready(Duration::from_secs(60)).await?;
    let fresh = cluster.tenant_client("after-renewal", &[Role::Admin]).await?;
    fresh.put_blob(strata_proto::ChunkId([3; 32]), Bytes::from_static(b"written after every certificate was replaced")).await?;
    assert_intact(&work.verify_all(&client, 4).await, "after the certificates were renewed");
    client.close();
    fresh.close();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_node_is_refused_within_seconds_and_its_data_rebuilt() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec {
        nodes: 7,
        partition_bits: 4,
        extra_config: "[scrub]\ninterval_ms = 3000\n",
        ..ClusterSpec::default()
    })
    .await?;
    let client = cluster.tenant_client("owner", &[Role::Admin]).await?;
    let work = Workload::mixed(seed(), 60, 1, 1 << 20);
    work.put_all(&client, 4).await?;

    // Node 6 is stolen: it keeps running, with its certificate and key. The operator revokes it.
    let thief = cluster.pool_as_node(6)?;
    thief.call(&cluster.nodes[0].quic, None, Request::Ping, Bytes::new()).await?;
    let revoked = cluster.admin_json(&["node", "revoke", "6"]);
    assert_eq!(revoked["revoked"], 6, "{revoked}");
    cluster
        .wait_for("every node to refuse node 6's certificate", Duration::from_secs(10), || async {
            for n in cluster.nodes.iter().filter(|n| n.id != 6) {
                let pool = cluster.pool_as_node(6).expect("node 6's files");
                let refused = pool.call(&n.quic, None, Request::Ping, Bytes::new()).await.is_err();
                pool.close_all();
                if !refused {
                    return false;
                }
            }
            true
        })
        .await?;
    // Its connection from before the revocation was closed too.
    assert!(thief.call(&cluster.nodes[0].quic, None, Request::Ping, Bytes::new()).await.is_err(), "an old connection still works");

    // The cluster rebuilds what node 6 held on the others; then everything reads back without it.
    cluster
        .wait_for("the partitions on node 6 to be rebuilt elsewhere", Duration::from_secs(120), || async {
            let out = cluster.admin(&["status"]);
            serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok_and(|s| s["migration"]["partitions_awaiting_repair"] == 0)
        })
        .await?;
    let mut cluster = cluster;
    cluster.kill(6)?;
    assert_intact(&work.verify_all(&client, 4).await, "after revoking node 6");
    // Revoking again (a retry) changes nothing; revoking a node that does not exist says so.
    assert_eq!(cluster.admin_json(&["node", "revoke", "6"])["revoked"], 6);
    let unknown = cluster.admin(&["node", "revoke", "99"]);
    assert!(!unknown.status.success() && String::from_utf8_lossy(&unknown.stderr).contains("not a member"), "{unknown:?}");
    let audit = cluster.admin_json(&["audit"]);
    assert!(audit.to_string().contains("revoked node-6"), "{audit}");
    Ok(())
}

//! Replacing the cluster CA with real processes while backups and restores go on: nodes renew onto the new
//! CA, a laptop that knows only the old CA keeps restoring through the overlap and picks up the new one,
//! and once the rotation is finished a certificate minted with the old CA's key opens nothing, the old key
//! is gone from every node, and the cluster still admits nodes.

use std::time::Duration;

use strata_chaos::fs_tree::{TreeSpec, generate};
use strata_chaos::{Cluster, ClusterSpec, TenantCli};
use strata_client::Profile;
use strata_proto::{NodeId, Request};

fn cert_count(pem: &str) -> usize {
    strata_transport::tls::certs_from_pem(pem, "CA").map(|c| c.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_ca_is_replaced_while_clients_keep_working() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(ClusterSpec::default()).await?;
    let work = tempfile::tempdir()?;
    let cli = cluster.tenant_cli("rotating", &work.path().join("laptop")).await?;
    cli.json(&["init"]);
    let source = work.path().join("source");
    let tree = generate(&source, 31, &TreeSpec { sparse_bytes: 1 << 20, max_file_bytes: 400_000, files: 20 });
    let first = cli.backup(&source);

    // A second laptop of the tenant whose profile names its own copy of the old CA, and stays away during
    // the rotation.
    let old_ca = cluster.ca_pem();
    let away = work.path().join("away");
    std::fs::create_dir_all(&away)?;
    std::fs::write(away.join("ca.pem"), &old_ca)?;
    let mut profile = Profile::load(&cli.profile)?;
    profile.ca_cert = away.join("ca.pem");
    profile.save(&away.join("profile.toml"))?;
    let away_cli = TenantCli { profile: away.join("profile.toml"), password_file: cli.password_file.clone(), tenant: cli.tenant };
    let old_key = std::fs::read_to_string(cluster.nodes[0].config.with_file_name("tls").join("ca.key"))?;

    cluster
        .wait_for("a node to be recorded as holding the CA key", Duration::from_secs(30), || async {
            cluster.admin_json(&["status"])["ca_holders"].as_array().is_some_and(|h| !h.is_empty())
        })
        .await?;
    cluster.admin_json(&["ca", "rotate"]);
    let again = cluster.admin(&["ca", "rotate"]);
    assert!(!again.status.success(), "a second rotation was begun while one is in progress");
    cluster
        .wait_for("every node to renew onto the new CA", Duration::from_secs(120), || async {
            let s = cluster.admin_json(&["ca", "status"]);
            s["trusted_cas"].as_array().is_some_and(|c| c.len() == 2) && s["pending"].as_array().is_some_and(|p| p.is_empty())
        })
        .await?;

    // During the overlap: the old-CA laptop restores (accepting the nodes' new certificates through the new
    // CA's certificate signed by the old one) and learns the new CA; the other one backs up.
    assert_eq!(cert_count(&std::fs::read_to_string(away.join("ca.pem"))?), 1);
    let diff = away_cli.restore_diff(&first[..8], &source, &tree, &work.path().join("overlap"));
    assert!(diff.is_empty(), "a client of the old CA during the rotation: {diff:?}");
    assert_eq!(cert_count(&std::fs::read_to_string(away.join("ca.pem"))?), 2, "the laptop picked up the new CA");
    let second = cli.backup(&source);

    cluster.admin_json(&["ca", "finish"]);
    let status = cluster.admin_json(&["ca", "status"]);
    assert_eq!(status["trusted_cas"].as_array().map(Vec::len), Some(1), "{status}");
    assert!(status["pending"].is_null(), "{status}");

    // The old CA's key, as a thief of node 1's disk would have it, mints a certificate for a member: refused.
    let ca = strata_node::pki::CaMaterial { cert_pem: old_ca.clone(), key_pem: old_key.clone() };
    let forged = strata_node::pki::issue_node_identity(&ca, NodeId(3), 3600)?;
    let mut chain = strata_transport::tls::certs_from_pem(&forged.cert_pem, "forged")?;
    chain.extend(strata_transport::tls::certs_from_pem(&old_ca, "old CA")?);
    let trusted = std::fs::read_to_string(away.join("ca.pem"))?;
    let config =
        strata_transport::tls::client_config(&trusted, Some((chain, strata_transport::tls::key_from_pem(&forged.key_pem, "key")?)))?;
    let forger = strata_transport::RpcPool::new(
        strata_transport::endpoint::client_endpoint(cluster.nodes[0].quic.parse()?)?,
        config,
        strata_transport::RpcLimits::default(),
    );
    // Every node follows the finished rotation within seconds (it polls the applied state every second).
    cluster
        .wait_for("every node to refuse certificates from the old CA", Duration::from_secs(15), || async {
            let mut refused = true;
            for n in &cluster.nodes {
                refused &= forger.call(&n.quic, None, Request::Ping, bytes::Bytes::new()).await.is_err();
            }
            refused
        })
        .await?;
    forger.close_all();
    // A node's real, renewed certificate still works.
    let real = cluster.pool_as_node(2)?;
    real.call(&cluster.nodes[0].quic, None, Request::Ping, bytes::Bytes::new()).await?;
    real.close_all();
    // The old key is on no node any more.
    for n in &cluster.nodes {
        let key = std::fs::read_to_string(n.config.with_file_name("tls").join("ca.key")).unwrap_or_default();
        assert_ne!(key, old_key, "node {} still keeps the old CA key", n.id);
    }

    // After the rotation: both laptops restore everything, and a node joins with a certificate from the new CA.
    for (who, client) in [("away", &away_cli), ("home", &cli)] {
        for id in [&first, &second] {
            let diff = client.restore_diff(&id[..8], &source, &tree, &work.path().join(format!("after-{who}-{}", &id[..8])));
            assert!(diff.is_empty(), "{who} restoring {id} after the rotation: {diff:?}");
        }
    }
    assert_eq!(cert_count(&std::fs::read_to_string(away.join("ca.pem"))?), 1, "the laptop dropped the old CA");
    let joined = cluster.join_nodes("gen-1", 1).await?;
    assert_eq!(joined, vec![7]);
    Ok(())
}

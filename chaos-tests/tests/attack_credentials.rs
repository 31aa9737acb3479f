//! Attacks on credentials against real node processes: made-up join tokens must not reach the Raft log, an
//! operator must not obtain a token that reads a tenant's data, a device token must not replace the key file
//! or touch another tenant's sessions, and a revoked token must stop working on every node.

use std::time::Duration;

use bytes::Bytes;
use strata_chaos::{Cluster, ClusterSpec};
use strata_client::ClientError;
use strata_client::cluster::Credential;
use strata_proto::{ChunkId, ErrorCode, Request, Role, RoleSet, Secret};
use strata_transport::{RpcLimits, RpcPool};

fn code(e: &ClientError) -> Option<ErrorCode> {
    match e {
        ClientError::Rpc(r) => r.code(),
        _ => None,
    }
}

/// The last Raft log index on node `id`, once it has not moved for two seconds.
async fn settled_log_index(cluster: &Cluster, id: usize) -> anyhow::Result<f64> {
    let mut last = -1.0;
    let mut since = std::time::Instant::now();
    loop {
        let now = cluster.metric(id, "strata_raft_last_log_index").await.unwrap_or(-1.0);
        if now != last {
            (last, since) = (now, std::time::Instant::now());
        } else if since.elapsed() > Duration::from_secs(2) {
            return Ok(last);
        }
        anyhow::ensure!(since.elapsed() < Duration::from_secs(60), "the Raft log never settled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_join_tokens_never_reach_the_raft_log() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec::default()).await?;
    let leader = cluster.wait_new_leader(None, Duration::from_secs(30)).await?;
    // The cluster's own background writes first: every voter takes over the CA key and records it.
    cluster
        .wait_for("every voter to hold the CA key", Duration::from_secs(60), || async {
            let out = cluster.admin(&["status"]);
            serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok_and(|s| {
                let voters = s["voters"].as_array().cloned().unwrap_or_default();
                let holders = s["ca_holders"].as_array().cloned().unwrap_or_default();
                !voters.is_empty() && voters.iter().all(|v| holders.contains(v))
            })
        })
        .await?;
    let before = settled_log_index(&cluster, leader).await?;

    // Fifty join requests with well-formed tokens that were never issued, naming the public generation name.
    let addr: std::net::SocketAddr = cluster.nodes[0].quic.parse()?;
    let pool = RpcPool::new(
        strata_transport::endpoint::client_endpoint(addr)?,
        strata_transport::tls::client_config(&cluster.ca_pem(), None)?,
        RpcLimits::default(),
    );
    let (_key, csr) = strata_node::pki::new_csr()?;
    let (mut refused, mut limited) = (0, 0);
    for i in 0..50u8 {
        let fake = Secret(format!("stj1_{}_{}", hex::encode([i; 32]), hex::encode([0u8; 32])));
        let join = Request::Join {
            csr_der: csr.clone(),
            addr: "127.0.0.1:1".into(),
            zone: "z".into(),
            capacity_bytes: 1 << 30,
            generation: "gen-1".into(),
        };
        match pool.call(&cluster.nodes[0].quic, Some(&fake), join, Bytes::new()).await {
            Err(e) if e.code() == Some(ErrorCode::Unauthenticated) => refused += 1,
            Err(e) if e.code() == Some(ErrorCode::Unavailable) && e.to_string().contains("join requests a minute") => limited += 1,
            other => panic!("a made-up join token got {other:?}"),
        }
    }
    pool.close_all();
    eprintln!("{refused} made-up join tokens refused, {limited} rate-limited");
    assert!(refused >= 1 && limited >= 1, "refused {refused}, rate-limited {limited}");
    assert!(refused <= 10, "at most 10 joins a minute are even looked at, {refused} were");
    assert_eq!(settled_log_index(&cluster, leader).await?, before, "a refused join wrote to the Raft log");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_never_get_tenant_tokens_and_device_tokens_stay_in_their_lane() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec::default()).await?;
    let op = cluster.operator().await?;
    let (alice_id, alice) = cluster.create_tenant("alice").await?;
    let (bob_id, bob) = cluster.create_tenant("bob").await?;

    // The operator handed out alice's first admin token with the tenant; it cannot make another, nor any
    // token that reads her data, whatever token it presents the request with.
    let as_tenant = cluster.client_with_token(cluster_operator_token(&cluster).expose()).await?;
    for roles in [&[Role::Admin][..], &[Role::Restore], &[Role::Backup]] {
        let e = as_tenant.create_token(Some(alice_id), RoleSet::of(roles), None, "snooping").await.unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::PermissionDenied), "{roles:?}: {e}");
    }
    as_tenant.close();

    // Alice's admin makes a laptop token; the laptop cannot replace the key file nor make tokens.
    let admin = cluster.client_with_token(alice.expose()).await?;
    let laptop_token = cluster.device_token(&alice, &[Role::Backup], "alice-laptop").await?;
    let laptop = cluster.client_with_token(laptop_token.expose()).await?;
    admin.put_key_file("version = 1\n".into(), *blake3::hash(&[1; 32]).as_bytes(), None).await?;
    let e = laptop.put_key_file("attacker's key".into(), [0; 32], Some([1; 32])).await.unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::PermissionDenied), "a backup token replaced the key file: {e}");
    assert_eq!(laptop.get_key_file().await?.as_deref(), Some("version = 1\n"));
    let e = laptop.create_token(None, RoleSet::of(&[Role::Restore]), None, "escalate").await.unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::PermissionDenied), "{e}");

    // Bob cannot close alice's upload session, and session ids give nothing away.
    let (s1, _) = laptop.open_session().await?;
    let (s2, _) = laptop.open_session().await?;
    assert!(s1.0.abs_diff(s2.0) > 1, "session ids {} and {} look sequential", s1.0, s2.0);
    let bob_client = cluster.client_with_token(bob.expose()).await?;
    let e = bob_client.abort_session(s1).await.unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::NotFound), "{e}");
    laptop.renew_session(s1).await?;

    // The laptop is stolen: the admin lists alice's tokens and revokes it. Within seconds no node accepts it.
    let listed = admin.list_tokens(Credential::Tenant, None).await?;
    let entry = listed.iter().find(|t| t.label == "alice-laptop").expect("the laptop's token is listed");
    assert!(listed.iter().all(|t| t.tenant == Some(alice_id)), "a tenant admin sees only its tenant's tokens");
    assert!(entry.expires_at_ms.is_some(), "device tokens expire by default");
    admin.revoke_token(Credential::Tenant, entry.id).await?;
    for n in &cluster.nodes {
        let pinned = strata_client::ClusterClient::new(
            std::sync::Arc::new(RpcPool::new(
                strata_transport::endpoint::client_endpoint(n.quic.parse()?)?,
                strata_transport::tls::client_config(&cluster.ca_pem(), None)?,
                RpcLimits::default(),
            )),
            vec![n.quic.clone()],
            Some(laptop_token.clone()),
            None,
        );
        let e = pinned.get_blob(ChunkId([1; 32])).await.unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::Unauthenticated), "node {} still accepts the revoked token: {e}", n.id);
        pinned.close();
    }

    // Bob's admin token leaks. Bob cannot revoke his only admin token himself; the operator revokes it and
    // hands bob a new one, once: the leaked one stops working and the operator cannot mint a second.
    let bob_admin = op.list_tokens(Credential::Operator, Some(bob_id)).await?.into_iter().find(|t| t.roles.allows(Role::Admin));
    let bob_admin = bob_admin.expect("bob's admin token is listed");
    let e = bob_client.revoke_token(Credential::Tenant, bob_admin.id).await.unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::Conflict), "{e}");
    op.revoke_token(Credential::Operator, bob_admin.id).await?;
    let replacement = op.replace_tenant_admin_token(bob_id).await?;
    let e = op.replace_tenant_admin_token(bob_id).await.unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::PermissionDenied), "a second replacement: {e}");
    let new_bob = cluster.client_with_token(replacement.expose()).await?;
    new_bob.list_snapshots().await?;
    new_bob.close();
    let e = bob_client.list_snapshots().await.unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::Unauthenticated), "the leaked admin token still works: {e}");

    // Every issue and revocation is in the audit log, with who did it.
    let audit = op.audit_log().await?;
    let lines: Vec<String> = audit.iter().map(|e| format!("{}: {}", e.actor, e.what)).collect();
    assert!(lines.iter().any(|l| l.starts_with("an operator: issued token") && l.contains("for tenant-")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("an admin of tenant-") && l.contains("\"alice-laptop\"")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("revoked token") && l.contains("alice-laptop")), "{lines:#?}");
    for c in [admin, laptop, bob_client, op] {
        c.close();
    }
    Ok(())
}

fn cluster_operator_token(cluster: &Cluster) -> Secret {
    let manifest = std::fs::read_to_string(cluster.dir().join("dev.toml")).expect("manifest");
    let v: toml::Value = toml::from_str(&manifest).expect("toml");
    Secret(v["operator_token"].as_str().expect("operator token").to_owned())
}

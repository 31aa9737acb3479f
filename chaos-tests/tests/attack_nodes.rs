//! Attacks with a node certificate, as a compromised node (or a thief of its files) would make them against
//! real node processes: it must not mint credentials through metadata forwarding, speak for another node in
//! Raft or registration, claim to hold the CA key, and a certificate of a node the cluster never admitted must
//! open nothing.

use bytes::Bytes;
use strata_chaos::{Cluster, ClusterSpec};
use strata_node::meta::authority::{Actor, Origin};
use strata_node::meta::command::{MetaCommand, MetaResponse};
use strata_node::meta::{ForwardReply, ForwardRequest};
use strata_proto::{ErrorCode, NodeAnnouncement, NodeId, PartitionId, Request, Role, RoleSet, Secret};
use strata_transport::{RpcError, RpcPool};

/// Forwards `cmd` to node 1 as the leader-bound write of a compromised node; returns the leader's verdict.
async fn forward(pool: &RpcPool, cluster: &Cluster, cmd: MetaCommand, origin: Origin) -> anyhow::Result<MetaResponse> {
    let body = postcard::to_stdvec(&ForwardRequest::Write { cmd, origin })?;
    let reply = pool.call(&cluster.nodes[0].quic, None, Request::Meta, Bytes::from(body)).await?;
    match postcard::from_bytes::<ForwardReply>(&reply.body)? {
        ForwardReply::Written(r) => Ok(r),
        other => anyhow::bail!("unexpected forward reply {other:?}"),
    }
}

fn refused(r: &MetaResponse, code: ErrorCode) -> bool {
    matches!(r, MetaResponse::Rejected(e) if e.code == code)
}

fn remote_code(r: &Result<strata_transport::Reply, RpcError>) -> Option<ErrorCode> {
    r.as_ref().err().and_then(RpcError::code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certificate_cannot_mint_credentials_or_impersonate_other_nodes() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec::default()).await?;
    let rogue = cluster.pool_as_node(6)?;

    // Mint an operator token, or a tenant, through metadata forwarding: refused by whoever receives it, and by
    // the leader, which checks the credential that comes with a forwarded write itself.
    let mint = MetaCommand::IssueToken {
        digest: Secret("stk1_rogue".into()).digest(),
        tenant: None,
        roles: RoleSet::of(&[Role::Operator]),
        expires_at_ms: None,
        label: "rogue".into(),
        now_ms: 1,
        issuer: Actor::Operator,
    };
    let r = forward(&rogue, &cluster, mint.clone(), Origin::Node).await?;
    assert!(refused(&r, ErrorCode::PermissionDenied), "a node minted an operator token: {r:?}");
    let r = forward(&rogue, &cluster, mint, Origin::Token(Secret("stk1_made_up".into()))).await?;
    assert!(refused(&r, ErrorCode::Unauthenticated), "{r:?}");
    let tenant = MetaCommand::CreateTenant { name: "rogue".into(), now_ms: 1 };
    assert!(refused(&forward(&rogue, &cluster, tenant, Origin::Node).await?, ErrorCode::PermissionDenied));

    // Re-register node 3 at an address of its choosing (to receive its traffic): refused on both paths.
    let hijack = NodeAnnouncement {
        id: NodeId(3),
        addr: "127.0.0.1:9".into(),
        zone: "z".into(),
        capacity_bytes: 1 << 30,
        generation: "gen-1".into(),
    };
    assert!(refused(
        &forward(&rogue, &cluster, MetaCommand::RegisterNode(hijack.clone()), Origin::Node).await?,
        ErrorCode::PermissionDenied
    ));
    let direct = rogue.call(&cluster.nodes[0].quic, None, Request::RegisterNode { node: hijack }, Bytes::new()).await;
    assert_eq!(remote_code(&direct), Some(ErrorCode::PermissionDenied), "{direct:?}");

    // Campaign in node 2's name.
    let vote = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(1_000, 2), None);
    let raft = rogue
        .call(&cluster.nodes[0].quic, None, Request::Raft { rpc: strata_proto::RaftRpc::Vote }, Bytes::from(postcard::to_stdvec(&vote)?))
        .await;
    assert_eq!(remote_code(&raft), Some(ErrorCode::PermissionDenied), "{raft:?}");

    // Claim to hold the CA key (so that the real holders' generation could be dropped) without it: refused,
    // whether the proof is junk or signed by another CA.
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    let other_ca = strata_node::pki::generate_ca("not this cluster")?;
    for proof in [b"junk".to_vec(), strata_node::pki::holder_proof(&other_ca, NodeId(6), now_ms)?] {
        let claim = MetaCommand::RecordCaHolder { node: NodeId(6), now_ms, proof };
        let r = forward(&rogue, &cluster, claim, Origin::Node).await?;
        assert!(refused(&r, ErrorCode::PermissionDenied), "a node recorded itself as a CA key holder without the key: {r:?}");
    }
    // End every live backup's upload session (a compromised node knows their stamps: it holds the state).
    // Only the leader ends sessions, for itself: a forwarded DropSessions is refused, and the session lives on.
    let (_, admin) = cluster.create_tenant("victim").await?;
    let victim = cluster.client_with_token(admin.expose()).await?;
    let (session, _) = victim.open_session().await?;
    let stamps = (0..4u64).map(|i| (session, now_ms.saturating_sub(i * 1000))).collect();
    let r = forward(&rogue, &cluster, MetaCommand::DropSessions { sessions: stamps }, Origin::Node).await?;
    assert!(refused(&r, ErrorCode::PermissionDenied), "a node ended a tenant's upload session: {r:?}");
    victim.renew_session(session).await?;
    victim.abort_session(session).await?;
    victim.close();
    rogue.close_all();

    // A certificate the CA signed for a node the cluster never admitted (node 99) opens no shard.
    let ca = strata_node::pki::CaMaterial {
        cert_pem: cluster.ca_pem(),
        key_pem: std::fs::read_to_string(cluster.nodes[0].config.with_file_name("tls").join("ca.key"))?,
    };
    let stranger = strata_node::pki::issue_node_identity(&ca, NodeId(99), 3600)?;
    let mut chain = strata_transport::tls::certs_from_pem(&stranger.cert_pem, "cert")?;
    chain.extend(strata_transport::tls::certs_from_pem(&cluster.ca_pem(), "ca")?);
    let config = strata_transport::tls::client_config(
        &cluster.ca_pem(),
        Some((chain, strata_transport::tls::key_from_pem(&stranger.key_pem, "key")?)),
    )?;
    let pool = RpcPool::new(
        strata_transport::endpoint::client_endpoint(cluster.nodes[0].quic.parse()?)?,
        config,
        strata_transport::RpcLimits::default(),
    );
    let scan = Request::ScanShards { partition: PartitionId(0), after: None, limit: 10, min_epoch: strata_proto::Epoch(0) };
    let r = pool.call(&cluster.nodes[0].quic, None, scan, Bytes::new()).await;
    assert_eq!(remote_code(&r), Some(ErrorCode::PermissionDenied), "{r:?}");
    assert!(format!("{r:?}").contains("not a member"), "{r:?}");
    pool.close_all();
    Ok(())
}

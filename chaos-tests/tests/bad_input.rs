//! Bad input and hostile callers against real node processes: every one gets a clear error, and the data the
//! cluster already holds stays intact.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use strata_chaos::workload::{Workload, assert_intact, seed};
use strata_chaos::{Cluster, ClusterSpec};
use strata_client::ClientError;
use strata_proto::frame::{self, FrameKind};
use strata_proto::{ChunkId, ErrorCode, Request, RequestEnvelope, ResponseEnvelope, Role, RoleSet, Secret};
use strata_transport::wire;

fn code(e: &ClientError) -> Option<ErrorCode> {
    match e {
        ClientError::Rpc(r) => r.code(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_roles_and_tenants_are_enforced() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec::default()).await?;
    let (_, alice) = cluster.create_tenant("alice").await?;
    let alice_admin = cluster.client_with_token(alice.expose()).await?;
    let alice_backup = cluster.client_with_token(cluster.device_token(&alice, &[Role::Backup], "test").await?.expose()).await?;
    let alice_restore = cluster.client_with_token(cluster.device_token(&alice, &[Role::Restore], "test").await?.expose()).await?;
    let bob = cluster.tenant_client("bob", &[Role::Admin]).await?;

    let id = ChunkId([7; 32]);
    alice_admin.put_blob(id, Bytes::from_static(b"alice's secret chunk")).await?;

    // Another tenant cannot read, probe or delete it, even knowing its id.
    assert_eq!(code(&bob.get_blob(id).await.unwrap_err()), Some(ErrorCode::NotFound));
    assert_eq!(bob.has_blobs(&[id]).await?, vec![false]);
    assert!(!bob.delete_blob(id).await?, "bob's delete must not find alice's blob");
    assert_eq!(alice_admin.get_blob(id).await?, b"alice's secret chunk");

    // A backup token appends and reads but never deletes; a restore token only reads.
    alice_backup.put_blob(ChunkId([8; 32]), Bytes::from_static(b"from the laptop")).await?;
    assert_eq!(alice_backup.get_blob(id).await?, b"alice's secret chunk");
    let denied = alice_backup.delete_blob(id).await.unwrap_err();
    assert_eq!(code(&denied), Some(ErrorCode::PermissionDenied), "{denied}");
    assert_eq!(denied.exit_code(), strata_client::error::exit::AUTH);
    assert_eq!(
        code(&alice_restore.put_blob(ChunkId([9; 32]), Bytes::from_static(b"x")).await.unwrap_err()),
        Some(ErrorCode::PermissionDenied)
    );
    assert_eq!(alice_restore.get_blob(ChunkId([8; 32])).await?, b"from the laptop");

    // Operators run the cluster but cannot read tenant data; tenants cannot run the cluster.
    let op_read = cluster.client_with_token(&cluster_operator_token(&cluster)).await?;
    assert_eq!(code(&op_read.get_blob(id).await.unwrap_err()), Some(ErrorCode::PermissionDenied));
    let tenant_as_operator = alice_admin.create_tenant("mallory").await.unwrap_err();
    assert!(matches!(tenant_as_operator, ClientError::MissingCredential(_)), "{tenant_as_operator}");

    // Unknown and expired tokens.
    let bogus = cluster.client_with_token("stk1_0000000000000000000000000000000000000000000000000000000000000000").await?;
    let e = bogus.get_blob(id).await.unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::Unauthenticated), "{e}");
    let short = alice_admin.create_token(None, RoleSet::of(&[Role::Restore]), Some(1), "expires").await?;
    let short = cluster.client_with_token(short.expose()).await?;
    cluster
        .wait_for("the one-second token to expire", Duration::from_secs(15), || async {
            matches!(short.get_blob(id).await, Err(e) if code(&e) == Some(ErrorCode::TokenExpired))
        })
        .await?;
    assert_eq!(alice_admin.get_blob(id).await?, b"alice's secret chunk");
    Ok(())
}

fn cluster_operator_token(cluster: &Cluster) -> String {
    let manifest = std::fs::read_to_string(cluster.dir().join("dev.toml")).expect("manifest");
    let v: toml::Value = toml::from_str(&manifest).expect("toml");
    v["operator_token"].as_str().expect("operator token").to_owned()
}

/// Sends raw bytes on a new stream and returns the node's reply envelope.
async fn exchange(conn: &quinn::Connection, bytes: &[u8]) -> anyhow::Result<ResponseEnvelope> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(bytes).await?;
    send.finish()?;
    Ok(wire::read_frame(&mut recv, FrameKind::Response, 1 << 20).await?)
}

fn error_code(r: &ResponseEnvelope) -> Option<ErrorCode> {
    r.result.as_ref().err().map(|e| e.code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_clear_errors_and_the_node_keeps_serving() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec::default()).await?;
    let client = cluster.tenant_client("victim", &[Role::Admin]).await?;
    let work = Workload::mixed(seed(), 30, 1, 1 << 20);
    work.put_all(&client, 4).await?;

    let conn = cluster.raw_connection(1).await?;
    let r = exchange(&conn, b"GET / HTTP/1.1\r\n\r\n").await?;
    assert_eq!(error_code(&r), Some(ErrorCode::BadRequest), "{r:?}");
    assert!(format!("{r:?}").contains("not a Strata frame"));

    let mut wrong_version = frame::encode(FrameKind::Request, &RequestEnvelope { auth: None, body_len: 0, request: Request::Ping });
    wrong_version[4..6].copy_from_slice(&9u16.to_be_bytes());
    assert_eq!(error_code(&exchange(&conn, &wrong_version).await?), Some(ErrorCode::UnsupportedVersion));

    let oversize = frame::encode_header(FrameKind::Request, u32::MAX);
    assert_eq!(error_code(&exchange(&conn, &oversize).await?), Some(ErrorCode::TooLarge));

    let mut truncated = frame::encode_header(FrameKind::Request, 100).to_vec();
    truncated.extend_from_slice(&[1, 2, 3]);
    assert_eq!(error_code(&exchange(&conn, &truncated).await?), Some(ErrorCode::BadRequest));

    let mut garbage_payload = frame::encode_header(FrameKind::Request, 64).to_vec();
    garbage_payload.extend((0..64u8).map(|i| i.wrapping_mul(151)));
    assert_eq!(error_code(&exchange(&conn, &garbage_payload).await?), Some(ErrorCode::BadRequest));

    let huge_body = RequestEnvelope { auth: None, body_len: 1 << 40, request: Request::PutBlob { id: ChunkId([1; 32]) } };
    assert_eq!(error_code(&exchange(&conn, &frame::encode(FrameKind::Request, &huge_body)).await?), Some(ErrorCode::TooLarge));

    let sneaky = RequestEnvelope {
        auth: None,
        body_len: 0,
        request: Request::DeleteShard {
            key: strata_proto::ShardKey {
                partition: strata_proto::PartitionId(0),
                tenant: strata_proto::TenantId(1),
                chunk: work.blobs[0].id,
                index: 0,
            },
        },
    };
    let r = exchange(&conn, &frame::encode(FrameKind::Request, &sneaky)).await?;
    assert_eq!(error_code(&r), Some(ErrorCode::PermissionDenied), "internal requests need a node certificate: {r:?}");

    // Noise that is not QUIC at all, straight at the UDP port.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
    for i in 0..200u32 {
        udp.send_to(&i.to_le_bytes().repeat(40), &cluster.nodes[0].quic)?;
    }

    // The node still serves, and nothing stored was damaged.
    let ping = RequestEnvelope { auth: None, body_len: 0, request: Request::Ping };
    assert!(exchange(&conn, &frame::encode(FrameKind::Request, &ping)).await?.result.is_ok());
    assert_intact(&work.verify_all(&client, 4).await, "after the malformed requests");
    Ok(())
}

/// One batched put on a raw stream: the frame, then the concatenated body.
fn batch_request(token: &str, blobs: Vec<(ChunkId, u32)>, body: &[u8]) -> Vec<u8> {
    let env = RequestEnvelope { auth: Some(Secret(token.to_owned())), body_len: body.len() as u64, request: Request::PutBlobs { blobs } };
    let mut bytes = frame::encode(FrameKind::Request, &env);
    bytes.extend_from_slice(body);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_batches_are_refused_whole_and_good_batches_store_every_blob() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec::default()).await?;
    let (_, token) = cluster.create_tenant("batcher").await?;
    let client = cluster.client_with_token(token.expose()).await?;
    let conn = cluster.raw_connection(1).await?;
    let (a, b) = (ChunkId([0xa1; 32]), ChunkId([0xb2; 32]));

    let short_body = exchange(&conn, &batch_request(token.expose(), vec![(a, 10), (b, 10)], &[7; 15])).await?;
    assert_eq!(error_code(&short_body), Some(ErrorCode::BadRequest), "{short_body:?}");
    assert!(format!("{short_body:?}").contains("more than the body"), "{short_body:?}");
    let long_body = exchange(&conn, &batch_request(token.expose(), vec![(a, 10)], &[7; 15])).await?;
    assert_eq!(error_code(&long_body), Some(ErrorCode::BadRequest), "{long_body:?}");
    assert!(format!("{long_body:?}").contains("5 body bytes are not covered"), "{long_body:?}");
    let huge_item = exchange(&conn, &batch_request(token.expose(), vec![(a, u32::MAX)], &[])).await?;
    assert_eq!(error_code(&huge_item), Some(ErrorCode::TooLarge), "{huge_item:?}");
    let too_many =
        exchange(&conn, &batch_request(token.expose(), (0..5000u32).map(|i| (ChunkId([i as u8; 32]), 0)).collect(), &[])).await?;
    assert_eq!(error_code(&too_many), Some(ErrorCode::TooLarge), "{too_many:?}");
    assert!(format!("{too_many:?}").contains("5000 blobs"), "{too_many:?}");
    let anonymous = RequestEnvelope { auth: None, body_len: 0, request: Request::PutBlobs { blobs: vec![(a, 0)] } };
    let r = exchange(&conn, &frame::encode(FrameKind::Request, &anonymous)).await?;
    assert_eq!(error_code(&r), Some(ErrorCode::Unauthenticated), "{r:?}");
    // A refused batch stores nothing, not even its well-formed first item.
    for id in [a, b] {
        let e = client.get_blob(id).await.expect_err("a refused batch stored a blob");
        assert_eq!(code(&e), Some(ErrorCode::NotFound), "{e}");
    }

    // A good batch of mixed sizes, including an empty blob, stores every blob readable on its own.
    let work = Workload::mixed(seed(), 60, 1, 256 << 10);
    let mut batch: Vec<(ChunkId, Bytes)> = work.blobs.iter().map(|w| (w.id, Bytes::from(work.contents(w)))).collect();
    batch.push((ChunkId([0xe0; 32]), Bytes::new()));
    let results = client.put_blobs(&batch).await?;
    assert_eq!(results.len(), batch.len());
    for (r, (id, data)) in results.iter().zip(&batch) {
        let outcome = r.as_ref().map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
        assert_eq!(outcome.shards_stored, outcome.shards_total, "{id} was stored degraded on a healthy cluster");
        assert_eq!(&client.get_blob(*id).await?[..], &data[..], "{id} read back different bytes");
    }
    assert_intact(&work.verify_all(&client, 4).await, "after the batched put");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_another_cluster_are_refused() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec::default()).await?;
    let foreign = tempfile::tempdir()?;
    let out = std::process::Command::new(strata_chaos::node_binary()?)
        .args(["init", "--capacity", "1GiB", "--data-dir"])
        .arg(foreign.path())
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let read = |f: &str| std::fs::read_to_string(foreign.path().join("tls").join(f)).expect("foreign tls file");

    // A client that trusts another cluster's CA refuses our nodes.
    let mut profile = strata_client::Profile::load(&foreign.path().join("operator.toml"))?;
    profile.nodes = vec![cluster.nodes[0].quic.clone()];
    let stranger = strata_client::ClusterClient::from_profile(&profile).await?;
    let e = stranger.status().await.unwrap_err();
    assert!(e.to_string().contains("TLS handshake failed"), "{e}");

    // A node certificate from another cluster is refused by ours, even when it trusts our CA.
    let chain = strata_transport::tls::certs_from_pem(&read("node.pem"), "node")?;
    let key = strata_transport::tls::key_from_pem(&read("node.key"), "key")?;
    let config = strata_transport::tls::client_config(&cluster.ca_pem(), Some((chain, key)))?;
    let addr: std::net::SocketAddr = cluster.nodes[0].quic.parse()?;
    let endpoint = strata_transport::endpoint::client_endpoint(addr)?;
    let pool = strata_transport::RpcPool::new(endpoint, config, strata_transport::RpcLimits::default());
    let announce = strata_proto::NodeAnnouncement {
        id: strata_proto::NodeId(1),
        addr: "10.6.6.6:7401".into(),
        zone: "evil".into(),
        capacity_bytes: 1,
        generation: "gen-1".into(),
    };
    let r = pool.call(&cluster.nodes[0].quic, None, Request::RegisterNode { node: announce }, Bytes::new()).await;
    let e = r.expect_err("a foreign node certificate was accepted");
    eprintln!("foreign node refused with: {e}");
    assert!(
        e.is_unreachable() && e.to_string().contains("refused our TLS credentials"),
        "refused in the TLS handshake, not by a handler: {e}"
    );

    // And the cluster's own map still has node 1 at its real address.
    let op = cluster.operator().await?;
    let status = op.status().await?;
    assert_eq!(status.nodes[0].descriptor.addr, cluster.nodes[0].quic);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cluster_refuses_writes_and_keeps_its_data() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec { capacity: "2MiB", ..ClusterSpec::default() }).await?;
    let client = cluster.tenant_client("filler", &[Role::Admin]).await?;
    let mut stored = Vec::new();
    let mut refusal = None;
    for i in 0..200u32 {
        let id = ChunkId(*blake3::hash(&i.to_le_bytes()).as_bytes());
        let data = Bytes::from(vec![i as u8; 256 << 10]);
        match client.put_blob(id, data.clone()).await {
            Ok(_) => stored.push((id, data)),
            Err(e) => {
                refusal = Some(e);
                break;
            }
        }
    }
    let e = refusal.expect("2 MiB nodes must fill up within 200 puts of 256 KiB");
    assert_eq!(code(&e), Some(ErrorCode::NoSpace), "{e}");
    assert!(e.to_string().contains("capacity"), "the error says why: {e}");
    assert!(!stored.is_empty());
    for (id, data) in &stored {
        assert_eq!(client.get_blob(*id).await?, data.as_ref(), "stored data changed after the disk filled");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_put_loses_no_acknowledged_blob() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(ClusterSpec::default()).await?;
    let client = Arc::new(cluster.tenant_client("busy", &[Role::Admin]).await?);
    let work = Arc::new(Workload::mixed(seed(), 300, 1, 2 << 20));
    let acked = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (client, work, acked) = (client.clone(), work.clone(), acked.clone());
        tokio::spawn(async move {
            use futures::StreamExt;
            futures::stream::iter(work.blobs.clone())
                .map(|b| {
                    let (client, work, acked) = (client.clone(), work.clone(), acked.clone());
                    async move {
                        let r = client.put_blob(b.id, Bytes::from(work.contents(&b))).await;
                        if r.is_ok() {
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        (b.index, r.map_err(|e| e.to_string()))
                    }
                })
                .buffer_unordered(8)
                .collect::<Vec<_>>()
                .await
        })
    };
    cluster.wait_for("50 acknowledged puts", Duration::from_secs(60), || async { acked.load(Ordering::SeqCst) >= 50 }).await?;
    cluster.kill(3)?;
    let results = writer.await?;
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(failed.is_empty(), "puts failed after one node died (the client retries): {failed:?}");
    assert_intact(&work.verify_all(&client, 8).await, "with the killed node still down");
    Ok(())
}

//! Exhaustion attacks against a real node: anonymous callers that open many connections and streams and send
//! frames slowly or declare huge ones, and a tenant that asks for blobs and never reads the answers. The node's
//! memory stays bounded, stalled requests are cut off by their deadlines, and it keeps serving everyone else.

use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_chaos::workload::{Workload, assert_intact, seed};
use strata_chaos::{Cluster, ClusterSpec};
use strata_proto::frame::{self, FrameKind};
use strata_proto::{ErrorCode, Request, RequestEnvelope, ResponseEnvelope, Role};
use strata_transport::wire;

const MIB: u64 = 1 << 20;

/// Limits small enough that the attacks below hit them quickly.
const LIMITS: &str =
    "[limits]\nmax_inflight_bytes_per_ip = 67108864\nmax_connections_per_ip = 40\nheader_timeout_ms = 3000\nreply_timeout_ms = 3000\n";

/// Samples node `id`'s resident memory every 100 ms while `attack` runs; returns the peak.
async fn peak_rss_during<F: std::future::Future<Output = T>, T>(cluster: &Cluster, id: usize, attack: F) -> (u64, T) {
    tokio::pin!(attack);
    let mut peak = cluster.rss_bytes(id).unwrap_or(0);
    loop {
        tokio::select! {
            out = &mut attack => return (peak.max(cluster.rss_bytes(id).unwrap_or(0)), out),
            _ = tokio::time::sleep(Duration::from_millis(100)) => peak = peak.max(cluster.rss_bytes(id).unwrap_or(0)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_connections_streams_and_slow_frames_are_bounded() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec { extra_config: LIMITS, ..ClusterSpec::default() }).await?;
    let client = cluster.tenant_client("bystander", &[Role::Admin]).await?;
    let work = Workload::mixed(seed(), 20, 1, 1 << 20);
    work.put_all(&client, 4).await?;
    let before = cluster.rss_bytes(1).expect("node 1 runs");

    // Four connections without a certificate, each opening as many streams as it is granted, each stream
    // declaring a 4 MiB frame and sending all of it but the last byte: before admission control, 800 such
    // streams took a node from 24 MiB to 3.2 GiB in 15 seconds.
    let attack = async {
        let mut conns = Vec::new();
        for _ in 0..4 {
            conns.push(cluster.raw_connection(1).await?);
        }
        let mut streams = Vec::new();
        let mut granted = 0usize;
        let mut frame = frame::encode_header(FrameKind::Request, (4 * MIB) as u32).to_vec();
        frame.extend(std::iter::repeat_n(0u8, (4 * MIB - 1) as usize));
        let frame = Bytes::from(frame);
        let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for conn in &conns {
            // A connection is granted a fixed number of concurrent streams; opening more waits for credit.
            let mut opened = Vec::new();
            while let Ok(Ok(pair)) = tokio::time::timeout(Duration::from_millis(300), conn.open_bi()).await {
                opened.push(pair);
                if opened.len() == 200 {
                    break;
                }
            }
            granted += opened.len();
            for (mut send, recv) in opened {
                let (frame, kept) = (frame.clone(), kept.clone());
                tokio::spawn(async move {
                    // Flow control stops this write once the node stops reading; the deadline ends it. The
                    // stream stays open (never finished), as a slow sender's would.
                    let _ = tokio::time::timeout(Duration::from_secs(8), send.write_all(&frame)).await;
                    kept.lock().unwrap().push(send);
                });
                streams.push(recv);
            }
        }
        // Let the node see everything it is going to accept.
        tokio::time::sleep(Duration::from_secs(2)).await;
        anyhow::Ok((conns, streams, granted, kept))
    };
    let (peak, attacked) = peak_rss_during(&cluster, 1, attack).await;
    let (conns, mut streams, granted, _unfinished) = attacked?;
    eprintln!("node 1 RSS: {} MiB before, {} MiB at the peak; {granted} streams granted on 4 connections", before / MIB, peak / MIB);
    assert_eq!(granted, 4 * 128, "a connection without a certificate gets 128 concurrent streams");
    assert!(peak < before + 200 * MIB, "memory grew from {} MiB to {} MiB", before / MIB, peak / MIB);

    // Stalled frames are cut off by the header deadline: the node answers them with an error and frees them.
    let started = Instant::now();
    // The first stream opened got its frame through first (the others share the connection's flow-control window
    // and reach the node as it frees it).
    let mut recv = streams.swap_remove(0);
    let answer: ResponseEnvelope =
        tokio::time::timeout(Duration::from_secs(15), wire::read_frame(&mut recv, FrameKind::Response, 1 << 20)).await??;
    let code = answer.result.as_ref().err().map(|e| e.code);
    assert!(matches!(code, Some(ErrorCode::Timeout | ErrorCode::Unavailable)), "{answer:?}");
    eprintln!("a stalled stream was answered {code:?} after {} ms", started.elapsed().as_millis());

    // Connections are capped per address: some of 60 more are refused.
    let mut refused = 0;
    let mut extra = Vec::new();
    for _ in 0..60 {
        match cluster.raw_connection(1).await {
            Ok(c) => extra.push(c),
            Err(_) => refused += 1,
        }
    }
    assert!(refused > 0, "60 more connections from one address were all accepted");
    drop(extra);
    for c in &conns {
        c.close(0u32.into(), b"done");
    }

    // The node serves as before; what it stored is intact; and it counted what it refused.
    assert_intact(&work.verify_all(&client, 4).await, "after the exhaustion attack");
    client.put_blob(strata_proto::ChunkId([0x42; 32]), Bytes::from_static(b"still writable")).await?;
    assert!(cluster.metric(1, "strata_admission_refused_total").await.unwrap_or(0.0) > 0.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_never_reads_is_cut_off_and_bounded() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec { extra_config: LIMITS, ..ClusterSpec::default() }).await?;
    let (_, admin) = cluster.create_tenant("reader").await?;
    let owner = cluster.client_with_token(admin.expose()).await?;
    let big = strata_proto::ChunkId([0x77; 32]);
    owner.put_blob(big, Bytes::from(vec![0x5a; 8 << 20])).await?;
    // The token a restore-only device holds.
    let profile_token = cluster.device_token(&admin, &[Role::Restore], "reader").await?;
    let before = cluster.rss_bytes(1).expect("node 1 runs");

    // 60 reads of an 8 MiB blob on one connection, none of them ever read: 480 MiB of replies if the node
    // buffered them all.
    let conn = cluster.raw_connection(1).await?;
    let request =
        RequestEnvelope { auth: Some(profile_token.clone()), body_len: 0, request: Request::GetBlob { id: big, exclude: vec![] } };
    let mut unread = Vec::new();
    let attack = async {
        for _ in 0..60 {
            let (mut send, recv) = conn.open_bi().await?;
            send.write_all(&frame::encode(FrameKind::Request, &request)).await?;
            send.finish()?;
            unread.push((send, recv));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        anyhow::Ok(())
    };
    let (peak, attacked) = peak_rss_during(&cluster, 1, attack).await;
    attacked?;
    eprintln!("node 1 RSS: {} MiB before, {} MiB at the peak with 60 unread 8 MiB replies", before / MIB, peak / MIB);
    assert!(peak < before + 200 * MIB, "memory grew from {} MiB to {} MiB", before / MIB, peak / MIB);

    // After the reply deadline the node has given up on them: reading now ends in a reset or an error, never
    // in 60 complete blobs.
    cluster
        .wait_for("the node to cut off unread replies", Duration::from_secs(20), || async {
            cluster.metric(1, "strata_inflight_bytes{class=\"client\"").await.unwrap_or(f64::MAX) < (16 * MIB) as f64
        })
        .await?;
    let mut complete = 0;
    for (_, mut recv) in unread {
        let read = tokio::time::timeout(Duration::from_secs(2), async {
            let env: ResponseEnvelope = wire::read_frame(&mut recv, FrameKind::Response, 1 << 20).await?;
            if env.result.is_ok() { wire::read_body(&mut recv, env.body_len, 64 << 20).await.map(|b| b.len()) } else { Ok(0) }
        })
        .await;
        if matches!(read, Ok(Ok(n)) if n == 8 << 20) {
            complete += 1;
        }
    }
    assert!(complete < 60, "every unread reply was still held after its deadline");

    // Everyone else is served.
    let reader = cluster.client_with_token(profile_token.expose()).await?;
    assert_eq!(reader.get_blob(big).await?.len(), 8 << 20);
    Ok(())
}

//! The snapshot catalog over years: a tenant's catalog that outgrows one response frame still lists whole,
//! in pages, against real node processes; the one-reply listing kept for older clients refuses with a clear
//! error instead of sending a frame they cannot read.

use std::collections::BTreeSet;

use bytes::Bytes;
use strata_chaos::{Cluster, ClusterSpec};
use strata_proto::{ErrorCode, Request, SnapshotId, SnapshotRecord};
use strata_transport::RpcPool;

/// Summaries this large make 56 snapshots about 3.4 MiB of records: more than a page (1 MiB) and more than
/// the one-reply listing may send (3 MiB).
const SUMMARY_BYTES: usize = 60 << 10;
const SNAPSHOTS: u8 = 56;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_larger_than_a_reply_lists_whole_in_pages() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec::default()).await?;
    let (_, admin) = cluster.create_tenant("years").await?;
    let client = cluster.client_with_token(admin.expose()).await?;

    let mut committed = BTreeSet::new();
    for i in 0..SNAPSHOTS {
        let (session, _) = client.open_session().await?;
        let mut id = rand::random::<[u8; 16]>();
        id[0] = i;
        let record = SnapshotRecord {
            id: SnapshotId(id),
            time_ms: 1_700_000_000_000 + u64::from(i) * 3_600_000,
            committed_ms: 0,
            summary: vec![i; SUMMARY_BYTES],
            refs: Vec::new(),
            ref_digests: Vec::new(),
        };
        client.commit_snapshot(session, record).await?;
        committed.insert(SnapshotId(id));
    }

    for (what, listed) in [("default pages", client.list_snapshots().await?), ("pages of 7", client.list_snapshots_in_pages_of(7).await?)] {
        let ids: Vec<SnapshotId> = listed.iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), committed.len(), "{what}: every snapshot exactly once");
        assert_eq!(ids.iter().copied().collect::<BTreeSet<_>>(), committed, "{what}: the committed snapshots");
        assert!(listed.iter().all(|r| r.summary.len() == SUMMARY_BYTES && r.summary[0] == r.id.0[0]), "{what}: intact records");
    }

    // An older client's one-reply listing gets an error that says what to do, not an unreadable frame.
    let pool = RpcPool::new(
        strata_transport::endpoint::client_endpoint(cluster.nodes[0].quic.parse()?)?,
        strata_transport::tls::client_config(&cluster.ca_pem(), None)?,
        strata_transport::RpcLimits::default(),
    );
    let old = pool.call(&cluster.nodes[0].quic, Some(&admin), Request::ListSnapshots, Bytes::new()).await;
    let e = old.expect_err("a catalog of 3.4 MiB does not fit in one reply");
    assert_eq!(e.code(), Some(ErrorCode::TooLarge), "{e}");
    assert!(e.to_string().contains("upgrade the client"), "{e}");
    pool.close_all();
    client.close();
    Ok(())
}

//! A rolling restart under load: every node stopped and started again in turn, the leader included, while
//! clients keep writing, as an operator upgrading the cluster would do it.
//!
//! With one node of a 4+2 cluster down at a time, every put can still reach five holders, so none may fail;
//! every acknowledged blob must read back byte-exact afterwards, and the cluster must end with one leader.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use strata_chaos::workload::{BlobSpec, Workload, assert_intact, seed};
use strata_chaos::{Cluster, ClusterSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_fails_no_put_and_loses_nothing() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(ClusterSpec::default()).await?;
    let seed = seed();
    let (_, admin) = cluster.create_tenant("rolling").await?;
    let client = Arc::new(cluster.client_with_token(admin.expose()).await?);
    let workload = Arc::new(Workload::mixed(seed, 20_000, 1, 128 << 10));

    // The load: puts, four at a time, until the restarts are over (bounded by the workload's size).
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, workload, stop) = (client.clone(), workload.clone(), stop.clone());
        tokio::spawn(async move {
            let outcomes: Vec<(BlobSpec, Result<(), String>)> =
                futures::stream::iter(workload.blobs.clone())
                    .take_while(|_| {
                        let go = !stop.load(Ordering::Relaxed);
                        async move { go }
                    })
                    .map(|b| {
                        let (client, workload) = (client.clone(), workload.clone());
                        async move {
                            (b, client.put_blob(b.id, Bytes::from(workload.contents(&b))).await.map(|_| ()).map_err(|e| e.to_string()))
                        }
                    })
                    .buffer_unordered(4)
                    .collect()
                    .await;
            outcomes
        })
    };

    let leader = cluster.wait_new_leader(None, Duration::from_secs(30)).await?;
    // Followers first, the leader last, as an upgrade would go.
    let order: Vec<usize> = (1..=cluster.nodes.len()).filter(|&i| i != leader).chain([leader]).collect();
    for id in order {
        cluster.stop(id)?;
        eprintln!("chaos: stopped node {id} (SIGTERM)");
        cluster.restart(id)?;
        cluster.wait_all_ready(Duration::from_secs(60)).await?;
    }
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await?;
    let failed: Vec<String> = outcomes.iter().filter_map(|(b, r)| r.as_ref().err().map(|e| format!("blob {}: {e}", b.index))).collect();
    let acknowledged: Vec<BlobSpec> = outcomes.iter().filter(|(_, r)| r.is_ok()).map(|(b, _)| *b).collect();
    eprintln!("chaos: {} puts acknowledged and {} failed during the rolling restart", acknowledged.len(), failed.len());
    assert!(acknowledged.len() > 50, "the load barely ran ({} puts) during the restarts", acknowledged.len());
    assert!(failed.is_empty(), "{} puts failed with one node down at a time; first: {:#?}", failed.len(), &failed[..failed.len().min(5)]);

    cluster.wait_new_leader(None, Duration::from_secs(30)).await?;
    let written = Workload { seed: workload.seed, blobs: acknowledged };
    assert_intact(&written.verify_all(&client, 8).await, "after the rolling restart");
    client.close();
    Ok(())
}

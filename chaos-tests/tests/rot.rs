//! Rot in the files a node keeps: bytes flipped inside a stopped node's RocksDB blob files, where its shard
//! bytes live.
//!
//! The node must start, never serve the damaged bytes (every read still returns the right blob), say which
//! shards are damaged, and rebuild them from the other holders, after which a further scrub pass finds the
//! node clean.

use std::time::{Duration, Instant};

use strata_chaos::workload::{Workload, assert_intact, seed};
use strata_chaos::{Cluster, ClusterSpec};

/// Flips `count` bytes spread over the middle 80 % of `path`; returns how many were flipped.
fn flip_bytes(path: &std::path::Path, count: u64) -> anyhow::Result<u64> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    if len < 1024 {
        return Ok(0);
    }
    for i in 0..count {
        let at = len / 10 + (len * 8 / 10) * i / count;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at)?;
        f.write_all_at(&[b[0] ^ 0xff], at)?;
    }
    f.sync_all()?;
    Ok(count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_bytes_in_a_nodes_files_are_never_served_and_are_rebuilt() -> anyhow::Result<()> {
    let spec = ClusterSpec { extra_config: "[scrub]\ninterval_ms = 1000\n", ..ClusterSpec::default() };
    let mut cluster = Cluster::start(spec).await?;
    let seed = seed();
    let (_, admin) = cluster.create_tenant("rotting").await?;
    let client = cluster.client_with_token(admin.expose()).await?;
    // Blobs of 16 KiB and more: their 4+2 shards are 4 KiB or more, which RocksDB keeps in blob files.
    let blobs = Workload::mixed(seed, 60, 16 << 10, 1 << 20);
    blobs.put_all(&client, 8).await?;

    let rotten = 3;
    // A clean stop writes the memtables out, so every shard of the node sits in a blob file.
    cluster.stop(rotten)?;
    let db = cluster.nodes[rotten - 1].config.with_file_name("data").join("db");
    let mut flipped = 0;
    for entry in std::fs::read_dir(&db)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "blob") {
            flipped += flip_bytes(&path, 12)?;
        }
    }
    assert!(flipped > 0, "node {rotten} has no blob files in {} to damage", db.display());
    eprintln!("chaos: flipped {flipped} bytes in node {rotten}'s blob files");
    cluster.restart(rotten)?;
    cluster.wait_all_ready(Duration::from_secs(60)).await?;

    // Never served: every blob reads back byte-exact while the damage is there.
    assert_intact(&blobs.verify_all(&client, 8).await, "with rotten shards on one node");

    // Named and rebuilt by the scrubber.
    let metric = |name: &'static str| {
        let cluster = &cluster;
        async move { cluster.metric(rotten, name).await.unwrap_or(0.0) }
    };
    // Done when every corrupt shard found was rebuilt and two whole passes in a row found nothing new.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut seen_found, mut seen_pass, mut clean_passes) = (0.0, metric("strata_scrub_last_complete_timestamp_seconds").await, 0);
    while clean_passes < 2 {
        let found = metric("strata_scrub_corrupt_shards_total").await;
        let rebuilt = metric("strata_scrub_rebuilt_shards_total").await;
        let pass = metric("strata_scrub_last_complete_timestamp_seconds").await;
        if pass > seen_pass {
            clean_passes = if found > 0.0 && found == seen_found && rebuilt >= found { clean_passes + 1 } else { 0 };
            (seen_found, seen_pass) = (found, pass);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "node {rotten}'s scrubber did not finish: {found} corrupt shards found, {rebuilt} rebuilt, {clean_passes} clean passes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("chaos: node {rotten} found and rebuilt {seen_found} corrupt shards; two later passes found none");
    let log = cluster.log_tail(rotten, 5000);
    assert!(log.contains("scrub found a corrupt shard"), "node {rotten} did not name the damaged shards");
    assert_intact(&blobs.verify_all(&client, 8).await, "after the rebuild");
    client.close();
    Ok(())
}

//! Scrub: shards damaged on disk (bit flips) or lost are found by the background pass and rebuilt, so the
//! stripe keeps its full redundancy; reads meanwhile never return wrong bytes.

use std::path::Path;
use std::time::Duration;

use strata_chaos::fs_tree::{TreeSpec, generate};
use strata_chaos::{Cluster, ClusterSpec};
use strata_node::store::{CorruptForTest, RocksShardStore, ShardStore};
use strata_proto::PartitionId;

/// Flips a bit in `flip` shards and deletes `drop` others of the stopped node whose config is `config`.
fn damage(config: &Path, flip: usize, drop: usize) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config)?;
    let data_dir = config.parent().unwrap().join(toml::from_str::<toml::Table>(&text)?["data_dir"].as_str().unwrap());
    let db = strata_node::db::open(&data_dir.join("db"), &strata_node::db::DbOptions::default())?;
    let store = RocksShardStore::open(db, u64::MAX, true)?;
    let mut keys = Vec::new();
    for p in 0..16 {
        keys.extend(store.scan_partition(PartitionId(p), None, 2)?.into_iter().map(|(k, _)| k));
    }
    anyhow::ensure!(keys.len() >= flip + drop, "only {} shards on the node", keys.len());
    for k in &keys[..flip] {
        anyhow::ensure!(store.flip_bit(k, 7), "flip failed");
    }
    for k in &keys[flip..flip + drop] {
        anyhow::ensure!(store.delete(k)?, "delete failed");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_and_lost_shards_are_found_and_rebuilt() -> anyhow::Result<()> {
    let spec =
        ClusterSpec { partition_bits: 4, extra_config: "[scrub]\ninterval_ms = 2000\nrate_bytes_per_sec = 0\n", ..ClusterSpec::default() };
    let mut cluster = Cluster::start(spec).await?;
    let work = tempfile::tempdir()?;
    let cli = cluster.tenant_cli("scrubbed", &work.path().join("laptop")).await?;
    cli.json(&["init"]);
    let source = work.path().join("source");
    let expected = generate(&source, 9, &TreeSpec { sparse_bytes: 4 << 20, max_file_bytes: 2 << 20, files: 40 });
    let id = cli.backup(&source);

    // Damage node 3 while it is stopped: 6 shards get a flipped bit, 3 are lost.
    cluster.kill(3)?;
    damage(&cluster.nodes[2].config, 6, 3)?;
    cluster.restart(3)?;
    cluster.wait_all_ready(Duration::from_secs(60)).await?;
    let ready_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as f64;

    cluster
        .wait_for("the scrub to rebuild every damaged shard", Duration::from_secs(120), || async {
            let corrupt = cluster.metric(3, "strata_scrub_corrupt_shards_total").await.unwrap_or(0.0);
            let rebuilt = cluster.metric(3, "strata_scrub_rebuilt_shards_total").await.unwrap_or(0.0);
            corrupt == 6.0 && rebuilt == 6.0
        })
        .await?;
    // Full redundancy, stated exactly: every node has since run a whole pass that found every shard it holds
    // intact and no shard missing from any stripe of the partitions it fills. (Summing "filled" counters over
    // the nodes once let this test go on while one of the lost shards was still missing.)
    cluster
        .wait_for("a clean scrub pass on every node, begun after the damage", Duration::from_secs(120), || async {
            for n in 1..=6 {
                let clean = cluster.metric(n, "strata_scrub_clean_pass_started_timestamp_seconds").await.unwrap_or(0.0);
                if clean < ready_s + 1.0 {
                    return false;
                }
            }
            true
        })
        .await?;
    let mut filled = 0.0;
    for n in 1..=6 {
        filled += cluster.metric(n, "strata_scrub_filled_chunks_total").await.unwrap_or(0.0);
    }
    assert!(filled >= 3.0, "the 3 lost shards were filled ({filled} filled in all)");
    cluster
        .wait_for("a last fully verified time for the generation", Duration::from_secs(60), || async {
            cluster.admin_json(&["generation", "list"])["generations"][0]["last_verified_ms"].as_u64().is_some()
        })
        .await?;

    // With two other nodes gone, every stripe needs node 3's shards: they must be whole again.
    cluster.kill(5)?;
    cluster.kill(6)?;
    cluster.retarget_profile(&cli)?;
    let diff = cli.restore_diff(&id[..8], &source, &expected, &work.path().join("restore"));
    assert!(diff.is_empty(), "after scrub and two losses: {:?}", &diff[..diff.len().min(4)]);
    Ok(())
}

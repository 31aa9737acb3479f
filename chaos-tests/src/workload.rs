//! Seeded workloads whose every byte can be re-derived for verification, and a checker that what was
//! acknowledged is still there, byte for byte.

use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use strata_client::ClusterClient;
use strata_proto::ChunkId;

/// A blob of a workload: its id and size; contents derive from the workload seed.
#[derive(Debug, Clone, Copy)]
pub struct BlobSpec {
    /// Position in the workload.
    pub index: usize,
    /// Chunk id.
    pub id: ChunkId,
    /// Size in bytes.
    pub size: usize,
}

/// A seeded set of blobs.
pub struct Workload {
    /// The seed (printed, so a failure can be replayed).
    pub seed: u64,
    /// The blobs.
    pub blobs: Vec<BlobSpec>,
}

impl Workload {
    /// `count` blobs with log-uniform sizes in `min..=max`.
    pub fn mixed(seed: u64, count: usize, min: usize, max: usize) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (lo, hi) = ((min.max(1) as f64).ln(), (max as f64).ln());
        let mut blobs: Vec<BlobSpec> = (0..count)
            .map(|index| {
                let size = rng.random_range(lo..=hi).exp().round() as usize;
                BlobSpec { index, id: ChunkId(rng.random()), size: size.clamp(min, max) }
            })
            .collect();
        // Always cover both ends of the range.
        if let Some(first) = blobs.first_mut() {
            first.size = min;
        }
        if count > 1 {
            blobs[1].size = max;
        }
        eprintln!("workload: seed {seed}, {count} blobs, {} bytes in all", blobs.iter().map(|b| b.size).sum::<usize>());
        Workload { seed, blobs }
    }

    /// The contents of a blob.
    pub fn contents(&self, b: &BlobSpec) -> Vec<u8> {
        let mut h = blake3::Hasher::new();
        h.update(&self.seed.to_le_bytes());
        h.update(&b.id.0);
        let mut out = vec![0u8; b.size];
        h.finalize_xof().fill(&mut out);
        out
    }

    /// Total bytes.
    pub fn total_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size as u64).sum()
    }

    /// Stores every blob (`concurrency` at a time); fails on the first error.
    pub async fn put_all(&self, client: &ClusterClient, concurrency: usize) -> anyhow::Result<()> {
        let started = Instant::now();
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(&self.blobs)
            .map(|b| async move {
                client
                    .put_blob(b.id, Bytes::from(self.contents(b)))
                    .await
                    .map_err(|e| anyhow::anyhow!("put of blob {} ({} bytes) failed: {e}", b.index, b.size))?;
                Ok(())
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        results.into_iter().collect::<anyhow::Result<()>>()?;
        eprintln!(
            "workload: stored {} blobs ({} MB) in {:.1} s",
            self.blobs.len(),
            self.total_bytes() / 1_000_000,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Reads every blob back and compares it byte for byte; returns the failures (empty when all match).
    pub async fn verify_all(&self, client: &ClusterClient, concurrency: usize) -> Vec<String> {
        let started = Instant::now();
        let failures: Vec<String> = futures::stream::iter(&self.blobs)
            .map(|b| async move {
                match client.get_blob(b.id).await {
                    Ok(data) if data == self.contents(b) => None,
                    Ok(data) => Some(format!("blob {} ({}) differs: got {} bytes, expected {}", b.index, b.id, data.len(), b.size)),
                    Err(e) => Some(format!("blob {} ({}): {e}", b.index, b.id)),
                }
            })
            .buffer_unordered(concurrency)
            .filter_map(|f| async move { f })
            .collect()
            .await;
        eprintln!("workload: verified {} blobs in {:.1} s, {} failures", self.blobs.len(), started.elapsed().as_secs_f64(), failures.len());
        failures
    }
}

/// Asserts that a verification found nothing wrong, showing the first failures.
pub fn assert_intact(failures: &[String], when: &str) {
    assert!(failures.is_empty(), "{} blobs failed verification {when}; first: {:#?}", failures.len(), &failures[..failures.len().min(5)]);
}

/// A seed from the environment (`STRATA_CHAOS_SEED`) or a fresh random one; printed either way.
pub fn seed() -> u64 {
    let seed = std::env::var("STRATA_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("chaos seed: {seed} (replay with STRATA_CHAOS_SEED={seed})");
    seed
}

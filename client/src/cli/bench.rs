//! `strata bench blobs`: synthetic put / has / get / delete load against the cluster, with throughput and
//! latency percentiles. Blob contents are derived from a seed, so every read is verified byte for byte
//! without keeping the data in memory.

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Subcommand;
use futures::StreamExt;
use serde::Serialize;
use strata_proto::ChunkId;
use strata_proto::units::parse_size;

use super::Ctx;

/// Benchmarks.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Put, query, get and delete synthetic blobs; report MB/s and latency percentiles.
    Blobs {
        /// Size of each blob (e.g. 4KiB, 1MiB).
        #[arg(long, default_value = "1MiB", value_parser = parse_size)]
        size: u64,
        /// Number of blobs.
        #[arg(long, default_value_t = 200)]
        count: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Leave the blobs in the cluster (by default they are deleted, which needs an admin token).
        #[arg(long)]
        keep: bool,
    },
}

/// One phase's figures.
#[derive(Debug, Serialize)]
struct Phase {
    phase: &'static str,
    operations: usize,
    bytes: u64,
    seconds: f64,
    mb_per_sec: f64,
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn phase(name: &'static str, mut latencies: Vec<Duration>, bytes: u64, elapsed: Duration) -> Phase {
    latencies.sort();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0);
    let secs = elapsed.as_secs_f64().max(1e-9);
    Phase {
        phase: name,
        operations: latencies.len(),
        bytes,
        seconds: secs,
        mb_per_sec: bytes as f64 / secs / 1e6,
        ops_per_sec: latencies.len() as f64 / secs,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    }
}

/// Deterministic blob `i` of a run: id and contents from BLAKE3 in XOF mode.
fn blob(run: &[u8; 16], i: usize, size: usize) -> (ChunkId, Vec<u8>) {
    let mut h = blake3::Hasher::new();
    h.update(run);
    h.update(&(i as u64).to_le_bytes());
    let id = ChunkId(*h.finalize().as_bytes());
    let mut data = vec![0u8; size];
    h.update(b"contents");
    h.finalize_xof().fill(&mut data);
    (id, data)
}

/// Runs a benchmark.
pub async fn run(ctx: &Ctx, cmd: BenchCommand) -> anyhow::Result<()> {
    let BenchCommand::Blobs { size, count, concurrency, keep } = cmd;
    anyhow::ensure!(count > 0 && concurrency > 0, "--count and --concurrency must be positive");
    let size = usize::try_from(size)?;
    let client = ctx.client().await?;
    let run: [u8; 16] = rand::random();
    let ids: Vec<ChunkId> = (0..count).map(|i| blob(&run, i, 0).0).collect();
    let total = (size * count) as u64;
    let mut phases = Vec::new();

    let started = Instant::now();
    let lat: Vec<Duration> = futures::stream::iter(0..count)
        .map(|i| {
            let client = &client;
            async move {
                let (id, data) = blob(&run, i, size);
                let t = Instant::now();
                client.put_blob(id, Bytes::from(data)).await.map(|_| t.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    phases.push(phase("put", lat, total, started.elapsed()));

    let started = Instant::now();
    let t = Instant::now();
    let present = client.has_blobs(&ids).await?;
    anyhow::ensure!(
        present.iter().all(|p| *p),
        "{} of {count} blobs just stored are not reported present",
        present.iter().filter(|p| !**p).count()
    );
    phases.push(phase("has", vec![t.elapsed()], 0, started.elapsed()));

    let started = Instant::now();
    let lat: Vec<Duration> = futures::stream::iter(0..count)
        .map(|i| {
            let client = &client;
            async move {
                let t = Instant::now();
                let (id, expected) = blob(&run, i, size);
                let got = client.get_blob(id).await?;
                let elapsed = t.elapsed();
                anyhow::ensure!(got == expected, "blob {i} ({id}) came back different ({} bytes, expected {})", got.len(), expected.len());
                Ok(elapsed)
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    phases.push(phase("get", lat, total, started.elapsed()));

    if !keep {
        let started = Instant::now();
        let lat: Vec<Duration> = futures::stream::iter(ids.iter().copied())
            .map(|id| {
                let client = &client;
                async move {
                    let t = Instant::now();
                    client.delete_blob(id).await.map(|_| t.elapsed())
                }
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        phases.push(phase("delete", lat, 0, started.elapsed()));
    }
    client.close();

    if ctx.json {
        println!(
            "{}",
            serde_json::to_string(
                &serde_json::json!({ "blob_bytes": size, "count": count, "concurrency": concurrency, "phases": phases })
            )?
        );
    } else {
        println!("{count} blobs of {size} bytes, {concurrency} in flight (every read verified)");
        println!("{:<7} {:>8} {:>10} {:>10} {:>10} {:>10}", "PHASE", "OPS", "SECONDS", "MB/s", "p50 ms", "p99 ms");
        for p in &phases {
            let rate = if p.bytes > 0 { format!("{:.1}", p.mb_per_sec) } else { format!("{:.0} ids/s", count as f64 / p.seconds) };
            println!("{:<7} {:>8} {:>10.2} {:>10} {:>10.1} {:>10.1}", p.phase, p.operations, p.seconds, rate, p.p50_ms, p.p99_ms);
        }
    }
    Ok(())
}

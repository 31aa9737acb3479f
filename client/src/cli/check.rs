//! `strata check`: verify the snapshot graph, and optionally download and verify the data.

use std::collections::BTreeSet;

use clap::Args;
use futures::StreamExt;
use strata_proto::ChunkId;

use super::Ctx;

/// Arguments of `strata check`.
#[derive(Args)]
pub struct CheckArgs {
    /// Also download, decrypt and verify every chunk.
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Download and verify a subset of the chunks, e.g. `10%` (chosen by id, so repeated runs differ only
    /// when the data does).
    #[arg(long, value_name = "PERCENT")]
    read_data_subset: Option<String>,
}

fn parse_percent(s: &str) -> anyhow::Result<f64> {
    let v: f64 =
        s.trim().trim_end_matches('%').parse().map_err(|_| anyhow::anyhow!("--read-data-subset {s:?}: expected a percentage like 10%"))?;
    anyhow::ensure!(v > 0.0 && v <= 100.0, "--read-data-subset must be between 0% and 100%");
    Ok(v / 100.0)
}

/// Runs `strata check`; exit code 1 when anything is wrong.
pub async fn run(ctx: &Ctx, a: CheckArgs) -> anyhow::Result<i32> {
    let fraction = match (&a.read_data_subset, a.read_data) {
        (Some(p), _) => parse_percent(p)?,
        (None, true) => 1.0,
        (None, false) => 0.0,
    };
    let repo = ctx.repo().await?;
    let snapshots = repo.snapshots().await?;
    let mut problems: Vec<String> = Vec::new();
    let mut chunks: BTreeSet<ChunkId> = BTreeSet::new();
    for s in &snapshots {
        match super::browse::entries(&repo, &s.summary.root).await {
            Ok(entries) => {
                chunks.extend(s.summary.root.iter().copied());
                for (_, node) in entries {
                    chunks.extend(node.content.iter().map(|c| c.id));
                    chunks.extend(node.subtree.iter().copied());
                }
            }
            Err(e) => problems.push(format!("snapshot {}: {e}", &s.record.id.to_hex()[..8])),
        }
    }
    let ids: Vec<ChunkId> = chunks.iter().copied().collect();
    let present = repo.client().has_blobs(&ids).await?;
    for (id, p) in ids.iter().zip(&present) {
        if !p {
            problems.push(format!("chunk {id} is referenced but not stored durably"));
        }
    }
    let to_read: Vec<ChunkId> =
        ids.iter().copied().filter(|id| f64::from(u16::from_be_bytes([id.0[0], id.0[1]])) < fraction * 65536.0).collect();
    let read_errors: Vec<String> = futures::stream::iter(to_read.clone())
        .map(|id| {
            let repo = &repo;
            async move { repo.get_chunk(id).await.err().map(|e| format!("chunk {id}: {e}")) }
        })
        .buffer_unordered(8)
        .filter_map(|e| async move { e })
        .collect()
        .await;
    problems.extend(read_errors);
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({ "message_type": "check", "snapshots": snapshots.len(), "chunks": ids.len(), "chunks_read": to_read.len(), "problems": problems })
        );
    } else {
        for p in &problems {
            eprintln!("error: {p}");
        }
        println!(
            "{} snapshots, {} chunks referenced, {} downloaded and verified: {}",
            snapshots.len(),
            ids.len(),
            to_read.len(),
            if problems.is_empty() { "no errors".to_string() } else { format!("{} errors", problems.len()) }
        );
    }
    Ok(if problems.is_empty() { 0 } else { 1 })
}

//! `strata prune`: free the data that no snapshot references any more (cluster-side garbage collection).

use strata_proto::GcReport;

use super::Ctx;
use super::progress_ui::human_bytes;

/// Prints a collection report.
pub fn print_report(ctx: &Ctx, r: &GcReport) {
    if ctx.json {
        println!("{}", serde_json::json!({ "message_type": "prune", "report": r }));
    } else {
        println!(
            "prune: {} snapshots reference {} chunks; {} of {} stored chunks were unreferenced; {} kept because a backup committed meanwhile; {} deleted ({} shards, {} freed){}",
            r.snapshots,
            r.referenced,
            r.candidates,
            r.stored,
            r.kept,
            r.deleted_chunks,
            r.deleted_shards,
            human_bytes(r.freed_bytes),
            if r.sessions_waited_for > 0 { format!("; waited for {} running backups", r.sessions_waited_for) } else { String::new() }
        );
        if r.unreachable_holders > 0 {
            eprintln!("warning: {} nodes could not be reached; their leftovers are freed by the next prune", r.unreachable_holders);
        }
    }
}

/// Runs `strata prune` (needs an admin token).
pub async fn run(ctx: &Ctx) -> anyhow::Result<i32> {
    let client = ctx.client().await?;
    let report = client.collect_garbage().await?;
    print_report(ctx, &report);
    Ok(0)
}

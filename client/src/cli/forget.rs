//! `strata forget`: remove snapshots by id, or by a retention policy (restic's keep-* options).

use clap::Args;
use strata_client::retention::{self, GroupBy, Policy, RetentionDuration, SnapshotInfo};

use super::Ctx;
use super::browse::{SnapshotFilter, format_time_ms};

/// Arguments of `strata forget`.
#[derive(Args)]
pub struct ForgetArgs {
    /// Snapshots to forget (unique id prefixes). Without them, the keep-* policy decides.
    snapshots: Vec<String>,
    /// Keep the N most recent snapshots.
    #[arg(long)]
    keep_last: Option<usize>,
    /// Keep the most recent snapshot of each of the last N hours that have one.
    #[arg(long)]
    keep_hourly: Option<usize>,
    /// Likewise for days.
    #[arg(long)]
    keep_daily: Option<usize>,
    /// Likewise for ISO weeks.
    #[arg(long)]
    keep_weekly: Option<usize>,
    /// Likewise for months.
    #[arg(long)]
    keep_monthly: Option<usize>,
    /// Likewise for years.
    #[arg(long)]
    keep_yearly: Option<usize>,
    /// Keep every snapshot taken within this long of the newest one, written as restic does: `1y5m7d2h` is
    /// one year, five months (m is months), seven days and two hours.
    #[arg(long, value_parser = RetentionDuration::parse)]
    keep_within: Option<RetentionDuration>,
    /// Keep snapshots with this tag. Repeatable.
    #[arg(long = "keep-tag")]
    keep_tags: Vec<String>,
    /// Group snapshots by `host,paths` (default), `host`, `paths` or `none` before applying the policy.
    #[arg(long, default_value = "host,paths")]
    group_by: String,
    /// Show what would be forgotten, and why the rest is kept, without changing anything.
    #[arg(long)]
    dry_run: bool,
    /// Also free the data no snapshot references any more (see `strata prune`).
    #[arg(long, conflicts_with = "dry_run")]
    prune: bool,
    /// Go ahead even if the policy forgets more than half of the snapshots (without it, such a run only
    /// shows what it would forget).
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    filter: SnapshotFilter,
}

fn group_by(s: &str) -> anyhow::Result<GroupBy> {
    let mut g = GroupBy::default();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty() && *p != "none") {
        match part {
            "host" => g.host = true,
            "paths" => g.paths = true,
            other => anyhow::bail!("--group-by: unknown key {other:?} (host, paths, none)"),
        }
    }
    Ok(g)
}

/// Runs `strata forget`.
pub async fn run(ctx: &Ctx, a: ForgetArgs) -> anyhow::Result<i32> {
    let repo = ctx.repo().await?;
    let all: Vec<_> = repo.snapshots().await?.into_iter().filter(|s| a.filter.accepts(s)).collect();
    let policy = Policy {
        keep_last: a.keep_last,
        keep_hourly: a.keep_hourly,
        keep_daily: a.keep_daily,
        keep_weekly: a.keep_weekly,
        keep_monthly: a.keep_monthly,
        keep_yearly: a.keep_yearly,
        keep_within: a.keep_within,
        keep_tags: a.keep_tags,
    };
    let mut forget = Vec::new();
    let mut report = Vec::new();
    if !a.snapshots.is_empty() {
        anyhow::ensure!(policy.is_empty(), "give either snapshot ids or keep-* options, not both");
        for spec in &a.snapshots {
            let s = repo.find_snapshot(spec).await?;
            report.push(serde_json::json!({ "id": s.record.id.to_hex(), "keep": false, "reasons": ["named on the command line"] }));
            forget.push(s.record.id);
        }
    } else {
        anyhow::ensure!(
            !policy.is_empty(),
            "nothing to do: name snapshots or give a keep-* option (forgetting everything is never a default)"
        );
        let infos: Vec<SnapshotInfo> = all
            .iter()
            .map(|s| SnapshotInfo {
                id: s.record.id.to_hex(),
                time_ms: s.summary.time_ms as i64,
                host: s.summary.host.clone(),
                paths: s.summary.paths.clone(),
                tags: s.summary.tags.clone(),
            })
            .collect();
        for d in retention::apply(&infos, &policy, group_by(&a.group_by)?) {
            let s = all.iter().find(|s| s.record.id.to_hex() == d.snapshot.id).expect("decided snapshots come from the list");
            if !d.keep() {
                forget.push(s.record.id);
            }
            report.push(serde_json::json!({ "id": d.snapshot.id, "time": format_time_ms(s.summary.time_ms), "host": s.summary.host, "keep": d.keep(), "reasons": d.reasons }));
        }
    }
    // A policy that would forget most of the history is more often a misread option than a wish: show it and
    // stop, unless confirmed.
    let sweeping = a.snapshots.is_empty() && forget.len() > 1 && forget.len() * 2 > report.len();
    let dry_run = a.dry_run || (sweeping && !a.yes);
    let removed = if dry_run || forget.is_empty() { 0 } else { repo.client().forget_snapshots(forget.clone()).await? };
    let gc = if a.prune && !dry_run { Some(repo.client().collect_garbage().await?) } else { None };
    let refused = dry_run && !a.dry_run;
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({
                "message_type": "forget",
                "dry_run": dry_run,
                "needs_confirmation": refused,
                "decisions": report,
                "forgotten": removed,
                "prune": gc,
            })
        );
    } else {
        for r in &report {
            let verdict = if r["keep"] == true {
                "keep  "
            } else if dry_run {
                "would forget"
            } else {
                "forget"
            };
            println!(
                "{verdict} {} {} {} {}",
                &r["id"].as_str().unwrap_or("")[..8],
                r["time"].as_str().unwrap_or(""),
                r["host"].as_str().unwrap_or(""),
                r["reasons"]
            );
        }
        if refused {
            println!("nothing was forgotten: this policy would forget {} of {} snapshots.", forget.len(), report.len());
            println!("Check the list above; run again with --yes to forget them.");
        } else if dry_run {
            println!("dry run: {} of {} snapshots would be forgotten", forget.len(), report.len());
        } else {
            println!("{removed} snapshots forgotten");
        }
        if let Some(gc) = &gc {
            super::prune::print_report(ctx, gc);
        }
    }
    if refused {
        eprintln!("strata: the policy would forget {} of {} snapshots; confirm with --yes", forget.len(), report.len());
        return Ok(strata_client::error::exit::FAILURE);
    }
    Ok(0)
}

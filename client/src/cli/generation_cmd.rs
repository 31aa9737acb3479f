//! `strata admin generation ...`: add, list, drain, pause, resume, cancel and drop storage generations, and set
//! how fast the cluster moves data. `list` shows each generation's progress: partitions placed and moving,
//! bytes stored and still to move, the cluster's move rate, ETA and whether its nodes are safe to remove.

use clap::Subcommand;
use strata_client::ClusterClient;
use strata_proto::status::ClusterStatus;
use strata_proto::units::parse_size;
use strata_proto::{EcProfile, GenerationOp};

use super::Ctx;
use super::admin::human_bytes;

/// Generation commands.
#[derive(Subcommand)]
pub enum GenerationCommand {
    /// Create an empty generation; then start its nodes with `strata-node join --generation NAME`.
    Add {
        /// Unique name (letters, digits, '.', '_', '-').
        name: String,
        /// Erasure-code profile of every stripe stored on it, as K+M (e.g. 8+3).
        #[arg(long, default_value = "4+2")]
        ec: EcProfile,
    },
    /// Show every generation with its state and migration progress (also `status`).
    #[command(alias = "status")]
    List,
    /// Move every partition off a generation, online. Follow with `list`.
    Drain {
        /// Generation name.
        name: String,
    },
    /// Pause moves from or to a generation.
    Pause {
        /// Generation name.
        name: String,
    },
    /// Resume paused moves.
    Resume {
        /// Generation name.
        name: String,
    },
    /// Stop a drain: the generation becomes Active again and partitions on their way out come back.
    Cancel {
        /// Generation name.
        name: String,
    },
    /// Remove a Drained generation for good; its nodes leave the cluster and can be stopped.
    Drop {
        /// Generation name.
        name: String,
        /// Drop a generation that holds no partition even if it was never marked Drained (never one with data).
        #[arg(long)]
        force: bool,
    },
    /// Limit the bytes per second each node writes while moving data (e.g. 50MiB; 0 = unlimited).
    Rate {
        /// Bytes per second per node.
        #[arg(value_parser = parse_size)]
        bytes_per_sec: u64,
    },
}

/// Runs a generation command.
pub async fn run(ctx: &Ctx, client: &ClusterClient, cmd: GenerationCommand) -> anyhow::Result<()> {
    let op = match cmd {
        GenerationCommand::List => {
            let s = client.status().await?;
            if ctx.json {
                println!("{}", serde_json::to_string(&s.migration)?);
            } else {
                print!("{}", render(&s));
            }
            return Ok(());
        }
        GenerationCommand::Add { name, ec } => GenerationOp::Add { name, profile: ec },
        GenerationCommand::Drain { name } => GenerationOp::Drain { name },
        GenerationCommand::Pause { name } => GenerationOp::Pause { name },
        GenerationCommand::Resume { name } => GenerationOp::Resume { name },
        GenerationCommand::Cancel { name } => GenerationOp::Cancel { name },
        GenerationCommand::Drop { name, force } => GenerationOp::Drop { name, force },
        GenerationCommand::Rate { bytes_per_sec } => GenerationOp::SetRate { bytes_per_sec },
    };
    let message = client.generation(op).await?;
    if ctx.json {
        println!("{}", serde_json::json!({ "ok": true, "message": message }));
    } else {
        println!("{message}");
    }
    Ok(())
}

fn eta(secs: Option<u64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// Text rendering of `strata admin generation list`.
pub fn render(s: &ClusterStatus) -> String {
    use std::fmt::Write;
    let m = &s.migration;
    let mut out = String::new();
    let limit = if m.rate_limit_bytes_per_sec == 0 {
        "unlimited".into()
    } else {
        format!("{}/s per node", human_bytes(m.rate_limit_bytes_per_sec))
    };
    let _ = writeln!(out, "moving {}/s across the cluster (limit {limit})\n", human_bytes(m.moved_bytes_per_sec));
    let _ = writeln!(
        out,
        "{:<12} {:<7} {:<9} {:>5} {:>7} {:>6} {:>6} {:>11} {:>11} {:>8} {:>7} {:>9}",
        "GENERATION", "PROFILE", "STATE", "NODES", "PLACED", "OUT", "IN", "STORED", "TO MOVE", "ETA", "REMOVE", "VERIFIED"
    );
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    for g in &m.generations {
        let state = format!("{:?}{}", g.generation.state, if g.paused { "*" } else { "" });
        let _ = writeln!(
            out,
            "{:<12} {:<7} {:<9} {:>5} {:>7} {:>6} {:>6} {:>11} {:>11} {:>8} {:>7} {:>9}",
            g.generation.name,
            g.generation.profile.to_string(),
            state,
            g.nodes,
            g.partitions.placed,
            g.partitions.moving_out,
            g.partitions.moving_in,
            human_bytes(g.stored_bytes),
            human_bytes(g.bytes_to_move),
            eta(g.eta_secs),
            if g.safe_to_remove { "safe" } else { "no" },
            g.last_verified_ms.map_or("never".into(), |t| format!("{} ago", eta(Some(now_ms.saturating_sub(t) / 1000)))),
        );
    }
    if m.generations.iter().any(|g| g.paused) {
        let _ = writeln!(out, "\n* moves paused (`strata admin generation resume NAME`)");
    }
    out
}

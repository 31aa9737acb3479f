//! `strata admin ...`: operator commands.

use clap::Subcommand;
use strata_client::size::parse_duration_secs;
use strata_proto::status::ClusterStatus;
use strata_proto::{Role, RoleSet, TenantId};

use super::Ctx;
use super::generation_cmd::{self, GenerationCommand};

/// Operator commands (they need `operator_token` in the profile).
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Show nodes, generations, the Raft leader, the map epoch and health.
    Status,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage tenant tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage storage generations: add, list, drain, pause, resume, cancel, drop; set the move rate.
    #[command(subcommand)]
    Generation(GenerationCommand),
    /// Create a one-time token that lets a new node join (`strata-node join --token ...`).
    JoinToken {
        /// How long the token stays valid (e.g. 30m, 2h, 1d).
        #[arg(long, default_value = "1h", value_parser = parse_duration_secs)]
        ttl: u64,
    },
}

/// Tenant commands.
#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant (a dedup and access domain) and print its id.
    Create {
        /// Unique name.
        name: String,
    },
}

/// Token commands.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token for a tenant and print it (it is shown only once).
    Create {
        /// Tenant id (as printed by `tenant create`).
        #[arg(long)]
        tenant: u64,
        /// Role to grant: backup (append and read), restore (read) or admin (everything in the tenant). Repeatable.
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        /// Lifetime (e.g. 90d); without it the token does not expire.
        #[arg(long, value_parser = parse_duration_secs)]
        ttl: Option<u64>,
        /// Label shown to operators (device name, purpose).
        #[arg(long, default_value = "")]
        label: String,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    match Role::parse(s) {
        Some(Role::Operator) => Err("operator tokens are created with the cluster, not per tenant".into()),
        Some(r) => Ok(r),
        None => Err(format!("unknown role {s:?} (backup, restore, admin)")),
    }
}

/// Runs an admin command.
pub async fn run(ctx: &Ctx, cmd: AdminCommand) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    match cmd {
        AdminCommand::Status => {
            let s = client.status().await?;
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", render_status(&s));
            }
        }
        AdminCommand::Tenant(TenantCommand::Create { name }) => {
            let id = client.create_tenant(&name).await?;
            if ctx.json {
                println!("{}", serde_json::json!({ "tenant": id.0, "name": name }));
            } else {
                println!("created tenant {name:?} with id {}", id.0);
            }
        }
        AdminCommand::Token(TokenCommand::Create { tenant, roles, ttl, label }) => {
            let token = client.create_token(TenantId(tenant), RoleSet::of(&roles), ttl, &label).await?;
            if ctx.json {
                println!("{}", serde_json::json!({ "tenant": tenant, "token": token.expose() }));
            } else {
                println!("{}", token.expose());
                eprintln!("(shown once: the cluster keeps only a digest)");
            }
        }
        AdminCommand::Generation(cmd) => generation_cmd::run(ctx, &client, cmd).await?,
        AdminCommand::JoinToken { ttl } => {
            let token = client.create_join_token(ttl).await?;
            if ctx.json {
                println!("{}", serde_json::json!({ "join_token": token.expose(), "ttl_secs": ttl }));
            } else {
                println!("{}", token.expose());
                eprintln!("(one-time, valid for {ttl} s)");
            }
        }
    }
    client.close();
    Ok(())
}

/// Bytes in binary units, one decimal.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// Text rendering of `strata admin status`.
pub fn render_status(s: &ClusterStatus) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let leader = s.leader.map(|l| l.to_string()).unwrap_or_else(|| "none (no quorum?)".into());
    let voters: Vec<String> = s.voters.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        out,
        "leader {leader}, term {}, commit index {}, map {}, {} partitions{}",
        s.term,
        s.commit_index,
        s.epoch,
        s.partitions,
        if s.placed { "" } else { " (not placed yet)" }
    );
    let _ = writeln!(out, "voters: {}", voters.join(", "));
    let _ = writeln!(out, "\nGENERATION  PROFILE  STATE");
    for g in &s.generations {
        let _ = writeln!(out, "{:<11} {:<8} {:?}", g.name, g.profile.to_string(), g.state);
    }
    let _ = writeln!(
        out,
        "\n{:<8} {:<22} {:<12} {:<8} {:<7} {:<10} {:>10} {:>8} {:>11}",
        "NODE", "ADDRESS", "ZONE", "GEN", "STATE", "HEALTH", "PARTITIONS", "SHARDS", "DATA"
    );
    for n in &s.nodes {
        let d = &n.descriptor;
        let gen_name = s.generations.iter().find(|g| g.id == d.generation).map(|g| g.name.as_str()).unwrap_or("?");
        let health = if n.reachable { "up".to_string() } else { "DOWN".to_string() };
        let _ = writeln!(
            out,
            "{:<8} {:<22} {:<12} {:<8} {:<7} {:<10} {:>10} {:>8} {:>11}",
            d.id.to_string(),
            d.addr,
            d.zone,
            gen_name,
            format!("{:?}", d.state),
            health,
            n.partitions,
            n.shards.map(|v| v.to_string()).unwrap_or_else(|| "?".into()),
            n.bytes.map(human_bytes).unwrap_or_else(|| "?".into()),
        );
    }
    out
}

//! `strata admin ...`: operator commands.

use clap::Subcommand;
use strata_client::cluster::Credential;
use strata_proto::TenantId;
use strata_proto::status::ClusterStatus;
use strata_proto::units::parse_duration_secs;

use super::Ctx;
use super::generation_cmd::{self, GenerationCommand};
use super::tokens::{self, print_token, render_audit};

/// Operator commands (they need `operator_token` in the profile).
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Show nodes, generations, the Raft leader, the map epoch and health.
    Status,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Operator tokens; list or revoke any token (a stolen device's, a former operator's).
    #[command(subcommand)]
    Token(TokenCommand),
    /// The audit log: who created or revoked tokens, created tenants, admitted nodes, replaced key files.
    Audit,
    /// Nodes: revoke one (a stolen or compromised machine).
    #[command(subcommand)]
    Node(NodeCommand),
    /// Replace the cluster CA: `rotate`, then `finish` once every node renewed (`status` shows who has not).
    #[command(subcommand)]
    Ca(CaCommand),
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
    /// Create a tenant (a dedup and access domain) and print its id and its first admin token, once: hand
    /// the token to the tenant's owner, who creates the devices' tokens with `strata token create`. An
    /// operator never obtains another token of the tenant.
    Create {
        /// Unique name.
        name: String,
    },
    /// Issue a tenant a new admin token, once its previous one was revoked (`strata admin token revoke`, for a
    /// leaked or lost admin token); printed once, for the tenant's owner. Refused while the tenant has one.
    AdminToken {
        /// The tenant's id.
        tenant: u64,
    },
}

/// Node commands.
#[derive(Subcommand)]
pub enum NodeCommand {
    /// Revoke a node: every node refuses its certificate from now on (its open connections are closed too),
    /// it leaves Raft, and its shards are rebuilt on the others. Refused while that would leave some data
    /// with fewer shards than it needs; the node's id is never reused.
    Revoke {
        /// The node's id (as `status` shows it: 7 or node-7).
        node: String,
    },
}

/// CA rotation commands (docs/rfcs/0003-node-trust.md).
#[derive(Subcommand)]
pub enum CaCommand {
    /// Make a new CA, trusted beside the current one: nodes renew onto it, clients pick it up on their next
    /// run (and accept it meanwhile through its certificate signed by the old CA).
    Rotate,
    /// Which CAs are trusted, and during a rotation which nodes have not renewed onto the new one yet.
    Status,
    /// Trust only the new CA from now on: certificates from the old one (or minted with its leaked key) open
    /// nothing. Refused while a node has not renewed, unless --force (such nodes must be admitted again).
    /// Clients that did not run during the rotation need the new CA file (`tls.ca_cert` of any node).
    Finish {
        /// Finish even though some nodes have not renewed.
        #[arg(long)]
        force: bool,
    },
}

/// Operator token commands.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create another operator token and print it (it is shown only once).
    Create {
        /// Lifetime (e.g. 90d, or `never`) [default: never].
        #[arg(long, value_parser = tokens::parse_ttl)]
        ttl: Option<u64>,
        /// Label shown in lists and the audit log (who holds it).
        #[arg(long)]
        label: String,
    },
    /// List tokens (ids, tenants, roles, labels, expiry; never the secrets).
    List {
        /// Only this tenant's tokens.
        #[arg(long)]
        tenant: Option<u64>,
    },
    /// Revoke a token by the id `token list` shows; it stops working on every node at once.
    Revoke {
        /// The token's id (16 hex digits).
        id: String,
    },
}

/// Runs an admin command.
pub async fn run(ctx: &Ctx, cmd: AdminCommand) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    match cmd {
        AdminCommand::Status => {
            let s = client.status().await?;
            if ctx.json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                print!("{}", render_status(&s));
            }
        }
        AdminCommand::Tenant(TenantCommand::Create { name }) => {
            let (id, admin) = client.create_tenant(&name).await?;
            if ctx.json {
                println!("{}", serde_json::json!({ "tenant": id.0, "name": name, "admin_token": admin.expose() }));
            } else {
                println!("created tenant {name:?} with id {}; its first admin token (shown once):", id.0);
                println!("{}", admin.expose());
                eprintln!("Hand it to the tenant's owner: with it in a profile, `strata init` creates the key and");
                eprintln!("`strata token create --role backup --label LAPTOP` makes each device's token.");
            }
        }
        AdminCommand::Tenant(TenantCommand::AdminToken { tenant }) => {
            let token = client.replace_tenant_admin_token(TenantId(tenant)).await?;
            if ctx.json {
                println!("{}", serde_json::json!({ "tenant": tenant, "admin_token": token.expose() }));
            } else {
                println!("tenant {tenant}'s new admin token (shown once; hand it to the tenant's owner):");
                println!("{}", token.expose());
            }
        }
        AdminCommand::Token(TokenCommand::Create { ttl, label }) => {
            let token = client.create_operator_token(ttl.or(Some(0)), &label).await?;
            print_token(ctx.json, &token, None);
        }
        AdminCommand::Token(TokenCommand::List { tenant }) => {
            let list = client.list_tokens(Credential::Operator, tenant.map(TenantId)).await?;
            tokens::print_list(ctx.json, &list)?;
        }
        AdminCommand::Token(TokenCommand::Revoke { id }) => {
            client.revoke_token(Credential::Operator, tokens::parse_id(&id)?).await?;
            tokens::print_revoked(ctx.json, &id);
        }
        AdminCommand::Node(NodeCommand::Revoke { node }) => {
            let id: u64 = node.trim_start_matches("node-").parse().map_err(|_| anyhow::anyhow!("{node:?} is not a node id"))?;
            client.revoke_node(strata_proto::NodeId(id)).await?;
            if ctx.json {
                println!("{}", serde_json::json!({ "revoked": id }));
            } else {
                println!("revoked node-{id}: its certificate is refused and its shards are being rebuilt elsewhere");
            }
        }
        AdminCommand::Audit => {
            let log = client.audit_log().await?;
            if ctx.json {
                println!("{}", serde_json::to_string(&log)?);
            } else {
                print!("{}", render_audit(&log));
            }
        }
        AdminCommand::Ca(cmd) => run_ca(ctx, &client, cmd).await?,
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

async fn run_ca(ctx: &Ctx, client: &strata_client::ClusterClient, cmd: CaCommand) -> anyhow::Result<()> {
    match cmd {
        CaCommand::Rotate => {
            client.rotate_ca().await?;
            if ctx.json {
                println!("{}", serde_json::json!({ "rotation": "begun" }));
            } else {
                println!("a new cluster CA is trusted beside the current one; nodes are renewing onto it");
                println!("watch `strata admin ca status`, then run `strata admin ca finish`");
            }
        }
        CaCommand::Status => {
            let s = client.status().await?;
            if ctx.json {
                println!("{}", serde_json::json!({ "trusted_cas": s.trusted_cas, "pending": s.ca_rotation_pending }));
            } else {
                for (i, fp) in s.trusted_cas.iter().enumerate() {
                    let role = if i + 1 == s.trusted_cas.len() { "issuing" } else { "trusted until the rotation finishes" };
                    println!("CA {fp} ({role})");
                }
                match &s.ca_rotation_pending {
                    None => println!("no rotation in progress"),
                    Some(p) if p.is_empty() => println!("every node renewed onto the new CA: `strata admin ca finish` is safe"),
                    Some(p) => {
                        let names: Vec<String> = p.iter().map(ToString::to_string).collect();
                        println!("still on the old CA: {}", names.join(", "));
                    }
                }
            }
        }
        CaCommand::Finish { force } => {
            client.finish_ca_rotation(force).await?;
            if ctx.json {
                println!("{}", serde_json::json!({ "rotation": "finished" }));
            } else {
                println!("only the new cluster CA is trusted now");
            }
        }
    }
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
    let holders: Vec<String> = s.ca_holders.iter().map(ToString::to_string).collect();
    let _ = writeln!(out, "CA key held by: {}", if holders.is_empty() { "(none recorded)".to_string() } else { holders.join(", ") });
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

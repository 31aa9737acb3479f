//! `strata token ...`: a tenant admin's device tokens, and the rendering of token lists and the audit log
//! shared with `strata admin token`.

use clap::Subcommand;
use strata_client::cluster::Credential;
use strata_proto::units::parse_duration_secs;
use strata_proto::{AuditEntry, Role, RoleSet, Secret, TokenInfo};

use super::Ctx;
use super::browse::format_time_ms as when;

/// Token commands of a tenant admin (the profile's token must be an admin token of the tenant).
#[derive(Subcommand)]
pub enum TenantTokenCommand {
    /// Create a token for a device of this tenant and print it (it is shown only once).
    Create {
        /// Role to grant: backup (append and read, never delete or replace) or restore (read). Repeatable.
        #[arg(long = "role", required = true, value_parser = parse_device_role)]
        roles: Vec<Role>,
        /// Lifetime (e.g. 90d, or `never`) [default: 365d].
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<u64>,
        /// Label shown in lists and the audit log (device name, purpose).
        #[arg(long)]
        label: String,
    },
    /// List this tenant's tokens (ids, roles, labels, expiry; never the secrets).
    List,
    /// Revoke a token by the id `token list` shows (a lost or stolen device); it stops working at once.
    Revoke {
        /// The token's id (16 hex digits).
        id: String,
    },
}

fn parse_device_role(s: &str) -> Result<Role, String> {
    match Role::parse(s) {
        Some(r @ (Role::Backup | Role::Restore)) => Ok(r),
        Some(Role::Admin) => Err("a tenant has one admin token, created with the tenant; devices get backup or restore tokens".into()),
        Some(Role::Operator) => Err("operator tokens are created with `strata admin token create`".into()),
        None => Err(format!("unknown role {s:?} (backup, restore)")),
    }
}

/// A lifetime: a duration (`90d`, `12h`) or `never`, which is sent as 0.
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    if s == "never" {
        return Ok(0);
    }
    match parse_duration_secs(s)? {
        0 => Err("a lifetime of 0 is not a lifetime; use `never` for a token that does not expire".into()),
        secs => Ok(secs),
    }
}

/// A token id as lists print it: 16 hex digits.
pub fn parse_id(s: &str) -> anyhow::Result<[u8; 8]> {
    let mut id = [0u8; 8];
    hex::decode_to_slice(s.trim(), &mut id)
        .map_err(|_| anyhow::anyhow!("{s:?} is not a token id (16 hex digits, as `token list` shows)"))?;
    Ok(id)
}

/// Prints a new token (text or JSON).
pub fn print_token(json: bool, token: &Secret, tenant: Option<u64>) {
    if json {
        println!("{}", serde_json::json!({ "tenant": tenant, "token": token.expose() }));
    } else {
        println!("{}", token.expose());
        eprintln!("(shown once: the cluster keeps only a digest)");
    }
}

/// Prints the confirmation of a revocation.
pub fn print_revoked(json: bool, id: &str) {
    if json {
        println!("{}", serde_json::json!({ "revoked": id }));
    } else {
        println!("revoked token {id}");
    }
}

/// Prints a token list (text table or JSON).
pub fn print_list(json: bool, list: &[TokenInfo]) -> anyhow::Result<()> {
    if json {
        let rows: Vec<serde_json::Value> = list
            .iter()
            .map(|t| {
                serde_json::json!({
                    "id": hex::encode(t.id),
                    "tenant": t.tenant.map(|x| x.0),
                    "roles": t.roles.roles().iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                    "label": t.label,
                    "created_ms": t.created_at_ms,
                    "expires_ms": t.expires_at_ms,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    println!("{:<16}  {:<10}  {:<15}  {:<25}  {:<25}  LABEL", "ID", "TENANT", "ROLES", "CREATED", "EXPIRES");
    for t in list {
        let roles: Vec<String> = t.roles.roles().iter().map(|r| r.to_string()).collect();
        println!(
            "{:<16}  {:<10}  {:<15}  {:<25}  {:<25}  {}",
            hex::encode(t.id),
            t.tenant.map(|x| x.to_string()).unwrap_or_else(|| "(operator)".into()),
            roles.join("+"),
            when(t.created_at_ms),
            t.expires_at_ms.map(when).unwrap_or_else(|| "never".into()),
            t.label
        );
    }
    Ok(())
}

/// Text rendering of the audit log.
pub fn render_audit(log: &[AuditEntry]) -> String {
    log.iter().map(|e| format!("{}  {}: {}\n", when(e.at_ms), e.actor, e.what)).collect()
}

/// Runs a tenant admin's token command.
pub async fn run(ctx: &Ctx, cmd: TenantTokenCommand) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    match cmd {
        TenantTokenCommand::Create { roles, ttl, label } => {
            let token = client.create_token(None, RoleSet::of(&roles), ttl, &label).await?;
            print_token(ctx.json, &token, None);
        }
        TenantTokenCommand::List => print_list(ctx.json, &client.list_tokens(Credential::Tenant, None).await?)?,
        TenantTokenCommand::Revoke { id } => {
            client.revoke_token(Credential::Tenant, parse_id(&id)?).await?;
            print_revoked(ctx.json, &id);
        }
    }
    client.close();
    Ok(())
}

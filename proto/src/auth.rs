//! Credentials: bearer secrets (tenant tokens, join tokens) and the roles a token grants.
//!
//! The cluster never stores a secret, only its [`Secret::digest`]; secrets are long random strings, so a fast
//! domain-separated BLAKE3 digest is enough (a password hash would add nothing against 256 bits of entropy).
//! `Debug` never prints a secret, so secrets cannot leak into logs through formatting.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A bearer secret: a tenant token or a one-time join token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret(pub String);

impl Secret {
    /// Context string for the digest; changing it invalidates every stored token.
    const DIGEST_CONTEXT: &'static str = "strata 2026-11 bearer secret digest v1";

    /// The digest the cluster stores and looks secrets up by.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key(Self::DIGEST_CONTEXT);
        h.update(self.0.as_bytes());
        *h.finalize().as_bytes()
    }

    /// The secret text, for writing into a profile file or a header. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Append-only: query and upload blobs, open upload sessions, commit snapshots. Never delete.
    Backup,
    /// Read blobs and list snapshots of the tenant.
    Restore,
    /// Everything within the tenant, including forgetting snapshots and deleting blobs.
    Admin,
    /// Cluster operator: status, tenants, tokens, generations. Not bound to one tenant's data.
    Operator,
}

impl Role {
    fn bit(self) -> u8 {
        match self {
            Role::Backup => 1,
            Role::Restore => 2,
            Role::Admin => 4,
            Role::Operator => 8,
        }
    }

    /// Parses `backup`, `restore`, `admin` or `operator`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "backup" => Some(Role::Backup),
            "restore" => Some(Role::Restore),
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }

    /// All roles, in display order.
    pub const ALL: [Role; 4] = [Role::Backup, Role::Restore, Role::Admin, Role::Operator];
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Backup => "backup",
            Role::Restore => "restore",
            Role::Admin => "admin",
            Role::Operator => "operator",
        })
    }
}

/// A set of roles held by one token.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RoleSet(u8);

impl RoleSet {
    /// The set holding exactly `roles`.
    pub fn of(roles: &[Role]) -> Self {
        RoleSet(roles.iter().fold(0, |acc, r| acc | r.bit()))
    }

    /// May read the tenant's blobs and snapshots (backup needs this for incremental runs).
    pub fn can_read(self) -> bool {
        self.allows(Role::Backup) || self.allows(Role::Restore)
    }

    /// May add blobs and snapshots to the tenant.
    pub fn can_append(self) -> bool {
        self.allows(Role::Backup)
    }

    /// May delete the tenant's blobs or forget its snapshots.
    pub fn can_delete(self) -> bool {
        self.allows(Role::Admin)
    }

    /// Whether the set grants `role`. Admin implies Backup and Restore within its tenant.
    pub fn allows(self, role: Role) -> bool {
        let implied = if self.0 & Role::Admin.bit() != 0 { Role::Backup.bit() | Role::Restore.bit() } else { 0 };
        (self.0 | implied) & role.bit() != 0
    }

    /// The roles in the set, in display order.
    pub fn roles(self) -> Vec<Role> {
        Role::ALL.into_iter().filter(|r| self.0 & r.bit() != 0).collect()
    }
}

impl fmt::Debug for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.roles()).finish()
    }
}

/// A token as lists show it: never the secret, only its public id (the first eight bytes of its digest).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Public id, used to revoke it.
    pub id: [u8; 8],
    /// Tenant scope; `None` for an operator token.
    pub tenant: Option<crate::ids::TenantId>,
    /// Roles.
    pub roles: RoleSet,
    /// Label given at creation.
    pub label: String,
    /// When it was created, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When it expires, if ever.
    pub expires_at_ms: Option<u64>,
}

/// One entry of the cluster's audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// Who acted, in words ("an operator", "an admin of tenant-3", "node-7").
    pub actor: String,
    /// What was done.
    pub what: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = Secret("stk1_supersecret".into());
        assert!(!format!("{s:?}").contains("supersecret"));
        assert_ne!(s.digest(), Secret("stk1_other".into()).digest());
    }

    #[test]
    fn backup_role_cannot_delete() {
        let backup = RoleSet::of(&[Role::Backup]);
        assert!(backup.allows(Role::Backup));
        assert!(!backup.allows(Role::Admin));
        assert!(!backup.allows(Role::Restore));
        assert!(backup.can_read() && backup.can_append() && !backup.can_delete());
        let restore = RoleSet::of(&[Role::Restore]);
        assert!(restore.can_read() && !restore.can_append() && !restore.can_delete());
        let admin = RoleSet::of(&[Role::Admin]);
        assert!(admin.allows(Role::Backup) && admin.allows(Role::Restore));
        assert!(!admin.allows(Role::Operator));
    }
}

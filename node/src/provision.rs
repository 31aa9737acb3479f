//! Writing a node's files: its config, certificates and keys, and operator credentials.
//!
//! Used by `init` (first node of a new cluster), `join` (a node admitted by an existing cluster) and `dev`
//! (a whole local cluster at once). Keys and secrets are written with mode 0600; paths in the config are
//! relative to the node's directory so the directory can be moved.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use strata_transport::profile::write_private;

use crate::config::{
    Bootstrap, Durability, Limits, MigrationConfig, NodeConfig, RaftSettings, RepairConfig, ScrubConfig, StorageSettings, TlsFiles,
};

/// Where a node lives and how it is reached.
#[derive(Debug, Clone)]
pub struct NodePlan {
    /// Node id.
    pub id: u64,
    /// Node directory (config, TLS files, data).
    pub dir: PathBuf,
    /// QUIC listen address.
    pub listen: String,
    /// Address advertised to others (defaults to `listen`).
    pub advertise: Option<String>,
    /// HTTP metrics address.
    pub metrics: Option<String>,
    /// Zone.
    pub zone: String,
    /// Capacity.
    pub capacity_bytes: u64,
    /// Generation name.
    pub generation: String,
    /// Seeds.
    pub seeds: Vec<String>,
    /// Request limits written into the config.
    pub limits: Limits,
    /// Lifetime of the node certificates it will sign and renew.
    pub cert_lifetime_secs: u64,
}

/// TLS material for one node.
pub struct NodeTls<'a> {
    /// Cluster CA certificate.
    pub ca_pem: &'a str,
    /// Node certificate.
    pub cert_pem: &'a str,
    /// Node key.
    pub key_pem: &'a str,
    /// CA key, for nodes that admit joiners.
    pub ca_key_pem: Option<&'a str>,
}

/// Writes `dir/tls/*` and `dir/node.toml`; returns the config path.
pub fn write_node(plan: &NodePlan, tls: &NodeTls<'_>, bootstrap: Option<Bootstrap>, sync_writes: bool) -> anyhow::Result<PathBuf> {
    let tls_dir = plan.dir.join("tls");
    std::fs::create_dir_all(&tls_dir).with_context(|| format!("cannot create {}", tls_dir.display()))?;
    std::fs::write(tls_dir.join("ca.pem"), tls.ca_pem)?;
    std::fs::write(tls_dir.join("node.pem"), tls.cert_pem)?;
    write_private(&tls_dir.join("node.key"), tls.key_pem.as_bytes())?;
    if let Some(k) = tls.ca_key_pem {
        write_private(&tls_dir.join("ca.key"), k.as_bytes())?;
    }
    let config = NodeConfig {
        node_id: plan.id,
        data_dir: PathBuf::from("data"),
        listen_addr: plan.listen.clone(),
        advertise_addr: plan.advertise.clone(),
        metrics_addr: plan.metrics.clone(),
        zone: plan.zone.clone(),
        capacity_bytes: plan.capacity_bytes,
        generation: plan.generation.clone(),
        seeds: plan.seeds.clone(),
        tls: TlsFiles {
            ca_cert: "tls/ca.pem".into(),
            node_cert: "tls/node.pem".into(),
            node_key: "tls/node.key".into(),
            ca_key: tls.ca_key_pem.map(|_| "tls/ca.key".into()),
            cert_lifetime_secs: plan.cert_lifetime_secs,
        },
        bootstrap,
        limits: plan.limits.clone(),
        raft: RaftSettings::default(),
        storage: StorageSettings { sync_writes, ..StorageSettings::default() },
        durability: Durability::default(),
        migration: MigrationConfig::default(),
        repair: RepairConfig::default(),
        scrub: ScrubConfig::default(),
    };
    let text = format!(
        "# Strata node configuration. Every field is documented in docs/configuration.md.\n{}",
        toml::to_string_pretty(&config).context("serialising the node config")?
    );
    let path = plan.dir.join("node.toml");
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Refuses to overwrite an existing node directory.
pub fn ensure_fresh(dir: &Path) -> anyhow::Result<()> {
    if dir.join("node.toml").exists() {
        anyhow::bail!("{} already holds a node (node.toml exists); choose another directory", dir.display());
    }
    Ok(())
}

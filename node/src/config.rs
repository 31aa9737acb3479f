//! The node's TOML configuration: every field documented, units in names, defaults for everything optional,
//! and [`NodeConfig::validate`] naming the field at fault.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_proto::EcProfile;

/// Why a configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {path}: {reason}")]
    Read {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file is not valid TOML for a node config (the message names the field and line).
    #[error("config {path} is invalid: {reason}")]
    Parse {
        /// File.
        path: String,
        /// Parser's explanation.
        reason: String,
    },
    /// A field has a value the node cannot use.
    #[error("config field `{field}` {reason}")]
    Field {
        /// Dotted field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn field(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Field { field, reason: reason.into() }
}

/// Complete node configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id, assigned by `strata-node init` or `join`. Never reuse an id.
    pub node_id: u64,
    /// Directory for the database (must be on the disk that stores shards).
    pub data_dir: PathBuf,
    /// UDP address to listen on for QUIC (`host:port`).
    pub listen_addr: String,
    /// Address other nodes and clients use to reach this node; defaults to `listen_addr`.
    #[serde(default)]
    pub advertise_addr: Option<String>,
    /// TCP address of the HTTP endpoint serving `/metrics` and `/health`; unset disables it.
    #[serde(default)]
    pub metrics_addr: Option<String>,
    /// Failure domain (rack, room, host). Shards of a stripe are spread over zones.
    pub zone: String,
    /// Bytes of shard data this node may store; also its placement weight.
    pub capacity_bytes: u64,
    /// Name of the storage generation the node belongs to.
    pub generation: String,
    /// Addresses of existing members to register with at start-up.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// Certificates and keys.
    pub tls: TlsFiles,
    /// Present only on the node that creates the cluster.
    #[serde(default)]
    pub bootstrap: Option<Bootstrap>,
    /// Request limits.
    #[serde(default)]
    pub limits: Limits,
    /// Raft timing.
    #[serde(default)]
    pub raft: RaftSettings,
    /// Storage engine settings.
    #[serde(default)]
    pub storage: StorageSettings,
    /// When a put is acknowledged.
    #[serde(default)]
    pub durability: Durability,
    /// Moving partitions between nodes and generations.
    #[serde(default)]
    pub migration: MigrationConfig,
    /// Declaring lost nodes and rebuilding their shards.
    #[serde(default)]
    pub repair: RepairConfig,
    /// Reading back and verifying every shard on a schedule.
    #[serde(default)]
    pub scrub: ScrubConfig,
}

/// The background scrub (verify every shard, rebuild bad or missing ones).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrubConfig {
    /// Pause between the end of one pass and the start of the next.
    pub interval_ms: u64,
    /// Most shard bytes per second a pass reads; 0 = unlimited.
    pub rate_bytes_per_sec: u64,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        ScrubConfig { interval_ms: 24 * 3600 * 1000, rate_bytes_per_sec: 16 << 20 }
    }
}

/// When the cluster gives up on an unreachable node and rebuilds its shards elsewhere (applied by the Raft
/// leader, so keep it equal on every node).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepairConfig {
    /// A node the leader has not reached for this long is declared Down and its shards are rebuilt elsewhere.
    pub node_down_after_ms: u64,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig { node_down_after_ms: 10 * 60 * 1000 }
    }
}

/// How this node moves data (see `strata admin generation`). The rate can be changed at run time for the
/// whole cluster with `strata admin generation rate`, which overrides this value on every node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MigrationConfig {
    /// Most shard bytes per second this node writes while moving partitions; 0 = unlimited.
    pub rate_bytes_per_sec: u64,
    /// Partitions this node moves at the same time.
    pub parallel_partitions: usize,
    /// Most partitions moving at once in the whole cluster (applied by the Raft leader).
    pub max_moving_partitions: usize,
    /// Most chunks copied per batch (one holdings query and one shard write per target node per batch); a batch
    /// also holds at most about one second's worth of bytes at the rate limit.
    pub batch_chunks: usize,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        MigrationConfig { rate_bytes_per_sec: 64 << 20, parallel_partitions: 2, max_moving_partitions: 16, batch_chunks: 32 }
    }
}

/// Certificate and key files (PEM). Relative paths are relative to the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The cluster CA certificate.
    pub ca_cert: PathBuf,
    /// This node's certificate, signed by the cluster CA.
    pub node_cert: PathBuf,
    /// This node's private key.
    pub node_key: PathBuf,
    /// The CA private key, on the node created by `strata-node init`. Other nodes receive the key when they
    /// become Raft voters and keep it in `ca.key` next to `node_cert` (`ca_custody`).
    #[serde(default)]
    pub ca_key: Option<PathBuf>,
    /// Lifetime of the node certificates this node signs; every node renews its own when a third of its
    /// lifetime is left.
    #[serde(default = "default_cert_lifetime_secs")]
    pub cert_lifetime_secs: u64,
}

fn default_cert_lifetime_secs() -> u64 {
    crate::pki::DEFAULT_CERT_LIFETIME_SECS
}

impl TlsFiles {
    /// Where this node keeps the CA key: `ca_key`, or `ca.key` next to the node certificate.
    pub fn ca_key_path(&self) -> PathBuf {
        self.ca_key.clone().unwrap_or_else(|| self.node_cert.with_file_name("ca.key"))
    }
}

/// Cluster parameters applied when the first node starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    /// Cluster name.
    pub cluster_name: String,
    /// The cluster has `2^partition_bits` partitions (fixed forever).
    pub partition_bits: u8,
    /// Erasure-code profile of the first generation, `K+M`.
    pub ec_profile: String,
    /// Hex digest of the initial operator token.
    pub operator_token_digest: String,
}

/// Request limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request frame (envelope) accepted.
    pub max_frame_bytes: u32,
    /// Largest blob a client may put.
    pub max_blob_bytes: u64,
    /// Largest Raft or metadata body accepted from a peer.
    pub max_internal_body_bytes: u64,
    /// Most ids in one dedup query.
    pub max_has_batch: usize,
    /// Bytes that client requests (frames, bodies and replies) may hold in memory at once; further requests
    /// wait, then are refused as busy.
    pub max_inflight_bytes: u64,
    /// Of `max_inflight_bytes`, the most that callers from one address (without a node certificate) may hold.
    pub max_inflight_bytes_per_ip: u64,
    /// Bytes that shard traffic from other nodes may hold in memory at once.
    pub max_shard_inflight_bytes: u64,
    /// Bytes that metadata requests forwarded by other nodes may hold in memory at once.
    pub max_meta_inflight_bytes: u64,
    /// Bytes that Raft's own messages may hold in memory at once (a budget apart, so heartbeats never wait
    /// behind backups).
    pub max_raft_inflight_bytes: u64,
    /// Connections the node accepts at once.
    pub max_connections: usize,
    /// Connections the node accepts at once from one address.
    pub max_connections_per_ip: usize,
    /// Requests in progress at once from one address (without a node certificate); more are refused as busy.
    pub max_requests_per_ip: usize,
    /// Flow-control window of a connection from a caller without a node certificate: what it may send before
    /// the node reads it.
    pub client_receive_window_bytes: u32,
    /// Requests a caller without a node certificate may have open on one connection.
    pub client_streams_per_connection: u32,
    /// Time a caller has to send a request frame once it opened a stream.
    pub header_timeout_ms: u64,
    /// Time a caller has to read a response; a caller that does not is cut off and its bytes freed.
    pub reply_timeout_ms: u64,
    /// Deadline for one shard write or read to a peer.
    pub shard_timeout_ms: u64,
    /// Deadline for a whole client request.
    pub request_timeout_ms: u64,
    /// Join requests this node serves per minute (each costs a signature and Raft writes).
    pub join_requests_per_minute: u32,
    /// Catalog writes (opening, renewing and closing sessions, commits, forgets) one tenant may make through
    /// this node per minute; each is a Raft log entry.
    pub catalog_writes_per_minute_per_tenant: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: strata_proto::MAX_FRAME_BYTES_DEFAULT,
            max_blob_bytes: 16 << 20,
            max_internal_body_bytes: 64 << 20,
            max_has_batch: 4096,
            max_inflight_bytes: 512 << 20,
            max_inflight_bytes_per_ip: 256 << 20,
            max_shard_inflight_bytes: 512 << 20,
            max_meta_inflight_bytes: 64 << 20,
            max_raft_inflight_bytes: 256 << 20,
            max_connections: 4096,
            max_connections_per_ip: 64,
            max_requests_per_ip: 1024,
            client_receive_window_bytes: 8 << 20,
            client_streams_per_connection: 128,
            header_timeout_ms: 10_000,
            reply_timeout_ms: 30_000,
            shard_timeout_ms: 10_000,
            request_timeout_ms: 60_000,
            join_requests_per_minute: 10,
            catalog_writes_per_minute_per_tenant: 600,
        }
    }
}

/// Raft timing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSettings {
    /// Leader heartbeat period.
    pub heartbeat_interval_ms: u64,
    /// Shortest election timeout.
    pub election_timeout_min_ms: u64,
    /// Longest election timeout.
    pub election_timeout_max_ms: u64,
    /// Build a state-machine snapshot after this many log entries.
    pub snapshot_logs_since_last: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            heartbeat_interval_ms: 250,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_logs_since_last: 1000,
        }
    }
}

/// Storage engine settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// fsync shard writes before acknowledging them (turn off only for throwaway test clusters).
    pub sync_writes: bool,
    /// RocksDB block cache shared by all column families.
    pub block_cache_bytes: usize,
    /// Memtable size for shard data.
    pub write_buffer_bytes: usize,
    /// Space kept free on the file system holding the data directory: shard writes are refused (as a full
    /// disk) once less than this would stay available, so the metadata log, memtable flushes and compactions
    /// still have room when shards have filled the disk.
    pub reserve_bytes: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings { sync_writes: true, block_cache_bytes: 64 << 20, write_buffer_bytes: 32 << 20, reserve_bytes: 512 << 20 }
    }
}

/// When a put is acknowledged (see ARCHITECTURE.md, "Durability rule").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Durability {
    /// A put is acknowledged once at least `k + extra_shards_for_ack` shards are durable (capped at k+m).
    pub extra_shards_for_ack: u8,
}

impl Default for Durability {
    fn default() -> Self {
        Durability { extra_shards_for_ack: 1 }
    }
}

impl NodeConfig {
    /// Reads, resolves relative paths and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read { path: shown.clone(), reason: e.to_string() })?;
        let mut cfg: NodeConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse { path: shown, reason: e.to_string() })?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        cfg.validate()?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        fix(&mut self.tls.ca_cert);
        fix(&mut self.tls.node_cert);
        fix(&mut self.tls.node_key);
        if let Some(k) = &mut self.tls.ca_key {
            fix(k);
        }
    }

    /// The address peers should use.
    pub fn advertised(&self) -> &str {
        self.advertise_addr.as_deref().unwrap_or(&self.listen_addr)
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(field("node_id", "must be at least 1"));
        }
        self.listen_addr.parse::<SocketAddr>().map_err(|e| field("listen_addr", format!("{:?} is not ip:port ({e})", self.listen_addr)))?;
        if let Some(a) = &self.advertise_addr
            && a.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(field("advertise_addr", format!("{a:?} is not host:port")));
        }
        if let Some(m) = &self.metrics_addr {
            m.parse::<SocketAddr>().map_err(|e| field("metrics_addr", format!("{m:?} is not ip:port ({e})")))?;
        }
        if self.zone.trim().is_empty() {
            return Err(field("zone", "must not be empty"));
        }
        if self.generation.trim().is_empty() {
            return Err(field("generation", "must not be empty"));
        }
        if self.capacity_bytes == 0 {
            return Err(field("capacity_bytes", "must be greater than 0"));
        }
        for (name, path) in
            [("tls.ca_cert", &self.tls.ca_cert), ("tls.node_cert", &self.tls.node_cert), ("tls.node_key", &self.tls.node_key)]
        {
            if !path.is_file() {
                return Err(field(name, format!("names {}, which is not a readable file", path.display())));
            }
        }
        if let Some(b) = &self.bootstrap {
            if b.partition_bits > strata_proto::cluster_map::MAX_PARTITION_BITS {
                return Err(field(
                    "bootstrap.partition_bits",
                    format!("must be at most {}", strata_proto::cluster_map::MAX_PARTITION_BITS),
                ));
            }
            b.ec_profile.parse::<EcProfile>().map_err(|e| field("bootstrap.ec_profile", e.to_string()))?;
            if hex::decode(&b.operator_token_digest).map(|d| d.len()) != Ok(32) {
                return Err(field("bootstrap.operator_token_digest", "must be 64 hex digits"));
            }
        } else if self.seeds.is_empty() {
            return Err(field("seeds", "must name at least one existing node (only the bootstrap node may have none)"));
        }
        if self.tls.cert_lifetime_secs < 60 {
            return Err(field("tls.cert_lifetime_secs", "must be at least 60 (certificates are renewed at a third of their lifetime)"));
        }
        if self.repair.node_down_after_ms < 1000 {
            return Err(field("repair.node_down_after_ms", "must be at least 1000 (a restart must not trigger a rebuild)"));
        }
        if self.scrub.interval_ms < 1000 {
            return Err(field("scrub.interval_ms", "must be at least 1000"));
        }
        let m = &self.migration;
        if m.parallel_partitions == 0 || m.max_moving_partitions == 0 || m.batch_chunks == 0 {
            return Err(field("migration", "parallel_partitions, max_moving_partitions and batch_chunks must be positive"));
        }
        let l = &self.limits;
        if l.max_frame_bytes < 1024 {
            return Err(field("limits.max_frame_bytes", "must be at least 1024"));
        }
        if l.max_blob_bytes == 0 || l.max_blob_bytes > l.max_inflight_bytes {
            return Err(field("limits.max_blob_bytes", "must be positive and at most limits.max_inflight_bytes"));
        }
        // A put holds its body and a blob read reserves its reply: one of each must fit every budget involved.
        let one_put = l.max_blob_bytes + u64::from(l.max_frame_bytes);
        if l.max_inflight_bytes_per_ip < one_put || l.max_inflight_bytes_per_ip > l.max_inflight_bytes {
            return Err(field(
                "limits.max_inflight_bytes_per_ip",
                "must hold at least one blob and one frame (max_blob_bytes + max_frame_bytes) and at most max_inflight_bytes",
            ));
        }
        if l.max_shard_inflight_bytes < one_put {
            return Err(field("limits.max_shard_inflight_bytes", "must hold at least max_blob_bytes + max_frame_bytes"));
        }
        if l.max_internal_body_bytes < 2 * crate::meta::authority::MAX_ENTRY_BYTES as u64 + (1 << 20) {
            return Err(field(
                "limits.max_internal_body_bytes",
                format!(
                    "must be at least {} (two of the largest metadata entries and room)",
                    2 * crate::meta::authority::MAX_ENTRY_BYTES + (1 << 20)
                ),
            ));
        }
        if l.max_raft_inflight_bytes < l.max_internal_body_bytes || l.max_meta_inflight_bytes < (1 << 20) {
            return Err(field(
                "limits.max_raft_inflight_bytes",
                "must hold at least max_internal_body_bytes (and max_meta_inflight_bytes at least 1 MiB)",
            ));
        }
        if l.client_receive_window_bytes < (1 << 20) || l.client_streams_per_connection == 0 {
            return Err(field("limits.client_receive_window_bytes", "must be at least 1 MiB (and client_streams_per_connection positive)"));
        }
        if l.max_connections == 0
            || l.max_connections_per_ip == 0
            || l.max_requests_per_ip == 0
            || l.join_requests_per_minute == 0
            || l.catalog_writes_per_minute_per_tenant == 0
        {
            return Err(field(
                "limits",
                "max_connections, max_connections_per_ip, max_requests_per_ip and join_requests_per_minute must be positive",
            ));
        }
        if l.max_has_batch == 0
            || l.shard_timeout_ms == 0
            || l.request_timeout_ms == 0
            || l.header_timeout_ms == 0
            || l.reply_timeout_ms == 0
        {
            return Err(field(
                "limits",
                "max_has_batch, shard_timeout_ms, request_timeout_ms, header_timeout_ms and reply_timeout_ms must be positive",
            ));
        }
        let r = &self.raft;
        if r.heartbeat_interval_ms == 0 || r.heartbeat_interval_ms >= r.election_timeout_min_ms {
            return Err(field("raft.heartbeat_interval_ms", "must be positive and below raft.election_timeout_min_ms"));
        }
        if r.election_timeout_min_ms >= r.election_timeout_max_ms {
            return Err(field("raft.election_timeout_max_ms", "must be above raft.election_timeout_min_ms"));
        }
        if r.snapshot_logs_since_last == 0 {
            return Err(field("raft.snapshot_logs_since_last", "must be positive"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(dir: &Path) -> String {
        for f in ["ca.pem", "node.pem", "node.key"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        "node_id = 1\ndata_dir = \"data\"\nlisten_addr = \"127.0.0.1:7401\"\nzone = \"z1\"\ncapacity_bytes = 1000\n\
         generation = \"gen-1\"\nseeds = [\"127.0.0.1:7402\"]\n[tls]\nca_cert = \"ca.pem\"\nnode_cert = \"node.pem\"\nnode_key = \"node.key\"\n"
            .to_string()
    }

    fn load(dir: &Path, text: &str) -> Result<NodeConfig, ConfigError> {
        let p = dir.join("node.toml");
        std::fs::write(&p, text).unwrap();
        NodeConfig::load(&p)
    }

    #[test]
    fn minimal_config_loads_with_defaults() {
        let d = tempfile::tempdir().unwrap();
        let c = load(d.path(), &base(d.path())).unwrap();
        assert_eq!(c.data_dir, d.path().join("data"));
        assert!(c.storage.sync_writes);
        assert_eq!(c.durability.extra_shards_for_ack, 1);
    }

    #[test]
    fn bad_fields_are_named() {
        let d = tempfile::tempdir().unwrap();
        let b = base(d.path());
        let cases = [
            (b.replace("node_id = 1", "node_id = 0"), "`node_id`"),
            (b.replace("127.0.0.1:7401", "localhost"), "`listen_addr`"),
            (b.replace("capacity_bytes = 1000", "capacity_bytes = 0"), "`capacity_bytes`"),
            (b.replace("ca.pem", "nope.pem"), "`tls.ca_cert`"),
            (b.replace("seeds = [\"127.0.0.1:7402\"]", ""), "`seeds`"),
            (format!("{b}[raft]\nheartbeat_interval_ms = 5000\n"), "`raft.heartbeat_interval_ms`"),
            (format!("{b}[limits]\nmax_blob_bytes = 0\n"), "`limits.max_blob_bytes`"),
            (b.replace("zone = \"z1\"", "zone = \" \""), "`zone`"),
            (format!("{b}colour = 3\n"), "colour"),
            (b.replace("capacity_bytes = 1000", "capacity_bytes = \"lots\""), "capacity_bytes"),
        ];
        for (text, needle) in cases {
            let err = load(d.path(), &text).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle}");
        }
    }
}

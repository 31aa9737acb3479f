//! `strata-node dev`: a whole local cluster on 127.0.0.1 with one command, resumable.
//!
//! The first run creates a CA, one directory per node with its config and certificate, an operator token and
//! a manifest (`dev.toml`); it starts every node as a child process (logs in `nodeN/node.log`), waits until the
//! cluster is ready, creates a demo tenant and writes a client profile. Later runs with the same directory
//! start the same nodes on their existing data. Ctrl-C stops the nodes cleanly. Everything binds to loopback.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use strata_proto::{EcProfile, NodeId, Request, Response, Secret};
use strata_transport::health_probe::get_health;
use strata_transport::profile::{Profile, write_private};
use strata_transport::{RpcLimits, RpcPool, endpoint, rpc, tls};

use crate::config::{Bootstrap, Limits};
use crate::pki;
use crate::provision::{NodePlan, NodeTls, write_node};

/// What `dev` should build.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Cluster directory.
    pub dir: PathBuf,
    /// Number of nodes.
    pub nodes: usize,
    /// Erasure-code profile of the generation.
    pub ec: EcProfile,
    /// Node i listens on QUIC port `base_port + i` and serves metrics on `base_port + 100 + i`.
    pub base_port: u16,
    /// `2^partition_bits` partitions.
    pub partition_bits: u8,
    /// Capacity of each node.
    pub capacity_bytes: u64,
    /// fsync shard writes.
    pub sync_writes: bool,
    /// Lifetime of the nodes' certificates (they renew themselves at a third of it).
    pub cert_lifetime_secs: u64,
}

/// The manifest of a dev cluster (`dev.toml`), so later runs resume the same cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevManifest {
    /// Number of nodes.
    pub nodes: usize,
    /// Port base.
    pub base_port: u16,
    /// Profile.
    pub ec: String,
    /// Operator token (secret; the file is 0600).
    pub operator_token: String,
}

impl DevManifest {
    /// QUIC address of node `i` (1-based).
    pub fn quic_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", usize::from(self.base_port) + i)
    }

    /// Metrics address of node `i`.
    pub fn metrics_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", usize::from(self.base_port) + 100 + i)
    }

    /// Config file of node `i`.
    pub fn config_path(dir: &Path, i: usize) -> PathBuf {
        dir.join(format!("node{i}")).join("node.toml")
    }

    /// Reads the manifest of the cluster in `dir`, if there is one.
    pub fn load(dir: &Path) -> anyhow::Result<Option<Self>> {
        let p = dir.join("dev.toml");
        if !p.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
        Ok(Some(toml::from_str(&text).with_context(|| format!("{} is not a dev cluster manifest", p.display()))?))
    }
}

/// The default cluster directory: `$XDG_DATA_HOME/strata-dev` or `~/.local/share/strata-dev`.
pub fn default_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("strata-dev")
}

/// Creates the cluster's files unless they exist; returns the manifest.
pub fn prepare(opts: &DevOptions) -> anyhow::Result<DevManifest> {
    if let Some(m) = DevManifest::load(&opts.dir)? {
        if m.nodes != opts.nodes || m.base_port != opts.base_port {
            bail!(
                "{} already holds a dev cluster of {} nodes on ports from {}; pass the same --nodes/--base-port, or use another --dir",
                opts.dir.display(),
                m.nodes,
                m.base_port
            );
        }
        return Ok(m);
    }
    if opts.nodes < opts.ec.total_shards() {
        bail!("{} nodes cannot hold a {} profile: need at least {}", opts.nodes, opts.ec, opts.ec.total_shards());
    }
    if usize::from(opts.base_port) + 100 + opts.nodes > usize::from(u16::MAX) {
        bail!("--base-port {} leaves no room for {} nodes", opts.base_port, opts.nodes);
    }
    std::fs::create_dir_all(&opts.dir).with_context(|| format!("cannot create {}", opts.dir.display()))?;
    let ca = pki::generate_ca("dev")?;
    std::fs::write(opts.dir.join("ca.pem"), &ca.cert_pem)?;
    let operator = crate::server::new_secret("stk1");
    let manifest =
        DevManifest { nodes: opts.nodes, base_port: opts.base_port, ec: opts.ec.to_string(), operator_token: operator.expose().to_owned() };
    for i in 1..=opts.nodes {
        let identity = pki::issue_node_identity(&ca, NodeId(i as u64), opts.cert_lifetime_secs)?;
        let plan = NodePlan {
            id: i as u64,
            dir: opts.dir.join(format!("node{i}")),
            listen: manifest.quic_addr(i),
            advertise: None,
            metrics: Some(manifest.metrics_addr(i)),
            zone: format!("dev-zone-{i}"),
            capacity_bytes: opts.capacity_bytes,
            generation: "gen-1".into(),
            seeds: if i == 1 { vec![] } else { vec![manifest.quic_addr(1)] },
            limits: dev_limits(),
            cert_lifetime_secs: opts.cert_lifetime_secs,
        };
        let bootstrap = (i == 1).then(|| Bootstrap {
            cluster_name: "strata-dev".into(),
            partition_bits: opts.partition_bits,
            ec_profile: opts.ec.to_string(),
            operator_token_digest: hex::encode(operator.digest()),
        });
        let tls = NodeTls {
            ca_pem: &ca.cert_pem,
            cert_pem: &identity.cert_pem,
            key_pem: &identity.key_pem,
            ca_key_pem: (i == 1).then_some(ca.key_pem.as_str()),
        };
        write_node(&plan, &tls, bootstrap, opts.sync_writes)?;
    }
    write_private(&opts.dir.join("dev.toml"), toml::to_string_pretty(&manifest)?.as_bytes())?;
    Ok(manifest)
}

/// Limits of a dev cluster's nodes: every client and node of it shares 127.0.0.1, so the limits per address are
/// those of the whole node.
fn dev_limits() -> Limits {
    let l = Limits::default();
    Limits { max_inflight_bytes_per_ip: l.max_inflight_bytes, max_connections_per_ip: l.max_connections, ..l }
}

/// Waits until every node reports ready on `/health`, printing progress.
pub async fn wait_ready(manifest: &DevManifest, timeout: Duration, mut exited: impl FnMut() -> Option<String>) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last_report = String::new();
    loop {
        if let Some(why) = exited() {
            bail!("{why}");
        }
        let mut ready = 0;
        for i in 1..=manifest.nodes {
            if matches!(get_health(&manifest.metrics_addr(i), Duration::from_millis(500)).await, Ok((200, _))) {
                ready += 1;
            }
        }
        let report = format!("{ready}/{} nodes ready", manifest.nodes);
        if report != last_report {
            eprintln!("  {report}");
            last_report = report;
        }
        if ready == manifest.nodes {
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!("the cluster was not ready within {} s; see the nodeN/node.log files", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Creates the demo tenant and writes `client.toml`, unless the profile exists.
pub async fn ensure_demo_profile(dir: &Path, manifest: &DevManifest) -> anyhow::Result<PathBuf> {
    let path = dir.join("client.toml");
    if path.exists() {
        return Ok(path);
    }
    let mut profile = Profile {
        ca_cert: "ca.pem".into(),
        nodes: (1..=manifest.nodes).map(|i| manifest.quic_addr(i)).collect(),
        token: None,
        operator_token: Some(manifest.operator_token.clone()),
        key_file: None,
        request_timeout_ms: 60_000,
        base_dir: dir.to_path_buf(),
    };
    // The demo tenant's first admin token: what an operator hands to a tenant's owner.
    let token = create_demo_tenant(&profile).await.context("creating the demo tenant")?;
    profile.token = Some(token.expose().to_owned());
    profile.save(&path)?;
    Ok(path)
}

/// Creates the `demo` tenant through any node with the profile's operator token, retrying while the cluster
/// settles (a leader may still be being elected); returns the tenant's first admin token.
async fn create_demo_tenant(profile: &Profile) -> anyhow::Result<Secret> {
    const ATTEMPTS: usize = 40;
    let ca_path = profile.ca_cert_path();
    let ca = std::fs::read_to_string(&ca_path).with_context(|| format!("cannot read {}", ca_path.display()))?;
    let operator = profile.operator_secret().context("the dev profile has no operator token")?;
    let first = rpc::resolve(&profile.nodes[0]).await?;
    let pool = RpcPool::new(endpoint::client_endpoint(first)?, tls::client_config(&ca, None)?, RpcLimits::default());
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        let addr = &profile.nodes[attempt % profile.nodes.len()];
        match pool.call(addr, Some(&operator), Request::CreateTenant { name: "demo".into() }, Bytes::new()).await {
            Ok(reply) => {
                pool.close_all();
                return match reply.response {
                    Response::TenantCreated { admin_token, .. } => Ok(admin_token),
                    other => Err(anyhow::anyhow!("unexpected reply from {addr}: {other:?}")),
                };
            }
            Err(e) if e.is_retryable() => last = Some(e),
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    pool.close_all();
    Err(anyhow::anyhow!(
        "no node created the tenant after {ATTEMPTS} attempts; last error: {}",
        last.map_or_else(String::new, |e| e.to_string())
    ))
}

/// Runs the dev cluster until Ctrl-C.
pub async fn run(opts: DevOptions) -> anyhow::Result<()> {
    let manifest = prepare(&opts)?;
    let exe = std::env::current_exe().context("locating the strata-node binary")?;
    eprintln!("Starting {} nodes ({}) in {}", manifest.nodes, manifest.ec, opts.dir.display());
    let mut children = Vec::new();
    for i in 1..=manifest.nodes {
        let config = DevManifest::config_path(&opts.dir, i);
        let log_path = config.with_file_name("node.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let child = tokio::process::Command::new(&exe)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting node {i}"))?;
        children.push(child);
    }
    let ready = wait_ready(&manifest, Duration::from_secs(90), || {
        children.iter_mut().enumerate().find_map(|(i, c)| match c.try_wait() {
            Ok(Some(status)) => Some(format!(
                "node {} exited during start-up ({status}); see {}",
                i + 1,
                DevManifest::config_path(&opts.dir, i + 1).with_file_name("node.log").display()
            )),
            _ => None,
        })
    })
    .await;
    let outcome = match ready {
        Ok(()) => serve_until_stopped(&opts.dir, &manifest, &mut children).await,
        Err(e) => Err(e),
    };
    stop_children(&mut children).await;
    outcome
}

async fn serve_until_stopped(dir: &Path, manifest: &DevManifest, children: &mut [tokio::process::Child]) -> anyhow::Result<()> {
    let profile = ensure_demo_profile(dir, manifest).await?;
    println!();
    println!(
        "Strata dev cluster is running: {} nodes ({}) on {} .. {}",
        manifest.nodes,
        manifest.ec,
        manifest.quic_addr(1),
        manifest.quic_addr(manifest.nodes)
    );
    println!("  data and logs:  {}/nodeN", dir.display());
    println!("  metrics:        http://{}/metrics (one port per node)", manifest.metrics_addr(1));
    println!("  client profile: {} (tenant \"demo\", admin token, operator token)", profile.display());
    println!();
    // The client is built next to this binary; name it in full so the commands work without PATH changes.
    let strata = std::env::current_exe()
        .ok()
        .map(|p| p.with_file_name("strata"))
        .filter(|p| p.is_file())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "strata".into());
    println!("Next, in another terminal:");
    println!("  export STRATA_PROFILE={}", profile.display());
    println!("  {strata} admin status");
    println!("  {strata} bench blobs --size 1MiB --count 200");
    println!();
    println!("Press Ctrl-C to stop. Run the same command again to resume this cluster with its data.");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let mut reported = vec![false; children.len()];
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = check.tick() => {
                for (i, c) in children.iter_mut().enumerate() {
                    if !reported[i] && let Ok(Some(status)) = c.try_wait() {
                        eprintln!("node {} exited ({status}); the others keep running. See its node.log.", i + 1);
                        reported[i] = true;
                    }
                }
            }
        }
    }
    eprintln!("Stopping the nodes...");
    Ok(())
}

async fn stop_children(children: &mut [tokio::process::Child]) {
    for c in children.iter() {
        if let Some(pid) = c.id().and_then(|p| i32::try_from(p).ok()) {
            // A graceful stop: nodes flush and leave Raft cleanly on SIGTERM.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
    }
    for c in children.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(10), c.wait()).await.is_err() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }
}

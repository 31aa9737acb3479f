//! A harness that runs real Strata clusters as separate `strata-node` processes and injects faults.
//!
//! [`Cluster::start`] prepares a cluster with `strata-node dev --prepare-only` on free loopback ports, starts
//! every node, and waits until all report ready on `/health`. Any node can then be killed with SIGKILL,
//! restarted on its data, paused with SIGSTOP and resumed with SIGCONT. Clusters are torn down (SIGKILL) when
//! dropped. [`Cluster::start_networked`] runs each node in its own network namespace instead ([`netns`]), so that
//! links can be cut and degraded per node and per direction. Only one cluster runs at a time per test process, so tests never compete for the machine's cores;
//! every wait is bounded and polls a condition instead of sleeping blindly.

pub mod disk;
pub mod fs_tree;
pub mod netns;
pub mod workload;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Deserialize;
use strata_client::ClusterClient;
use strata_proto::{Role, RoleSet, Secret};
use strata_transport::Profile;
use strata_transport::health_probe::get_health;

static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Where Debian's faketime package puts the multi-threaded library.
const FAKETIME_LIBS: [&str; 2] =
    ["/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1"];

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Number of nodes.
    pub nodes: usize,
    /// Erasure-code profile.
    pub ec: &'static str,
    /// `2^partition_bits` partitions.
    pub partition_bits: u8,
    /// Capacity of each node (`strata-node` size syntax).
    pub capacity: &'static str,
    /// TOML appended to every node's configuration (e.g. a shorter `[repair] node_down_after_ms`).
    pub extra_config: &'static str,
    /// Lifetime of the nodes' certificates (`strata-node dev --cert-lifetime`).
    pub cert_lifetime: &'static str,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec { nodes: 6, ec: "4+2", partition_bits: 6, capacity: "4GiB", extra_config: "", cert_lifetime: "30d" }
    }
}

/// One node process.
pub struct NodeProc {
    /// 1-based node number (= node id).
    pub id: usize,
    /// Its config file.
    pub config: PathBuf,
    /// QUIC address.
    pub quic: String,
    /// HTTP metrics/health address.
    pub metrics: String,
    child: Option<Child>,
    paused: bool,
    /// Extra environment of the process (a fake clock).
    env: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct PreparedNode {
    config: PathBuf,
    quic: String,
    metrics: String,
}

#[derive(Deserialize)]
struct Prepared {
    nodes: Vec<PreparedNode>,
}

#[derive(Deserialize)]
struct DevManifest {
    operator_token: String,
}

/// A running cluster.
pub struct Cluster {
    /// Node processes, index 0 is node 1.
    pub nodes: Vec<NodeProc>,
    // Unmounted before `dir` is removed (fields drop in this order, after Drop killed the nodes).
    disks: Vec<(usize, disk::SmallDisk)>,
    dir: tempfile::TempDir,
    binary: PathBuf,
    operator_token: String,
    net: Option<netns::Net>,
    clocks: Option<tempfile::TempDir>,
    _exclusive: MutexGuard<'static, ()>,
}

/// The `strata-node` binary: `$STRATA_NODE_BIN`, or the one cargo built next to this test.
pub fn node_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("STRATA_NODE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().and_then(Path::parent).context("test binary has no target directory")?;
    let bin = profile_dir.join("strata-node");
    if !bin.is_file() {
        bail!("{} not found: build it with `cargo build -p strata-node` or set STRATA_NODE_BIN", bin.display());
    }
    Ok(bin)
}

/// A block of ports whose QUIC (UDP) and metrics (TCP) ports are all free right now.
fn free_base_port(nodes: usize) -> anyhow::Result<u16> {
    let start = 20_000 + (std::process::id() % 150) as u16 * 200;
    for attempt in 0..150u16 {
        let base = 20_000 + (start - 20_000 + attempt * 200) % 30_000;
        let free = (1..=nodes as u16).all(|i| {
            std::net::UdpSocket::bind(("127.0.0.1", base + i)).is_ok() && std::net::TcpListener::bind(("127.0.0.1", base + 100 + i)).is_ok()
        });
        if free {
            return Ok(base);
        }
    }
    bail!("no free block of loopback ports found")
}

impl Cluster {
    /// Prepares and starts a cluster, waiting until every node is ready.
    pub async fn start(spec: ClusterSpec) -> anyhow::Result<Cluster> {
        Self::start_prepared(spec, false, Vec::new()).await
    }

    /// Like [`Cluster::start`], with every node in its own network namespace on a test bridge ([`netns::Net`]);
    /// `None` (after saying why on stderr) when this machine cannot create one, so the calling test can skip.
    /// With `STRATA_CHAOS_REQUIRE_ALL=1` (set by CI) that is an error instead: a fault test must not pass unrun.
    pub async fn start_networked(spec: ClusterSpec) -> anyhow::Result<Option<Cluster>> {
        if let Some(why) = netns::Net::unavailable() {
            if std::env::var_os("STRATA_CHAOS_REQUIRE_ALL").is_some_and(|v| v == "1") {
                bail!("STRATA_CHAOS_REQUIRE_ALL=1, but this machine cannot run nodes in network namespaces: {why}");
            }
            eprintln!("SKIPPED: this test runs nodes in network namespaces and {why}");
            return Ok(None);
        }
        Ok(Some(Self::start_prepared(spec, true, Vec::new()).await?))
    }

    /// Prepares and starts a cluster; `env[i]` is extra environment of node `i + 1` (if given).
    async fn start_prepared(spec: ClusterSpec, networked: bool, env: Vec<Vec<(String, String)>>) -> anyhow::Result<Cluster> {
        let exclusive = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let binary = node_binary()?;
        let dir = tempfile::Builder::new().prefix("strata-chaos-").tempdir()?;
        let base = free_base_port(spec.nodes)?;
        let out = Command::new(&binary)
            .args([
                "dev",
                "--prepare-only",
                "--nodes",
                &spec.nodes.to_string(),
                "--ec",
                spec.ec,
                "--partition-bits",
                &spec.partition_bits.to_string(),
            ])
            .args(["--capacity", spec.capacity, "--cert-lifetime", spec.cert_lifetime, "--base-port", &base.to_string(), "--dir"])
            .arg(dir.path())
            .output()
            .context("running strata-node dev --prepare-only")?;
        if !out.status.success() {
            bail!("strata-node dev --prepare-only failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let prepared: Prepared = serde_json::from_slice(&out.stdout).context("parsing the prepared cluster")?;
        let manifest: DevManifest = toml::from_str(&std::fs::read_to_string(dir.path().join("dev.toml"))?)?;
        let nodes = prepared
            .nodes
            .into_iter()
            .enumerate()
            .map(|(i, n)| NodeProc {
                id: i + 1,
                config: n.config,
                quic: n.quic,
                metrics: n.metrics,
                child: None,
                paused: false,
                env: env.get(i).cloned().unwrap_or_default(),
            })
            .collect();
        let mut cluster = Cluster {
            nodes,
            disks: Vec::new(),
            dir,
            binary,
            operator_token: manifest.operator_token,
            net: None,
            clocks: None,
            _exclusive: exclusive,
        };
        if networked {
            cluster.move_onto_network(netns::Net::create(spec.nodes)?)?;
        }
        if !spec.extra_config.is_empty() {
            let extra: toml::Table = spec.extra_config.parse().context("ClusterSpec::extra_config")?;
            for n in &cluster.nodes {
                let mut config: toml::Table = std::fs::read_to_string(&n.config)?.parse()?;
                merge(&mut config, &extra);
                std::fs::write(&n.config, toml::to_string(&config)?)?;
            }
        }
        for i in 1..=spec.nodes {
            cluster.spawn(i)?;
        }
        cluster.wait_all_ready(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    /// Gives every node an address of `net` (same ports): rewrites the addresses in every node's
    /// configuration, where each node names itself and its seeds.
    fn move_onto_network(&mut self, net: netns::Net) -> anyhow::Result<()> {
        let mut moves = Vec::new();
        for n in &mut self.nodes {
            for addr in [&mut n.quic, &mut n.metrics] {
                let port = addr.rsplit(':').next().context("node address without a port")?.to_owned();
                let moved = format!("{}:{port}", net.ip(n.id));
                moves.push((format!("\"{addr}\""), format!("\"{moved}\"")));
                *addr = moved;
            }
        }
        for n in &self.nodes {
            let mut text = std::fs::read_to_string(&n.config)?;
            for (from, to) in &moves {
                text = text.replace(from, to);
            }
            std::fs::write(&n.config, text)?;
        }
        self.net = Some(net);
        Ok(())
    }

    /// Moves node `id`'s data onto a small file system of `bytes` of its own ([`disk::SmallDisk`]): stops the
    /// node, copies its data directory there and starts it again. `false` (after saying why on stderr) when
    /// this machine cannot mount one; with `STRATA_CHAOS_REQUIRE_ALL=1` (CI) that is an error instead.
    pub async fn move_to_small_disk(&mut self, id: usize, bytes: u64) -> anyhow::Result<bool> {
        if let Some(why) = disk::SmallDisk::unavailable() {
            if std::env::var_os("STRATA_CHAOS_REQUIRE_ALL").is_some_and(|v| v == "1") {
                bail!("STRATA_CHAOS_REQUIRE_ALL=1, but this machine cannot mount a small disk: {why}");
            }
            eprintln!("SKIPPED: this test puts a node on a small file system and {why}");
            return Ok(false);
        }
        self.stop(id)?;
        let node_dir = self.nodes[id - 1].config.parent().context("config without a directory")?.to_owned();
        let (data, before) = (node_dir.join("data"), node_dir.join("data.before"));
        std::fs::rename(&data, &before)?;
        let disk = disk::SmallDisk::create(&node_dir.join("small-disk.img"), &data, bytes)?;
        let out = Command::new("cp").arg("-a").arg(before.join(".")).arg(&data).output()?;
        anyhow::ensure!(out.status.success(), "copying node {id}'s data: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::remove_dir_all(&before)?;
        self.disks.push((id, disk));
        self.restart(id)?;
        self.wait_all_ready(Duration::from_secs(60)).await?;
        eprintln!("chaos: node {id}'s data is on a file system of {} MiB of its own", bytes >> 20);
        Ok(true)
    }

    /// Like [`Cluster::start`], with every node's wall clock following a file of its own (libfaketime), so a
    /// test can put any node minutes ahead or behind, or make its clock jump, while it runs
    /// ([`Cluster::set_clock`]). Monotonic time is left alone, as NTP leaves it. `None` (after saying why)
    /// when libfaketime is not installed; with `STRATA_CHAOS_REQUIRE_ALL=1` (CI) that is an error instead.
    pub async fn start_with_fake_clocks(spec: ClusterSpec) -> anyhow::Result<Option<Cluster>> {
        let Some(lib) = FAKETIME_LIBS.iter().map(Path::new).find(|p| p.is_file()) else {
            let why = "libfaketime is not installed (Debian package faketime)";
            if std::env::var_os("STRATA_CHAOS_REQUIRE_ALL").is_some_and(|v| v == "1") {
                bail!("STRATA_CHAOS_REQUIRE_ALL=1, but {why}");
            }
            eprintln!("SKIPPED: this test skews the nodes' clocks and {why}");
            return Ok(None);
        };
        let clocks = tempfile::Builder::new().prefix("strata-clocks-").tempdir()?;
        let nodes = spec.nodes;
        let mut env = Vec::new();
        for id in 1..=nodes {
            let file = clocks.path().join(format!("node{id}"));
            std::fs::write(&file, "+0\n")?;
            env.push(vec![
                ("LD_PRELOAD".to_owned(), lib.display().to_string()),
                ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
                ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
                // Re-read the file at most once a second: every clock read would otherwise open it.
                ("FAKETIME_CACHE_DURATION".into(), "1".into()),
            ]);
        }
        let mut cluster = Self::start_prepared(spec, false, env).await?;
        cluster.clocks = Some(clocks);
        Ok(Some(cluster))
    }

    /// Sets node `id`'s wall clock `offset_secs` away from the machine's and waits until the node's `/health`
    /// reports it; the cluster must have been started with [`Cluster::start_with_fake_clocks`].
    pub async fn set_clock(&self, id: usize, offset_secs: i64) -> anyhow::Result<()> {
        let clocks = self.clocks.as_ref().context("the cluster was not started with fake clocks")?;
        std::fs::write(clocks.path().join(format!("node{id}")), format!("{offset_secs:+}s\n"))?;
        let wall_ms = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        self.wait_for(&format!("node {id}'s clock to read {offset_secs:+} s"), Duration::from_secs(10), || async move {
            let Some(h) = self.health(id).await else { return false };
            h["time_ms"].as_i64().is_some_and(|t| (t - wall_ms() - offset_secs * 1000).abs() < 2_000)
        })
        .await?;
        eprintln!("chaos: node {id}'s clock reads {offset_secs:+} s");
        Ok(())
    }

    /// The small file system node `id` was moved to by [`Cluster::move_to_small_disk`].
    pub fn small_disk(&self, id: usize) -> &disk::SmallDisk {
        self.disks.iter().find(|(n, _)| *n == id).map(|(_, d)| d).expect("the node was moved to a small disk")
    }

    /// The test network of a cluster started with [`Cluster::start_networked`].
    pub fn net(&self) -> &netns::Net {
        self.net.as_ref().expect("the cluster was started with Cluster::start_networked")
    }

    fn node(&mut self, id: usize) -> &mut NodeProc {
        &mut self.nodes[id - 1]
    }

    fn spawn(&mut self, id: usize) -> anyhow::Result<()> {
        let mut command = match &self.net {
            Some(net) => net.command(id, &self.binary),
            None => Command::new(&self.binary),
        };
        let n = self.node(id);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(n.config.with_file_name("node.log"))?;
        let child = command
            .envs(n.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .arg("run")
            .arg("--config")
            .arg(&n.config)
            .env("STRATA_LOG", std::env::var("STRATA_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting node {id}"))?;
        n.child = Some(child);
        n.paused = false;
        Ok(())
    }

    fn signal(&mut self, id: usize, sig: Signal) -> anyhow::Result<()> {
        let n = self.node(id);
        let child = n.child.as_ref().with_context(|| format!("node {id} is not running"))?;
        kill(Pid::from_raw(child.id() as i32), sig).with_context(|| format!("sending {sig} to node {id}"))?;
        Ok(())
    }

    /// Kills a node with SIGKILL (no chance to flush or say goodbye).
    pub fn kill(&mut self, id: usize) -> anyhow::Result<()> {
        if self.node(id).paused {
            self.resume(id)?;
        }
        self.signal(id, Signal::SIGKILL)?;
        let n = self.node(id);
        if let Some(mut c) = n.child.take() {
            c.wait()?;
        }
        eprintln!("chaos: killed node {id}");
        Ok(())
    }

    /// Stops a node gracefully with SIGTERM and waits for it to exit (at most 20 s, then SIGKILL).
    pub fn stop(&mut self, id: usize) -> anyhow::Result<()> {
        self.signal(id, Signal::SIGTERM)?;
        let n = self.node(id);
        let mut child = n.child.take().context("not running")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                bail!("node {id} did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts a stopped or killed node again on its data.
    pub fn restart(&mut self, id: usize) -> anyhow::Result<()> {
        anyhow::ensure!(self.node(id).child.is_none(), "node {id} is still running");
        self.spawn(id)?;
        eprintln!("chaos: restarted node {id}");
        Ok(())
    }

    /// Freezes a node with SIGSTOP (it holds its sockets but answers nothing).
    pub fn pause(&mut self, id: usize) -> anyhow::Result<()> {
        self.signal(id, Signal::SIGSTOP)?;
        self.node(id).paused = true;
        eprintln!("chaos: paused node {id}");
        Ok(())
    }

    /// Thaws a paused node with SIGCONT.
    pub fn resume(&mut self, id: usize) -> anyhow::Result<()> {
        self.signal(id, Signal::SIGCONT)?;
        self.node(id).paused = false;
        eprintln!("chaos: resumed node {id}");
        Ok(())
    }

    /// Waits until node `id` exits by itself (at most `timeout`); returns its exit status.
    pub async fn wait_exit(&mut self, id: usize, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.node(id).child.as_mut().with_context(|| format!("node {id} is not running"))?;
            if let Some(status) = child.try_wait()? {
                self.node(id).child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("node {id} was still running {} s later", timeout.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Overlays `toml` on node `id`'s configuration (it takes effect when the node next starts).
    pub fn set_node_config(&self, id: usize, toml: &str) -> anyhow::Result<()> {
        let extra: toml::Table = toml.parse().context("node configuration overlay")?;
        let path = &self.nodes[id - 1].config;
        let mut config: toml::Table = std::fs::read_to_string(path)?.parse()?;
        merge(&mut config, &extra);
        std::fs::write(path, toml::to_string(&config)?)?;
        Ok(())
    }

    /// Resident memory of node `id`'s process in bytes (`None` if it is not running).
    pub fn rss_bytes(&self, id: usize) -> Option<u64> {
        let pid = self.nodes[id - 1].child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    }

    /// Whether node `id` has a live process.
    pub fn is_running(&self, id: usize) -> bool {
        self.nodes[id - 1].child.is_some()
    }

    /// The parsed `/health` of a node, if it answers.
    pub async fn health(&self, id: usize) -> Option<serde_json::Value> {
        let (_, body) = get_health(&self.nodes[id - 1].metrics, Duration::from_millis(800)).await.ok()?;
        serde_json::from_str(&body).ok()
    }

    /// Waits until `cond` holds, polling every 100 ms; fails with `what` after `timeout`.
    pub async fn wait_for<F, Fut>(&self, what: &str, timeout: Duration, mut cond: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if cond().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("timed out after {} s waiting for {what}", timeout.as_secs())
    }

    /// Waits until every running node reports ready.
    pub async fn wait_all_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let running: Vec<usize> = self.nodes.iter().filter(|n| n.child.is_some() && !n.paused).map(|n| n.id).collect();
        self.wait_for("all running nodes to be ready", timeout, || async {
            for &id in &running {
                match self.health(id).await {
                    Some(h) if h["ready"] == true => {}
                    _ => return false,
                }
            }
            true
        })
        .await
    }

    /// The leader as seen by the first running node that knows one.
    pub async fn leader(&self) -> Option<usize> {
        for n in self.nodes.iter().filter(|n| n.child.is_some() && !n.paused) {
            if let Some(h) = self.health(n.id).await
                && let Some(l) = h["leader"].as_u64()
            {
                return Some(l as usize);
            }
        }
        None
    }

    /// Waits until every running node agrees on a leader other than `not`; returns it.
    pub async fn wait_new_leader(&self, not: Option<usize>, timeout: Duration) -> anyhow::Result<usize> {
        let running: Vec<usize> = self.nodes.iter().filter(|n| n.child.is_some() && !n.paused).map(|n| n.id).collect();
        self.wait_leader_among(&running, not, timeout).await
    }

    /// Waits until every running node agrees on a leader, then until node `id` has applied the Raft log as
    /// far as that leader had when asked (a healed or restarted node has caught up).
    pub async fn wait_caught_up(&self, id: usize) -> anyhow::Result<()> {
        let leader = self.wait_new_leader(None, Duration::from_secs(30)).await?;
        let target = self.metric(leader, "strata_raft_applied_index").await.unwrap_or(0.0);
        self.wait_for(&format!("node {id} to apply the Raft log up to index {target}"), Duration::from_secs(30), || async {
            self.metric(id, "strata_raft_applied_index").await.is_some_and(|i| i >= target)
        })
        .await
    }

    /// Waits until nodes `ids` agree on a leader other than `not`; returns it.
    pub async fn wait_leader_among(&self, ids: &[usize], not: Option<usize>, timeout: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let mut seen = Vec::new();
            for &id in ids {
                seen.push(self.health(id).await.and_then(|h| h["leader"].as_u64()).map(|l| l as usize));
            }
            if let Some(Some(l)) = seen.first().copied()
                && Some(l) != not
                && seen.iter().all(|s| *s == Some(l))
            {
                return Ok(l);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("nodes {ids:?} agreed on no leader (other than {not:?}) within {} s", timeout.as_secs())
    }

    fn profile(&self, token: Option<String>, operator: bool) -> Profile {
        Profile {
            ca_cert: self.dir.path().join("ca.pem"),
            nodes: self.nodes.iter().map(|n| n.quic.clone()).collect(),
            token,
            operator_token: operator.then(|| self.operator_token.clone()),
            key_file: None,
            request_timeout_ms: 60_000,
            base_dir: PathBuf::new(),
        }
    }

    /// A client holding only the operator token.
    pub async fn operator(&self) -> anyhow::Result<ClusterClient> {
        Ok(ClusterClient::from_profile(&self.profile(None, true)).await?)
    }

    /// Creates a tenant as an operator does; returns its id and its first admin token.
    pub async fn create_tenant(&self, name: &str) -> anyhow::Result<(strata_proto::TenantId, Secret)> {
        let op = self.operator().await?;
        let created = op.create_tenant(name).await?;
        op.close();
        Ok(created)
    }

    /// A token of `roles` for the tenant whose admin token is `admin`, created by that admin (as the tenant's
    /// owner creates each device's token).
    pub async fn device_token(&self, admin: &Secret, roles: &[Role], label: &str) -> anyhow::Result<Secret> {
        let owner = self.client_with_token(admin.expose()).await?;
        let token = owner.create_token(None, RoleSet::of(roles), None, label).await?;
        owner.close();
        Ok(token)
    }

    /// Creates a tenant and returns a client with a token of `roles` for it (its admin token, or a device
    /// token its admin created).
    pub async fn tenant_client(&self, name: &str, roles: &[Role]) -> anyhow::Result<ClusterClient> {
        let (_, admin) = self.create_tenant(name).await?;
        let token = if roles == [Role::Admin] { admin } else { self.device_token(&admin, roles, "chaos test").await? };
        Ok(ClusterClient::from_profile(&self.profile(Some(token.expose().to_owned()), false)).await?)
    }

    /// A client for an existing token.
    pub async fn client_with_token(&self, token: &str) -> anyhow::Result<ClusterClient> {
        Ok(ClusterClient::from_profile(&self.profile(Some(token.to_owned()), false)).await?)
    }

    /// Adopts a node prepared outside the harness (for example by `strata-node join`) and starts it.
    pub fn add_node(&mut self, config: PathBuf, quic: String, metrics: String) -> anyhow::Result<usize> {
        let id = self.nodes.len() + 1;
        self.nodes.push(NodeProc { id, config, quic, metrics, child: None, paused: false, env: Vec::new() });
        self.spawn(id)?;
        Ok(id)
    }

    /// The cluster CA certificate (PEM).
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ca.pem")).expect("the prepared cluster has ca.pem")
    }

    /// A raw QUIC connection to a node, as a client without a certificate: for sending hand-made frames.
    pub async fn raw_connection(&self, id: usize) -> anyhow::Result<quinn::Connection> {
        let config = strata_transport::tls::client_config(&self.ca_pem(), None)?;
        let addr: std::net::SocketAddr = self.nodes[id - 1].quic.parse()?;
        let endpoint = strata_transport::endpoint::client_endpoint(addr)?;
        Ok(endpoint.connect_with(config, addr, strata_transport::tls::SERVER_NAME)?.await?)
    }

    /// A request pool that presents node `id`'s certificate and key, as that node (or someone who stole its
    /// files) would: for attacks that need a node identity.
    pub fn pool_as_node(&self, id: usize) -> anyhow::Result<strata_transport::RpcPool> {
        let tls = self.nodes[id - 1].config.with_file_name("tls");
        let cert = std::fs::read_to_string(tls.join("node.pem"))?;
        let key = std::fs::read_to_string(tls.join("node.key"))?;
        let mut chain = strata_transport::tls::certs_from_pem(&cert, "node certificate")?;
        chain.extend(strata_transport::tls::certs_from_pem(&self.ca_pem(), "cluster CA")?);
        let config =
            strata_transport::tls::client_config(&self.ca_pem(), Some((chain, strata_transport::tls::key_from_pem(&key, "node key")?)))?;
        let endpoint = strata_transport::endpoint::client_endpoint(self.nodes[0].quic.parse()?)?;
        Ok(strata_transport::RpcPool::new(endpoint, config, strata_transport::RpcLimits::default()))
    }

    /// Directory holding the cluster's files (CA, node directories, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of a node's log, for failure messages.
    pub fn log_tail(&self, id: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(self.nodes[id - 1].config.with_file_name("node.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() || std::env::var_os("STRATA_CHAOS_KEEP").is_some() {
            // Keep the logs of a failed test (or on request) for inspection.
            let kept = self.dir.path().to_path_buf();
            eprintln!("chaos: cluster files kept in {}", kept.display());
            std::mem::forget(std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir")));
        }
    }
}

/// The `strata` client binary: `$STRATA_BIN`, or the one cargo built next to this test.
pub fn strata_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("STRATA_BIN") {
        return Ok(PathBuf::from(p));
    }
    let bin = node_binary()?.with_file_name("strata");
    anyhow::ensure!(bin.is_file(), "{} not found: build it with `cargo build -p strata-client` or set STRATA_BIN", bin.display());
    Ok(bin)
}

/// A tenant set up for the `strata` command line: a profile and a password file on disk.
pub struct TenantCli {
    /// Profile file (holding the tenant's admin token).
    pub profile: PathBuf,
    /// Password file.
    pub password_file: PathBuf,
    /// The tenant.
    pub tenant: strata_proto::TenantId,
}

impl TenantCli {
    /// Runs `strata` with this tenant's profile and password; the test KDF keeps key stretching fast.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().expect("run strata")
    }

    /// The command without running it (to spawn it, or to add environment).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(strata_binary().expect("strata binary"));
        c.args(args)
            .env("STRATA_PROFILE", &self.profile)
            .env("STRATA_PASSWORD_FILE", &self.password_file)
            .env("STRATA_TEST_FAST_KDF", "1")
            .env_remove("STRATA_PASSWORD_COMMAND");
        c
    }

    /// The tenant's admin token, from the profile.
    pub fn admin_token(&self) -> Secret {
        Secret(Profile::load(&self.profile).expect("the tenant's profile").token.expect("the profile holds a token"))
    }

    /// Backs up `source` (requiring success) and returns the new snapshot's id.
    pub fn backup(&self, source: &Path) -> String {
        self.json(&["backup", source.to_str().expect("UTF-8 path")])["snapshot_id"].as_str().expect("snapshot id").to_owned()
    }

    /// Restores snapshot `id` below `target` and returns how the restored `source` differs from `expected`
    /// (empty when byte-exact; a failed restore is one difference naming the error).
    pub fn restore_diff(&self, id: &str, source: &Path, expected: &fs_tree::Manifest, target: &Path) -> Vec<String> {
        let out = self.run(&["--json", "restore", id, "--target", target.to_str().expect("UTF-8 path")]);
        if !out.status.success() {
            return vec![format!("restore of {id} failed: {}", String::from_utf8_lossy(&out.stderr))];
        }
        fs_tree::differences(expected, &fs_tree::manifest(&fs_tree::restored(target, source)))
    }

    /// Runs `strata --json ...`, requires success, and returns the last JSON line of its output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(out.status.success(), "strata {args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let doc = text.trim();
        serde_json::from_str(doc).unwrap_or_else(|_| serde_json::from_str(doc.lines().last().unwrap_or("null")).expect("JSON output"))
    }
}

impl Cluster {
    /// Creates a tenant with an admin token and writes its profile and a password file under `dir`.
    pub async fn tenant_cli(&self, name: &str, dir: &Path) -> anyhow::Result<TenantCli> {
        let (tenant, token) = self.create_tenant(name).await?;
        std::fs::create_dir_all(dir)?;
        let mut profile = self.profile(Some(token.expose().to_owned()), false);
        profile.base_dir = dir.to_path_buf();
        let path = dir.join("profile.toml");
        profile.save(&path)?;
        let password_file = dir.join("password");
        std::fs::write(&password_file, format!("password of {name}\n"))?;
        Ok(TenantCli { profile: path, password_file, tenant })
    }
}

impl Cluster {
    /// Starts `count` new nodes that join `generation` with one-time tokens (one zone each), waits until every
    /// running node is ready, and returns their ids.
    pub async fn join_nodes(&mut self, generation: &str, count: usize) -> anyhow::Result<Vec<usize>> {
        let op = self.operator().await?;
        // Any running node will do as the seed: one that does not hold the CA key names one that does.
        let seed = self.nodes.iter().find(|n| n.child.is_some()).context("no node is running")?.quic.clone();
        let mut ids = Vec::new();
        for _ in 0..count {
            let id = self.nodes.len() + 1;
            let token = op.create_join_token(600).await?;
            let dir = self.dir().join(format!("node{id}"));
            let (quic, metrics) = (free_udp_addr()?, free_tcp_addr()?);
            let out = Command::new(&self.binary)
                .args(["join", "--token", token.expose(), "--seed", &seed, "--listen", &quic, "--metrics", &metrics])
                .args(["--zone", &format!("{generation}-zone-{id}"), "--capacity", "4GiB", "--generation", generation, "--data-dir"])
                .arg(&dir)
                .output()
                .context("running strata-node join")?;
            if !out.status.success() {
                bail!("strata-node join failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            ids.push(self.add_node(dir.join("node.toml"), quic, metrics)?);
        }
        op.close();
        self.wait_all_ready(Duration::from_secs(60)).await?;
        Ok(ids)
    }

    /// The sum of every sample of metric `name` on node `id` (`None` if the node does not answer). `name` may
    /// carry the leading labels of the samples wanted: `strata_requests_total{op="get_blob"`.
    pub async fn metric(&self, id: usize, name: &str) -> Option<f64> {
        let (_, text) =
            strata_transport::health_probe::get_path(&self.nodes[id - 1].metrics, "/metrics", Duration::from_secs(2)).await.ok()?;
        let samples = text.lines().filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' ', ','])));
        Some(samples.filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum())
    }

    /// The sum of the samples of metric `name` on node `id` whose labels include every one of `labels`
    /// (`op="get_shard"`), in any order (`None` if the node does not answer).
    pub async fn metric_with(&self, id: usize, name: &str, labels: &[&str]) -> Option<f64> {
        let (_, text) =
            strata_transport::health_probe::get_path(&self.nodes[id - 1].metrics, "/metrics", Duration::from_secs(2)).await.ok()?;
        let samples = text.lines().filter(|l| {
            l.strip_prefix(name).and_then(|rest| rest.strip_prefix('{')).and_then(|rest| rest.split_once('}')).is_some_and(|(set, _)| {
                let have: Vec<&str> = set.split(',').collect();
                labels.iter().all(|want| have.contains(want))
            })
        });
        Some(samples.filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum())
    }

    /// Runs `strata --json admin ARGS` with the operator token (profile seeds: the running nodes).
    pub fn admin(&self, args: &[&str]) -> std::process::Output {
        let mut profile = self.profile(None, true);
        profile.nodes = self.nodes.iter().filter(|n| self.is_running(n.id)).map(|n| n.quic.clone()).collect();
        let path = self.dir().join("operator-profile.toml");
        profile.save(&path).expect("write the operator profile");
        Command::new(strata_binary().expect("strata binary"))
            .arg("--json")
            .arg("admin")
            .args(args)
            .env("STRATA_PROFILE", &path)
            .output()
            .expect("run strata admin")
    }

    /// Like [`Cluster::admin`], requiring success; returns the parsed JSON output.
    pub fn admin_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.admin(args);
        assert!(out.status.success(), "strata admin {args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON from strata admin")
    }

    /// Points a tenant's profile at the running nodes only (after old nodes were switched off).
    pub fn retarget_profile(&self, cli: &TenantCli) -> anyhow::Result<()> {
        let mut profile = Profile::load(&cli.profile)?;
        profile.nodes = self.nodes.iter().filter(|n| self.is_running(n.id)).map(|n| n.quic.clone()).collect();
        profile.save(&cli.profile)?;
        Ok(())
    }
}

/// Overlays `extra` on `base`, table by table.
fn merge(base: &mut toml::Table, extra: &toml::Table) {
    for (k, v) in extra {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(e)) => merge(b, e),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// A loopback `ip:port` whose UDP port is free right now.
pub fn free_udp_addr() -> anyhow::Result<String> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.to_string())
}

/// A loopback `ip:port` whose TCP port is free right now.
pub fn free_tcp_addr() -> anyhow::Result<String> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string())
}

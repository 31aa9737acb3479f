//! `strata-node`: the Strata storage node daemon and its provisioning commands.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use strata_node::config::{Bootstrap, NodeConfig};
use strata_node::dev::{self, DevOptions};
use strata_node::pki;
use strata_node::provision::{NodePlan, NodeTls, ensure_fresh, write_node};
use strata_node::server::{JoinToken, new_secret};
use strata_proto::units::{parse_duration_secs, parse_size};
use strata_proto::{EcProfile, NodeId, Request, Response};
use strata_transport::tls::pinned_client_config;
use strata_transport::{RpcLimits, RpcPool};

/// The Strata storage node.
///
/// A Strata cluster is a set of storage nodes that keep erasure-coded shards of encrypted backup chunks and
/// agree on cluster metadata through Raft. Start a cluster with `init` on the first node, admit more nodes
/// with `join`, and run each node with `run`. For a local cluster to try things out, use `dev`.
#[derive(Parser)]
#[command(name = "strata-node", version, propagate_version = true)]
struct Cli {
    /// Log filter (e.g. `info`, `strata_node=debug`).
    #[arg(long, env = "STRATA_LOG", default_value = "info", global = true)]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new cluster: its CA, the first node's config and certificate, and an operator token.
    Init(InitArgs),
    /// Prepare a new node: obtain its certificate from a running cluster with a one-time join token.
    Join(JoinArgs),
    /// Run a node from its configuration file.
    Run(RunArgs),
    /// Start, or resume, a local development cluster on 127.0.0.1.
    Dev(DevArgs),
}

#[derive(Args)]
struct NodeArgs {
    /// Directory for the node's config, certificates and data.
    #[arg(long)]
    data_dir: PathBuf,
    /// UDP address to listen on for QUIC.
    #[arg(long, default_value = "127.0.0.1:7401")]
    listen: String,
    /// Address other nodes and clients use to reach this node (required when listening on 0.0.0.0).
    #[arg(long)]
    advertise: Option<String>,
    /// TCP address for /metrics and /health [default: the --listen address's IP, port 9401, so that a
    /// Prometheus on the LAN can scrape what the node serves there; with a wildcard --listen, the --advertise
    /// IP, else 127.0.0.1].
    #[arg(long)]
    metrics: Option<String>,
    /// Failure domain of this node (rack, room, host).
    #[arg(long, default_value = "zone-1")]
    zone: String,
    /// Bytes of shard data this node may hold (e.g. 500GiB).
    #[arg(long, value_parser = parse_size)]
    capacity: u64,
    /// Storage generation this node belongs to.
    #[arg(long, default_value = "gen-1")]
    generation: String,
}

/// Where /metrics listens unless `--metrics` says: the `--listen` IP, port 9401, so a Prometheus on the LAN can
/// scrape it. A wildcard listen address would expose the unauthenticated endpoint on every interface: then
/// the `--advertise` IP if it is one, else loopback.
fn default_metrics_addr(listen: std::net::SocketAddr, advertise: Option<&str>) -> String {
    let ip = if listen.ip().is_unspecified() {
        advertise
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .map(|a| a.ip())
            .filter(|ip| !ip.is_unspecified())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
    } else {
        listen.ip()
    };
    std::net::SocketAddr::new(ip, 9401).to_string()
}

impl NodeArgs {
    fn plan(&self, id: u64, seeds: Vec<String>) -> anyhow::Result<NodePlan> {
        let listen: std::net::SocketAddr = self.listen.parse().with_context(|| format!("--listen {:?} is not ip:port", self.listen))?;
        if listen.ip().is_unspecified() && self.advertise.is_none() {
            bail!("--listen {listen} is a wildcard address: pass --advertise with the address others should use");
        }
        Ok(NodePlan {
            id,
            dir: self.data_dir.clone(),
            listen: self.listen.clone(),
            advertise: self.advertise.clone(),
            metrics: Some(self.metrics.clone().unwrap_or_else(|| default_metrics_addr(listen, self.advertise.as_deref()))),
            zone: self.zone.clone(),
            capacity_bytes: self.capacity,
            generation: self.generation.clone(),
            seeds,
            limits: strata_node::config::Limits::default(),
            cert_lifetime_secs: pki::DEFAULT_CERT_LIFETIME_SECS,
        })
    }
}

#[derive(Args)]
struct InitArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Cluster name (shown to operators).
    #[arg(long, default_value = "strata")]
    cluster_name: String,
    /// Erasure-code profile of the first generation, K+M.
    #[arg(long, default_value = "4+2")]
    ec: EcProfile,
    /// The cluster gets 2^BITS partitions, fixed forever (10 = 1024; use more for hundreds of nodes).
    #[arg(long, default_value_t = 10)]
    partition_bits: u8,
}

#[derive(Args)]
struct JoinArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// One-time join token from `strata admin join-token`.
    #[arg(long, env = "STRATA_JOIN_TOKEN", hide_env_values = true)]
    token: String,
    /// Address of a node of the cluster (if it does not hold the CA key, the join is sent on to one that does).
    #[arg(long)]
    seed: String,
}

#[derive(Args)]
struct RunArgs {
    /// Node configuration file.
    #[arg(long, env = "STRATA_NODE_CONFIG")]
    config: PathBuf,
}

#[derive(Args)]
struct DevArgs {
    /// Directory of the dev cluster [default: ~/.local/share/strata-dev].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Number of nodes.
    #[arg(long, default_value_t = 6)]
    nodes: usize,
    /// Erasure-code profile, K+M.
    #[arg(long, default_value = "4+2")]
    ec: EcProfile,
    /// Node i listens on QUIC port BASE+i and serves metrics on BASE+100+i.
    #[arg(long, default_value_t = 7400)]
    base_port: u16,
    /// 2^BITS partitions.
    #[arg(long, default_value_t = 8)]
    partition_bits: u8,
    /// Capacity of each node.
    #[arg(long, value_parser = parse_size, default_value = "10GiB")]
    capacity: u64,
    /// Skip fsync on shard writes (faster, loses recent writes on power failure; for throwaway clusters).
    #[arg(long)]
    no_sync: bool,
    /// Lifetime of the nodes' certificates; they renew themselves when a third of it is left (e.g. 30d, 90s).
    #[arg(long, value_parser = parse_duration_secs, default_value = "30d")]
    cert_lifetime: u64,
    /// Only write the cluster's files and print its manifest; do not start nodes (used by test harnesses).
    #[arg(long)]
    prepare_only: bool,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = strata_node::cpu::check() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Init(a) => init(a),
            Command::Join(a) => join(a).await,
            Command::Run(a) => run(a).await,
            Command::Dev(a) => dev_command(a).await,
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn init(a: InitArgs) -> anyhow::Result<()> {
    ensure_fresh(&a.node.data_dir)?;
    if a.partition_bits > strata_proto::cluster_map::MAX_PARTITION_BITS {
        bail!("--partition-bits must be at most {}", strata_proto::cluster_map::MAX_PARTITION_BITS);
    }
    let plan = a.node.plan(1, vec![])?;
    let ca = pki::generate_ca(&a.cluster_name)?;
    let identity = pki::issue_node_identity(&ca, NodeId(1), pki::DEFAULT_CERT_LIFETIME_SECS)?;
    let operator = new_secret("stk1");
    let bootstrap = Bootstrap {
        cluster_name: a.cluster_name.clone(),
        partition_bits: a.partition_bits,
        ec_profile: a.ec.to_string(),
        operator_token_digest: hex::encode(operator.digest()),
    };
    let tls = NodeTls { ca_pem: &ca.cert_pem, cert_pem: &identity.cert_pem, key_pem: &identity.key_pem, ca_key_pem: Some(&ca.key_pem) };
    let config = write_node(&plan, &tls, Some(bootstrap), true)?;
    let profile = strata_transport::Profile {
        ca_cert: "tls/ca.pem".into(),
        nodes: vec![plan.advertise.clone().unwrap_or(plan.listen.clone())],
        token: None,
        operator_token: Some(operator.expose().to_owned()),
        key_file: None,
        request_timeout_ms: 60_000,
        base_dir: a.node.data_dir.clone(),
    };
    let profile_path = a.node.data_dir.join("operator.toml");
    profile.save(&profile_path)?;
    println!(
        "Created cluster {:?} (first generation {:?}, {}, {} partitions).",
        a.cluster_name,
        a.node.generation,
        a.ec,
        1u32 << a.partition_bits
    );
    println!("  node config:      {}", config.display());
    println!("  operator profile: {} (holds the operator token; keep it private)", profile_path.display());
    println!();
    println!("Start the node:      strata-node run --config {}", config.display());
    println!("Admit more nodes:    STRATA_PROFILE={} strata admin join-token", profile_path.display());
    println!(
        "  then on each new node: strata-node join --token <TOKEN> --seed {} --data-dir ... --capacity ...",
        plan.advertise.as_ref().unwrap_or(&plan.listen)
    );
    println!("Data is placed once the generation has {} nodes.", a.ec.total_shards());
    Ok(())
}

async fn join(a: JoinArgs) -> anyhow::Result<()> {
    ensure_fresh(&a.node.data_dir)?;
    let token = JoinToken::parse(&a.token).map_err(anyhow::Error::msg)?;
    let (key, csr) = pki::new_csr()?;
    let seed_addr = strata_transport::rpc::resolve(&a.seed).await?;
    let endpoint = strata_transport::endpoint::client_endpoint(seed_addr)?;
    let pool = RpcPool::new(endpoint, pinned_client_config(token.ca_fingerprint())?, RpcLimits::default());
    let plan = a.node.plan(0, vec![])?;
    let request = Request::Join {
        csr_der: csr,
        addr: plan.advertise.clone().unwrap_or(plan.listen.clone()),
        zone: plan.zone.clone(),
        capacity_bytes: plan.capacity_bytes,
        generation: plan.generation.clone(),
    };
    let mut reply = pool
        .call(&a.seed, Some(&token.secret()), request.clone(), Bytes::new())
        .await
        .with_context(|| format!("joining through {}", a.seed))?;
    // Only nodes holding the CA key admit nodes; any other names them.
    if let Response::JoinElsewhere { addrs } = &reply.response {
        let mut last = None;
        for addr in addrs.clone() {
            match pool.call(&addr, Some(&token.secret()), request.clone(), Bytes::new()).await {
                Ok(r) => {
                    reply = r;
                    last = None;
                    break;
                }
                Err(e) => last = Some(anyhow::Error::new(e).context(format!("joining through {addr}"))),
            }
        }
        if let Some(e) = last {
            return Err(e);
        }
    }
    let Response::Joined { node_id, cert_pem, ca_pem, mut seeds } = reply.response else {
        bail!("unexpected reply from {}: {:?}", a.seed, reply.response);
    };
    if !seeds.contains(&a.seed) {
        seeds.insert(0, a.seed.clone());
    }
    let plan = NodePlan { id: node_id.0, seeds, ..plan };
    let key_pem = key.serialize_pem();
    let tls = NodeTls { ca_pem: &ca_pem, cert_pem: &cert_pem, key_pem: &key_pem, ca_key_pem: None };
    let config = write_node(&plan, &tls, None, true)?;
    println!("Joined as {node_id}. Start the node with:\n  strata-node run --config {}", config.display());
    tokio::time::sleep(Duration::from_millis(50)).await;
    pool.close_all();
    Ok(())
}

async fn run(a: RunArgs) -> anyhow::Result<()> {
    let config = NodeConfig::load(&a.config)?;
    let stop = async {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; stop with Ctrl-C");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    strata_node::node::run(config, stop).await
}

async fn dev_command(a: DevArgs) -> anyhow::Result<()> {
    let opts = DevOptions {
        dir: a.dir.unwrap_or_else(dev::default_dir),
        nodes: a.nodes,
        ec: a.ec,
        base_port: a.base_port,
        partition_bits: a.partition_bits,
        capacity_bytes: a.capacity,
        sync_writes: !a.no_sync,
        cert_lifetime_secs: a.cert_lifetime,
    };
    if a.prepare_only {
        let manifest = dev::prepare(&opts)?;
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({
                "dir": opts.dir,
                "nodes": (1..=manifest.nodes).map(|i| serde_json::json!({
                    "config": dev::DevManifest::config_path(&opts.dir, i),
                    "quic": manifest.quic_addr(i),
                    "metrics": manifest.metrics_addr(i),
                })).collect::<Vec<_>>(),
            }))?
        );
        return Ok(());
    }
    dev::run(opts).await
}

//! The `strata` command line: argument parsing, output formatting and exit codes. The work itself is in the
//! library; this layer only turns results into text, JSON and exit codes.

mod admin;
mod bench;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use strata_client::error::exit;
use strata_client::{ClientError, ClusterClient, Profile};

/// Strata: encrypted, deduplicated backups to a Strata storage cluster.
///
/// Every command talks to the cluster named in a profile file: pass `--profile PATH`, or set STRATA_PROFILE,
/// or put it at ~/.config/strata/profile.toml. `strata-node dev` writes one for its demo tenant.
///
/// Exit codes: 0 success, 1 failure, 2 usage error, 10 bad or missing profile, 11 cluster unreachable,
/// 12 credentials refused, 13 not found.
#[derive(Parser)]
#[command(name = "strata", version, propagate_version = true)]
pub struct Cli {
    /// Profile file naming the cluster and credentials.
    #[arg(long, global = true, env = "STRATA_PROFILE")]
    profile: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Log filter for diagnostics on stderr (e.g. `debug`).
    #[arg(long, global = true, env = "STRATA_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Operator commands: cluster status, tenants, tokens, joining nodes.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Measure the cluster: blob put/get throughput and latency.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Makes a closed output pipe (`strata snapshots | head`) end the process quietly, as Unix tools do, instead
/// of the Rust default of ignoring SIGPIPE and panicking on the next `println!`.
fn restore_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL installs no Rust handler.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// Shared state of one invocation.
pub struct Ctx {
    /// `--json` was given.
    pub json: bool,
    profile_path: Option<PathBuf>,
}

impl Ctx {
    /// Loads the profile and connects.
    pub async fn client(&self) -> Result<ClusterClient, ClientError> {
        let path = Profile::locate(self.profile_path.as_deref())?;
        let profile = Profile::load(&path)?;
        ClusterClient::from_profile(&profile).await
    }
}

/// Runs the CLI and returns the exit code.
pub fn main() -> i32 {
    restore_sigpipe();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { exit::OK };
            let _ = e.print();
            return code;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let ctx = Ctx { json: cli.json, profile_path: cli.profile };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("strata: cannot start the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Admin(c) => admin::run(&ctx, c).await,
            Command::Bench(c) => bench::run(&ctx, c).await,
        }
    });
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            let code = e.downcast_ref::<ClientError>().map(ClientError::exit_code).unwrap_or(exit::FAILURE);
            eprintln!("strata: {e:#}");
            code
        }
    }
}

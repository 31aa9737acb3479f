//! The `strata` command line: argument parsing, output formatting and exit codes. The work itself is in the
//! library; this layer only turns results into text, JSON and exit codes.

mod admin;
mod backup_cmd;
mod bench;
mod browse;
mod check;
mod forget;
mod generation_cmd;
mod progress_ui;
mod prune;
mod repo_cmds;
mod restore_cmd;
mod tokens;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use strata_client::error::exit;
use strata_client::password::{PasswordError, PasswordSource};
use strata_client::repo::{RepoError, Repository, default_key_path};
use strata_client::{ClientError, ClusterClient, Profile};

/// Strata: encrypted, deduplicated backups to a Strata storage cluster.
///
/// Every command talks to the cluster named in a profile file: pass `--profile PATH`, or set STRATA_PROFILE,
/// or put it at ~/.config/strata/profile.toml. `strata-node dev` writes one for its demo tenant.
///
/// The password comes from STRATA_PASSWORD_FILE, STRATA_PASSWORD_COMMAND or a prompt on the terminal.
///
/// Exit codes: 0 success, 1 failure, 2 usage error, 3 backup saved but some files could not be read,
/// 10 bad or missing profile, 11 cluster unreachable, 12 credentials refused, 13 not found,
/// 14 wrong password.
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
    /// Read the repository password from this file's first line.
    #[arg(long, global = true, env = "STRATA_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
    /// Run this command (with `sh -c`) and use its first output line as the password.
    #[arg(long, global = true, env = "STRATA_PASSWORD_COMMAND")]
    password_command: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the tenant's encryption key, protected by a password (once per tenant).
    Init,
    /// Back up files and directories as a new snapshot.
    Backup(backup_cmd::BackupArgs),
    /// List snapshots.
    Snapshots(browse::SnapshotFilter),
    /// List the files in a snapshot.
    Ls(browse::LsArgs),
    /// Show what changed between two snapshots.
    Diff(browse::DiffArgs),
    /// Restore a snapshot into a directory.
    Restore(restore_cmd::RestoreArgs),
    /// Forget snapshots by id or by a retention policy.
    Forget(forget::ForgetArgs),
    /// Verify snapshots and, optionally, the stored data.
    Check(check::CheckArgs),
    /// Free stored data that no snapshot references any more (garbage collection; safe while backups run).
    Prune,
    /// Manage the repository key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Tokens of this tenant's devices (needs the tenant's admin token): create, list, revoke.
    #[command(subcommand)]
    Token(tokens::TenantTokenCommand),
    /// Operator commands: cluster status, tenants, tokens, joining nodes.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Measure the cluster: blob put/get throughput and latency.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Print a shell completion script (e.g. `strata completions bash > /etc/bash_completion.d/strata`).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// Makes a closed output pipe (`strata snapshots | head`) end the process quietly, as Unix tools do, instead
/// of the Rust default of ignoring SIGPIPE and panicking on the next `println!`.
fn restore_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL installs no Rust handler.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// Key commands.
#[derive(Subcommand)]
enum KeyCommand {
    /// Change the password protecting the key (no data is re-encrypted).
    Passwd {
        /// Read the new password from this file's first line [default: ask on the terminal].
        #[arg(long)]
        new_password_file: Option<PathBuf>,
    },
}

/// Shared state of one invocation.
pub struct Ctx {
    /// `--json` was given.
    pub json: bool,
    profile_path: Option<PathBuf>,
    password: PasswordSource,
}

impl Ctx {
    /// Loads the profile and connects. The node addresses the cluster map taught earlier runs are kept beside
    /// the profile (`<profile>.nodes`, [`strata_client::cluster::NodeCache`]), so the profile keeps working after
    /// every node it names was drained and switched off.
    pub async fn client(&self) -> Result<ClusterClient, ClientError> {
        let path = Profile::locate(self.profile_path.as_deref())?;
        let profile = Profile::load(&path)?;
        let client = ClusterClient::from_profile(&profile).await?.with_node_cache(path.with_extension("nodes"));
        follow_trusted_cas(&client, &profile).await;
        Ok(client)
    }

    /// Like [`Ctx::client`], shared.
    pub async fn client_arc(&self) -> Result<Arc<ClusterClient>, ClientError> {
        Ok(Arc::new(self.client().await?))
    }

    /// The local key file: the profile's `key_file`, or next to the profile with the extension `.key`.
    pub fn key_path(&self) -> Result<PathBuf, ClientError> {
        let path = Profile::locate(self.profile_path.as_deref())?;
        let profile = Profile::load(&path)?;
        Ok(profile.key_file.map(|k| profile.base_dir.join(k)).unwrap_or_else(|| default_key_path(&path)))
    }

    /// Reads the password and unlocks the repository.
    pub async fn repo(&self) -> anyhow::Result<Repository> {
        let client = self.client_arc().await?;
        let password = self.password.read("repository password: ")?;
        Ok(Repository::open(client, &password, &self.key_path()?).await?)
    }

    /// A new password: from the configured source, or typed twice on the terminal.
    pub fn new_password(&self) -> anyhow::Result<Vec<u8>> {
        let first = self.password.read("new repository password: ")?;
        if self.password.file.is_none() && self.password.command.is_none() && std::io::stdin().is_terminal() {
            let again = self.password.read("enter it again: ")?;
            anyhow::ensure!(again == first, "the passwords do not match");
        }
        Ok(first)
    }
}

/// Keeps the profile's CA file equal to the CAs the cluster trusts, so a client follows a CA rotation: the
/// set comes from a node that the CAs already in the file verified (during a rotation, through the new CA's
/// certificate signed by the old one). Failing to check or to write is only a warning: the command goes on
/// with what it has.
async fn follow_trusted_cas(client: &ClusterClient, profile: &Profile) {
    let path = profile.ca_cert_path();
    let trusted = match client.trusted_cas().await {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(error = %e, "could not ask which CAs the cluster trusts");
            return;
        }
    };
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    let parsed = |pem: &str| strata_transport::tls::certs_from_pem(pem, "CA").unwrap_or_default();
    let fresh = parsed(&trusted);
    if fresh.is_empty() || fresh == parsed(&current) {
        return;
    }
    match strata_transport::profile::write_private(&path, trusted.as_bytes()) {
        Ok(()) => eprintln!("the cluster's CAs changed (a CA rotation); updated {}", path.display()),
        Err(e) => eprintln!("warning: the cluster's CAs changed, but {} could not be updated: {e}", path.display()),
    }
}

/// The exit code for an error, by its type.
fn exit_code(e: &anyhow::Error) -> i32 {
    if let Some(c) = e.downcast_ref::<ClientError>() {
        return c.exit_code();
    }
    if let Some(r) = e.downcast_ref::<RepoError>() {
        return r.exit_code();
    }
    if e.downcast_ref::<PasswordError>().is_some() {
        return exit::PROFILE;
    }
    exit::FAILURE
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
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory;
        clap_complete::generate(shell, &mut Cli::command(), "strata", &mut std::io::stdout());
        return exit::OK;
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let ctx = Ctx {
        json: cli.json,
        profile_path: cli.profile,
        password: PasswordSource { file: cli.password_file, command: cli.password_command },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("strata: cannot start the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Init => repo_cmds::init(&ctx).await,
            Command::Backup(a) => backup_cmd::run(&ctx, a).await,
            Command::Snapshots(f) => browse::snapshots(&ctx, f).await,
            Command::Ls(a) => browse::ls(&ctx, a).await,
            Command::Diff(a) => browse::diff(&ctx, a).await,
            Command::Restore(a) => restore_cmd::run(&ctx, a).await,
            Command::Forget(a) => forget::run(&ctx, a).await,
            Command::Check(a) => check::run(&ctx, a).await,
            Command::Prune => prune::run(&ctx).await,
            Command::Key(KeyCommand::Passwd { new_password_file }) => repo_cmds::passwd(&ctx, new_password_file).await,
            Command::Token(c) => tokens::run(&ctx, c).await.map(|()| exit::OK),
            Command::Admin(c) => admin::run(&ctx, c).await.map(|()| exit::OK),
            Command::Bench(c) => bench::run(&ctx, c).await.map(|()| exit::OK),
            // Answered above, before the runtime starts.
            Command::Completions { .. } => Ok(exit::OK),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strata: {e:#}");
            exit_code(&e)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_line_is_consistent_and_completes_every_command() {
        Cli::command().debug_assert();
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "strata", &mut out);
            let script = String::from_utf8(out).expect("completion scripts are text");
            for word in ["backup", "restore", "snapshots", "forget", "admin", "exclude", "keep-within", "limit-upload"] {
                assert!(script.contains(word), "{shell} completion lacks {word}");
            }
        }
    }
}

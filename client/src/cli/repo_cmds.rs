//! `strata init` and `strata key passwd`: creating the tenant's key and changing its password.

use strata_client::keys::KdfParams;
use strata_client::repo::Repository;

use super::Ctx;

/// `strata init`: creates the master key, stores it wrapped locally and in the cluster.
pub async fn init(ctx: &Ctx) -> anyhow::Result<i32> {
    let client = ctx.client_arc().await?;
    let password = ctx.new_password()?;
    let key_path = ctx.key_path()?;
    Repository::init(client, &password, ctx.kdf(), &key_path).await?;
    if ctx.json {
        println!("{}", serde_json::json!({ "message_type": "initialized", "key_file": key_path }));
    } else {
        println!("created the repository key; it is stored wrapped with your password in the cluster and in {}", key_path.display());
        println!("keep the password safe: without it no backup of this tenant can be restored");
    }
    Ok(0)
}

/// `strata key passwd`: rewraps the master key with a new password (from `new_password_file`, or asked on
/// the terminal; never from the source of the current one).
pub async fn passwd(ctx: &Ctx, new_password_file: Option<std::path::PathBuf>) -> anyhow::Result<i32> {
    let repo = ctx.repo().await?;
    let new = match new_password_file {
        Some(file) => strata_client::password::PasswordSource { file: Some(file), command: None }.read("")?,
        None => {
            anyhow::ensure!(
                std::io::IsTerminal::is_terminal(&std::io::stdin()),
                "give the new password with --new-password-file, or run on a terminal"
            );
            let first = rpassword::prompt_password("new repository password: ")?;
            anyhow::ensure!(rpassword::prompt_password("enter it again: ")? == first, "the passwords do not match");
            anyhow::ensure!(!first.is_empty(), "the password is empty");
            first.into_bytes()
        }
    };
    repo.change_password(&new, ctx.kdf(), &ctx.key_path()?).await?;
    if ctx.json {
        println!("{}", serde_json::json!({ "message_type": "password_changed" }));
    } else {
        println!("password changed (no data was re-encrypted)");
    }
    Ok(0)
}

impl Ctx {
    /// Key-derivation cost: the default; in debug builds (the test suite's), cheap parameters when
    /// STRATA_TEST_FAST_KDF is set. A release binary never weakens the key file, whatever its environment.
    pub fn kdf(&self) -> KdfParams {
        if cfg!(debug_assertions) && std::env::var_os("STRATA_TEST_FAST_KDF").is_some() { KdfParams::FOR_TESTS } else { KdfParams::DEFAULT }
    }
}

//! Where the repository password comes from: a file, a command, or a prompt on the terminal.
//!
//! `STRATA_PASSWORD_FILE` names a file whose first line is the password; `STRATA_PASSWORD_COMMAND` is run by
//! `sh -c` and its first output line is the password (for password managers); otherwise the user is asked on
//! the terminal, without echo. Scripts without a terminal get a clear error instead of a hang.

use std::io::IsTerminal;
use std::path::PathBuf;

/// Environment variable naming a password file.
pub const PASSWORD_FILE_ENV: &str = "STRATA_PASSWORD_FILE";
/// Environment variable holding a command that prints the password.
pub const PASSWORD_COMMAND_ENV: &str = "STRATA_PASSWORD_COMMAND";

/// Why no password could be obtained.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The password file could not be read.
    #[error("cannot read the password file {path}: {reason}")]
    File {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
    /// The password command failed.
    #[error("the password command failed: {0}")]
    Command(String),
    /// No source, and no terminal to ask on.
    #[error("no password: set {PASSWORD_FILE_ENV} or {PASSWORD_COMMAND_ENV}, or run on a terminal")]
    Unavailable,
    /// The password is empty.
    #[error("the password is empty")]
    Empty,
}

/// Where to look for the password.
#[derive(Debug, Clone, Default)]
pub struct PasswordSource {
    /// A password file (overrides the environment).
    pub file: Option<PathBuf>,
    /// A password command (overrides the environment).
    pub command: Option<String>,
}

fn first_line(bytes: &[u8]) -> Vec<u8> {
    let end = bytes.iter().position(|b| *b == b'\n').unwrap_or(bytes.len());
    let line = &bytes[..end];
    line.strip_suffix(b"\r").unwrap_or(line).to_vec()
}

impl PasswordSource {
    /// Reads the password; `prompt` is shown when asking on the terminal.
    pub fn read(&self, prompt: &str) -> Result<Vec<u8>, PasswordError> {
        let file = self.file.clone().or_else(|| std::env::var_os(PASSWORD_FILE_ENV).map(PathBuf::from));
        let command = self.command.clone().or_else(|| std::env::var(PASSWORD_COMMAND_ENV).ok());
        let password = if let Some(path) = file {
            let bytes =
                std::fs::read(&path).map_err(|e| PasswordError::File { path: path.display().to_string(), reason: e.to_string() })?;
            first_line(&bytes)
        } else if let Some(cmd) = command {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .stderr(std::process::Stdio::inherit())
                .output()
                .map_err(|e| PasswordError::Command(e.to_string()))?;
            if !out.status.success() {
                return Err(PasswordError::Command(format!("exited with {}", out.status)));
            }
            first_line(&out.stdout)
        } else if std::io::stdin().is_terminal() {
            rpassword::prompt_password(prompt).map_err(|_| PasswordError::Unavailable)?.into_bytes()
        } else {
            return Err(PasswordError::Unavailable);
        };
        if password.is_empty() {
            return Err(PasswordError::Empty);
        }
        Ok(password)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_command_sources() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("pw");
        std::fs::write(&f, "s3cret\nignored\n").unwrap();
        assert_eq!(PasswordSource { file: Some(f.clone()), command: None }.read("").unwrap(), b"s3cret");
        assert_eq!(PasswordSource { file: None, command: Some("printf 'from-cmd\\n'".into()) }.read("").unwrap(), b"from-cmd");
        assert!(matches!(PasswordSource { file: None, command: Some("exit 3".into()) }.read(""), Err(PasswordError::Command(_))));
        std::fs::write(&f, "\n").unwrap();
        assert!(matches!(PasswordSource { file: Some(f), command: None }.read(""), Err(PasswordError::Empty)));
        assert!(matches!(PasswordSource { file: Some(d.path().join("missing")), command: None }.read(""), Err(PasswordError::File { .. })));
    }
}

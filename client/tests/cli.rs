//! The `strata` binary's behaviour without a cluster: help, usage errors and profile errors have their
//! documented exit codes. (Cargo builds the binary for these tests, which the chaos tests then reuse.)

use std::process::Command;

fn strata(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.args(args).env_remove("STRATA_PROFILE").env("HOME", "/nonexistent-home-for-tests").env_remove("XDG_CONFIG_HOME");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run strata")
}

#[test]
fn help_and_usage_errors() {
    let help = strata(&["--help"], &[]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for verb in ["init", "backup", "snapshots", "ls", "diff", "restore", "forget", "check", "key", "admin"] {
        assert!(text.contains(verb), "--help does not mention {verb}");
    }
    assert_eq!(strata(&["frobnicate"], &[]).status.code(), Some(2));
    assert_eq!(strata(&["restore", "latest"], &[]).status.code(), Some(2), "--target is required");
}

#[test]
fn missing_or_broken_profiles_exit_10_and_say_why() {
    let out = strata(&["snapshots"], &[]);
    assert_eq!(out.status.code(), Some(10));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no profile"), "{}", String::from_utf8_lossy(&out.stderr));
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("p.toml");
    std::fs::write(&p, "ca_cert = \"missing.pem\"\nnodes = [\"127.0.0.1:1\"]\n").unwrap();
    let out = strata(&["snapshots"], &[("STRATA_PROFILE", p.to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(10));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`ca_cert`"), "{}", String::from_utf8_lossy(&out.stderr));
}

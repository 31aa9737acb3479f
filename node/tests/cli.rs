//! The `strata-node` binary's command line: provisioning commands and start-up validation, run as a user
//! would run them. (Cargo builds the binary for these tests, which the chaos tests then reuse.)

use std::path::Path;
use std::process::{Command, Output};

fn node(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata-node")).args(args).output().expect("run strata-node")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn init(dir: &Path) -> Output {
    node(&["init", "--data-dir", dir.to_str().unwrap(), "--capacity", "1GiB", "--listen", "127.0.0.1:17401"])
}

#[test]
fn init_writes_a_valid_node_and_refuses_to_overwrite_it() {
    let d = tempfile::tempdir().unwrap();
    let out = init(d.path());
    assert!(out.status.success(), "{}", stderr(&out));
    for f in ["node.toml", "operator.toml", "tls/ca.pem", "tls/ca.key", "tls/node.pem", "tls/node.key"] {
        assert!(d.path().join(f).is_file(), "{f} missing");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for secret in ["tls/ca.key", "tls/node.key", "operator.toml"] {
            let mode = std::fs::metadata(d.path().join(secret)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{secret} is readable by others");
        }
    }
    let config = strata_node::config::NodeConfig::load(&d.path().join("node.toml")).expect("init writes a config that validates");
    assert!(config.bootstrap.is_some());
    let again = init(d.path());
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already holds a node"), "{}", stderr(&again));
}

#[test]
fn run_names_the_bad_config_field() {
    let d = tempfile::tempdir().unwrap();
    assert!(init(d.path()).status.success());
    let path = d.path().join("node.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("capacity_bytes = 1073741824", "capacity_bytes = 0")).unwrap();
    let out = node(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("`capacity_bytes`"), "{}", stderr(&out));

    std::fs::write(&path, "this is = not toml [").unwrap();
    let out = node(&["run", "--config", path.to_str().unwrap()]);
    assert!(stderr(&out).contains("is invalid"), "{}", stderr(&out));

    let out = node(&["run", "--config", d.path().join("missing.toml").to_str().unwrap()]);
    assert!(stderr(&out).contains("missing.toml"), "{}", stderr(&out));
}

#[test]
fn join_rejects_a_malformed_token_before_touching_the_network() {
    let d = tempfile::tempdir().unwrap();
    let out = node(&[
        "join",
        "--token",
        "stk1_not_a_join_token",
        "--seed",
        "127.0.0.1:1",
        "--data-dir",
        d.path().to_str().unwrap(),
        "--capacity",
        "1GiB",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a join token"), "{}", stderr(&out));
    assert!(!d.path().join("node.toml").exists());
}

#[test]
fn dev_prepare_is_resumable_and_refuses_a_different_shape() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let out = node(&["dev", "--prepare-only", "--dir", dir, "--base-port", "23000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["nodes"].as_array().unwrap().len(), 6);
    let again = node(&["dev", "--prepare-only", "--dir", dir, "--base-port", "23000"]);
    assert_eq!(again.stdout, out.stdout, "a second run resumes the same cluster");
    let other = node(&["dev", "--prepare-only", "--dir", dir, "--base-port", "23000", "--nodes", "8"]);
    assert!(!other.status.success());
    assert!(stderr(&other).contains("already holds a dev cluster of 6 nodes"), "{}", stderr(&other));
    let small = node(&["dev", "--prepare-only", "--dir", &format!("{dir}/x"), "--nodes", "3"]);
    assert!(stderr(&small).contains("cannot hold a 4+2 profile"), "{}", stderr(&small));
}

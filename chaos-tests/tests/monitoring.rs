//! The monitoring that ships in `deploy/` works: the alert rules load in Prometheus and behave as their unit
//! tests say (`promtool`), and a real Prometheus scraping a real cluster finds every metric that the alerts
//! and the Grafana dashboard query, so renaming a metric fails here instead of silently blinding operators.
//!
//! Needs `promtool` and `prometheus` (Debian package `prometheus`; `deploy/install-build-deps.sh` installs it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use strata_chaos::fs_tree::{TreeSpec, generate};
use strata_chaos::{Cluster, ClusterSpec, free_tcp_addr};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn tool(name: &str) -> Command {
    let found = Command::new(name).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    assert!(found, "`{name}` is not installed: run deploy/install-build-deps.sh (Debian package `prometheus`)");
    Command::new(name)
}

fn run_ok(mut cmd: Command) {
    let out = cmd.output().expect("run the tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_load_and_pass_their_unit_tests() {
    let rules = deploy().join("prometheus");
    let mut check = tool("promtool");
    check.arg("check").arg("rules").arg(rules.join("alerts.yml"));
    run_ok(check);
    let mut test = tool("promtool");
    test.arg("test").arg("rules").arg(rules.join("alerts_test.yml"));
    run_ok(test);
}

/// Every `strata_*` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("strata_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Kills Prometheus when the test ends, however it ends.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scraping_a_cluster_finds_every_metric_the_alerts_and_dashboard_use() -> anyhow::Result<()> {
    let alerts = std::fs::read_to_string(deploy().join("prometheus/alerts.yml"))?;
    let dashboard = std::fs::read_to_string(deploy().join("grafana/strata-cluster.json"))?;
    let mut wanted = metric_names(&alerts);
    wanted.extend(metric_names(&dashboard));
    assert!(wanted.len() >= 10, "the alerts and the dashboard should name many metrics: {wanted:?}");

    let cluster = Cluster::start(ClusterSpec::default()).await?;
    // Traffic, so that series labelled by operation, class and peer exist.
    let work = tempfile::tempdir()?;
    let cli = cluster.tenant_cli("watched", &work.path().join("laptop")).await?;
    cli.json(&["init"]);
    let source = work.path().join("source");
    let tree = generate(&source, 5, &TreeSpec { sparse_bytes: 1 << 20, max_file_bytes: 200_000, files: 10 });
    let id = cli.backup(&source);
    assert!(cli.restore_diff(&id[..8], &source, &tree, &work.path().join("restore")).is_empty());

    let targets: Vec<String> = cluster.nodes.iter().map(|n| format!("'{}'", n.metrics)).collect();
    let config = work.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: strata\n    static_configs:\n      - targets: [{}]\nrule_files:\n  - {}\n",
            targets.join(", "),
            deploy().join("prometheus/alerts.yml").display()
        ),
    )?;
    let web = free_tcp_addr()?;
    let log = std::fs::File::create(work.path().join("prometheus.log"))?;
    let _prometheus = Prometheus(
        tool("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", work.path().join("tsdb").display()))
            .arg(format!("--web.listen-address={web}"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?,
    );

    let missing = || async {
        let mut missing = Vec::new();
        for name in &wanted {
            let path = format!("/api/v1/series?match%5B%5D={name}");
            let found = match strata_transport::health_probe::get_path(&web, &path, Duration::from_secs(2)).await {
                Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["data"].as_array().map(|series| !series.is_empty()))
                    .unwrap_or(false),
                _ => false,
            };
            if !found {
                missing.push(name.clone());
            }
        }
        missing
    };
    let waited =
        cluster.wait_for("Prometheus to scrape every metric", Duration::from_secs(60), || async { missing().await.is_empty() }).await;
    if let Err(e) = waited {
        let log = std::fs::read_to_string(work.path().join("prometheus.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        panic!("{e}: missing {:?}\nPrometheus log (last lines, newest first):\n{}", missing().await, tail.join("\n"));
    }
    eprintln!("Prometheus found all {} metrics the alerts and the dashboard use", wanted.len());
    Ok(())
}

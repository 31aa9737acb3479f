//! Garbage collection with real processes: it frees what nothing references, and never what a running
//! backup relies on (docs/rfcs/0001-snapshots-and-gc.md).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use rand::{Rng, SeedableRng};
use strata_chaos::fs_tree::{differences, manifest};
use strata_chaos::{Cluster, ClusterSpec};

const MIB: usize = 1 << 20;

/// Writes `count` files of `size` random bytes into `dir`.
fn random_files(dir: &Path, seed: u64, count: usize, size: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..count {
        let mut data = vec![0u8; size];
        rng.fill(&mut data[..]);
        std::fs::write(dir.join(format!("file-{i:03}.bin")), data).unwrap();
    }
}

fn restores_exactly(cli: &strata_chaos::TenantCli, snapshot: &str, source: &Path, scratch: &Path) {
    let target = scratch.join(format!("restore-{}", &snapshot[..8]));
    cli.json(&["restore", snapshot, "--target", target.to_str().unwrap()]);
    let diff = differences(&manifest(source), &manifest(&target.join(source.strip_prefix("/").unwrap())));
    assert!(diff.is_empty(), "snapshot {snapshot} does not restore exactly: {:#?}", &diff[..diff.len().min(5)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_frees_only_what_no_snapshot_references() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec::default()).await?;
    let work = tempfile::tempdir()?;
    let cli = cluster.tenant_cli("prune", &work.path().join("laptop")).await?;
    cli.json(&["init"]);
    let source = work.path().join("data");
    random_files(&source.join("kept"), 1, 4, 2 * MIB);
    random_files(&source.join("dropped"), 2, 4, 2 * MIB);
    let first = cli.backup(&source);
    std::fs::remove_dir_all(source.join("dropped"))?;
    let second = cli.backup(&source);

    // With both snapshots retained nothing is garbage.
    let nothing = cli.json(&["prune"]);
    assert_eq!(nothing["report"]["candidates"], 0, "{nothing}");

    let forgotten = cli.json(&["forget", "--keep-last", "1", "--prune"]);
    let report = &forgotten["prune"];
    eprintln!("prune after forget: {report}");
    assert_eq!(forgotten["forgotten"], 1);
    // The 8 MiB only the first snapshot had (plus its trees and reference list) are gone: k+m shards each.
    let deleted = report["deleted_chunks"].as_u64().unwrap();
    assert!(deleted >= 4, "{report}");
    assert_eq!(report["unreachable_holders"], 0, "{report}");
    assert_eq!(report["deleted_shards"].as_u64(), Some(deleted * 6), "every shard of every deleted chunk: {report}");
    assert!(report["freed_bytes"].as_u64().unwrap() as usize >= 8 * MIB * 6 / 4, "{report}");
    assert!(cli.run(&["restore", &first, "--target", "/nonexistent"]).status.code() == Some(13), "the forgotten snapshot is gone");
    restores_exactly(&cli, &second, &source, work.path());
    let check = cli.json(&["check", "--read-data"]);
    assert_eq!(check["problems"].as_array().map(Vec::len), Some(0), "{check}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_during_a_backup_keeps_what_the_backup_deduplicated() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec::default()).await?;
    let work = tempfile::tempdir()?;
    let cli = cluster.tenant_cli("race", &work.path().join("laptop")).await?;
    cli.json(&["init"]);

    // Snapshot A holds the "old" files; forgetting it makes all of them garbage candidates.
    let source = work.path().join("home");
    random_files(&source.join("a-old"), 3, 6, 2 * MIB);
    let a = cli.backup(&source);
    cli.json(&["forget", &a]);

    // Backup C sees the old files again (a dedup hit on every one of them, early), then uploads new data for
    // a while. Prune starts after C has deduplicated the old files and before C commits.
    random_files(&source.join("b-new"), 4, 40, 2 * MIB);
    let expected = manifest(&source);
    let mut backup = cli
        .command(&["--json", "backup", "--limit-upload", "20MiB", source.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut lines = BufReader::new(backup.stdout.take().expect("piped")).lines();
    let old_bytes = (6 * 2 * MIB) as u64;
    loop {
        let line = lines.next().expect("the backup reports progress until it ends")?;
        let v: serde_json::Value = serde_json::from_str(&line)?;
        assert_ne!(v["message_type"], "summary", "the backup finished before prune could start; make it slower");
        if v["bytes_done"].as_u64().unwrap_or(0) > old_bytes {
            break;
        }
    }
    let prune = cli.command(&["--json", "prune"]).output()?;
    assert!(prune.status.success(), "{}", String::from_utf8_lossy(&prune.stderr));
    let report: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&prune.stdout).trim())?;
    eprintln!("prune during the backup: {report}");
    let summary: serde_json::Value = serde_json::from_str(&lines.map_while(Result::ok).last().expect("backup summary"))?;
    assert!(backup.wait()?.success());

    let r = &report["report"];
    assert_eq!(r["sessions_waited_for"], 1, "prune must wait for the running backup: {r}");
    assert!(r["candidates"].as_u64().unwrap() >= 6, "the old files were garbage when prune marked: {r}");
    assert!(r["kept"].as_u64().unwrap() >= 6, "the backup's commit referenced them, so they were kept: {r}");
    let c = summary["snapshot_id"].as_str().unwrap();
    restores_exactly(&cli, c, &source, work.path());
    let diff = differences(&expected, &manifest(&source));
    assert!(diff.is_empty());
    let check = cli.json(&["check", "--read-data"]);
    assert_eq!(check["problems"].as_array().map(Vec::len), Some(0), "{check}");
    // And a later backup deduplicates against the kept chunks again (they are no longer condemned).
    let again = cli.json(&["backup", source.to_str().unwrap()]);
    assert!(again["bytes_uploaded"].as_u64().unwrap() < MIB as u64, "{again}");
    Ok(())
}

//! The backup client end to end: the real `strata` binary against a real cluster.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Stdio;

use strata_chaos::fs_tree::{TreeSpec, allocated_bytes, differences, generate, manifest, restored};
use strata_chaos::{Cluster, ClusterSpec};

const MIB: u64 = 1 << 20;

fn assert_same(expected: &strata_chaos::fs_tree::Manifest, dir: &Path, when: &str) {
    let diff = differences(expected, &manifest(dir));
    assert!(diff.is_empty(), "{} differences {when}; first: {:#?}", diff.len(), &diff[..diff.len().min(8)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_entry_round_trips_with_its_metadata() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec::default()).await?;
    let work = tempfile::tempdir()?;
    let cli = cluster.tenant_cli("roundtrip", &work.path().join("laptop")).await?;
    assert_eq!(cli.json(&["init"])["message_type"], "initialized");

    let source = work.path().join("source");
    let sparse_bytes = 3 << 30;
    let expected = generate(&source, 7, &TreeSpec { sparse_bytes, max_file_bytes: 3 << 20, files: 12 });
    let summary = cli.json(&["backup", source.to_str().unwrap()]);
    assert_eq!(summary["files_failed"], 0, "{summary}");
    let id = summary["snapshot_id"].as_str().expect("snapshot id").to_owned();

    let target = work.path().join("restore");
    cli.json(&["restore", &id[..8], "--target", target.to_str().unwrap()]);
    assert_same(&expected, &restored(&target, &source), "after restore");
    let holes = allocated_bytes(&restored(&target, &source).join("sparse.img"));
    assert!(holes < 64 * MIB, "the 3 GiB sparse file was restored with {holes} bytes allocated");

    // Another machine: same tenant, no local key file, only the password.
    let other = work.path().join("new-laptop");
    std::fs::create_dir_all(&other)?;
    std::fs::copy(&cli.profile, other.join("profile.toml"))?;
    let moved =
        strata_chaos::TenantCli { profile: other.join("profile.toml"), password_file: cli.password_file.clone(), tenant: cli.tenant };
    assert!(!other.join("profile.key").exists());
    let target2 = work.path().join("restore-elsewhere");
    moved.json(&["restore", "latest", "--target", target2.to_str().unwrap(), "--include", "/**/deep/**"]);
    let deep = restored(&target2, &source).join("deep");
    assert!(
        deep.join("level-0/level-1").is_dir() && !restored(&target2, &source).join("files").exists(),
        "--include restores only what matches"
    );
    assert!(other.join("profile.key").exists(), "the key was fetched from the cluster and kept");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_backup_uploads_about_what_changed_and_devices_share_chunks() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec::default()).await?;
    let work = tempfile::tempdir()?;
    let cli = cluster.tenant_cli("dedup", &work.path().join("laptop")).await?;
    cli.json(&["init"]);
    let source = work.path().join("home");
    let day1 = generate(&source, 11, &TreeSpec { sparse_bytes: 64 * MIB, max_file_bytes: 6 << 20, files: 10 });
    let first = cli.json(&["backup", source.to_str().unwrap()]);

    // Day 2: an edit in the middle of a large file, an insertion that shifts a file's tail, an append,
    // a new file, a deleted file and a renamed directory.
    let big: Vec<_> = std::fs::read_dir(source.join("files"))?
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).unwrap().len() > 2 * MIB)
        .collect();
    assert!(big.len() >= 2, "the generator made large files");
    std::fs::OpenOptions::new().write(true).open(&big[0])?.write_all_at(b"edited in the middle", MIB + 12345)?;
    let mut shifted = std::fs::read(&big[1])?;
    shifted.splice(MIB as usize..MIB as usize, b"inserted".iter().copied());
    std::fs::write(&big[1], shifted)?;
    std::fs::OpenOptions::new().append(true).open(source.join("hard-a"))?.write_all_at(b"appended", 0)?;
    let new_file: Vec<u8> = (0..2 * MIB).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(source.join("files/new.bin"), &new_file)?;
    std::fs::remove_file(source.join("empty"))?;
    std::fs::rename(source.join("deep"), source.join("deep-renamed"))?;
    let day2 = manifest(&source);
    let second = cli.json(&["backup", source.to_str().unwrap()]);
    let uploaded = second["bytes_uploaded"].as_u64().unwrap();
    let changed = new_file.len() as u64;
    eprintln!("day 1 uploaded {} bytes; day 2 uploaded {uploaded} bytes for {changed} new bytes and three edits", first["bytes_uploaded"]);
    assert!(second["files_unmodified"].as_u64().unwrap() > 10, "unchanged files are not read again: {second}");
    // Each edit rewrites the chunk(s) around it (1 MiB on average, up to 8 MiB at worst).
    assert!(uploaded >= changed && uploaded <= changed + 3 * 4 * MIB, "day 2 uploaded {uploaded} bytes");

    // Both snapshots restore exactly.
    for (snap, expected, name) in [(&first, &day1, "day1"), (&second, &day2, "day2")] {
        let target = work.path().join(name);
        cli.json(&["restore", snap["snapshot_id"].as_str().unwrap(), "--target", target.to_str().unwrap()]);
        assert_same(expected, &restored(&target, &source), name);
    }

    // The client routes each blob to its own partition's nodes, so every node coordinates reads (one request
    // per chunk) and more than one coordinates writes (a few batches, each routed by its first blob); without
    // the cluster map everything would go to the first seed.
    let mut put_coordinators = 0;
    for id in 1..=cluster.nodes.len() {
        let gets = cluster.metric(id, r#"strata_requests_total{op="get_blob",result="ok""#).await.unwrap_or(0.0);
        assert!(gets > 0.0, "node {id} coordinated no get_blob request");
        if cluster.metric(id, r#"strata_requests_total{op="put_blobs",result="ok""#).await.unwrap_or(0.0) > 0.0 {
            put_coordinators += 1;
        }
        let refused = cluster.metric(id, r#"strata_requests_total{op="get_cluster_map",result="Unauthenticated""#).await;
        assert_eq!(refused, Some(0.0), "node {id} refused cluster-map requests");
    }
    eprintln!("{put_coordinators} of {} nodes coordinated put batches", cluster.nodes.len());
    assert!(put_coordinators > 1, "only {put_coordinators} node coordinated put_blobs requests");

    // A second device of the same tenant with the same files uploads (almost) nothing but its trees.
    let copy = work.path().join("desktop-home");
    assert!(std::process::Command::new("cp").arg("-a").arg(&source).arg(&copy).status()?.success());
    let desktop = strata_chaos::TenantCli { profile: cli.profile.clone(), password_file: cli.password_file.clone(), tenant: cli.tenant };
    let other = desktop.json(&["backup", "--host", "desktop", copy.to_str().unwrap()]);
    assert!(other["bytes_total"].as_u64().unwrap() > 20 * MIB);
    assert!(other["bytes_uploaded"].as_u64().unwrap() < MIB, "a second device re-uploaded data: {other}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_backup_resumes_without_uploading_again() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec::default()).await?;
    let work = tempfile::tempdir()?;
    let cli = cluster.tenant_cli("resume", &work.path().join("laptop")).await?;
    cli.json(&["init"]);
    let source = work.path().join("data");
    let expected = generate(&source, 5, &TreeSpec { sparse_bytes: MIB, max_file_bytes: 8 << 20, files: 24 });

    // Kill the client (SIGKILL) once it reports a quarter of the data uploaded.
    let mut child = cli
        .command(&["--json", "backup", "--concurrency", "2", source.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let total: u64 = expected.values().map(|e| e.size).sum();
    let mut seen = 0;
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        seen = v["bytes_uploaded"].as_u64().unwrap_or(0);
        if seen >= total / 4 {
            break;
        }
    }
    child.kill()?;
    child.wait()?;
    assert!(seen >= total / 4, "the backup finished before it could be interrupted ({seen} of {total} bytes)");

    let resumed = cli.json(&["backup", source.to_str().unwrap()]);
    let uploaded = resumed["bytes_uploaded"].as_u64().unwrap();
    eprintln!("interrupted after {seen} of {total} bytes; the rerun uploaded {uploaded}");
    assert!(resumed["chunks_deduplicated"].as_u64().unwrap() > 0, "finished chunks were found again: {resumed}");
    assert!(uploaded <= total - seen + 8 * MIB, "the rerun uploaded {uploaded} of {total} bytes after {seen} had been stored");
    let target = work.path().join("restore");
    cli.json(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same(&expected, &restored(&target, &source), "after the resumed backup");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_clear_and_have_their_exit_codes() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec::default()).await?;
    let work = tempfile::tempdir()?;
    let cli = cluster.tenant_cli("errors", &work.path().join("laptop")).await?;
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // Before init: no key.
    let out = cli.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(13), "{}", stderr(&out));
    assert!(stderr(&out).contains("strata init"), "{}", stderr(&out));
    cli.json(&["init"]);
    let again = cli.run(&["init"]);
    assert!(!again.status.success() && stderr(&again).contains("already holds a key"), "{}", stderr(&again));

    // Wrong password: exit 14, also for a machine that must fetch the key from the cluster.
    let wrong = work.path().join("wrong-password");
    std::fs::write(&wrong, "not it\n")?;
    let bad = strata_chaos::TenantCli { profile: cli.profile.clone(), password_file: wrong, tenant: cli.tenant };
    let out = bad.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(14), "{}", stderr(&out));
    assert!(stderr(&out).contains("wrong password"), "{}", stderr(&out));

    // An unreadable source file is reported and counted; the rest is saved; exit 3.
    let source = work.path().join("src");
    std::fs::create_dir_all(&source)?;
    std::fs::write(source.join("fine.txt"), "fine")?;
    let out = cli.run(&["--json", "backup", source.to_str().unwrap(), "/proc/self/clear_refs"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(text.lines().last().unwrap())?;
    assert_eq!(summary["files_failed"], 1, "{summary}");
    assert!(text.contains("clear_refs"), "the failing file is named: {text}");

    // The upload buffer is bounded below with a message naming the option; at its minimum a backup still
    // works (a chunk larger than the buffer takes all of it).
    let out = cli.run(&["backup", "--upload-buffer", "1KiB", source.to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("--upload-buffer must be at least 1MiB"), "{}", stderr(&out));
    std::fs::write(source.join("big.bin"), vec![7u8; 3 << 20])?;
    let out = cli.run(&["backup", "--upload-buffer", "1MiB", source.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::remove_file(source.join("big.bin"))?;

    // A file whose size changes while it is read (procfs reports 0 bytes, then yields more) is reported,
    // counted, and kept as read; exit 3.
    let out = cli.run(&["--json", "backup", source.to_str().unwrap(), "/proc/self/stat"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(text.lines().last().unwrap())?;
    assert_eq!(summary["files_changed_during_read"], 1, "{summary}");
    assert!(text.contains("changed while it was read"), "{text}");
    let listing = cli.run(&["ls", "latest", "/proc/self/stat"]);
    assert!(String::from_utf8_lossy(&listing.stdout).contains("/proc/self/stat"), "kept in the snapshot as read");

    // A cluster that does not answer: exit 11.
    let dead = work.path().join("dead.toml");
    let mut profile = strata_client::Profile::load(&cli.profile)?;
    profile.nodes = vec![strata_chaos::free_udp_addr()?];
    profile.save(&dead)?;
    let unreachable = strata_chaos::TenantCli { profile: dead, password_file: cli.password_file.clone(), tenant: cli.tenant };
    let out = unreachable.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));

    // Another tenant sees none of this tenant's snapshots.
    let other = cluster.tenant_cli("someone-else", &work.path().join("other")).await?;
    other.json(&["init"]);
    assert_eq!(other.json(&["snapshots"]).as_array().map(Vec::len), Some(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excludes_passwords_roles_overwrite_and_retention() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec::default()).await?;
    let work = tempfile::tempdir()?;
    let cli = cluster.tenant_cli("features", &work.path().join("laptop")).await?;
    cli.json(&["init"]);
    let source = work.path().join("src");
    std::fs::create_dir_all(source.join("cache"))?;
    std::fs::write(source.join("keep.txt"), "keep")?;
    std::fs::write(source.join("skip.tmp"), "skip")?;
    std::fs::write(source.join("cache/blob"), "cached")?;
    std::fs::write(source.join("also-skip.log"), "log")?;
    let patterns = work.path().join("excludes");
    std::fs::write(&patterns, "# comment\n*.log\n")?;

    // Excludes: a name pattern, a full-path pattern and a pattern file.
    let cache_pattern = format!("{}/cache", source.display());
    let first = cli.json(&[
        "backup",
        "--exclude",
        "*.tmp",
        "--exclude",
        &cache_pattern,
        "--exclude-file",
        patterns.to_str().unwrap(),
        "--tag",
        "first",
        source.to_str().unwrap(),
    ]);
    let listing = cli.run(&["ls", first["snapshot_id"].as_str().unwrap()]);
    let text = String::from_utf8_lossy(&listing.stdout);
    assert!(
        text.contains("keep.txt") && !text.contains("skip.tmp") && !text.contains("cache/blob") && !text.contains("also-skip.log"),
        "{text}"
    );

    // Restore overwrite policies.
    let target = work.path().join("restore");
    cli.json(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let restored_file = restored(&target, &source).join("keep.txt");
    std::fs::write(&restored_file, "edited locally")?;
    cli.json(&["restore", "latest", "--target", target.to_str().unwrap(), "--overwrite", "never"]);
    assert_eq!(std::fs::read_to_string(&restored_file)?, "edited locally", "--overwrite never keeps existing files");
    cli.json(&["restore", "latest", "--target", target.to_str().unwrap(), "--overwrite", "if-changed"]);
    assert_eq!(std::fs::read_to_string(&restored_file)?, "keep", "--overwrite if-changed replaces a changed file");
    let summary = cli.json(&["restore", "latest", "--target", target.to_str().unwrap(), "--overwrite", "if-changed"]);
    assert!(summary["stats"]["skipped"].as_u64().unwrap() >= 1, "unchanged files are left alone: {summary}");

    // Retention: --dry-run explains and changes nothing; tags protect.
    cli.json(&["backup", source.to_str().unwrap()]);
    cli.json(&["backup", source.to_str().unwrap()]);
    let dry = cli.json(&["forget", "--keep-last", "1", "--keep-tag", "first", "--dry-run"]);
    let decisions = dry["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 3);
    assert_eq!(decisions.iter().filter(|d| d["keep"] == false).count(), 1, "{dry}");
    assert!(decisions.iter().any(|d| d["reasons"].to_string().contains("tag first")), "{dry}");
    assert_eq!(cli.json(&["snapshots"]).as_array().map(Vec::len), Some(3), "a dry run forgets nothing");
    // `--json` listings are one JSON document per line, as restic prints them (scripts read them line by line).
    let listed = cli.run(&["--json", "snapshots"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(text.trim_end().lines().count(), 1, "snapshots --json spans several lines: {text}");
    // A policy that would forget most snapshots only shows them until confirmed.
    let unconfirmed = cli.run(&["forget", "--keep-last", "1"]);
    assert_eq!(unconfirmed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unconfirmed.stderr).contains("confirm with --yes"), "{unconfirmed:?}");
    assert!(String::from_utf8_lossy(&unconfirmed.stdout).contains("would forget"), "{unconfirmed:?}");
    assert_eq!(cli.json(&["snapshots"]).as_array().map(Vec::len), Some(3), "nothing was forgotten without --yes");

    // A backup-only token (a laptop's) can back up but never forget or prune.
    let backup_only = cluster.device_token(&cli.admin_token(), &[strata_proto::Role::Backup], "laptop").await?;
    let laptop_dir = work.path().join("backup-only");
    std::fs::create_dir_all(&laptop_dir)?;
    let mut laptop_profile = strata_client::Profile::load(&cli.profile)?;
    laptop_profile.token = Some(backup_only.expose().to_owned());
    laptop_profile.save(&laptop_dir.join("profile.toml"))?;
    let laptop =
        strata_chaos::TenantCli { profile: laptop_dir.join("profile.toml"), password_file: cli.password_file.clone(), tenant: cli.tenant };
    laptop.json(&["backup", source.to_str().unwrap()]);
    let denied = laptop.run(&["forget", "--keep-last", "1", "--yes"]);
    assert_eq!(denied.status.code(), Some(12), "{}", String::from_utf8_lossy(&denied.stderr));
    assert_eq!(laptop.run(&["prune"]).status.code(), Some(12));

    // Changing the password: the old one stops opening the key, the new one opens the same snapshots, also
    // on a machine that must fetch the key from the cluster.
    let new_password = work.path().join("new-password");
    std::fs::write(&new_password, "a much better password\n")?;
    let out = cli.run(&["key", "passwd", "--new-password-file", new_password.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(cli.run(&["snapshots"]).status.code(), Some(14), "the old password no longer opens the key");
    let renewed = strata_chaos::TenantCli { profile: cli.profile.clone(), password_file: new_password.clone(), tenant: cli.tenant };
    assert_eq!(renewed.json(&["snapshots"]).as_array().map(Vec::len), Some(4));
    std::fs::remove_file(cli.profile.with_extension("key"))?;
    assert_eq!(renewed.json(&["snapshots"]).as_array().map(Vec::len), Some(4), "the cluster's copy has the new wrapping too");
    assert_eq!(cli.run(&["snapshots"]).status.code(), Some(14));
    Ok(())
}

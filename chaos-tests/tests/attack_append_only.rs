//! Attacks with an append-only (backup) token, as a stolen laptop would make them: it must not be able to
//! replace stored bytes, to shadow a snapshot's reference list, or to make garbage collection delete history.
//! Every attack runs against real node processes and is shown to fail.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_chaos::fs_tree::{TreeSpec, generate};
use strata_chaos::{Cluster, ClusterSpec};
use strata_client::blob::BlobCodec;
use strata_client::keys::KdfParams;
use strata_client::repo::{RepoError, Repository};
use strata_client::{ClientError, ClusterClient};
use strata_proto::{ChunkId, ErrorCode, Role, SnapshotRecord};

fn code(e: &ClientError) -> Option<ErrorCode> {
    match e {
        ClientError::Rpc(r) => r.code(),
        _ => None,
    }
}

/// A backup-only token of the tenant of `cli`, as a laptop's profile holds it.
async fn stolen_laptop(cluster: &Cluster, cli: &strata_chaos::TenantCli) -> anyhow::Result<ClusterClient> {
    let token = cluster.device_token(&cli.admin_token(), &[Role::Backup], "laptop").await?;
    cluster.client_with_token(token.expose()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_token_cannot_overwrite_blobs_or_erase_history() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec::default()).await?;
    let work = tempfile::tempdir()?;
    let cli = cluster.tenant_cli("victim", &work.path().join("owner")).await?;
    cli.json(&["init"]);
    let source = work.path().join("home");
    let expected = generate(&source, 11, &TreeSpec { sparse_bytes: 1 << 20, max_file_bytes: 300_000, files: 40 });
    let snapshot = cli.backup(&source);
    let attacker = stolen_laptop(&cluster, &cli).await?;

    // The laptop lists the snapshots (a backup token reads, for incremental backups) and learns every
    // reference list, which the cluster collects garbage by.
    let records: Vec<SnapshotRecord> = attacker.list_snapshots().await?;
    assert_eq!(records.len(), 1);
    let mut victims: Vec<ChunkId> = Vec::new();
    for list in &records[0].refs {
        let bytes = attacker.get_blob(*list).await?;
        victims.extend(strata_proto::reflist::decode(&bytes)?);
        // Attack 1: replace the list with an empty one, so that the next prune finds every chunk unreferenced.
        let e = attacker.put_blob(*list, Bytes::from(strata_proto::reflist::encode(&[]))).await.unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::Conflict), "replacing a reference list must be refused: {e}");
        assert_eq!(attacker.get_blob(*list).await?, bytes, "the list reads back unchanged");
    }
    assert!(victims.len() > 10, "the snapshot references {} chunks", victims.len());

    // Attack 2: overwrite the chunks themselves with garbage, one by one and in batches.
    for id in &victims[..5] {
        let e = attacker.put_blob(*id, Bytes::from_static(b"ransom note")).await.unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::Conflict), "{e}");
    }
    let batch: Vec<(ChunkId, Bytes)> = victims[5..].iter().map(|id| (*id, Bytes::from(vec![0xee; 4096]))).collect();
    for (i, r) in attacker.put_blobs(&batch).await?.into_iter().enumerate() {
        let e = r.expect_err("a batched overwrite must be refused");
        assert_eq!(e.code, ErrorCode::Conflict, "blob {i}: {e}");
    }

    // Attack 3: commit a snapshot that names a stored reference list with a digest of other contents (the
    // empty list), hoping garbage collection trusts it.
    let (session, _) = attacker.open_session().await?;
    let forged = SnapshotRecord {
        id: strata_proto::SnapshotId([0x66; 16]),
        time_ms: 1,
        committed_ms: 0,
        summary: vec![0; 40],
        refs: records[0].refs.clone(),
        ref_digests: records[0].refs.iter().map(|_| strata_proto::reflist::digest(&strata_proto::reflist::encode(&[]))).collect(),
    };
    let e = attacker.commit_snapshot(session, forged).await.unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::BadRequest), "{e}");
    assert!(e.to_string().contains("does not match"), "{e}");

    // The owner prunes: nothing is garbage, and the snapshot restores byte for byte, every chunk verified.
    let pruned = cli.json(&["prune"]);
    assert_eq!(pruned["report"]["candidates"], 0, "{pruned}");
    let diff = cli.restore_diff(&snapshot, &source, &expected, &work.path().join("restored"));
    assert!(diff.is_empty(), "history was damaged: {diff:?}");
    let check = cli.json(&["check", "--read-data"]);
    assert_eq!(check["problems"].as_array().map(Vec::len), Some(0), "{check}");
    attacker.close();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_encoding_of_a_stored_chunk_is_accepted_and_a_poisoned_one_is_named() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterSpec::default()).await?;
    let work = tempfile::tempdir()?;
    let owner = Arc::new(cluster.tenant_client("owner", &[Role::Admin]).await?);
    let repo = Repository::init(owner.clone(), b"pw", KdfParams::FOR_TESTS, &work.path().join("key")).await?;

    // An honest client uploads a chunk; another client (another zstd level, as a newer build could have)
    // uploads it again with other bytes. The cluster keeps the first copy and the second client confirms that
    // the stored copy is its chunk instead of failing the backup.
    let chunk = b"a sentence that compresses well. ".repeat(2000);
    let id = repo.ids().id(&chunk);
    let first = repo.codec().seal(&id, &chunk);
    let second = BlobCodec::new(repo.master(), 0).seal(&id, &chunk);
    assert_ne!(first, second);
    repo.put_blob(id, Bytes::from(first.clone()), false).await?;
    repo.put_blob(id, Bytes::from(second), false).await?;
    assert_eq!(owner.get_blob(id).await?, first, "the first copy was kept");
    assert_eq!(repo.get_chunk(id).await?, chunk);

    // A device that knows the key can store garbage under the id of a chunk that does not exist yet; the
    // backup that later meets that chunk names it instead of silently relying on it.
    let future = b"a file the owner will write next week".to_vec();
    let future_id = repo.ids().id(&future);
    owner.put_blob(future_id, Bytes::from_static(b"junk that does not decrypt")).await?;
    let e = repo.put_blob(future_id, Bytes::from(repo.codec().seal(&future_id, &future)), false).await.unwrap_err();
    assert!(matches!(e, RepoError::Poisoned(id) if id == future_id), "{e}");
    assert!(e.to_string().contains("tenant admin can delete"), "{e}");
    // The tenant admin deletes the junk; the next put stores the chunk.
    assert!(owner.delete_blob(future_id).await?);
    repo.put_blob(future_id, Bytes::from(repo.codec().seal(&future_id, &future)), false).await?;
    assert_eq!(repo.get_chunk(future_id).await?, future);
    owner.close();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_token_cannot_replace_blobs_while_their_partitions_move() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(ClusterSpec { partition_bits: 4, ..ClusterSpec::default() }).await?;
    let work = tempfile::tempdir()?;
    let cli = cluster.tenant_cli("moving", &work.path().join("owner")).await?;
    cli.json(&["init"]);
    let source = work.path().join("home");
    let expected = generate(&source, 12, &TreeSpec { sparse_bytes: 1 << 20, max_file_bytes: 400_000, files: 30 });
    let snapshot = cli.backup(&source);
    let attacker = stolen_laptop(&cluster, &cli).await?;
    let mut victims = Vec::new();
    for list in &attacker.list_snapshots().await?[0].refs {
        victims.extend(strata_proto::reflist::decode(&attacker.get_blob(*list).await?)?);
    }

    // A new generation arrives and the old one drains, with moves paused: every partition now has a target
    // that holds nothing yet, where puts go. A put there meets no stored shard to conflict with.
    cluster.admin_json(&["generation", "add", "gen-b", "--ec", "3+2"]);
    cluster.admin_json(&["generation", "pause", "gen-b"]);
    cluster.join_nodes("gen-b", 5).await?;
    cluster.admin_json(&["generation", "drain", "gen-1"]);
    cluster
        .wait_for("every partition to have a target", Duration::from_secs(60), || async {
            let out = cluster.admin(&["generation", "list"]);
            serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok_and(|l| {
                l["generations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|g| g["generation"]["name"] == "gen-1" && g["partitions"]["placed"] == 0)
            })
        })
        .await?;
    let batch: Vec<(ChunkId, Bytes)> = victims.iter().map(|id| (*id, Bytes::from_static(b"ransom note"))).collect();
    for (i, r) in attacker.put_blobs(&batch).await?.into_iter().enumerate() {
        let e = r.expect_err("a put under a stored id must be refused while its partition moves");
        assert_eq!(e.code, ErrorCode::Conflict, "blob {i}: {e}");
    }

    // The drain completes and the old generation goes; every chunk restores as it was backed up.
    cluster.admin_json(&["generation", "resume", "gen-b"]);
    cluster
        .wait_for("gen-1 to be drained and its key handed over", Duration::from_secs(300), || async {
            let list = cluster.admin(&["generation", "list"]);
            let status = cluster.admin(&["status"]);
            serde_json::from_slice::<serde_json::Value>(&list.stdout).is_ok_and(|l| {
                l["generations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|g| g["generation"]["name"] == "gen-1" && g["generation"]["state"] == "Drained" && g["stored_shards"] == 0)
            }) && serde_json::from_slice::<serde_json::Value>(&status.stdout)
                .is_ok_and(|s| s["ca_holders"].as_array().is_some_and(|h| h.iter().any(|n| n.as_u64() > Some(6))))
        })
        .await?;
    cluster.admin_json(&["generation", "drop", "gen-1"]);
    for id in 1..=6 {
        cluster.kill(id)?;
    }
    cluster.retarget_profile(&cli)?;
    let diff = cli.restore_diff(&snapshot, &source, &expected, &work.path().join("restored"));
    assert!(diff.is_empty(), "history was damaged during the move: {diff:?}");
    attacker.close();
    Ok(())
}

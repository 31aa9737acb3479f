//! The upload stage: deduplicate chunks against the cluster in batches, seal and store the missing ones.
//!
//! The walker hands over chunks through a channel; each chunk holds part of a byte budget until it is stored
//! or found present, so the memory held by queued and in-flight chunks is bounded by configuration, not by
//! file sizes. Missing chunks are sent in batches (`PutBlobs`) so small files do not cost a round trip each.
//! Sealing (compression and encryption) runs on the blocking pool, uploads run `concurrency` at a time.

use std::sync::Arc;

use bytes::Bytes;
use strata_proto::ChunkId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

use super::progress::Progress;
use super::rate::RateLimit;
use crate::repo::{RepoError, Repository};

/// Most ids in one dedup query from the uploader.
const BATCH: usize = 256;

/// A chunk on its way to the cluster.
struct Job {
    id: ChunkId,
    data: Vec<u8>,
    /// Store as is (reference lists), instead of sealing.
    raw: bool,
    budget: OwnedSemaphorePermit,
}

/// Handle to the running upload stage.
pub struct Uploader {
    tx: mpsc::Sender<Job>,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    task: tokio::task::JoinHandle<Result<(), RepoError>>,
}

impl Uploader {
    /// Starts the stage; at most `budget_bytes` of chunk data wait in it at once, and `limit` paces uploads.
    pub fn start(
        repo: Arc<Repository>,
        progress: Arc<Progress>,
        concurrency: usize,
        budget_bytes: usize,
        limit: Option<Arc<RateLimit>>,
    ) -> Uploader {
        let (tx, rx) = mpsc::channel(4096);
        let budget = Arc::new(Semaphore::new(budget_bytes));
        let task = tokio::spawn(run(repo, progress, rx, concurrency.max(1), limit));
        Uploader { tx, budget, budget_bytes, task }
    }

    /// Queues a chunk, waiting for budget first. Fails if the stage has stopped on an error.
    pub async fn send(&self, id: ChunkId, data: Vec<u8>, raw: bool) -> Result<(), RepoError> {
        let need = data.len().clamp(1, self.budget_bytes) as u32;
        let permit = self.budget.clone().acquire_many_owned(need).await.map_err(|_| RepoError::Io("upload stage stopped".into()))?;
        self.tx.send(Job { id, data, raw, budget: permit }).await.map_err(|_| RepoError::Io("upload stage stopped".into()))
    }

    /// Waits until every queued chunk is stored; returns the first error, if any.
    pub async fn finish(self) -> Result<(), RepoError> {
        drop(self.tx);
        self.task.await.map_err(|e| RepoError::Io(format!("upload stage failed: {e}")))?
    }
}

/// Blobs gathered into one `PutBlobs` request: at most this many bytes ...
const BATCH_BYTES: usize = 4 << 20;
/// ... or this many blobs.
const BATCH_BLOBS: usize = 128;

async fn run(
    repo: Arc<Repository>,
    progress: Arc<Progress>,
    mut rx: mpsc::Receiver<Job>,
    concurrency: usize,
    limit: Option<Arc<RateLimit>>,
) -> Result<(), RepoError> {
    let mut inflight: JoinSet<Result<(), RepoError>> = JoinSet::new();
    let mut pending: Vec<Job> = Vec::new();
    let mut pending_bytes = 0usize;
    loop {
        // Wait for work only when nothing is pending; otherwise take what is there and send.
        let first = if pending.is_empty() { rx.recv().await } else { rx.try_recv().ok() };
        let Some(first) = first else {
            if pending.is_empty() {
                break;
            }
            flush(&mut inflight, &mut pending, &mut pending_bytes, &repo, &progress, &limit, concurrency).await?;
            continue;
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let ids: Vec<ChunkId> = batch.iter().map(|j| j.id).collect();
        let present = repo.client().has_blobs(&ids).await?;
        for (job, present) in batch.into_iter().zip(present) {
            if present {
                Progress::add(&progress.chunks_deduplicated, 1);
                continue;
            }
            pending_bytes += job.data.len();
            pending.push(job);
            if pending_bytes >= BATCH_BYTES || pending.len() >= BATCH_BLOBS {
                flush(&mut inflight, &mut pending, &mut pending_bytes, &repo, &progress, &limit, concurrency).await?;
            }
        }
    }
    while let Some(done) = inflight.join_next().await {
        done.map_err(|e| RepoError::Io(format!("upload task failed: {e}")))??;
    }
    Ok(())
}

/// Starts uploading the pending jobs as one batch, waiting first if `concurrency` batches are in flight.
async fn flush(
    inflight: &mut JoinSet<Result<(), RepoError>>,
    pending: &mut Vec<Job>,
    pending_bytes: &mut usize,
    repo: &Arc<Repository>,
    progress: &Arc<Progress>,
    limit: &Option<Arc<RateLimit>>,
    concurrency: usize,
) -> Result<(), RepoError> {
    while inflight.len() >= concurrency {
        if let Some(done) = inflight.join_next().await {
            done.map_err(|e| RepoError::Io(format!("upload task failed: {e}")))??;
        }
    }
    let jobs = std::mem::take(pending);
    *pending_bytes = 0;
    let (repo, progress, limit) = (repo.clone(), progress.clone(), limit.clone());
    inflight.spawn(async move { store(repo, progress, jobs, limit).await });
    Ok(())
}

/// Seals and stores a batch of chunks; blobs the cluster refuses are retried one by one.
///
/// The chunks keep their share of the budget until the cluster has acknowledged them, so the budget bounds
/// queued and in-flight data together; the sealed blobs go straight into the one request body.
async fn store(repo: Arc<Repository>, progress: Arc<Progress>, jobs: Vec<Job>, limit: Option<Arc<RateLimit>>) -> Result<(), RepoError> {
    let codec = repo.codec().clone();
    let (sealed, body, _budget) = tokio::task::spawn_blocking(move || {
        let mut body = Vec::with_capacity(jobs.iter().map(|j| j.data.len() + 64).sum());
        let mut sealed = Vec::with_capacity(jobs.len());
        let mut budget = Vec::with_capacity(jobs.len());
        for job in jobs {
            let start = body.len();
            if job.raw {
                body.extend_from_slice(&job.data);
            } else {
                body.extend_from_slice(&codec.seal(&job.id, &job.data));
            }
            sealed.push((job.id, start..body.len(), job.data.len() as u64, job.raw));
            budget.push(job.budget);
        }
        (sealed, Bytes::from(body), budget)
    })
    .await
    .map_err(|e| RepoError::Io(e.to_string()))?;
    if let Some(limit) = &limit {
        limit.wait(body.len() as u64).await;
    }
    let lengths: Vec<(ChunkId, u32)> = sealed.iter().map(|(id, range, _, _)| (*id, range.len() as u32)).collect();
    let outcomes = repo.client().put_blob_batch(lengths, body.clone()).await?;
    for ((id, range, plain, raw), outcome) in sealed.into_iter().zip(outcomes) {
        let blob = body.slice(range);
        match outcome {
            Ok(_) => {}
            // Other bytes are stored under this id and were kept: make sure they are this chunk.
            Err(e) if e.code == strata_proto::ErrorCode::Conflict => repo.confirm_stored(id, raw).await?,
            Err(e) => {
                tracing::debug!(blob = %id, error = %e, "batched put refused; retrying alone");
                repo.put_blob(id, blob.clone(), raw).await?;
            }
        }
        Progress::add(&progress.chunks_uploaded, 1);
        Progress::add(&progress.bytes_uploaded, plain);
        Progress::add(&progress.blob_bytes_uploaded, blob.len() as u64);
    }
    Ok(())
}

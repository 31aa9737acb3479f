//! Live counters of a running backup or restore, shared by the workers and read by whoever displays them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters updated from several threads.
#[derive(Debug, Default)]
pub struct Progress {
    /// Files finished (read, reused or restored).
    pub files_done: AtomicU64,
    /// Bytes of file content processed.
    pub bytes_done: AtomicU64,
    /// Files expected in all (from the pre-scan; 0 while it runs).
    pub files_total: AtomicU64,
    /// Bytes expected in all (from the pre-scan; 0 while it runs).
    pub bytes_total: AtomicU64,
    /// Whether the pre-scan has finished, so the totals are final.
    pub totals_final: std::sync::atomic::AtomicBool,
    /// Chunk bytes handed to the network (before compression).
    pub bytes_uploaded: AtomicU64,
    /// Blob bytes handed to the network (after compression and encryption).
    pub blob_bytes_uploaded: AtomicU64,
    /// Chunks uploaded.
    pub chunks_uploaded: AtomicU64,
    /// Chunks the cluster already had.
    pub chunks_deduplicated: AtomicU64,
    /// Files that could not be processed.
    pub errors: AtomicU64,
    /// The file being worked on.
    pub current: Mutex<String>,
}

impl Progress {
    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Sets the current file.
    pub fn set_current(&self, path: &str) {
        if let Ok(mut c) = self.current.lock() {
            c.clear();
            c.push_str(path);
        }
    }

    /// The current file.
    pub fn current(&self) -> String {
        self.current.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

//! The free-space reserve: shard writes stop while the file system holding the data directory would keep less
//! than a configured amount available, whatever filled it.
//!
//! Shards, the Raft log, memtable flushes and compactions share one disk. A store that wrote shards until the
//! kernel said `ENOSPC` would leave the metadata log nowhere to go (openraft stops for good on a storage
//! error), so shard writes are refused as a full disk while `reserve_bytes` are still free: the node keeps
//! serving reads and applying the log, and takes shards again as soon as space comes back.

use std::path::PathBuf;

use super::StoreError;

/// What a store checks before adding shard bytes.
#[derive(Debug, Clone)]
pub struct DiskReserve {
    path: PathBuf,
    reserve_bytes: u64,
}

/// How much the file system has, read once per batch of writes.
#[derive(Debug, Clone, Copy)]
pub struct Room {
    /// Bytes available to unprivileged writers.
    pub available: u64,
    /// Bytes shard writes may still add: what stays above the reserve.
    pub for_shards: u64,
}

impl DiskReserve {
    /// A reserve of `reserve_bytes` on the file system holding `path`.
    pub fn new(path: PathBuf, reserve_bytes: u64) -> Self {
        DiskReserve { path, reserve_bytes }
    }

    /// The room left now, or `None` if the file system cannot be asked (then only the capacity applies).
    pub fn room(&self) -> Option<Room> {
        match nix::sys::statvfs::statvfs(&self.path) {
            Ok(s) => {
                let available = s.blocks_available().saturating_mul(s.fragment_size());
                Some(Room { available, for_shards: available.saturating_sub(self.reserve_bytes) })
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read the free space of the data directory");
                None
            }
        }
    }

    /// The error for a write that would eat into the reserve.
    pub fn refusal(&self, room: Room) -> StoreError {
        StoreError::NoSpace(format!(
            "disk full: the file system of {} has {} bytes available and keeps {} free for the metadata log and \
             compactions ([storage] reserve_bytes)",
            self.path.display(),
            room.available,
            self.reserve_bytes
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_for_shards_is_what_stays_above_the_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let room = DiskReserve::new(dir.path().to_owned(), 0).room().expect("statvfs of a temporary directory");
        assert!(room.available > 0 && room.for_shards == room.available, "{room:?}");
        let all = DiskReserve::new(dir.path().to_owned(), u64::MAX);
        let none = all.room().unwrap();
        assert_eq!(none.for_shards, 0, "a reserve larger than the disk leaves no room");
        let err = all.refusal(none).to_string();
        assert!(err.contains("disk full") && err.contains("reserve_bytes"), "{err}");
        assert!(DiskReserve::new("/nonexistent/strata".into(), 1).room().is_none(), "an unreadable file system gives no figure");
    }
}

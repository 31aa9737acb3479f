//! openraft's own storage test suite, run against the RocksDB log and state machine.

use openraft::testing::{StoreBuilder, Suite};

use super::log_store::LogStore;
use super::state_machine::StateMachineStore;
use super::types::{StorageError, TypeConfig};

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = crate::db::open(dir.path(), &crate::db::DbOptions::default()).expect("open database");
        let sm = StateMachineStore::open(db.clone())?;
        Ok((dir, LogStore::new(db), sm))
    }
}

#[test]
fn rocksdb_storage_passes_openraft_suite() {
    Suite::test_all(RocksBuilder).expect("openraft storage suite");
}

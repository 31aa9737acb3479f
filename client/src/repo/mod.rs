//! A tenant's repository: the cluster seen through the tenant's keys.
//!
//! Everything that needs the master key lives here: creating and unlocking the key file (locally and in the
//! cluster), sealing and opening chunks, writing and reading trees, and reading the snapshot catalog's sealed
//! summaries. The cluster client below it only ever sees ids and opaque bytes.

pub mod summary;
mod tree_walk;

pub use tree_walk::TREE_READS_IN_FLIGHT;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use strata_proto::{ChunkId, SnapshotId, SnapshotRecord};

use self::summary::{SnapshotSummary, SummaryError};
use crate::blob::{BlobCodec, BlobError, IdHasher};
use crate::chunker::{Chunker, MAX_CHUNK};
use crate::cluster::ClusterClient;
use crate::error::ClientError;
use crate::keys::{KdfParams, KeyError, KeyFile, MasterKey};
use crate::tree::{Tree, TreeError};

/// zstd level for chunk compression (level 3: about 280 MB/s per core on mixed data).
pub const ZSTD_LEVEL: i32 = 3;

/// Errors at the repository boundary.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// Talking to the cluster failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The password or key file is wrong.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A blob failed to open.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// A tree failed to decode.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// A snapshot summary failed to open.
    #[error(transparent)]
    Summary(#[from] SummaryError),
    /// No key file locally or in the cluster.
    #[error("the repository has no key yet: run `strata init` first")]
    NotInitialised,
    /// `init` on a tenant that already has a key.
    #[error(
        "the cluster already holds a key for this tenant: use `strata key passwd` to change the password, or unlock it with the existing one"
    )]
    AlreadyInitialised,
    /// The cluster holds bytes under a chunk id that do not match it, and this token may not replace them.
    #[error(
        "chunk {0}: the cluster holds other bytes under this id that do not open with this repository's key, and a \
         backup token may not replace stored data; a tenant admin can delete the blob so that the next backup \
         stores it again"
    )]
    Poisoned(ChunkId),
    /// No snapshot matches.
    #[error("no snapshot matches {0:?}")]
    NoSnapshot(String),
    /// Several snapshots match a prefix.
    #[error("{0:?} matches several snapshots; give more digits")]
    Ambiguous(String),
    /// Local file I/O.
    #[error("{0}")]
    Io(String),
}

impl RepoError {
    /// Exit code for the CLI.
    pub fn exit_code(&self) -> i32 {
        use crate::error::exit;
        match self {
            RepoError::Client(e) => e.exit_code(),
            RepoError::Key(KeyError::WrongPassword) => exit::WRONG_PASSWORD,
            RepoError::NotInitialised | RepoError::NoSnapshot(_) => exit::NOT_FOUND,
            _ => exit::FAILURE,
        }
    }
}

/// A snapshot with its summary opened.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The catalog entry.
    pub record: SnapshotRecord,
    /// What only the client can read.
    pub summary: SnapshotSummary,
}

/// An unlocked repository.
pub struct Repository {
    client: Arc<ClusterClient>,
    master: MasterKey,
    codec: Arc<BlobCodec>,
    chunker: Chunker,
    /// Version of the key file: a rewrap keeps it, so the repository's chunker never changes.
    key_version: u32,
}

/// The proof that authorises replacing the cluster's key file, and its digest.
fn update_key(master: &MasterKey) -> ([u8; 32], [u8; 32]) {
    let proof = master.derive("key file update");
    (proof, *blake3::hash(&proof).as_bytes())
}

fn save_key_file(path: &Path, file: &KeyFile) -> Result<(), RepoError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| RepoError::Io(format!("cannot create {}: {e}", dir.display())))?;
    }
    strata_transport::profile::write_private(path, file.to_text().as_bytes())
        .map_err(|e| RepoError::Io(format!("cannot write {}: {e}", path.display())))
}

impl Repository {
    fn with_key(client: Arc<ClusterClient>, master: MasterKey, file: &KeyFile) -> Self {
        let codec = Arc::new(BlobCodec::new(&master, ZSTD_LEVEL));
        let chunker = Chunker::with_seed(file.chunker_seed(&master));
        Repository { client, master, codec, chunker, key_version: file.version }
    }

    /// Creates the tenant's master key, wraps it with `password`, and stores it locally and in the cluster.
    pub async fn init(client: Arc<ClusterClient>, password: &[u8], kdf: KdfParams, local_key: &Path) -> Result<Repository, RepoError> {
        if client.get_key_file().await?.is_some() {
            return Err(RepoError::AlreadyInitialised);
        }
        let master = MasterKey::generate();
        let file = KeyFile::wrap(&master, password, kdf)?;
        let (_, check) = update_key(&master);
        client.put_key_file(file.to_text(), check, None).await?;
        save_key_file(local_key, &file)?;
        Ok(Self::with_key(client, master, &file))
    }

    /// Unlocks the repository: the local key file if there is one, otherwise the cluster's copy (which is
    /// then saved locally, so a new machine needs only the password).
    pub async fn open(client: Arc<ClusterClient>, password: &[u8], local_key: &Path) -> Result<Repository, RepoError> {
        let file = match std::fs::read_to_string(local_key) {
            Ok(text) => KeyFile::from_text(&text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let text = client.get_key_file().await?.ok_or(RepoError::NotInitialised)?;
                let file = KeyFile::from_text(&text)?;
                file.unwrap(password)?;
                save_key_file(local_key, &file)?;
                file
            }
            Err(e) => return Err(RepoError::Io(format!("cannot read key file {}: {e}", local_key.display()))),
        };
        let master = file.unwrap(password)?;
        Ok(Self::with_key(client, master, &file))
    }

    /// Rewraps the master key with a new password, locally and in the cluster; no data is re-encrypted.
    pub async fn change_password(&self, new_password: &[u8], kdf: KdfParams, local_key: &Path) -> Result<(), RepoError> {
        let file = KeyFile::wrap_version(&self.master, new_password, kdf, self.key_version)?;
        let (proof, check) = update_key(&self.master);
        self.client.put_key_file(file.to_text(), check, Some(proof)).await?;
        save_key_file(local_key, &file)
    }

    /// The cluster client.
    pub fn client(&self) -> &Arc<ClusterClient> {
        &self.client
    }

    /// The master key (for sealing summaries).
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// The repository's chunker.
    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }

    /// The tenant's chunk-id hasher.
    pub fn ids(&self) -> &IdHasher {
        self.codec.ids()
    }

    /// Id of a reference-list blob: keyed with a key of its own, so it can never equal a chunk's id.
    pub fn reference_list_id(&self, bytes: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&self.master.derive("reference list id"), bytes).as_bytes())
    }

    /// The blob codec.
    pub fn codec(&self) -> &Arc<BlobCodec> {
        &self.codec
    }

    /// Fetches and opens a chunk (verified end to end). If the cluster holds more than one stored copy under
    /// the id (a tenant's put never replaces one, so a device with the key could add another), copies that do
    /// not open are passed over for the next.
    pub async fn get_chunk(&self, id: ChunkId) -> Result<Vec<u8>, RepoError> {
        let mut excluded = Vec::new();
        loop {
            let (blob, digest) = self.client.get_blob_excluding(id, &excluded).await?;
            let codec = self.codec.clone();
            let opened =
                tokio::task::spawn_blocking(move || codec.open(&id, blob, MAX_CHUNK)).await.map_err(|e| RepoError::Io(e.to_string()))?;
            match (opened, digest) {
                (Ok(chunk), _) => return Ok(chunk),
                (Err(BlobError::Authentication(_) | BlobError::WrongContent(_)), Some(d)) if excluded.len() < MAX_COPIES_TRIED => {
                    tracing::warn!(chunk = %id, "a stored copy of the chunk does not open; trying another");
                    excluded.push(d);
                }
                (Err(e), _) => return Err(e.into()),
            }
        }
    }

    /// After the cluster answered that `id` is already stored with other bytes: checks that a stored copy is
    /// this chunk (a sealed chunk opens, a reference list hashes to its id), so the backup may rely on it.
    pub async fn confirm_stored(&self, id: ChunkId, raw: bool) -> Result<(), RepoError> {
        if !raw {
            return match self.get_chunk(id).await {
                Ok(_) => Ok(()),
                Err(RepoError::Blob(_)) => Err(RepoError::Poisoned(id)),
                Err(RepoError::Client(e)) if e.exit_code() == crate::error::exit::NOT_FOUND => Err(RepoError::Poisoned(id)),
                Err(e) => Err(e),
            };
        }
        let mut excluded = Vec::new();
        loop {
            let (bytes, digest) = match self.client.get_blob_excluding(id, &excluded).await {
                Ok(b) => b,
                Err(e) if e.exit_code() == crate::error::exit::NOT_FOUND => return Err(RepoError::Poisoned(id)),
                Err(e) => return Err(e.into()),
            };
            if self.reference_list_id(&bytes) == id {
                return Ok(());
            }
            match digest {
                Some(d) if excluded.len() < MAX_COPIES_TRIED => excluded.push(d),
                _ => return Err(RepoError::Poisoned(id)),
            }
        }
    }

    /// Stores raw bytes as chunks (uploading only what is missing); returns their ids and the blob bytes sent.
    pub async fn put_bytes(&self, data: &[u8]) -> Result<(Vec<ChunkId>, u64), RepoError> {
        let pieces: Vec<Vec<u8>> = self.chunker.chunks(data).collect::<Result<_, _>>().map_err(|e| RepoError::Io(e.to_string()))?;
        let ids: Vec<ChunkId> = pieces.iter().map(|p| self.ids().id(p)).collect();
        let present = self.client.has_blobs(&ids).await?;
        let mut sent = 0;
        for ((id, piece), present) in ids.iter().zip(&pieces).zip(present) {
            if !present {
                let blob = self.codec.seal(id, piece);
                sent += blob.len() as u64;
                self.put_blob(*id, Bytes::from(blob), false).await?;
            }
        }
        Ok((ids, sent))
    }

    /// Stores one blob; if the cluster already holds other bytes under its id, checks that they are this
    /// chunk ([`Repository::confirm_stored`]) instead of failing.
    pub async fn put_blob(&self, id: ChunkId, blob: Bytes, raw: bool) -> Result<(), RepoError> {
        match self.client.put_blob(id, blob).await {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => self.confirm_stored(id, raw).await,
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a tree; returns the chunks that hold it and the blob bytes sent.
    pub async fn write_tree(&self, tree: &Tree) -> Result<(Vec<ChunkId>, u64), RepoError> {
        self.put_bytes(&tree.encode()).await
    }

    /// Reads a tree from its chunks.
    pub async fn read_tree(&self, ids: &[ChunkId]) -> Result<Tree, RepoError> {
        let mut bytes = Vec::new();
        for id in ids {
            bytes.extend(self.get_chunk(*id).await?);
        }
        Ok(Tree::decode(&bytes)?)
    }

    /// Every snapshot of the tenant, oldest first, with summaries opened.
    pub async fn snapshots(&self) -> Result<Vec<Snapshot>, RepoError> {
        let mut out = Vec::new();
        for record in self.client.list_snapshots().await? {
            let summary = SnapshotSummary::open(&self.master, &record.id, &record.summary)?;
            out.push(Snapshot { record, summary });
        }
        out.sort_by_key(|s| (s.summary.time_ms, s.record.id));
        Ok(out)
    }

    /// The snapshot named by `spec`: `latest`, or a unique prefix of its id.
    pub async fn find_snapshot(&self, spec: &str) -> Result<Snapshot, RepoError> {
        let all = self.snapshots().await?;
        if spec == "latest" {
            return all.into_iter().last().ok_or_else(|| RepoError::NoSnapshot(spec.into()));
        }
        let mut matches = all.into_iter().filter(|s| s.record.id.to_hex().starts_with(&spec.to_ascii_lowercase()));
        match (matches.next(), matches.next()) {
            (Some(s), None) => Ok(s),
            (Some(_), Some(_)) => Err(RepoError::Ambiguous(spec.into())),
            (None, _) => Err(RepoError::NoSnapshot(spec.into())),
        }
    }

    /// A fresh snapshot id.
    pub fn new_snapshot_id() -> SnapshotId {
        SnapshotId(rand::random())
    }
}

/// Most stored copies of one chunk id tried before giving up on it.
const MAX_COPIES_TRIED: usize = 4;

/// Whether the cluster refused a put because the chunk id already holds other bytes (which it kept).
pub fn is_conflict(e: &ClientError) -> bool {
    matches!(e, ClientError::Rpc(r) if r.code() == Some(strata_proto::ErrorCode::Conflict))
}

/// The default local key file for a profile: next to it, with the extension `.key`.
pub fn default_key_path(profile_path: &Path) -> PathBuf {
    profile_path.with_extension("key")
}

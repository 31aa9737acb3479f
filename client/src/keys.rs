//! The tenant's keys: a random master key, the keys derived from it, and the password-wrapped key file.
//!
//! The master key never leaves the client unwrapped. Every other key is derived from it with BLAKE3's key
//! derivation (a distinct context string per purpose), so one secret is all a machine needs. The key file holds
//! the master key encrypted with AES-256-GCM under a key stretched from the password with Argon2id; it is
//! kept locally and, as the same opaque bytes, in the cluster, so a new machine restores with the password
//! alone. Changing the password rewraps the same master key: no data is re-encrypted.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};

/// Format version of new key files. Version 2 repositories cut chunks with a per-tenant seed (so chunk
/// boundaries reveal nothing a node operator could match against known files); version 1 repositories keep
/// FastCDC's default table, so their chunks stay the same and nothing is uploaded again.
pub const KEY_FILE_VERSION: u32 = 2;
/// Key files of this version are still read (and keep their version when rewrapped).
const KEY_FILE_VERSION_1: u32 = 1;
/// Most memory a key file may ask Argon2 for: a key file comes from the cluster, and must not be able to make
/// the client allocate what it likes.
pub const MAX_KDF_MEMORY_KIB: u32 = 1 << 20;
/// Most passes a key file may ask for.
pub const MAX_KDF_ITERATIONS: u32 = 64;
/// Most lanes a key file may ask for.
pub const MAX_KDF_PARALLELISM: u32 = 16;

/// Associated data binding the wrapped key to its purpose and to the key file version (so a version 2 file
/// cannot be passed off as version 1, which would change how chunks are cut).
fn wrap_aad(version: u32) -> &'static [u8] {
    if version == KEY_FILE_VERSION_1 { b"strata key file v1" } else { b"strata key file v2" }
}

/// The tenant's master key. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        // Overwrite the key before the memory is reused.
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        MasterKey(rand::random())
    }

    /// A key from known bytes (tests, and unwrapping).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterKey(bytes)
    }

    /// The key for `purpose`, derived with BLAKE3 (`"chunk id"`, `"blob encryption"`, ...).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        blake3::derive_key(&format!("strata 2026-11 {purpose} key v1"), &self.0)
    }

    /// The tenant's chunker seed (for repositories whose key file is version 2 or later).
    pub fn chunker_seed(&self) -> u64 {
        u64::from_le_bytes(self.derive("chunker seed")[..8].try_into().expect("8 of 32 bytes")) | 1
    }
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// Defaults for interactive use: 64 MiB and 3 passes (about a third of a second on a laptop core).
    pub const DEFAULT: KdfParams = KdfParams { memory_kib: 64 * 1024, iterations: 3, parallelism: 1 };

    /// Cheap parameters for tests only.
    pub const FOR_TESTS: KdfParams = KdfParams { memory_kib: 256, iterations: 1, parallelism: 1 };
}

/// Why a key file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The password does not unlock the key file.
    #[error("wrong password")]
    WrongPassword,
    /// The key file is not one this build understands.
    #[error("invalid key file: {0}")]
    Invalid(String),
}

/// The master key wrapped with a password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// Format version.
    pub version: u32,
    /// Argon2id parameters.
    pub kdf: KdfParams,
    /// Argon2 salt (hex).
    pub salt: String,
    /// AES-GCM nonce (hex).
    pub nonce: String,
    /// The wrapped master key with its tag (hex).
    pub wrapped: String,
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFile").field("version", &self.version).field("kdf", &self.kdf).finish_non_exhaustive()
    }
}

fn stretch(password: &[u8], salt: &[u8], kdf: KdfParams) -> Result<LessSafeKey, KeyError> {
    if kdf.memory_kib > MAX_KDF_MEMORY_KIB || kdf.iterations > MAX_KDF_ITERATIONS || kdf.parallelism > MAX_KDF_PARALLELISM {
        return Err(KeyError::Invalid(format!(
            "the key file asks Argon2 for {} MiB, {} passes and {} lanes; this client allows at most {} MiB, {MAX_KDF_ITERATIONS} passes and {MAX_KDF_PARALLELISM} lanes",
            kdf.memory_kib / 1024,
            kdf.iterations,
            kdf.parallelism,
            MAX_KDF_MEMORY_KIB / 1024
        )));
    }
    let params = Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32))
        .map_err(|e| KeyError::Invalid(format!("Argon2 parameters: {e}")))?;
    let mut key = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password, salt, &mut key)
        .map_err(|e| KeyError::Invalid(format!("Argon2: {e}")))?;
    Ok(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("32-byte key")))
}

impl KeyFile {
    /// Wraps `master` with `password` in a key file of the current version.
    pub fn wrap(master: &MasterKey, password: &[u8], kdf: KdfParams) -> Result<KeyFile, KeyError> {
        Self::wrap_version(master, password, kdf, KEY_FILE_VERSION)
    }

    /// Wraps `master` with `password` in a key file of `version` (a rewrap keeps the repository's version).
    pub fn wrap_version(master: &MasterKey, password: &[u8], kdf: KdfParams, version: u32) -> Result<KeyFile, KeyError> {
        if version != KEY_FILE_VERSION && version != KEY_FILE_VERSION_1 {
            return Err(KeyError::Invalid(format!("key file version {version} is not supported")));
        }
        let salt: [u8; 16] = rand::random();
        let nonce: [u8; NONCE_LEN] = rand::random();
        let key = stretch(password, &salt, kdf)?;
        let mut wrapped = master.0.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(wrap_aad(version)), &mut wrapped)
            .expect("sealing 32 bytes");
        Ok(KeyFile { version, kdf, salt: hex::encode(salt), nonce: hex::encode(nonce), wrapped: hex::encode(wrapped) })
    }

    /// The seed this repository's chunker uses: 0 (FastCDC's own table) for version 1 repositories.
    pub fn chunker_seed(&self, master: &MasterKey) -> u64 {
        if self.version == KEY_FILE_VERSION_1 { 0 } else { master.chunker_seed() }
    }

    /// Unwraps the master key; [`KeyError::WrongPassword`] if the password does not fit.
    pub fn unwrap(&self, password: &[u8]) -> Result<MasterKey, KeyError> {
        if self.version != KEY_FILE_VERSION && self.version != KEY_FILE_VERSION_1 {
            return Err(KeyError::Invalid(format!(
                "key file version {} is not supported (this build reads {KEY_FILE_VERSION_1} and {KEY_FILE_VERSION})",
                self.version
            )));
        }
        let field = |name: &str, text: &str| hex::decode(text).map_err(|_| KeyError::Invalid(format!("field {name} is not hex")));
        let salt = field("salt", &self.salt)?;
        let nonce: [u8; NONCE_LEN] =
            field("nonce", &self.nonce)?.try_into().map_err(|_| KeyError::Invalid("nonce must be 12 bytes".into()))?;
        let mut wrapped = field("wrapped", &self.wrapped)?;
        if wrapped.len() != 32 + 16 {
            return Err(KeyError::Invalid("wrapped key must be 48 bytes".into()));
        }
        let key = stretch(password, &salt, self.kdf)?;
        let plain = key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(wrap_aad(self.version)), &mut wrapped)
            .map_err(|_| KeyError::WrongPassword)?;
        Ok(MasterKey(plain.try_into().expect("32 bytes after the tag")))
    }

    /// Text form (TOML) for files and for the cluster copy.
    pub fn to_text(&self) -> String {
        toml::to_string(self).expect("key file serialises")
    }

    /// Parses the text form.
    pub fn from_text(text: &str) -> Result<KeyFile, KeyError> {
        toml::from_str(text).map_err(|e| KeyError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_and_wrong_password() {
        let master = MasterKey::generate();
        let file = KeyFile::wrap(&master, b"correct horse", KdfParams::FOR_TESTS).unwrap();
        assert_eq!(file.unwrap(b"correct horse").unwrap(), master);
        assert_eq!(file.unwrap(b"wrong horse"), Err(KeyError::WrongPassword));
        let text = file.to_text();
        assert!(!text.contains(&hex::encode(master.0)), "the key file must not contain the key");
        assert_eq!(KeyFile::from_text(&text).unwrap(), file);
    }

    #[test]
    fn rewrapping_keeps_the_same_master_key() {
        let master = MasterKey::generate();
        let old = KeyFile::wrap(&master, b"old", KdfParams::FOR_TESTS).unwrap();
        let new = KeyFile::wrap(&old.unwrap(b"old").unwrap(), b"new", KdfParams::FOR_TESTS).unwrap();
        assert_eq!(new.unwrap(b"new").unwrap().derive("chunk id"), master.derive("chunk id"));
        assert_eq!(new.unwrap(b"old"), Err(KeyError::WrongPassword));
    }

    #[test]
    fn damaged_files_are_invalid_not_panics() {
        let file = KeyFile::wrap(&MasterKey::generate(), b"p", KdfParams::FOR_TESTS).unwrap();
        let mut bad = file.clone();
        bad.version = 3;
        assert!(matches!(bad.unwrap(b"p"), Err(KeyError::Invalid(_))));
        let mut downgraded = file.clone();
        downgraded.version = 1;
        assert_eq!(downgraded.unwrap(b"p"), Err(KeyError::WrongPassword), "the version is bound to the wrapped key");
        let mut bad = file.clone();
        bad.nonce = "zz".into();
        assert!(matches!(bad.unwrap(b"p"), Err(KeyError::Invalid(_))));
        let mut bad = file;
        bad.wrapped.truncate(10);
        assert!(matches!(bad.unwrap(b"p"), Err(KeyError::Invalid(_))));
        assert!(KeyFile::from_text("not = [toml").is_err());
        assert!(format!("{:?}", MasterKey::generate()).contains("redacted"));
    }

    #[test]
    fn a_key_file_cannot_demand_unbounded_work() {
        let mut file = KeyFile::wrap(&MasterKey::generate(), b"p", KdfParams::FOR_TESTS).unwrap();
        file.kdf.memory_kib = 64 << 20;
        let e = file.unwrap(b"p").unwrap_err();
        assert!(matches!(&e, KeyError::Invalid(m) if m.contains("65536 MiB")), "{e:?}");
        file.kdf = KdfParams { iterations: 10_000, ..KdfParams::FOR_TESTS };
        assert!(matches!(file.unwrap(b"p"), Err(KeyError::Invalid(_))));
    }

    #[test]
    fn version_1_repositories_keep_their_chunker_and_version() {
        let master = MasterKey::generate();
        let v1 = KeyFile::wrap_version(&master, b"p", KdfParams::FOR_TESTS, 1).unwrap();
        assert_eq!(v1.unwrap(b"p").unwrap(), master);
        assert_eq!(v1.chunker_seed(&master), 0, "old repositories cut chunks as before");
        let v2 = KeyFile::wrap(&master, b"p", KdfParams::FOR_TESTS).unwrap();
        assert_ne!(v2.chunker_seed(&master), 0);
        assert_ne!(master.chunker_seed(), MasterKey::generate().chunker_seed(), "each tenant cuts its own way");
    }

    #[test]
    fn derived_keys_differ_by_purpose() {
        let m = MasterKey::from_bytes([1; 32]);
        assert_ne!(m.derive("chunk id"), m.derive("blob encryption"));
    }
}

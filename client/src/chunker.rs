//! Content-defined chunking with FastCDC (2020): about 512 KiB minimum, 1 MiB average, 8 MiB maximum.
//!
//! Cut points depend on content, so an insertion in the middle of a large file changes only the chunks
//! around it, and the rest deduplicate. Files below the minimum are one chunk. Reading is streamed: at most
//! one maximum-size chunk is buffered per file being read.

use std::io::Read;

/// Smallest chunk (except a file's last).
pub const MIN_CHUNK: usize = 512 << 10;
/// Target average chunk.
pub const AVG_CHUNK: usize = 1 << 20;
/// Largest chunk.
pub const MAX_CHUNK: usize = 8 << 20;

/// Splits a stream into chunks; yields each chunk's bytes.
pub fn chunks<R: Read>(reader: R) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
    fastcdc::v2020::StreamCDC::new(reader, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK).map(|r| {
        r.map(|c| c.data).map_err(|e| match e {
            fastcdc::v2020::Error::IoError(io) => io,
            other => std::io::Error::other(other.to_string()),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let mut h = blake3::Hasher::new();
        h.update(&seed.to_le_bytes());
        h.finalize_xof().fill(&mut out);
        out
    }

    #[test]
    fn sizes_stay_in_bounds_and_bytes_are_preserved() {
        let input = data(20 << 20, 1);
        let out: Vec<Vec<u8>> = chunks(&input[..]).collect::<Result<_, _>>().unwrap();
        assert_eq!(out.concat(), input);
        for c in &out[..out.len() - 1] {
            assert!(c.len() >= MIN_CHUNK && c.len() <= MAX_CHUNK, "{}", c.len());
        }
        let small: Vec<Vec<u8>> = chunks(&b"tiny"[..]).collect::<Result<_, _>>().unwrap();
        assert_eq!(small, vec![b"tiny".to_vec()]);
        assert_eq!(chunks(&b""[..]).count(), 0);
    }

    #[test]
    fn an_insertion_changes_only_nearby_chunks() {
        let base = data(16 << 20, 2);
        let mut edited = base[..7 << 20].to_vec();
        edited.extend_from_slice(b"inserted bytes shift everything after them");
        edited.extend_from_slice(&base[7 << 20..]);
        let a: std::collections::BTreeSet<Vec<u8>> = chunks(&base[..]).map(|c| c.unwrap()).collect();
        let b: Vec<Vec<u8>> = chunks(&edited[..]).map(|c| c.unwrap()).collect();
        let fresh = b.iter().filter(|c| !a.contains(*c)).count();
        assert!(fresh <= 2, "{fresh} of {} chunks changed after one insertion", b.len());
    }
}

//! Content-defined chunking with FastCDC (2020): about 512 KiB minimum, 1 MiB average, 8 MiB maximum.
//!
//! Cut points depend on content, so an insertion in the middle of a large file changes only the chunks
//! around it, and the rest deduplicate. Files below the minimum are one chunk. Reading is streamed through
//! a buffer that grows only as far as the input needs (up to two maximum-size chunks), so the small files
//! that make up most of a home directory cost a buffer of their own size. The cut points are exactly those
//! of `fastcdc::v2020` with these sizes and its default normalisation: they are part of what makes chunk ids
//! stable across versions, which deduplication relies on.
//!
//! A repository's [`Chunker`] XORs its gear table with a seed derived from the tenant's key (repositories
//! created since key file version 2; older ones keep seed 0, FastCDC's own table, so their chunks stay the
//! same). With the default table, where a file is cut depends only on its contents, so whoever sees chunk
//! sizes (a node operator) could tell whether a tenant stores a known file; with a secret seed it cannot.

use std::io::Read;

use fastcdc::v2020::{FastCDC, Normalization};

/// Smallest chunk (except a file's last).
pub const MIN_CHUNK: usize = 512 << 10;
/// Target average chunk.
pub const AVG_CHUNK: usize = 1 << 20;
/// Largest chunk.
pub const MAX_CHUNK: usize = 8 << 20;

/// Splits a stream into chunks with FastCDC's own gear table (seed 0); yields each chunk's bytes.
pub fn chunks<R: Read>(reader: R) -> Chunks<R> {
    Chunker::default().chunks(reader)
}

/// A content-defined chunker with a repository's seed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Chunker {
    seed: u64,
}

impl Chunker {
    /// A chunker whose gear table is XORed with `seed` (0: FastCDC's own table).
    pub fn with_seed(seed: u64) -> Self {
        Chunker { seed }
    }

    /// Splits a stream into chunks; yields each chunk's bytes.
    pub fn chunks<R: Read>(&self, reader: R) -> Chunks<R> {
        self.chunks_expecting(reader, 0)
    }

    /// [`Chunker::chunks`] for a stream expected to hold `len` bytes (a file's size): the buffer is allocated
    /// once at the size it will need instead of growing by doubling. Any length is still handled correctly.
    pub fn chunks_expecting<R: Read>(&self, reader: R, len: u64) -> Chunks<R> {
        let capacity = len.min(2 * MAX_CHUNK as u64) as usize;
        Chunks { reader, buf: Vec::with_capacity(capacity), start: 0, eof: false, seed: self.seed }
    }
}

/// The chunks of a stream, in order; an error ends the iteration.
pub struct Chunks<R> {
    seed: u64,
    reader: R,
    /// Bytes read and not yet returned start at `start`.
    buf: Vec<u8>,
    start: usize,
    eof: bool,
}

impl<R: Read> Chunks<R> {
    /// Tops the buffer up so that a whole maximum-size chunk is available (or the stream has ended). Bytes
    /// already returned are dropped first, so each byte is moved at most about once.
    fn fill(&mut self) -> std::io::Result<()> {
        if self.eof || self.buf.len() - self.start >= MAX_CHUNK {
            return Ok(());
        }
        self.buf.drain(..self.start);
        self.start = 0;
        let want = (2 * MAX_CHUNK - self.buf.len()) as u64;
        let got = (&mut self.reader).take(want).read_to_end(&mut self.buf)?;
        self.eof = (got as u64) < want;
        Ok(())
    }
}

impl<R: Read> Iterator for Chunks<R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Err(e) = self.fill() {
            // Nothing after a read error is trustworthy: end here.
            self.eof = true;
            self.buf.clear();
            self.start = 0;
            return Some(Err(e));
        }
        let rest = &self.buf[self.start..];
        if rest.is_empty() {
            return None;
        }
        // FastCDC looks at most MAX_CHUNK bytes ahead, and `fill` provides that many unless the stream ended.
        let len = FastCDC::with_level_and_seed(rest, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK, Normalization::Level1, self.seed)
            .next()
            .map_or(rest.len(), |c| c.length);
        let chunk = rest[..len].to_vec();
        self.start += len;
        Some(Ok(chunk))
    }
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
    fn cut_points_are_those_of_the_fastcdc_stream_chunker() {
        // Chunk ids of existing snapshots depend on these cuts: they must never drift.
        for (len, seed) in [(0, 3), (100, 4), (MIN_CHUNK, 5), (MIN_CHUNK + 1, 6), (3 * MAX_CHUNK + 12345, 7), (40 << 20, 8)] {
            let input = data(len, seed);
            let ours: Vec<usize> = chunks(&input[..]).map(|c| c.unwrap().len()).collect();
            let hinted: Vec<usize> = Chunker::default().chunks_expecting(&input[..], len as u64 / 2).map(|c| c.unwrap().len()).collect();
            assert_eq!(ours, hinted, "a wrong size hint changed the cuts");
            let reference: Vec<usize> =
                fastcdc::v2020::StreamCDC::new(&input[..], MIN_CHUNK, AVG_CHUNK, MAX_CHUNK).map(|c| c.unwrap().length).collect();
            assert_eq!(ours, reference, "input of {len} bytes");
        }
        // Long zero runs force maximum-size chunks.
        let zeros = vec![0u8; 5 * MAX_CHUNK + 7];
        let ours: Vec<usize> = chunks(&zeros[..]).map(|c| c.unwrap().len()).collect();
        let reference: Vec<usize> =
            fastcdc::v2020::StreamCDC::new(&zeros[..], MIN_CHUNK, AVG_CHUNK, MAX_CHUNK).map(|c| c.unwrap().length).collect();
        assert_eq!(ours, reference);
    }

    #[test]
    fn a_read_error_is_reported_once_and_ends_the_chunks() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other("disk on fire"));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(1);
                self.0 -= n;
                Ok(n)
            }
        }
        let results: Vec<_> = Chunker::default().chunks_expecting(Failing(100), 100).collect();
        assert_eq!(results.len(), 1);
        assert!(results[0].as_ref().is_err_and(|e| e.to_string().contains("disk on fire")));
    }

    #[test]
    fn a_seed_moves_the_cut_points_and_matches_fastcdc_with_that_seed() {
        let input = data(24 << 20, 3);
        let seeded = Chunker::with_seed(0x5eed_5eed_5eed_5eed);
        let ours: Vec<usize> = seeded.chunks(&input[..]).map(|c| c.unwrap().len()).collect();
        let reference: Vec<usize> = fastcdc::v2020::StreamCDC::with_level_and_seed(
            &input[..],
            MIN_CHUNK,
            AVG_CHUNK,
            MAX_CHUNK,
            Normalization::Level1,
            0x5eed_5eed_5eed_5eed,
        )
        .map(|c| c.unwrap().length)
        .collect();
        assert_eq!(ours, reference);
        let unseeded: Vec<usize> = chunks(&input[..]).map(|c| c.unwrap().len()).collect();
        assert_ne!(ours, unseeded, "another seed cuts elsewhere, so chunk sizes do not identify a known file");
        assert_eq!(ours.iter().sum::<usize>(), input.len());
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

//! Every stage of the backup pipeline, through Strata's own code and through the library alone, on one core.
//!
//! Stages: FastCDC chunking, keyed BLAKE3 chunk ids, zstd level 3, AES-256-GCM, Reed-Solomon encode and
//! decode (two data shards lost) for the default 4+2 profile and for 8+3, then the client's whole pipeline
//! (chunk, id, compress, encrypt) on in-memory data. `bench/stage_table.py` turns criterion's results into
//! a table of each Strata path as a fraction of its library's speed and of the pipeline as a fraction of its
//! slowest stage.
//!
//! Data: "mixed" is half text-like lines (compresses about 3x) and half random bytes, in 64 KiB runs, the
//! shape of a home directory's documents; chunking and hashing do not depend on content.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use reed_solomon_erasure::galois_8::ReedSolomon;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use strata_client::blob::BlobCodec;
use strata_client::chunker::{self, AVG_CHUNK, MAX_CHUNK, MIN_CHUNK};
use strata_client::keys::MasterKey;
use strata_node::erasure::Codecs;
use strata_proto::EcProfile;

const MIB: usize = 1 << 20;
/// Input of the chunking and pipeline benchmarks.
const STREAM: usize = 64 * MIB;
/// One chunk, the average size.
const CHUNK: usize = AVG_CHUNK;

/// Deterministic mixed data: 64 KiB runs, alternately text-like and random.
fn mixed(len: usize) -> Vec<u8> {
    let words: Vec<&[u8]> = [&b"backup "[..], b"chunk ", b"the ", b"restore ", b"of ", b"node ", b"value ", b"=", b";\n", b"    "].to_vec();
    let mut out = Vec::with_capacity(len);
    let mut xof = blake3::Hasher::new().update(b"strata stage benchmark").finalize_xof();
    let mut run = 0usize;
    while out.len() < len {
        let end = (out.len() + 64 * 1024).min(len);
        if run.is_multiple_of(2) {
            let mut b = vec![0u8; end - out.len()];
            xof.fill(&mut b);
            out.extend_from_slice(&b);
        } else {
            let mut pick = [0u8; 1];
            while out.len() < end {
                xof.fill(&mut pick);
                let w = words[pick[0] as usize % words.len()];
                out.extend_from_slice(&w[..w.len().min(end - out.len())]);
            }
        }
        run += 1;
    }
    out
}

fn chunking(c: &mut Criterion, data: &[u8]) {
    let mut g = c.benchmark_group("chunking");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("strata", |b| b.iter(|| chunker::chunks(black_box(data)).map(|c| c.map(|c| c.len()).unwrap_or(0)).sum::<usize>()));
    g.bench_function("library", |b| {
        b.iter(|| fastcdc::v2020::FastCDC::new(black_box(data), MIN_CHUNK, AVG_CHUNK, MAX_CHUNK).map(|c| c.length).sum::<usize>())
    });
    g.finish();
}

fn hashing(c: &mut Criterion, codec: &BlobCodec, chunk: &[u8]) {
    let key = [7u8; 32];
    let mut g = c.benchmark_group("chunk_id");
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    g.bench_function("strata", |b| b.iter(|| codec.ids().id(black_box(chunk))));
    g.bench_function("library", |b| b.iter(|| blake3::keyed_hash(&key, black_box(chunk))));
    g.finish();
}

fn compression(c: &mut Criterion, codec: &BlobCodec, chunk: &[u8]) {
    let mut g = c.benchmark_group("zstd");
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    g.bench_function("strata", |b| b.iter(|| codec.compress(black_box(chunk))));
    g.bench_function("library", |b| b.iter(|| zstd::bulk::compress(black_box(chunk), strata_client::repo::ZSTD_LEVEL)));
    g.finish();
}

fn encryption(c: &mut Criterion, chunk: &[u8]) {
    // Strata's sealing with compression off is the AEAD path alone (plus the nonce derivation and copy).
    let plain = BlobCodec::new(&MasterKey::from_bytes([3u8; 32]), 0);
    let id = plain.ids().id(chunk);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[9u8; 32]).expect("32-byte key"));
    let mut g = c.benchmark_group("aead");
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    g.bench_function("strata", |b| b.iter(|| plain.seal(&id, black_box(chunk))));
    let mut buf = chunk.to_vec();
    g.bench_function("library", |b| {
        b.iter(|| key.seal_in_place_separate_tag(Nonce::assume_unique_for_key([1u8; 12]), Aad::from(&id.0), black_box(&mut buf[..])))
    });
    g.finish();
}

fn erasure(c: &mut Criterion, blob: &[u8]) {
    let codecs = Codecs::default();
    for profile in [EcProfile::DEFAULT, EcProfile { data_shards: 8, parity_shards: 3 }] {
        let (k, m) = (usize::from(profile.data_shards), usize::from(profile.parity_shards));
        let rs = ReedSolomon::new(k, m).expect("valid profile");
        let mut g = c.benchmark_group(format!("rs_encode_{k}+{m}"));
        g.throughput(Throughput::Bytes(blob.len() as u64));
        g.bench_function("strata", |b| b.iter(|| codecs.encode(profile, black_box(blob)).expect("encodes")));
        let mut shards = codecs.encode(profile, blob).expect("encodes");
        g.bench_function("library", |b| b.iter(|| rs.encode(black_box(&mut shards)).expect("encodes")));
        g.finish();

        // Decoding with the first two data shards lost: the case that needs the arithmetic.
        let full = codecs.encode(profile, blob).expect("encodes");
        let damaged = || -> Vec<Option<Vec<u8>>> { full.iter().enumerate().map(|(i, s)| (i >= 2).then(|| s.clone())).collect() };
        let mut g = c.benchmark_group(format!("rs_decode_{k}+{m}"));
        g.throughput(Throughput::Bytes(blob.len() as u64));
        g.bench_function("strata", |b| {
            b.iter_batched(damaged, |s| codecs.decode(profile, blob.len() as u64, s).expect("decodes"), criterion::BatchSize::LargeInput)
        });
        g.bench_function("library", |b| {
            b.iter_batched(damaged, |mut s| rs.reconstruct_data(&mut s).expect("decodes"), criterion::BatchSize::LargeInput)
        });
        g.finish();
    }
}

fn pipeline(c: &mut Criterion, codec: &BlobCodec, data: &[u8]) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("strata", |b| {
        b.iter(|| {
            let mut sealed = 0usize;
            for chunk in chunker::chunks(black_box(data)) {
                let chunk = chunk.expect("in-memory read");
                let id = codec.ids().id(&chunk);
                sealed += codec.seal(&id, &chunk).len();
            }
            sealed
        })
    });
    g.finish();
}

fn stages(c: &mut Criterion) {
    let data = mixed(STREAM);
    let chunk = &data[..CHUNK];
    let codec = BlobCodec::new(&MasterKey::from_bytes([3u8; 32]), strata_client::repo::ZSTD_LEVEL);
    chunking(c, &data);
    hashing(c, &codec, chunk);
    compression(c, &codec, chunk);
    encryption(c, chunk);
    erasure(c, chunk);
    pipeline(c, &codec, &data);
}

criterion_group!(benches, stages);
criterion_main!(benches);

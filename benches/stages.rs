//! Throughput of each backup stage and of the whole pipeline, in bytes per second, so the
//! pipeline can be compared with its slowest stage (the machine's limit).
//!
//! `cargo bench --bench stages`; `scripts/bench-pipeline.sh` prints the pipeline's share of the
//! slowest stage.

use std::sync::Arc;

use cairn::backend::MemBackend;
use cairn::backup::{backup, BackupOptions, NoProgress};
use cairn::format::chunker::{Chunker, ChunkerParams};
use cairn::format::crypto::{KdfParams, MasterKeys, ObjectKind};
use cairn::format::pack::{seal_blob, BlobKind, PackWriter};
use cairn::format::{compress_body, Compression};
use cairn::repo::InitOptions;
use cairn::Repository;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const MIB: usize = 1 << 20;

/// Deterministic data: a third random, the rest repeated text (like a home directory).
fn mixed(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    let text: Vec<u8> = (0..2000)
        .flat_map(|i| format!("line {i} of a document that compresses\n").into_bytes())
        .collect();
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        for _ in 0..4096 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            out.push(s as u8);
        }
        out.extend_from_slice(&text[..8192.min(text.len())]);
    }
    out.truncate(len);
    out
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

fn stages(c: &mut Criterion) {
    let keys = MasterKeys::generate().expect("keys");
    let data = mixed(16 * MIB, 1);
    let chunk = &data[..MIB];

    let mut g = c.benchmark_group("stage");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("chunker (FastCDC, 16 MiB)", |b| {
        b.iter(|| {
            Chunker::new(&data[..], ChunkerParams::default(), 7)
                .map(|c| c.map(|v| v.len()).unwrap_or(0))
                .sum::<usize>()
        })
    });
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    g.bench_function("keyed BLAKE3 id (1 MiB)", |b| {
        b.iter(|| keys.chunk_id(chunk))
    });
    g.bench_function("seal XChaCha20-Poly1305 (1 MiB)", |b| {
        b.iter(|| {
            keys.seal(ObjectKind::DataBlob, &[0; 32], chunk)
                .expect("seal")
        })
    });
    let sealed = keys
        .seal(ObjectKind::DataBlob, &[0; 32], chunk)
        .expect("seal");
    g.bench_function("open XChaCha20-Poly1305 (1 MiB)", |b| {
        b.iter(|| {
            keys.open(ObjectKind::DataBlob, &[0; 32], &sealed)
                .expect("open")
        })
    });
    for level in [1, 3, 9] {
        g.bench_function(format!("zstd level {level} (1 MiB mixed)"), |b| {
            b.iter(|| compress_body(chunk, Compression::Zstd(level)))
        });
    }
    let media = random(MIB, 9);
    g.bench_function("auto compression on incompressible data (1 MiB)", |b| {
        b.iter(|| compress_body(&media, Compression::Auto))
    });
    let blobs: Vec<(cairn::format::id::BlobId, Vec<u8>)> = (0..32)
        .map(|i| {
            let plain = &data[i * 512 * 1024..(i + 1) * 512 * 1024];
            let id = keys.chunk_id(plain);
            (
                id,
                seal_blob(&keys, BlobKind::Data, &id, plain, Compression::Off).expect("seal"),
            )
        })
        .collect();
    g.throughput(Throughput::Bytes(
        blobs.iter().map(|b| b.1.len() as u64).sum(),
    ));
    g.bench_function("pack writing (32 sealed blobs, header, hash)", |b| {
        b.iter(|| {
            let mut w = PackWriter::new();
            for (id, s) in &blobs {
                w.add(BlobKind::Data, *id, s, s.len() as u32).expect("add");
            }
            w.finish(&keys, 0).expect("finish")
        })
    });
    g.finish();
}

fn pipeline(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let total = 64 * MIB;
    for i in 0..16 {
        std::fs::write(src.join(format!("big{i}")), mixed(total / 32, i)).expect("write");
    }
    for i in 0..2048 {
        std::fs::write(
            src.join(format!("small{i}")),
            mixed(total / 2 / 2048, 100 + i),
        )
        .expect("write");
    }
    let mut g = c.benchmark_group("pipeline");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function(
        "backup 64 MiB (16 large + 2048 small files) into memory",
        |b| {
            b.iter_batched(
                || {
                    let opts = InitOptions {
                        kdf: KdfParams {
                            m_cost_kib: KdfParams::MIN_M_COST_KIB,
                            t_cost: 1,
                            p_cost: 1,
                        },
                        ..InitOptions::default()
                    };
                    let mut repo =
                        Repository::init(Arc::new(MemBackend::new()), b"pw", &opts).expect("init");
                    repo.load_index().expect("index");
                    repo
                },
                |mut repo| {
                    let opts = BackupOptions {
                        paths: vec![src.clone()],
                        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
                        ..BackupOptions::default()
                    };
                    backup(&mut repo, &opts, &NoProgress).expect("backup")
                },
                BatchSize::PerIteration,
            )
        },
    );
    g.finish();
}

criterion_group!(benches, stages, pipeline);
criterion_main!(benches);

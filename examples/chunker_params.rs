//! Measures what the chunker's min/avg/max cost and save: dedup after a small mutation against
//! the number of index entries. `scripts/chunker-params.sh` runs it; repo-format.md §5.1 holds
//! the results.
//!
//! Usage: chunker_params DIR [MAX_BYTES]
//! Reads regular files under DIR (sorted, up to MAX_BYTES, default 512 MiB) as version 1, makes
//! version 2 by mutating 2% of the files (a 1 KiB insertion near the start, a 4 KiB overwrite in
//! the middle), and reports for each parameter set: chunks, unique stored bytes of v1, bytes
//! added by v2, and the index size those chunks need.

#![allow(clippy::disallowed_macros)] // an example prints to a terminal; a panic on a closed pipe is acceptable here

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use fastcdc::v2020::{FastCDC, Normalization};

/// Bytes one index entry costs on disk (MessagePack `[type, id, offset, length, raw_length]`).
const INDEX_ENTRY_BYTES: u64 = 50;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            files(&p, out);
        } else if m.is_file() {
            out.push(p);
        }
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn chunk_all(
    data: &[Vec<u8>],
    min: u32,
    avg: u32,
    max: u32,
    seen: &mut HashSet<[u8; 32]>,
) -> (u64, u64) {
    let mut chunks = 0;
    let mut added = 0;
    for d in data {
        for c in FastCDC::with_level_and_seed(d, min, avg, max, Normalization::Level1, 0x5eed) {
            chunks += 1;
            let h = *blake3::hash(&d[c.offset..c.offset + c.length]).as_bytes();
            if seen.insert(h) {
                added += c.length as u64;
            }
        }
    }
    (chunks, added)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let limit: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(512 << 20);
    let mut paths = Vec::new();
    files(&dir, &mut paths);
    let mut v1 = Vec::new();
    let mut total = 0u64;
    for p in paths {
        if total >= limit {
            break;
        }
        if let Ok(d) = std::fs::read(&p) {
            total += d.len() as u64;
            v1.push(d);
        }
    }
    let mut rng = 0x1234_5678_9abc_def1u64;
    // A 256 MiB disk-image-like file: random 4 KiB blocks, a third of them zero.
    let image: Vec<u8> = (0..(256usize << 20) / 8)
        .flat_map(|i| {
            let v = xorshift(&mut rng);
            (if (i / 512) % 3 == 0 { 0 } else { v }).to_le_bytes()
        })
        .collect();
    total += image.len() as u64;
    v1.push(image);
    let mut v2 = v1.clone();
    let mut mutated = 0;
    let image_len = v2[v2.len() - 1].len();
    {
        // The image: a 1 KiB insertion near its start and 8 scattered 4 KiB overwrites.
        let img = v2.last_mut().expect("image pushed above");
        let ins: Vec<u8> = (0..1024).map(|_| xorshift(&mut rng) as u8).collect();
        img.splice(4096..4096, ins);
        for k in 1..=8 {
            let at = image_len / 9 * k;
            for b in img.iter_mut().skip(at).take(4096) {
                *b = xorshift(&mut rng) as u8;
            }
        }
    }
    let n = v2.len() - 1;
    for f in v2.iter_mut().take(n) {
        if xorshift(&mut rng) % 100 < 2 && !f.is_empty() {
            mutated += 1;
            let at = (xorshift(&mut rng) as usize) % (f.len().min(4096) + 1);
            let ins: Vec<u8> = (0..1024).map(|_| xorshift(&mut rng) as u8).collect();
            f.splice(at..at, ins);
            let mid = f.len() / 2;
            for b in f.iter_mut().skip(mid).take(4096) {
                *b = xorshift(&mut rng) as u8;
            }
        }
    }
    println!(
        "corpus: {} files, {:.1} MiB (incl. a 256 MiB image with a 1 KiB insertion and 8 4-KiB overwrites); mutated {} other files (1 KiB insertion near the start, 4 KiB overwrite mid-file)",
        v1.len(),
        total as f64 / 1048576.0,
        mutated
    );
    println!();
    println!("| min / avg / max | chunks (v1) | stored v1 MiB | added by v2 MiB | index entries v1+v2 | index KiB |");
    println!("|---|---|---|---|---|---|");
    for (min, avg, max) in [
        (16u32 << 10, 64u32 << 10, 256u32 << 10),
        (64 << 10, 256 << 10, 1 << 20),
        (128 << 10, 512 << 10, 2 << 20),
        (256 << 10, 1 << 20, 4 << 20),
        (512 << 10, 1 << 20, 8 << 20),
        (512 << 10, 2 << 20, 8 << 20),
    ] {
        let mut seen = HashSet::new();
        let (c1, s1) = chunk_all(&v1, min, avg, max, &mut seen);
        let (_, s2) = chunk_all(&v2, min, avg, max, &mut seen);
        let entries = seen.len() as u64;
        println!(
            "| {} / {} / {} KiB | {} | {:.1} | {:.2} | {} | {} |",
            min >> 10,
            avg >> 10,
            max >> 10,
            c1,
            s1 as f64 / 1048576.0,
            s2 as f64 / 1048576.0,
            entries,
            entries * INDEX_ENTRY_BYTES / 1024
        );
    }
}

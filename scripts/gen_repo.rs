//! Writes a valid cairn repository holding N small data blobs, quickly and without source
//! files: the fixture of the scale benchmark (scripts/bench-scale.py, issue 19).
//!
//! Usage: `cargo run --release --example gen-repo -- --repo DIR --blobs N
//! [--password-env VAR] [--threads T] [--fast-kdf]`
//!
//! The password is read from the environment variable VAR (default `CAIRN_PASSWORD`). DIR must
//! not exist or be empty. `--fast-kdf` gives the key file the cheapest Argon2id parameters a key
//! file may have (tests); without it the library's default is used, so that opening the
//! repository costs what it costs a user.
//!
//! What it writes, all through the library (the same calls backup makes):
//! - data blobs `0..N`: 32 to 100 bytes each, deterministic pseudo-random content that starts
//!   with the blob's number (so every blob is distinct), sealed with `seal_blob` into packs of
//!   the repository's size by `--threads` workers, each pack stored with `put_pack`;
//! - files of 100 chunks, directories of 100 files (one tree blob each, the same size at every
//!   N, so what a command holds per tree does not pass for growth with N), per snapshot a
//!   directory `/cairn-gen/qK` listing its directories;
//! - index files through `save_index_files`, every pack named before any snapshot;
//! - five snapshots: `q0`..`q3` each reference a quarter of 99 % of the blobs, and one older
//!   snapshot of path `/cairn-gen/q3` references the last 1 % that no other snapshot uses, so
//!   `forget --keep-last 1 --prune` (grouping by host and paths) removes it and frees its data.

#![allow(clippy::disallowed_macros)] // a tool run from a terminal; a panic on a closed pipe is acceptable here

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cairn::backend::{Backend, LocalBackend};
use cairn::format::crypto::{KdfParams, MasterKeys};
use cairn::format::id::TreeId;
use cairn::format::index::IndexPack;
use cairn::format::pack::{seal_blob, BlobKind, FinishedPack, PackWriter};
use cairn::format::Compression;
use cairn::repo::{InitOptions, Repository};
use cairn::snapshot::tree::{ContentPart, Node, NodeKind, Timestamp, Tree};
use cairn::snapshot::{BackupMode, Snapshot, Summary, SNAPSHOT_VERSION};

/// Chunks (data blobs) per generated file.
pub const CHUNKS_PER_FILE: u64 = 100;
/// Files per generated directory (one tree blob).
pub const FILES_PER_DIR: u64 = 100;
/// The host every generated snapshot names.
pub const HOST: &str = "cairn-gen";
/// Index files are written after this many blobs' packs have been stored: bounds the entries
/// the generator holds (the library splits them into files of its own size).
const INDEX_FLUSH_BLOBS: usize = 2_000_000;
/// Modification time of generated files and directories (2026-01-01T00:00:00Z).
const MTIME_S: i64 = 1_767_225_600;

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenOptions {
    /// The repository directory (must not exist or be empty).
    pub repo: PathBuf,
    /// Data blobs to store.
    pub blobs: u64,
    /// The repository's password.
    pub password: Vec<u8>,
    /// Worker threads sealing and storing packs.
    pub threads: usize,
    /// The cheapest Argon2id parameters instead of the default.
    pub fast_kdf: bool,
}

/// What was generated.
#[derive(Clone, Debug, Default)]
pub struct GenReport {
    /// Data blobs stored.
    pub blobs: u64,
    /// Tree blobs stored.
    pub trees: u64,
    /// Pack files stored (data and tree).
    pub packs: u64,
    /// Bytes of pack files stored.
    pub pack_bytes: u64,
    /// Index files written.
    pub index_files: u64,
    /// Snapshot ids, hex: `q0`..`q3`, then the extra one.
    pub snapshots: Vec<String>,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// One directory of files: blobs `start..end` of snapshot `snap`, directory number `dir`.
#[derive(Clone, Copy, Debug)]
struct Job {
    snap: usize,
    dir: u64,
    start: u64,
    end: u64,
}

enum Msg {
    /// Packs stored (durable), to be named in an index file.
    Packs(Vec<IndexPack>),
    /// A directory's tree blob is sealed into a tree pack of its worker.
    Dir { job: usize, tree: TreeId },
}

/// SplitMix64: a cheap, well-mixed function of the blob number.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Blob `i`'s plaintext: 32 to 100 bytes, its number first (so no two blobs are equal), then
/// pseudo-random bytes (incompressible, as `auto` compression finds them).
pub fn blob_content(i: u64, out: &mut Vec<u8>) {
    out.clear();
    let h = mix(i);
    let len = 32 + (h % 69) as usize;
    out.extend_from_slice(&i.to_le_bytes());
    let mut s = h | 1;
    while out.len() < len {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.truncate(len);
}

fn name(prefix: char, n: u64) -> Vec<u8> {
    format!("{prefix}{n:06}").into_bytes()
}

fn dir_node(name: Vec<u8>, subtree: TreeId) -> Node {
    let mut n = Node::new(name, NodeKind::Dir);
    n.mode = 0o755;
    n.mtime = Timestamp(MTIME_S, 0);
    n.ctime = n.mtime;
    n.subtree = Some(subtree);
    n
}

fn index_pack(p: &FinishedPack) -> IndexPack {
    IndexPack {
        id: p.id,
        size: p.bytes.len() as u64,
        blobs: p.entries.clone(),
    }
}

/// Seals a tree into `writer`; returns its id, and the pack once full (to be stored).
fn add_tree(
    keys: &MasterKeys,
    compression: Compression,
    pack_size: usize,
    writer: &mut PackWriter,
    tree: &Tree,
) -> Result<(TreeId, Option<FinishedPack>), Error> {
    let plain = tree.encode()?;
    let id = keys.tree_id(&plain);
    let sealed = seal_blob(keys, BlobKind::Tree, &id, &plain, compression)?;
    writer.add(BlobKind::Tree, id, &sealed, plain.len() as u32)?;
    let full = if writer.is_full(pack_size) {
        Some(std::mem::take(writer).finish(keys, pack_size)?)
    } else {
        None
    };
    Ok((TreeId(id), full))
}

/// One worker: takes directories off `next` until none is left; seals their blobs and trees
/// into its own data and tree packs, stores each full pack and reports it.
fn work(
    repo: &Repository,
    jobs: &[Job],
    next: &AtomicUsize,
    tx: &mpsc::Sender<Msg>,
) -> Result<(), Error> {
    let keys = repo.keys().clone();
    let pack_size = repo.config().pack_size as usize;
    let compression = repo.compression();
    let mut data = PackWriter::new();
    let mut trees = PackWriter::new();
    let mut plain = Vec::with_capacity(128);
    let mut stored: Vec<IndexPack> = Vec::new();
    let store = |p: FinishedPack, stored: &mut Vec<IndexPack>| -> Result<(), Error> {
        repo.put_pack(&p)?;
        stored.push(index_pack(&p));
        Ok(())
    };
    loop {
        let j = next.fetch_add(1, Ordering::Relaxed);
        let Some(job) = jobs.get(j) else { break };
        let mut nodes = Vec::new();
        let mut file_no = 0;
        let mut start = job.start;
        while start < job.end {
            let end = (start + CHUNKS_PER_FILE).min(job.end);
            let mut content = Vec::with_capacity((end - start) as usize);
            for i in start..end {
                blob_content(i, &mut plain);
                let id = keys.chunk_id(&plain);
                // `auto` stores these raw anyway (random bytes do not compress); sealing them
                // raw directly skips a zstd attempt per blob and writes the same format.
                let sealed = seal_blob(&keys, BlobKind::Data, &id, &plain, Compression::Off)?;
                data.add(BlobKind::Data, id, &sealed, plain.len() as u32)?;
                if data.is_full(pack_size) {
                    store(
                        std::mem::take(&mut data).finish(&keys, pack_size)?,
                        &mut stored,
                    )?;
                }
                content.push(ContentPart(Some(id), plain.len() as u64));
            }
            let mut f = Node::new(name('f', file_no), NodeKind::File);
            f.mode = 0o644;
            f.mtime = Timestamp(MTIME_S, 0);
            f.ctime = f.mtime;
            f.inode = start / CHUNKS_PER_FILE + 1;
            f.size = content.iter().map(|p| p.1).sum();
            f.content = content;
            nodes.push(f);
            file_no += 1;
            start = end;
        }
        let (tree, full) = add_tree(&keys, compression, pack_size, &mut trees, &Tree { nodes })?;
        if let Some(p) = full {
            store(p, &mut stored)?;
        }
        if !stored.is_empty() {
            tx.send(Msg::Packs(std::mem::take(&mut stored)))?;
        }
        tx.send(Msg::Dir { job: j, tree })?;
    }
    for w in [data, trees] {
        if !w.is_empty() {
            store(w.finish(&keys, pack_size)?, &mut stored)?;
        }
    }
    if !stored.is_empty() {
        tx.send(Msg::Packs(stored))?;
    }
    Ok(())
}

/// The directories to generate: snapshots `q0`..`q3` share 99 % of the blobs, the fifth
/// (extra) snapshot has the rest; each snapshot's range is cut into directories of
/// [`FILES_PER_DIR`] × [`CHUNKS_PER_FILE`] blobs.
fn plan(blobs: u64) -> (Vec<Job>, [(u64, u64); 5]) {
    let extra = blobs / 100;
    let main = blobs - extra;
    let mut ranges = [(0, 0); 5];
    for (q, r) in ranges.iter_mut().take(4).enumerate() {
        let q = q as u64;
        *r = (main * q / 4, main * (q + 1) / 4);
    }
    ranges[4] = (main, blobs);
    let per_dir = FILES_PER_DIR * CHUNKS_PER_FILE;
    let mut jobs = Vec::new();
    for (snap, &(a, b)) in ranges.iter().enumerate() {
        let mut start = a;
        let mut dir = 0;
        while start < b {
            let end = (start + per_dir).min(b);
            jobs.push(Job {
                snap,
                dir,
                start,
                end,
            });
            start = end;
            dir += 1;
        }
    }
    (jobs, ranges)
}

/// Names `packs` in index files through a fresh handle: `save_index_files` also adds them to
/// the handle's in-memory index, and a handle kept for the whole run would hold all N blobs.
fn save_index(
    backend: &Arc<dyn Backend>,
    password: &[u8],
    packs: Vec<IndexPack>,
) -> Result<u64, Error> {
    if packs.is_empty() {
        return Ok(0);
    }
    let mut repo = Repository::open(backend.clone(), password)?;
    Ok(repo.save_index_files(packs, Vec::new())?.len() as u64)
}

/// Generates the repository (see the module's documentation).
pub fn generate(opts: &GenOptions, progress: bool) -> Result<GenReport, Error> {
    let began = Instant::now();
    let now_ns = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos())?;
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(opts.repo.clone()));
    let mut init = InitOptions {
        host: HOST.into(),
        now_ns,
        ..InitOptions::default()
    };
    if opts.fast_kdf {
        init.kdf = KdfParams {
            m_cost_kib: KdfParams::MIN_M_COST_KIB,
            t_cost: 1,
            p_cost: 1,
        };
    }
    // No lock is taken: the repository is new, and nothing uses it before this run ends.
    let repo = Repository::init(backend.clone(), &opts.password, &init)?;
    let keys = repo.keys().clone();
    let pack_size = repo.config().pack_size as usize;
    let compression = repo.compression();

    let (jobs, ranges) = plan(opts.blobs);
    let mut dir_trees: Vec<Option<TreeId>> = vec![None; jobs.len()];
    let mut report = GenReport {
        blobs: opts.blobs,
        ..GenReport::default()
    };
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<Msg>();
    let threads = opts.threads.max(1);
    std::thread::scope(|s| -> Result<(), Error> {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let tx = tx.clone();
                let (repo, jobs, next) = (&repo, &jobs, &next);
                s.spawn(move || work(repo, jobs, next, &tx))
            })
            .collect();
        drop(tx);
        let mut pending: Vec<IndexPack> = Vec::new();
        let mut pending_blobs = 0;
        let mut dirs_done = 0;
        let mut blobs_done = 0;
        // Ends when every worker has dropped its sender: finished, or failed.
        for msg in rx {
            match msg {
                Msg::Packs(packs) => {
                    for p in packs {
                        report.packs += 1;
                        report.pack_bytes += p.size;
                        pending_blobs += p.blobs.len();
                        pending.push(p);
                    }
                    if pending_blobs >= INDEX_FLUSH_BLOBS {
                        let packs = std::mem::take(&mut pending);
                        report.index_files += save_index(&backend, &opts.password, packs)?;
                        pending_blobs = 0;
                    }
                }
                Msg::Dir { job, tree } => {
                    dir_trees[job] = Some(tree);
                    dirs_done += 1;
                    blobs_done += jobs[job].end - jobs[job].start;
                    if progress {
                        eprintln!(
                            "gen-repo: {dirs_done}/{} directories, {blobs_done}/{} blobs, {:.1} s",
                            jobs.len(),
                            opts.blobs,
                            began.elapsed().as_secs_f64()
                        );
                    }
                }
            }
        }
        for h in handles {
            h.join().map_err(|_| "a worker thread panicked")??;
        }
        report.index_files += save_index(&backend, &opts.password, pending)?;
        Ok(())
    })?;
    report.trees = jobs.len() as u64;

    // The trees above the directories: /cairn-gen/qK for each snapshot, then the root.
    let mut writer = PackWriter::new();
    let mut upper: Vec<IndexPack> = Vec::new();
    let mut roots = Vec::new();
    for snap in 0..5 {
        let mut nodes = Vec::new();
        for (j, job) in jobs.iter().enumerate().filter(|(_, j)| j.snap == snap) {
            let tree = dir_trees[j].ok_or("a directory's tree is missing")?;
            nodes.push(dir_node(name('d', job.dir), tree));
        }
        let mut tree = Tree { nodes };
        // The extra snapshot backs up the same path as q3: one forget group.
        let q = snap.min(3);
        for n in [format!("q{q}").into_bytes(), b"cairn-gen".to_vec()] {
            let (id, full) = add_tree(&keys, compression, pack_size, &mut writer, &tree)?;
            if let Some(p) = full {
                repo.put_pack(&p)?;
                upper.push(index_pack(&p));
            }
            report.trees += 1;
            tree = Tree {
                nodes: vec![dir_node(n, id)],
            };
        }
        let (root, full) = add_tree(&keys, compression, pack_size, &mut writer, &tree)?;
        if let Some(p) = full {
            repo.put_pack(&p)?;
            upper.push(index_pack(&p));
        }
        report.trees += 1;
        roots.push((root, format!("/cairn-gen/q{q}")));
    }
    if !writer.is_empty() {
        let p = writer.finish(&keys, pack_size)?;
        repo.put_pack(&p)?;
        upper.push(index_pack(&p));
    }
    report.packs += upper.len() as u64;
    report.pack_bytes += upper.iter().map(|p| p.size).sum::<u64>();
    // Invariant (repo-format.md §10.2): every pack is named in a durable index file before a
    // snapshot references its blobs.
    report.index_files += save_index(&backend, &opts.password, upper)?;

    for (snap, (root, path)) in roots.into_iter().enumerate() {
        let (a, b) = ranges[snap];
        let files = (b - a).div_ceil(CHUNKS_PER_FILE);
        // The extra snapshot is the oldest, so keep-last 1 of its group keeps q3.
        let order = if snap == 4 { 0 } else { snap as i64 + 1 };
        let summary = Summary {
            files_new: files,
            dirs: jobs.iter().filter(|j| j.snap == snap).count() as u64 + 3,
            total_files: files,
            blobs_added: b - a,
            ..Summary::default()
        };
        let snapshot = Snapshot {
            version: SNAPSHOT_VERSION,
            time_ns: now_ns - (5 - order) * 60_000_000_000,
            tz_offset_s: 0,
            host: HOST.into(),
            user: "cairn-gen".into(),
            uid: 0,
            gid: 0,
            paths: vec![path],
            tags: vec!["generated".into()],
            tree: root,
            parent: None,
            mode: BackupMode::Full,
            program_version: env!("CARGO_PKG_VERSION").into(),
            summary,
            notes: Vec::new(),
            partial: false,
            original: None,
            copied_from: None,
        };
        report
            .snapshots
            .push(repo.save_snapshot(&snapshot)?.to_hex());
    }
    Ok(report)
}

fn usage() -> Error {
    "usage: gen-repo --repo DIR --blobs N [--password-env VAR] [--threads T] [--fast-kdf]".into()
}

fn main() -> Result<(), Error> {
    let mut repo = None;
    let mut blobs = None;
    let mut password_env = "CAIRN_PASSWORD".to_string();
    let mut threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut fast_kdf = false;
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        let a = a.to_str().ok_or_else(usage)?.to_string();
        let mut value = || args.next().ok_or_else(usage);
        match a.as_str() {
            "--repo" => repo = Some(PathBuf::from(value()?)),
            "--blobs" => blobs = Some(value()?.to_str().ok_or_else(usage)?.parse::<u64>()?),
            "--password-env" => password_env = value()?.to_str().ok_or_else(usage)?.into(),
            "--threads" => threads = value()?.to_str().ok_or_else(usage)?.parse()?,
            "--fast-kdf" => fast_kdf = true,
            _ => return Err(usage()),
        }
    }
    let (Some(repo), Some(blobs)) = (repo, blobs) else {
        return Err(usage());
    };
    let password = std::env::var_os(&password_env)
        .ok_or_else(|| format!("the password variable {password_env} is not set"))?;
    let opts = GenOptions {
        repo,
        blobs,
        password: std::os::unix::ffi::OsStrExt::as_bytes(password.as_os_str()).to_vec(),
        threads,
        fast_kdf,
    };
    let began = Instant::now();
    let r = generate(&opts, true)?;
    println!(
        "generated {} data blobs and {} trees in {} packs ({:.2} GiB), {} index files, \
         snapshots {} in {:.1} s at {}",
        r.blobs,
        r.trees,
        r.packs,
        r.pack_bytes as f64 / (1u64 << 30) as f64,
        r.index_files,
        r.snapshots.join(" "),
        began.elapsed().as_secs_f64(),
        opts.repo.display()
    );
    Ok(())
}

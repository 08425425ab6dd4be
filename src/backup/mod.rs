//! Backup: walk → (unchanged? reuse) → read → chunk → keyed id → one owner decides "new or
//! known" → compress + seal (worker threads) → pack → backend; trees assembled bottom-up;
//! commit writes packs, then the index, then the snapshot.
//!
//! Threads live only here: the walking thread reads, chunks, hashes and deduplicates (it is the
//! single owner of "is this blob new?", so no blob is stored twice by a race); `threads` workers
//! compress and seal; one packer thread fills packs and writes them to the backend.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::chunker::Chunker;
use crate::crypto::MasterKeys;
use crate::error::{Error, Result};
use crate::format::Compression;
use crate::id::{BlobId, SnapshotId, TreeId};
use crate::index::{IndexFile, IndexPack};
use crate::meta::{self, NameCache};
use crate::pack::{seal_blob, BlobKind, FinishedPack};
use crate::repo::Repository;
use crate::saver::{BlobSaver, Dedup, Known, Packs};
use crate::snapshot::{BackupMode, Snapshot, Summary, SNAPSHOT_VERSION};
use crate::tree::{ContentPart, Node, NodeKind, Tree};

/// What to back up and how.
#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    pub host: String,
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub tags: Vec<String>,
    /// Snapshot time (ns since epoch) and the local offset, seconds east of UTC.
    pub time_ns: i64,
    pub tz_offset_s: i32,
    pub mode: BackupMode,
    /// Compare against this snapshot instead of the one the mode chooses.
    pub parent: Option<SnapshotId>,
    /// Read every file even when the parent says it is unchanged.
    pub force: bool,
    pub ignore_ctime: bool,
    pub ignore_inode: bool,
    /// Compress-and-seal worker threads (≥ 1).
    pub threads: usize,
    /// Do everything but write to the repository.
    pub dry_run: bool,
    /// Set from outside (Ctrl-C) to stop at the next file; the backup then fails with
    /// [`Error::Interrupted`] and leaves no snapshot.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Save a resumable partial snapshot this often (and at Ctrl-C); None: only at Ctrl-C.
    pub checkpoint_every: Option<std::time::Duration>,
    /// What to leave out.
    pub exclude: Excludes,
}

/// What a backup leaves out (restic's options of the same names).
#[derive(Clone, Debug, Default)]
pub struct Excludes {
    /// `--exclude` / `--iexclude` / `--exclude-file` patterns.
    pub patterns: Option<crate::filter::Selection>,
    /// Skip directories holding a valid `CACHEDIR.TAG`.
    pub caches: bool,
    /// Skip directories holding a file of one of these names.
    pub if_present: Vec<String>,
    /// Skip files larger than this many bytes.
    pub larger_than: Option<u64>,
    /// Do not descend into other filesystems (mount points are kept, empty).
    pub one_file_system: bool,
    /// The repository's own directory, left out wherever the walk meets it (a backup of `/data`
    /// into `/data/repo`), whatever path leads there: compared by device and inode, not by
    /// name, so symlinks, bind mounts, relative paths and trailing slashes make no difference.
    pub repository: Option<DirId>,
}

/// A directory's identity: device and inode number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirId {
    pub dev: u64,
    pub ino: u64,
}

impl DirId {
    /// The directory at `path` (following symlinks, as the path given is meant).
    pub fn of(path: &Path) -> io::Result<DirId> {
        let m = fs::metadata(path)?;
        Ok(DirId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    fn is(&self, meta: &fs::Metadata) -> bool {
        meta.is_dir() && meta.dev() == self.dev && meta.ino() == self.ino
    }
}

/// The first bytes of a valid CACHEDIR.TAG (bford.info/cachedir).
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

impl Excludes {
    fn is_repository(&self, meta: &fs::Metadata) -> bool {
        self.repository.is_some_and(|r| r.is(meta))
    }

    fn excludes_path(&self, path: &Path) -> bool {
        self.patterns.as_ref().is_some_and(|p| !p.accepts(path))
    }

    /// Whether a directory's contents are left out because of a marker file in it.
    fn marks_dir(&self, dir: &Path) -> bool {
        if self.caches {
            let mut sig = [0u8; 43];
            if File::open(dir.join("CACHEDIR.TAG"))
                .and_then(|mut f| f.read_exact(&mut sig))
                .is_ok_and(|_| sig == CACHEDIR_SIGNATURE)
            {
                return true;
            }
        }
        self.if_present
            .iter()
            .any(|n| fs::symlink_metadata(dir.join(n)).is_ok())
    }
}

/// A source entry that could not be backed up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryError {
    pub path: PathBuf,
    pub error: String,
}

/// What happened.
#[derive(Debug)]
pub struct BackupOutcome {
    /// None for a dry run.
    pub snapshot_id: Option<SnapshotId>,
    pub snapshot: Snapshot,
    pub summary: Summary,
    pub errors: Vec<EntryError>,
    /// Where the walk met the repository's own directory and left it out
    /// ([`Excludes::repository`]).
    pub repository_left_out: Vec<PathBuf>,
}

/// Progress callbacks; the library draws nothing.
pub trait BackupProgress: Send + Sync {
    fn file_started(&self, _path: &Path) {}
    fn bytes_done(&self, _n: u64) {}
    fn file_done(&self, _size: u64) {}
    fn error(&self, _path: &Path, _error: &str) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl BackupProgress for NoProgress {}

/// Chunks and trees waiting for compression: ≤ 2 × threads × 2 MiB (max chunk; trees may be
/// larger). Measured on 57,000 small files: deeper queues are no faster, only larger.
const JOBS_PER_THREAD: usize = 2;
/// Sealed blobs waiting for the packer: ≤ 2 × threads × 2 MiB.
const SEALED_PER_THREAD: usize = 2;

struct Job {
    kind: BlobKind,
    id: BlobId,
    data: Vec<u8>,
}

struct Sealed {
    kind: BlobKind,
    id: BlobId,
    raw_len: u32,
    sealed: Vec<u8>,
}

/// Chooses the parent snapshot for `mode` among snapshots of the same host and paths.
pub fn choose_parent(
    snapshots: &[(SnapshotId, Snapshot)],
    host: &str,
    paths: &[String],
    mode: BackupMode,
) -> Option<SnapshotId> {
    let mut want: Vec<&String> = paths.iter().collect();
    want.sort();
    let same = |s: &Snapshot| {
        let mut have: Vec<&String> = s.paths.iter().collect();
        have.sort();
        s.host == host && have == want
    };
    snapshots
        .iter()
        .filter(|(_, s)| same(s))
        .filter(|(_, s)| match mode {
            // A partial snapshot (an interrupted backup) is where an incremental resumes.
            BackupMode::Incremental => true,
            BackupMode::Differential => s.mode == BackupMode::Full && !s.partial,
            BackupMode::Full => false,
        })
        .max_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)))
        .map(|(id, _)| *id)
}

/// The backed-up paths as a trie from `/`: inner nodes are ancestors, leaves are targets.
#[derive(Default)]
struct Trie {
    target: bool,
    children: BTreeMap<Vec<u8>, Trie>,
}

impl Trie {
    /// The paths to back up under `path`, in the order the walk reaches them.
    fn targets(&self, path: &Path) -> Vec<PathBuf> {
        if self.target {
            return vec![path.to_path_buf()];
        }
        let mut out = Vec::new();
        for (name, child) in &self.children {
            out.extend(child.targets(&path.join(OsStr::from_bytes(name))));
        }
        out
    }

    fn insert(&mut self, path: &Path) {
        let mut t = self;
        for c in path.components() {
            if let Component::Normal(n) = c {
                if t.target {
                    return; // an ancestor is already backed up whole
                }
                t = t.children.entry(n.as_bytes().to_vec()).or_default();
            }
        }
        t.target = true;
        t.children.clear();
    }
}

/// Runs one backup into `repo` (whose index must be loaded).
pub fn backup(
    repo: &mut Repository,
    opts: &BackupOptions,
    progress: &dyn BackupProgress,
) -> Result<BackupOutcome> {
    let start = Instant::now();
    if opts.paths.is_empty() {
        return Err(Error::InvalidInput(
            "nothing to back up: give at least one path".into(),
        ));
    }
    let mut abs = Vec::new();
    for p in &opts.paths {
        let a = crate::safe_fs::absolute(p).map_err(|e| Error::io(p, e))?;
        fs::symlink_metadata(&a).map_err(|e| Error::io(&a, e))?;
        abs.push(a);
    }
    let path_strings: Vec<String> = abs
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();

    let snapshots = repo.snapshots()?;
    let parent_id = if opts.force || opts.mode == BackupMode::Full {
        None
    } else {
        match opts.parent {
            Some(p) => Some(p),
            None => choose_parent(&snapshots, &opts.host, &path_strings, opts.mode),
        }
    };
    let parent_tree = match parent_id {
        Some(id) => {
            let snap = match snapshots.iter().find(|(i, _)| *i == id) {
                Some((_, s)) => s.clone(),
                None => repo.read_snapshot(&id)?,
            };
            Some(snap.tree)
        }
        None => None,
    };

    let mut trie = Trie::default();
    for a in &abs {
        trie.insert(a);
    }

    let threads = opts.threads.max(1);
    let (job_tx, job_rx) = bounded::<Job>(threads * JOBS_PER_THREAD);
    let (sealed_tx, sealed_rx) = bounded::<Sealed>(threads * SEALED_PER_THREAD);
    let (flush_tx, flush_rx) = bounded::<FlushRequest>(1);
    let keys = repo.keys().clone();
    let compression = repo.compression();
    let dry_run = opts.dry_run;
    // The walker decides "new or known" (the saver's dedup half); the packer thread fills and
    // finishes packs (its packing half).
    let mut saver = BlobSaver::new(repo, Known::IndexOrQueued);
    let (dedup, packs) = saver.split();
    let pipeline = Pipeline::default();
    let base = SnapshotBase {
        paths: path_strings.clone(),
        parent: parent_id,
    };

    let repo_ref: &Repository = repo;
    let (walk_result, packs, stored, mut walker_state) = thread::scope(|scope| {
        let mut workers = Vec::new();
        for _ in 0..threads {
            let rx = job_rx.clone();
            let tx = sealed_tx.clone();
            let keys = &keys;
            workers.push(scope.spawn(move || seal_worker(keys, compression, rx, tx)));
        }
        drop(job_rx);
        drop(sealed_tx);
        let packer = scope.spawn(|| {
            // Packs already written are named by an index file at least this often, so an
            // interrupted run (a dead server, a pulled cable) loses no uploaded data.
            let index_every = opts
                .checkpoint_every
                .unwrap_or(INDEX_EVERY)
                .min(INDEX_EVERY);
            let r = packer(
                repo_ref,
                packs,
                dry_run,
                sealed_rx,
                flush_rx,
                &pipeline,
                (!dry_run).then_some(index_every),
            );
            pipeline.stopped.store(true, Ordering::SeqCst);
            r
        });

        // Directories are listed and their entries stat'ed one step ahead of the walk, on
        // another thread: an unchanged tree is mostly system calls, and a changed one keeps
        // the workers fed while the next directory is read.
        let (listing_tx, listing_rx) = bounded::<Listing>(PREFETCH_DIRS);
        let roots = trie.targets(Path::new("/"));
        let exclude = &opts.exclude;
        scope.spawn(move || prefetch_listings(&roots, exclude, &listing_tx));
        let mut w = Walker {
            repo: repo_ref,
            opts,
            keys: &keys,
            tx: Some(job_tx),
            flush: Some(flush_tx),
            pipeline: &pipeline,
            sent: 0,
            dedup,
            names: NameCache::default(),
            hardlinks: HashMap::new(),
            summary: Summary::default(),
            errors: Vec::new(),
            repository_left_out: Vec::new(),
            progress,
            target_dev: None,
            stack: Vec::new(),
            base: &base,
            last_checkpoint: Instant::now(),
            checkpoints: Vec::new(),
            prefetch: Some(Prefetch {
                rx: listing_rx,
                peeked: None,
            }),
        };
        let mut root = w.backup_trie(&trie, Path::new("/"), parent_tree);
        // Stops the reader ahead (its next send fails) before the scope waits for it.
        w.prefetch = None;
        if matches!(root, Err(Error::Interrupted)) && !dry_run {
            // Ctrl-C: keep what was done as a partial snapshot the next backup resumes from.
            if let Err(e) = w.checkpoint() {
                root = Err(e);
            }
        }
        w.tx = None; // close the job queue: workers drain and stop, then the packer finishes
        w.flush = None;
        let mut worker_err = None;
        for h in workers {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => worker_err = Some(e),
                Err(_) => {
                    worker_err = Some(Error::InvalidInput("a compression worker panicked".into()))
                }
            }
        }
        let packed = packer
            .join()
            .unwrap_or_else(|_| Err(Error::InvalidInput("the packer thread panicked".into())));
        let state = (w.summary, w.errors, w.checkpoints, w.repository_left_out);
        let packed = match (packed, worker_err) {
            (Err(e), _) | (Ok(_), Some(e)) => Err(e),
            (Ok(p), None) => Ok(p),
        };
        match packed {
            Ok((packs, stored)) => (root, Ok(packs), stored, state),
            Err(e) => (root, Err(e), 0, state),
        }
    });
    // A packer failure (disk full, device gone) explains a walker failure, so report it first.
    let packs = packs?;
    let root = walk_result?;

    let mut summary = std::mem::take(&mut walker_state.0);
    let errors = std::mem::take(&mut walker_state.1);
    let own_checkpoints = std::mem::take(&mut walker_state.2);
    let repository_left_out = std::mem::take(&mut walker_state.3);
    summary.data_added_stored = stored;
    summary.errors = errors.len() as u64;

    if !dry_run && !packs.is_empty() {
        // Invariant: every pack named here is durable (the packer's put returned).
        let index = IndexFile {
            supersedes: Vec::new(),
            packs,
        };
        repo.save_index(&index)?;
        summary.data_added_stored += index_size_estimate(&index);
    }
    summary.duration_s = start.elapsed().as_secs_f64();

    let snapshot = make_snapshot(opts, &base, root, summary.clone(), false);
    let snapshot_id = if dry_run {
        None
    } else {
        // Invariant: the index naming every blob of this snapshot is durable.
        let id = repo.save_snapshot(&snapshot)?;
        // The partial snapshots this run or interrupted runs of the same host and paths left
        // are superseded now.
        let mut want: Vec<&String> = base.paths.iter().collect();
        want.sort();
        for (pid, s) in &snapshots {
            let mut have: Vec<&String> = s.paths.iter().collect();
            have.sort();
            if s.partial && s.host == opts.host && have == want {
                repo.remove_snapshot(pid)?;
            }
        }
        for pid in own_checkpoints {
            repo.remove_snapshot(&pid)?;
        }
        Some(id)
    };
    Ok(BackupOutcome {
        snapshot_id,
        snapshot,
        summary,
        errors,
        repository_left_out,
    })
}

/// What every snapshot of this run (partial or final) shares.
struct SnapshotBase {
    paths: Vec<String>,
    parent: Option<SnapshotId>,
}

fn make_snapshot(
    opts: &BackupOptions,
    base: &SnapshotBase,
    tree: TreeId,
    summary: Summary,
    partial: bool,
) -> Snapshot {
    Snapshot {
        version: SNAPSHOT_VERSION,
        time_ns: opts.time_ns,
        tz_offset_s: opts.tz_offset_s,
        host: opts.host.clone(),
        user: opts.user.clone(),
        uid: opts.uid,
        gid: opts.gid,
        paths: base.paths.clone(),
        tags: opts.tags.clone(),
        tree,
        parent: base.parent,
        mode: if opts.force {
            BackupMode::Full
        } else {
            opts.mode
        },
        program_version: env!("CARGO_PKG_VERSION").to_string(),
        summary,
        notes: Vec::new(),
        original: None,
        partial,
        copied_from: None,
    }
}

/// Shared counters between the walker and the packer.
#[derive(Default)]
struct Pipeline {
    /// Blobs the packer has put into a pack writer.
    packed: AtomicU64,
    /// The packer has ended (finished or failed).
    stopped: AtomicBool,
}

/// A checkpoint's request to the packer: close the open packs, write them, and send back the
/// packs written since the last request.
type FlushRequest = Sender<Result<Vec<IndexPack>>>;

fn index_size_estimate(index: &IndexFile) -> u64 {
    // Index files are small next to packs; count their plaintext as an upper bound.
    crate::format::to_msgpack_compact(index)
        .map(|v| v.len() as u64)
        .unwrap_or(0)
}

fn seal_worker(
    keys: &MasterKeys,
    c: Compression,
    rx: Receiver<Job>,
    tx: Sender<Sealed>,
) -> Result<()> {
    for job in rx {
        let sealed = seal_blob(keys, job.kind, &job.id, &job.data, c)?;
        let msg = Sealed {
            kind: job.kind,
            id: job.id,
            raw_len: job.data.len() as u32,
            sealed,
        };
        if tx.send(msg).is_err() {
            break; // the packer failed; it reports why
        }
    }
    Ok(())
}

/// A checkpoint's answer from the packer. The packer can fail and end with the request still
/// in its queue: the reply channel is then never dropped (a queue keeps its messages while
/// anyone can still send to it), so waiting on it alone would wait for ever. A backup whose
/// server died mid-run hung here.
fn wait_for_reply(
    reply: &Receiver<Result<Vec<IndexPack>>>,
    stopped: &AtomicBool,
) -> Result<Vec<IndexPack>> {
    use crossbeam_channel::RecvTimeoutError;
    let gone = || Error::InvalidInput("the storage pipeline stopped".into());
    loop {
        match reply.recv_timeout(std::time::Duration::from_millis(50)) {
            Ok(r) => return r,
            Err(RecvTimeoutError::Timeout) if !stopped.load(Ordering::SeqCst) => {}
            // Stopped (or gone): an answer sent just before the end is still taken.
            Err(_) => return reply.try_recv().map_err(|_| gone())?,
        }
    }
}

/// The longest time a written pack waits for an index file naming it.
const INDEX_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Packs whose write has finished, and the first write error.
#[derive(Default)]
struct Uploaded {
    packs: Vec<IndexPack>,
    error: Option<Error>,
    pending: usize,
}

/// Fills packs and hands each to an uploader thread that writes it durably; returns the packs
/// not yet handed to a checkpoint and the bytes stored. With `early_index`, written packs are
/// named in an index file at least that often.
fn packer(
    repo: &Repository,
    packs: &mut Packs,
    dry_run: bool,
    rx: Receiver<Sealed>,
    flush_rx: Receiver<FlushRequest>,
    pipeline: &Pipeline,
    early_index: Option<std::time::Duration>,
) -> Result<(Vec<IndexPack>, u64)> {
    let uploaded = std::sync::Mutex::new(Uploaded::default());
    let done = std::sync::Condvar::new();
    let lock = || uploaded.lock().unwrap_or_else(|p| p.into_inner());
    // Packs being written at once (the backend's transfers in flight: 2 for a local disk, so
    // writing and fsyncing one pack overlaps with filling the next; `--connections` remotely).
    let uploads = repo.backend().connections().max(1);
    // ≤ `uploads` finished packs (each ≤ pack size + one blob) wait or are being written.
    let (up_tx, up_rx) = bounded::<FinishedPack>(0);
    // A written pack's buffer comes back for the next pack, so after the first few packs no
    // buffer is allocated (and faulted in) again: memory stays bounded by 2 writers + `uploads`
    // + 1 pack buffers, and the CPU spends nothing on page faults.
    let (recycle_tx, recycle_rx) = bounded::<Vec<u8>>(uploads + 1);
    packs.recycle_from(recycle_rx);
    thread::scope(|scope| {
        for _ in 0..uploads {
            let up_rx = up_rx.clone();
            let (uploaded, done) = (&uploaded, &done);
            let recycle_tx = recycle_tx.clone();
            scope.spawn(move || {
                for mut p in up_rx {
                    let size = p.bytes.len() as u64;
                    // The buffer comes back unless the backend kept it (no copy of the pack).
                    let r = if dry_run {
                        Ok(Some(std::mem::take(&mut p.bytes)))
                    } else {
                        repo.put_pack_owned(&mut p)
                    };
                    let mut u = uploaded.lock().unwrap_or_else(|p| p.into_inner());
                    u.pending -= 1;
                    let back = match r {
                        Ok(back) => {
                            u.packs.push(IndexPack {
                                id: p.id,
                                size,
                                blobs: p.entries,
                            });
                            back
                        }
                        Err(e) => {
                            u.error.get_or_insert(e);
                            None
                        }
                    };
                    done.notify_all();
                    drop(u);
                    if let Some(buf) = back {
                        let _ = recycle_tx.try_send(buf);
                    }
                }
            });
        }
        drop(up_rx);
        let mut stored = 0u64;
        let send = |p: FinishedPack, stored: &mut u64| -> Result<()> {
            *stored += p.bytes.len() as u64;
            {
                let mut u = lock();
                if let Some(e) = u.error.take() {
                    return Err(e);
                }
                u.pending += 1;
            }
            up_tx
                .send(p)
                .map_err(|_| Error::InvalidInput("the pack writers stopped".into()))
        };
        // Waits for every pack handed over so far; returns them (or the first write error).
        let drain = || -> Result<Vec<IndexPack>> {
            let mut u = lock();
            while u.pending > 0 && u.error.is_none() {
                u = done.wait(u).unwrap_or_else(|p| p.into_inner());
            }
            match u.error.take() {
                Some(e) => Err(e),
                None => Ok(std::mem::take(&mut u.packs)),
            }
        };
        // Names the packs written so far in an index file when one is due (the packs stay out
        // of what `drain` returns, so no index file names a pack twice).
        let mut last_index = std::time::Instant::now();
        let mut index_due = || -> Result<()> {
            let Some(every) = early_index else {
                return Ok(());
            };
            if last_index.elapsed() < every {
                return Ok(());
            }
            last_index = std::time::Instant::now();
            let packs = std::mem::take(&mut lock().packs);
            if !packs.is_empty() {
                // Invariant: these packs are durable (their put returned).
                repo.write_index(&IndexFile {
                    supersedes: Vec::new(),
                    packs,
                })?;
            }
            Ok(())
        };
        let mut flush_rx = flush_rx;
        let result = (|| -> Result<()> {
            loop {
                crossbeam_channel::select! {
                    recv(rx) -> msg => {
                        let Ok(s) = msg else { return Ok(()) };
                        let full = packs.add(s.kind, s.id, &s.sealed, s.raw_len)?;
                        pipeline.packed.fetch_add(1, Ordering::SeqCst);
                        if let Some(p) = full {
                            send(p, &mut stored)?;
                            index_due()?;
                        }
                    }
                    recv(flush_rx) -> req => {
                        let Ok(reply) = req else {
                            flush_rx = crossbeam_channel::never();
                            continue;
                        };
                        let r = packs.finish_open().and_then(|open| {
                            open.into_iter().try_for_each(|p| send(p, &mut stored))
                        });
                        match r.and_then(|()| drain()) {
                            Ok(packs) => {
                                let _ = reply.send(Ok(packs));
                            }
                            Err(e) => {
                                let _ = reply.send(Err(Error::InvalidInput(e.to_string())));
                                return Err(e);
                            }
                        }
                    }
                }
            }
        })();
        let result = result.and_then(|()| {
            for p in packs.finish_open()? {
                send(p, &mut stored)?;
            }
            Ok(())
        });
        drop(up_tx); // uploaders finish what they hold and stop
        let packs = drain();
        result?;
        Ok((packs?, stored))
    })
}

/// One directory being built: the entries done so far, and its own node in the parent
/// (None for the root).
struct Frame {
    dir: Option<Node>,
    nodes: Vec<Node>,
}

struct Walker<'a> {
    repo: &'a Repository,
    opts: &'a BackupOptions,
    keys: &'a MasterKeys,
    tx: Option<Sender<Job>>,
    flush: Option<Sender<FlushRequest>>,
    pipeline: &'a Pipeline,
    /// Blobs sent to the workers by this run.
    sent: u64,
    /// The saver's "new or known" half: the single place that decides it.
    dedup: &'a mut Dedup,
    names: NameCache,
    /// Content of multiply-linked files already read in this run, by (device, inode).
    hardlinks: HashMap<(u64, u64), Vec<ContentPart>>,
    summary: Summary,
    errors: Vec<EntryError>,
    /// Where the repository's own directory was met and left out.
    repository_left_out: Vec<PathBuf>,
    progress: &'a dyn BackupProgress,
    /// Device of the backup path being walked (for `one_file_system`).
    target_dev: Option<u64>,
    /// The directories being built, outermost first (what a checkpoint saves).
    stack: Vec<Frame>,
    base: &'a SnapshotBase,
    last_checkpoint: Instant,
    /// Partial snapshots this run saved (the newest is kept until the run completes).
    checkpoints: Vec<SnapshotId>,
    /// Directory listings read ahead on another thread.
    prefetch: Option<Prefetch>,
}

impl Walker<'_> {
    fn cancelled(&self) -> bool {
        self.opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Stops at Ctrl-C; writes a checkpoint when one is due.
    fn tick(&mut self) -> Result<()> {
        if self.cancelled() {
            return Err(Error::Interrupted);
        }
        if let Some(every) = self.opts.checkpoint_every {
            if !self.opts.dry_run && self.last_checkpoint.elapsed() >= every {
                self.checkpoint()?;
            }
        }
        Ok(())
    }

    /// Makes everything done so far durable and resumable: the open directories become partial
    /// trees, the pipeline is drained and its packs written, an index file names them, and a
    /// partial snapshot references the trees. The next backup of the same paths uses it as its
    /// parent, so files completed here are not read again.
    fn checkpoint(&mut self) -> Result<()> {
        self.last_checkpoint = Instant::now();
        // Partial trees, innermost first; each becomes the subtree of its directory's node.
        let mut frames: Vec<(Option<Node>, Vec<Node>)> = self
            .stack
            .iter()
            .map(|f| (f.dir.clone(), f.nodes.clone()))
            .collect();
        let mut root = None;
        let mut child: Option<Node> = None;
        while let Some((dir, mut nodes)) = frames.pop() {
            if let Some(c) = child.take() {
                nodes.push(c);
            }
            let id = self.store_tree(Tree { nodes })?;
            match dir {
                Some(mut d) => {
                    d.subtree = Some(id);
                    child = Some(d);
                }
                None => root = Some(id),
            }
        }
        let Some(root) = root else { return Ok(()) };
        // Barrier: every blob sent is in a pack writer, then the packer writes them all.
        while self.pipeline.packed.load(Ordering::SeqCst) < self.sent {
            if self.pipeline.stopped.load(Ordering::SeqCst) {
                return Err(Error::InvalidInput("the storage pipeline stopped".into()));
            }
            thread::sleep(std::time::Duration::from_millis(1));
        }
        let flush = self
            .flush
            .as_ref()
            .ok_or_else(|| Error::InvalidInput("pipeline closed".into()))?;
        let (reply_tx, reply_rx) = bounded(1);
        flush
            .send(reply_tx)
            .map_err(|_| Error::InvalidInput("the storage pipeline stopped".into()))?;
        let packs = wait_for_reply(&reply_rx, &self.pipeline.stopped)?;
        if !packs.is_empty() {
            // Invariant: the packs are durable (the packer's put returned).
            self.repo.write_index(&IndexFile {
                supersedes: Vec::new(),
                packs,
            })?;
        }
        // Invariant: every blob of the partial snapshot is named by a durable index file.
        let snap = make_snapshot(self.opts, self.base, root, self.summary.clone(), true);
        let id = self.repo.save_snapshot(&snap)?;
        for old in std::mem::replace(&mut self.checkpoints, vec![id]) {
            if old != id {
                self.repo.remove_snapshot(&old)?;
            }
        }
        Ok(())
    }

    fn report(&mut self, path: &Path, error: impl std::fmt::Display) {
        let error = error.to_string();
        self.progress.error(path, &error);
        self.errors.push(EntryError {
            path: path.to_path_buf(),
            error,
        });
    }

    /// Queues a blob unless the repository or this run already has it.
    fn store(&mut self, kind: BlobKind, id: BlobId, data: Vec<u8>) -> Result<()> {
        if !self.dedup.claim(self.repo.index(), id) {
            return Ok(());
        }
        self.summary.data_added += data.len() as u64;
        self.summary.blobs_added += 1;
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| Error::InvalidInput("pipeline closed".into()))?;
        tx.send(Job { kind, id, data })
            .map_err(|_| Error::InvalidInput("the storage pipeline stopped".into()))?;
        self.sent += 1;
        Ok(())
    }

    fn store_tree(&mut self, mut tree: Tree) -> Result<TreeId> {
        tree.sort();
        let bytes = tree.encode()?;
        let id = self.keys.tree_id(&bytes);
        self.store(BlobKind::Tree, id, bytes)?;
        Ok(TreeId(id))
    }

    /// Adds a finished entry to the directory being built.
    fn push(&mut self, node: Node) {
        if let Some(f) = self.stack.last_mut() {
            f.nodes.push(node);
        }
    }

    /// Closes the innermost directory and stores its tree.
    fn pop_tree(&mut self) -> Result<TreeId> {
        let frame = self
            .stack
            .pop()
            .ok_or_else(|| Error::InvalidInput("directory stack underflow".into()))?;
        self.store_tree(Tree { nodes: frame.nodes })
    }

    fn parent_subtree(&mut self, parent: Option<&Tree>, name: &[u8]) -> Option<Tree> {
        let node = parent?.find(name)?;
        let id = node.subtree?;
        match self.repo.read_tree(&id) {
            Ok(t) => Some(t),
            Err(e) => {
                self.repo.warn(format!(
                    "parent tree {} unreadable, reading files instead: {e}",
                    id.0.short()
                ));
                None
            }
        }
    }

    /// Builds the tree for one trie level at `path`; `dir` is this level's own node.
    fn backup_trie(&mut self, trie: &Trie, path: &Path, parent: Option<TreeId>) -> Result<TreeId> {
        self.backup_trie_in(trie, path, parent, None)
    }

    fn backup_trie_in(
        &mut self,
        trie: &Trie,
        path: &Path,
        parent: Option<TreeId>,
        dir: Option<Node>,
    ) -> Result<TreeId> {
        let parent_tree = match parent {
            Some(id) => match self.repo.read_tree(&id) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.repo.warn(format!(
                        "parent snapshot tree unreadable, reading all files: {e}"
                    ));
                    None
                }
            },
            None => None,
        };
        if trie.target {
            self.target_dev = fs::symlink_metadata(path).ok().map(|m| m.dev());
            return self.backup_dir_contents(path, parent_tree.as_ref(), dir);
        }
        self.stack.push(Frame {
            dir,
            nodes: Vec::new(),
        });
        for (name, child) in &trie.children {
            let child_path = path.join(OsStr::from_bytes(name));
            let meta = match fs::symlink_metadata(&child_path) {
                Ok(m) => m,
                Err(e) => {
                    self.report(&child_path, e);
                    continue;
                }
            };
            if child.target && self.opts.exclude.is_repository(&meta) {
                self.repository_left_out.push(child_path);
            } else if child.target {
                self.target_dev = Some(meta.dev());
                if let Some(node) =
                    self.backup_entry(&child_path, name.clone(), &meta, parent_tree.as_ref())?
                {
                    self.push(node);
                }
            } else {
                // An ancestor of a backed-up path: a symlink here (`/home -> /data/home`) is
                // followed, as the path given on the command line was, and stored as the
                // directory it leads to.
                let meta = if meta.file_type().is_symlink() {
                    match fs::metadata(&child_path) {
                        Ok(m) => m,
                        Err(e) => {
                            self.report(&child_path, e);
                            continue;
                        }
                    }
                } else {
                    meta
                };
                let mut node = meta::node_from_meta(name.clone(), &meta, &mut self.names);
                if node.kind != NodeKind::Dir {
                    self.report(
                        &child_path,
                        "not a directory, yet a path to back up lies below it",
                    );
                    continue;
                }
                let sub_parent = parent_tree
                    .as_ref()
                    .and_then(|t| t.find(name))
                    .and_then(|n| n.subtree);
                node.subtree = Some(self.backup_trie_in(
                    child,
                    &child_path,
                    sub_parent,
                    Some(node.clone()),
                )?);
                self.summary.dirs += 1;
                self.push(node);
            }
        }
        self.pop_tree()
    }

    fn backup_dir_contents(
        &mut self,
        path: &Path,
        parent: Option<&Tree>,
        dir: Option<Node>,
    ) -> Result<TreeId> {
        let listing = match self.prefetch.as_mut().and_then(|p| p.take(path)) {
            Some(l) => l,
            None => list_dir(path, &self.opts.exclude),
        };
        for e in listing.errors {
            self.report(path, e);
        }
        self.repository_left_out.extend(listing.repository);
        self.stack.push(Frame {
            dir,
            nodes: Vec::new(),
        });
        for (name, meta) in listing.entries {
            self.tick()?;
            let child = path.join(&name);
            let meta = match meta {
                Ok(m) => m,
                Err(e) => {
                    self.report(&child, e);
                    continue;
                }
            };
            if meta.is_file()
                && self
                    .opts
                    .exclude
                    .larger_than
                    .is_some_and(|max| meta.len() > max)
            {
                continue;
            }
            if let Some(node) =
                self.backup_entry(&child, name.as_bytes().to_vec(), &meta, parent)?
            {
                self.push(node);
            }
        }
        self.pop_tree()
    }

    /// Backs up one entry; `None` when it could not be read at all (reported).
    fn backup_entry(
        &mut self,
        path: &Path,
        name: Vec<u8>,
        meta: &fs::Metadata,
        parent: Option<&Tree>,
    ) -> Result<Option<Node>> {
        let mut node = meta::node_from_meta(name, meta, &mut self.names);
        let old = parent
            .and_then(|t| t.find(&node.name))
            .filter(|o| o.kind == node.kind);
        // Changing an extended attribute changes ctime: with ctime and inode unchanged, the
        // parent's xattrs still hold and the syscalls can be saved.
        match old.filter(|o| !self.opts.force && o.ctime == node.ctime && o.inode == node.inode) {
            Some(o) => node.xattrs = o.xattrs.clone(),
            None => match meta::read_xattrs(path) {
                Ok(x) => node.xattrs = x,
                Err(e) => self.report(path, format!("extended attributes: {e}")),
            },
        }
        match node.kind {
            NodeKind::Dir => {
                let other_fs = self.opts.exclude.one_file_system
                    && self.target_dev.is_some_and(|d| d != meta.dev());
                node.subtree = Some(if other_fs {
                    self.store_tree(Tree::default())?
                } else {
                    let sub = self.parent_subtree(parent, &node.name);
                    self.backup_dir_contents(path, sub.as_ref(), Some(node.clone()))?
                });
                self.summary.dirs += 1;
            }
            NodeKind::File => {
                if !self.backup_file(path, &mut node, meta, old)? {
                    return Ok(None);
                }
            }
            NodeKind::Symlink => match fs::read_link(path) {
                Ok(t) => {
                    let t = t.into_os_string().into_vec();
                    node.size = t.len() as u64;
                    node.target = Some(t);
                    self.summary.other_entries += 1;
                }
                Err(e) => {
                    self.report(path, e);
                    return Ok(None);
                }
            },
            _ => self.summary.other_entries += 1,
        }
        Ok(Some(node))
    }

    fn unchanged(&self, node: &Node, old: &Node) -> bool {
        old.size == node.size
            && old.mtime == node.mtime
            && (self.opts.ignore_ctime || old.ctime == node.ctime)
            && (self.opts.ignore_inode || old.inode == node.inode)
            && old.chunks().all(|c| self.dedup.has(self.repo.index(), &c))
    }

    /// Fills in a file's content. Returns false if the file could not be read (reported).
    fn backup_file(
        &mut self,
        path: &Path,
        node: &mut Node,
        meta: &fs::Metadata,
        old: Option<&Node>,
    ) -> Result<bool> {
        node.size = meta.len();
        self.summary.total_files += 1;
        self.progress.file_started(path);
        if let Some(old) = old {
            if !self.opts.force && self.unchanged(node, old) {
                node.content = old.content.clone();
                self.summary.files_unmodified += 1;
                self.progress.bytes_done(node.size);
                self.summary.total_bytes_processed += node.size;
                self.progress.file_done(node.size);
                return Ok(true);
            }
        }
        let link_key = node.link_group();
        if let Some(parts) = link_key.and_then(|k| self.hardlinks.get(&k)) {
            node.content = parts.clone();
            node.size = parts.iter().map(|p| p.1).sum();
        } else {
            match self.read_content(path, meta) {
                Ok((parts, changed)) => {
                    node.size = parts.iter().map(|p| p.1).sum();
                    node.content = parts;
                    if let Some(why) = changed {
                        self.report(path, why);
                    }
                    if let Some(k) = link_key {
                        self.hardlinks.insert(k, node.content.clone());
                    }
                }
                Err(ReadError::Source(e)) => {
                    self.summary.total_files -= 1;
                    self.report(path, e);
                    return Ok(false);
                }
                Err(ReadError::Repo(e)) => return Err(e),
            }
        }
        if old.is_some() {
            self.summary.files_changed += 1;
        } else {
            self.summary.files_new += 1;
        }
        self.summary.total_bytes_processed += node.size;
        self.progress.file_done(node.size);
        Ok(true)
    }

    /// Reads, chunks and queues a file. Returns its parts, and a message if it changed while
    /// being read (the parts are still exactly what was read).
    fn read_content(
        &mut self,
        path: &Path,
        meta: &fs::Metadata,
    ) -> Result<(Vec<ContentPart>, Option<String>), ReadError> {
        let (mut file, before) = crate::safe_fs::open_regular(path).map_err(ReadError::Source)?;
        if before.ino() != meta.ino() {
            return Err(ReadError::Source(io::Error::other(
                "replaced by another file while being backed up",
            )));
        }
        let size = before.len();
        let sparse = before.blocks() * 512 < size;
        let regions = if sparse {
            meta::data_regions(file.as_raw_fd(), size)
        } else {
            vec![(0, u64::MAX)]
        };
        let mut parts = Vec::new();
        let mut pos = 0u64;
        for (start, end) in regions {
            if start > pos {
                parts.push(ContentPart(None, start - pos));
            }
            // Always: finding the regions moved the file offset (lseek SEEK_DATA/SEEK_HOLE).
            file.seek(SeekFrom::Start(start))
                .map_err(ReadError::Source)?;
            let take = end.saturating_sub(start);
            pos = start;
            for chunk in Chunker::with_size_hint(
                (&file).take(take),
                self.repo.config().chunker,
                self.keys.chunker_seed(),
                take.min(size),
            ) {
                let chunk = chunk.map_err(ReadError::Source)?;
                self.tick().map_err(ReadError::Repo)?;
                let len = chunk.len() as u64;
                let id = self.keys.chunk_id(&chunk);
                self.store(BlobKind::Data, id, chunk)
                    .map_err(ReadError::Repo)?;
                parts.push(ContentPart(Some(id), len));
                pos += len;
                self.summary.bytes_read += len;
                self.progress.bytes_done(len);
            }
        }
        if sparse && pos < size {
            parts.push(ContentPart(None, size - pos));
            pos = size;
        }
        let after = file.metadata().map_err(ReadError::Source)?;
        let changed = (after.len() != size || after.mtime() != before.mtime() || after.mtime_nsec() != before.mtime_nsec() || pos != size)
            .then(|| format!("changed while being read ({size} bytes when opened, {pos} read, {} now); the snapshot holds what was read", after.len()));
        Ok((parts, changed))
    }
}

/// Directory listings the reader ahead may hold before the walk takes them.
const PREFETCH_DIRS: usize = 64;

/// A directory's entries (not excluded by pattern or, for directories, by a marker file in
/// them), sorted by name, each with its metadata (not following symlinks) or why it could not
/// be had.
struct Listing {
    path: PathBuf,
    entries: Vec<(std::ffi::OsString, io::Result<fs::Metadata>)>,
    /// Errors reading the directory itself.
    errors: Vec<io::Error>,
    /// The repository's own directory, found among the entries and left out.
    repository: Option<PathBuf>,
}

/// Lists a directory. Entries keep it open, so each is stat'ed relative to it (fstatat), not
/// through its whole path again.
fn list_dir(path: &Path, exclude: &Excludes) -> Listing {
    let mut errors = Vec::new();
    let mut found = Vec::new();
    match fs::read_dir(path) {
        Ok(rd) => {
            for e in rd {
                match e {
                    Ok(e) => found.push((e.file_name(), e)),
                    Err(e) => errors.push(e),
                }
            }
        }
        Err(e) => errors.push(e),
    }
    found.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut entries = Vec::with_capacity(found.len());
    let mut repository = None;
    for (name, e) in found {
        let child = path.join(&name);
        if exclude.excludes_path(&child) {
            continue;
        }
        let meta = e.metadata();
        if meta.as_ref().is_ok_and(|m| exclude.is_repository(m)) {
            repository = Some(child);
            continue;
        }
        if meta.as_ref().is_ok_and(|m| m.is_dir()) && exclude.marks_dir(&child) {
            continue;
        }
        entries.push((name, meta));
    }
    Listing {
        path: path.to_path_buf(),
        entries,
        errors,
        repository,
    }
}

/// Lists every directory the walk will enter, in the order it enters them (depth first, by
/// name), and sends the listings; stops when the walk no longer takes them.
fn prefetch_listings(roots: &[PathBuf], exclude: &Excludes, tx: &Sender<Listing>) {
    fn walk(dir: &Path, dev: u64, exclude: &Excludes, tx: &Sender<Listing>) -> bool {
        let listing = list_dir(dir, exclude);
        let subdirs: Vec<PathBuf> = listing
            .entries
            .iter()
            .filter_map(|(name, meta)| {
                let m = meta.as_ref().ok().filter(|m| m.is_dir())?;
                let child = dir.join(name);
                let other_fs = exclude.one_file_system && m.dev() != dev;
                (!other_fs).then_some(child)
            })
            .collect();
        if tx.send(listing).is_err() {
            return false;
        }
        subdirs.iter().all(|d| walk(d, dev, exclude, tx))
    }
    for root in roots {
        match fs::symlink_metadata(root) {
            Ok(m) if m.is_dir() && !walk(root, m.dev(), exclude, tx) => return,
            _ => {}
        }
    }
}

/// The walk's side of the listings read ahead.
struct Prefetch {
    rx: Receiver<Listing>,
    peeked: Option<Listing>,
}

impl Prefetch {
    /// The listing of `path` if it was read ahead. Both sides go depth first by name, which
    /// is the order of paths compared component by component: listings before `path` are of
    /// directories the walk did not enter, and one after it means `path` was not read ahead
    /// (the caller lists it itself).
    fn take(&mut self, path: &Path) -> Option<Listing> {
        loop {
            let next = match self.peeked.take() {
                Some(l) => l,
                None => self.rx.recv().ok()?,
            };
            match next.path.as_path().cmp(path) {
                std::cmp::Ordering::Equal => return Some(next),
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Greater => {
                    self.peeked = Some(next);
                    return None;
                }
            }
        }
    }
}

enum ReadError {
    /// The source file: reported, the backup goes on.
    Source(io::Error),
    /// The repository side: fatal.
    Repo(Error),
}

trait IntoVec {
    fn into_vec(self) -> Vec<u8>;
}

impl IntoVec for std::ffi::OsString {
    fn into_vec(self) -> Vec<u8> {
        std::os::unix::ffi::OsStringExt::into_vec(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packer failed and ended with a checkpoint's request still queued: the request's
    /// reply channel lives on in the queue, so the checkpoint must notice the packer stopped
    /// instead of waiting for an answer that never comes. It hung before (a backup whose S3
    /// server was killed mid-run, now and then).
    #[test]
    fn a_checkpoint_does_not_wait_for_a_packer_that_stopped() {
        let (flush_tx, flush_rx) = bounded::<FlushRequest>(1);
        let (reply_tx, reply_rx) = bounded(1);
        flush_tx.send(reply_tx).expect("queued");
        drop(flush_rx); // the packer ended without reading it; the walker still holds flush_tx
        let stopped = AtomicBool::new(true);
        let (done_tx, done_rx) = bounded(1);
        std::thread::spawn(move || {
            let _ = done_tx.send(wait_for_reply(&reply_rx, &stopped).is_err());
        });
        let failed = done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the checkpoint still waits for a packer that has stopped");
        assert!(failed, "no answer came, so the checkpoint fails");
        drop(flush_tx);

        // An answer sent just before the packer stopped is still taken.
        let (reply_tx, reply_rx) = bounded(1);
        reply_tx.send(Ok(Vec::new())).expect("answer");
        let stopped = AtomicBool::new(true);
        assert!(wait_for_reply(&reply_rx, &stopped).is_ok());
    }

    fn listing(path: &str) -> Listing {
        Listing {
            path: PathBuf::from(path),
            entries: Vec::new(),
            errors: Vec::new(),
            repository: None,
        }
    }

    /// The walk takes listings by path: ones it skipped are dropped, and one that was not
    /// read ahead is answered None without losing the listings after it.
    #[test]
    fn prefetched_listings_are_matched_by_path_in_walk_order() {
        let (tx, rx) = bounded(16);
        for p in ["/a", "/a/b", "/a/b/c", "/a/b-", "/a/d", "/e"] {
            tx.send(listing(p)).unwrap();
        }
        drop(tx);
        let mut pf = Prefetch { rx, peeked: None };
        let got = |l: Option<Listing>| l.map(|l| l.path.display().to_string());
        assert_eq!(got(pf.take(Path::new("/a"))), Some("/a".into()));
        // "/a/b" and everything under it were not entered; "/a/b-" sorts after "/a/b/c".
        assert_eq!(got(pf.take(Path::new("/a/b-"))), Some("/a/b-".into()));
        // Not read ahead: None, and "/a/d" is still there.
        assert_eq!(got(pf.take(Path::new("/a/c"))), None);
        assert_eq!(got(pf.take(Path::new("/a/d"))), Some("/a/d".into()));
        assert_eq!(got(pf.take(Path::new("/e"))), Some("/e".into()));
        assert_eq!(got(pf.take(Path::new("/f"))), None);
    }

    /// What the reader ahead lists is what the walk would: entries sorted by name bytes,
    /// excluded names and marked directories left out, directories entered in order.
    #[test]
    fn the_reader_ahead_lists_directories_in_walk_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for d in ["b/x", "a", "c/skip-me", "marked"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("marked/.nobackup"), b"").unwrap();
        fs::write(root.join("a/file"), b"1").unwrap();
        let exclude = Excludes {
            patterns: Some(
                crate::filter::Selection::new(&[], &["skip-me".to_string()], &[]).unwrap(),
            ),
            if_present: vec![".nobackup".into()],
            ..Excludes::default()
        };
        let (tx, rx) = bounded(16);
        prefetch_listings(std::slice::from_ref(&root), &exclude, &tx);
        drop(tx);
        let seen: Vec<(String, Vec<String>)> = rx
            .iter()
            .map(|l| {
                let rel = l.path.strip_prefix(&root).unwrap().display().to_string();
                let names = l
                    .entries
                    .iter()
                    .map(|(n, _)| n.to_string_lossy().into_owned())
                    .collect();
                (rel, names)
            })
            .collect();
        let want: Vec<(String, Vec<String>)> = vec![
            ("".into(), vec!["a".into(), "b".into(), "c".into()]),
            ("a".into(), vec!["file".into()]),
            ("b".into(), vec!["x".into()]),
            ("b/x".into(), vec![]),
            ("c".into(), vec![]),
        ];
        assert_eq!(seen, want);
    }
}

//! Backup: walk → (unchanged? reuse) → read → chunk → keyed id → one owner decides "new or
//! known" → compress + seal (worker threads) → pack → backend; trees assembled bottom-up;
//! commit writes packs, then the index, then the snapshot.
//!
//! Threads live only here: the walking thread reads, chunks, hashes and deduplicates (it is the
//! single owner of "is this blob new?", the blob saver's dedup half, so no blob is stored twice
//! by a race); `threads` workers compress and seal; one packer thread fills packs (the saver's
//! packing half) and hands them to uploaders that write them to the backend.
//!
//! This file owns the options, the outcome, the [`backup`] entry (choosing the parent, starting
//! the threads, committing) and the making of snapshots. The rest, one concern per file:
//! - `excludes.rs`: what a backup leaves out, and listing directories (read ahead);
//! - `walk.rs`: the walk, reuse of the parent's unchanged files, reading and chunking a file,
//!   checkpoints (partial snapshots);
//! - `pipeline.rs`: seal workers, the packer and its uploaders, index files for written packs;
//! - `summary.rs`: the summary `cairn backup --json` prints;
//! - `stdin.rs`: stream backups (`--stdin`, `--stdin-from-command`) through the same pipeline;
//! - `files_from.rs`: the path lists of `--files-from`, `--files-from-verbatim`, `--files-from-raw`.

pub mod files_from;
pub mod filter;
pub mod stdin;

mod excludes;
mod pipeline;
mod summary;
mod walk;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crossbeam_channel::bounded;

use crate::error::{Error, Result};
use crate::id::{SnapshotId, TreeId};
use crate::index::IndexFile;
use crate::meta::NameCache;
use crate::repo::Repository;
use crate::saver::{BlobSaver, Known};
use crate::snapshot::{BackupMode, Snapshot, Summary, SNAPSHOT_VERSION};

use excludes::{prefetch_listings, Listing, Prefetch, PREFETCH_DIRS};
pub use excludes::{DirId, Excludes};
use pipeline::{
    packer, seal_worker, FlushRequest, Job, Pipeline, Sealed, INDEX_EVERY, JOBS_PER_THREAD,
    SEALED_PER_THREAD,
};
pub use summary::BackupSummary;
use walk::{Trie, Walker};

/// What to back up and how.
#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    /// The files and directories to back up (at least one); made absolute against the current
    /// directory and recorded as [`Snapshot::paths`]. Each must exist.
    pub paths: Vec<PathBuf>,
    /// Host name recorded in the snapshot (`backup --host`); with the paths it picks the parent.
    pub host: String,
    /// Name of the user running the backup, recorded in the snapshot.
    pub user: String,
    /// Numeric user id running the backup, recorded in the snapshot.
    pub uid: u32,
    /// Numeric group id running the backup, recorded in the snapshot.
    pub gid: u32,
    /// Tags recorded in the snapshot (`backup --tag`).
    pub tags: Vec<String>,
    /// Snapshot time (ns since epoch) and the local offset, seconds east of UTC.
    pub time_ns: i64,
    /// The local time zone offset at `time_ns`, in seconds east of UTC (for display).
    pub tz_offset_s: i32,
    /// Which snapshot is the parent (`backup --mode`); recorded as `Full` when `force` is set.
    pub mode: BackupMode,
    /// Compare against this snapshot instead of the one the mode chooses.
    pub parent: Option<SnapshotId>,
    /// Read every file even when the parent says it is unchanged.
    pub force: bool,
    /// Do not compare ctime when deciding whether a file is unchanged (`--ignore-ctime`).
    pub ignore_ctime: bool,
    /// Do not compare inode numbers when deciding whether a file is unchanged
    /// (`--ignore-inode`).
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
    /// Paths read from a list (`backup --files-from*`), backed up like [`Self::paths`] and
    /// recorded with them, except that a listed path that does not exist is left out and
    /// reported as an entry error (exit 3) instead of failing the backup: restic skips it too.
    pub listed_paths: Vec<PathBuf>,
}

/// A source entry that could not be backed up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryError {
    /// The entry's absolute path on the source.
    pub path: PathBuf,
    /// Why, as a message for people (the `error` of an `errors` item in `backup --json`).
    pub error: String,
}

/// What happened.
#[derive(Debug)]
pub struct BackupOutcome {
    /// The id of the snapshot saved; None for a dry run.
    pub snapshot_id: Option<SnapshotId>,
    /// The snapshot as saved (or, in a dry run, as it would have been).
    pub snapshot: Snapshot,
    /// The run's counters, the same as `snapshot.summary`.
    pub summary: Summary,
    /// Source entries that could not be backed up, or that changed while being read, in the
    /// order met; not empty means `cairn backup` exits 3.
    pub errors: Vec<EntryError>,
    /// Where the walk met the repository's own directory and left it out
    /// ([`Excludes::repository`]).
    pub repository_left_out: Vec<PathBuf>,
}

/// Progress callbacks; the library draws nothing.
pub trait BackupProgress: Send + Sync {
    /// A regular file at `path` is about to be read or reused from the parent.
    fn file_started(&self, _path: &Path) {}
    /// `n` more bytes of file content are done: read, or a whole unchanged file reused.
    fn bytes_done(&self, _n: u64) {}
    /// A regular file of `size` bytes is in the snapshot (not called for one that failed).
    fn file_done(&self, _size: u64) {}
    /// The entry at `path` could not be backed up, or changed while being read; the same
    /// report lands in [`BackupOutcome::errors`].
    fn error(&self, _path: &Path, _error: &str) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl BackupProgress for NoProgress {}

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

/// Runs one backup into `repo` (whose index must be loaded).
pub fn backup(
    repo: &mut Repository,
    opts: &BackupOptions,
    progress: &dyn BackupProgress,
) -> Result<BackupOutcome> {
    let start = Instant::now();
    check_tags(&opts.tags)?;
    if opts.paths.is_empty() && opts.listed_paths.is_empty() {
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
    let mut missing = Vec::new();
    for p in &opts.listed_paths {
        let a = crate::safe_fs::absolute(p).map_err(|e| Error::io(p, e))?;
        match fs::symlink_metadata(&a) {
            Ok(_) => abs.push(a),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let error = format!("listed in a --files-from list, but {e}; left out");
                progress.error(&a, &error);
                missing.push(EntryError { path: a, error });
            }
            Err(e) => return Err(Error::io(&a, e)),
        }
    }
    if abs.is_empty() {
        return Err(Error::InvalidInput(format!(
            "nothing to back up: none of the {} listed paths exists",
            missing.len()
        )));
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
    let base = SnapshotBase {
        paths: path_strings.clone(),
        parent: parent_id,
    };
    let roots = trie.targets(Path::new("/"));
    // A put-only key saves no partial snapshots: replacing one deletes the one before, and a
    // put-only key deletes nothing. Its packs are still named by index files as it goes.
    let put_only = repo.is_put_only();
    let no_checkpoints;
    let opts = if put_only {
        no_checkpoints = BackupOptions {
            checkpoint_every: None,
            ..opts.clone()
        };
        &no_checkpoints
    } else {
        opts
    };
    let mut run = run_pipeline(repo, opts, &base, progress, Some(roots), !put_only, |w| {
        w.backup_trie(&trie, Path::new("/"), parent_tree)
    });
    run.errors.splice(0..0, missing);
    finish(repo, opts, &base, &snapshots, run, start)
}

/// What the walk and the pipeline left: the walk's result, the packs written and not yet named
/// by an index file (or the pipeline's failure), the bytes stored, and the walker's counters.
struct PipelineRun {
    root: Result<TreeId>,
    packs: Result<Vec<crate::index::IndexPack>>,
    stored: u64,
    summary: Summary,
    errors: Vec<EntryError>,
    checkpoints: Vec<SnapshotId>,
    repository_left_out: Vec<PathBuf>,
}

/// Starts the seal workers and the packer, runs `walk` on this thread with a [`Walker`] feeding
/// them, and waits for everything queued to be written. With `roots`, directory listings are
/// read ahead of the walk; with `checkpoint_on_interrupt`, a Ctrl-C saves what was done as a
/// partial snapshot.
/// The tags a backup is given follow the rules `cairn tag` enforces
/// ([`crate::snapshot::rewrite::check_tag`]): a tag with a comma could never be named by
/// `forget --keep-tag`, one with control characters would garble listings. Checked before
/// anything is read.
pub(crate) fn check_tags(tags: &[String]) -> Result<()> {
    tags.iter()
        .try_for_each(|t| crate::snapshot::rewrite::check_tag(t))
}

fn run_pipeline(
    repo: &mut Repository,
    opts: &BackupOptions,
    base: &SnapshotBase,
    progress: &dyn BackupProgress,
    roots: Option<Vec<PathBuf>>,
    checkpoint_on_interrupt: bool,
    walk: impl FnOnce(&mut Walker<'_>) -> Result<TreeId>,
) -> PipelineRun {
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

    let repo_ref: &Repository = repo;
    thread::scope(|scope| {
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
        let prefetch = roots.map(|roots| {
            let (listing_tx, listing_rx) = bounded::<Listing>(PREFETCH_DIRS);
            let exclude = &opts.exclude;
            scope.spawn(move || prefetch_listings(&roots, exclude, &listing_tx));
            Prefetch {
                rx: listing_rx,
                peeked: None,
            }
        });
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
            base,
            last_checkpoint: Instant::now(),
            checkpoints: Vec::new(),
            prefetch,
        };
        let mut root = walk(&mut w);
        // Stops the reader ahead (its next send fails) before the scope waits for it.
        w.prefetch = None;
        if matches!(root, Err(Error::Interrupted)) && !dry_run && checkpoint_on_interrupt {
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
        let packed = match (packed, worker_err) {
            (Err(e), _) | (Ok(_), Some(e)) => Err(e),
            (Ok(p), None) => Ok(p),
        };
        let (packs, stored) = match packed {
            Ok((packs, stored)) => (Ok(packs), stored),
            Err(e) => (Err(e), 0),
        };
        PipelineRun {
            root,
            packs,
            stored,
            summary: w.summary,
            errors: w.errors,
            checkpoints: w.checkpoints,
            repository_left_out: w.repository_left_out,
        }
    })
}

/// Commits a finished run: the index naming the packs written, then the snapshot (unless a dry
/// run), then the removal of the partial snapshots it supersedes.
fn finish(
    repo: &mut Repository,
    opts: &BackupOptions,
    base: &SnapshotBase,
    snapshots: &[(SnapshotId, Snapshot)],
    run: PipelineRun,
    start: Instant,
) -> Result<BackupOutcome> {
    let dry_run = opts.dry_run;
    // A packer failure (disk full, device gone) explains a walker failure, so report it first.
    let packs = run.packs?;
    let root = match run.root {
        Ok(root) => root,
        Err(e) => {
            if !dry_run && !packs.is_empty() {
                // The source failed (a stream's command exited non-zero): the packs written
                // are durable, so name them; no snapshot references them, and `prune` frees
                // them (an interrupted run's checkpoint named those before it). Should this
                // fail too, the source's failure is still what the user must hear about, and
                // the packs stay for `cairn repair index`.
                let _ = repo.save_index(&IndexFile {
                    supersedes: Vec::new(),
                    packs,
                });
            }
            return Err(e);
        }
    };
    let mut summary = run.summary;
    let errors = run.errors;
    let own_checkpoints = run.checkpoints;
    let repository_left_out = run.repository_left_out;
    let stored = run.stored;
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

    let snapshot = make_snapshot(opts, base, root, summary.clone(), false);
    let snapshot_id = if dry_run {
        None
    } else {
        // Invariant: the index naming every blob of this snapshot is durable.
        let id = repo.save_snapshot(&snapshot)?;
        // The partial snapshots this run or interrupted runs of the same host and paths left
        // are superseded now.
        let mut want: Vec<&String> = base.paths.iter().collect();
        want.sort();
        for (pid, s) in snapshots.iter().filter(|_| !repo.is_put_only()) {
            let mut have: Vec<&String> = s.paths.iter().collect();
            have.sort();
            if s.partial && s.host == opts.host && have == want {
                repo.remove_snapshot(pid)?;
            }
        }
        for pid in own_checkpoints {
            repo.remove_snapshot(&pid)?;
        }
        // Parity comes after the commit (repo-format.md §14.4): its failure is a warning. A
        // run that wrote no pack leaves parity as it is (and reads no parity header).
        if stored > 0 {
            crate::parity::after_write(repo);
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

fn index_size_estimate(index: &IndexFile) -> u64 {
    // Index files are small next to packs; count their plaintext as an upper bound.
    crate::format::to_msgpack_compact(index)
        .map(|v| v.len() as u64)
        .unwrap_or(0)
}

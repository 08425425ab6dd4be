//! Restore: walk a snapshot's tree, write file content at its offsets (holes stay holes), then
//! metadata, directories last. A blob that fails authentication or its id check makes that file
//! damaged: it is removed, named in the outcome, and the rest of the restore goes on.
//!
//! The target may already hold anything: files, symlinks pointing outside it, hard links to
//! files outside it, FIFOs. Every entry below the target is reached through the descriptor of
//! its directory and never through a symlink (src/safe_fs.rs), so a restore never writes,
//! creates or deletes anything outside its target. What stands in the way of the snapshot is
//! replaced only as [`Overwrite`] says; a directory that is not empty is never removed, except
//! by `--delete` ([`RestoreOptions::delete`]), which also removes what the snapshot lacks.

//!
//! One concern per file:
//! - `mod.rs`: options, outcome, [`select_path`] and the [`restore`] entry that starts the
//!   workers and runs the walk;
//! - `walk.rs`: the walk down the snapshot's trees, its stack of open directories, and
//!   directory metadata applied last;
//! - `entries.rs`: making entries where something may stand, and the overwrite decisions;
//! - `links.rs`: hard links, made at once or once their first file is finished;
//! - `plan.rs`: batches of files planned by pack and cut into jobs;
//! - `fetch.rs`: the workers reading and opening each job's blobs;
//! - `file.rs` and `write.rs`: each file created at its final size, and content written at its
//!   offsets (direct I/O, holes, a full disk);
//! - `finish.rs`, `verify.rs`, `problems.rs`: a file's last step, `--verify`, and what went
//!   wrong with a file;
//! - `flow.rs`: what the walk and the workers share, and the bound on batches in flight;
//! - `summary.rs`: the summary `cairn restore --json` prints;
//! - `delete.rs`: `--delete`, removing through descriptors what the snapshot does not hold;
//! - `preview.rs`: `--dry-run`, the same decisions taken and listed, nothing written.

mod delete;
pub mod drill;
mod entries;
mod fetch;
mod file;
mod finish;
mod flow;
mod links;
mod plan;
mod preview;
mod problems;
mod summary;
mod verify;
mod walk;
mod write;

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::error::{Error, Result};
use crate::id::TreeId;
use crate::repo::Repository;
use crate::safe_fs::Dir;
use crate::tree::Node;

use fetch::worker;
use flow::{Flow, Shared};
use plan::{batch_files, Job};
use walk::{Frame, FrameState, Restorer};

pub use delete::Removed;
pub use preview::{preview, Preview, PreviewEntry, PreviewSummary};
pub use summary::RestoreSummary;

/// What to do with an entry that already exists where the snapshot has one.
///
/// Only entries at paths the snapshot holds are ever replaced; nothing the snapshot does not
/// contain is touched, and no mode removes a directory that is not empty (it is reported as
/// an obstacle and left in place) — unless [`RestoreOptions::delete`] asks for both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Replace it: a file, symlink, special file or empty directory is removed (never
    /// followed) and the snapshot's entry made in its place.
    #[default]
    Always,
    /// Like `Always`, except that a regular file whose size and modification time (seconds
    /// and nanoseconds) equal the snapshot's is kept without being read (with `verify`, it is
    /// read and compared with the snapshot).
    IfChanged,
    /// Never remove, replace or change anything that exists, files and directories alike
    /// (their metadata included); only what is missing is restored.
    Never,
}

impl std::str::FromStr for Overwrite {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Overwrite::Always),
            "if-changed" => Ok(Overwrite::IfChanged),
            "never" => Ok(Overwrite::Never),
            _ => Err(format!(
                "--overwrite {s:?} is not always, if-changed or never"
            )),
        }
    }
}

/// Where and how [`restore`] writes (`cairn restore`'s options).
#[derive(Clone, Default)]
pub struct RestoreOptions {
    /// The directory to restore into (`--target`), created if missing; nothing outside it is
    /// written. Paths in the outcome are this joined with the entry's path below it.
    pub target: PathBuf,
    /// What to do with entries already in the target (`--overwrite`).
    pub overwrite: Overwrite,
    /// Re-read every restored file, and every existing file kept in its place, and check it
    /// against the snapshot's chunk ids.
    pub verify: bool,
    /// Set ownership (only possible as root).
    pub set_owner: bool,
    /// Set from outside (Ctrl-C) to stop: the restore then fails with [`Error::Interrupted`],
    /// leaving what was written so far.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Restore only the non-directory entries this accepts (given their path in the snapshot);
    /// directories are then created only where something inside them is restored.
    pub select: Option<Selector>,
    /// The path in the snapshot that the selection starts at (for `select` and messages).
    pub base: PathBuf,
    /// Threads that read, open and write file content (0: one per core).
    pub threads: usize,
    /// Remove from each restored directory whatever the snapshot's directory does not hold
    /// (`--delete`; src/restore/delete.rs), and what fills a directory standing where the
    /// snapshot has another kind of entry. Paths `select` rejects are kept. Refused with
    /// [`Overwrite::Never`] and for a `SNAPSHOT:SUBPATH` that is not a directory.
    pub delete: bool,
}

/// Decides which entries a restore writes, by their path in the snapshot.
pub type Selector = Arc<dyn Fn(&Path, &Node) -> bool + Send + Sync>;

/// A restored entry that is missing, damaged or lacks some metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreError {
    /// The entry's path in the target ([`RestoreOptions::target`] joined with its place there).
    pub path: PathBuf,
    /// What went wrong, as a message for people.
    pub error: String,
}

/// What a restore did: the counts and lists of `cairn restore --json`'s summary
/// ([`RestoreOutcome::summary`]).
#[derive(Debug, Default)]
pub struct RestoreOutcome {
    /// Regular files restored in full, hard links to them included (`files_restored`).
    pub files: u64,
    /// Directories of the snapshot made in the target or found there already (`dirs_restored`).
    pub dirs: u64,
    /// Symlinks, FIFOs and device nodes made (`other_restored`).
    pub other: u64,
    /// Entries kept as they were (`--overwrite never` or `if-changed`) and sockets.
    pub skipped: u64,
    /// Bytes of file content written (of files that were restored).
    pub bytes: u64,
    /// Files re-read and found equal to the snapshot with `verify` (`files_verified`).
    pub verified_files: u64,
    /// Files whose content could not be restored (damaged or missing data); not left on disk.
    pub damaged: Vec<RestoreError>,
    /// Everything else that went wrong: entries in the way, failed writes, metadata.
    pub errors: Vec<RestoreError>,
    /// The target's file system ran out of space: the restore stopped there.
    pub disk_full: bool,
    /// What `--delete` removed from the target (contents before their directory).
    pub deleted: Vec<Removed>,
}

impl RestoreOutcome {
    /// True when everything selected was restored: no damage, no error, the disk not full
    /// (`cairn restore` exits 0).
    pub fn ok(&self) -> bool {
        self.damaged.is_empty() && self.errors.is_empty() && !self.disk_full
    }
}

/// Progress callbacks, called from the walking thread and the worker threads; the library
/// draws nothing.
pub trait RestoreProgress: Send + Sync {
    /// A regular file is queued to be written at `path` in the target.
    fn file_started(&self, _path: &Path) {}
    /// `n` more bytes of file content were fetched and placed in a file being written.
    fn bytes_done(&self, _n: u64) {}
}

/// A progress sink that ignores everything.
pub struct NoRestoreProgress;
impl RestoreProgress for NoRestoreProgress {}

/// What a `SNAPSHOT:SUBPATH` selector points at.
pub enum Selected {
    /// A directory: its entries are restored into the target.
    Dir(TreeId),
    /// A single non-directory entry: restored into the target under its name.
    Entry(Box<Node>),
}

/// Follows `subpath` (components separated by `/`) down from `root`.
pub fn select_path(repo: &Repository, root: TreeId, subpath: &str) -> Result<Selected> {
    let mut cur = Selected::Dir(root);
    for comp in subpath.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let Selected::Dir(tree_id) = cur else {
            return Err(Error::InvalidInput(format!(
                "{subpath}: a component before {comp:?} is not a directory"
            )));
        };
        let tree = repo.read_tree(&tree_id)?;
        let node = tree.find(comp.as_bytes()).ok_or_else(|| {
            Error::InvalidInput(format!("{subpath}: no entry {comp:?} in the snapshot"))
        })?;
        cur = match node.subtree {
            Some(sub) => Selected::Dir(sub),
            None => Selected::Entry(Box::new(node.clone())),
        };
    }
    Ok(cur)
}

/// Restores `selected` into `opts.target`.
///
/// The calling thread walks the snapshot's trees, creates directories and gathers files into
/// batches; worker threads read each batch's packs once, in offset order, write the content,
/// and finish each file (checks, metadata, hard links) as its last chunk lands. The walk runs
/// ahead of the workers by at most `BATCHES_IN_FLIGHT` batches (src/restore/plan.rs), which
/// bounds memory and open descriptors whatever the size of the snapshot. Directory metadata
/// follows the last file inside the directory.
pub fn restore(
    repo: &Repository,
    selected: &Selected,
    opts: &RestoreOptions,
    progress: &dyn RestoreProgress,
) -> Result<RestoreOutcome> {
    check_delete(selected, opts)?;
    if fs::metadata(&opts.target).is_ok_and(|m| !m.is_dir()) {
        return Err(Error::InvalidInput(format!(
            "the restore target {} exists and is not a directory",
            opts.target.display()
        )));
    }
    let (target, fresh) = open_target(&opts.target).map_err(|e| Error::io(&opts.target, e))?;
    let target = Arc::new(target);
    let target_stat = target.stat_self().ok();
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    // One more worker than cores keeps the CPUs busy while some wait for the disk (direct
    // writes are synchronous); from a remote repository, `connections` reads stay in flight
    // while the cores open and write what has arrived.
    let backend = repo.backend();
    let workers = if backend.is_remote() {
        threads + backend.connections()
    } else {
        (threads + 1).max(backend.connections())
    };
    let shared = Shared {
        repo,
        opts,
        progress,
        out: Mutex::new(RestoreOutcome::default()),
        flow: Mutex::new(Flow::default()),
        changed: Condvar::new(),
        disk_full: Arc::new(AtomicBool::new(false)),
        target: target.clone(),
    };
    let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
    let mut out = std::thread::scope(|scope| {
        for _ in 0..workers {
            let queue = queue.clone();
            let shared = &shared;
            scope.spawn(move || worker(shared, queue));
        }
        drop(queue);
        let mut r = Restorer {
            shared: &shared,
            jobs,
            target: target.clone(),
            stack: vec![Frame {
                rel: PathBuf::new(),
                state: FrameState::Open(target.clone()),
                made: fresh,
                id: target_stat.map(|st| (st.dev, st.ino)),
                // `--overwrite never` puts the times of a target that was there back.
                times: target_stat
                    .filter(|_| !fresh && opts.overwrite == Overwrite::Never)
                    .map(|st| (st.atime, st.mtime)),
            }],
            out: RestoreOutcome::default(),
            links: HashMap::new(),
            batch: Vec::new(),
            batch_files: batch_files(),
            batch_bytes: 0,
            seq: 1,
            recent: VecDeque::new(),
            dirs: VecDeque::new(),
        };
        let base = Path::new("/").join(&opts.base);
        let walked = match selected {
            Selected::Dir(id) => repo
                .read_tree(id)
                .and_then(|tree| r.restore_tree(&tree, &base).map(|()| (tree, base)))
                .map(|(tree, base)| r.delete_extras(&tree, &base)),
            Selected::Entry(node) => {
                let parent = base.parent().unwrap_or(Path::new("/")).to_path_buf();
                r.restore_node(node, &parent)
            }
        };
        walked.and_then(|()| r.finish()).map(|()| r.out)
        // Dropping the restorer closes the queue: the workers finish what is queued and end.
    })?;
    let theirs = shared.out.into_inner().unwrap_or_else(|p| p.into_inner());
    out.absorb(theirs);
    out.disk_full = shared.disk_full.load(Ordering::Relaxed);
    // One filesystem-wide flush at the end instead of an fsync per file.
    if let Err(e) = target.sync_filesystem() {
        out.errors.push(RestoreError {
            path: opts.target.clone(),
            error: format!("flushing the restored files to the disk failed: {e}"),
        });
    }
    Ok(out)
}

/// Refuses `--delete` where it cannot mean what it says: with `--overwrite never` (which
/// changes nothing that exists), and when the selection is one file (the rest of the target
/// would be "everything the snapshot does not hold").
fn check_delete(selected: &Selected, opts: &RestoreOptions) -> Result<()> {
    if !opts.delete {
        return Ok(());
    }
    if opts.overwrite == Overwrite::Never {
        return Err(Error::InvalidInput(
            "--delete cannot be combined with --overwrite never: deleting changes what exists, \
             which --overwrite never promises not to do"
                .into(),
        ));
    }
    if let Selected::Entry(node) = selected {
        return Err(Error::InvalidInput(format!(
            "--delete needs a directory to mirror, but {} selects a single {}; restore its \
             directory, or leave out --delete",
            Path::new("/").join(&opts.base).display(),
            crate::safe_fs::kind_name(node.kind)
        )));
    }
    Ok(())
}

/// Opens the target directory, making it if it does not exist; true when this restore made it
/// (so it is empty). Symlinks in the path the user gave are followed, but a target this restore
/// makes is made and opened relative to its parent, so nobody can swap a symlink in between.
fn open_target(path: &Path) -> io::Result<(Dir, bool)> {
    if fs::symlink_metadata(path).is_ok() {
        return Ok((Dir::open(path)?, false));
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        fs::create_dir_all(path)?;
        return Ok((Dir::open(path)?, false));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    fs::create_dir_all(parent)?;
    let parent = Dir::open(parent)?;
    let made = match parent.create_dir(name.as_bytes(), 0o777) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(e),
    };
    Ok((parent.open_dir(name.as_bytes())?, made))
}

impl RestoreOutcome {
    /// Adds what another part of the restore did.
    fn absorb(&mut self, other: RestoreOutcome) {
        self.files += other.files;
        self.dirs += other.dirs;
        self.other += other.other;
        self.skipped += other.skipped;
        self.bytes += other.bytes;
        self.verified_files += other.verified_files;
        self.damaged.extend(other.damaged);
        self.errors.extend(other.errors);
        self.disk_full |= other.disk_full;
        self.deleted.extend(other.deleted);
    }
}

/// Used by `ls` and others: visits every node under `tree` depth-first, in name order, with its
/// path relative to the tree.
pub fn walk(
    repo: &Repository,
    tree: TreeId,
    prefix: &Path,
    visit: &mut dyn FnMut(&Path, &Node) -> io::Result<()>,
) -> Result<()> {
    let t = repo.read_tree(&tree)?;
    for node in &t.nodes {
        let path = prefix.join(OsStr::from_bytes(&node.name));
        visit(&path, node).map_err(|e| Error::io(&path, e))?;
        if let Some(sub) = node.subtree {
            walk(repo, sub, &path, visit)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{mem_repo, Rng};
    use std::sync::atomic::AtomicUsize;

    /// Workers that write slowly (a USB disk) while the walk is far ahead, waiting for them:
    /// Ctrl-C then must end the restore promptly with `Interrupted`, not leave the walk
    /// waiting for batches whose remaining jobs the workers now skip.
    #[test]
    fn ctrl_c_while_the_walk_waits_for_slow_workers_ends_the_restore() {
        use crate::backup::{backup, BackupOptions, NoProgress};
        let tmp = tempfile::tempdir().expect("tmp");
        let src = tmp.path().join("src");
        fs::create_dir_all(&src).expect("mkdir");
        // Incompressible files in small packs: each batch of files is several jobs.
        let mut rng = Rng(7);
        for i in 0..900u32 {
            let data: Vec<u8> = (0..20_000).map(|_| rng.next() as u8).collect();
            fs::write(src.join(format!("f{i:04}")), data).expect("write");
        }
        let (_, mut repo) = mem_repo(b"pw");
        let bopts = BackupOptions {
            paths: vec![src.clone()],
            host: "h".into(),
            time_ns: 1,
            threads: 1,
            ..BackupOptions::default()
        };
        let out = backup(&mut repo, &bopts, &NoProgress).expect("backup");
        let snap = repo
            .read_snapshot(&out.snapshot_id.expect("a snapshot"))
            .expect("snapshot");

        struct Slow {
            writes: AtomicUsize,
            cancel: Arc<AtomicBool>,
        }
        impl RestoreProgress for Slow {
            fn bytes_done(&self, _n: u64) {
                std::thread::sleep(std::time::Duration::from_millis(5));
                if self.writes.fetch_add(1, Ordering::Relaxed) == 20 {
                    self.cancel.store(true, Ordering::Relaxed);
                }
            }
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let progress = Slow {
            writes: AtomicUsize::new(0),
            cancel: cancel.clone(),
        };
        let ropts = RestoreOptions {
            target: tmp.path().join("target"),
            cancel: Some(cancel),
            threads: 2,
            ..RestoreOptions::default()
        };
        // Its own thread, so that a restore that never ends fails the test instead of hanging it.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = restore(&repo, &Selected::Dir(snap.tree), &ropts, &progress);
            let _ = done_tx.send(matches!(r, Err(Error::Interrupted)));
        });
        let interrupted = done_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the restore ended after Ctrl-C");
        assert!(interrupted, "the restore reported Interrupted");
    }
}

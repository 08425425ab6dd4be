//! Restore: walk a snapshot's tree, write file content at its offsets (holes stay holes), then
//! metadata, directories last. A blob that fails authentication or its id check makes that file
//! damaged: it is removed, named in the outcome, and the rest of the restore goes on.
//!
//! The target may already hold anything: files, symlinks pointing outside it, hard links to
//! files outside it, FIFOs. Every entry below the target is reached through the descriptor of
//! its directory and never through a symlink (src/safe_fs.rs), so a restore never writes,
//! creates or deletes anything outside its target. What stands in the way of the snapshot is
//! replaced only as [`Overwrite`] says; a directory that is not empty is never removed.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

use crate::aligned::{align_down, align_up, AlignedBuf, ALIGN};
use crate::backend::FileKind;
use crate::error::{Error, Result};
use crate::format::DecodeBufs;
use crate::id::{BlobId, PackId, TreeId};
use crate::pack::{self, PackEntry};
use crate::repo::Repository;
use crate::safe_fs::{self, kind_name, Dir};
use crate::tree::{Node, NodeKind, Tree};

/// What to do with an entry that already exists where the snapshot has one.
///
/// Only entries at paths the snapshot holds are ever replaced; nothing the snapshot does not
/// contain is touched, and no mode removes a directory that is not empty (it is reported as
/// an obstacle and left in place).
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

#[derive(Clone, Default)]
pub struct RestoreOptions {
    pub target: PathBuf,
    pub overwrite: Overwrite,
    /// Re-read every restored file, and every existing file kept in its place, and check it
    /// against the snapshot's chunk ids.
    pub verify: bool,
    /// Set ownership (only possible as root).
    pub set_owner: bool,
    pub cancel: Option<Arc<AtomicBool>>,
    /// Restore only the non-directory entries this accepts (given their path in the snapshot);
    /// directories are then created only where something inside them is restored.
    pub select: Option<Selector>,
    /// The path in the snapshot that the selection starts at (for `select` and messages).
    pub base: PathBuf,
    /// Threads that read, open and write file content (0: one per core).
    pub threads: usize,
}

/// Decides which entries a restore writes, by their path in the snapshot.
pub type Selector = Arc<dyn Fn(&Path, &Node) -> bool + Send + Sync>;

/// A restored entry that is missing, damaged or lacks some metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreError {
    pub path: PathBuf,
    pub error: String,
}

#[derive(Debug, Default)]
pub struct RestoreOutcome {
    pub files: u64,
    pub dirs: u64,
    pub other: u64,
    /// Entries kept as they were (`--overwrite never` or `if-changed`) and sockets.
    pub skipped: u64,
    /// Bytes of file content written (of files that were restored).
    pub bytes: u64,
    pub verified_files: u64,
    /// Files whose content could not be restored (damaged or missing data); not left on disk.
    pub damaged: Vec<RestoreError>,
    /// Everything else that went wrong: entries in the way, failed writes, metadata.
    pub errors: Vec<RestoreError>,
    /// The target's file system ran out of space: the restore stopped there.
    pub disk_full: bool,
}

impl RestoreOutcome {
    pub fn ok(&self) -> bool {
        self.damaged.is_empty() && self.errors.is_empty() && !self.disk_full
    }
}

pub trait RestoreProgress: Send + Sync {
    fn file_started(&self, _path: &Path) {}
    fn bytes_done(&self, _n: u64) {}
}

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
/// ahead of the workers by at most [`BATCHES_IN_FLIGHT`] batches, which bounds memory and open
/// descriptors whatever the size of the snapshot. Directory metadata follows the last file
/// inside the directory.
pub fn restore(
    repo: &Repository,
    selected: &Selected,
    opts: &RestoreOptions,
    progress: &dyn RestoreProgress,
) -> Result<RestoreOutcome> {
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
    // writes are synchronous); a remote repository answers faster with more reads in flight.
    let workers = (threads + 1).max(repo.backend().connections());
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
                .and_then(|tree| r.restore_tree(&tree, &base)),
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

/// Batches queued or being written while the walk goes on. With two, workers sat idle while
/// the last job of the older batch ran and the walk could hand out nothing new.
const BATCHES_IN_FLIGHT: u64 = 4;

/// Directories of the walk's path held open at once; deeper ones give back the descriptors of
/// their shallower ancestors, which are opened again (beneath the target) when the walk
/// returns to them. Bounds descriptors whatever the depth of the tree.
const OPEN_DIRS: usize = 32;

/// What the walking thread and the workers share.
struct Shared<'a> {
    repo: &'a Repository,
    opts: &'a RestoreOptions,
    progress: &'a dyn RestoreProgress,
    /// What the workers did (content, checks, file metadata, hard links).
    out: Mutex<RestoreOutcome>,
    flow: Mutex<Flow>,
    /// Signalled whenever a batch is finished.
    changed: Condvar,
    /// A write found the target's file system full: nothing more is written.
    disk_full: Arc<AtomicBool>,
    /// The target directory (hard links waiting for their first file are made beneath it).
    target: Arc<Dir>,
}

/// Which batches are finished.
#[derive(Default)]
struct Flow {
    /// Every batch up to this one is finished.
    done_through: u64,
    /// Finished batches after a still unfinished one.
    finished: BTreeSet<u64>,
}

impl Shared<'_> {
    fn cancelled(&self) -> bool {
        self.opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    fn disk_full(&self) -> bool {
        self.disk_full.load(Ordering::Relaxed)
    }

    fn flow(&self) -> MutexGuard<'_, Flow> {
        self.flow.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn batch_finished(&self, seq: u64) {
        let mut flow = self.flow();
        flow.finished.insert(seq);
        loop {
            let next = flow.done_through + 1;
            if !flow.finished.remove(&next) {
                break;
            }
            flow.done_through = next;
        }
        self.changed.notify_all();
    }

    /// Waits until every batch up to `seq` is finished. Interrupted (Ctrl-C) while waiting:
    /// the workers then skip what is queued, so those batches never finish.
    fn wait_through(&self, seq: u64) -> Result<()> {
        let mut flow = self.flow();
        while flow.done_through < seq {
            if self.cancelled() {
                return Err(Error::Interrupted);
            }
            flow = self
                .changed
                .wait_timeout(flow, std::time::Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(())
    }

    /// The last step of a file: checks what happened to it, closes it, verifies it if asked,
    /// applies its metadata and makes the hard links that wait for it.
    fn finish_file(&self, batch: &BatchState, i: usize) {
        let f = &batch.files[i];
        f.write_held_back();
        // A file with nothing to write (empty, all holes) and no problem is created only now.
        if f.problems().is_empty() {
            f.with_out(|_| ());
        }
        let problems = std::mem::take(&mut *f.problems());
        let links = {
            let mut l = f.links.lock().unwrap_or_else(|p| p.into_inner());
            l.finished = true;
            std::mem::take(&mut l.paths)
        };
        let mut done = RestoreOutcome::default();
        if !problems.is_empty() {
            let (error, damaged) = problems.describe();
            let error = f
                .remove_own()
                .map_or(error.clone(), |also| format!("{error}; {also}"));
            // Links are not made: they would share the missing content.
            for link in links {
                let e = RestoreError {
                    path: link.path,
                    error: error.clone(),
                };
                if damaged {
                    done.damaged.push(e);
                } else {
                    done.errors.push(e);
                }
            }
            let e = RestoreError {
                path: f.path.clone(),
                error,
            };
            if damaged {
                done.damaged.push(e);
            } else {
                done.errors.push(e);
            }
        } else {
            let verified = if self.opts.verify {
                // Read back through the descriptor it was written with (opened for reading
                // too): the very file, whatever its name is now.
                let reopened = f
                    .with_out(|out| out.file.try_clone())
                    .unwrap_or_else(|| f.dir.open_file(&f.name));
                match reopened {
                    Ok(file) => {
                        verify_reader(self.repo, file, &f.node).map(|()| done.verified_files += 1)
                    }
                    Err(e) => Err(format!("verify: cannot reopen: {e}")),
                }
            } else {
                Ok(())
            };
            match verified {
                Err(error) => {
                    // Not left on disk, and neither are its links (named too).
                    let error = f
                        .remove_own()
                        .map_or(error.clone(), |also| format!("{error}; {also}"));
                    for link in links {
                        done.damaged.push(RestoreError {
                            path: link.path,
                            error: error.clone(),
                        });
                    }
                    done.damaged.push(RestoreError {
                        path: f.path.clone(),
                        error,
                    });
                }
                Ok(()) => {
                    let applied = f.with_out(|out| {
                        safe_fs::apply_fd_metadata(out.file.as_fd(), &f.node, self.opts.set_owner)
                    });
                    f.close();
                    if let Some(Err(e)) = applied {
                        done.errors.push(RestoreError {
                            path: f.path.clone(),
                            error: format!("metadata: {e}"),
                        });
                    }
                    done.files += 1;
                    done.bytes += f.written.load(Ordering::Relaxed);
                    for link in links {
                        match link.link_to(&self.target, &f.dir, &f.name) {
                            Ok(()) => done.files += 1,
                            Err(e) => done.errors.push(RestoreError {
                                path: link.path,
                                error: format!("hard link to {}: {e}", f.path.display()),
                            }),
                        }
                    }
                }
            }
        }
        self.out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .absorb(done);
        if batch.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.batch_finished(batch.seq);
        }
    }
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
    }
}

/// A directory of the walk's path: the target itself at the bottom of the stack, then each
/// snapshot directory being restored into it.
struct Frame {
    /// Its path relative to the target (empty for the target); its name is the last part.
    rel: PathBuf,
    state: FrameState,
    /// Made by this restore: nothing can be in it but what the restore put there, so entries
    /// need no look before they are made (a make that finds something there anyway fails).
    made: bool,
    /// Device and inode of the directory once opened: its metadata is applied at the end
    /// only to this very directory.
    id: Option<(u64, u64)>,
    /// With `--overwrite never`, an existing directory's access and modification times, put
    /// back once the entries restored into it are made.
    times: Option<Times>,
}

/// Access and modification times, (seconds, nanoseconds) each.
type Times = ((i64, u32), (i64, u32));

/// A closed directory waiting for its files: the batch that must be finished first, its path
/// relative to the target, its device and inode, and what to do.
type WaitingDir = (u64, PathBuf, Option<(u64, u64)>, DirWork);

/// What is done to a directory once every file inside it is finished.
enum DirWork {
    /// The snapshot's metadata.
    Meta(Box<Node>),
    /// Its own times put back (`--overwrite never`).
    Times(Times),
}

enum FrameState {
    /// Not in the target yet: a selective restore makes it when something goes into it.
    Pending,
    Open(Arc<Dir>),
    /// Was open; its descriptor was given back (see [`OPEN_DIRS`]).
    Closed,
    /// Could not be made or opened (reported once); nothing below it is restored.
    Failed,
}

/// The first restored path of a hard-link group, relative to the target.
#[derive(Clone)]
struct FirstLink {
    rel: PathBuf,
}

/// Where an entry goes: its directory and name, and its full path for messages.
struct LinkAt {
    /// Relative to the target: its directory is opened (beneath the target) only when the
    /// link is made, so links waiting for their first file hold no descriptor.
    rel: PathBuf,
    path: PathBuf,
}

impl LinkAt {
    /// Makes this entry another link to `name` in `dir`.
    fn link_to(&self, target: &Dir, dir: &Dir, name: &[u8]) -> io::Result<()> {
        let (parent, own) = split_rel(&self.rel);
        let at = target.open_beneath(parent)?;
        dir.hard_link(name, &at, own)
    }
}

/// The directory (relative to the target) and the name of an entry's relative path.
fn split_rel(rel: &Path) -> (&Path, &[u8]) {
    (
        rel.parent().unwrap_or(Path::new("")),
        rel.file_name().map(|n| n.as_bytes()).unwrap_or_default(),
    )
}

/// The walk: directories, special files and links are made as it goes; files are gathered
/// into batches for the workers.
struct Restorer<'a, 's> {
    shared: &'s Shared<'a>,
    jobs: crossbeam_channel::Sender<Job>,
    target: Arc<Dir>,
    /// The target and the directories the walk is in.
    stack: Vec<Frame>,
    /// What the walk itself did.
    out: RestoreOutcome,
    /// First restored path of each hard-link group, and where it is pending.
    links: HashMap<(u64, u64), (FirstLink, Option<PendingAt>)>,
    /// Files of the batch being gathered (number `seq`).
    batch: Vec<Pending>,
    /// Files a batch holds at most (see [`batch_files`]).
    batch_files: usize,
    batch_bytes: u64,
    seq: u64,
    /// Batches handed to the workers that may still be running (for hard links to them).
    recent: VecDeque<Arc<BatchState>>,
    /// Closed directories waiting for their files: (batch that must be finished, path
    /// relative to the target, device and inode, what to do).
    dirs: VecDeque<WaitingDir>,
}

/// Whether an entry may be made where the snapshot has it.
enum Way {
    /// Nothing is there (any more).
    Clear,
    /// Something stays there (kept, or reported as an obstacle).
    Blocked,
}

impl Restorer<'_, '_> {
    fn error(&mut self, path: &Path, e: impl std::fmt::Display) {
        self.out.errors.push(RestoreError {
            path: path.to_path_buf(),
            error: e.to_string(),
        });
    }

    /// The full path of an entry of the target, for messages.
    fn shown(&self, rel: &Path) -> PathBuf {
        self.shared.opts.target.join(rel)
    }

    fn top(&self) -> &Frame {
        &self.stack[self.stack.len() - 1]
    }

    fn restore_tree(&mut self, tree: &Tree, snap_dir: &Path) -> Result<()> {
        for node in &tree.nodes {
            if self.shared.cancelled() {
                return Err(Error::Interrupted);
            }
            if self.shared.disk_full() {
                return Ok(());
            }
            self.restore_node(node, snap_dir)?;
        }
        Ok(())
    }

    fn restore_node(&mut self, node: &Node, snap_dir: &Path) -> Result<()> {
        let snap_path = snap_dir.join(OsStr::from_bytes(&node.name));
        let rel = self.top().rel.join(OsStr::from_bytes(&node.name));
        if node.kind == NodeKind::Dir {
            return self.restore_dir(node, rel, &snap_path);
        }
        if let Some(select) = &self.shared.opts.select {
            if !select(&snap_path, node) {
                return Ok(());
            }
        }
        if node.kind == NodeKind::Socket {
            // A socket belongs to the process that made it; there is nothing to restore, and
            // nothing in the target is touched for it.
            self.out.skipped += 1;
            return Ok(());
        }
        let path = self.shown(&rel);
        // Parents of a selected entry are made on demand; their metadata follows later.
        let Some(dir) = self.current_dir() else {
            return Ok(());
        };
        if !self.top().made {
            if let Way::Blocked = self.clear_the_way(&dir, node, &path) {
                return Ok(());
            }
        }
        if let Some(group) = node.link_group() {
            if let Some((first, pending)) = self.links.get(&group).cloned() {
                let at = LinkAt {
                    rel: rel.clone(),
                    path: path.clone(),
                };
                if self.link_to(&first, pending, at, &dir, node.kind)? {
                    return Ok(());
                }
            }
        }
        let created = match node.kind {
            NodeKind::File => {
                self.restore_file(dir.clone(), path.clone(), node);
                Ok(())
            }
            NodeKind::Symlink => {
                let target = node.target.clone().unwrap_or_default();
                dir.symlink(&target, &node.name)
            }
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                dir.mknod(&node.name, node)
            }
            // Handled above.
            NodeKind::Socket | NodeKind::Dir => return Ok(()),
        };
        match created {
            Ok(()) => {
                if node.kind == NodeKind::File {
                    if let Some(group) = node.link_group() {
                        let pending = (self.seq, self.batch.len() - 1);
                        self.links
                            .entry(group)
                            .or_insert_with(|| (FirstLink { rel: rel.clone() }, Some(pending)));
                    }
                    // Content, checks and metadata follow when the batch is written.
                    if self.batch.len() >= self.batch_files || self.batch_bytes >= BATCH_BYTES {
                        self.submit()?;
                    }
                } else {
                    if let Some(group) = node.link_group() {
                        self.links
                            .entry(group)
                            .or_insert_with(|| (FirstLink { rel: rel.clone() }, None));
                    }
                    if let Err(e) =
                        dir.set_entry_metadata(&node.name, node, self.shared.opts.set_owner)
                    {
                        self.error(&path, format!("metadata: {e}"));
                    }
                    self.out.other += 1;
                }
            }
            Err(e) => self.io_error(&path, "cannot create", &e),
        }
        Ok(())
    }

    /// A directory of the snapshot: made (or found) in the target — at once, or on first use
    /// in a selective restore — then its entries, then (once its files are written) its
    /// metadata.
    fn restore_dir(&mut self, node: &Node, rel: PathBuf, snap_path: &Path) -> Result<()> {
        if self
            .stack
            .iter()
            .any(|f| matches!(f.state, FrameState::Failed))
        {
            // An ancestor could not be made (reported): nothing below it can be restored.
            return Ok(());
        }
        self.stack.push(Frame {
            rel,
            state: FrameState::Pending,
            made: false,
            id: None,
            times: None,
        });
        if self.shared.opts.select.is_none() {
            self.current_dir();
        }
        let walked = match (&self.top().state, node.subtree) {
            (FrameState::Failed, _) | (_, None) => Ok(()),
            (_, Some(sub)) => self.restore_subtree(sub, snap_path),
        };
        let Some(frame) = self.stack.pop() else {
            return walked;
        };
        walked?;
        if matches!(frame.state, FrameState::Open(_) | FrameState::Closed) {
            self.out.dirs += 1;
            // `--overwrite never` leaves the metadata of a directory that was there alone,
            // and puts its times back once the entries restored into it are made.
            if frame.made || self.shared.opts.overwrite != Overwrite::Never {
                self.finish_dir(frame.rel, frame.id, DirWork::Meta(Box::new(node.clone())));
            } else if let Some(times) = frame.times {
                self.finish_dir(frame.rel, frame.id, DirWork::Times(times));
            }
        }
        Ok(())
    }

    /// The directory the walk is in, made or opened now if it is not yet; None when it (or a
    /// directory above it) cannot be, which was reported.
    fn current_dir(&mut self) -> Option<Arc<Dir>> {
        let top = self.stack.len() - 1;
        // The deepest directory that is in the target already (the target, frame 0, always is).
        let mut base = top;
        while matches!(self.stack[base].state, FrameState::Pending) {
            base = base.checked_sub(1)?;
        }
        match &self.stack[base].state {
            FrameState::Failed => return None,
            FrameState::Closed => {
                // Opened again directly beneath the target: the directories above it need
                // no descriptor.
                let state = match self.target.open_beneath(&self.stack[base].rel) {
                    Ok(d) => FrameState::Open(Arc::new(d)),
                    Err(e) => {
                        let path = self.shown(&self.stack[base].rel);
                        self.error(&path, format_args!("cannot open the directory again: {e}"));
                        FrameState::Failed
                    }
                };
                self.stack[base].state = state;
                if matches!(self.stack[base].state, FrameState::Failed) {
                    return None;
                }
            }
            _ => {}
        }
        // Then each directory not made yet, in its parent.
        for j in base + 1..=top {
            let state = self.make_dir(j);
            let failed = matches!(state, FrameState::Failed);
            self.stack[j].state = state;
            if failed {
                return None;
            }
            self.limit_open_dirs(j);
        }
        match &self.stack[top].state {
            FrameState::Open(d) => Some(d.clone()),
            _ => None,
        }
    }

    /// Gives back the descriptor of the directory [`OPEN_DIRS`] levels above frame `j` (never
    /// the target's), so that at most that many are held whatever the depth.
    fn limit_open_dirs(&mut self, j: usize) {
        if j > OPEN_DIRS {
            let f = &mut self.stack[j - OPEN_DIRS];
            if matches!(f.state, FrameState::Open(_)) {
                f.state = FrameState::Closed;
            }
        }
    }

    /// Makes (or opens the existing) directory of frame `j` in its parent, which is open.
    fn make_dir(&mut self, j: usize) -> FrameState {
        let FrameState::Open(parent) = &self.stack[j - 1].state else {
            return FrameState::Failed;
        };
        let parent = parent.clone();
        let parent_made = self.stack[j - 1].made;
        let name = split_rel(&self.stack[j].rel).1.to_vec();
        let path = self.shown(&self.stack[j].rel);
        // In a directory this restore made, nothing is there yet: no look first. Should
        // something be there anyway, the make fails and the look below decides.
        if parent_made {
            match parent.create_dir(&name, 0o700) {
                Ok(()) => return self.open_made(j, &parent, &name, &path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    self.io_error(&path, "cannot create the directory", &e);
                    return FrameState::Failed;
                }
            }
        }
        let existing = match parent.stat(&name) {
            Ok(s) => s,
            Err(e) => {
                self.error(
                    &path,
                    format_args!("cannot look at the existing entry: {e}"),
                );
                return FrameState::Failed;
            }
        };
        match existing {
            Some(st) if st.kind == NodeKind::Dir => match parent.open_dir(&name) {
                Ok(d) => {
                    if let Ok(st) = d.stat_self() {
                        self.stack[j].id = Some((st.dev, st.ino));
                        if self.shared.opts.overwrite == Overwrite::Never {
                            self.stack[j].times = Some((st.atime, st.mtime));
                        }
                    }
                    FrameState::Open(Arc::new(d))
                }
                Err(e) => {
                    self.error(
                        &path,
                        format_args!("cannot open the existing directory: {e}"),
                    );
                    FrameState::Failed
                }
            },
            Some(st) if self.shared.opts.overwrite == Overwrite::Never => {
                self.error(
                    &path,
                    format_args!(
                        "not restored: a {} is in the way where the snapshot has a directory \
                         (kept: --overwrite never)",
                        kind_name(st.kind)
                    ),
                );
                FrameState::Failed
            }
            Some(st) => {
                // A file, symlink or special file where the snapshot has a directory: removed
                // (a symlink as itself, never what it points to).
                if let Err(e) = parent.remove_file(&name) {
                    self.error(
                        &path,
                        format_args!("cannot replace the existing {}: {e}", kind_name(st.kind)),
                    );
                    return FrameState::Failed;
                }
                match parent.create_dir(&name, 0o700) {
                    Ok(()) => self.open_made(j, &parent, &name, &path),
                    Err(e) => {
                        self.io_error(&path, "cannot create the directory", &e);
                        FrameState::Failed
                    }
                }
            }
            None => match parent.create_dir(&name, 0o700) {
                Ok(()) => self.open_made(j, &parent, &name, &path),
                Err(e) => {
                    self.io_error(&path, "cannot create the directory", &e);
                    FrameState::Failed
                }
            },
        }
    }

    /// Opens a directory this restore just made.
    fn open_made(&mut self, j: usize, parent: &Dir, name: &[u8], path: &Path) -> FrameState {
        match parent.open_dir(name) {
            Ok(d) => {
                self.stack[j].made = true;
                self.stack[j].id = d.stat_self().ok().map(|st| (st.dev, st.ino));
                FrameState::Open(Arc::new(d))
            }
            Err(e) => {
                self.error(path, format_args!("cannot open the new directory: {e}"));
                FrameState::Failed
            }
        }
    }

    /// Decides about an entry that may exist where the snapshot has the non-directory `node`;
    /// removes it when it is to be replaced.
    fn clear_the_way(&mut self, dir: &Dir, node: &Node, path: &Path) -> Way {
        let st = match dir.stat(&node.name) {
            Ok(None) => return Way::Clear,
            Ok(Some(st)) => st,
            Err(e) => {
                self.error(path, format_args!("cannot look at the existing entry: {e}"));
                return Way::Blocked;
            }
        };
        let overwrite = self.shared.opts.overwrite;
        match overwrite {
            Overwrite::Never if st.kind != node.kind => {
                self.error(
                    path,
                    format_args!(
                        "not restored: a {} is in the way where the snapshot has a {} \
                         (kept: --overwrite never)",
                        kind_name(st.kind),
                        kind_name(node.kind)
                    ),
                );
                return Way::Blocked;
            }
            Overwrite::Never => {
                self.keep_existing(dir, node, path, "--overwrite never");
                return Way::Blocked;
            }
            Overwrite::IfChanged
                if node.kind == NodeKind::File
                    && st.kind == NodeKind::File
                    && st.size == node.size
                    && st.mtime == (node.mtime.0, node.mtime.1) =>
            {
                self.keep_existing(dir, node, path, "--overwrite if-changed");
                return Way::Blocked;
            }
            _ => {}
        }
        // Replace: unlinked first, so other hard links to the old file keep their content.
        let removed = if st.kind == NodeKind::Dir {
            dir.remove_empty_dir(&node.name)
        } else {
            dir.remove_file(&node.name)
        };
        match removed {
            Ok(()) => Way::Clear,
            Err(e)
                if st.kind == NodeKind::Dir
                    && matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) =>
            {
                self.error(
                    path,
                    format_args!(
                        "not restored: a directory that is not empty is in the way where the \
                         snapshot has a {} (left in place)",
                        kind_name(node.kind)
                    ),
                );
                Way::Blocked
            }
            Err(e) => {
                self.error(
                    path,
                    format_args!("cannot replace the existing {}: {e}", kind_name(st.kind)),
                );
                Way::Blocked
            }
        }
    }

    /// Counts an existing entry kept in place; with `verify`, a kept file is read and compared
    /// with the snapshot (a difference is reported, the file is left as it is).
    fn keep_existing(&mut self, dir: &Dir, node: &Node, path: &Path, why: &str) {
        self.out.skipped += 1;
        if !self.shared.opts.verify || node.kind != NodeKind::File {
            return;
        }
        let checked = dir
            .open_file(&node.name)
            .map_err(|e| format!("verify: cannot open: {e}"))
            .and_then(|f| verify_reader(self.shared.repo, f, node));
        match checked {
            Ok(()) => self.out.verified_files += 1,
            Err(e) => self.error(
                path,
                format_args!(
                    "the existing file differs from the snapshot ({e}); left as it is ({why})"
                ),
            ),
        }
    }

    /// Makes `at` another link to `first`, now or (when `first` is still being written) when
    /// `first` is finished. False when that fails and a copy is to be restored instead.
    fn link_to(
        &mut self,
        first: &FirstLink,
        pending: Option<PendingAt>,
        at: LinkAt,
        dir: &Dir,
        kind: NodeKind,
    ) -> Result<bool> {
        if let Some((seq, i)) = pending {
            let links = if seq == self.seq {
                self.batch.get(i).map(|f| &f.links)
            } else {
                self.recent
                    .iter()
                    .find(|b| b.seq == seq)
                    .and_then(|b| b.files.get(i))
                    .map(|f| &f.links)
            };
            if let Some(links) = links {
                let mut l = links.lock().unwrap_or_else(|p| p.into_inner());
                if !l.finished {
                    // Made (and counted) when the first link's content is complete.
                    l.paths.push(at);
                    return Ok(true);
                }
            }
            // That batch is finished: the first link exists (or was damaged and removed).
            self.shared.wait_through(seq)?;
        }
        let (parent, name) = split_rel(&first.rel);
        let (_, own) = split_rel(&at.rel);
        let linked = self
            .target
            .open_beneath(parent)
            .and_then(|d| d.hard_link(name, dir, own));
        match linked {
            Ok(()) => {
                if kind == NodeKind::File {
                    self.out.files += 1;
                } else {
                    self.out.other += 1;
                }
                Ok(true)
            }
            Err(e) => {
                let first = self.shown(&first.rel);
                self.error(
                    &at.path,
                    format_args!("hard link to {}: {e}; restoring a copy", first.display()),
                );
                Ok(false)
            }
        }
    }

    /// Queues a file for the batch being gathered; it is created when the workers first write
    /// to it (at its final size: holes stay holes).
    fn restore_file(&mut self, dir: Arc<Dir>, path: PathBuf, node: &Node) {
        self.shared.progress.file_started(&path);
        self.batch_bytes += node.size;
        self.batch.push(Pending::new(
            dir,
            path,
            node.clone(),
            self.shared.disk_full.clone(),
        ));
    }

    /// Restores a directory's entries; a tree that cannot be read is reported as damage.
    fn restore_subtree(&mut self, sub: TreeId, snap_path: &Path) -> Result<()> {
        match self.shared.repo.read_tree(&sub) {
            Ok(t) => self.restore_tree(&t, snap_path),
            Err(e) => {
                let path = self.shown(&self.top().rel);
                let local =
                    matches!(&e, Error::Backend { source, .. } if is_local_shortage(source));
                let err = RestoreError {
                    path,
                    error: format!("directory contents cannot be read: {e}"),
                };
                if local {
                    self.out.errors.push(err);
                } else {
                    self.out.damaged.push(err);
                }
                Ok(())
            }
        }
    }

    /// Applies a directory's metadata (or puts its times back) once every batch holding some
    /// of its files is finished.
    fn finish_dir(&mut self, rel: PathBuf, id: Option<(u64, u64)>, work: DirWork) {
        let after = if self.batch.is_empty() {
            self.seq - 1
        } else {
            self.seq
        };
        self.dirs.push_back((after, rel, id, work));
        self.apply_ready_dirs();
    }

    /// Applies the metadata of the waiting directories whose files are all finished
    /// (innermost first: they were queued as they closed), through a descriptor opened
    /// beneath the target without following symlinks — to the directory the restore made or
    /// opened, and to no other put in its place since.
    fn apply_ready_dirs(&mut self) {
        let done = self.shared.flow().done_through;
        while self
            .dirs
            .front()
            .is_some_and(|(after, _, _, _)| *after <= done)
        {
            let Some((_, rel, id, work)) = self.dirs.pop_front() else {
                break;
            };
            let applied = self.target.open_beneath(&rel).and_then(|d| {
                let st = d.stat_self()?;
                if id.is_some_and(|id| id != (st.dev, st.ino)) {
                    return Err(io::Error::other(
                        "the directory was replaced while it was restored; its metadata was not applied",
                    ));
                }
                match &work {
                    DirWork::Meta(node) => {
                        safe_fs::apply_fd_metadata(d.as_fd(), node, self.shared.opts.set_owner)
                    }
                    DirWork::Times((atime, mtime)) => safe_fs::set_fd_times(d.as_fd(), *atime, *mtime),
                }
            });
            if let Err(e) = applied {
                let path = self.shown(&rel);
                self.error(&path, format_args!("metadata: {e}"));
            }
        }
    }

    /// Reports a failed operation on the target; a full disk stops the restore.
    fn io_error(&mut self, path: &Path, what: &str, e: &io::Error) {
        if is_disk_full(e) {
            self.shared.disk_full.store(true, Ordering::Relaxed);
            self.error(path, format_args!("{what}: the disk is full ({e})"));
        } else {
            self.error(path, format_args!("{what}: {e}"));
        }
    }

    /// Hands the gathered batch to the workers: one job per pack, its blobs in offset order.
    fn submit(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let files = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let seq = self.seq;
        self.seq += 1;
        // Plan: pack → its needed blobs in offset order → where each blob goes.
        let mut by_blob: HashMap<BlobId, Dests> = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            let mut offset = 0u64;
            for part in &f.node.content {
                if let Some(id) = part.chunk() {
                    by_blob.entry(id).or_default().push((i, offset));
                }
                offset += part.len();
            }
        }
        let mut by_pack: HashMap<PackId, Vec<(PackEntry, Dests)>> = HashMap::new();
        for (id, dests) in by_blob {
            match self.shared.repo.index().get(&id) {
                Some(loc) => {
                    for &(i, _) in &dests {
                        files[i].left.fetch_add(1, Ordering::Relaxed);
                    }
                    by_pack
                        .entry(loc.pack)
                        .or_default()
                        .push((loc.entry, dests));
                }
                None => {
                    for (i, off) in dests {
                        files[i].failed(Problem::Damage(format!(
                            "chunk {} at offset {off} is in no index",
                            id.short()
                        )));
                    }
                }
            }
        }
        let mut jobs: Vec<(PackId, Vec<(PackEntry, Dests)>)> = by_pack.into_iter().collect();
        jobs.sort_by_key(|(p, _)| *p);
        for (_, entries) in &mut jobs {
            entries.sort_by_key(|(e, _)| e.offset);
        }
        let batch = Arc::new(BatchState {
            seq,
            left: AtomicUsize::new(files.len()),
            files,
        });
        self.recent.push_back(batch.clone());
        if self.recent.len() > BATCHES_IN_FLIGHT as usize + 1 {
            self.recent.pop_front();
        }
        // Bounded look-ahead: wait until the batches before the last few are finished.
        self.shared
            .wait_through(seq.saturating_sub(BATCHES_IN_FLIGHT))?;
        self.apply_ready_dirs();
        for (i, f) in batch.files.iter().enumerate() {
            if f.left.load(Ordering::Relaxed) == 0 {
                self.shared.finish_file(&batch, i);
            }
        }
        for (pack, entries) in jobs {
            for entries in split_job(entries) {
                let job = Job {
                    batch: batch.clone(),
                    pack,
                    entries,
                };
                if self.jobs.send(job).is_err() {
                    return Err(Error::Interrupted);
                }
            }
        }
        Ok(())
    }

    /// Submits the last batch, waits for every file, then applies the remaining directories'
    /// metadata.
    fn finish(&mut self) -> Result<()> {
        self.submit()?;
        if let Some(times) = self.stack.first().and_then(|f| f.times) {
            let id = self.stack.first().and_then(|f| f.id);
            self.finish_dir(PathBuf::new(), id, DirWork::Times(times));
        }
        self.shared.wait_through(self.seq - 1)?;
        self.apply_ready_dirs();
        Ok(())
    }
}

/// Where a file waits for its content: (batch number, index in the batch).
type PendingAt = (u64, usize);

/// A batch handed to the workers.
struct BatchState {
    seq: u64,
    files: Vec<Pending>,
    /// Files not finished yet.
    left: AtomicUsize,
}

/// One pack's part of a batch: its needed blobs in offset order and where each goes.
struct Job {
    batch: Arc<BatchState>,
    pack: PackId,
    entries: Vec<(PackEntry, Dests)>,
}

/// A worker: reads, opens and writes jobs until the queue closes.
fn worker(shared: &Shared, queue: crossbeam_channel::Receiver<Job>) {
    let mut read_buf = Vec::new();
    let mut bufs = DecodeBufs::default();
    let mut asm = Assembler::default();
    for job in queue {
        if shared.cancelled() {
            continue;
        }
        run_job(shared, &job, &mut read_buf, &mut bufs, &mut asm);
    }
}

/// Reads, opens and writes one job. The buffers are the worker's, reused from job to job.
fn run_job(
    shared: &Shared,
    job: &Job,
    read_buf: &mut Vec<u8>,
    bufs: &mut DecodeBufs,
    asm: &mut Assembler,
) {
    let (repo, files) = (shared.repo, &job.batch.files);
    let name = job.pack.to_hex();
    let mut touched = Vec::new();
    if shared.disk_full() {
        // Nothing more is written: each file of this job ends as not restored.
        for (_, dests) in &job.entries {
            for &(fi, _) in dests {
                touched.push(fi);
                files[fi].failed(Problem::DiskFull("not written".into()));
            }
        }
    }
    let entries = if shared.disk_full() {
        &[][..]
    } else {
        &job.entries[..]
    };
    for (run, dests) in coalesce(entries) {
        let start = run[0].offset as u64;
        let end = run
            .last()
            .map_or(start, |e| e.offset as u64 + e.length as u64);
        let len = (end - start) as usize;
        let mut bytes = repo
            .backend()
            .get_range_into(FileKind::Pack, &name, start, len, read_buf)
            .map(|b| b.len());
        if bytes.is_err() {
            // One more try: a read can fail once (a USB hiccup) and work the second time.
            bytes = repo
                .backend()
                .get_range_into(FileKind::Pack, &name, start, len, read_buf)
                .map(|b| b.len());
        }
        // A read that failed for want of descriptors or memory here says nothing about the
        // repository's data: the file is not restored, but it is not called damaged.
        let local = bytes.as_ref().err().is_some_and(is_local_shortage);
        for (e, d) in run.iter().zip(dests) {
            let plain = match &bytes {
                Ok(_) => {
                    let o = (e.offset as u64 - start) as usize;
                    let sealed = &read_buf[o..o + e.length as usize];
                    pack::open_blob_into(repo.keys(), e, sealed, bufs).map_err(|why| {
                        format!(
                            "{} blob {} in pack {} is damaged: {why}",
                            e.kind.name(),
                            e.id.short(),
                            job.pack.short()
                        )
                    })
                }
                Err(err) => Err(format!("pack {} cannot be read: {err}", job.pack.short())),
            };
            for &(fi, off) in d {
                touched.push(fi);
                match &plain {
                    Ok(data) => {
                        asm.put(files, fi, off, data);
                        shared.progress.bytes_done(data.len() as u64);
                    }
                    Err(why) => {
                        let why = format!("chunk {} at offset {off}: {why}", e.id.short());
                        files[fi].failed(if local {
                            Problem::Target(why)
                        } else {
                            Problem::Damage(why)
                        })
                    }
                }
            }
        }
    }
    asm.flush_all(files);
    for fi in touched {
        if files[fi].left.fetch_sub(1, Ordering::AcqRel) == 1 {
            shared.finish_file(&job.batch, fi);
        }
    }
}

/// Files whose content a batch writes: at most this many at once (each holds a descriptor
/// while it is written, two with direct I/O)...
const BATCH_FILES: usize = 256;
/// ...or this many bytes of content.
const BATCH_BYTES: u64 = 256 << 20;
/// Descriptors kept free for everything else (the repository, the workers' pack reads,
/// verification, the walk's [`OPEN_DIRS`] directories).
const SPARE_DESCRIPTORS: u64 = 32 + OPEN_DIRS as u64;
/// Stored bytes of a pack one job reads at most (a single larger blob is one job)...
const JOB_BYTES: u64 = 4 << 20;
/// ...and blobs it opens at most: a job of small files finishes quickly, so the workers
/// share a batch evenly.
const JOB_ENTRIES: usize = 32;
/// Blobs closer than this in a pack are fetched with one read (the gap is read and dropped).
const COALESCE_GAP: u64 = 256 << 10;
/// The most one read fetches: bounds each worker's memory.
const MAX_READ: u64 = 16 << 20;
/// Files at least this large are written with direct I/O where whole aligned blocks allow it:
/// on most machines the kernel's copy into its page cache costs more than the rest of a
/// restore, and a restore of a large tree does not evict everything else from the cache.
const DIRECT_FILE_MIN: u64 = 256 << 10;
/// A contiguous stretch of a file gathered by one worker before it is written.
const RUN_BYTES: usize = 4 << 20;
/// Stretches shorter than this go through the page cache (a direct write waits for the disk).
const DIRECT_WRITE_MIN: u64 = 64 << 10;
/// Bytes of a directly written file's small pieces held back from the page cache at most.
/// A stretch is at least one chunk (128 KiB or more, but for a file's last) and leaves at most
/// two partial blocks, so this is one flush per eight stretches or more; the files in flight
/// bound the total.
const LATER_MAX: usize = 64 << 10;
/// Stretches one worker gathers at once (a blob can go to several places).
const RUNS: usize = 2;

/// Cuts a pack's needed entries (in offset order) into jobs of about [`JOB_BYTES`] or
/// [`JOB_ENTRIES`] blobs: a batch of small files often needs one or two packs, and as one job
/// each they kept only one or two workers busy while the others waited.
fn split_job(entries: Vec<(PackEntry, Dests)>) -> Vec<Vec<(PackEntry, Dests)>> {
    let mut jobs = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0u64;
    for (e, d) in entries {
        bytes += u64::from(e.length);
        cur.push((e, d));
        if bytes >= JOB_BYTES || cur.len() >= JOB_ENTRIES {
            jobs.push(std::mem::take(&mut cur));
            bytes = 0;
        }
    }
    if !cur.is_empty() {
        jobs.push(cur);
    }
    jobs
}

/// Groups a pack's needed entries (in offset order) into runs read with one request.
fn coalesce(entries: &[(PackEntry, Vec<(usize, u64)>)]) -> Vec<(Vec<PackEntry>, Vec<&Dests>)> {
    let mut out: Vec<(Vec<PackEntry>, Vec<&Dests>)> = Vec::new();
    for (e, d) in entries {
        let joins = out.last().is_some_and(|(run, _)| {
            let first = run[0].offset as u64;
            let last = run[run.len() - 1];
            let end = last.offset as u64 + last.length as u64;
            (e.offset as u64) >= end
                && (e.offset as u64) - end <= COALESCE_GAP
                && (e.offset as u64 + e.length as u64) - first <= MAX_READ
        });
        if joins {
            if let Some((run, dests)) = out.last_mut() {
                run.push(*e);
                dests.push(d);
            }
        } else {
            out.push((vec![*e], vec![d]));
        }
    }
    out
}

/// Files per batch: [`BATCH_FILES`], or fewer where the limit on open descriptors would not
/// hold every file of the batches in flight (three descriptors each: two for the file, one for
/// its directory): a file that cannot be opened would not be restored.
fn batch_files() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_cur == libc::RLIM_INFINITY
    {
        return BATCH_FILES;
    }
    let per_batch = lim.rlim_cur.saturating_sub(SPARE_DESCRIPTORS) / (3 * (BATCHES_IN_FLIGHT + 1));
    (per_batch as usize).clamp(1, BATCH_FILES)
}

/// Where one blob goes: (file in the batch, offset in that file).
type Dests = Vec<(usize, u64)>;

/// A file of a batch.
struct Pending {
    /// Its directory in the target, and its name there.
    dir: Arc<Dir>,
    name: Vec<u8>,
    /// Its full path, for messages.
    path: PathBuf,
    node: Node,
    out: RwLock<OutState>,
    /// Chunk writes still to come.
    left: AtomicUsize,
    problems: Mutex<Problems>,
    /// Bytes of content written to it.
    written: AtomicU64,
    /// Set by the first write that finds the disk full (shared by the whole restore).
    disk_full: Arc<AtomicBool>,
    /// Hard links to make once the content is complete.
    links: Mutex<Links>,
    /// Pieces of a directly written file that go through the page cache, held back.
    later: Mutex<Later>,
}

/// Why a file could not be restored.
enum Problem {
    /// Its data in the repository is damaged or missing.
    Damage(String),
    /// The target's file system is full.
    DiskFull(String),
    /// Writing it failed otherwise (permissions, I/O errors of the target's disk...).
    Target(String),
}

/// Everything that went wrong with one file.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The message naming every problem, and whether the repository's data is to blame
    /// (damage) rather than the target (a full disk, a failed write).
    fn describe(&self) -> (String, bool) {
        let mut damage = Vec::new();
        let mut target = Vec::new();
        let mut full = false;
        for p in &self.0 {
            match p {
                Problem::Damage(m) => damage.push(m.as_str()),
                Problem::DiskFull(m) => {
                    full = true;
                    target.push(m.as_str())
                }
                Problem::Target(m) => target.push(m.as_str()),
            }
        }
        if full {
            (
                format!("not restored: the disk is full ({})", target.join("; ")),
                false,
            )
        } else if !target.is_empty() {
            (format!("not restored: {}", target.join("; ")), false)
        } else {
            (
                format!(
                    "not restored, its data is damaged or missing: {}",
                    damage.join("; ")
                ),
                true,
            )
        }
    }
}

/// Pieces of a directly written file held back from the page cache: a buffered write takes
/// the file's lock exclusively and so waits for every direct write in flight, and makes the
/// next ones wait for it. Written when the file is finished, or when [`LATER_MAX`] bytes wait.
#[derive(Default)]
struct Later {
    bytes: usize,
    pieces: Vec<(u64, Vec<u8>)>,
}

enum OutState {
    /// Not created yet.
    New,
    Open(Out),
    /// Finished, or could not be created.
    Closed,
}

/// An open file being written.
struct Out {
    file: fs::File,
    /// The same open file for direct I/O (large files, where the file system allows it).
    direct: Option<fs::File>,
}

#[derive(Default)]
struct Links {
    /// The file is finished: links are no longer queued here.
    finished: bool,
    paths: Vec<LinkAt>,
}

/// Whether an error is this machine running short (of descriptors or memory), not damage.
fn is_local_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)
    )
}

/// Whether an error means the file system is out of space (or the user out of quota).
fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

impl Pending {
    fn new(dir: Arc<Dir>, path: PathBuf, node: Node, disk_full: Arc<AtomicBool>) -> Pending {
        Pending {
            dir,
            name: node.name.clone(),
            path,
            node,
            out: RwLock::new(OutState::New),
            left: AtomicUsize::new(0),
            problems: Mutex::new(Problems::default()),
            written: AtomicU64::new(0),
            disk_full,
            links: Mutex::new(Links::default()),
            later: Mutex::new(Later::default()),
        }
    }

    fn problems(&self) -> MutexGuard<'_, Problems> {
        self.problems.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failed(&self, p: Problem) {
        self.problems().0.push(p);
    }

    /// Records a failed operation on the target: a full disk stops the whole restore.
    fn target_failed(&self, what: String, e: &io::Error) {
        if is_disk_full(e) {
            self.disk_full.store(true, Ordering::Relaxed);
            self.failed(Problem::DiskFull(format!("{what}: {e}")));
        } else {
            self.failed(Problem::Target(format!("{what}: {e}")));
        }
    }

    /// Closes the file and removes it, if this restore created it and it is still there
    /// under its name (not something put there since). Says why when it stays.
    fn remove_own(&self) -> Option<String> {
        // Recognised by its open descriptor's inode (asked only here: a file restored
        // without trouble pays nothing for it); closed once this returns.
        let state = std::mem::replace(
            &mut *self.out.write().unwrap_or_else(|p| p.into_inner()),
            OutState::Closed,
        );
        match state {
            OutState::Open(out) => self.remove_if_same(&out.file),
            _ => None,
        }
    }

    /// Runs `f` on the open file, creating the file on first use. None when it could not be
    /// created (recorded as a problem) or is already closed.
    fn with_out<R>(&self, f: impl FnOnce(&Out) -> R) -> Option<R> {
        {
            let state = self.out.read().unwrap_or_else(|p| p.into_inner());
            match &*state {
                OutState::Open(out) => return Some(f(out)),
                OutState::Closed => return None,
                OutState::New => {}
            }
        }
        let mut state = self.out.write().unwrap_or_else(|p| p.into_inner());
        if let OutState::New = *state {
            *state = match self.create() {
                Ok(out) => OutState::Open(out),
                Err((what, e)) => {
                    self.target_failed(what, &e);
                    OutState::Closed
                }
            };
        }
        match &*state {
            OutState::Open(out) => Some(f(out)),
            _ => None,
        }
    }

    /// Creates the file at its final size (holes stay holes: nothing is written there), in
    /// its directory, where nothing may stand (a symlink there is an error, not followed).
    fn create(&self) -> Result<Out, (String, io::Error)> {
        let file = self
            .dir
            .create_file(&self.name, 0o600)
            .map_err(|e| ("cannot create".to_string(), e))?;
        self.prepare(file).map_err(|(file, why)| {
            // Made but not usable: removed again, if it is still the one made.
            self.remove_if_same(&file);
            why
        })
    }

    /// Removes the entry at the file's name if it is the file open as `file`.
    fn remove_if_same(&self, file: &fs::File) -> Option<String> {
        let ino = safe_fs::stat_fd(file.as_fd()).ok()?.ino;
        let there = self.dir.stat(&self.name).ok().flatten()?;
        if there.ino == ino && there.kind == NodeKind::File {
            if let Err(e) = self.dir.remove_file(&self.name) {
                return Some(format!("the incomplete file could not be removed: {e}"));
            }
        }
        None
    }

    /// Sizes a new file and opens it for direct writes where it is large.
    #[allow(clippy::result_large_err)]
    fn prepare(&self, file: fs::File) -> Result<Out, (fs::File, (String, io::Error))> {
        let direct = self.node.size >= DIRECT_FILE_MIN;
        // The final size up front where the content ends in a hole, and for direct writes
        // (their stretches land in any order); otherwise the last write sets it.
        let ends_in_data = self
            .node
            .content
            .last()
            .is_some_and(|p| p.chunk().is_some());
        if direct || (!ends_in_data && self.node.size > 0) {
            if let Err(e) = file.set_len(self.node.size) {
                return Err((file, ("cannot set its length".to_string(), e)));
            }
        }
        let direct = if direct {
            if let Err(why) = self.allocate(&file) {
                return Err((file, why));
            }
            // Reopened through /proc: the very file just created, whatever its path is now.
            safe_fs::reopen_direct(&file).ok()
        } else {
            None
        };
        Ok(Out { file, direct })
    }

    /// Reserves the blocks of the file's data regions (its holes stay holes) before the
    /// direct writes: a direct write into reserved blocks inside the file's size is an
    /// overwrite, which file systems such as ext4 and XFS let workers do in parallel, while
    /// a write that allocates holds the file's lock until the disk has it. A full disk shows
    /// here, before anything is written. File systems without `fallocate` go on without it.
    fn allocate(&self, file: &fs::File) -> Result<(), (String, io::Error)> {
        let mut regions: Vec<(u64, u64)> = Vec::new();
        let mut off = 0u64;
        for part in &self.node.content {
            let len = part.len();
            if part.chunk().is_some() && len > 0 {
                match regions.last_mut() {
                    Some((_, end)) if *end == off => *end = off + len,
                    _ => regions.push((off, off + len)),
                }
            }
            off += len;
        }
        for (start, end) in regions {
            let r = rustix::fs::fallocate(
                file,
                rustix::fs::FallocateFlags::empty(),
                start,
                end - start,
            );
            if let Err(e) = r {
                let e = io::Error::from(e);
                if is_disk_full(&e) {
                    return Err(("cannot reserve space".to_string(), e));
                }
                // Not supported here (or not for this file): the writes allocate instead.
                return Ok(());
            }
        }
        Ok(())
    }

    /// Closes the file's descriptors; nothing is written to it after this.
    fn close(&self) {
        *self.out.write().unwrap_or_else(|p| p.into_inner()) = OutState::Closed;
    }

    /// Writes through the page cache.
    fn write_buffered(&self, data: &[u8], off: u64) {
        match self.with_out(|out| out.file.write_all_at(data, off)) {
            Some(Ok(())) => {
                self.written.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            Some(Err(e)) => self.target_failed(format!("write at offset {off} failed"), &e),
            None => {}
        }
    }

    /// Holds back a small piece of a directly written file (see [`Later`]).
    fn write_later(&self, data: &[u8], off: u64) {
        let due = {
            let mut later = self.later.lock().unwrap_or_else(|p| p.into_inner());
            later.bytes += data.len();
            later.pieces.push((off, data.to_vec()));
            later.bytes >= LATER_MAX
        };
        if due {
            self.write_held_back();
        }
    }

    /// Writes the pieces held back by [`Pending::write_later`].
    fn write_held_back(&self) {
        let due = std::mem::take(&mut *self.later.lock().unwrap_or_else(|p| p.into_inner()));
        for (off, data) in due.pieces {
            self.write_buffered(&data, off);
        }
    }

    /// Writes whole aligned blocks with direct I/O (through the page cache where the file
    /// system refuses it).
    fn write_direct(&self, data: &[u8], off: u64) {
        let written = self.with_out(|out| -> io::Result<()> {
            let Some(direct) = &out.direct else {
                return out.file.write_all_at(data, off);
            };
            let mut done = 0;
            while done < data.len() {
                let at = off + done as u64;
                match direct.write_at(&data[done..], at) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) if n % ALIGN == 0 => done += n,
                    // A short write that broke the alignment: the rest through the page cache.
                    Ok(n) => return out.file.write_all_at(&data[done + n..], at + n as u64),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        return out.file.write_all_at(&data[done..], at)
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        });
        match written {
            Some(Ok(())) => {
                self.written.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            Some(Err(e)) => self.target_failed(format!("write at offset {off} failed"), &e),
            None => {}
        }
    }
}

/// Gathers what a worker writes into contiguous stretches of a file, so that large files
/// are written in whole aligned blocks with direct I/O; the partial blocks at the edges of a
/// stretch go through the page cache (two stretches never share a whole block).
#[derive(Default)]
struct Assembler {
    runs: Vec<Run>,
    spare: Vec<AlignedBuf>,
}

/// A contiguous stretch of one file: `len` bytes at file offset `start`, kept at `buf[lead..]`
/// where `lead` puts every block boundary of the file on a block boundary of the buffer.
struct Run {
    file: usize,
    start: u64,
    lead: usize,
    len: usize,
    buf: AlignedBuf,
}

impl Run {
    fn end(&self) -> u64 {
        self.start + self.len as u64
    }

    /// Writes the whole blocks (direct) and, if `last`, hands the partial edge blocks to
    /// [`Pending::write_later`]; otherwise keeps the partial last block at the start of the
    /// buffer for more data.
    fn write(&mut self, f: &Pending, last: bool) {
        let (s, e) = (self.start, self.end());
        let (a, b) = (align_up(s), align_down(e));
        let at = |x: u64| (x - s) as usize + self.lead;
        let buf = self.buf.as_slice();
        if last && (b <= a || b - a < DIRECT_WRITE_MIN) {
            f.write_later(&buf[at(s)..at(e)], s);
            self.len = 0;
            return;
        }
        if a > s {
            f.write_later(&buf[at(s)..at(a)], s);
        }
        f.write_direct(&buf[at(a)..at(b)], a);
        if last {
            if e > b {
                f.write_later(&buf[at(b)..at(e)], b);
            }
            self.len = 0;
        } else {
            let tail = at(b)..at(e);
            self.buf.as_mut_slice().copy_within(tail, 0);
            self.start = b;
            self.lead = 0;
            self.len = (e - b) as usize;
        }
    }
}

impl Assembler {
    /// Writes `data` at `off` in file `fi` of `files`, now or with the stretch it continues.
    fn put(&mut self, files: &[Pending], fi: usize, off: u64, data: &[u8]) {
        let f = &files[fi];
        match f.with_out(|out| out.direct.is_some()) {
            None => {}
            Some(false) => f.write_buffered(data, off),
            Some(true) => {
                let i = match self
                    .runs
                    .iter()
                    .position(|r| r.file == fi && r.end() == off)
                {
                    Some(i) => i,
                    None => {
                        if self.runs.len() >= RUNS {
                            let run = self.runs.remove(0);
                            self.finish(files, run);
                        }
                        let buf = self
                            .spare
                            .pop()
                            .unwrap_or_else(|| AlignedBuf::new(RUN_BYTES + ALIGN));
                        self.runs.push(Run {
                            file: fi,
                            start: off,
                            lead: (off % ALIGN as u64) as usize,
                            len: 0,
                            buf,
                        });
                        self.runs.len() - 1
                    }
                };
                let run = &mut self.runs[i];
                let mut data = data;
                loop {
                    let room = run.buf.len() - run.lead - run.len;
                    let n = room.min(data.len());
                    let at = run.lead + run.len;
                    run.buf.as_mut_slice()[at..at + n].copy_from_slice(&data[..n]);
                    run.len += n;
                    data = &data[n..];
                    if data.is_empty() {
                        break;
                    }
                    run.write(f, false);
                }
            }
        }
    }

    fn finish(&mut self, files: &[Pending], mut run: Run) {
        run.write(&files[run.file], true);
        self.spare.push(run.buf);
    }

    /// Writes every stretch still gathered (at the end of a job: its files may be finished
    /// next).
    fn flush_all(&mut self, files: &[Pending]) {
        for run in std::mem::take(&mut self.runs) {
            self.finish(files, run);
        }
    }
}

/// Reads a restored (or kept) file and checks every chunk against its keyed id and every hole
/// is zeros.
fn verify_reader(repo: &Repository, mut f: fs::File, node: &Node) -> Result<(), String> {
    let mut buf = Vec::new();
    for (i, part) in node.content.iter().enumerate() {
        buf.clear();
        (&mut f)
            .take(part.len())
            .read_to_end(&mut buf)
            .map_err(|e| format!("verify: read failed: {e}"))?;
        if buf.len() as u64 != part.len() {
            return Err(format!(
                "verify: file is shorter than the snapshot says (part {i})"
            ));
        }
        let ok = match part.chunk() {
            Some(id) => repo.keys().chunk_id(&buf) == id,
            None => buf.iter().all(|&b| b == 0),
        };
        if !ok {
            return Err(format!(
                "verify: content differs from the snapshot in part {i}"
            ));
        }
    }
    let mut extra = [0u8; 1];
    match f.read(&mut extra) {
        Ok(0) => Ok(()),
        Ok(_) => Err("verify: file is longer than the snapshot says".into()),
        Err(e) => Err(format!("verify: {e}")),
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
    use crate::tree::ContentPart;

    fn pending(dir: &Path, name: &str, size: u64) -> Pending {
        let mut node = Node::new(name.as_bytes().to_vec(), NodeKind::File);
        node.size = size;
        node.content = vec![ContentPart(Some(BlobId([7; 32])), size)];
        let d = Arc::new(Dir::open(dir).expect("open the directory"));
        Pending::new(d, dir.join(name), node, Arc::new(AtomicBool::new(false)))
    }

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

    /// A file whose content fails `--verify` is not left on disk, and the hard links waiting
    /// for it are not made but named, each as damaged.
    #[test]
    fn a_file_failing_verify_is_removed_and_its_links_are_named() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (_, repo) = mem_repo(b"pw");
        let opts = RestoreOptions {
            target: tmp.path().to_path_buf(),
            verify: true,
            ..RestoreOptions::default()
        };
        let target = Arc::new(Dir::open(tmp.path()).expect("open"));
        let shared = Shared {
            repo: &repo,
            opts: &opts,
            progress: &NoRestoreProgress,
            out: Mutex::new(RestoreOutcome::default()),
            flow: Mutex::new(Flow::default()),
            changed: Condvar::new(),
            disk_full: Arc::new(AtomicBool::new(false)),
            target: target.clone(),
        };
        // The chunk id (7...7) is not the keyed hash of what is written: verify fails.
        let f = pending(tmp.path(), "f", 5);
        f.write_buffered(b"hello", 0);
        f.links.lock().expect("links").paths.push(LinkAt {
            rel: PathBuf::from("link"),
            path: tmp.path().join("link"),
        });
        let batch = BatchState {
            seq: 1,
            files: vec![f],
            left: AtomicUsize::new(1),
        };
        shared.finish_file(&batch, 0);
        let out = shared.out.into_inner().expect("outcome");
        assert!(
            !tmp.path().join("f").exists(),
            "the unverified file was left"
        );
        assert!(!tmp.path().join("link").exists());
        let named: Vec<_> = out.damaged.iter().map(|e| e.path.clone()).collect();
        assert_eq!(named, vec![tmp.path().join("link"), tmp.path().join("f")]);
        assert_eq!(out.files, 0);
    }

    /// A pack's entries are cut into jobs of about `JOB_BYTES`, in offset order, none lost;
    /// a blob larger than that is a job of its own.
    #[test]
    fn a_pack_is_cut_into_jobs_of_bounded_size() {
        let entry = |offset: u32, length: u32| PackEntry {
            kind: crate::pack::BlobKind::Data,
            id: BlobId([offset as u8; 32]),
            offset,
            length,
            raw_length: length,
        };
        let mut entries = Vec::new();
        let mut offset = 0u32;
        for i in 0..300u32 {
            let length = if i == 150 { 3 << 20 } else { 10_000 + i * 37 };
            entries.push((entry(offset, length), vec![(i as usize, 0)]));
            offset += length;
        }
        let jobs = split_job(entries.clone());
        assert!(
            jobs.len() >= 300 / JOB_ENTRIES,
            "{} jobs for 300 blobs",
            jobs.len()
        );
        let flat: Vec<_> = jobs.iter().flatten().cloned().collect();
        assert!(flat == entries, "entries lost or reordered");
        for job in &jobs {
            let bytes: u64 = job.iter().map(|(e, _)| u64::from(e.length)).sum();
            let last = u64::from(job[job.len() - 1].0.length);
            assert!(bytes - last < JOB_BYTES, "a job of {bytes} bytes");
            assert!(job.len() <= JOB_ENTRIES, "a job of {} blobs", job.len());
        }
    }

    /// Pieces of two files arrive in uneven sizes, mostly in order but with whole segments
    /// out of order, interleaved, and with stretches cut off by job ends: every byte must land
    /// where it belongs, through direct and buffered writes alike.
    #[test]
    fn stretches_in_any_order_and_size_restore_every_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let sizes = [10 * (1 << 20) + 123, 700_001, DIRECT_FILE_MIN - 1];
        let contents: Vec<Vec<u8>> = sizes
            .iter()
            .map(|&n| (0..n).map(|_| rng.next() as u8).collect())
            .collect();
        let files: Vec<Pending> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| pending(dir.path(), &format!("f{i}"), n))
            .collect();
        // Each file in segments; each segment in pieces of 1 byte to 3 MiB, in order.
        let mut segments: Vec<Vec<(usize, u64, usize)>> = Vec::new();
        for (fi, &size) in sizes.iter().enumerate() {
            let mut off = 0u64;
            while off < size {
                let seg_end = (off + 1 + rng.below(12 << 20)).min(size);
                let mut seg = Vec::new();
                while off < seg_end {
                    let max = if rng.below(4) == 0 { 5000 } else { 3 << 20 };
                    let len = (1 + rng.below(max)).min(seg_end - off);
                    seg.push((fi, off, len as usize));
                    off += len;
                }
                segments.push(seg);
            }
        }
        // Shuffle the segments, then interleave them in pairs.
        for i in (1..segments.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            segments.swap(i, j);
        }
        let mut asm = Assembler::default();
        for pair in segments.chunks(2) {
            let (a, b) = (&pair[0], pair.get(1).map_or(&[][..], |v| &v[..]));
            for k in 0..a.len().max(b.len()) {
                for seg in [a.as_slice(), b] {
                    if let Some(&(fi, off, len)) = seg.get(k) {
                        let data = &contents[fi][off as usize..off as usize + len];
                        asm.put(&files, fi, off, data);
                    }
                }
            }
            if rng.below(3) == 0 {
                asm.flush_all(&files);
            }
        }
        asm.flush_all(&files);
        for (fi, f) in files.iter().enumerate() {
            let direct = f.with_out(|out| out.direct.is_some());
            assert!(direct.is_some(), "file {fi} was created");
            f.write_held_back();
            f.close();
            assert!(
                f.problems().is_empty(),
                "file {fi}: {:?}",
                f.problems().describe()
            );
            let got = fs::read(&f.path).expect("read back");
            assert_eq!(got.len(), contents[fi].len(), "file {fi}: length");
            assert!(got == contents[fi], "file {fi}: content differs");
        }
    }
}

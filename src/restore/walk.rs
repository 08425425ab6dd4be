//! The walk: the calling thread goes down the snapshot's trees in order, keeps a stack of the
//! directories it is in (at most [`OPEN_DIRS`] of them open), makes directories, special files
//! and links as it goes and gathers files into batches for the workers (src/restore/plan.rs).
//! A directory's metadata is applied once every file inside it is finished.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::entries::Way;
use super::file::Pending;
use super::flow::Shared;
use super::links::{FirstLink, LinkAt};
use super::plan::{BatchState, Job, PendingAt, BATCH_BYTES};
use super::problems::{is_disk_full, is_local_shortage};
use super::{Overwrite, RestoreError, RestoreOutcome};
use crate::error::{Error, Result};
use crate::id::TreeId;
use crate::safe_fs::{self, Dir};
use crate::tree::{Node, NodeKind, Tree};

/// Directories of the walk's path held open at once; deeper ones give back the descriptors of
/// their shallower ancestors, which are opened again (beneath the target) when the walk
/// returns to them. Bounds descriptors whatever the depth of the tree.
pub(super) const OPEN_DIRS: usize = 32;

/// A directory of the walk's path: the target itself at the bottom of the stack, then each
/// snapshot directory being restored into it.
pub(super) struct Frame {
    /// Its path relative to the target (empty for the target); its name is the last part.
    pub(super) rel: PathBuf,
    pub(super) state: FrameState,
    /// Made by this restore: nothing can be in it but what the restore put there, so entries
    /// need no look before they are made (a make that finds something there anyway fails).
    pub(super) made: bool,
    /// Device and inode of the directory once opened: its metadata is applied at the end
    /// only to this very directory.
    pub(super) id: Option<(u64, u64)>,
    /// With `--overwrite never`, an existing directory's access and modification times, put
    /// back once the entries restored into it are made.
    pub(super) times: Option<Times>,
}

/// Access and modification times, (seconds, nanoseconds) each.
pub(super) type Times = ((i64, u32), (i64, u32));

/// A closed directory waiting for its files: the batch that must be finished first, its path
/// relative to the target, its device and inode, and what to do.
pub(super) type WaitingDir = (u64, PathBuf, Option<(u64, u64)>, DirWork);

/// What is done to a directory once every file inside it is finished.
pub(super) enum DirWork {
    /// The snapshot's metadata.
    Meta(Box<Node>),
    /// Its own times put back (`--overwrite never`).
    Times(Times),
}

pub(super) enum FrameState {
    /// Not in the target yet: a selective restore makes it when something goes into it.
    Pending,
    Open(Arc<Dir>),
    /// Was open; its descriptor was given back (see [`OPEN_DIRS`]).
    Closed,
    /// Could not be made or opened (reported once); nothing below it is restored.
    Failed,
}

/// The walk: directories, special files and links are made as it goes; files are gathered
/// into batches for the workers.
pub(super) struct Restorer<'a, 's> {
    pub(super) shared: &'s Shared<'a>,
    pub(super) jobs: crossbeam_channel::Sender<Job>,
    pub(super) target: Arc<Dir>,
    /// The target and the directories the walk is in.
    pub(super) stack: Vec<Frame>,
    /// What the walk itself did.
    pub(super) out: RestoreOutcome,
    /// First restored path of each hard-link group, and where it is pending.
    pub(super) links: HashMap<(u64, u64), (FirstLink, Option<PendingAt>)>,
    /// Files of the batch being gathered (number `seq`).
    pub(super) batch: Vec<Pending>,
    /// Files a batch holds at most (see [`batch_files`](super::plan::batch_files)).
    pub(super) batch_files: usize,
    pub(super) batch_bytes: u64,
    pub(super) seq: u64,
    /// Batches handed to the workers that may still be running (for hard links to them).
    pub(super) recent: VecDeque<Arc<BatchState>>,
    /// Closed directories waiting for their files: (batch that must be finished, path
    /// relative to the target, device and inode, what to do).
    pub(super) dirs: VecDeque<WaitingDir>,
}

impl Restorer<'_, '_> {
    pub(super) fn error(&mut self, path: &Path, e: impl std::fmt::Display) {
        self.out.errors.push(RestoreError {
            path: path.to_path_buf(),
            error: e.to_string(),
        });
    }

    /// The full path of an entry of the target, for messages.
    pub(super) fn shown(&self, rel: &Path) -> PathBuf {
        self.shared.opts.target.join(rel)
    }

    pub(super) fn top(&self) -> &Frame {
        &self.stack[self.stack.len() - 1]
    }

    pub(super) fn restore_tree(&mut self, tree: &Tree, snap_dir: &Path) -> Result<()> {
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

    pub(super) fn restore_node(&mut self, node: &Node, snap_dir: &Path) -> Result<()> {
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
            if let Way::Blocked = self.clear_the_way(&dir, node, &path, &snap_path) {
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

    /// Restores a directory's entries; a tree that cannot be read is reported as damage.
    fn restore_subtree(&mut self, sub: TreeId, snap_path: &Path) -> Result<()> {
        match self.shared.repo.read_tree(&sub) {
            Ok(t) => {
                self.restore_tree(&t, snap_path)?;
                self.delete_extras(&t, snap_path);
                Ok(())
            }
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

    /// `--delete`: removes from the directory the walk is in (`snap_dir` in the snapshot)
    /// whatever `tree`, its snapshot directory, does not hold. Runs once the directory's
    /// entries are made, before its metadata is applied (removing entries moves its times).
    /// A directory of a selective restore that was not made is swept too, if the target has
    /// it; one whose contents could not be read from the repository is not (what it should
    /// hold is unknown). Nothing is removed once the restore is stopping (Ctrl-C, full disk).
    pub(super) fn delete_extras(&mut self, tree: &Tree, snap_dir: &Path) {
        let opts = self.shared.opts;
        if !opts.delete || self.shared.cancelled() || self.shared.disk_full() {
            return;
        }
        let rel = self.top().rel.clone();
        let dir = match &self.top().state {
            FrameState::Open(d) => d.clone(),
            FrameState::Failed => return,
            // Not made: nothing to sweep unless the target has a directory there.
            FrameState::Pending => match self.target.open_beneath(&rel) {
                Ok(d) => Arc::new(d),
                Err(_) => return,
            },
            FrameState::Closed => match self.target.open_beneath(&rel) {
                Ok(d) => Arc::new(d),
                Err(e) => {
                    let path = self.shown(&rel);
                    self.error(
                        &path,
                        format_args!("--delete: cannot open the directory again: {e}"),
                    );
                    return;
                }
            },
        };
        let mut sweep = super::delete::Sweep::new(&opts.target, opts.select.as_ref(), false);
        sweep.extras(&dir, &rel, snap_dir, tree);
        self.out.deleted.append(&mut sweep.removed);
        self.out.errors.append(&mut sweep.errors);
    }

    /// Applies a directory's metadata (or puts its times back) once every batch holding some
    /// of its files is finished.
    pub(super) fn finish_dir(&mut self, rel: PathBuf, id: Option<(u64, u64)>, work: DirWork) {
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
    pub(super) fn apply_ready_dirs(&mut self) {
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
    pub(super) fn io_error(&mut self, path: &Path, what: &str, e: &io::Error) {
        if is_disk_full(e) {
            self.shared.disk_full.store(true, Ordering::Relaxed);
            self.error(path, format_args!("{what}: the disk is full ({e})"));
        } else {
            self.error(path, format_args!("{what}: {e}"));
        }
    }

    /// Submits the last batch, waits for every file, then applies the remaining directories'
    /// metadata.
    pub(super) fn finish(&mut self) -> Result<()> {
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

//! A file of a batch ([`Pending`]): created on its first write (or when it is finished, if
//! nothing is written) at its final size so holes stay holes, space reserved for direct
//! writes, the problems met while it is written, and its removal when it cannot be restored.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::links::Links;
use super::problems::{is_disk_full, Problem, Problems};
use super::write::{Later, DIRECT_FILE_MIN};
use crate::safe_fs::{self, Dir};
use crate::tree::{Node, NodeKind};

/// A file of a batch.
pub(super) struct Pending {
    /// Its directory in the target, and its name there.
    pub(super) dir: Arc<Dir>,
    pub(super) name: Vec<u8>,
    /// Its full path, for messages.
    pub(super) path: PathBuf,
    pub(super) node: Node,
    pub(super) out: RwLock<OutState>,
    /// Chunk writes still to come.
    pub(super) left: AtomicUsize,
    pub(super) problems: Mutex<Problems>,
    /// Bytes of content written to it.
    pub(super) written: AtomicU64,
    /// Set by the first write that finds the disk full (shared by the whole restore).
    pub(super) disk_full: Arc<AtomicBool>,
    /// Hard links to make once the content is complete.
    pub(super) links: Mutex<Links>,
    /// Pieces of a directly written file that go through the page cache, held back.
    pub(super) later: Mutex<Later>,
}

pub(super) enum OutState {
    /// Not created yet.
    New,
    Open(Out),
    /// Finished, or could not be created.
    Closed,
}

/// An open file being written.
pub(super) struct Out {
    pub(super) file: fs::File,
    /// The same open file for direct I/O (large files, where the file system allows it).
    pub(super) direct: Option<fs::File>,
}

impl Pending {
    pub(super) fn new(
        dir: Arc<Dir>,
        path: PathBuf,
        node: Node,
        disk_full: Arc<AtomicBool>,
    ) -> Pending {
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

    pub(super) fn problems(&self) -> MutexGuard<'_, Problems> {
        self.problems.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn failed(&self, p: Problem) {
        self.problems().0.push(p);
    }

    /// Records a failed operation on the target: a full disk stops the whole restore.
    pub(super) fn target_failed(&self, what: String, e: &io::Error) {
        if is_disk_full(e) {
            self.disk_full.store(true, Ordering::Relaxed);
            self.failed(Problem::DiskFull(format!("{what}: {e}")));
        } else {
            self.failed(Problem::Target(format!("{what}: {e}")));
        }
    }

    /// Closes the file and removes it, if this restore created it and it is still there
    /// under its name (not something put there since). Says why when it stays.
    pub(super) fn remove_own(&self) -> Option<String> {
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
    pub(super) fn with_out<R>(&self, f: impl FnOnce(&Out) -> R) -> Option<R> {
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
    pub(super) fn close(&self) {
        *self.out.write().unwrap_or_else(|p| p.into_inner()) = OutState::Closed;
    }
}

/// A file of a batch for the unit tests: `size` bytes of one chunk (whose id, 7…7, is not the
/// keyed hash of anything written), named `name` in `dir`.
#[cfg(test)]
pub(super) fn pending(dir: &std::path::Path, name: &str, size: u64) -> Pending {
    use crate::id::BlobId;
    use crate::tree::ContentPart;
    let mut node = Node::new(name.as_bytes().to_vec(), NodeKind::File);
    node.size = size;
    node.content = vec![ContentPart(Some(BlobId([7; 32])), size)];
    let d = Arc::new(Dir::open(dir).expect("open the directory"));
    Pending::new(d, dir.join(name), node, Arc::new(AtomicBool::new(false)))
}

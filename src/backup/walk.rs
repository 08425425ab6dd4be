//! The walk: directories depth first by name, each entry turned into a tree node. A file the
//! parent snapshot holds unchanged (size, mtime, ctime, inode, every chunk still stored) reuses
//! its chunk list; any other file is read, chunked and identified here, and each new chunk
//! queued for the pipeline. Trees are stored bottom-up; a checkpoint saves the directories open
//! so far as a partial snapshot the next backup resumes from.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::chunker::Chunker;
use crate::crypto::MasterKeys;
use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId, TreeId};
use crate::index::IndexFile;
use crate::meta::{self, NameCache};
use crate::pack::BlobKind;
use crate::repo::Repository;
use crate::saver::Dedup;
use crate::snapshot::Summary;
use crate::tree::{ContentPart, Node, NodeKind, Tree};

use super::excludes::{list_dir, Prefetch};
use super::pipeline::{FlushRequest, Job, Pipeline};
use super::{make_snapshot, BackupOptions, BackupProgress, EntryError, SnapshotBase};

/// The backed-up paths as a trie from `/`: inner nodes are ancestors, leaves are targets.
#[derive(Default)]
pub(super) struct Trie {
    target: bool,
    children: BTreeMap<Vec<u8>, Trie>,
}

impl Trie {
    /// The paths to back up under `path`, in the order the walk reaches them.
    pub(super) fn targets(&self, path: &Path) -> Vec<PathBuf> {
        if self.target {
            return vec![path.to_path_buf()];
        }
        let mut out = Vec::new();
        for (name, child) in &self.children {
            out.extend(child.targets(&path.join(OsStr::from_bytes(name))));
        }
        out
    }

    pub(super) fn insert(&mut self, path: &Path) {
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

/// One directory being built: the entries done so far, and its own node in the parent
/// (None for the root).
pub(super) struct Frame {
    dir: Option<Node>,
    nodes: Vec<Node>,
}

pub(super) struct Walker<'a> {
    pub(super) repo: &'a Repository,
    pub(super) opts: &'a BackupOptions,
    pub(super) keys: &'a MasterKeys,
    pub(super) tx: Option<Sender<Job>>,
    pub(super) flush: Option<Sender<FlushRequest>>,
    pub(super) pipeline: &'a Pipeline,
    /// Blobs sent to the workers by this run.
    pub(super) sent: u64,
    /// The saver's "new or known" half: the single place that decides it.
    pub(super) dedup: &'a mut Dedup,
    pub(super) names: NameCache,
    /// Content of multiply-linked files already read in this run, by (device, inode).
    pub(super) hardlinks: HashMap<(u64, u64), Vec<ContentPart>>,
    pub(super) summary: Summary,
    pub(super) errors: Vec<EntryError>,
    /// Where the repository's own directory was met and left out.
    pub(super) repository_left_out: Vec<PathBuf>,
    pub(super) progress: &'a dyn BackupProgress,
    /// Device of the backup path being walked (for `one_file_system`).
    pub(super) target_dev: Option<u64>,
    /// The directories being built, outermost first (what a checkpoint saves).
    pub(super) stack: Vec<Frame>,
    pub(super) base: &'a SnapshotBase,
    pub(super) last_checkpoint: Instant,
    /// Partial snapshots this run saved (the newest is kept until the run completes).
    pub(super) checkpoints: Vec<SnapshotId>,
    /// Directory listings read ahead on another thread.
    pub(super) prefetch: Option<Prefetch>,
}

impl Walker<'_> {
    fn cancelled(&self) -> bool {
        self.opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Stops at Ctrl-C; writes a checkpoint when one is due.
    pub(super) fn tick(&mut self) -> Result<()> {
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
    pub(super) fn checkpoint(&mut self) -> Result<()> {
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
        let packs = self.pipeline.flush(self.sent, self.flush.as_ref())?;
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
    pub(super) fn store(&mut self, kind: BlobKind, id: BlobId, data: Vec<u8>) -> Result<()> {
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

    pub(super) fn store_tree(&mut self, mut tree: Tree) -> Result<TreeId> {
        tree.sort();
        let bytes = tree.encode()?;
        let id = self.keys.tree_id(&bytes);
        // A put-only key cannot read its trees back: the next backup compares against this
        // machine's record of them (repo-format.md §10.6).
        self.repo.record_sent_tree(&TreeId(id), &bytes);
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
    pub(super) fn backup_trie(
        &mut self,
        trie: &Trie,
        path: &Path,
        parent: Option<TreeId>,
    ) -> Result<TreeId> {
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

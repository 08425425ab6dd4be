//! Restore: walk a snapshot's tree, write file content at its offsets (holes stay holes), then
//! metadata, directories last. A blob that fails authentication or its id check makes that file
//! damaged: it is removed, named in the outcome, and the rest of the restore goes on.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::backend::FileKind;
use crate::error::{Error, Result};
use crate::id::{BlobId, PackId, TreeId};
use crate::meta;
use crate::pack::{self, PackEntry};
use crate::repo::Repository;
use crate::tree::{Node, NodeKind, Tree};

/// What to do with a file that already exists at the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Replace it.
    #[default]
    Always,
    /// Replace it unless size and mtime already match the snapshot.
    IfChanged,
    /// Leave it alone.
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
    /// Re-read every restored file and check it against the snapshot's chunk ids.
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
    pub skipped: u64,
    pub bytes: u64,
    pub verified_files: u64,
    /// Files whose content could not be restored (damaged or missing data); not left on disk.
    pub damaged: Vec<RestoreError>,
    /// Everything else that went wrong (metadata, creation failures).
    pub errors: Vec<RestoreError>,
}

impl RestoreOutcome {
    pub fn ok(&self) -> bool {
        self.damaged.is_empty() && self.errors.is_empty()
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
pub fn restore(
    repo: &Repository,
    selected: &Selected,
    opts: &RestoreOptions,
    progress: &dyn RestoreProgress,
) -> Result<RestoreOutcome> {
    fs::create_dir_all(&opts.target).map_err(|e| Error::io(&opts.target, e))?;
    let mut r = Restorer {
        repo,
        opts,
        progress,
        out: RestoreOutcome::default(),
        links: HashMap::new(),
        batch: Batch::default(),
    };
    let base = Path::new("/").join(&opts.base);
    match selected {
        Selected::Dir(id) => {
            let tree = repo.read_tree(id)?;
            r.restore_tree(&tree, &opts.target, &base)?;
        }
        Selected::Entry(node) => {
            let parent = base.parent().unwrap_or(Path::new("/")).to_path_buf();
            r.restore_node(node, &opts.target, &parent)?;
        }
    }
    r.flush()?;
    // One filesystem-wide flush at the end instead of an fsync per file.
    if let Ok(dir) = fs::File::open(&opts.target) {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is valid for the duration of the call.
        unsafe { libc::syncfs(dir.as_raw_fd()) };
    }
    Ok(r.out)
}

struct Restorer<'a> {
    repo: &'a Repository,
    opts: &'a RestoreOptions,
    progress: &'a dyn RestoreProgress,
    out: RestoreOutcome,
    /// First restored path of each hard-link group.
    links: HashMap<(u64, u64), PathBuf>,
    batch: Batch,
}

impl Restorer<'_> {
    fn error(&mut self, path: &Path, e: impl std::fmt::Display) {
        self.out.errors.push(RestoreError {
            path: path.to_path_buf(),
            error: e.to_string(),
        });
    }

    fn restore_tree(&mut self, tree: &Tree, dir: &Path, snap_dir: &Path) -> Result<()> {
        for node in &tree.nodes {
            if self
                .opts
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
            {
                return Err(Error::Interrupted);
            }
            self.restore_node(node, dir, snap_dir)?;
        }
        Ok(())
    }

    fn restore_node(&mut self, node: &Node, dir: &Path, snap_dir: &Path) -> Result<()> {
        let path = dir.join(OsStr::from_bytes(&node.name));
        let snap_path = snap_dir.join(OsStr::from_bytes(&node.name));
        if let Some(select) = &self.opts.select {
            if node.kind != NodeKind::Dir && !select(&snap_path, node) {
                return Ok(());
            }
            // Parents of a selected entry are created on demand; their metadata follows later.
            if let Err(e) = fs::create_dir_all(dir) {
                self.error(dir, e);
                return Ok(());
            }
        }
        match node.kind {
            NodeKind::Dir if self.opts.select.is_some() => {
                let Some(sub) = node.subtree else {
                    return Ok(());
                };
                self.restore_subtree(sub, &path, &snap_path)?;
                if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                    self.out.dirs += 1;
                    self.finish_dir(path, node);
                }
                return Ok(());
            }
            NodeKind::Dir => {
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        if let Err(e) = fs::remove_file(&path).and_then(|_| fs::create_dir(&path)) {
                            self.error(&path, e);
                            return Ok(());
                        }
                    }
                    Err(_) => {
                        if let Err(e) = fs::create_dir(&path) {
                            self.error(&path, e);
                            return Ok(());
                        }
                    }
                }
                let Some(sub) = node.subtree else {
                    return Ok(());
                };
                self.restore_subtree(sub, &path, &snap_path)?;
                self.out.dirs += 1;
                // Directory metadata last, after every child is in place.
                self.finish_dir(path, node);
                return Ok(());
            }
            _ => {}
        }
        if self.skip_existing(&path, node) {
            self.out.skipped += 1;
            return Ok(());
        }
        if let Some(group) = node.link_group() {
            if let Some(first) = self.links.get(&group).cloned() {
                // The first link's file is created and filled with its batch: this link is made
                // then, and shares its fate.
                if let Some(p) = self.batch.files.iter_mut().find(|p| p.path == first) {
                    p.links.push(path.clone());
                    self.out.files += 1;
                    return Ok(());
                }
                match fs::hard_link(&first, &path) {
                    Ok(()) => {
                        self.out.files += 1;
                        return Ok(());
                    }
                    Err(e) => self.error(
                        &path,
                        format!("hard link to {}: {e}; restoring a copy", first.display()),
                    ),
                }
            }
        }
        let created = match node.kind {
            NodeKind::File => self.restore_file(&path, node),
            NodeKind::Symlink => {
                let target = node.target.clone().unwrap_or_default();
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(|e| e.to_string())
            }
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                meta::make_special(&path, node).map_err(|e| e.to_string())
            }
            NodeKind::Socket => {
                // A socket belongs to the process that made it; there is nothing to restore.
                self.out.skipped += 1;
                return Ok(());
            }
            NodeKind::Dir => unreachable!("handled above"),
        };
        match created {
            Ok(()) => {
                if let Some(group) = node.link_group() {
                    self.links.entry(group).or_insert_with(|| path.clone());
                }
                if node.kind == NodeKind::File {
                    // Content, checks and metadata follow when the batch is written.
                    if self.batch.is_full() {
                        self.flush()?;
                    }
                } else {
                    if let Err(e) = meta::apply_metadata(&path, node, self.opts.set_owner) {
                        self.error(&path, format!("metadata: {e}"));
                    }
                    self.out.other += 1;
                }
            }
            Err(e) if node.kind == NodeKind::File => {
                let _ = fs::remove_file(&path);
                self.out.damaged.push(RestoreError { path, error: e });
            }
            Err(e) => self.error(&path, e),
        }
        Ok(())
    }

    /// Decides about an existing entry at `path`; removes it when it is to be replaced.
    fn skip_existing(&mut self, path: &Path, node: &Node) -> bool {
        let Ok(m) = fs::symlink_metadata(path) else {
            return false;
        };
        match self.opts.overwrite {
            Overwrite::Never => return true,
            Overwrite::IfChanged => {
                use std::os::unix::fs::MetadataExt;
                if node.kind == NodeKind::File
                    && m.is_file()
                    && m.len() == node.size
                    && m.mtime() == node.mtime.0
                    && m.mtime_nsec() as u32 == node.mtime.1
                {
                    return true;
                }
            }
            Overwrite::Always => {}
        }
        // Replace: unlink first, so other hard links to the old file are not modified.
        let removed = if m.is_dir() {
            fs::remove_dir_all(path)
        } else {
            fs::remove_file(path)
        };
        if let Err(e) = removed {
            self.error(path, format!("cannot replace existing entry: {e}"));
        }
        false
    }

    /// Creates a file at its final size (holes stay holes: nothing is written there) and queues
    /// its content for the next batch.
    fn restore_file(&mut self, path: &Path, node: &Node) -> Result<(), String> {
        self.progress.file_started(path);
        self.batch.bytes += node.size;
        self.batch.files.push(Pending {
            path: path.to_path_buf(),
            node: node.clone(),
            file: OnceLock::new(),
            damage: Mutex::new(Vec::new()),
            links: Vec::new(),
        });
        Ok(())
    }

    /// Restores a directory's entries; a tree that cannot be read is reported as damage.
    fn restore_subtree(&mut self, sub: TreeId, path: &Path, snap_path: &Path) -> Result<()> {
        match self.repo.read_tree(&sub) {
            Ok(t) => self.restore_tree(&t, path, snap_path),
            Err(e) => {
                self.out.damaged.push(RestoreError {
                    path: path.to_path_buf(),
                    error: format!("directory contents cannot be read: {e}"),
                });
                Ok(())
            }
        }
    }

    /// Applies a directory's metadata now, or after the batch holding some of its files.
    fn finish_dir(&mut self, path: PathBuf, node: &Node) {
        if self.batch.files.is_empty() {
            if let Err(e) = meta::apply_metadata(&path, node, self.opts.set_owner) {
                self.error(&path, format!("metadata: {e}"));
            }
        } else {
            self.batch.dirs.push((path, node.clone()));
        }
    }

    /// Writes the content of every queued file, reading each pack once, in offset order, on
    /// several threads; then checks, verifies and finishes each file, then the directories
    /// that waited for them.
    fn flush(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        // Plan: pack → its needed blobs in offset order → where each blob goes.
        let mut by_blob: HashMap<BlobId, Dests> = HashMap::new();
        for (i, f) in batch.files.iter().enumerate() {
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
            match self.repo.index().get(&id) {
                Some(loc) => by_pack
                    .entry(loc.pack)
                    .or_default()
                    .push((loc.entry, dests)),
                None => {
                    for (i, off) in dests {
                        batch.files[i].damaged(format!(
                            "chunk {} at offset {off} is in no index",
                            id.short()
                        ));
                    }
                }
            }
        }
        let mut jobs: Vec<(PackId, Vec<(PackEntry, Dests)>)> = by_pack.into_iter().collect();
        jobs.sort_by_key(|(p, _)| *p);
        for (_, entries) in &mut jobs {
            entries.sort_by_key(|(e, _)| e.offset);
        }
        let threads = match self.opts.threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        // Create the files (at their final size: holes stay holes) on every core: creating
        // many files is file-system work that one thread cannot keep up with.
        let next_file = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    let i = next_file.fetch_add(1, Ordering::Relaxed);
                    let Some(f) = batch.files.get(i) else { break };
                    let created = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&f.path)
                        .map_err(|e| format!("cannot create: {e}"));
                    match created {
                        Ok(file) => {
                            if let Err(e) = file.set_len(f.node.size) {
                                f.damaged(format!("cannot set length: {e}"));
                            }
                            let _ = f.file.set(file);
                        }
                        Err(e) => f.damaged(e),
                    }
                });
            }
        });
        let next = AtomicUsize::new(0);
        let written = AtomicU64::new(0);
        let (repo, progress, files) = (self.repo, self.progress, &batch.files);
        // A remote repository answers faster with more reads in flight than there are cores.
        let readers = threads.max(repo.backend().connections());
        std::thread::scope(|scope| {
            for _ in 0..readers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((pack, entries)) = jobs.get(i) else {
                        break;
                    };
                    for (run, dests) in coalesce(entries) {
                        let start = run[0].offset as u64;
                        let end = run
                            .last()
                            .map_or(start, |e| e.offset as u64 + e.length as u64);
                        let name = pack.to_hex();
                        let bytes = repo
                            .backend()
                            .get_range(FileKind::Pack, &name, start, (end - start) as usize)
                            .or_else(|_| {
                                repo.backend().get_range(
                                    FileKind::Pack,
                                    &name,
                                    start,
                                    (end - start) as usize,
                                )
                            });
                        for (e, d) in run.iter().zip(dests) {
                            let sealed = bytes.as_ref().map(|b| {
                                let o = (e.offset as u64 - start) as usize;
                                &b[o..o + e.length as usize]
                            });
                            let plain = match sealed {
                                Ok(s) => pack::open_blob(repo.keys(), e, s).map_err(|why| {
                                    format!(
                                        "{} blob {} in pack {} is damaged: {why}",
                                        e.kind.name(),
                                        e.id.short(),
                                        pack.short()
                                    )
                                }),
                                Err(err) => {
                                    Err(format!("pack {} cannot be read: {err}", pack.short()))
                                }
                            };
                            for &(fi, off) in d {
                                let f = &files[fi];
                                let Some(fd) = f.file.get() else { continue };
                                match &plain {
                                    Ok(data) => match fd.write_all_at(data, off) {
                                        Ok(()) => {
                                            written.fetch_add(data.len() as u64, Ordering::Relaxed);
                                            progress.bytes_done(data.len() as u64);
                                        }
                                        Err(err) => f.damaged(format!(
                                            "write at offset {off} failed: {err}"
                                        )),
                                    },
                                    Err(why) => f.damaged(format!(
                                        "chunk {} at offset {off}: {why}",
                                        e.id.short()
                                    )),
                                }
                            }
                        }
                    }
                });
            }
        });
        self.out.bytes += written.load(Ordering::Relaxed);
        for f in batch.files {
            let damage = f.damage.into_inner().unwrap_or_else(|p| p.into_inner());
            let ours = f.file.into_inner().is_some();
            if !damage.is_empty() {
                let error = format!(
                    "not restored, its data is damaged or missing: {}",
                    damage.join("; ")
                );
                // Links were never made: they would share the damaged content.
                for link in f.links {
                    self.out.files -= 1;
                    self.out.damaged.push(RestoreError {
                        path: link,
                        error: error.clone(),
                    });
                }
                if ours {
                    let _ = fs::remove_file(&f.path);
                }
                self.out.damaged.push(RestoreError {
                    path: f.path,
                    error,
                });
                continue;
            }
            if self.opts.verify {
                match verify_file(self.repo, &f.path, &f.node) {
                    Ok(()) => self.out.verified_files += 1,
                    Err(e) => {
                        self.out.damaged.push(RestoreError {
                            path: f.path,
                            error: e,
                        });
                        continue;
                    }
                }
            }
            if let Err(e) = meta::apply_metadata(&f.path, &f.node, self.opts.set_owner) {
                self.error(&f.path, format!("metadata: {e}"));
            }
            self.out.files += 1;
            for link in f.links {
                if let Err(e) = fs::hard_link(&f.path, &link) {
                    self.out.files -= 1;
                    self.error(&link, format!("hard link to {}: {e}", f.path.display()));
                }
            }
        }
        // Directories after their files, innermost first (they were queued as they closed).
        for (path, node) in batch.dirs {
            if let Err(e) = meta::apply_metadata(&path, &node, self.opts.set_owner) {
                self.error(&path, format!("metadata: {e}"));
            }
        }
        Ok(())
    }
}

/// Files whose content a batch writes: at most this many at once (each holds a descriptor)...
const BATCH_FILES: usize = 256;
/// ...or this many bytes of content.
const BATCH_BYTES: u64 = 256 << 20;
/// Blobs closer than this in a pack are fetched with one read (the gap is read and dropped).
const COALESCE_GAP: u64 = 256 << 10;
/// The most one read fetches: bounds each worker's memory.
const MAX_READ: u64 = 16 << 20;

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

/// Where one blob goes: (file in the batch, offset in that file).
type Dests = Vec<(usize, u64)>;

/// A created file waiting for its content.
struct Pending {
    path: PathBuf,
    node: Node,
    /// Set once the file is created (at the start of its batch).
    file: OnceLock<fs::File>,
    damage: Mutex<Vec<String>>,
    /// Hard links made to this file before its content was written.
    links: Vec<PathBuf>,
}

impl Pending {
    fn damaged(&self, why: String) {
        self.damage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(why);
    }
}

/// Files created but not yet filled, and directories waiting for them.
#[derive(Default)]
struct Batch {
    files: Vec<Pending>,
    bytes: u64,
    dirs: Vec<(PathBuf, Node)>,
}

impl Batch {
    fn is_full(&self) -> bool {
        self.files.len() >= BATCH_FILES || self.bytes >= BATCH_BYTES
    }
}

/// Re-reads a restored file and checks every chunk against its keyed id and every hole is zeros.
pub fn verify_file(repo: &Repository, path: &Path, node: &Node) -> Result<(), String> {
    let mut f =
        crate::backup::open_nofollow(path).map_err(|e| format!("verify: cannot reopen: {e}"))?;
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

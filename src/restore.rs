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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::id::TreeId;
use crate::meta;
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
    Entry(Node),
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
            None => Selected::Entry(node.clone()),
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
                match self.repo.read_tree(&sub) {
                    Ok(t) => self.restore_tree(&t, &path, &snap_path)?,
                    Err(e) => self.out.damaged.push(RestoreError {
                        path: path.clone(),
                        error: format!("directory contents cannot be read: {e}"),
                    }),
                }
                if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                    self.out.dirs += 1;
                    if let Err(e) = meta::apply_metadata(&path, node, self.opts.set_owner) {
                        self.error(&path, format!("metadata: {e}"));
                    }
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
                match self.repo.read_tree(&sub) {
                    Ok(t) => self.restore_tree(&t, &path, &snap_path)?,
                    Err(e) => self.out.damaged.push(RestoreError {
                        path: path.clone(),
                        error: format!("directory contents cannot be read: {e}"),
                    }),
                }
                self.out.dirs += 1;
                // Directory metadata last, after every child is in place.
                if let Err(e) = meta::apply_metadata(&path, node, self.opts.set_owner) {
                    self.error(&path, format!("metadata: {e}"));
                }
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
                if let Err(e) = meta::apply_metadata(&path, node, self.opts.set_owner) {
                    self.error(&path, format!("metadata: {e}"));
                }
                if let Some(group) = node.link_group() {
                    self.links.entry(group).or_insert(path);
                }
                match node.kind {
                    NodeKind::File => self.out.files += 1,
                    _ => self.out.other += 1,
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

    /// Writes a file's chunks at their offsets; holes are skipped, so the file is sparse again.
    fn restore_file(&mut self, path: &Path, node: &Node) -> Result<(), String> {
        self.progress.file_started(path);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| format!("cannot create: {e}"))?;
        let mut offset = 0u64;
        let mut damage = Vec::new();
        for part in &node.content {
            if let Some(id) = part.chunk() {
                match self.repo.read_blob(&id) {
                    Ok(data) if data.len() as u64 == part.len() => {
                        file.write_all_at(&data, offset)
                            .map_err(|e| format!("write failed: {e}"))?;
                        self.out.bytes += data.len() as u64;
                        self.progress.bytes_done(data.len() as u64);
                    }
                    Ok(data) => damage.push(format!(
                        "chunk {} at offset {offset} is {} bytes, the tree says {}",
                        id.short(),
                        data.len(),
                        part.len()
                    )),
                    Err(e) => damage.push(format!("chunk {} at offset {offset}: {e}", id.short())),
                }
            }
            offset += part.len();
        }
        if !damage.is_empty() {
            return Err(format!(
                "not restored, its data is damaged or missing: {}",
                damage.join("; ")
            ));
        }
        file.set_len(node.size)
            .map_err(|e| format!("cannot set length: {e}"))?;
        drop(file);
        if self.opts.verify {
            verify_file(self.repo, path, node)?;
            self.out.verified_files += 1;
        }
        Ok(())
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

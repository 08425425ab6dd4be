//! `--delete`: whatever a restored directory of the target holds that the snapshot's directory
//! does not — files, directories with everything in them, symlinks (the link itself, never what
//! it points to), FIFOs and devices — is removed, and so is what fills a directory standing
//! where the snapshot has a file.
//!
//! Invariants: every entry is listed, looked at and removed relative to the descriptor of the
//! directory holding it, opened without following a symlink (src/safe_fs.rs), so a symlink in
//! the target, or a directory swapped for one mid-way, cannot make it remove anything outside
//! the target: a symlink is an entry like a file and is unlinked as itself. Paths the selection
//! (`--include`/`--exclude`) rejects are never removed, nor the directories holding them. A dry
//! run ([`Sweep::dry`]) takes exactly the same decisions and lists them, but removes nothing.

use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::walk::OPEN_DIRS;
use super::{RestoreError, Selector};
use crate::safe_fs::Dir;
use crate::tree::{Node, NodeKind, Tree};

/// An entry of the target that `--delete` removed (or, in a dry run, would remove): its path
/// (the target joined with its place there) and what it was.
pub type Removed = super::PreviewEntry;

/// One deletion pass: the decisions, and what was (or would be) removed.
pub(super) struct Sweep<'a> {
    /// The target as the user named it, for the paths reported.
    pub(super) target: &'a Path,
    /// The selection of the restore (`--include`/`--exclude`): what it rejects stays.
    pub(super) select: Option<&'a Selector>,
    /// List only: nothing is removed (`--dry-run`).
    pub(super) dry: bool,
    /// What was removed, in the order it was (contents before their directory).
    pub(super) removed: Vec<Removed>,
    /// What could not be looked at or removed (left in place).
    pub(super) errors: Vec<RestoreError>,
}

/// What became of a directory's contents.
pub(super) struct Emptied {
    /// Everything in it went (or would go): it can be removed.
    pub(super) all: bool,
    /// Something in it went.
    pub(super) any: bool,
}

impl<'a> Sweep<'a> {
    pub(super) fn new(target: &'a Path, select: Option<&'a Selector>, dry: bool) -> Self {
        Sweep {
            target,
            select,
            dry,
            removed: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn error(&mut self, rel: &Path, what: &str, e: impl std::fmt::Display) {
        self.errors.push(RestoreError {
            path: self.target.join(rel),
            error: format!("--delete: {what}: {e}"),
        });
    }

    fn accepts(&self, snap_path: &Path, name: &[u8], kind: NodeKind) -> bool {
        self.select
            .is_none_or(|select| select(snap_path, &Node::new(name.to_vec(), kind)))
    }

    /// Removes every entry of `dir` (at `rel` in the target, `snap_dir` in the snapshot) whose
    /// name `tree` does not hold.
    pub(super) fn extras(&mut self, dir: &Dir, rel: &Path, snap_dir: &Path, tree: &Tree) {
        let Some(names) = self.list(dir, rel) else {
            return;
        };
        let mut place = Place::anchor(dir, 0);
        for name in names {
            if tree.find(&name).is_none() {
                let os = OsStr::from_bytes(&name);
                self.entry(&mut place, &name, &rel.join(os), &snap_dir.join(os));
            }
        }
    }

    /// Removes what the directory `dir` holds (as far as the selection allows); says whether
    /// it is (or in a dry run would be) empty then.
    pub(super) fn contents(&mut self, dir: &Dir, rel: &Path, snap_dir: &Path) -> Emptied {
        self.contents_in(&mut Place::anchor(dir, 0), rel, snap_dir)
    }

    fn contents_in(&mut self, place: &mut Place<'_>, rel: &Path, snap_dir: &Path) -> Emptied {
        let none = Emptied {
            all: false,
            any: false,
        };
        let names = match place.dir().and_then(list) {
            Ok(names) => names,
            Err(e) => {
                self.error(rel, "cannot list the directory", e);
                return none;
            }
        };
        let mut out = Emptied {
            all: true,
            any: false,
        };
        for name in names {
            let os = OsStr::from_bytes(&name);
            if self.entry(place, &name, &rel.join(os), &snap_dir.join(os)) {
                out.any = true;
            } else {
                out.all = false;
            }
        }
        out
    }

    /// Removes the entry `name` of the directory at `place` that the snapshot lacks — a
    /// directory with its contents, the selection permitting; true when it went (or would go).
    fn entry(&mut self, place: &mut Place<'_>, name: &[u8], rel: &Path, snap_path: &Path) -> bool {
        let st = match place.dir().and_then(|dir| dir.stat(name)) {
            Ok(Some(st)) => st,
            // Gone already.
            Ok(None) => return true,
            Err(e) => {
                self.error(rel, "cannot look at it", e);
                return false;
            }
        };
        if st.kind != NodeKind::Dir {
            if !self.accepts(snap_path, name, st.kind) {
                return false;
            }
            if !self.dry {
                let removed = place
                    .dir()
                    .and_then(|dir| retry_writable(dir, |d| d.remove_file(name)));
                if let Err(e) = removed {
                    self.error(rel, "cannot remove it", e);
                    return false;
                }
            }
            self.removed.push(Removed {
                path: self.target.join(rel),
                kind: st.kind,
            });
            return true;
        }
        // Opened without following a symlink: if a symlink was put here since the look above,
        // the open fails and nothing below it is touched.
        let sub = match place.dir().and_then(|dir| dir.open_dir(name)) {
            Ok(d) => d,
            Err(e) => {
                self.error(rel, "cannot open the directory", e);
                return false;
            }
        };
        let depth = place.depth + 1;
        let inside = if depth % OPEN_DIRS == 0 {
            // Every OPEN_DIRS levels a directory stays open as the anchor of those below it.
            self.contents_in(&mut Place::anchor(&sub, depth), rel, snap_path)
        } else {
            place.give_back();
            let mut child = Place {
                anchor: place.anchor,
                below: place.below.join(OsStr::from_bytes(name)),
                held: Some(sub),
                depth,
            };
            self.contents_in(&mut child, rel, snap_path)
        };
        if !inside.all || !(inside.any || self.accepts(snap_path, name, NodeKind::Dir)) {
            return false;
        }
        if !self.dry {
            let removed = place
                .dir()
                .and_then(|dir| retry_writable(dir, |d| d.remove_empty_dir(name)));
            if let Err(e) = removed {
                self.error(rel, "cannot remove the directory", e);
                return false;
            }
        }
        self.removed.push(Removed {
            path: self.target.join(rel),
            kind: NodeKind::Dir,
        });
        true
    }

    /// The names in `dir`, read through its descriptor; None (reported) when it cannot be read.
    fn list(&mut self, dir: &Dir, rel: &Path) -> Option<Vec<Vec<u8>>> {
        match list(dir) {
            Ok(names) => Some(names),
            Err(e) => {
                self.error(rel, "cannot list the directory", e);
                None
            }
        }
    }
}

/// A directory the sweep is in, reached without a symlink from `anchor`, a directory held open
/// (the sweep's start, then one every [`OPEN_DIRS`] levels), through `below` (empty: the anchor
/// itself). Its own descriptor is `held` while kept; a directory deeper than [`OPEN_DIRS`]
/// gives it back while the sweep is below it, and opens it again (beneath its anchor) when it
/// needs it, so descriptors stay about `OPEN_DIRS + depth / OPEN_DIRS` whatever the depth.
struct Place<'d> {
    anchor: &'d Dir,
    below: PathBuf,
    held: Option<Dir>,
    depth: usize,
}

impl<'d> Place<'d> {
    fn anchor(dir: &'d Dir, depth: usize) -> Self {
        Place {
            anchor: dir,
            below: PathBuf::new(),
            held: None,
            depth,
        }
    }

    fn dir(&mut self) -> io::Result<&Dir> {
        if self.below.as_os_str().is_empty() {
            return Ok(self.anchor);
        }
        match &mut self.held {
            Some(d) => Ok(d),
            slot @ None => Ok(slot.insert(self.anchor.open_beneath(&self.below)?)),
        }
    }

    /// Gives back the descriptor while the sweep goes deeper, beyond the first levels.
    fn give_back(&mut self) {
        if self.depth >= OPEN_DIRS {
            self.held = None;
        }
    }
}

/// The names in `dir` but `.` and `..`, read through its descriptor.
fn list(dir: &Dir) -> io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir.as_fd())? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    Ok(names)
}

/// Runs `op` on `dir`; refused for want of permission (a read-only directory the snapshot
/// does not have, whose contents go), gives the owner write and search permission on
/// `dir` — through its descriptor — and runs it once more.
fn retry_writable(dir: &Dir, op: impl Fn(&Dir) -> io::Result<()>) -> io::Result<()> {
    match op(dir) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let mode = rustix::fs::fstat(dir.as_fd())?.st_mode;
            rustix::fs::fchmod(
                dir.as_fd(),
                rustix::fs::Mode::from_raw_mode((mode & 0o7777 | 0o300) as _),
            )?;
            op(dir)
        }
        r => r,
    }
}

/// Whether the directory holds nothing (read through its descriptor).
pub(super) fn is_empty(dir: &Dir) -> io::Result<bool> {
    for entry in rustix::fs::Dir::read_from(dir.as_fd())? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// Every path below `root`, sorted (symlinks not followed).
    fn files_below(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut todo = vec![root.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in fs::read_dir(&d).expect("read_dir") {
                let p = e.expect("entry").path();
                if fs::symlink_metadata(&p).expect("lstat").is_dir() {
                    todo.push(p.clone());
                }
                out.push(p);
            }
        }
        out.sort();
        out
    }

    /// A directory the sweep gave back its descriptor for (deeper than [`OPEN_DIRS`]) is
    /// swapped, while the sweep is below it, for a symlink to an outside tree with the same
    /// names: reopening it refuses the symlink, so nothing outside is removed; what was moved
    /// elsewhere inside the target may go, and the sweep reports what it could not reach.
    #[test]
    fn a_directory_swapped_for_a_symlink_mid_sweep_never_leads_outside() {
        let tmp = tempfile::tempdir().expect("tmp");
        let t = tmp.path().join("t");
        let levels: Vec<String> = (0..40).map(|i| format!("d{i}")).collect();
        let mut deep = t.join("junk");
        for l in &levels {
            deep.push(l);
            fs::create_dir_all(&deep).expect("mkdir");
            fs::write(deep.join("f"), b"inside").expect("write");
        }
        // Outside: the names below d31, so a sweep that followed the link would find them.
        let mirror = tmp.path().join("outside");
        let mut o = mirror.clone();
        fs::create_dir_all(&o).expect("mkdir");
        fs::write(o.join("f"), b"outside").expect("write");
        for l in &levels[32..] {
            o.push(l);
            fs::create_dir_all(&o).expect("mkdir");
            fs::write(o.join("f"), b"outside").expect("write");
        }
        let swap_at: PathBuf = std::iter::once("junk")
            .chain(levels[..32].iter().map(String::as_str))
            .collect();
        let (t2, mirror2) = (t.clone(), mirror.clone());
        let swapped = Arc::new(AtomicBool::new(false));
        let once = swapped.clone();
        // The selection is asked about each file just before it goes: the moment to swap.
        let select: Selector = Arc::new(move |p: &Path, _: &Node| {
            if p.ends_with("d35/f") && !once.swap(true, Ordering::SeqCst) {
                fs::rename(t2.join(&swap_at), t2.join("moved")).expect("move");
                std::os::unix::fs::symlink(&mirror2, t2.join(&swap_at)).expect("symlink");
            }
            true
        });
        let before = files_below(&mirror);
        let dir = Dir::open(&t).expect("open");
        let mut sweep = Sweep::new(&t, Some(&select), false);
        sweep.contents(&dir, Path::new(""), Path::new("/"));
        assert!(swapped.load(Ordering::SeqCst), "the swap happened");
        assert_eq!(files_below(&mirror), before, "outside changed");
        for f in before.iter().filter(|p| p.ends_with("f")) {
            assert_eq!(fs::read(f).expect("outside file"), b"outside");
        }
        assert!(
            !sweep.errors.is_empty(),
            "the unreachable directory is reported"
        );
        // The symlink's ancestors stay: the sweep could not empty them.
        assert!(fs::symlink_metadata(t.join("junk")).is_ok());
    }
}

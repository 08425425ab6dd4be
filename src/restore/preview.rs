//! `--dry-run`: what a restore with the same options would create, replace, keep unchanged,
//! delete (`--delete`) and be blocked by, found by looking at the target — and nothing written.
//!
//! Invariants: the target is only looked at (`fstatat`, `openat` of directories with
//! `O_NOFOLLOW`, `getdents`), never created, changed or removed, and no symlink in it is
//! followed. Each decision is the one the restore takes (src/restore/entries.rs,
//! src/restore/walk.rs), for the target as it is now: a directory of a selective restore is
//! created only where something selected goes inside it; deletions are decided by the very
//! code that deletes ([`Sweep`] in its dry mode).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::delete::{is_empty, Sweep};
use super::summary::path_entry;
use super::{check_delete, Overwrite, RestoreError, RestoreOptions, Selected};
use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::repo::Repository;
use crate::safe_fs::{kind_name, Dir};
use crate::tree::{Node, NodeKind, Tree};

/// One entry a restore would act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviewEntry {
    /// Its path: the target joined with its place there.
    pub path: PathBuf,
    /// The snapshot's kind of entry (for `deleted`, the kind of what is in the target).
    pub kind: NodeKind,
}

/// What a restore would do, by action; every list is in walk order.
#[derive(Debug, Default)]
pub struct Preview {
    /// The target does not exist: the restore would make it.
    pub target_created: bool,
    /// Entries (directories too) that do not exist yet.
    pub created: Vec<PreviewEntry>,
    /// Entries whose existing counterpart would be removed (never followed) and made anew.
    pub replaced: Vec<PreviewEntry>,
    /// Existing entries kept as they are (`--overwrite never`, or `if-changed` and the size
    /// and modification time match). Existing directories where the snapshot has one are not
    /// listed: they are kept, their metadata set.
    pub unchanged: Vec<PreviewEntry>,
    /// What `--delete` would remove (contents before their directory).
    pub deleted: Vec<PreviewEntry>,
    /// What the restore would report and leave: entries in the way, unreadable ones.
    pub blocked: Vec<RestoreError>,
    /// Sockets in the snapshot (never restored).
    pub skipped: u64,
}

/// Lengths of a [`Preview`]'s lists, to take back what a blocked directory would not get.
struct Mark(usize, usize, usize, usize);

impl Preview {
    fn mark(&self) -> Mark {
        Mark(
            self.created.len(),
            self.replaced.len(),
            self.unchanged.len(),
            self.blocked.len(),
        )
    }

    fn back_to(&mut self, m: &Mark) {
        self.created.truncate(m.0);
        self.replaced.truncate(m.1);
        self.unchanged.truncate(m.2);
        self.blocked.truncate(m.3);
    }
}

/// Decides what `restore(repo, selected, opts)` would do in the target as it is now, without
/// writing anything. The options are checked as the restore checks them.
pub fn preview(repo: &Repository, selected: &Selected, opts: &RestoreOptions) -> Result<Preview> {
    check_delete(selected, opts)?;
    let target = match std::fs::metadata(&opts.target) {
        Ok(m) if !m.is_dir() => {
            return Err(Error::InvalidInput(format!(
                "the restore target {} exists and is not a directory",
                opts.target.display()
            )))
        }
        // As the restore opens it: symlinks in the path the user gave are followed.
        Ok(_) => Some(Dir::open(&opts.target).map_err(|e| Error::io(&opts.target, e))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(&opts.target, e)),
    };
    let mut p = Previewer {
        repo,
        opts,
        out: Preview {
            target_created: target.is_none(),
            ..Preview::default()
        },
    };
    let base = Path::new("/").join(&opts.base);
    match selected {
        Selected::Dir(id) => {
            let tree = repo.read_tree(id)?;
            p.tree(&tree, target.as_ref(), Path::new(""), &base)?;
        }
        Selected::Entry(node) => {
            let parent = base.parent().unwrap_or(Path::new("/")).to_path_buf();
            p.node(node, target.as_ref(), Path::new(""), &parent)?;
        }
    }
    Ok(p.out)
}

struct Previewer<'a> {
    repo: &'a Repository,
    opts: &'a RestoreOptions,
    out: Preview,
}

impl Previewer<'_> {
    fn shown(&self, rel: &Path) -> PathBuf {
        self.opts.target.join(rel)
    }

    fn entry(&self, rel: &Path, kind: NodeKind) -> PreviewEntry {
        PreviewEntry {
            path: self.shown(rel),
            kind,
        }
    }

    fn blocked(&mut self, rel: &Path, error: String) {
        let path = self.shown(rel);
        self.out.blocked.push(RestoreError { path, error });
    }

    /// The entries of `tree` into `dir` (None: it would be made, so it is empty); true when
    /// something selected goes into it (so a selective restore would make it).
    fn tree(
        &mut self,
        tree: &Tree,
        dir: Option<&Dir>,
        rel: &Path,
        snap_dir: &Path,
    ) -> Result<bool> {
        let mut touched = false;
        for node in &tree.nodes {
            if self
                .opts
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
            {
                return Err(Error::Interrupted);
            }
            touched |= self.node(node, dir, rel, snap_dir)?;
        }
        if let (true, Some(dir)) = (self.opts.delete, dir) {
            let mut sweep = Sweep::new(&self.opts.target, self.opts.select.as_ref(), true);
            sweep.extras(dir, rel, snap_dir, tree);
            self.swept(sweep);
        }
        Ok(touched)
    }

    fn swept(&mut self, sweep: Sweep<'_>) {
        self.out.deleted.extend(sweep.removed);
        self.out.blocked.extend(sweep.errors);
    }

    /// One entry of the snapshot, in `dir` at `rel`; true when it is selected (and not a
    /// socket), which makes a selective restore create its directory.
    fn node(
        &mut self,
        node: &Node,
        dir: Option<&Dir>,
        rel: &Path,
        snap_dir: &Path,
    ) -> Result<bool> {
        let name = OsStr::from_bytes(&node.name);
        let snap_path = snap_dir.join(name);
        let rel = rel.join(name);
        if node.kind == NodeKind::Dir {
            return self.dir(node, dir, &rel, &snap_path);
        }
        if let Some(select) = &self.opts.select {
            if !select(&snap_path, node) {
                return Ok(false);
            }
        }
        if node.kind == NodeKind::Socket {
            self.out.skipped += 1;
            return Ok(false);
        }
        let Some(dir) = dir else {
            self.out.created.push(self.entry(&rel, node.kind));
            return Ok(true);
        };
        let st = match dir.stat(&node.name) {
            Ok(None) => {
                self.out.created.push(self.entry(&rel, node.kind));
                return Ok(true);
            }
            Ok(Some(st)) => st,
            Err(e) => {
                self.blocked(&rel, format!("cannot look at the existing entry: {e}"));
                return Ok(true);
            }
        };
        let kept = match self.opts.overwrite {
            Overwrite::Never if st.kind != node.kind => {
                self.blocked(
                    &rel,
                    in_the_way(st.kind, node.kind, "(kept: --overwrite never)"),
                );
                return Ok(true);
            }
            Overwrite::Never => true,
            Overwrite::IfChanged => {
                node.kind == NodeKind::File
                    && st.kind == NodeKind::File
                    && st.size == node.size
                    && st.mtime == (node.mtime.0, node.mtime.1)
            }
            Overwrite::Always => false,
        };
        if kept {
            self.out.unchanged.push(self.entry(&rel, node.kind));
            return Ok(true);
        }
        if st.kind == NodeKind::Dir && !self.would_empty(dir, node, &rel, &snap_path) {
            self.blocked(
                &rel,
                format!(
                    "not restored: a directory that is not empty is in the way where the \
                     snapshot has a {} (left in place)",
                    kind_name(node.kind)
                ),
            );
            return Ok(true);
        }
        self.out.replaced.push(self.entry(&rel, node.kind));
        Ok(true)
    }

    /// Whether the directory `node.name` in `dir`, where the snapshot has another kind of
    /// entry, would be empty for its removal: it is, or `--delete` would empty it (its
    /// deletions are then listed).
    fn would_empty(&mut self, dir: &Dir, node: &Node, rel: &Path, snap_path: &Path) -> bool {
        let sub = match dir.open_dir(&node.name) {
            Ok(sub) => sub,
            Err(_) => return false,
        };
        if !self.opts.delete {
            return is_empty(&sub).unwrap_or(false);
        }
        let mut sweep = Sweep::new(&self.opts.target, self.opts.select.as_ref(), true);
        let emptied = sweep.contents(&sub, rel, snap_path);
        self.swept(sweep);
        emptied.all
    }

    /// A directory of the snapshot: found, made, or made in place of what is there.
    fn dir(
        &mut self,
        node: &Node,
        dir: Option<&Dir>,
        rel: &Path,
        snap_path: &Path,
    ) -> Result<bool> {
        let existing = match dir.map(|d| d.stat(&node.name)) {
            None | Some(Ok(None)) => None,
            Some(Ok(Some(st))) => Some(st),
            Some(Err(e)) => {
                self.blocked(rel, format!("cannot look at the existing entry: {e}"));
                return Ok(true);
            }
        };
        let all = self.opts.select.is_none();
        let sub_tree = match node.subtree.map(|id| self.repo.read_tree(&id)) {
            None => None,
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                self.blocked(rel, format!("directory contents cannot be read: {e}"));
                return Ok(all);
            }
        };
        let walk = |p: &mut Self, d: Option<&Dir>| match &sub_tree {
            Some(t) => p.tree(t, d, rel, snap_path),
            None => Ok(false),
        };
        match existing {
            Some(st) if st.kind == NodeKind::Dir => {
                let Some(parent) = dir else { return Ok(false) };
                match parent.open_dir(&node.name) {
                    Ok(d) => walk(self, Some(&d)),
                    Err(e) => {
                        self.blocked(rel, format!("cannot open the existing directory: {e}"));
                        Ok(true)
                    }
                }
            }
            Some(st) => {
                let mark = self.out.mark();
                let touched = walk(self, None)? || all;
                if !touched {
                    return Ok(false);
                }
                if self.opts.overwrite == Overwrite::Never {
                    self.out.back_to(&mark);
                    self.blocked(
                        rel,
                        in_the_way(st.kind, NodeKind::Dir, "(kept: --overwrite never)"),
                    );
                } else {
                    self.out.replaced.push(self.entry(rel, NodeKind::Dir));
                }
                Ok(true)
            }
            None => {
                let touched = walk(self, None)? || all;
                if touched {
                    self.out.created.push(self.entry(rel, NodeKind::Dir));
                }
                Ok(touched)
            }
        }
    }
}

fn in_the_way(found: NodeKind, want: NodeKind, why: &str) -> String {
    format!(
        "not restored: a {} is in the way where the snapshot has a {} {why}",
        kind_name(found),
        kind_name(want)
    )
}

/// What `cairn restore --dry-run --json` prints: the counts, and the lists by action.
pub struct PreviewSummary<'a> {
    /// The snapshot the restore would read.
    pub snapshot: SnapshotId,
    /// The restore target, as the user gave it.
    pub target: &'a Path,
    /// What the restore would do.
    pub preview: &'a Preview,
}

impl Serialize for PreviewSummary<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.preview;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("blocked", &p.blocked.len())?;
        map.serialize_entry("created", &p.created.len())?;
        map.serialize_entry("deleted", &p.deleted.len())?;
        map.serialize_entry("dry_run", &true)?;
        map.serialize_entry("message_type", "summary")?;
        map.serialize_entry("paths", &Lists(p))?;
        map.serialize_entry("replaced", &p.replaced.len())?;
        map.serialize_entry("skipped", &p.skipped)?;
        map.serialize_entry("snapshot_id", &self.snapshot.to_hex())?;
        path_entry(&mut map, "target", self.target)?;
        map.serialize_entry("target_created", &p.target_created)?;
        map.serialize_entry("unchanged", &p.unchanged.len())?;
        map.end()
    }
}

/// `paths`: one list per action.
struct Lists<'a>(&'a Preview);

impl Serialize for Lists<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut map = s.serialize_map(Some(5))?;
        map.serialize_entry("blocked", &Blocked(&p.blocked))?;
        map.serialize_entry("created", &Entries(&p.created))?;
        map.serialize_entry("deleted", &Entries(&p.deleted))?;
        map.serialize_entry("replaced", &Entries(&p.replaced))?;
        map.serialize_entry("unchanged", &Entries(&p.unchanged))?;
        map.end()
    }
}

/// `{"path", "type"}` objects (`path_hex` too for a path that is not UTF-8).
pub(super) struct Entries<'a>(pub(super) &'a [PreviewEntry]);

impl Serialize for Entries<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for e in self.0 {
            seq.serialize_element(&Entry(e))?;
        }
        seq.end()
    }
}

struct Entry<'a>(&'a PreviewEntry);

impl Serialize for Entry<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        path_entry(&mut map, "path", &self.0.path)?;
        map.serialize_entry("type", self.0.kind.name())?;
        map.end()
    }
}

/// `{"path", "error"}` objects.
struct Blocked<'a>(&'a [RestoreError]);

impl Serialize for Blocked<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for e in self.0 {
            seq.serialize_element(&BlockedEntry(e))?;
        }
        seq.end()
    }
}

struct BlockedEntry<'a>(&'a RestoreError);

impl Serialize for BlockedEntry<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("error", &self.0.error)?;
        path_entry(&mut map, "path", &self.0.path)?;
        map.end()
    }
}

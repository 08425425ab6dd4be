//! Comparing two snapshots: walks both trees together and skips every subtree whose id is the
//! same on both sides, so two large, mostly equal snapshots diff in time proportional to the
//! change.

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::id::TreeId;
use crate::repo::Repository;
use crate::tree::{Node, NodeKind, Tree};

/// Called for every changed path: (path, change, node before, node after). The path is
/// absolute, from the snapshot's root `/`; the node before is `None` for
/// [`Change::Added`], the node after `None` for [`Change::Removed`].
pub type Report<'a> = &'a mut dyn FnMut(&Path, Change, Option<&Node>, Option<&Node>);

/// What happened to one path, with the one-character symbol `cairn diff` prints for it
/// (README.md "A short tour").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// `+`: the path exists in the second snapshot only.
    Added,
    /// `-`: the path exists in the first snapshot only.
    Removed,
    /// `M`: content changed (chunks, symlink target or device number).
    Modified,
    /// `U`: metadata only (mode, owner, mtime or extended attributes).
    Metadata,
    /// `T`: type changed (for example a file became a directory).
    TypeChanged,
}

impl Change {
    /// The symbol printed before the path: `+`, `-`, `M`, `U` or `T`.
    pub fn symbol(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::Metadata => 'U',
            Change::TypeChanged => 'T',
        }
    }
}

/// How many paths [`diff`] reported, by kind of change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiffTotals {
    /// Paths in the second snapshot only, each entry below an added directory included.
    pub added: u64,
    /// Paths in the first snapshot only, each entry below a removed directory included.
    pub removed: u64,
    /// Paths whose content changed ([`Change::Modified`]).
    pub modified: u64,
    /// Paths whose metadata alone changed ([`Change::Metadata`]).
    pub metadata: u64,
    /// Paths whose type changed ([`Change::TypeChanged`]).
    pub type_changed: u64,
    /// Bytes: sizes of the files (and symlink targets) that appear in the second snapshot only.
    pub bytes_added: u64,
    /// Bytes: sizes of the files (and symlink targets) that appear in the first snapshot only.
    pub bytes_removed: u64,
}

/// Calls `report` for every changed path, in path order, and returns totals.
pub fn diff(repo: &Repository, a: TreeId, b: TreeId, report: Report<'_>) -> Result<DiffTotals> {
    let mut totals = DiffTotals::default();
    diff_trees(repo, Some(a), Some(b), Path::new("/"), report, &mut totals)?;
    Ok(totals)
}

fn load(repo: &Repository, id: Option<TreeId>) -> Result<Tree> {
    match id {
        Some(id) => repo.read_tree(&id),
        None => Ok(Tree::default()),
    }
}

fn diff_trees(
    repo: &Repository,
    a: Option<TreeId>,
    b: Option<TreeId>,
    dir: &Path,
    report: Report<'_>,
    t: &mut DiffTotals,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let (ta, tb) = (load(repo, a)?, load(repo, b)?);
    let (mut i, mut j) = (0, 0);
    while i < ta.nodes.len() || j < tb.nodes.len() {
        let ord = match (ta.nodes.get(i), tb.nodes.get(j)) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match ord {
            Ordering::Less => {
                let n = &ta.nodes[i];
                one_side(repo, n, dir, Change::Removed, report, t)?;
                i += 1;
            }
            Ordering::Greater => {
                let n = &tb.nodes[j];
                one_side(repo, n, dir, Change::Added, report, t)?;
                j += 1;
            }
            Ordering::Equal => {
                let (x, y) = (&ta.nodes[i], &tb.nodes[j]);
                let path = dir.join(OsStr::from_bytes(&x.name));
                if x.kind != y.kind {
                    report(&path, Change::TypeChanged, Some(x), Some(y));
                    t.type_changed += 1;
                    if x.kind == NodeKind::Dir || y.kind == NodeKind::Dir {
                        diff_trees(repo, x.subtree, y.subtree, &path, report, t)?;
                    }
                } else {
                    let content =
                        x.content != y.content || x.target != y.target || x.rdev != y.rdev;
                    let meta = x.mode != y.mode
                        || x.uid != y.uid
                        || x.gid != y.gid
                        || x.mtime != y.mtime
                        || x.xattrs != y.xattrs;
                    if content {
                        report(&path, Change::Modified, Some(x), Some(y));
                        t.modified += 1;
                    } else if meta {
                        report(&path, Change::Metadata, Some(x), Some(y));
                        t.metadata += 1;
                    }
                    if x.kind == NodeKind::Dir {
                        diff_trees(repo, x.subtree, y.subtree, &path, report, t)?;
                    }
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

/// Reports a node present on one side only, and everything below it.
fn one_side(
    repo: &Repository,
    n: &Node,
    dir: &Path,
    change: Change,
    report: Report<'_>,
    t: &mut DiffTotals,
) -> Result<()> {
    let path: PathBuf = dir.join(OsStr::from_bytes(&n.name));
    let (a, b) = if change == Change::Added {
        (None, Some(n))
    } else {
        (Some(n), None)
    };
    report(&path, change, a, b);
    let size = if n.kind == NodeKind::Dir { 0 } else { n.size };
    if change == Change::Added {
        t.added += 1;
        t.bytes_added += size;
    } else {
        t.removed += 1;
        t.bytes_removed += size;
    }
    if let Some(sub) = n.subtree {
        let tree = repo.read_tree(&sub)?;
        for c in &tree.nodes {
            one_side(repo, c, &path, change, report, t)?;
        }
    }
    Ok(())
}

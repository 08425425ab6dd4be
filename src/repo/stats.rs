//! Sizes: what a restore would write, what is stored, and the compression and dedup ratios.

use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::id::{BlobId, TreeId};
use crate::repo::Repository;
use crate::tree::NodeKind;

/// Totals over one or more snapshots, as [`stats`] computes them. Counts add up per snapshot
/// (a file in two snapshots counts twice); the `unique_*` fields count each blob once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// How many snapshot roots were walked.
    pub snapshots: u64,
    /// Bytes a restore of the snapshot(s) would write (file sizes, holes included).
    pub restore_size: u64,
    /// Regular files in the snapshot trees, summed over the snapshots.
    pub files: u64,
    /// Directories below the snapshot roots (the roots themselves not counted), summed over
    /// the snapshots.
    pub dirs: u64,
    /// Distinct blobs referenced (chunks and trees).
    pub unique_blobs: u64,
    /// Plaintext bytes of the distinct blobs.
    pub unique_raw: u64,
    /// Stored (compressed and sealed) bytes of the distinct blobs.
    pub unique_stored: u64,
    /// Plaintext bytes of the distinct file-content chunks (trees excluded).
    pub unique_data_raw: u64,
}

impl Stats {
    /// Plaintext over stored bytes (> 1 when compression helps).
    pub fn compression_ratio(&self) -> f64 {
        ratio(self.unique_raw, self.unique_stored)
    }
    /// Restore size over distinct file content (> 1 when deduplication helps).
    pub fn dedup_ratio(&self) -> f64 {
        ratio(self.restore_size, self.unique_data_raw)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// Per-tree totals, memoized so shared subtrees are read once.
#[derive(Clone, Copy, Default)]
struct Totals {
    size: u64,
    files: u64,
    dirs: u64,
}

struct Walk<'a> {
    repo: &'a Repository,
    memo: HashMap<TreeId, Totals>,
    blobs: HashSet<BlobId>,
    stats: Stats,
}

impl Walk<'_> {
    fn blob(&mut self, id: BlobId) {
        if self.blobs.insert(id) {
            self.stats.unique_blobs += 1;
            if let Some(loc) = self.repo.index().get(&id) {
                self.stats.unique_raw += loc.entry.raw_length as u64;
                self.stats.unique_stored += loc.entry.length as u64;
                if loc.entry.kind == crate::pack::BlobKind::Data {
                    self.stats.unique_data_raw += loc.entry.raw_length as u64;
                }
            }
        }
    }

    fn tree(&mut self, id: TreeId) -> Result<Totals> {
        if let Some(t) = self.memo.get(&id) {
            return Ok(*t);
        }
        self.blob(id.0);
        let tree = self.repo.read_tree(&id)?;
        let mut t = Totals::default();
        for n in &tree.nodes {
            match n.kind {
                NodeKind::Dir => {
                    t.dirs += 1;
                    if let Some(sub) = n.subtree {
                        let s = self.tree(sub)?;
                        t.size += s.size;
                        t.files += s.files;
                        t.dirs += s.dirs;
                    }
                }
                NodeKind::File => {
                    t.files += 1;
                    t.size += n.size;
                    for c in n.chunks() {
                        self.blob(c);
                    }
                }
                _ => {}
            }
        }
        self.memo.insert(id, t);
        Ok(t)
    }
}

/// Statistics over the given snapshot roots (one snapshot, or all of them).
pub fn stats(repo: &Repository, roots: &[TreeId]) -> Result<Stats> {
    let mut w = Walk {
        repo,
        memo: HashMap::new(),
        blobs: HashSet::new(),
        stats: Stats::default(),
    };
    for root in roots {
        let t = w.tree(*root)?;
        w.stats.snapshots += 1;
        w.stats.restore_size += t.size;
        w.stats.files += t.files;
        w.stats.dirs += t.dirs;
    }
    Ok(w.stats)
}

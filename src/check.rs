//! Integrity checks: structure always; every byte with `read_data`.
//!
//! Every problem is named (which file, what is wrong). Nothing here panics on hostile bytes:
//! every parser it calls bounds its allocations and returns errors.

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;

use crate::backend::FileKind;
use crate::error::Result;
use crate::id::{content_hash, BlobId, PackId, TreeId};
use crate::pack::{self, PackEntry, TRAILER_LEN};
use crate::repo::Repository;

#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Decrypt and verify every blob, and hash every pack.
    pub read_data: bool,
}

#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// Each a complete sentence naming the damaged object.
    pub errors: Vec<String>,
    /// Not damage, but worth knowing (unreferenced packs, stray files).
    pub warnings: Vec<String>,
    pub snapshots: u64,
    pub trees: u64,
    pub packs: u64,
    pub blobs_read: u64,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Checks `repo` (index loaded by this function).
pub fn check(repo: &mut Repository, opts: &CheckOptions) -> Result<CheckReport> {
    let mut r = CheckReport::default();
    repo.load_index()?;
    for w in repo.take_warnings() {
        r.errors.push(w);
    }
    let listed: HashMap<String, u64> = repo.list(FileKind::Pack)?.into_iter().collect();
    let by_pack = repo.index().entries_by_pack();

    for (pack, (size, entries)) in &by_pack {
        r.packs += 1;
        let name = pack.to_hex();
        match listed.get(&name) {
            None => r.errors.push(format!(
                "pack {name} is in the index but missing from data/"
            )),
            Some(0) => r.errors.push(format!("pack {name} is empty (zero-length)")),
            Some(actual) if actual != size => r.errors.push(format!(
                "pack {name} is {actual} bytes, the index says {size} (truncated or damaged)"
            )),
            Some(_) => check_pack(repo, pack, *size, entries, opts.read_data, &mut r),
        }
    }
    for (name, size) in &listed {
        let known = PackId::from_hex(name).is_some_and(|id| by_pack.contains_key(&id));
        if !known {
            if *size == 0 {
                r.warnings.push(format!(
                    "zero-length file data/{}/{name} (treated as absent)",
                    &name[..2]
                ));
            } else {
                r.warnings.push(format!(
                    "pack {name} is not in any index (left by an interrupted backup, or the index lost it: `cairn repair index` adds it back, `cairn prune` removes it)"
                ));
            }
        }
    }

    let snapshots = repo.snapshots()?;
    for w in repo.take_warnings() {
        r.errors.push(w);
    }
    let mut seen_trees = HashSet::new();
    for (id, snap) in &snapshots {
        r.snapshots += 1;
        let mut missing = Vec::new();
        walk_check(
            repo,
            snap.tree,
            std::path::Path::new("/"),
            &mut seen_trees,
            &mut missing,
            &mut r,
        );
        for m in missing {
            r.errors.push(format!("snapshot {}: {m}", id.short()));
        }
    }
    Ok(r)
}

fn walk_check(
    repo: &Repository,
    tree: TreeId,
    path: &std::path::Path,
    seen: &mut HashSet<TreeId>,
    missing: &mut Vec<String>,
    r: &mut CheckReport,
) {
    if !seen.insert(tree) {
        return;
    }
    r.trees += 1;
    let t = match repo.read_tree(&tree) {
        Ok(t) => t,
        Err(e) => {
            missing.push(format!(
                "directory {}: tree {} cannot be read: {e}",
                path.display(),
                tree.0.short()
            ));
            return;
        }
    };
    for n in &t.nodes {
        let p = path.join(std::ffi::OsStr::from_bytes(&n.name));
        for c in n.chunks() {
            if !repo.index().contains(&c) {
                missing.push(format!(
                    "file {} needs chunk {} which is in no index",
                    p.display(),
                    c.short()
                ));
            }
        }
        if let Some(sub) = n.subtree {
            walk_check(repo, sub, &p, seen, missing, r);
        }
    }
}

fn check_pack(
    repo: &Repository,
    pack: &PackId,
    size: u64,
    entries: &[PackEntry],
    read_data: bool,
    r: &mut CheckReport,
) {
    let name = pack.to_hex();
    let backend = repo.backend();
    let header_entries = if read_data {
        let bytes = match read_retry(|| backend.get(FileKind::Pack, &name)) {
            Ok(b) => b,
            Err(e) => {
                r.errors.push(format!("pack {name} cannot be read: {e}"));
                return;
            }
        };
        if hex::encode(content_hash(&bytes)) != name {
            r.errors.push(format!(
                "pack {name} is damaged: its content does not hash to its name"
            ));
        }
        let header = match pack::read_pack(repo.keys(), &bytes) {
            Ok(h) => h,
            Err(e) => {
                r.errors.push(format!("pack {name}: {e}"));
                return;
            }
        };
        for e in &header {
            r.blobs_read += 1;
            let range = e.offset as usize..(e.offset as usize + e.length as usize);
            if let Err(why) = pack::open_blob(repo.keys(), e, &bytes[range]) {
                r.errors.push(format!(
                    "pack {name}: {} blob {} is damaged: {why}",
                    e.kind.name(),
                    e.id.short()
                ));
            }
        }
        header
    } else {
        match read_header(repo, &name, size) {
            Ok(h) => h,
            Err(e) => {
                r.errors.push(format!("pack {name}: {e}"));
                return;
            }
        }
    };
    let mut want: Vec<(BlobId, u32, u32)> =
        entries.iter().map(|e| (e.id, e.offset, e.length)).collect();
    let mut have: Vec<(BlobId, u32, u32)> = header_entries
        .iter()
        .map(|e| (e.id, e.offset, e.length))
        .collect();
    want.sort();
    have.sort();
    if want != have {
        r.errors.push(format!(
            "pack {name}: its header lists {} blobs, the index {} — they disagree (`cairn repair index` rebuilds the index from pack headers)",
            have.len(),
            want.len()
        ));
    }
}

/// Reads a pack's header with two ranged reads (trailer, then header).
pub fn read_header(repo: &Repository, name: &str, size: u64) -> Result<Vec<PackEntry>, String> {
    let backend = repo.backend();
    if size < TRAILER_LEN as u64 {
        return Err("shorter than its trailer".into());
    }
    let trailer = read_retry(|| {
        backend.get_range(FileKind::Pack, name, size - TRAILER_LEN as u64, TRAILER_LEN)
    })
    .map_err(|e| e.to_string())?;
    let hl = pack::header_len_from_trailer(&trailer, size)?;
    let start = size - (TRAILER_LEN + hl) as u64;
    let header = read_retry(|| backend.get_range(FileKind::Pack, name, start, hl))
        .map_err(|e| e.to_string())?;
    pack::parse_header(repo.keys(), &header, size)
}

/// A failed read is retried once before it counts (a flaky cable is not a corrupt pack).
fn read_retry<T>(mut f: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    f().or_else(|_| f())
}

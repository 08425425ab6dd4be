//! Repairs: rebuild the index from verified packs; rewrite snapshots around missing data.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::backend::FileKind;
use crate::check::{pack_workers, par_map, verify_pack_bytes};
use crate::error::Result;
use crate::id::{BlobId, IndexId, PackId, SnapshotId, TreeId};
use crate::index::IndexPack;
use crate::pack::{self, BlobKind};
use crate::repo::{backend_err, Repository};
use crate::saver::{BlobSaver, Known};
use crate::tree::Tree;

/// What [`repair_index`] did: the `cairn repair index --json` keys of the same names
/// (`rejected` is `rejected_packs`).
#[derive(Clone, Debug, Default)]
pub struct RepairIndexReport {
    /// Packs indexed: each verified (its bytes hash to its name, every blob in it opens).
    pub packs: u64,
    /// Blob entries of the verified packs now indexed (salvaged blobs not included).
    pub blobs: u64,
    /// Packs left out of the index, each with why (pack id, reason). They stay in place:
    /// repair never deletes anything but superseded index files.
    pub rejected: Vec<(String, String)>,
    /// Index files that existed before the repair, all superseded by the new index.
    pub old_index_files: u64,
    /// Blobs that opened in rejected packs and were in no verified pack: copied into new
    /// packs so the index names them in a verified home.
    pub blobs_salvaged: u64,
    /// New packs written for salvaged blobs.
    pub packs_written: u64,
}

/// Rebuilds the index from the packs, trusting none of them by name (repo-format.md §10.2):
/// every pack is read whole, and indexed only when its bytes hash to its name and every blob
/// its header lists opens (decrypts, and hashes to its id). A pack that fails is not indexed,
/// is named in the report, and is left in place; its blobs that still open and that no
/// verified pack holds are copied into new packs (so a renamed or partly damaged pack loses
/// nothing that can be read). When two packs hold the same blob, the verified one wins.
///
/// The new index is durable before any old index file is removed, so a crash in between
/// leaves both (the old ones superseded).
pub fn repair_index(repo: &mut Repository) -> Result<RepairIndexReport> {
    let mut rep = RepairIndexReport::default();
    // What the current index says a pack holds: a way into a pack whose header is damaged.
    repo.load_index()?;
    let known = repo.entries_by_pack()?;
    let old: Vec<String> = repo.list_names(FileKind::Index)?;
    let packs: Vec<(String, u64)> = repo.list(FileKind::Pack)?;
    let verdicts = {
        let repo = &*repo;
        let known = &known;
        par_map(&packs, pack_workers(repo), |(name, size)| {
            let Some(id) = PackId::from_hex(name) else {
                return Err("not a pack name".to_string());
            };
            if *size == 0 {
                return Err("it is empty (zero-length)".to_string());
            }
            let bytes = repo
                .backend()
                .get(FileKind::Pack, name)
                .map_err(|e| format!("it cannot be read ({e})"))?;
            let fallback = known.get(&id).map(|(_, e)| e.as_slice()).unwrap_or(&[]);
            Ok(verify_pack_bytes(repo.keys(), name, &bytes, None, fallback))
        })
    };

    // Verified packs first, in name order: they are the copies the index names. The old index
    // is not trusted, so the saver counts as stored only what verified and what it salvages.
    let mut out = Vec::new();
    let mut saver = BlobSaver::new(repo, Known::Queued);
    for ((name, size), v) in packs.iter().zip(&verdicts) {
        let (Some(id), Ok(v)) = (PackId::from_hex(name), v) else {
            continue;
        };
        if !v.verified() {
            continue;
        }
        let blobs = v.good.clone();
        rep.packs += 1;
        rep.blobs += blobs.len() as u64;
        saver.mark_stored(blobs.iter().map(|e| e.id));
        out.push(IndexPack {
            id,
            size: *size,
            blobs,
        });
    }

    // Then what can be saved from the others: blobs that open and that no verified pack holds,
    // copied (after opening again) into new packs, trees and data apart.
    for ((name, _), v) in packs.iter().zip(verdicts) {
        let v = match v {
            Ok(v) if v.verified() => continue,
            Ok(v) => v,
            Err(why) => {
                rep.rejected.push((name.clone(), why));
                continue;
            }
        };
        let mut salvaged = 0u64;
        for e in &v.good {
            if saver.has(repo, &e.id) {
                continue;
            }
            let Ok(sealed) =
                repo.backend()
                    .get_range(FileKind::Pack, name, e.offset as u64, e.length as usize)
            else {
                continue;
            };
            if pack::open_blob(repo.keys(), e, &sealed).is_err() {
                continue;
            }
            saver.save_sealed(repo, e, &sealed)?;
            salvaged += 1;
        }
        rep.blobs_salvaged += salvaged;
        let mut why = v.why();
        if salvaged > 0 {
            why.push_str(&format!(
                "; {salvaged} of its blobs that open and that no verified pack holds were copied into new packs"
            ));
        }
        rep.rejected.push((name.clone(), why));
    }
    saver.flush(repo)?;
    let written = saver.take_stored();
    rep.packs_written = written.len() as u64;
    out.extend(written);
    rep.rejected.sort();

    // Invariant: every pack the new index names is durable and verified.
    let supersedes = old.iter().filter_map(|n| IndexId::from_hex(n)).collect();
    let new = repo.save_index_files(out, supersedes)?;
    for name in &old {
        if !new.iter().any(|n| n.to_hex() == *name) {
            repo.backend()
                .delete(FileKind::Index, name)
                .map_err(backend_err(FileKind::Index, name))?;
        }
    }
    rep.old_index_files = old.len() as u64;
    repo.load_index()?;
    Ok(rep)
}

/// What [`repair_snapshots`] did: the `cairn repair snapshots --json` keys of the same names.
#[derive(Clone, Debug, Default)]
pub struct RepairSnapshotsReport {
    /// (old id, new id or None for a dry run, notes)
    pub repaired: Vec<(SnapshotId, Option<SnapshotId>, Vec<String>)>,
    /// Snapshots whose every tree and chunk is readable and indexed, left as they are.
    pub intact: u64,
    /// Damaged originals removed after their repaired copy was saved (with `forget`).
    pub forgotten: u64,
}

/// Rewrites every snapshot whose trees reference missing or unreadable data: files with a
/// missing chunk are dropped, directories whose tree is lost become empty, and each change is
/// recorded in the new snapshot's notes. With `forget`, the damaged originals are removed
/// (after the new snapshots are durable).
pub fn repair_snapshots(
    repo: &mut Repository,
    forget: bool,
    dry_run: bool,
) -> Result<RepairSnapshotsReport> {
    repo.load_index()?;
    let mut rep = RepairSnapshotsReport::default();
    let mut memo: HashMap<TreeId, (TreeId, Vec<String>)> = HashMap::new();
    let mut new_trees: Vec<(BlobId, Vec<u8>)> = Vec::new();
    let mut plans = Vec::new();
    for (id, snap) in repo.snapshots()? {
        let mut notes = Vec::new();
        let new_root = rewrite(
            repo,
            snap.tree,
            Path::new("/"),
            &mut memo,
            &mut new_trees,
            &mut notes,
        )?;
        if notes.is_empty() {
            rep.intact += 1;
        } else {
            plans.push((id, snap, new_root, notes));
        }
    }
    if dry_run || plans.is_empty() {
        rep.repaired = plans
            .into_iter()
            .map(|(id, _, _, n)| (id, None, n))
            .collect();
        return Ok(rep);
    }
    // Invariant: the rewritten trees are in a durable pack and index before any snapshot uses them.
    let mut saver = BlobSaver::new(repo, Known::IndexOrQueued);
    for (id, bytes) in &new_trees {
        saver.save(repo, BlobKind::Tree, *id, bytes)?;
    }
    saver.commit(repo)?;
    for (old, mut snap, root, notes) in plans {
        snap.tree = root;
        snap.notes.extend(notes.iter().cloned());
        snap.original = Some(old);
        if !snap.tags.iter().any(|t| t == "repaired") {
            snap.tags.push("repaired".into());
        }
        let new = repo.save_snapshot(&snap)?;
        if forget {
            repo.backend()
                .delete(FileKind::Snapshot, &old.to_hex())
                .map_err(backend_err(FileKind::Snapshot, &old.to_hex()))?;
            rep.forgotten += 1;
        }
        rep.repaired.push((old, Some(new), notes));
    }
    Ok(rep)
}

/// Returns the id of `tree` with damage removed; records what was removed in `notes`.
fn rewrite(
    repo: &Repository,
    tree: TreeId,
    path: &Path,
    memo: &mut HashMap<TreeId, (TreeId, Vec<String>)>,
    new_trees: &mut Vec<(BlobId, Vec<u8>)>,
    notes: &mut Vec<String>,
) -> Result<TreeId> {
    if let Some((id, n)) = memo.get(&tree) {
        // The same subtree elsewhere: same repair, notes re-rooted at this path are close enough
        // to name the damage; keep the first path's wording.
        notes.extend(n.iter().cloned());
        return Ok(*id);
    }
    let mut local = Vec::new();
    let t = match repo.read_tree(&tree) {
        Ok(t) => t,
        Err(e) => {
            local.push(format!("{}: directory contents lost ({e})", path.display()));
            Tree::default()
        }
    };
    let mut out = Tree::default();
    for n in &t.nodes {
        let p = path.join(std::ffi::OsStr::from_bytes(&n.name));
        let mut n = n.clone();
        if let Some(missing) = n.chunks().find(|c| !repo.index().contains(c)) {
            local.push(format!(
                "{}: dropped, chunk {} is missing",
                p.display(),
                missing.short()
            ));
            continue;
        }
        if let Some(sub) = n.subtree {
            n.subtree = Some(rewrite(repo, sub, &p, memo, new_trees, &mut local)?);
        }
        out.nodes.push(n);
    }
    let id = if local.is_empty() {
        tree
    } else {
        let bytes = out.encode()?;
        let id = repo.keys().tree_id(&bytes);
        new_trees.push((id, bytes));
        TreeId(id)
    };
    memo.insert(tree, (id, local.clone()));
    notes.extend(local);
    Ok(id)
}

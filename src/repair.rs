//! Repairs: rebuild the index from pack headers; rewrite snapshots around missing data.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::backend::FileKind;
use crate::check::read_header;
use crate::error::Result;
use crate::id::{BlobId, IndexId, PackId, SnapshotId, TreeId};
use crate::index::{IndexFile, IndexPack};
use crate::pack::{self, BlobKind, PackWriter};
use crate::repo::{backend_err, Repository};
use crate::tree::Tree;

#[derive(Clone, Debug, Default)]
pub struct RepairIndexReport {
    pub packs: u64,
    pub blobs: u64,
    /// Packs whose header could not be read: their blobs are lost to the index.
    pub unreadable: Vec<(String, String)>,
    pub old_index_files: u64,
}

/// Rebuilds the index from every pack's header. The new index is durable before any old index
/// file is removed, so a crash in between leaves both (the old ones superseded).
pub fn repair_index(repo: &mut Repository) -> Result<RepairIndexReport> {
    let mut rep = RepairIndexReport::default();
    let old: Vec<String> = repo.list_names(FileKind::Index)?;
    let packs = repo.list(FileKind::Pack)?;
    let mut out = Vec::new();
    for (name, size) in packs {
        let Some(id) = PackId::from_hex(&name) else {
            continue;
        };
        match read_header(repo, &name, size) {
            Ok(blobs) => {
                rep.packs += 1;
                rep.blobs += blobs.len() as u64;
                out.push(IndexPack { id, size, blobs });
            }
            Err(e) => rep.unreadable.push((name, e)),
        }
    }
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

#[derive(Clone, Debug, Default)]
pub struct RepairSnapshotsReport {
    /// (old id, new id or None for a dry run, notes)
    pub repaired: Vec<(SnapshotId, Option<SnapshotId>, Vec<String>)>,
    pub intact: u64,
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
    let mut writer = PackWriter::new();
    let mut seen = std::collections::HashSet::new();
    for (id, bytes) in &new_trees {
        if repo.index().contains(id) || !seen.insert(*id) {
            continue;
        }
        let sealed = pack::seal_blob(repo.keys(), BlobKind::Tree, id, bytes, repo.compression())?;
        writer.add(BlobKind::Tree, *id, &sealed, bytes.len() as u32)?;
    }
    if !writer.is_empty() {
        let p = writer.finish(repo.keys(), repo.config().pack_size as usize)?;
        p.store(repo.backend().as_ref())?;
        repo.save_index(&IndexFile {
            supersedes: Vec::new(),
            packs: vec![IndexPack {
                id: p.id,
                size: p.bytes.len() as u64,
                blobs: p.entries,
            }],
        })?;
    }
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

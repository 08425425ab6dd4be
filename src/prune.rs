//! Space reclamation: delete packs nothing references, repack mostly-unused ones.
//!
//! Order (repo-format.md §10.2), each step durable before the next:
//! 1. mark every blob reachable from a snapshot; refuse to go on if any is in no index;
//! 2. write repacked packs;
//! 3. write the new index, superseding every old index file;
//! 4. delete the old index files;
//! 5. only then delete packs.
//!
//! Killed at any instant, the repository stays valid: before 3 the old index still describes
//! every old pack (new packs are unreferenced); after 3 the new index describes every pack it
//! names; leftovers of 4 and 5 are superseded index files and unreferenced packs, which the next
//! prune removes.
//!
//! Memory: reachable data blobs are marked in a set of 8-byte truncated ids (a collision keeps a
//! blob that could have gone — never the reverse); trees are tracked by full id so no subtree
//! is ever skipped by a collision.

use std::collections::{HashMap, HashSet};

use crate::backend::FileKind;
use crate::error::{Error, Result};
use crate::id::{BlobId, IndexId, PackId, TreeId};
use crate::index::IndexPack;
use crate::pack::{self, BlobKind, PackEntry, PackWriter};
use crate::repo::{backend_err, Repository};

#[derive(Clone, Debug)]
pub struct PruneOptions {
    pub dry_run: bool,
    /// Repack a pack when more than this share of it is unused.
    pub max_unused_percent: f64,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            dry_run: false,
            max_unused_percent: 5.0,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PruneReport {
    pub packs_total: u64,
    pub packs_deleted: u64,
    pub packs_repacked: u64,
    /// Packs in `data/` that no index names (left by interrupted backups).
    pub packs_unindexed: u64,
    pub packs_written: u64,
    pub blobs_used: u64,
    pub blobs_unused: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub bytes_freed: u64,
    pub index_files_replaced: u64,
}

fn short_key(id: &BlobId) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    u64::from_le_bytes(b)
}

/// Every blob reachable from any snapshot.
struct Marks {
    used: HashSet<u64>,
    trees: HashSet<TreeId>,
}

fn mark(repo: &Repository) -> Result<Marks> {
    let mut m = Marks {
        used: HashSet::new(),
        trees: HashSet::new(),
    };
    let listed = repo.list(FileKind::Snapshot)?;
    for (name, _) in listed {
        let Some(id) = crate::id::SnapshotId::from_hex(&name) else {
            continue;
        };
        // A snapshot that cannot be read could reference anything: deleting data now could lose it.
        let snap = repo.read_snapshot(&id).map_err(|e| {
            Error::InvalidInput(format!(
                "snapshot {} cannot be read ({e}); prune deletes nothing until `cairn check` is clean",
                id.short()
            ))
        })?;
        mark_tree(repo, snap.tree, &mut m)?;
    }
    Ok(m)
}

fn mark_tree(repo: &Repository, id: TreeId, m: &mut Marks) -> Result<()> {
    if !m.trees.insert(id) {
        return Ok(());
    }
    m.used.insert(short_key(&id.0));
    let tree = repo.read_tree(&id).map_err(|e| {
        Error::InvalidInput(format!(
            "tree {} cannot be read ({e}); prune deletes nothing until `cairn check` is clean",
            id.0.short()
        ))
    })?;
    for n in &tree.nodes {
        for c in n.chunks() {
            if !repo.index().contains(&c) {
                return Err(Error::InvalidInput(format!(
                    "chunk {} is referenced but in no index; run `cairn repair index` before pruning",
                    c.short()
                )));
            }
            m.used.insert(short_key(&c));
        }
        if let Some(sub) = n.subtree {
            mark_tree(repo, sub, m)?;
        }
    }
    Ok(())
}

/// Plans and (unless dry-run) performs a prune. The caller holds the exclusive lock.
pub fn prune(repo: &mut Repository, opts: &PruneOptions) -> Result<PruneReport> {
    repo.load_index()?;
    let old_index_files: Vec<String> = repo.list_names(FileKind::Index)?;
    let marks = mark(repo)?;
    let listed: HashMap<String, u64> = repo.list(FileKind::Pack)?.into_iter().collect();
    let by_pack = repo.index().entries_by_pack();
    let mut rep = PruneReport::default();
    let mut keep: Vec<IndexPack> = Vec::new();
    let mut repack: Vec<(PackId, Vec<PackEntry>)> = Vec::new();
    let mut delete: Vec<PackId> = Vec::new();
    let mut first_copy: HashSet<BlobId> = HashSet::new();

    let mut packs: Vec<_> = by_pack.into_iter().collect();
    packs.sort_by_key(|(id, _)| *id);
    for (id, (size, entries)) in packs {
        rep.packs_total += 1;
        rep.bytes_before += size;
        if !listed.contains_key(&id.to_hex()) {
            // Missing pack: keep its entries so `check` keeps reporting it.
            keep.push(IndexPack {
                id,
                size,
                blobs: entries,
            });
            continue;
        }
        let mut used_bytes = 0u64;
        let mut used = Vec::new();
        for e in &entries {
            if marks.used.contains(&short_key(&e.id))
                && repo.index().contains(&e.id)
                && first_copy.insert(e.id)
            {
                used_bytes += e.length as u64;
                used.push(*e);
                rep.blobs_used += 1;
            } else {
                rep.blobs_unused += 1;
            }
        }
        let unused_share = 100.0 * (1.0 - used_bytes as f64 / size.max(1) as f64);
        if used.is_empty() {
            delete.push(id);
            rep.packs_deleted += 1;
            rep.bytes_freed += size;
        } else if unused_share > opts.max_unused_percent && used.len() < entries.len() {
            repack.push((id, used));
            rep.packs_repacked += 1;
        } else {
            rep.bytes_after += size;
            keep.push(IndexPack {
                id,
                size,
                blobs: entries,
            });
        }
    }
    let indexed: HashSet<String> = keep
        .iter()
        .map(|p| p.id.to_hex())
        .chain(repack.iter().map(|p| p.0.to_hex()))
        .chain(delete.iter().map(|p| p.to_hex()))
        .collect();
    let mut unindexed = Vec::new();
    for (name, size) in &listed {
        if !indexed.contains(name) {
            rep.packs_unindexed += 1;
            rep.bytes_before += size;
            rep.bytes_freed += size;
            unindexed.push(name.clone());
        }
    }
    if !opts.dry_run {
        // Under the exclusive lock no writer runs: every temporary file is a crash leftover.
        rep.bytes_freed += repo
            .backend()
            .remove_temporaries()
            .map_err(backend_err(FileKind::Pack, ".tmp-*"))?;
    }
    if opts.dry_run {
        let repack_bytes: u64 = repack
            .iter()
            .map(|(_, e)| e.iter().map(|x| x.length as u64).sum::<u64>())
            .sum();
        let repacked_sizes: u64 = repack
            .iter()
            .map(|(id, _)| listed.get(&id.to_hex()).copied().unwrap_or(0))
            .sum();
        rep.bytes_after += repack_bytes;
        rep.bytes_freed += repacked_sizes.saturating_sub(repack_bytes);
        return Ok(rep);
    }
    if rep.packs_deleted == 0
        && rep.packs_repacked == 0
        && rep.packs_unindexed == 0
        && old_index_files.len() <= 1
    {
        return Ok(rep);
    }

    // 2. Repack: copy each used blob's sealed bytes (verified first) into new packs.
    // Trees and data stay in separate packs, as backup writes them.
    let (mut data, mut trees) = (PackWriter::new(), PackWriter::new());
    let pack_size = repo.config().pack_size as usize;
    let mut new_packs = Vec::new();
    for (id, entries) in &repack {
        let name = id.to_hex();
        let size = listed.get(&name).copied().unwrap_or(0);
        for e in entries {
            let sealed = repo
                .backend()
                .get_range(FileKind::Pack, &name, e.offset as u64, e.length as usize)
                .map_err(backend_err(FileKind::Pack, &name))?;
            pack::open_blob(repo.keys(), e, &sealed).map_err(|why| {
                Error::corrupt(
                    format!("{} blob {} in pack {}", e.kind.name(), e.id.short(), id.short()),
                    format!("{why}; prune stops before deleting anything (run `cairn check --read-data`)"),
                )
            })?;
            let writer = match e.kind {
                BlobKind::Data => &mut data,
                BlobKind::Tree => &mut trees,
            };
            writer.add(e.kind, e.id, &sealed, e.raw_length)?;
            if writer.is_full(pack_size) {
                new_packs.push(write_pack(repo, std::mem::take(writer))?);
            }
        }
        rep.bytes_freed += size;
    }
    for writer in [data, trees] {
        if !writer.is_empty() {
            new_packs.push(write_pack(repo, writer)?);
        }
    }
    rep.packs_written = new_packs.len() as u64;
    for p in &new_packs {
        rep.bytes_after += p.size;
        rep.bytes_freed = rep.bytes_freed.saturating_sub(p.size);
    }

    // 3. The new index supersedes every old index file; invariant: every pack it names is durable.
    let supersedes: Vec<IndexId> = old_index_files
        .iter()
        .filter_map(|n| IndexId::from_hex(n))
        .collect();
    keep.extend(new_packs);
    let new_ids = repo.save_index_files(keep, supersedes)?;
    rep.index_files_replaced = old_index_files.len() as u64;

    // 4. Old index files go; 5. then the packs nothing references any more.
    for name in &old_index_files {
        if !new_ids.iter().any(|n| n.to_hex() == *name) {
            repo.backend()
                .delete(FileKind::Index, name)
                .map_err(backend_err(FileKind::Index, name))?;
        }
    }
    for id in delete.iter().chain(repack.iter().map(|(id, _)| id)) {
        let name = id.to_hex();
        repo.backend()
            .delete(FileKind::Pack, &name)
            .map_err(backend_err(FileKind::Pack, &name))?;
    }
    for name in &unindexed {
        repo.backend()
            .delete(FileKind::Pack, name)
            .map_err(backend_err(FileKind::Pack, name))?;
    }
    repo.load_index()?;
    Ok(rep)
}

fn write_pack(repo: &Repository, writer: PackWriter) -> Result<IndexPack> {
    let p = writer.finish(repo.keys(), repo.config().pack_size as usize)?;
    p.store(repo.backend().as_ref())?;
    Ok(IndexPack {
        id: p.id,
        size: p.bytes.len() as u64,
        blobs: p.entries,
    })
}

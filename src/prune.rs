//! Space reclamation: delete packs nothing references, repack mostly-unused ones.
//!
//! Order (repo-format.md §10.2), each step durable before the next:
//! 1. check the structure: every index file and snapshot readable, every tree readable, every
//!    referenced blob in the index, every indexed pack present with its indexed size; refuse
//!    to go on otherwise (unless forced), naming why;
//! 2. mark every blob reachable from a snapshot;
//! 3. write repacked packs (each blob copied only after it opened);
//! 4. write the new index, superseding every old index file;
//! 5. delete the old index files;
//! 6. only then delete packs.
//!
//! **Nothing is deleted on the strength of a name.** A pack is deleted only after its own
//! header has been read (an index could lie about what a pack holds), and only if every blob
//! in it that a snapshot uses has a *verified* copy that stays: a repacked copy (it opened
//! before it was copied), or a copy in a kept pack whose bytes hash to its name and where the
//! blob opens (decrypts, and hashes to its id). Otherwise the pack stays, and the report says
//! why. This holds on every path: fully unused packs, repacked packs, duplicates, and packs no
//! index lists.
//!
//! Killed at any instant, the repository stays valid: before 4 the old index still describes
//! every old pack (new packs are unreferenced); after 4 the new index describes every pack it
//! names; leftovers of 5 and 6 are superseded index files and unreferenced packs, which the next
//! prune removes.
//!
//! Memory: reachable data blobs are marked in a set of 8-byte truncated ids (a collision keeps a
//! blob that could have gone — never the reverse); trees are tracked by full id so no subtree
//! is ever skipped by a collision.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::backend::FileKind;
use crate::check::{pack_size_problem, pack_workers, par_map, read_header, verify_pack_bytes};
use crate::error::{Error, Result};
use crate::id::{BlobId, IndexId, PackId, TreeId};
use crate::index::IndexPack;
use crate::pack::{self, PackEntry};
use crate::repo::{backend_err, Repository};
use crate::saver::{BlobSaver, Known};

/// How [`prune`] runs (`cairn prune`'s options).
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Plan and report, but write and delete nothing (`--dry-run`); a failed structure check
    /// is then reported in [`PruneReport::refused`] instead of an error.
    pub dry_run: bool,
    /// Repack a pack when more than this share of it is unused.
    pub max_unused_percent: f64,
    /// Prune even when the structure check fails (`--force`). Data that only unreadable
    /// snapshots or trees reference may then be deleted; a pack holding a used blob that no
    /// index lists is still kept.
    pub force: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            dry_run: false,
            max_unused_percent: 5.0,
            force: false,
        }
    }
}

/// What [`prune`] did, or in a dry run would do: the keys of the same names in
/// `cairn prune --json` (`packs_unindexed` is `packs_unindexed_deleted`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PruneReport {
    /// Packs the index names.
    pub packs_total: u64,
    /// Packs holding no used blob, deleted.
    pub packs_deleted: u64,
    /// Packs whose used blobs were copied into new packs, then deleted.
    pub packs_repacked: u64,
    /// Packs in `data/` that no index names (left by interrupted backups), deleted.
    pub packs_unindexed: u64,
    /// New packs written by repacking (0 in a dry run).
    pub packs_written: u64,
    /// Index entries of blobs a snapshot uses, each counted at the one copy prune keeps.
    pub blobs_used: u64,
    /// Index entries no snapshot uses, and extra copies of used blobs.
    pub blobs_unused: u64,
    /// Bytes of the pack files in `data/` before the prune.
    pub bytes_before: u64,
    /// Bytes in `data/` after it: deleted packs gone, repacked data added (estimated in a dry
    /// run).
    pub bytes_after: u64,
    /// `bytes_before - bytes_after`, plus crash-left temporary files removed (not in a dry run).
    pub bytes_freed: u64,
    /// Old index files superseded by the new index (0 when nothing changed, and in a dry run).
    pub index_files_replaced: u64,
    /// What the structure check found; prune deletes nothing while this is non-empty, unless
    /// forced.
    pub structure_problems: Vec<String>,
    /// The structure check was overridden (`--force`).
    pub forced: bool,
    /// Kept packs read whole and verified because a deletion relied on their copies.
    pub packs_verified: u64,
    /// Packs prune would have deleted but kept, each with why (pack id, reason).
    pub packs_kept: Vec<(String, String)>,
}

impl PruneReport {
    /// A real prune would refuse to run (the structure check failed and was not overridden).
    pub fn refused(&self) -> bool {
        !self.structure_problems.is_empty() && !self.forced
    }
}

/// Problems are collected up to this many; the rest are counted.
const MAX_PROBLEMS: usize = 100;

/// The structure check's findings.
#[derive(Default)]
struct Problems {
    list: Vec<String>,
    more: usize,
}

impl Problems {
    fn push(&mut self, p: String) {
        if self.list.len() < MAX_PROBLEMS {
            self.list.push(p);
        } else {
            self.more += 1;
        }
    }

    fn into_vec(mut self) -> Vec<String> {
        if self.more > 0 {
            self.list.push(format!("… and {} more problems", self.more));
        }
        self.list
    }
}

/// Every blob reachable from any readable snapshot: one bit per index entry, set on the copy
/// readers use (and prune keeps), so marking costs a bit per blob, not a set of ids.
struct Marks {
    used: crate::index::Marks,
    trees: HashSet<TreeId>,
}

impl Marks {
    /// Whether a snapshot uses the blob (its first indexed copy is marked).
    fn used(&self, repo: &Repository, id: &BlobId) -> bool {
        repo.index()
            .locate(id)
            .is_some_and(|(pos, _)| self.used.get(pos))
    }
}

fn mark(repo: &Repository, problems: &mut Problems) -> Result<Marks> {
    let mut m = Marks {
        used: repo.index().marks(),
        trees: HashSet::new(),
    };
    let listed = repo.list(FileKind::Snapshot)?;
    for (name, _) in listed {
        let Some(id) = crate::id::SnapshotId::from_hex(&name) else {
            continue;
        };
        // A snapshot that cannot be read could reference anything: deleting data now could lose it.
        match repo.read_snapshot(&id) {
            Ok(snap) => mark_tree(repo, snap.tree, &mut m, problems),
            Err(e) => problems.push(format!("snapshot {} cannot be read ({e})", id.short())),
        }
    }
    Ok(m)
}

fn mark_tree(repo: &Repository, id: TreeId, m: &mut Marks, problems: &mut Problems) {
    if !m.trees.insert(id) {
        return;
    }
    if let Some((pos, _)) = repo.index().locate(&id.0) {
        m.used.set(pos);
    }
    let tree = match repo.read_tree(&id) {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("tree {} cannot be read ({e})", id.0.short()));
            return;
        }
    };
    for n in &tree.nodes {
        for c in n.chunks() {
            match repo.index().locate(&c) {
                Some((pos, _)) => {
                    m.used.set(pos);
                }
                None => problems.push(format!(
                    "chunk {} is referenced but in no index (`cairn repair index` adds back what the packs hold)",
                    c.short()
                )),
            }
        }
        if let Some(sub) = n.subtree {
            mark_tree(repo, sub, m, problems);
        }
    }
}

/// Why a pack is a candidate for deletion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Indexed, and nothing in it is the copy of a used blob prune keeps.
    Unused,
    /// Indexed, mostly unused: its used blobs move to new packs.
    Repack,
    /// In `data/`, but in no index.
    Unindexed,
}

struct Candidate {
    id: PackId,
    size: u64,
    fate: Fate,
    /// What the index says it holds (empty for unindexed packs).
    indexed: Vec<PackEntry>,
    /// The copies of used blobs prune keeps in it (repacked from it).
    primary_used: Vec<PackEntry>,
    /// Why it must stay, once that is known.
    keep: Option<String>,
}

/// What verifying a kept pack showed: per required blob, None when it opens or why not; and
/// why the pack as a whole fails (its bytes do not hash to its name, or it cannot be read).
type Verdict = (HashMap<BlobId, Option<String>>, Option<String>);

/// Plans and (unless dry-run) performs a prune. The caller holds the exclusive lock.
pub fn prune(repo: &mut Repository, opts: &PruneOptions) -> Result<PruneReport> {
    let mut rep = PruneReport {
        forced: opts.force,
        ..PruneReport::default()
    };
    let mut problems = Problems::default();

    // 1. Structure: index files (their warnings are this load's), snapshots, trees, packs.
    let earlier = repo.take_warnings();
    repo.load_index()?;
    let index_warnings = repo.take_warnings();
    for w in earlier.iter().chain(&index_warnings) {
        repo.warn(w.clone());
    }
    for w in index_warnings {
        problems.push(w);
    }
    let old_index_files: Vec<String> = repo.list_names(FileKind::Index)?;
    let marks = mark(repo, &mut problems)?;
    let listed: BTreeMap<String, u64> = repo.list(FileKind::Pack)?.into_iter().collect();
    let index_packs: Vec<(PackId, u64)> = {
        let mut v = repo.index().packs().to_vec();
        v.sort();
        v.dedup_by_key(|(id, _)| *id);
        v
    };
    for (id, size) in &index_packs {
        let name = id.to_hex();
        if let Some(p) = pack_size_problem(&name, listed.get(&name).copied(), *size) {
            problems.push(p);
        }
    }
    rep.structure_problems = problems.into_vec();
    if rep.refused() && !opts.dry_run {
        return Err(Error::PruneRefused {
            problems: rep.structure_problems.clone(),
        });
    }

    // 2. Plan: the copy of each used blob that prune keeps is the one readers use (the
    // index's first, the one marked); a pack is unused when it holds none of those. What each
    // pack holds in use is summed in one pass over the index's runs (bits, not entries, in
    // memory); its full listing comes from the index files, read one at a time.
    let index = repo.index();
    let is_primary = |pack: &PackId, e: &PackEntry| {
        index
            .get(&e.id)
            .is_some_and(|l| l.pack == *pack && l.entry.offset == e.offset)
    };
    let mut in_use: HashMap<PackId, (u64, usize)> = HashMap::new();
    for r in 0..index.runs().len() {
        for item in index.scan(r) {
            let (pos, pack, e) = item.map_err(|e| Error::Io {
                path: index.runs()[r].path().to_path_buf(),
                source: e,
            })?;
            if marks.used.get(pos) {
                let u = in_use.entry(pack).or_default();
                u.0 += e.length as u64;
                u.1 += 1;
            }
        }
    }
    // Packs that stay as they are: their listings are copied into the new index files (step 6).
    let mut keep: HashSet<PackId> = HashSet::new();
    let mut cands: Vec<Candidate> = Vec::new();
    let live: HashSet<IndexId> = repo.index_files().iter().copied().collect();
    let mut seen: HashSet<PackId> = HashSet::new();
    let unreadable = repo.stream_index_files(|id, file| {
        if !live.contains(id) {
            return;
        }
        for p in file.packs {
            if !seen.insert(p.id) {
                continue;
            }
            let (id, size, entries) = (p.id, p.size, p.blobs);
            rep.packs_total += 1;
            if !listed.contains_key(&id.to_hex()) {
                // Missing pack (only when forced): keep its entries so `check` keeps reporting it.
                keep.insert(id);
                continue;
            }
            let (used_bytes, used_count) = in_use.get(&id).copied().unwrap_or_default();
            rep.blobs_used += used_count as u64;
            rep.blobs_unused += entries.len().saturating_sub(used_count) as u64;
            let unused_share = 100.0 * (1.0 - used_bytes as f64 / size.max(1) as f64);
            let fate = if used_count == 0 {
                Fate::Unused
            } else if unused_share > opts.max_unused_percent && used_count < entries.len() {
                Fate::Repack
            } else {
                keep.insert(id);
                continue;
            };
            let used: Vec<PackEntry> = if fate == Fate::Repack {
                entries
                    .iter()
                    .filter(|e| marks.used(repo, &e.id) && is_primary(&id, e))
                    .copied()
                    .collect()
            } else {
                Vec::new()
            };
            cands.push(Candidate {
                id,
                size,
                fate,
                indexed: entries,
                primary_used: used,
                keep: None,
            });
        }
    });
    // An index file that no longer reads (damaged since the cache read it): what it lists is
    // neither kept nor planned, which is the structure check's business.
    let unreadable = unreadable?;
    if !unreadable.is_empty() {
        for p in unreadable {
            if !rep.structure_problems.contains(&p) {
                rep.structure_problems.push(p);
            }
        }
        if rep.refused() && !opts.dry_run {
            return Err(Error::PruneRefused {
                problems: rep.structure_problems.clone(),
            });
        }
    }
    let indexed: HashSet<PackId> = keep
        .iter()
        .copied()
        .chain(cands.iter().map(|c| c.id))
        .collect();
    for (name, size) in &listed {
        // A 64-hex name in data/ that is no pack id cannot be listed; every listed name parses.
        let Some(id) = PackId::from_hex(name) else {
            continue;
        };
        if !indexed.contains(&id) {
            cands.push(Candidate {
                id,
                size: *size,
                fate: Fate::Unindexed,
                indexed: Vec::new(),
                primary_used: Vec::new(),
                keep: None,
            });
        }
    }

    // 3. What each candidate really holds: its own header (an index may be wrong about it).
    let workers = pack_workers(repo);
    let contents: Vec<std::result::Result<Vec<PackEntry>, String>> = {
        let repo = &*repo;
        par_map(&cands, workers, |c| {
            if c.size == 0 {
                return Ok(Vec::new());
            }
            read_header(repo, &c.id.to_hex(), c.size)
        })
    };
    let mut holds: Vec<Vec<PackEntry>> = Vec::with_capacity(cands.len());
    for (c, content) in cands.iter_mut().zip(contents) {
        let mut all = c.indexed.clone();
        match content {
            Ok(h) => all.extend(h),
            Err(e) if c.fate == Fate::Unindexed => {
                // Nothing says what it holds. Intact (its bytes hash to its name) it is not a
                // pack of this repository (cairn never writes a header its keys cannot open),
                // and deleting it loses nothing; damaged, it may be a pack whose blobs are
                // needed, and it stays.
                let foreign = repo
                    .backend()
                    .get(FileKind::Pack, &c.id.to_hex())
                    .is_ok_and(|b| crate::id::content_hash(&b) == c.id.0);
                if !foreign {
                    c.keep = Some(format!(
                        "no index lists it, its header cannot be read ({e}) and its content \
                         does not hash to its name: it may be a damaged pack, and prune never \
                         deletes what it cannot read (delete it by hand once `cairn check \
                         --read-data` is clean)"
                    ));
                }
            }
            // Indexed: the index (authenticated) says what it holds.
            Err(_) => {}
        }
        all.sort_by_key(|e| (e.id, e.offset));
        all.dedup_by_key(|e| (e.id, e.offset));
        holds.push(all);
    }

    // 4. Repack: copy each used blob (verified first: it must open) of the packs to repack into
    // new packs; a pack with a blob that does not open is kept whole instead. Trees and data
    // stay in separate packs, as backup writes them. The blobs are in the index (in the packs
    // being left), so the saver counts only its own copies as stored.
    let mut saver = BlobSaver::new(repo, Known::Queued);
    let mut new_packs: Vec<IndexPack> = Vec::new();
    let mut repacked: HashSet<BlobId> = HashSet::new();
    let mut estimated_new = 0u64;
    for c in cands.iter_mut().filter(|c| c.fate == Fate::Repack) {
        let name = c.id.to_hex();
        let mut sealed_blobs = Vec::with_capacity(c.primary_used.len());
        let mut failed = None;
        for e in &c.primary_used {
            let sealed = repo
                .backend()
                .get_range(FileKind::Pack, &name, e.offset as u64, e.length as usize)
                .map_err(|err| err.to_string())
                .and_then(|s| pack::open_blob(repo.keys(), e, &s).map(|_| s));
            match sealed {
                Ok(s) => sealed_blobs.push((*e, s)),
                Err(why) => {
                    failed = Some(format!(
                        "its {} blob {} does not open ({why}), so it is not repacked but kept whole (run `cairn check --read-data`)",
                        e.kind.name(),
                        e.id.short()
                    ));
                    break;
                }
            }
        }
        if let Some(why) = failed {
            c.keep = Some(why);
            continue;
        }
        for (e, sealed) in sealed_blobs {
            repacked.insert(e.id);
            estimated_new += e.length as u64;
            if opts.dry_run {
                continue;
            }
            saver.save_sealed(repo, &e, &sealed)?;
        }
    }
    if !opts.dry_run {
        saver.flush(repo)?;
        new_packs = saver.take_stored();
    }

    // 5. Every used blob a candidate holds must have a verified copy that stays.
    let staying: HashSet<PackId> = keep
        .iter()
        .copied()
        .chain(cands.iter().filter(|c| c.keep.is_some()).map(|c| c.id))
        .collect();
    // (pack to verify) → the entries that must open in it, and the candidates relying on each.
    let mut needs: BTreeMap<PackId, Vec<PackEntry>> = BTreeMap::new();
    let mut relies: Vec<Vec<(PackId, PackEntry)>> = vec![Vec::new(); cands.len()];
    for (i, c) in cands.iter_mut().enumerate() {
        if c.keep.is_some() {
            continue;
        }
        for e in holds[i].iter().filter(|e| marks.used(repo, &e.id)) {
            if c.fate == Fate::Repack && repacked.contains(&e.id) && is_primary(&c.id, e) {
                continue; // its new copy opened before it was written
            }
            match index.get(&e.id) {
                None => {
                    c.keep = Some(format!(
                        "it holds {} blob {}, which a snapshot uses and no index lists (run `cairn repair index`)",
                        e.kind.name(),
                        e.id.short()
                    ));
                    break;
                }
                Some(l) if repacked.contains(&e.id) && !staying.contains(&l.pack) => {}
                Some(l) if staying.contains(&l.pack) => {
                    needs.entry(l.pack).or_default().push(l.entry);
                    relies[i].push((l.pack, l.entry));
                }
                Some(l) => {
                    // The kept copy is in a pack that is itself going (cannot happen: the
                    // primary copy of a used blob is never in an unused pack); keep this one.
                    c.keep = Some(format!(
                        "the copy prune would keep of blob {} (pack {}) is not staying",
                        e.id.short(),
                        l.pack.short()
                    ));
                    break;
                }
            }
        }
    }
    let to_verify: Vec<(PackId, Vec<PackEntry>)> = needs
        .into_iter()
        .map(|(p, mut v)| {
            v.sort_by_key(|e| e.offset);
            v.dedup();
            (p, v)
        })
        .collect();
    let verdicts: Vec<(PackId, Verdict)> = {
        let repo = &*repo;
        par_map(&to_verify, workers, |(pack, entries)| {
            let name = pack.to_hex();
            match repo.backend().get(FileKind::Pack, &name) {
                Err(e) => (
                    *pack,
                    (HashMap::new(), Some(format!("it cannot be read ({e})"))),
                ),
                Ok(bytes) => {
                    let v = verify_pack_bytes(repo.keys(), &name, &bytes, Some(entries), &[]);
                    let mut per_blob: HashMap<BlobId, Option<String>> =
                        v.good.iter().map(|e| (e.id, None)).collect();
                    for (e, why) in &v.bad {
                        per_blob.insert(e.id, Some(why.clone()));
                    }
                    let pack_why = v.actual.map(|a| {
                        format!("its content does not hash to its name (it hashes to {a})")
                    });
                    (*pack, (per_blob, pack_why))
                }
            }
        })
    };
    rep.packs_verified = verdicts.len() as u64;
    let verdicts: HashMap<PackId, Verdict> = verdicts.into_iter().collect();
    for (i, c) in cands.iter_mut().enumerate() {
        if c.keep.is_some() {
            continue;
        }
        for (pack, e) in &relies[i] {
            let Some((blobs, pack_why)) = verdicts.get(pack) else {
                continue;
            };
            let why = pack_why.clone().or_else(|| match blobs.get(&e.id) {
                Some(None) => None,
                Some(Some(w)) => Some(format!(
                    "its {} blob {} does not open ({w})",
                    e.kind.name(),
                    e.id.short()
                )),
                None => Some(format!("blob {} was not checked", e.id.short())),
            });
            if let Some(why) = why {
                c.keep = Some(format!(
                    "it holds a copy of {} blob {}, and the copy prune would keep (pack {}) does not verify: {why}; run `cairn check --read-data`, then `cairn repair index`, which indexes verified copies first",
                    e.kind.name(),
                    e.id.short(),
                    pack.short()
                ));
                break;
            }
        }
    }

    // What goes and what stays.
    let mut delete: Vec<&Candidate> = Vec::new();
    let mut kept_candidates: Vec<IndexPack> = Vec::new();
    for c in &cands {
        match &c.keep {
            Some(why) => {
                rep.packs_kept.push((c.id.to_hex(), why.clone()));
                if c.fate != Fate::Unindexed {
                    kept_candidates.push(IndexPack {
                        id: c.id,
                        size: c.size,
                        blobs: c.indexed.clone(),
                    });
                }
            }
            None => {
                match c.fate {
                    Fate::Unused => rep.packs_deleted += 1,
                    Fate::Repack => rep.packs_repacked += 1,
                    Fate::Unindexed => rep.packs_unindexed += 1,
                }
                delete.push(c);
            }
        }
    }
    rep.bytes_before = listed.values().sum();
    let deleted_bytes: u64 = delete.iter().map(|c| c.size).sum();
    let new_bytes: u64 = if opts.dry_run {
        estimated_new
    } else {
        new_packs.iter().map(|p| p.size).sum()
    };
    rep.bytes_after = rep.bytes_before - deleted_bytes + new_bytes;
    rep.bytes_freed = rep.bytes_before.saturating_sub(rep.bytes_after);
    rep.packs_written = new_packs.len() as u64;
    if opts.dry_run {
        return Ok(rep);
    }
    // Under the exclusive lock no writer runs: every temporary file is a crash leftover.
    rep.bytes_freed += repo
        .backend()
        .remove_temporaries()
        .map_err(backend_err(FileKind::Pack, ".tmp-*"))?;
    if delete.is_empty() && new_packs.is_empty() && old_index_files.len() <= 1 {
        return Ok(rep);
    }

    // 6. The new index supersedes every old index file; invariant: every pack it names is durable.
    let supersedes: Vec<IndexId> = old_index_files
        .iter()
        .filter_map(|n| IndexId::from_hex(n))
        .collect();
    // The packs that stay are copied from the old index files, read again one at a time, so
    // no more than one index file's listing is in memory.
    let mut writer = crate::repo::IndexWriter::new();
    let mut copied: HashSet<PackId> = HashSet::new();
    let mut write_err = None;
    let live: HashSet<IndexId> = repo.index_files().iter().copied().collect();
    let unreadable = repo.stream_index_files(|id, file| {
        if !live.contains(id) || write_err.is_some() {
            return;
        }
        for p in file.packs {
            if keep.contains(&p.id) && copied.insert(p.id) {
                if let Err(e) = writer.push(repo, p) {
                    write_err = Some(e);
                    return;
                }
            }
        }
    })?;
    if let Some(e) = write_err {
        return Err(e);
    }
    if keep.iter().any(|p| !copied.contains(p)) {
        // An index file that read during planning no longer does: superseding it now would
        // drop what it lists from the index.
        return Err(Error::PruneRefused {
            problems: unreadable,
        });
    }
    for p in kept_candidates.into_iter().chain(new_packs) {
        writer.push(repo, p)?;
    }
    let new_ids = writer.finish(repo, supersedes)?;
    rep.index_files_replaced = old_index_files.len() as u64;

    // 7. Old index files go; 8. then the packs nothing needs any more.
    for name in &old_index_files {
        if !new_ids.iter().any(|n| n.to_hex() == *name) {
            repo.backend()
                .delete(FileKind::Index, name)
                .map_err(backend_err(FileKind::Index, name))?;
        }
    }
    for c in &delete {
        let name = c.id.to_hex();
        repo.backend()
            .delete(FileKind::Pack, &name)
            .map_err(backend_err(FileKind::Pack, &name))?;
    }
    repo.load_index()?;
    // Repacked packs get groups; groups that lost members are recomputed (repo-format.md §14.4).
    crate::parity::after_write(repo);
    Ok(rep)
}

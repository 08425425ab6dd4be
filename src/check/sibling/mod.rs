//! Healing from a sibling repository (`cairn repair packs --from OTHER`): the blobs this
//! repository needs but cannot read are taken from another repository that holds the same
//! data under its own keys (typically the other rotating disk, kept in step by `cairn copy`).
//!
//! What is needed: every blob an index entry names whose only copies here are in a pack that is
//! missing, truncated or damaged (each pack is read whole and verified as `check --read-data`
//! does), and every tree and chunk the snapshots reference that has no readable copy here.
//!
//! Blob ids are keyed per repository (repo-format.md §2), so a sibling's blob is taken only when
//! its plaintext, identified under THIS repository's keys, has the needed id: a chunk's
//! plaintext is hashed with this repository's id key; a tree is re-encoded with this
//! repository's chunk and tree ids (as `copy` translates, src/copy.rs) and hashed with its tree
//! id key. Candidates come cheaply first (the same paths in the sibling's matching snapshots,
//! and copy's local id maps for this pair — hints only, every one verified), then, for what is
//! still missing, from a scan of all the sibling's blobs.
//!
//! This file finds what is lost and commits what was found; `find.rs` looks in the sibling.
//!
//! Invariants:
//! - Found blobs are sealed under this repository's keys by the one blob saver (src/saver.rs)
//!   into new packs, durable before an index file names them (§10.2).
//! - Readable blobs of a damaged pack are copied into new packs too (after opening them again),
//!   so the damaged pack holds nothing that was not recovered.
//! - The index files naming a damaged pack are replaced (a new file supersedes them) by ones that
//!   no longer name the copies that were recovered: readers then use the new copies only.
//! - A damaged pack is deleted only after the new index is durable, and only when every blob it
//!   was indexed for has a verified copy elsewhere; a pack holding a blob that was not recovered
//!   stays, indexed for those blobs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::backend::FileKind;
use crate::check::{affected_files, pack_workers, par_map, verify_pack_bytes, Affected};
use crate::copy::{load_id_map, origin, same_metadata};
use crate::error::{Error, Result};
use crate::id::{BlobId, IndexId, PackId};
use crate::index::IndexPack;
use crate::pack::{self, BlobKind, PackEntry};
use crate::repo::{backend_err, Repository};
use crate::saver::{BlobSaver, Known};

mod find;
use find::Healer;

/// Options for [`heal_from`].
#[derive(Clone, Debug, Default)]
pub struct HealOptions {
    /// Local id-map files `cairn copy` keeps (either direction between the two repositories);
    /// a file for another pair, missing or damaged is ignored. Hints only.
    pub copy_maps: Vec<PathBuf>,
    /// Set from outside (Ctrl-C) to stop at the next blob with [`Error::Interrupted`]; nothing
    /// is indexed or deleted then (packs already written are left for `prune`).
    pub cancel: Option<Arc<AtomicBool>>,
}

/// A pack found missing or damaged, and what became of it.
#[derive(Clone, Debug, PartialEq)]
pub struct DamagedPack {
    /// The pack.
    pub pack: PackId,
    /// What is wrong with it, in one sentence.
    pub why: String,
    /// Blob entries the index had for it.
    pub blobs: u64,
    /// Of those, the blobs that still have no readable copy (0: the pack was healed).
    pub unrecovered: u64,
    /// The pack file was deleted (every blob recovered, the new index durable first).
    pub deleted: bool,
}

/// A blob that is needed and was not found in the sibling.
#[derive(Clone, Debug, PartialEq)]
pub struct MissingBlob {
    /// Its id in this repository.
    pub id: BlobId,
    /// Data chunk or tree.
    pub kind: BlobKind,
    /// A snapshot needs it: the snapshots' readable trees lead to it. False: only the index
    /// entry of a damaged pack names it (it may be unused, or below a tree that is lost).
    pub referenced: bool,
}

/// What [`heal_from`] did: the keys of `cairn repair packs --from --json`.
#[derive(Clone, Debug, Default)]
pub struct HealReport {
    /// Packs named by the index, each read whole and verified.
    pub packs_checked: u64,
    /// Packs that were missing, truncated or damaged.
    pub damaged: Vec<DamagedPack>,
    /// Distinct blobs that had no readable copy here.
    pub blobs_lost: u64,
    /// Of those, blobs taken from the sibling (each verified by its id here).
    pub blobs_healed: u64,
    /// Readable blobs of damaged packs copied into new packs.
    pub blobs_salvaged: u64,
    /// Blobs still without a readable copy.
    pub missing: Vec<MissingBlob>,
    /// New packs written.
    pub packs_written: u64,
    /// Plaintext read from the sibling, in bytes.
    pub data_read: u64,
    /// The sibling's blobs all had to be scanned (hints did not find everything).
    pub scanned: bool,
    /// Problems reading the sibling (its own damage), first ones only.
    pub sibling_problems: Vec<String>,
    /// Files and directories, per snapshot, that are still unrestorable.
    pub affected: Vec<Affected>,
    /// Pack files in `data/` that no index names: they may hold blobs counted as lost here
    /// (`repair index` verifies and indexes them).
    pub unindexed_packs: u64,
}

impl HealReport {
    /// Everything a snapshot needs has a readable copy now.
    pub fn complete(&self) -> bool {
        !self.missing.iter().any(|m| m.referenced)
    }
}

/// How many sibling read problems are kept for the report.
const MAX_PROBLEMS: usize = 20;

/// Heals `repo` from `sibling` (its index loaded). `repo`'s index is loaded here and reloaded at
/// the end.
pub fn heal_from(
    repo: &mut Repository,
    sibling: &Repository,
    opts: &HealOptions,
) -> Result<HealReport> {
    if repo.id() == sibling.id() {
        return Err(Error::InvalidInput(
            "--from names this repository itself (the same repository id): heal from another copy"
                .into(),
        ));
    }
    repo.load_index()?;
    let mut report = HealReport::default();
    let by_pack = repo.entries_by_pack()?;
    let listed: HashMap<String, u64> = repo.list(FileKind::Pack)?.into_iter().collect();
    let mut packs: Vec<(PackId, u64)> = by_pack.iter().map(|(id, (s, _))| (*id, *s)).collect();
    packs.sort();
    report.packs_checked = packs.len() as u64;
    report.unindexed_packs = listed
        .iter()
        .filter(|(name, size)| {
            **size > 0 && PackId::from_hex(name).is_none_or(|id| !by_pack.contains_key(&id))
        })
        .count() as u64;
    let verdicts = {
        let repo = &*repo;
        par_map(&packs, pack_workers(repo), |(id, size)| {
            inspect(repo, id, *size, &by_pack[id].1, listed.get(&id.to_hex()))
        })
    };
    let damaged: BTreeMap<PackId, Inspected> = packs
        .iter()
        .zip(verdicts)
        .filter_map(|((id, _), v)| v.map(|v| (*id, v)))
        .collect();

    // Every blob with an entry in an intact pack is stored; readable blobs of damaged packs are
    // copied into new packs; the rest is lost until the sibling gives it back.
    let mut saver = BlobSaver::new(repo, Known::Queued);
    saver.mark_stored(
        by_pack
            .iter()
            .filter(|(id, _)| !damaged.contains_key(id))
            .flat_map(|(_, (_, e))| e.iter().map(|e| e.id)),
    );
    for (id, d) in &damaged {
        for e in &d.good {
            if saver.has(repo, &e.id) {
                continue;
            }
            let name = id.to_hex();
            let Ok(sealed) =
                repo.backend()
                    .get_range(FileKind::Pack, &name, e.offset as u64, e.length as usize)
            else {
                continue;
            };
            if pack::open_blob(repo.keys(), e, &sealed).is_err() {
                continue;
            }
            saver.save_sealed(repo, e, &sealed)?;
            report.blobs_salvaged += 1;
        }
    }
    let mut lost: BTreeMap<BlobId, BlobKind> = BTreeMap::new();
    for id in damaged.keys() {
        for e in &by_pack[id].1 {
            if !saver.has(repo, &e.id) {
                lost.insert(e.id, e.kind);
            }
        }
    }

    let snapshots = repo.snapshots()?;
    let sib_snapshots = sibling.snapshots()?;
    let mut pairs = Vec::new();
    for (aid, a) in &snapshots {
        for (bid, b) in &sib_snapshots {
            if origin(aid, a) == origin(bid, b) || same_metadata(a, b) {
                pairs.push((a.tree.0, b.tree.0));
            }
        }
    }
    let mut h = Healer {
        repo: &*repo,
        sib: sibling,
        saver,
        cancel: opts.cancel.clone(),
        recovered: HashMap::new(),
        walked: HashMap::new(),
        wanted: BTreeMap::new(),
        lost,
        candidates: HashMap::new(),
        chunk_ids: HashMap::new(),
        chunk_hints: HashMap::new(),
        tree_ids: [HashMap::new(), HashMap::new()],
        paired: HashMap::new(),
        report: &mut report,
    };
    for path in &opts.copy_maps {
        for (b, a) in load_id_map(path, sibling.id(), h.repo.id()) {
            h.hint(a, b);
        }
        for (a, b) in load_id_map(path, h.repo.id(), sibling.id()) {
            h.hint(a, b);
        }
    }
    let roots: Vec<BlobId> = snapshots.iter().map(|(_, s)| s.tree.0).collect();
    let mut scanned = false;
    loop {
        h.check_cancel()?;
        for (a, b) in &pairs {
            h.pair(*a, *b);
        }
        h.walk(&roots);
        let outstanding: Vec<(BlobId, BlobKind)> = h
            .wanted
            .iter()
            .chain(h.lost.iter())
            .filter(|(id, _)| !h.has(id))
            .map(|(id, k)| (*id, *k))
            .collect();
        if outstanding.is_empty() {
            break;
        }
        let mut progress = false;
        for (id, kind) in outstanding {
            if !h.has(&id) && h.recover(id, kind)? {
                progress = true;
            }
        }
        if progress {
            continue;
        }
        if scanned {
            break;
        }
        h.scan()?;
        scanned = true;
    }
    let wanted = std::mem::take(&mut h.wanted);
    let lost = std::mem::take(&mut h.lost);
    let mut saver = h.saver;
    report.scanned = scanned;
    let mut all_lost: BTreeMap<BlobId, (BlobKind, bool)> =
        lost.iter().map(|(id, k)| (*id, (*k, false))).collect();
    for (id, k) in &wanted {
        all_lost.insert(*id, (*k, true));
    }
    report.blobs_lost = all_lost.len() as u64;
    report.missing = all_lost
        .iter()
        .filter(|(id, _)| !saver.has(repo, id))
        .map(|(id, (kind, referenced))| MissingBlob {
            id: *id,
            kind: *kind,
            referenced: *referenced,
        })
        .collect();

    // Commit: new packs durable (flush) → index files that name them and supersede the files
    // naming damaged packs → old index files removed → damaged packs with nothing left deleted.
    saver.flush(repo)?;
    let written = saver.take_stored();
    report.packs_written = written.len() as u64;
    let mut to_delete = Vec::new();
    for (id, d) in &damaged {
        let entries = &by_pack[id].1;
        let unrecovered = entries.iter().filter(|e| !saver.has(repo, &e.id)).count() as u64;
        let delete = unrecovered == 0 && d.present;
        if delete {
            to_delete.push(*id);
        }
        report.damaged.push(DamagedPack {
            pack: *id,
            why: d.why.clone(),
            blobs: entries.len() as u64,
            unrecovered,
            deleted: delete,
        });
    }
    let changed = !written.is_empty()
        || damaged
            .keys()
            .any(|id| by_pack[id].1.iter().any(|e| saver.has(repo, &e.id)));
    if changed {
        let keep = |p: &IndexPack| -> Option<IndexPack> {
            if !damaged.contains_key(&p.id) {
                return Some(p.clone());
            }
            let blobs: Vec<PackEntry> = p
                .blobs
                .iter()
                .filter(|e| !saver.has(repo, &e.id))
                .copied()
                .collect();
            (!blobs.is_empty()).then_some(IndexPack {
                id: p.id,
                size: p.size,
                blobs,
            })
        };
        // Only the index files that name a damaged pack are replaced; the others stay.
        let mut replaced: Vec<(String, IndexId)> = Vec::new();
        let mut supersedes: Vec<IndexId> = Vec::new();
        let mut out = written;
        let mut files = Vec::new();
        let mut superseded = HashSet::new();
        for name in repo.list_names(FileKind::Index)? {
            if let (Some(iid), Ok(file)) = (IndexId::from_hex(&name), repo.read_index_file(&name)) {
                superseded.extend(file.supersedes.iter().copied());
                files.push((name, iid, file));
            }
        }
        // A superseded file is what readers ignore (load_index): its packs are not revived.
        for (name, iid, file) in files {
            if superseded.contains(&iid) || !file.packs.iter().any(|p| damaged.contains_key(&p.id))
            {
                continue;
            }
            out.extend(file.packs.iter().filter_map(keep));
            // What a replaced file superseded stays superseded once it is gone.
            supersedes.extend(file.supersedes.iter().copied());
            supersedes.push(iid);
            replaced.push((name, iid));
        }
        supersedes.sort();
        supersedes.dedup();
        // Invariant: every pack named here is durable (flushed above) or was indexed before.
        let new = repo.save_index_files(out, supersedes)?;
        for (name, iid) in &replaced {
            if !new.contains(iid) {
                repo.backend()
                    .delete(FileKind::Index, name)
                    .map_err(backend_err(FileKind::Index, name))?;
            }
        }
        // Invariant: no index file names these packs any more, and each blob they were
        // indexed for has a verified copy in another pack.
        for id in &to_delete {
            let name = id.to_hex();
            repo.backend()
                .delete(FileKind::Pack, &name)
                .map_err(backend_err(FileKind::Pack, &name))?;
        }
    }
    repo.load_index()?;
    if !report.missing.is_empty() {
        let why: HashMap<BlobId, String> = report
            .missing
            .iter()
            .map(|m| {
                (
                    m.id,
                    format!(
                        "{} blob {} has no readable copy here and none in the sibling",
                        m.kind.name(),
                        m.id.short()
                    ),
                )
            })
            .collect();
        report.affected = affected_files(repo, &snapshots, &why);
    }
    Ok(report)
}

/// A pack that is missing or damaged: why, the entries that still open, and whether its file
/// is there at all.
struct Inspected {
    why: String,
    good: Vec<PackEntry>,
    present: bool,
}

/// Reads a pack whole and verifies it against its name and its index entries; None when it is
/// intact.
fn inspect(
    repo: &Repository,
    id: &PackId,
    size: u64,
    entries: &[PackEntry],
    listed: Option<&u64>,
) -> Option<Inspected> {
    let name = id.to_hex();
    let gone = |why: &str, present: bool| Inspected {
        why: why.to_string(),
        good: Vec::new(),
        present,
    };
    match listed {
        None => return Some(gone("it is missing from data/", false)),
        Some(0) => return Some(gone("it is empty (zero-length)", true)),
        Some(_) => {}
    }
    // A failed read is retried once before it counts (a flaky cable is not a damaged pack).
    let bytes = match repo
        .backend()
        .get(FileKind::Pack, &name)
        .or_else(|_| repo.backend().get(FileKind::Pack, &name))
    {
        Ok(b) => b,
        Err(e) => return Some(gone(&format!("it cannot be read ({e})"), true)),
    };
    let v = verify_pack_bytes(repo.keys(), &name, &bytes, Some(entries), &[]);
    let short = bytes.len() as u64 != size;
    if v.hash_ok && v.bad.is_empty() && !short {
        return None;
    }
    let mut why = Vec::new();
    if short {
        why.push(format!(
            "it is {} bytes, the index says {size} (truncated or damaged)",
            bytes.len()
        ));
    }
    let w = v.why();
    if !w.is_empty() {
        why.push(w);
    }
    Some(Inspected {
        why: why.join("; "),
        good: v.good,
        present: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::mem_repo;

    #[test]
    fn healing_from_the_same_repository_is_refused_before_anything_is_read() {
        let (b, mut repo) = mem_repo(b"one");
        let mut again = Repository::open(b, b"one").expect("open");
        again.load_index().expect("index");
        let e = heal_from(&mut repo, &again, &HealOptions::default()).expect_err("refused");
        assert!(e.to_string().contains("this repository itself"), "{e}");
    }

    #[test]
    fn a_healthy_repository_needs_nothing_from_its_sibling_and_writes_nothing() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("src");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("a"), crate::testutil::bytes(7, 300_000)).expect("write");
        let (backend, mut repo) = mem_repo(b"one");
        let opts = crate::backup::BackupOptions {
            paths: vec![dir],
            host: "h".into(),
            threads: 1,
            ..crate::backup::BackupOptions::default()
        };
        crate::backup::backup(&mut repo, &opts, &crate::backup::NoProgress).expect("backup");
        let (_, mut sib) = mem_repo(b"two");
        sib.load_index().expect("index");
        let before = backend.total_size();
        let r = heal_from(&mut repo, &sib, &HealOptions::default()).expect("heal");
        assert!(r.complete() && r.damaged.is_empty(), "{r:?}");
        assert_eq!((r.blobs_lost, r.packs_written, r.data_read), (0, 0, 0));
        assert_eq!(backend.total_size(), before);
    }
}

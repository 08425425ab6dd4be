//! Finding, in the sibling, the blobs this repository lost: the candidates (matching paths,
//! copy maps, a scan), the translation of sibling trees into this repository's ids, and the
//! storing of each blob whose recomputed id is the needed one (see the parent module).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{HealReport, MAX_PROBLEMS};
use crate::backend::FileKind;
use crate::copy::{reidentify_tree, Translate};
use crate::error::{Error, Result};
use crate::id::{BlobId, PackId, TreeId};
use crate::pack::{self, BlobKind, PackEntry};
use crate::repo::Repository;
use crate::saver::BlobSaver;
use crate::tree::Tree;

/// Translates sibling ids into ids here for [`reidentify_tree`]: with hints, or `exact`ly
/// (chunks read and hashed).
struct Mode<'h, 'a> {
    h: &'h mut Healer<'a>,
    exact: bool,
}

impl Translate for Mode<'_, '_> {
    fn chunk(&mut self, id: BlobId) -> Result<Option<BlobId>> {
        self.h.chunk_id(id, self.exact)
    }

    fn tree(&mut self, id: TreeId) -> Result<Option<TreeId>> {
        let m = usize::from(self.exact);
        let a = match self.h.tree_ids[m].get(&id.0) {
            Some(a) => *a,
            None => {
                let a = self.h.translate(id.0, self.exact)?.map(|(a, _)| a);
                self.h.tree_ids[m].insert(id.0, a);
                a
            }
        };
        Ok(a.map(TreeId))
    }
}

/// The state of one healing run.
pub(super) struct Healer<'a> {
    pub(super) repo: &'a Repository,
    pub(super) sib: &'a Repository,
    /// Decides what is stored here: intact copies (marked), salvaged and healed blobs.
    pub(super) saver: BlobSaver,
    pub(super) cancel: Option<Arc<AtomicBool>>,
    /// Trees healed in this run (id here → encoded tree), readable before they are indexed.
    pub(super) recovered: HashMap<BlobId, Vec<u8>>,
    /// Trees whose entries were looked at → their subtrees.
    pub(super) walked: HashMap<BlobId, Vec<BlobId>>,
    /// Blobs the snapshots reference that had no readable copy here.
    pub(super) wanted: BTreeMap<BlobId, BlobKind>,
    /// Blobs indexed only in damaged packs, unreadable there.
    pub(super) lost: BTreeMap<BlobId, BlobKind>,
    /// Sibling blobs that may hold a blob needed here (id here → sibling ids): hints.
    pub(super) candidates: HashMap<BlobId, Vec<BlobId>>,
    /// Sibling chunk → its id here, computed from its plaintext.
    pub(super) chunk_ids: HashMap<BlobId, BlobId>,
    /// Sibling chunk → its id here according to a hint (the same path, a copy map).
    pub(super) chunk_hints: HashMap<BlobId, BlobId>,
    /// Sibling tree → its id here, translated with hints [0] or exactly [1]; None: it cannot be
    /// (the sibling lacks something below it).
    pub(super) tree_ids: [HashMap<BlobId, Option<BlobId>>; 2],
    /// (tree here, sibling tree) pairs whose entries were matched by name → their subtree
    /// pairs.
    pub(super) paired: HashMap<(BlobId, BlobId), Vec<(BlobId, BlobId)>>,
    pub(super) report: &'a mut HealReport,
}

impl Healer<'_> {
    pub(super) fn check_cancel(&self) -> Result<()> {
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(Error::Interrupted);
        }
        Ok(())
    }

    pub(super) fn has(&self, id: &BlobId) -> bool {
        self.saver.has(self.repo, id)
    }

    /// Sibling blob `b` may be blob `a` here.
    pub(super) fn hint(&mut self, a: BlobId, b: BlobId) {
        let v = self.candidates.entry(a).or_default();
        if !v.contains(&b) {
            v.push(b);
        }
        self.chunk_hints.entry(b).or_insert(a);
    }

    /// A tree here, if it can be read: healed in this run, or stored and readable.
    fn tree_here(&self, id: BlobId) -> Option<Tree> {
        if let Some(bytes) = self.recovered.get(&id) {
            return Tree::decode(bytes, &TreeId(id)).ok();
        }
        if !self.has(&id) {
            return None;
        }
        self.repo.read_tree(&TreeId(id)).ok()
    }

    /// Notes what the snapshots need and cannot read, through every tree that can be read.
    pub(super) fn walk(&mut self, roots: &[BlobId]) {
        let mut stack: Vec<BlobId> = roots.to_vec();
        let mut seen = HashSet::new();
        while let Some(t) = stack.pop() {
            if !seen.insert(t) {
                continue;
            }
            // A tree read before is not read again, but what is below it is walked again: a
            // subtree lost before may be healed now, with more below it.
            if let Some(subtrees) = self.walked.get(&t) {
                stack.extend(subtrees.iter().copied());
                continue;
            }
            let Some(tree) = self.tree_here(t) else {
                if !self.has(&t) {
                    self.wanted.insert(t, BlobKind::Tree);
                }
                continue;
            };
            let mut subtrees = Vec::new();
            for n in &tree.nodes {
                for c in n.chunks() {
                    if !self.has(&c) {
                        self.wanted.insert(c, BlobKind::Data);
                    }
                }
                if let Some(s) = n.subtree {
                    subtrees.push(s.0);
                }
            }
            stack.extend(subtrees.iter().copied());
            self.walked.insert(t, subtrees);
        }
    }

    /// Matches tree `a` here with sibling tree `b` (the same path in matching snapshots): the
    /// sibling's entries of the same names are candidates for the entries here. Pairs whose
    /// tree here cannot be read yet are visited again on the next call (after healing).
    pub(super) fn pair(&mut self, a: BlobId, b: BlobId) {
        let mut stack = vec![(a, b)];
        let mut seen = HashSet::new();
        while let Some((a, b)) = stack.pop() {
            if !seen.insert((a, b)) {
                continue;
            }
            self.hint(a, b);
            if let Some(children) = self.paired.get(&(a, b)) {
                stack.extend(children.iter().copied());
                continue;
            }
            let Some(ta) = self.tree_here(a) else {
                continue; // not readable yet: paired once healed
            };
            let Ok(tb) = self.sib.read_tree(&TreeId(b)) else {
                self.paired.insert((a, b), Vec::new());
                continue;
            };
            let theirs: HashMap<&[u8], &crate::tree::Node> =
                tb.nodes.iter().map(|n| (n.name.as_slice(), n)).collect();
            let mut children = Vec::new();
            for n in &ta.nodes {
                let Some(m) = theirs.get(n.name.as_slice()) else {
                    continue;
                };
                for (x, y) in n.chunks().zip(m.chunks()) {
                    self.hint(x, y);
                }
                if let (Some(x), Some(y)) = (n.subtree, m.subtree) {
                    children.push((x.0, y.0));
                }
            }
            stack.extend(children.iter().copied());
            self.paired.insert((a, b), children);
        }
    }

    /// A sibling blob's plaintext (verified against its id there), or None when the sibling
    /// lacks it or cannot read it.
    fn sib_blob(&mut self, b: BlobId, kind: BlobKind) -> Option<Vec<u8>> {
        let loc = self.sib.index().get(&b)?;
        if loc.entry.kind != kind {
            return None;
        }
        match self.sib.read_blob_at(&loc.pack, &loc.entry) {
            Ok(p) => {
                self.report.data_read += p.len() as u64;
                Some(p)
            }
            Err(e) => {
                self.problem(e.to_string());
                None
            }
        }
    }

    /// Whether blob `a` is needed here and not stored yet.
    fn needed(&self, a: &BlobId) -> bool {
        !self.has(a)
    }

    /// Saves a chunk whose id here was computed from `plain`.
    fn take_chunk(&mut self, a: BlobId, plain: &[u8]) -> Result<()> {
        if self.saver.save(self.repo, BlobKind::Data, a, plain)? {
            self.report.blobs_healed += 1;
        }
        Ok(())
    }

    /// The id here of sibling chunk `b`, reading it when no verified (or, unless `exact`,
    /// hinted) id is known; a chunk read that is needed here is stored on the way.
    fn chunk_id(&mut self, b: BlobId, exact: bool) -> Result<Option<BlobId>> {
        if let Some(a) = self.chunk_ids.get(&b) {
            return Ok(Some(*a));
        }
        if !exact {
            if let Some(a) = self.chunk_hints.get(&b) {
                return Ok(Some(*a));
            }
        }
        self.check_cancel()?;
        let Some(plain) = self.sib_blob(b, BlobKind::Data) else {
            return Ok(None);
        };
        let a = self.repo.keys().chunk_id(&plain);
        self.chunk_ids.insert(b, a);
        if self.needed(&a) && self.lost_or_wanted(&a) {
            self.take_chunk(a, &plain)?;
        }
        Ok(Some(a))
    }

    /// Blob `a` is one this run looks for (a snapshot needs it, or a damaged pack held it).
    fn lost_or_wanted(&self, a: &BlobId) -> bool {
        self.wanted.contains_key(a) || self.lost.contains_key(a)
    }

    /// Sibling tree `b` rewritten with this repository's ids, as `copy` rewrites trees
    /// ([`reidentify_tree`]): (its id here, its encoding).
    fn translate(&mut self, b: BlobId, exact: bool) -> Result<Option<(BlobId, Vec<u8>)>> {
        let Some(plain) = self.sib_blob(b, BlobKind::Tree) else {
            return Ok(None);
        };
        let Ok(tree) = Tree::decode(&plain, &TreeId(b)) else {
            return Ok(None);
        };
        let repo = self.repo;
        let found = reidentify_tree(tree, repo.keys(), &mut Mode { h: self, exact })?;
        if let Some((a, _)) = &found {
            self.tree_ids[usize::from(exact)].insert(b, Some(*a));
        }
        Ok(found)
    }

    /// Saves a tree whose id here was computed from `bytes`.
    fn take_tree(&mut self, a: BlobId, bytes: Vec<u8>) -> Result<()> {
        if self.saver.save(self.repo, BlobKind::Tree, a, &bytes)? {
            self.report.blobs_healed += 1;
        }
        self.recovered.insert(a, bytes);
        Ok(())
    }

    /// Tries the candidates for blob `a`; true when it was found (and stored).
    pub(super) fn recover(&mut self, a: BlobId, kind: BlobKind) -> Result<bool> {
        let cands = self.candidates.get(&a).cloned().unwrap_or_default();
        for b in cands {
            self.check_cancel()?;
            match kind {
                BlobKind::Data => {
                    if self.chunk_ids.get(&b).is_some_and(|x| *x != a) {
                        continue;
                    }
                    let Some(plain) = self.sib_blob(b, BlobKind::Data) else {
                        continue;
                    };
                    let id = self.repo.keys().chunk_id(&plain);
                    self.chunk_ids.insert(b, id);
                    if id == a {
                        self.take_chunk(a, &plain)?;
                        return Ok(true);
                    }
                }
                BlobKind::Tree => {
                    if self.tree_ids[1].get(&b).is_some_and(|x| *x != Some(a)) {
                        continue;
                    }
                    for exact in [false, true] {
                        if let Some((id, bytes)) = self.translate(b, exact)? {
                            if id == a {
                                self.take_tree(a, bytes)?;
                                return Ok(true);
                            }
                        }
                    }
                }
            }
        }
        Ok(false)
    }

    /// Reads every blob of the sibling: each chunk is identified here, each tree translated; the
    /// needed ones are stored, and every pair is a candidate from now on. Data first (trees
    /// translate through it), one pack read whole at a time (memory: one sibling pack).
    pub(super) fn scan(&mut self) -> Result<()> {
        let sib = self.sib;
        let mut packs: Vec<(PackId, Vec<PackEntry>)> = sib
            .entries_by_pack()?
            .into_iter()
            .map(|(p, (_, e))| (p, e))
            .collect();
        packs.sort_by_key(|(p, _)| *p);
        for (pack, entries) in &packs {
            let todo: Vec<&PackEntry> = entries
                .iter()
                .filter(|e| e.kind == BlobKind::Data && !self.chunk_ids.contains_key(&e.id))
                .collect();
            if todo.is_empty() {
                continue;
            }
            self.check_cancel()?;
            let name = pack.to_hex();
            let bytes = match sib.backend().get(FileKind::Pack, &name) {
                Ok(b) => b,
                Err(e) => {
                    self.problem(format!("pack {name} cannot be read: {e}"));
                    continue;
                }
            };
            for e in todo {
                let end = e.offset as usize + e.length as usize;
                let plain = match bytes.get(e.offset as usize..end) {
                    None => Err("it lies past the end of the pack".to_string()),
                    Some(sealed) => pack::open_blob(sib.keys(), e, sealed),
                };
                let plain = match plain {
                    Ok(p) => p,
                    Err(why) => {
                        self.problem(format!(
                            "data blob {} in pack {}: {why}",
                            e.id.short(),
                            pack.short()
                        ));
                        continue;
                    }
                };
                self.report.data_read += plain.len() as u64;
                let a = self.repo.keys().chunk_id(&plain);
                self.chunk_ids.insert(e.id, a);
                self.hint(a, e.id);
                if self.needed(&a) && self.lost_or_wanted(&a) {
                    self.take_chunk(a, &plain)?;
                }
            }
        }
        for (_, entries) in &packs {
            for e in entries.iter().filter(|e| e.kind == BlobKind::Tree) {
                self.check_cancel()?;
                if let Some((a, bytes)) = self.translate(e.id, true)? {
                    self.hint(a, e.id);
                    if self.needed(&a) && self.lost_or_wanted(&a) {
                        self.take_tree(a, bytes)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Notes a problem of the sibling's (its own damage); the first few are reported.
    fn problem(&mut self, what: String) {
        if self.report.sibling_problems.len() < MAX_PROBLEMS {
            self.report.sibling_problems.push(what);
        }
    }
}

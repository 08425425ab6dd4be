//! Index files (repo-format.md §8) and the in-memory index built from them.
//!
//! An index file lists packs and the blobs in each. The in-memory index maps a blob id to its
//! pack and place; a blob stored twice (two clients racing) resolves to the first pack seen.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::id::{BlobId, IndexId, PackId};
use crate::pack::{BlobKind, PackEntry};

/// `[supersedes, packs]` as a MessagePack array (repo-format.md §8).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexFile {
    /// Index files this one replaces; readers ignore those (written by prune and repair).
    pub supersedes: Vec<IndexId>,
    /// The packs this file lists, each with its blobs.
    pub packs: Vec<IndexPack>,
}

/// `[pack id, pack size, [entries...]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexPack {
    /// The pack's id, which is also its file name under `data/` (repo-format.md §3.2).
    pub id: PackId,
    /// The pack file's length in bytes; `check` reports a pack of another length as damaged.
    pub size: u64,
    /// The pack's entries, exactly as in its header, in offset order (repo-format.md §6.1).
    pub blobs: Vec<PackEntry>,
}

/// Where one blob lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack that holds the blob.
    pub pack: PackId,
    /// The blob's entry in that pack: kind, id, and where its sealed bytes are.
    pub entry: PackEntry,
}

#[derive(Clone, Copy)]
struct Slot {
    pack: u32,
    kind: BlobKind,
    offset: u32,
    length: u32,
    raw_length: u32,
}

/// Blob id → location, for every pack in the loaded index files.
#[derive(Default)]
pub struct Index {
    packs: Vec<(PackId, u64)>,
    pack_slot: HashMap<PackId, u32>,
    blobs: HashMap<BlobId, Slot>,
    /// Second copies of blobs already indexed in another pack (two writers raced): kept so the
    /// pack's full contents stay known to `check` and `prune`.
    duplicates: Vec<(BlobId, Slot)>,
}

impl Index {
    /// An empty index, holding no pack.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a pack and its blobs, as listed in an index file. A blob already indexed in another
    /// pack keeps its first location (the one readers use, repo-format.md §8); the new copy is
    /// remembered only for [`Self::entries_by_pack`]. A pack added again keeps its first size.
    pub fn add_pack(&mut self, pack: &IndexPack) {
        let slot = *self.pack_slot.entry(pack.id).or_insert_with(|| {
            self.packs.push((pack.id, pack.size));
            (self.packs.len() - 1) as u32
        });
        for e in &pack.blobs {
            let new = Slot {
                pack: slot,
                kind: e.kind,
                offset: e.offset,
                length: e.length,
                raw_length: e.raw_length,
            };
            match self.blobs.entry(e.id) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(new);
                }
                std::collections::hash_map::Entry::Occupied(o) => {
                    let old = o.get();
                    if old.pack != new.pack || old.offset != new.offset {
                        self.duplicates.push((e.id, new));
                    }
                }
            }
        }
    }

    /// Every indexed entry (duplicates included), grouped by pack, with each pack's size.
    pub fn entries_by_pack(&self) -> HashMap<PackId, (u64, Vec<PackEntry>)> {
        let mut out: HashMap<PackId, (u64, Vec<PackEntry>)> = self
            .packs
            .iter()
            .map(|(id, size)| (*id, (*size, Vec::new())))
            .collect();
        let all = self
            .blobs
            .iter()
            .chain(self.duplicates.iter().map(|(id, s)| (id, s)));
        for (id, s) in all {
            let (pack, _) = self.packs[s.pack as usize];
            if let Some(v) = out.get_mut(&pack) {
                v.1.push(PackEntry {
                    kind: s.kind,
                    id: *id,
                    offset: s.offset,
                    length: s.length,
                    raw_length: s.raw_length,
                });
            }
        }
        for v in out.values_mut() {
            v.1.sort_by_key(|e| e.offset);
        }
        out
    }

    /// Where a blob is read from: its first indexed copy. None when no loaded index file
    /// lists it.
    pub fn get(&self, id: &BlobId) -> Option<BlobLocation> {
        let s = self.blobs.get(id)?;
        Some(BlobLocation {
            pack: self.packs[s.pack as usize].0,
            entry: PackEntry {
                kind: s.kind,
                id: *id,
                offset: s.offset,
                length: s.length,
                raw_length: s.raw_length,
            },
        })
    }

    /// Whether any loaded index file lists the blob.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.blobs.contains_key(id)
    }

    /// How many distinct blobs are indexed; second copies of a blob are not counted.
    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    /// Every pack with its size as recorded in the index.
    pub fn packs(&self) -> &[(PackId, u64)] {
        &self.packs
    }
}

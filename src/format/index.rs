//! Index files (repo-format.md §8): the packs and the blobs in each, as stored. What a process
//! looks blobs up in is [`crate::index::Index`], built from them.

use serde::{Deserialize, Serialize};

use crate::id::{IndexId, PackId};
use crate::pack::PackEntry;

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

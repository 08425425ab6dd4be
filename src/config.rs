//! The repository config (repo-format.md §3): sealed, named `config`, written once by `init`.

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::id::RepoId;

/// The format version this code writes and reads. repo-format.md "Version history".
pub const FORMAT_VERSION: u32 = 1;

/// Default pack target size: 16 MiB. A backup holds at most (uploads + 2) packs in memory, and
/// 16 MiB files are as easy on USB disks and object stores as larger ones.
pub const DEFAULT_PACK_SIZE: u32 = 16 << 20;
/// Bounds on the pack target size.
pub const MIN_PACK_SIZE: u32 = 1 << 20;
pub const MAX_PACK_SIZE: u32 = 512 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    pub version: u32,
    pub id: RepoId,
    pub chunker: ChunkerParams,
    /// `auto`, `off` or `zstd:N`.
    pub compression: String,
    /// Target pack size in bytes.
    pub pack_size: u32,
}

//! The repository config (repo-format.md §3): sealed, named `config`, written once by `init`.

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::id::RepoId;

/// The format version this code writes and reads (repo-format.md §12, "Version history").
pub const FORMAT_VERSION: u32 = 1;

/// Default pack target size: 16 MiB. A backup holds at most (uploads + 2) packs in memory, and
/// 16 MiB files are as easy on USB disks and object stores as larger ones.
pub const DEFAULT_PACK_SIZE: u32 = 16 << 20;
/// Smallest pack target size a config may carry: 1 MiB, in bytes (repo-format.md §3.1, §6.3).
pub const MIN_PACK_SIZE: u32 = 1 << 20;
/// Largest pack target size a config may carry: 512 MiB, in bytes (repo-format.md §3.1, §6.3).
pub const MAX_PACK_SIZE: u32 = 512 << 20;

/// The plaintext of the sealed `config` file, a MessagePack map in field order
/// (repo-format.md §3.1). Fixed by `init`; a reader refuses values outside the bounds there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// The repository format version, [`FORMAT_VERSION`] for repositories this build writes;
    /// a higher value is refused as "needs a newer cairn", `0` is damage.
    pub version: u32,
    /// The repository's own identity, 32 random bytes drawn by `init`.
    pub id: RepoId,
    /// Chunk size bounds in bytes for content-defined chunking (repo-format.md §5).
    pub chunker: ChunkerParams,
    /// Compression policy for new blobs: `auto`, `off` or `zstd:N` with N in 1..=19
    /// (repo-format.md §4.4).
    pub compression: String,
    /// Target pack size in bytes, within [`MIN_PACK_SIZE`]..=[`MAX_PACK_SIZE`].
    pub pack_size: u32,
}

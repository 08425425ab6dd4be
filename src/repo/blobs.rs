//! Reading blobs and trees out of packs (opened and verified against their ids), and storing
//! finished packs.

use super::{backend_err, Repository};
use crate::backend::{retry_read, FileKind};
use crate::error::{Error, Result};
use crate::id::{BlobId, PackId, TreeId};
use crate::pack::{self, BlobKind};
use crate::tree::Tree;

impl Repository {
    /// Reads, opens and verifies one blob.
    pub fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>> {
        let loc = self
            .index
            .get(id)
            .ok_or_else(|| Error::BlobMissing { id: id.to_hex() })?;
        self.read_blob_at(&loc.pack, &loc.entry)
    }

    /// Reads, opens and verifies one blob at a known place (repo-format.md §6.2), whether or
    /// not the index lists it there; tree blobs go through the backend's tree cache.
    pub fn read_blob_at(&self, pack: &PackId, entry: &pack::PackEntry) -> Result<Vec<u8>> {
        let name = pack.to_hex();
        let (offset, len) = (entry.offset as u64, entry.length as usize);
        // A read that fails is tried once more (a USB hiccup); a second failure is damage of
        // this blob, named with the pack and the error (src/backend/unreadable.rs).
        let sealed = retry_read(|| {
            if entry.kind == BlobKind::Tree {
                self.backend.get_tree_range(&name, offset, len)
            } else {
                self.backend.get_range(FileKind::Pack, &name, offset, len)
            }
        })
        .map_err(backend_err(FileKind::Pack, &name))?;
        pack::open_blob(&self.keys, entry, &sealed).map_err(|why| {
            Error::corrupt(
                format!(
                    "{} blob {} in pack {}",
                    entry.kind.name(),
                    entry.id.short(),
                    pack.short()
                ),
                why,
            )
        })
    }

    /// Reads a tree blob through the index, verifies it against its id and decodes it
    /// (repo-format.md §7.3). A blob the index lists as data is damage.
    pub fn read_tree(&self, id: &TreeId) -> Result<Tree> {
        if self.is_put_only() {
            return self.sent_tree(id);
        }
        let loc = self
            .index
            .get(&id.0)
            .ok_or_else(|| Error::BlobMissing { id: id.to_string() })?;
        if loc.entry.kind != BlobKind::Tree {
            return Err(Error::corrupt(
                format!("tree {}", id.0.short()),
                "the index lists it as a data blob",
            ));
        }
        let plain = self.read_blob_at(&loc.pack, &loc.entry)?;
        Tree::decode(&plain, id)
    }
}

//! The blob saver: the one place that decides whether a blob is new, and the one writer of
//! data and tree packs. Backup, `copy`, prune's repacking and `repair` all hand their blobs
//! here (the shape of restic's `Repository.SaveBlob` and its packer manager, and of
//! rustic_core's packer).
//!
//! A [`BlobSaver`] has two halves, so that backup's pipeline can run them on different
//! threads ([`BlobSaver::split`]):
//! - [`Dedup`] answers "is this blob stored (the repository's index) or already queued by this
//!   run?" and queues it when it is neither. Whoever decides what to store owns it (backup's
//!   walker), so no blob is stored twice by a race.
//! - [`Packs`] holds the open data and tree packs: sealed blobs go in, and a pack comes out
//!   finished once it reaches the repository's pack size (backup's packer thread).
//!
//! Single-threaded writers (copy, prune, repair) use the saver whole: it seals, packs, stores
//! each finished pack through the repository and keeps the packs' index entries until the
//! caller names them in an index file.
//!
//! Invariants:
//! - Trees and file data never share a pack (repo-format.md §6.3): losing a data pack then
//!   never takes directory listings with it, and metadata can be read without data.
//! - A pack's index entry is handed out only after the pack is durable; the caller indexes it
//!   only then (repo-format.md §10.2: packs, then the index, then the snapshot).

use std::collections::HashSet;

use crossbeam_channel::Receiver;

use crate::backend::FileKind;
use crate::crypto::MasterKeys;
use crate::error::Result;
use crate::id::BlobId;
use crate::index::{Index, IndexPack};
use crate::pack::{seal_blob, BlobKind, FinishedPack, PackEntry, PackWriter};
use crate::repo::{backend_err, Repository};

/// Which blobs a saver counts as already stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Known {
    /// Those in the repository's index, and those queued by this saver: writers of new blobs
    /// (backup, copy, repaired trees).
    IndexOrQueued,
    /// Only those queued (or marked stored) by this saver: writers of second copies of blobs
    /// the index names in packs being left behind (prune's repacking, repair's salvage).
    Queued,
}

/// The "new or known" half of a [`BlobSaver`].
pub(crate) struct Dedup {
    known: Known,
    /// Blobs queued by this run (or marked stored) and not yet in the repository's index.
    queued: HashSet<BlobId>,
}

impl Dedup {
    /// Whether `id` is stored (in `index`, unless this saver ignores it) or queued.
    pub(crate) fn has(&self, index: &Index, id: &BlobId) -> bool {
        self.queued.contains(id) || (self.known == Known::IndexOrQueued && index.contains(id))
    }

    /// Queues `id` unless it is stored or queued already; true when it was new, and the caller
    /// must then hand the blob to [`Packs`].
    pub(crate) fn claim(&mut self, index: &Index, id: BlobId) -> bool {
        if self.known == Known::IndexOrQueued && index.contains(&id) {
            return false;
        }
        self.queued.insert(id)
    }
}

/// The packing half of a [`BlobSaver`]: the open data and tree packs.
pub(crate) struct Packs {
    keys: MasterKeys,
    /// The repository's pack size: a pack is finished once it holds this many bytes, and a
    /// smaller one is padded (repo-format.md §6.4).
    pack_size: usize,
    data: PackWriter,
    trees: PackWriter,
    /// Buffers of stored packs coming back for the next pack (backup's uploaders).
    recycled: Option<Receiver<Vec<u8>>>,
}

impl Packs {
    /// Takes the buffer for each new pack from `rx` when one is there: a recycled buffer saves
    /// the page faults of a fresh allocation for every pack.
    pub(crate) fn recycle_from(&mut self, rx: Receiver<Vec<u8>>) {
        self.recycled = Some(rx);
    }

    /// Adds a sealed blob (as [`seal_blob`] makes it) to the open pack of its kind; returns that
    /// pack, finished, once it is full.
    pub(crate) fn add(
        &mut self,
        kind: BlobKind,
        id: BlobId,
        sealed: &[u8],
        raw_length: u32,
    ) -> Result<Option<FinishedPack>> {
        let writer = match kind {
            BlobKind::Data => &mut self.data,
            BlobKind::Tree => &mut self.trees,
        };
        writer.add(kind, id, sealed, raw_length)?;
        if !writer.is_full(self.pack_size) {
            return Ok(None);
        }
        let buf = self
            .recycled
            .as_ref()
            .and_then(|r| r.try_recv().ok())
            .unwrap_or_default();
        let full = std::mem::replace(writer, PackWriter::with_buffer(buf));
        full.finish(&self.keys, self.pack_size).map(Some)
    }

    /// Finishes the open packs that hold blobs, data before trees.
    pub(crate) fn finish_open(&mut self) -> Result<Vec<FinishedPack>> {
        let mut out = Vec::new();
        for writer in [&mut self.data, &mut self.trees] {
            if !writer.is_empty() {
                out.push(std::mem::take(writer).finish(&self.keys, self.pack_size)?);
            }
        }
        Ok(out)
    }
}

/// The one saver of blobs into a repository's packs.
pub(crate) struct BlobSaver {
    dedup: Dedup,
    packs: Packs,
    /// Packs stored (durable) and not yet handed to the caller for an index file.
    stored: Vec<IndexPack>,
}

impl BlobSaver {
    /// A saver writing packs of `repo`'s size under its keys.
    pub(crate) fn new(repo: &Repository, known: Known) -> Self {
        BlobSaver {
            dedup: Dedup {
                known,
                queued: HashSet::new(),
            },
            packs: Packs {
                keys: repo.keys().clone(),
                pack_size: repo.config().pack_size as usize,
                data: PackWriter::new(),
                trees: PackWriter::new(),
                recycled: None,
            },
            stored: Vec::new(),
        }
    }

    /// The two halves, for a pipeline that decides on one thread and packs on another.
    pub(crate) fn split(&mut self) -> (&mut Dedup, &mut Packs) {
        (&mut self.dedup, &mut self.packs)
    }

    /// Whether `id` is stored or queued (see [`Known`]).
    pub(crate) fn has(&self, repo: &Repository, id: &BlobId) -> bool {
        self.dedup.has(repo.index(), id)
    }

    /// Counts `ids` as stored: a saver that ignores the index then never writes them.
    pub(crate) fn mark_stored(&mut self, ids: impl IntoIterator<Item = BlobId>) {
        self.dedup.queued.extend(ids);
    }

    /// Compresses, seals and saves `plain` as blob `id` unless it is stored or queued; true
    /// when it was new.
    pub(crate) fn save(
        &mut self,
        repo: &Repository,
        kind: BlobKind,
        id: BlobId,
        plain: &[u8],
    ) -> Result<bool> {
        if !self.dedup.claim(repo.index(), id) {
            return Ok(false);
        }
        let sealed = seal_blob(&self.packs.keys, kind, &id, plain, repo.compression())?;
        self.add(repo, kind, id, &sealed, plain.len() as u32)?;
        Ok(true)
    }

    /// Saves a blob already sealed under this repository's keys (a copy, opened and verified
    /// first, out of one of its packs) unless it is stored or queued; true when it was new.
    pub(crate) fn save_sealed(
        &mut self,
        repo: &Repository,
        entry: &PackEntry,
        sealed: &[u8],
    ) -> Result<bool> {
        if !self.dedup.claim(repo.index(), entry.id) {
            return Ok(false);
        }
        self.add(repo, entry.kind, entry.id, sealed, entry.raw_length)?;
        Ok(true)
    }

    fn add(
        &mut self,
        repo: &Repository,
        kind: BlobKind,
        id: BlobId,
        sealed: &[u8],
        raw_length: u32,
    ) -> Result<()> {
        if let Some(p) = self.packs.add(kind, id, sealed, raw_length)? {
            self.store(repo, p)?;
        }
        Ok(())
    }

    fn store(&mut self, repo: &Repository, p: FinishedPack) -> Result<()> {
        repo.put_pack(&p)?;
        self.stored.push(IndexPack {
            id: p.id,
            size: p.bytes.len() as u64,
            blobs: p.entries,
        });
        Ok(())
    }

    /// Finishes and stores the open packs.
    pub(crate) fn flush(&mut self, repo: &Repository) -> Result<()> {
        for p in self.packs.finish_open()? {
            self.store(repo, p)?;
        }
        Ok(())
    }

    /// Whether packs were stored that no index file names yet.
    pub(crate) fn has_stored(&self) -> bool {
        !self.stored.is_empty()
    }

    /// The packs stored so far (each durable), for the caller's index file.
    pub(crate) fn take_stored(&mut self) -> Vec<IndexPack> {
        std::mem::take(&mut self.stored)
    }

    /// Names the packs stored so far in index files (and the in-memory index); returns their
    /// size in bytes.
    pub(crate) fn index_stored(&mut self, repo: &mut Repository) -> Result<u64> {
        let packs = self.take_stored();
        if packs.is_empty() {
            return Ok(0);
        }
        let bytes = packs.iter().map(|p| p.size).sum();
        // Invariant: every pack named here is durable (its put returned).
        repo.save_index_files(packs, Vec::new())?;
        Ok(bytes)
    }

    /// Stores the open packs and names every stored pack in index files: everything this saver
    /// queued is then in the repository's index. Returns the bytes of packs named.
    pub(crate) fn commit(&mut self, repo: &mut Repository) -> Result<u64> {
        self.flush(repo)?;
        let bytes = self.index_stored(repo)?;
        self.dedup.queued.clear();
        Ok(bytes)
    }
}

impl Repository {
    /// Writes a finished pack durably under its name (a tree pack through the backend's
    /// caching hint). Index it only after this returns (repo-format.md §10.2).
    pub fn put_pack(&self, pack: &FinishedPack) -> Result<()> {
        let name = pack.id.to_hex();
        let backend = self.backend();
        let r = if pack.holds_trees() {
            backend.put_tree_pack(&name, &pack.bytes)
        } else {
            backend.put(FileKind::Pack, &name, &pack.bytes)
        };
        r.map_err(backend_err(FileKind::Pack, &name))
    }

    /// Like [`Self::put_pack`], handing the pack's buffer to the backend (`bytes` is left
    /// empty); returns it when the backend did not keep it, for the next pack.
    pub(crate) fn put_pack_owned(&self, pack: &mut FinishedPack) -> Result<Option<Vec<u8>>> {
        if pack.holds_trees() {
            self.put_pack(pack)?;
            return Ok(Some(std::mem::take(&mut pack.bytes)));
        }
        let name = pack.id.to_hex();
        self.backend()
            .put_owned(FileKind::Pack, &name, std::mem::take(&mut pack.bytes))
            .map_err(backend_err(FileKind::Pack, &name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::pack::read_pack;
    use crate::testutil::{bytes, mem_repo};

    /// Blobs the index names and blobs queued earlier are not saved again; the rest are, and
    /// once committed they are in the index and read back.
    #[test]
    fn a_saver_saves_each_new_blob_once_and_skips_indexed_ones() {
        let (_, mut repo) = mem_repo(b"pw");
        let a = bytes(1, 1000);
        let b = bytes(2, 1000);
        let (ia, ib) = (repo.keys().chunk_id(&a), repo.keys().chunk_id(&b));
        let mut saver = BlobSaver::new(&repo, Known::IndexOrQueued);
        assert!(saver.save(&repo, BlobKind::Data, ia, &a).expect("test"));
        assert!(
            !saver.save(&repo, BlobKind::Data, ia, &a).expect("test"),
            "queued"
        );
        assert!(saver.has(&repo, &ia) && !saver.has(&repo, &ib));
        saver.commit(&mut repo).expect("test");
        assert_eq!(repo.read_blob(&ia).expect("test"), a);

        let mut saver = BlobSaver::new(&repo, Known::IndexOrQueued);
        assert!(saver.has(&repo, &ia), "indexed");
        assert!(!saver.save(&repo, BlobKind::Data, ia, &a).expect("test"));
        assert!(saver.save(&repo, BlobKind::Data, ib, &b).expect("test"));
        saver.flush(&repo).expect("test");
        let stored = saver.take_stored();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].blobs.len(), 1, "only the new blob: {stored:?}");
        assert_eq!(stored[0].blobs[0].id, ib);
    }

    /// A repacking saver writes a second copy of an indexed blob, but never the same blob twice,
    /// nor one marked stored.
    #[test]
    fn a_repacking_saver_copies_indexed_blobs_once_and_skips_marked_ones() {
        let (_, mut repo) = mem_repo(b"pw");
        let plain = [bytes(3, 500), bytes(4, 500)];
        let ids = plain.each_ref().map(|p| repo.keys().chunk_id(p));
        let mut first = BlobSaver::new(&repo, Known::IndexOrQueued);
        for (id, p) in ids.iter().zip(&plain) {
            first.save(&repo, BlobKind::Data, *id, p).expect("test");
        }
        first.commit(&mut repo).expect("test");
        let loc = [0, 1].map(|i| repo.index().get(&ids[i]).expect("test"));
        let sealed = loc.map(|l| {
            repo.backend()
                .get_range(
                    FileKind::Pack,
                    &l.pack.to_hex(),
                    l.entry.offset as u64,
                    l.entry.length as usize,
                )
                .expect("test")
        });

        let mut saver = BlobSaver::new(&repo, Known::Queued);
        saver.mark_stored([ids[1]]);
        assert!(saver.has(&repo, &ids[1]) && !saver.has(&repo, &ids[0]));
        assert!(saver
            .save_sealed(&repo, &loc[0].entry, &sealed[0])
            .expect("test"));
        assert!(!saver
            .save_sealed(&repo, &loc[0].entry, &sealed[0])
            .expect("test"));
        assert!(!saver
            .save_sealed(&repo, &loc[1].entry, &sealed[1])
            .expect("test"));
        saver.flush(&repo).expect("test");
        let stored = saver.take_stored();
        assert_eq!(stored.len(), 1);
        assert_ne!(stored[0].id, loc[0].pack, "a new pack");
        let ids_in: Vec<BlobId> = stored[0].blobs.iter().map(|e| e.id).collect();
        assert_eq!(ids_in, vec![ids[0]]);
    }

    /// Data and trees go to separate packs; a pack is stored as soon as it reaches the pack
    /// size, and every stored pack is durable and reads back as its index entry says.
    #[test]
    fn data_and_trees_fill_separate_packs_stored_at_the_pack_size() {
        let (backend, repo) = mem_repo(b"pw");
        let mut saver = BlobSaver::new(&repo, Known::IndexOrQueued);
        // 1 MiB packs: three 400 KB incompressible chunks fill the first at the third; a tree
        // comes in between.
        let tree = crate::tree::Tree::default().encode().expect("test");
        for seed in 10..13 {
            let c = bytes(seed, 400_000);
            saver
                .save(&repo, BlobKind::Data, repo.keys().chunk_id(&c), &c)
                .expect("test");
            if seed == 10 {
                saver
                    .save(&repo, BlobKind::Tree, repo.keys().tree_id(&tree), &tree)
                    .expect("test");
            }
            assert_eq!(
                saver.has_stored(),
                seed == 12,
                "stored at 1 MiB, not before"
            );
        }
        saver.flush(&repo).expect("test");
        let stored = saver.take_stored();
        assert_eq!(stored.len(), 2, "{stored:?}");
        for p in &stored {
            let bytes = backend.get(FileKind::Pack, &p.id.to_hex()).expect("test");
            assert_eq!(bytes.len() as u64, p.size);
            assert_eq!(read_pack(repo.keys(), &bytes).expect("test"), p.blobs);
            let kinds: HashSet<BlobKind> = p.blobs.iter().map(|e| e.kind).collect();
            assert_eq!(kinds.len(), 1, "one kind per pack: {:?}", p.blobs);
        }
        assert_eq!(stored[0].blobs.len(), 3);
        assert_eq!(stored[1].blobs[0].kind, BlobKind::Tree);
    }
}

//! Loading and writing index files (repo-format.md §8): the in-memory index of which blob lives
//! in which pack, and the sealed metadata reads that index files and snapshots share.

use super::{backend_err, Repository};
use crate::backend::FileKind;
use crate::crypto::ObjectKind;
use crate::error::{Error, Result};
use crate::format::{
    decode_object, encode_object, from_msgpack, to_msgpack_compact, Expect, MAX_METADATA_LEN,
};
use crate::id::{content_hash, IndexId};
use crate::index::{Index, IndexFile, IndexPack};

impl Repository {
    /// Loads the index: which index files are live (repo-format.md §8), and the runs of the
    /// local cache that answer lookups for them (src/index/). An index file is read only the
    /// first time this cache sees it; after that, what it supersedes and its entries come
    /// from the cache. Damaged or zero-length index files are skipped with a warning: `cairn
    /// repair index` rebuilds what they described from the packs.
    pub fn load_index(&mut self) -> Result<()> {
        if self.is_put_only() {
            return self.load_sent_index();
        }
        let index = self.new_index();
        match self.load_index_into(index) {
            // The cache directory cannot be written (a read-only home, a full disk): the runs
            // are built in a temporary directory instead, as with `--no-cache`.
            Err(Error::Io { path, source }) if self.index_cache.is_some() => {
                self.warn(format!(
                    "the local index cache {} cannot be used ({source}); the index is built in a temporary directory for this command",
                    path.display()
                ));
                self.index_cache = None;
                self.load_index_into(Index::new())
            }
            other => other,
        }
    }

    fn load_index_into(&mut self, mut index: Index) -> Result<()> {
        let listed = self.list(FileKind::Index)?;
        let mut known = Vec::new();
        let mut superseded = std::collections::HashSet::new();
        for (name, size) in &listed {
            let Some(id) = IndexId::from_hex(name) else {
                continue;
            };
            if let Some(sup) = index.cached_supersedes(&id) {
                superseded.extend(sup);
                known.push(id);
                continue;
            }
            match self.read_listed_index_file(name, *size) {
                Ok(f) => {
                    superseded.extend(f.supersedes.iter().copied());
                    index
                        .cache_index_file(id, &f)
                        .map_err(|e| self.cache_err(e))?;
                    known.push(id);
                }
                Err(problem) => self.warn(problem),
            }
        }
        let live: Vec<IndexId> = known
            .iter()
            .filter(|id| !superseded.contains(id))
            .copied()
            .collect();
        let listed_ids: std::collections::HashSet<IndexId> = known.iter().copied().collect();
        index
            .load(&live, &listed_ids, |id| {
                match self.read_index_file(&id.to_hex()) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        self.warn(format!("ignoring index file {id}: {e}"));
                        None
                    }
                }
            })
            .map_err(|e| self.cache_err(e))?;
        self.index = index;
        self.index_files = live;
        Ok(())
    }

    /// Reads every index file (hash, authentication, decoding), one at a time, and hands each
    /// readable one to `each`: what `check` verifies, since loading the index reads a file
    /// only the first time the cache sees it. Returns a problem per file that fails, worded as
    /// [`Self::load_index`] warns.
    pub fn stream_index_files(
        &self,
        mut each: impl FnMut(&IndexId, IndexFile),
    ) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        for (name, size) in self.list(FileKind::Index)? {
            let Some(id) = IndexId::from_hex(&name) else {
                continue;
            };
            match self.read_listed_index_file(&name, size) {
                Ok(f) => each(&id, f),
                Err(problem) => problems.push(problem),
            }
        }
        Ok(problems)
    }

    /// Reads a listed index file of `size` bytes (as the listing gave it). An error is the
    /// problem, worded as loading warns it: a file larger than any index file can be is not
    /// read at all.
    fn read_listed_index_file(
        &self,
        name: &str,
        size: u64,
    ) -> std::result::Result<IndexFile, String> {
        if size > MAX_METADATA_LEN as u64 + 1024 {
            return Err(format!(
                "ignoring index file {name}: {size} bytes is more than any index file can be"
            ));
        }
        self.read_index_file(name)
            .map_err(|e| format!("ignoring index file {name}: {e}"))
    }

    /// The live index files: those [`Self::load_index`] found and none supersedes, plus those
    /// this handle wrote since.
    pub fn index_files(&self) -> &[IndexId] {
        &self.index_files
    }

    /// An empty index keeping its runs in this repository's cache directory (a private
    /// temporary one without a cache).
    pub(super) fn new_index(&self) -> Index {
        match &self.index_cache {
            Some(dir) if !self.is_put_only() => {
                Index::in_dir(dir.join("index-runs"), &self.keys.id.0)
            }
            _ => Index::new(),
        }
    }

    /// Keeps the index's runs in `dir`, this repository's local cache directory, from the next
    /// [`Self::load_index`] on. Without it they go to a temporary directory and are built anew
    /// by every process.
    pub fn set_index_cache(&mut self, dir: std::path::PathBuf) {
        self.index_cache = Some(dir);
    }

    fn cache_err(&self, source: std::io::Error) -> Error {
        Error::Io {
            path: self
                .index_cache
                .clone()
                .map(|d| d.join("index-runs"))
                .unwrap_or_else(std::env::temp_dir),
            source,
        }
    }

    /// Every indexed entry grouped by pack, with each pack's size (see
    /// [`Index::entries_by_pack`]: all in memory, for repairs).
    pub fn entries_by_pack(
        &self,
    ) -> Result<std::collections::HashMap<crate::id::PackId, (u64, Vec<crate::pack::PackEntry>)>>
    {
        self.index.entries_by_pack().map_err(|e| self.cache_err(e))
    }

    /// Reads one index file by name (64 hex digits): checks that its bytes hash to the name,
    /// opens it and decodes it (repo-format.md §8). Does not touch the in-memory index.
    pub fn read_index_file(&self, name: &str) -> Result<IndexFile> {
        self.read_sealed(FileKind::Index, ObjectKind::Index, name)
    }

    /// Reads a content-named sealed metadata file (index, snapshot): verified name, opened,
    /// decompressed within the metadata bound, decoded.
    fn read_sealed<T: serde::de::DeserializeOwned>(
        &self,
        kind: FileKind,
        object: ObjectKind,
        name: &str,
    ) -> Result<T> {
        let plain = self.read_sealed_plain(kind, object, name)?;
        from_msgpack(&plain, &kind.path(name))
    }

    /// [`Self::read_sealed`] up to the plaintext.
    pub(super) fn read_sealed_plain(
        &self,
        kind: FileKind,
        object: ObjectKind,
        name: &str,
    ) -> Result<Vec<u8>> {
        let bytes = self.get_verified(kind, name)?;
        decode_object(
            &self.keys,
            object,
            &[],
            &bytes,
            Expect::AtMost(MAX_METADATA_LEN),
        )
        .map_err(|e| Error::corrupt(kind.path(name), e.to_string()))
    }

    /// Writes an index file durably and adds it to the index (a run of its own).
    pub fn save_index(&mut self, file: &IndexFile) -> Result<IndexId> {
        let id = self.write_index(file)?;
        self.index
            .add_index_file(id, file)
            .map_err(|e| self.cache_err(e))?;
        self.index_files.push(id);
        Ok(id)
    }

    /// Writes packs into as many index files as needed to keep each well below the reader's
    /// limit. Only the last file written carries `supersedes`: if the writer dies before it, the
    /// old index files still describe everything (the new ones merely repeat entries).
    pub fn save_index_files(
        &mut self,
        packs: Vec<IndexPack>,
        supersedes: Vec<IndexId>,
    ) -> Result<Vec<IndexId>> {
        let mut files: Vec<IndexFile> = vec![IndexFile::default()];
        let mut blobs = 0;
        for p in packs {
            if blobs > 0 && blobs + p.blobs.len() > BLOBS_PER_FILE {
                files.push(IndexFile::default());
                blobs = 0;
            }
            blobs += p.blobs.len();
            files.last_mut().expect("one file at least").packs.push(p);
        }
        if let Some(last) = files.last_mut() {
            last.supersedes = supersedes;
        }
        let mut ids = Vec::new();
        for f in &files {
            ids.push(self.save_index(f)?);
        }
        Ok(ids)
    }

    /// Writes an index file durably without adding it to the in-memory index (checkpoints).
    pub fn write_index(&self, file: &IndexFile) -> Result<IndexId> {
        let plain = to_msgpack_compact(file)?;
        let sealed = encode_object(&self.keys, ObjectKind::Index, &[], &plain, self.compression)?;
        let id = IndexId(content_hash(&sealed));
        self.backend
            .put(FileKind::Index, &id.to_hex(), &sealed)
            .map_err(backend_err(FileKind::Index, &id.to_hex()))?;
        self.record_sent_index(&id, &plain);
        Ok(id)
    }
}

/// About 25 MiB of index plaintext per file.
const BLOBS_PER_FILE: usize = 500_000;

/// Writes index files as packs come, without holding them all (prune's new index): each file
/// is written once it is full, and [`IndexWriter::finish`] writes the last one, the only one
/// that carries `supersedes` (see [`Repository::save_index_files`]). Files are written with
/// [`Repository::write_index`]: the in-memory index learns of them when it is loaded again.
#[derive(Default)]
pub struct IndexWriter {
    file: IndexFile,
    blobs: usize,
    written: Vec<IndexId>,
}

impl IndexWriter {
    /// A writer with nothing written yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a pack's listing; writes the current file first when the pack would overfill it.
    pub fn push(&mut self, repo: &Repository, pack: IndexPack) -> Result<()> {
        if self.blobs > 0 && self.blobs + pack.blobs.len() > BLOBS_PER_FILE {
            let full = std::mem::take(&mut self.file);
            self.written.push(repo.write_index(&full)?);
            self.blobs = 0;
        }
        self.blobs += pack.blobs.len();
        self.file.packs.push(pack);
        Ok(())
    }

    /// Writes the last file, with `supersedes`; returns every file written, in order.
    pub fn finish(mut self, repo: &Repository, supersedes: Vec<IndexId>) -> Result<Vec<IndexId>> {
        self.file.supersedes = supersedes;
        self.written.push(repo.write_index(&self.file)?);
        Ok(self.written)
    }
}

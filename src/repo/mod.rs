//! Opening, creating and reading a repository; the write-order invariants live here.
//!
//! Commit order (repo-format.md §10.2): packs are durable before an index file names them; index
//! files are durable before a snapshot references their blobs. A reader that finds a snapshot
//! can therefore always find its data, whatever instant a writer was interrupted at.

use std::io;
use std::sync::{Arc, Mutex};

use crate::backend::{Backend, FileKind, CONFIG_NAME};
use crate::chunker::ChunkerParams;
use crate::config::{RepoConfig, DEFAULT_PACK_SIZE, FORMAT_VERSION, MAX_PACK_SIZE, MIN_PACK_SIZE};
use crate::crypto::{self, KdfParams, KeyFileError, KeyInfo, MasterKeys, ObjectKind};
use crate::error::{Error, Result};
use crate::format::{
    decode_object, encode_object, from_msgpack, to_msgpack_compact, to_msgpack_named, Compression,
    Expect, MAX_METADATA_LEN,
};
use crate::id::{content_hash, BlobId, IndexId, KeyId, PackId, RepoId, SnapshotId, TreeId};
use crate::index::{Index, IndexFile, IndexPack};
use crate::pack::{self, BlobKind};
use crate::snapshot::{Snapshot, SNAPSHOT_VERSION};
use crate::tree::Tree;

/// Stores a key file and its copy (repo-format.md §2.1); returns its id.
fn put_key(backend: &dyn Backend, file: &[u8]) -> Result<KeyId> {
    let id = KeyId(content_hash(file));
    let name = id.to_hex();
    backend
        .put(FileKind::Key, &name, file)
        .map_err(backend_err(FileKind::Key, &name))?;
    backend
        .put(FileKind::KeyCopy, &name, file)
        .map_err(backend_err(FileKind::KeyCopy, &name))?;
    Ok(id)
}

/// Removes a key file and its copy.
fn delete_key(backend: &dyn Backend, id: &KeyId) -> Result<()> {
    let name = id.to_hex();
    for kind in [FileKind::Key, FileKind::KeyCopy] {
        backend
            .delete(kind, &name)
            .map_err(backend_err(kind, &name))?;
    }
    Ok(())
}

/// Largest key file a reader loads (they are a few hundred bytes).
const MAX_KEY_FILE_LEN: u64 = 1 << 20;
/// Largest config a reader loads (repo-format.md §4.5: its plaintext is at most 1 MiB).
const MAX_CONFIG_LEN: u64 = (1 << 20) + 1024;

/// `1a2b3c4d` for a 64-hex file name, the name itself otherwise.
fn short_name(name: &str) -> &str {
    name.get(..8).unwrap_or(name)
}

/// Whether a location holds anything besides keys and config: packs, index files, snapshots,
/// locks or drill records. An `init` writes none of them.
fn has_data(backend: &dyn Backend) -> Result<bool> {
    for kind in [
        FileKind::Snapshot,
        FileKind::Index,
        FileKind::Lock,
        FileKind::Drill,
        FileKind::Pack,
    ] {
        if !backend
            .list(kind)
            .map_err(backend_err(kind, ""))?
            .is_empty()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Options for `init`.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub pack_size: u32,
    pub compression: Compression,
    pub chunker: ChunkerParams,
    pub kdf: KdfParams,
    /// Take chunker parameters and key from another repository, so data deduplicates across both.
    pub chunker_from: Option<(ChunkerParams, [u8; 32])>,
    pub host: String,
    pub user: String,
    pub now_ns: i64,
    /// The location holds nothing but what an interrupted `init` leaves (the caller checked:
    /// for a local directory, [`holds_only_init_leftovers`]): finish that init, or redo it,
    /// instead of refusing a location that is not empty.
    pub finish_interrupted: bool,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            pack_size: DEFAULT_PACK_SIZE,
            compression: Compression::Auto,
            chunker: ChunkerParams::default(),
            kdf: KdfParams::default(),
            chunker_from: None,
            host: String::new(),
            user: String::new(),
            now_ns: 0,
            finish_interrupted: false,
        }
    }
}

/// Whether a local directory holds nothing but what an interrupted `init` leaves
/// (repo-format.md §10.2): the layout directories, empty except for key files in `keys/`, and
/// temporary files. Anything else — a foreign file, a `config`, any data — and it does not.
pub fn holds_only_init_leftovers(dir: &std::path::Path) -> io::Result<bool> {
    use crate::id::is_id_name;
    let is_temp = |n: &str| n.starts_with(".tmp-");
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Ok(false);
        };
        // The entry itself, not what a symlink points at.
        let t = entry.file_type()?;
        let ok = if t.is_file() {
            is_temp(name)
        } else if !t.is_dir() {
            false
        } else if name == FileKind::Key.dir() {
            let mut ok = true;
            for k in std::fs::read_dir(entry.path())? {
                let k = k?;
                let n = k.file_name();
                let n = n.to_str().unwrap_or_default();
                let id = n.strip_suffix(".copy").unwrap_or(n);
                ok &= k.file_type()?.is_file() && (is_id_name(id) || is_temp(n));
            }
            ok
        } else if FileKind::LAYOUT_DIRS.iter().any(|k| k.dir() == name) {
            std::fs::read_dir(entry.path())?.next().is_none()
        } else {
            false
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// An open repository: backend, keys, config and (once loaded) the index.
pub struct Repository {
    backend: Arc<dyn Backend>,
    keys: MasterKeys,
    config: RepoConfig,
    compression: Compression,
    key_id: KeyId,
    key_info: KeyInfo,
    /// The sealed config as stored (copied into every new key file).
    config_bytes: Vec<u8>,
    index: Index,
    index_files: Vec<IndexId>,
    warnings: Mutex<Vec<String>>,
}

/// Maps a backend I/O error to a library error naming the object.
pub(crate) fn backend_err(kind: FileKind, name: &str) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Backend {
        path: kind.path(name),
        source,
    }
}

impl Repository {
    /// Creates a new repository: key file first, config last (the config marks it initialized).
    pub fn init(
        backend: Arc<dyn Backend>,
        password: &[u8],
        opts: &InitOptions,
    ) -> Result<Repository> {
        if !(MIN_PACK_SIZE..=MAX_PACK_SIZE).contains(&opts.pack_size) {
            return Err(Error::InvalidInput(format!(
                "pack size must be between {} and {} MiB",
                MIN_PACK_SIZE >> 20,
                MAX_PACK_SIZE >> 20
            )));
        }
        opts.kdf.validate().map_err(Error::InvalidInput)?;
        let (chunker, chunker_key) = match opts.chunker_from {
            Some((p, k)) => (p, k),
            None => (opts.chunker, crypto::random_array()?),
        };
        chunker.validate().map_err(Error::InvalidInput)?;
        let keys = MasterKeys::new(
            crypto::random_array()?,
            crypto::random_array()?,
            chunker_key,
        );
        match backend.create() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && opts.finish_interrupted => {
                if let Some(repo) = finish_interrupted_init(&backend, password)? {
                    return Ok(repo);
                }
                // Nothing usable was left: a fresh init over the leftovers.
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::RepoNotEmpty(backend.location()))
            }
            Err(e) => {
                return Err(Error::Backend {
                    path: backend.location(),
                    source: e,
                })
            }
        }
        let config = RepoConfig {
            version: FORMAT_VERSION,
            id: RepoId(crypto::random_array()?),
            chunker,
            compression: opts.compression.to_string(),
            pack_size: opts.pack_size,
        };
        let plain = to_msgpack_named(&config)?;
        let sealed = encode_object(&keys, ObjectKind::Config, &[], &plain, Compression::Off)?;
        let key_file = crypto::make_key_file(
            &keys,
            password,
            opts.kdf,
            &opts.host,
            &opts.user,
            opts.now_ns,
            Some(&sealed),
        )?;
        let key_id = put_key(backend.as_ref(), &key_file)?;
        // Invariant: the config is written last; a repository without one is not a repository.
        backend
            .put(FileKind::Config, CONFIG_NAME, &sealed)
            .map_err(backend_err(FileKind::Config, CONFIG_NAME))?;
        let key_info = KeyInfo {
            created_ns: opts.now_ns,
            host: opts.host.clone(),
            user: opts.user.clone(),
            params: opts.kdf,
            config_copy: Some(sealed.clone()),
        };
        Ok(Repository {
            backend,
            keys,
            compression: opts.compression,
            config,
            key_id,
            key_info,
            config_bytes: sealed,
            index: Index::new(),
            index_files: Vec::new(),
            warnings: Mutex::new(Vec::new()),
        })
    }

    /// Opens a repository with a password; does not load the index (see [`Self::load_index`]).
    ///
    /// A damaged or zero-length `config` or key file does not lock anyone out: every key file
    /// has a copy (`keys/<id>.copy`) and carries a copy of the config (repo-format.md §2.1).
    pub fn open(backend: Arc<dyn Backend>, password: &[u8]) -> Result<Repository> {
        let mut warnings = Vec::new();
        let mut config_missing = false;
        // Its size first: a config larger than any config can be is not read into memory.
        let config_size = backend
            .list(FileKind::Config)
            .map_err(backend_err(FileKind::Config, CONFIG_NAME))?
            .first()
            .map(|(_, size)| *size);
        let config_file = match config_size {
            None => {
                config_missing = true;
                None
            }
            Some(size) if size > MAX_CONFIG_LEN => {
                warnings.push(format!(
                    "config is {size} bytes, more than any config can be; ignored"
                ));
                None
            }
            Some(_) => match backend.get(FileKind::Config, CONFIG_NAME) {
                Ok(b) if !b.is_empty() => Some(b),
                Ok(_) => {
                    warnings.push("config is empty (zero-length)".to_string());
                    None
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    config_missing = true;
                    None
                }
                // Grown past its bound since it was listed, or not a regular file: damaged like
                // any other; the key file's copy serves.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::FileTooLarge | io::ErrorKind::InvalidData
                    ) =>
                {
                    warnings.push(format!("config cannot be used: {e}"));
                    None
                }
                Err(e) => return Err(backend_err(FileKind::Config, CONFIG_NAME)(e)),
            },
        };
        let primaries = backend
            .list(FileKind::Key)
            .map_err(backend_err(FileKind::Key, ""))?;
        let copies = backend
            .list(FileKind::KeyCopy)
            .map_err(backend_err(FileKind::KeyCopy, ""))?;
        if config_file.is_none() && primaries.is_empty() && copies.is_empty() {
            return Err(Error::RepoMissing(backend.location()));
        }
        if primaries.is_empty() && copies.is_empty() {
            return Err(Error::corrupt(
                "keys/",
                "no key files: nothing can open this repository",
            ));
        }
        let mut opened = None;
        let mut newer = None;
        // Whether some key file could be tried with the password at all.
        let mut tried = false;
        // Primaries first, then the copies (of damaged primaries, or of lost ones).
        let candidates = primaries
            .iter()
            .map(|(n, s)| (FileKind::Key, n, *s))
            .chain(copies.iter().map(|(n, s)| (FileKind::KeyCopy, n, *s)));
        for (kind, name, size) in candidates {
            let what = if kind == FileKind::Key {
                "key file"
            } else {
                "key file copy"
            };
            if size == 0 {
                warnings.push(format!("{what} {name} is empty (zero-length); ignored"));
                continue;
            }
            if size > MAX_KEY_FILE_LEN {
                warnings.push(format!(
                    "{what} {name} is {size} bytes, far too large; ignored"
                ));
                continue;
            }
            let bytes = match backend.get(kind, name) {
                Ok(b) => b,
                Err(e) => {
                    warnings.push(format!("{what} {name} cannot be read: {e}"));
                    continue;
                }
            };
            if hex::encode(content_hash(&bytes)) != *name {
                warnings.push(format!(
                    "{what} {name} is damaged (its content does not match its name)"
                ));
                continue;
            }
            match crypto::open_key_file(&bytes, password) {
                Ok((keys, info)) => {
                    if let Some(id) = KeyId::from_hex(name) {
                        if kind == FileKind::KeyCopy {
                            warnings.push(format!(
                                "opened with the copy of key file {}; the key file itself is damaged or missing (`cairn check` reports it)",
                                id.short()
                            ));
                        }
                        opened = Some((keys, info, id));
                        break;
                    }
                }
                Err(KeyFileError::WrongPassword) => tried = true,
                Err(KeyFileError::Newer(v)) => newer = Some((v, name.clone())),
                Err(KeyFileError::Malformed(why)) => {
                    warnings.push(format!("{what} {name} is damaged: {why}"))
                }
            }
        }
        let Some((keys, key_info, key_id)) = opened else {
            if let Some((v, name)) = newer {
                return Err(Error::UnsupportedVersion {
                    what: format!("key file {}", short_name(&name)),
                    found: v,
                    supported: crypto::KEY_FILE_VERSION,
                });
            }
            // No config and no key file anything could open, and no data: what an `init`
            // killed before its key file was durable leaves (repo-format.md §10.2).
            if !tried && config_missing && !has_data(backend.as_ref())? {
                return Err(Error::InitInterrupted {
                    location: backend.location(),
                    why: format!("no config, and no usable key file: {}", warnings.join("; ")),
                });
            }
            // A damaged key file fails like a wrong password (AEAD cannot tell them apart);
            // say so, so nobody gives up on a password that is right.
            let note = if warnings.is_empty() {
                String::new()
            } else {
                format!(" (note: {})", warnings.join("; "))
            };
            return Err(Error::WrongPassword {
                location: backend.location(),
                note,
            });
        };
        let from_file = config_file
            .as_ref()
            .map(|b| (b.clone(), decode_config(&keys, b)));
        let (config_bytes, config) = match from_file {
            Some((b, Ok(c))) => (b, c),
            other => {
                // Unsupported versions are not damage: never paper over them with the copy.
                if let Some((_, Err(e @ Error::UnsupportedVersion { .. }))) = other {
                    return Err(e);
                }
                let why = match other {
                    Some((_, Err(e))) => e.to_string(),
                    _ => "config is missing or empty".to_string(),
                };
                let copy = key_info.config_copy.clone().ok_or_else(|| {
                    Error::corrupt("config", format!("{why}, and the key file carries no copy"))
                })?;
                let c = decode_config(&keys, &copy)?;
                if config_missing && !has_data(backend.as_ref())? {
                    warnings.push(format!(
                        "an interrupted `cairn init` left {} without its config; run `cairn init` again to finish it (until then the copy kept in key file {} is used)",
                        backend.location(),
                        key_id.short()
                    ));
                } else {
                    warnings.push(format!(
                        "{why}; using the copy kept in key file {} (`cairn repair config` writes it back)",
                        key_id.short()
                    ));
                }
                (copy, c)
            }
        };
        let compression = config
            .compression
            .parse::<Compression>()
            .map_err(|e| Error::corrupt("config", e))?;
        config
            .chunker
            .validate()
            .map_err(|e| Error::corrupt("config", e))?;
        if !(MIN_PACK_SIZE..=MAX_PACK_SIZE).contains(&config.pack_size) {
            return Err(Error::corrupt(
                "config",
                format!("pack size {} out of range", config.pack_size),
            ));
        }
        Ok(Repository {
            backend,
            keys,
            compression,
            config,
            key_id,
            key_info,
            config_bytes,
            index: Index::new(),
            index_files: Vec::new(),
            warnings: Mutex::new(warnings),
        })
    }

    /// Writes the config back from the copy in use when the stored one is missing or damaged.
    /// Returns whether anything was written.
    pub fn repair_config(&self) -> Result<bool> {
        let stored = self.backend.get(FileKind::Config, CONFIG_NAME).ok();
        if stored.as_deref() == Some(self.config_bytes.as_slice()) {
            return Ok(false);
        }
        if stored.is_some() {
            self.backend
                .delete(FileKind::Config, CONFIG_NAME)
                .map_err(backend_err(FileKind::Config, CONFIG_NAME))?;
        }
        self.backend
            .put(FileKind::Config, CONFIG_NAME, &self.config_bytes)
            .map_err(backend_err(FileKind::Config, CONFIG_NAME))?;
        Ok(true)
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn keys(&self) -> &MasterKeys {
        &self.keys
    }

    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The sealed config in use (from `config`, or the copy in the key file).
    pub fn config_bytes(&self) -> &[u8] {
        &self.config_bytes
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    pub fn key_info(&self) -> &KeyInfo {
        &self.key_info
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Names and sizes of the stored files of one kind.
    pub fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        self.backend.list(kind).map_err(backend_err(kind, ""))
    }

    /// Names of the stored files of one kind.
    pub fn list_names(&self, kind: FileKind) -> Result<Vec<String>> {
        Ok(self.list(kind)?.into_iter().map(|(n, _)| n).collect())
    }

    /// Records a non-fatal problem for the caller to show.
    pub fn warn(&self, msg: String) {
        self.warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(msg);
    }

    /// Takes the warnings gathered so far.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reads one file whose name is the hash of its bytes; zero-length or mismatching files are
    /// damaged.
    fn get_verified(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let bytes = self
            .backend
            .get(kind, name)
            .map_err(backend_err(kind, name))?;
        if bytes.is_empty() {
            return Err(Error::corrupt(
                kind.path(name),
                "the file is empty (zero-length)",
            ));
        }
        if hex::encode(content_hash(&bytes)) != name {
            return Err(Error::corrupt(
                kind.path(name),
                "its content does not hash to its name",
            ));
        }
        Ok(bytes)
    }

    /// Loads every index file. Damaged or zero-length index files are skipped with a warning:
    /// `cairn repair index` rebuilds what they described from the packs.
    pub fn load_index(&mut self) -> Result<()> {
        let listed = self.list(FileKind::Index)?;
        let mut files = Vec::new();
        let mut superseded = std::collections::HashSet::new();
        for (name, size) in &listed {
            if *size > MAX_METADATA_LEN as u64 + 1024 {
                self.warn(format!(
                    "ignoring index file {name}: {size} bytes is more than any index file can be"
                ));
                continue;
            }
            match self.read_index_file(name) {
                Ok(f) => {
                    superseded.extend(f.supersedes.iter().copied());
                    files.push((name.clone(), f));
                }
                Err(e) => self.warn(format!("ignoring index file {name}: {e}")),
            }
        }
        let mut index = Index::new();
        let mut ids = Vec::new();
        for (name, f) in files {
            let Some(id) = IndexId::from_hex(&name) else {
                continue;
            };
            if superseded.contains(&id) {
                continue;
            }
            for p in &f.packs {
                index.add_pack(p);
            }
            ids.push(id);
        }
        self.index = index;
        self.index_files = ids;
        Ok(())
    }

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
    fn read_sealed_plain(&self, kind: FileKind, object: ObjectKind, name: &str) -> Result<Vec<u8>> {
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

    /// Writes an index file durably and adds its packs to the in-memory index.
    pub fn save_index(&mut self, file: &IndexFile) -> Result<IndexId> {
        let id = self.write_index(file)?;
        for p in &file.packs {
            self.index.add_pack(p);
        }
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
        /// About 25 MiB of index plaintext per file.
        const BLOBS_PER_FILE: usize = 500_000;
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
        Ok(id)
    }

    /// Adds packs to the in-memory index only (they must already be in a durable index file).
    pub fn index_add(&mut self, pack: &IndexPack) {
        self.index.add_pack(pack);
    }

    /// Reads, opens and verifies one blob.
    pub fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>> {
        let loc = self
            .index
            .get(id)
            .ok_or_else(|| Error::BlobMissing { id: id.to_hex() })?;
        self.read_blob_at(&loc.pack, &loc.entry)
    }

    /// Seals a pack (padded as this repository's pack size says, repo-format.md §6.4),
    /// stores it durably under its name, and returns its index entry. Index it only after
    /// this returns (§10.2).
    pub fn store_pack(&self, writer: pack::PackWriter) -> Result<IndexPack> {
        let p = writer.finish(&self.keys, self.config.pack_size as usize)?;
        p.store(self.backend.as_ref())?;
        Ok(IndexPack {
            id: p.id,
            size: p.bytes.len() as u64,
            blobs: p.entries,
        })
    }

    pub fn read_blob_at(&self, pack: &PackId, entry: &pack::PackEntry) -> Result<Vec<u8>> {
        let name = pack.to_hex();
        let (offset, len) = (entry.offset as u64, entry.length as usize);
        let sealed = if entry.kind == BlobKind::Tree {
            self.backend.get_tree_range(&name, offset, len)
        } else {
            self.backend.get_range(FileKind::Pack, &name, offset, len)
        }
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

    pub fn read_tree(&self, id: &TreeId) -> Result<Tree> {
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

    /// Writes a snapshot durably. Invariant: every blob it references is in a durable index file.
    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId> {
        let plain = to_msgpack_named(snap)?;
        let sealed = encode_object(
            &self.keys,
            ObjectKind::Snapshot,
            &[],
            &plain,
            self.compression,
        )?;
        let id = SnapshotId(content_hash(&sealed));
        self.backend
            .put(FileKind::Snapshot, &id.to_hex(), &sealed)
            .map_err(backend_err(FileKind::Snapshot, &id.to_hex()))?;
        Ok(id)
    }

    /// Removes a snapshot file (its data stays until `prune`).
    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<()> {
        let name = id.to_hex();
        self.backend
            .delete(FileKind::Snapshot, &name)
            .map_err(backend_err(FileKind::Snapshot, &name))
    }

    /// Reads a snapshot; its `version` alone first, so that a snapshot of a later format is
    /// named as such even when it no longer parses as this one (repo-format.md §9, §12).
    pub fn read_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        #[derive(serde::Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let name = id.to_hex();
        let path = FileKind::Snapshot.path(&name);
        let plain = self.read_sealed_plain(FileKind::Snapshot, ObjectKind::Snapshot, &name)?;
        let v: VersionOnly = from_msgpack(&plain, &path)?;
        if v.version == 0 {
            return Err(Error::corrupt(path, "snapshot version 0"));
        }
        if v.version > SNAPSHOT_VERSION {
            return Err(Error::UnsupportedVersion {
                what: format!("snapshot {}", id.short()),
                found: v.version,
                supported: SNAPSHOT_VERSION,
            });
        }
        from_msgpack(&plain, &path)
    }

    /// Every readable snapshot, oldest first. Damaged ones (and ones of a later format) are
    /// skipped with a warning.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let (out, skipped) = self.snapshots_and_skipped()?;
        for (id, e) in skipped {
            self.warn(format!("skipping snapshot {}: {e}", id.short()));
        }
        Ok(out)
    }

    /// The readable snapshots, oldest first, and why the others could not be read.
    fn snapshots_and_skipped(&self) -> Result<SnapshotsAndSkipped> {
        let listed = self.list(FileKind::Snapshot)?;
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        for (name, size) in listed {
            let Some(id) = SnapshotId::from_hex(&name) else {
                continue;
            };
            if size > 16 << 20 {
                skipped.push((
                    id,
                    Error::corrupt(
                        FileKind::Snapshot.path(&name),
                        format!("{size} bytes is more than any snapshot can be"),
                    ),
                ));
                continue;
            }
            match self.read_snapshot(&id) {
                Ok(s) => out.push((id, s)),
                Err(e) => skipped.push((id, e)),
            }
        }
        out.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
        Ok((out, skipped))
    }

    /// Resolves `latest`, a full id or a unique prefix of ≥ 4 hex digits.
    pub fn find_snapshot(
        &self,
        selector: &str,
        filter: &SnapshotFilter,
    ) -> Result<(SnapshotId, Snapshot)> {
        let (all, mut skipped) = self.snapshots_and_skipped()?;
        let result = select_snapshot(all, selector, filter);
        if matches!(result, Err(Error::SnapshotNotFound(_))) && selector != "latest" {
            // An id of exactly one snapshot that could not be read: say why, not "no snapshot".
            let sel = selector.to_ascii_lowercase();
            let hits: Vec<usize> = (0..skipped.len())
                .filter(|&i| skipped[i].0.to_hex().starts_with(&sel))
                .collect();
            if let [i] = hits[..] {
                return Err(skipped.swap_remove(i).1);
            }
        }
        for (id, e) in skipped {
            self.warn(format!("skipping snapshot {}: {e}", id.short()));
        }
        result
    }

    /// The repository's id.
    pub fn id(&self) -> RepoId {
        self.config.id
    }

    /// Adds a key file for `password` opening the same master keys.
    pub fn add_key(
        &self,
        password: &[u8],
        kdf: KdfParams,
        host: &str,
        user: &str,
        now_ns: i64,
    ) -> Result<KeyId> {
        let file = crypto::make_key_file(
            &self.keys,
            password,
            kdf,
            host,
            user,
            now_ns,
            Some(&self.config_bytes),
        )?;
        put_key(self.backend.as_ref(), &file)
    }
}

/// A key file as `key list` shows it.
#[derive(Clone, Debug)]
pub struct KeyEntry {
    pub id: KeyId,
    /// Who made it and when, if this repository's password opens it too (all keys of one
    /// repository share master keys, so any key file's payload can be read once one is open).
    pub info: Option<KeyInfo>,
    pub params: Option<KdfParams>,
    pub error: Option<String>,
}

impl Repository {
    /// Lists key files. Their sealed payloads cannot be read without each key's own password,
    /// so only the KDF parameters are shown for other keys.
    pub fn list_keys(&self) -> Result<Vec<KeyEntry>> {
        let listed = self.list(FileKind::Key)?;
        let mut out = Vec::new();
        for (name, _) in listed {
            let Some(id) = KeyId::from_hex(&name) else {
                continue;
            };
            let (params, error) = match self.get_verified(FileKind::Key, &name) {
                Ok(bytes) => match crypto::key_file_params(&bytes) {
                    Ok(p) => (Some(p), None),
                    Err(e) => (None, Some(e.to_string())),
                },
                Err(e) => (None, Some(e.to_string())),
            };
            let info = (id == self.key_id).then(|| self.key_info.clone());
            out.push(KeyEntry {
                id,
                info,
                params,
                error,
            });
        }
        Ok(out)
    }

    /// Removes a key file. Refuses to remove the last key that opens the repository, and the
    /// key in use (change it with `key passwd` instead).
    pub fn remove_key(&self, id: &KeyId) -> Result<()> {
        let keys = self.list_keys()?;
        if !keys.iter().any(|k| k.id == *id) {
            return Err(Error::InvalidInput(format!("there is no key {id}")));
        }
        let usable = keys.iter().filter(|k| k.error.is_none()).count();
        if usable <= 1 {
            return Err(Error::InvalidInput(
                "refusing to remove the last key: nothing could open the repository".into(),
            ));
        }
        if *id == self.key_id {
            return Err(Error::InvalidInput(
                "refusing to remove the key in use; open the repository with another password to remove this one, or use `key passwd`".into(),
            ));
        }
        delete_key(self.backend.as_ref(), id)
    }

    /// Replaces the key in use with a new one for `password`: the new key is durable before the
    /// old one is removed.
    pub fn change_password(
        &mut self,
        password: &[u8],
        kdf: KdfParams,
        host: &str,
        user: &str,
        now_ns: i64,
    ) -> Result<KeyId> {
        let new = self.add_key(password, kdf, host, user, now_ns)?;
        let old = self.key_id;
        delete_key(self.backend.as_ref(), &old)?;
        self.key_id = new;
        self.key_info = KeyInfo {
            created_ns: now_ns,
            host: host.to_string(),
            user: user.to_string(),
            params: kdf,
            config_copy: Some(self.config_bytes.clone()),
        };
        Ok(new)
    }
}

/// Finishes what an interrupted `init` left at a location that holds nothing else
/// ([`InitOptions::finish_interrupted`]). A key file that this password opens is kept: its copy
/// and the config (from the copy the key file carries) are written, and the repository is
/// returned. Without a usable key file, the unusable ones (zero-length, unparsable) and
/// temporary files are removed and None says to start afresh. A readable key file for another
/// password, a config, or any data, and nothing is touched.
fn finish_interrupted_init(
    backend: &Arc<dyn Backend>,
    password: &[u8],
) -> Result<Option<Repository>> {
    let location = backend.location();
    // The temporary files the interrupted init left, once what stays is durable.
    let remove_leftovers = || {
        backend
            .remove_temporaries()
            .map_err(|source| Error::Backend {
                path: location.clone(),
                source,
            })
    };
    let config = backend
        .list(FileKind::Config)
        .map_err(backend_err(FileKind::Config, CONFIG_NAME))?;
    if !config.is_empty() || has_data(backend.as_ref())? {
        return Err(Error::RepoNotEmpty(location));
    }
    let mut readable = false;
    let mut unusable = Vec::new();
    for kind in [FileKind::Key, FileKind::KeyCopy] {
        for (name, size) in backend.list(kind).map_err(backend_err(kind, ""))? {
            if size == 0 {
                unusable.push((kind, name));
                continue;
            }
            if size > MAX_KEY_FILE_LEN {
                return Err(Error::RepoNotEmpty(location));
            }
            let bytes = backend.get(kind, &name).map_err(backend_err(kind, &name))?;
            match crypto::key_file_params(&bytes) {
                Ok(_) => readable = true,
                Err(KeyFileError::Malformed(_)) => unusable.push((kind, name)),
                // A key file of a later format: not an init of this cairn.
                Err(_) => return Err(Error::RepoNotEmpty(location)),
            }
        }
    }
    if readable {
        let repo = match Repository::open(backend.clone(), password) {
            Ok(repo) => repo,
            Err(Error::WrongPassword { .. }) => {
                return Err(Error::InvalidInput(format!(
                    "an interrupted `cairn init` left a key file in {location} that this password does not open: run `cairn init` with the password given then to finish it, or empty {location} to start over"
                )))
            }
            Err(e) => return Err(e),
        };
        let _ = repo.take_warnings();
        // Key file → its copy → config, as init writes them (repo-format.md §10.2).
        let name = repo.key_id.to_hex();
        let bytes = match backend.get(FileKind::Key, &name) {
            Ok(b) if hex::encode(content_hash(&b)) == name => b,
            _ => backend
                .get(FileKind::KeyCopy, &name)
                .map_err(backend_err(FileKind::KeyCopy, &name))?,
        };
        put_key(backend.as_ref(), &bytes)?;
        repo.repair_config()?;
        remove_leftovers()?;
        repo.warn(format!(
            "finished the interrupted `cairn init` of {location}: its key file was already written, so the settings it was started with are kept"
        ));
        return Ok(Some(repo));
    }
    for (kind, name) in unusable {
        backend
            .delete(kind, &name)
            .map_err(backend_err(kind, &name))?;
    }
    remove_leftovers()?;
    Ok(None)
}

fn decode_config(keys: &MasterKeys, bytes: &[u8]) -> Result<RepoConfig> {
    #[derive(serde::Deserialize)]
    struct VersionOnly {
        version: u32,
    }
    let plain = decode_object(
        keys,
        ObjectKind::Config,
        &[],
        bytes,
        Expect::AtMost(1 << 20),
    )
    .map_err(|e| Error::corrupt("config", e.to_string()))?;
    let v: VersionOnly = from_msgpack(&plain, "config")?;
    if v.version > FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            what: "the repository (its config)".into(),
            found: v.version,
            supported: FORMAT_VERSION,
        });
    }
    if v.version == 0 {
        return Err(Error::corrupt("config", "format version 0"));
    }
    from_msgpack(&plain, "config")
}

/// Readable snapshots, and the ones that could not be read with why.
type SnapshotsAndSkipped = (Vec<(SnapshotId, Snapshot)>, Vec<(SnapshotId, Error)>);

/// Narrows `latest` to snapshots of a host, with a tag, or of a path.
#[derive(Clone, Debug, Default)]
pub struct SnapshotFilter {
    pub hosts: Vec<String>,
    pub tags: Vec<String>,
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.host))
            && (self.tags.is_empty() || self.tags.iter().any(|t| s.tags.contains(t)))
            && (self.paths.is_empty() || self.paths.iter().all(|p| s.paths.contains(p)))
    }
}

/// Picks one snapshot from `all` (oldest first) by selector.
pub fn select_snapshot(
    all: Vec<(SnapshotId, Snapshot)>,
    selector: &str,
    filter: &SnapshotFilter,
) -> Result<(SnapshotId, Snapshot)> {
    if selector == "latest" {
        return all
            .into_iter()
            .filter(|(_, s)| filter.matches(s))
            .max_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)))
            .ok_or_else(|| Error::SnapshotNotFound(selector.to_string()));
    }
    let sel = selector.to_ascii_lowercase();
    if sel.len() < 4 || sel.len() > 64 || !sel.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidInput(format!(
            "snapshot selector {selector:?} is not `latest`, an id, or a prefix of at least 4 hex digits"
        )));
    }
    let mut hits: Vec<_> = all
        .into_iter()
        .filter(|(id, _)| id.to_hex().starts_with(&sel))
        .collect();
    match hits.len() {
        0 => Err(Error::SnapshotNotFound(selector.to_string())),
        1 => Ok(hits.remove(0)),
        n => Err(Error::SnapshotAmbiguous {
            selector: selector.to_string(),
            count: n,
        }),
    }
}

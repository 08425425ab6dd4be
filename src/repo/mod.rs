//! An open repository: the [`Repository`] handle, its accessors and the helpers every part
//! of it shares. The write-order invariants live in this folder.
//!
//! Commit order (repo-format.md §10.2): packs are durable before an index file names them; index
//! files are durable before a snapshot references their blobs. A reader that finds a snapshot
//! can therefore always find its data, whatever instant a writer was interrupted at.
//!
//! - `init.rs`: creating a repository, and finishing an interrupted `init`;
//! - `open.rs`: opening one (existence, key files and their copies, the config and its copy);
//! - `index_files.rs`: loading and writing index files;
//! - `blobs.rs`: reading blobs and trees, storing packs;
//! - `snapshots.rs`: writing, reading, listing and selecting snapshots;
//! - `keys.rs`: adding, listing and removing key files, changing the password;
//! - `sent.rs`: a put-only key's local record of what it sent (its index, trees, snapshots).

pub mod config;
pub mod lock;
pub mod stats;

mod blobs;
mod index_files;
mod init;
mod keys;
mod open;
mod sent;
mod snapshots;

pub use index_files::IndexWriter;
pub use init::{holds_only_init_leftovers, InitOptions};
pub use keys::KeyEntry;
pub use open::{ensure_exists, OpenOptions};
pub use snapshots::{select_snapshot, SnapshotFilter};

use std::io;
use std::sync::{Arc, Mutex};

use crate::backend::{Backend, FileKind};
use crate::config::RepoConfig;
use crate::crypto::{KeyInfo, MasterKeys};
use crate::error::{Error, Result};
use crate::format::Compression;
use crate::id::{content_hash, IndexId, KeyId, RepoId};
use crate::index::Index;

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
    /// The local cache directory the index keeps its runs in ([`Self::set_index_cache`]).
    index_cache: Option<std::path::PathBuf>,
    warnings: Mutex<Vec<String>>,
    /// A put-only key's local record of what it sent (repo-format.md §10.6); None for a full
    /// key, and for a put-only key without a cache directory.
    sent: Option<sent::SentRecord>,
}

/// Maps a backend I/O error to a library error naming the object.
pub(crate) fn backend_err(kind: FileKind, name: &str) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Backend {
        path: kind.path(name),
        source,
    }
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

impl Repository {
    /// The storage the repository lives in (possibly behind the local cache of a remote one).
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The master keys the opening key file unwrapped (repo-format.md §2).
    pub fn keys(&self) -> &MasterKeys {
        &self.keys
    }

    /// Whether the repository was opened with a put-only key (repo-format.md §2.2): it can make
    /// backups, and read or delete nothing.
    pub fn is_put_only(&self) -> bool {
        self.keys.is_put_only()
    }

    /// Fails with [`Error::PutOnly`] when the repository was opened with a put-only key;
    /// `what` says what was asked ("run `cairn restore`").
    pub fn require_full_key(&self, what: &str) -> Result<()> {
        if self.is_put_only() {
            return Err(Error::PutOnly(what.to_string()));
        }
        Ok(())
    }

    /// The decoded config (repo-format.md §3.1), validated when the repository was opened.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The sealed config in use (from `config`, or the copy in the key file).
    pub fn config_bytes(&self) -> &[u8] {
        &self.config_bytes
    }

    /// How data blobs, trees, index files and snapshots are compressed: the config's
    /// `compression`, parsed (repo-format.md §4.4).
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The id (file name under `keys/`) of the key file the password opened.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// What the opening key file records: when, by which host and user, its Argon2id
    /// parameters, its copy of the config.
    pub fn key_info(&self) -> &KeyInfo {
        &self.key_info
    }

    /// The in-memory index: empty until [`Self::load_index`], then the live index files plus
    /// what this handle has saved since.
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

    /// Takes the warnings gathered so far (the index's problems with its local cache too).
    pub fn take_warnings(&self) -> Vec<String> {
        let mut w = std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|p| p.into_inner()));
        w.extend(self.index.take_problems());
        w
    }

    /// Reads one file whose name is the hash of its bytes; zero-length or mismatching files are
    /// damaged.
    fn get_verified(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let bytes = crate::backend::retry_read(|| self.backend.get(kind, name))
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

    /// The repository's id.
    pub fn id(&self) -> RepoId {
        self.config.id
    }
}

//! Creating a repository (key file first, config last), and finishing what an interrupted
//! `init` left behind (repo-format.md §10.2).

use std::io;
use std::sync::{Arc, Mutex};

use super::keys::put_key;
use super::open::MAX_KEY_FILE_LEN;
use super::{backend_err, has_data, Repository};
use crate::backend::{Backend, FileKind, CONFIG_NAME};
use crate::chunker::ChunkerParams;
use crate::config::{
    RepoConfig, DEFAULT_PACK_SIZE, INIT_FORMAT_VERSION, MAX_PACK_SIZE, MIN_PACK_SIZE,
};
use crate::crypto::{self, KdfParams, KeyFileError, KeyInfo, MasterKeys, ObjectKind};
use crate::error::{Error, Result};
use crate::format::{encode_object, to_msgpack_named, Compression};
use crate::id::{content_hash, RepoId};
use crate::index::Index;

/// Options for `init`.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Target pack size in bytes (`--pack-size`, given in MiB), within
    /// [`crate::repo::config::MIN_PACK_SIZE`]..=[`crate::repo::config::MAX_PACK_SIZE`].
    pub pack_size: u32,
    /// The config's compression policy (`--compression`; repo-format.md §4.4).
    pub compression: Compression,
    /// Chunk size bounds for the config (repo-format.md §5); ignored with
    /// [`Self::chunker_from`].
    pub chunker: ChunkerParams,
    /// Argon2id parameters of the first key file (repo-format.md §2.1).
    pub kdf: KdfParams,
    /// Take chunker parameters and key from another repository, so data deduplicates across both.
    /// The key is the other repository's 32-byte chunker key (`--copy-chunker-params-from`);
    /// None draws a fresh random one.
    pub chunker_from: Option<(ChunkerParams, [u8; 32])>,
    /// Parity across packs as a percentage 1..=50 (`--parity`; repo-format.md §14.3); None:
    /// no parity.
    pub parity: Option<u32>,
    /// Host name recorded in the first key file (`key list`).
    pub host: String,
    /// User name recorded in the first key file (`key list`).
    pub user: String,
    /// When the first key file is made, in nanoseconds since the Unix epoch.
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
            parity: None,
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
        if let Some(p) = opts.parity {
            crate::parity::Shape::for_percent(p)?;
        }
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
            version: INIT_FORMAT_VERSION,
            id: RepoId(crypto::random_array()?),
            chunker,
            compression: opts.compression.to_string(),
            pack_size: opts.pack_size,
            parity: opts.parity,
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
            put_only: None,
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
            index_cache: None,
            index_files: Vec::new(),
            warnings: Mutex::new(Vec::new()),
            sent: None,
        })
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

//! Opening a repository: does the location hold one (before any password is asked for), the
//! key files (or their copies) with the password, the config (or the copy a key file carries),
//! what an interrupted `init` or a damaged file leaves, and attaching the local cache.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use super::{backend_err, has_data, Repository};
use crate::backend::{Backend, CachedBackend, FileKind, CONFIG_NAME};
use crate::config::{RepoConfig, FORMAT_VERSION, MAX_PACK_SIZE, MIN_PACK_SIZE};
use crate::crypto::{self, KeyFileError, MasterKeys, ObjectKind};
use crate::error::{Error, Result};
use crate::format::{decode_object, from_msgpack, Compression, Expect};
use crate::id::{content_hash, KeyId};
use crate::index::Index;

/// Largest key file a reader loads (they are a few hundred bytes).
pub(super) const MAX_KEY_FILE_LEN: u64 = 1 << 20;
/// Largest config a reader loads (repo-format.md §4.5: its plaintext is at most 1 MiB).
const MAX_CONFIG_LEN: u64 = (1 << 20) + 1024;

/// `1a2b3c4d` for a 64-hex file name, the name itself otherwise.
fn short_name(name: &str) -> &str {
    name.get(..8).unwrap_or(name)
}

/// What [`Repository::open_existing`] needs besides the backend and the password.
#[derive(Clone, Default)]
pub struct OpenOptions {
    /// The local cache in front of the backend (a remote repository's), and the directory
    /// that holds the caches of all repositories: once the repository's id is known, the cache
    /// keeps its files in the repository's own directory there ([`Repository::cache_dir_in`]).
    /// None: no cache.
    pub cache: Option<(Arc<CachedBackend>, PathBuf)>,
}

/// Whether `backend` holds a repository: a `config`, a key file or a key file's copy (a
/// repository whose config is lost can still be opened from a key file's copy). None of them
/// is [`Error::RepoMissing`]; a listing that fails (a missing directory aside) is
/// [`Error::Backend`] naming what was listed. Reads no key file and needs no password.
pub fn ensure_exists(backend: &dyn Backend) -> Result<()> {
    for kind in [FileKind::Config, FileKind::Key, FileKind::KeyCopy] {
        match backend.list(kind) {
            Ok(l) if !l.is_empty() => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Backend {
                    path: kind.path("").trim_end_matches(['/', '.']).to_string(),
                    source: e,
                })
            }
        }
    }
    Err(Error::RepoMissing(backend.location()))
}

impl Repository {
    /// Opens an existing repository: existence first ([`ensure_exists`]; for a location
    /// without one, `password` is never called), then the key files with the password
    /// ([`Self::open`]), then the cache of `opts` is attached. Errors of the password source
    /// and of the library arrive in the caller's own error type.
    pub fn open_existing<E: From<Error>>(
        backend: Arc<dyn Backend>,
        opts: &OpenOptions,
        password: impl FnOnce() -> std::result::Result<Zeroizing<Vec<u8>>, E>,
    ) -> std::result::Result<Repository, E> {
        ensure_exists(backend.as_ref())?;
        let pw = password()?;
        let repo = Repository::open(backend, &pw)?;
        if let Some((cache, root)) = &opts.cache {
            cache.set_dir(repo.cache_dir_in(root));
        }
        Ok(repo)
    }

    /// This repository's cache directory inside `root`, the directory holding the caches of
    /// all repositories: `<root>/<repository id>`.
    pub fn cache_dir_in(&self, root: &Path) -> PathBuf {
        root.join(self.id().to_hex())
    }
}

impl Repository {
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
        let (config_bytes, config) = match &key_info.put_only {
            // A put-only key cannot open the config: its key file carries what a backup needs
            // of it (repo-format.md §2.2), and there is no sealed config to keep.
            Some(p) => (Vec::new(), put_only_config(p)),
            None => config_and_bytes(
                &keys,
                &key_info,
                key_id,
                config_file,
                config_missing,
                backend.as_ref(),
                &mut warnings,
            )?,
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
            index_cache: None,
            index_files: Vec::new(),
            warnings: Mutex::new(warnings),
            sent: None,
        })
    }
}

/// The config a put-only key works with: what its key file carries (repo-format.md §2.2), at
/// the format version every repository with a put-only key has.
fn put_only_config(p: &crypto::PutOnlyConfig) -> RepoConfig {
    RepoConfig {
        version: crate::config::PUT_ONLY_FORMAT_VERSION,
        id: crate::id::RepoId(p.repo_id),
        chunker: p.chunker,
        compression: p.compression.clone(),
        pack_size: p.pack_size,
        parity: None,
    }
}

/// The sealed config and its decoding: from `config`, or else from the copy the key file
/// carries (with a warning saying so).
fn config_and_bytes(
    keys: &MasterKeys,
    key_info: &crypto::KeyInfo,
    key_id: KeyId,
    config_file: Option<Vec<u8>>,
    config_missing: bool,
    backend: &dyn Backend,
    warnings: &mut Vec<String>,
) -> Result<(Vec<u8>, RepoConfig)> {
    let from_file = config_file
        .as_ref()
        .map(|b| (b.clone(), decode_config(keys, b)));
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
            let c = decode_config(keys, &copy)?;
            if config_missing && !has_data(backend)? {
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
    Ok((config_bytes, config))
}

impl Repository {
    /// Writes the config back from the copy in use when the stored one is missing or damaged.
    /// Returns whether anything was written.
    pub fn repair_config(&self) -> Result<bool> {
        self.require_full_key("write the config")?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{LocalBackend, MemBackend};
    use crate::testutil::mem_repo;

    const PW: &[u8] = b"open sesame";

    fn pw() -> Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(PW.to_vec()))
    }

    fn never_asked() -> Result<Zeroizing<Vec<u8>>> {
        panic!("the password was asked for")
    }

    #[test]
    fn a_location_without_config_or_key_files_is_missing_and_no_password_is_asked_for() {
        let tmp = tempfile::tempdir().expect("test");
        let empty_dir = tmp.path().join("empty");
        std::fs::create_dir(&empty_dir).expect("test");
        let with_data = MemBackend::new();
        with_data.create().expect("test");
        with_data
            .put(FileKind::Snapshot, &"ab".repeat(32), b"a snapshot")
            .expect("test");
        let backends: [Arc<dyn Backend>; 4] = [
            Arc::new(MemBackend::new()),
            Arc::new(LocalBackend::new(tmp.path().join("absent"))),
            Arc::new(LocalBackend::new(empty_dir)),
            Arc::new(with_data),
        ];
        for b in backends {
            let location = b.location();
            match Repository::open_existing(b, &OpenOptions::default(), never_asked) {
                Err(Error::RepoMissing(l)) => assert_eq!(l, location),
                Err(e) => panic!("{location}: {e}"),
                Ok(_) => panic!("{location}: opened"),
            }
        }
    }

    #[test]
    fn a_config_or_any_one_key_file_or_copy_is_a_repository_that_asks_for_the_password() {
        let (backend, repo) = mem_repo(PW);
        let key = repo.key_id().to_hex();
        for (kind, name) in [
            (FileKind::Config, CONFIG_NAME),
            (FileKind::Key, key.as_str()),
            (FileKind::KeyCopy, key.as_str()),
        ] {
            let bytes = backend.get(kind, name).expect("test");
            let only = Arc::new(MemBackend::new());
            only.create().expect("test");
            only.put(kind, name, &bytes).expect("test");
            let mut asked = false;
            let opened = Repository::open_existing(only, &OpenOptions::default(), || {
                asked = true;
                pw()
            });
            assert!(asked, "{kind:?}");
            // A config alone opens with nothing; a key file (or its copy) carries the config.
            match (kind, opened) {
                (FileKind::Config, Err(Error::Corrupt { .. })) => {}
                (FileKind::Key | FileKind::KeyCopy, Ok(r)) => assert_eq!(r.id(), repo.id()),
                (k, Err(e)) => panic!("{k:?}: {e}"),
                (k, Ok(_)) => panic!("{k:?}: opened"),
            }
        }
    }

    #[test]
    fn the_password_sources_error_is_returned_as_it_is() {
        let (backend, _) = mem_repo(PW);
        let r = Repository::open_existing(backend, &OpenOptions::default(), || {
            Err::<Zeroizing<Vec<u8>>, _>(Error::InvalidInput("no terminal".into()))
        });
        assert!(matches!(r, Err(Error::InvalidInput(m)) if m == "no terminal"));
    }

    /// A backend whose listings fail as a directory without permission does.
    struct Unlistable;

    impl Backend for Unlistable {
        fn location(&self) -> String {
            "unlistable".into()
        }
        fn create(&self) -> io::Result<()> {
            Ok(())
        }
        fn put(&self, _: FileKind, _: &str, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
        fn get_at_most(&self, _: FileKind, _: &str, _: u64) -> io::Result<Vec<u8>> {
            Err(io::ErrorKind::NotFound.into())
        }
        fn get_range(&self, _: FileKind, _: &str, _: u64, _: usize) -> io::Result<Vec<u8>> {
            Err(io::ErrorKind::NotFound.into())
        }
        fn list(&self, _: FileKind) -> io::Result<Vec<(String, u64)>> {
            Err(io::ErrorKind::PermissionDenied.into())
        }
        fn delete(&self, _: FileKind, _: &str) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_listing_that_fails_is_a_backend_error_naming_what_was_listed() {
        match Repository::open_existing(Arc::new(Unlistable), &OpenOptions::default(), never_asked)
        {
            Err(Error::Backend { path, source }) => {
                assert_eq!(path, "config");
                assert_eq!(source.kind(), io::ErrorKind::PermissionDenied);
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened"),
        }
    }

    #[test]
    fn the_cache_is_attached_in_a_directory_named_by_the_repository_id() {
        let (backend, repo) = mem_repo(PW);
        let id = repo
            .write_index(&crate::index::IndexFile::default())
            .expect("test");
        let tmp = tempfile::tempdir().expect("test");
        let cache = Arc::new(CachedBackend::new(backend));
        let opts = OpenOptions {
            cache: Some((cache.clone(), tmp.path().to_path_buf())),
        };
        let opened = Repository::open_existing(cache, &opts, pw).expect("test");
        let dir = opened.cache_dir_in(tmp.path());
        assert_eq!(dir, tmp.path().join(repo.id().to_hex()));
        opened.read_index_file(&id.to_hex()).expect("test");
        assert!(dir.join("index").join(id.to_hex()).is_file());
    }
}

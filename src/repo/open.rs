//! Opening a repository with a password: the config (or the copy a key file carries), the key
//! files (or their copies), and what an interrupted `init` or a damaged file leaves.

use std::io;
use std::sync::{Arc, Mutex};

use super::{backend_err, has_data, Repository};
use crate::backend::{Backend, FileKind, CONFIG_NAME};
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

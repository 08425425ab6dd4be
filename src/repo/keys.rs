//! Key files (repo-format.md §2.1): each stored with a copy; adding, listing and removing them,
//! and changing the password in use (the new key is durable before the old one goes).

use super::{backend_err, Repository};
use crate::backend::{Backend, FileKind};
use crate::crypto::{self, KdfParams, KeyInfo};
use crate::error::{Error, Result};
use crate::id::{content_hash, KeyId};

/// Stores a key file and its copy (repo-format.md §2.1); returns its id.
pub(super) fn put_key(backend: &dyn Backend, file: &[u8]) -> Result<KeyId> {
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

impl Repository {
    /// Adds a key file for `password` opening the same master keys.
    pub fn add_key(
        &self,
        password: &[u8],
        kdf: KdfParams,
        host: &str,
        user: &str,
        now_ns: i64,
    ) -> Result<KeyId> {
        self.require_full_key("add keys")?;
        self.refuse_a_password_in_use(password)?;
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

    /// Adds a put-only key file for `password` (repo-format.md §2.2): it makes backups and
    /// opens nothing stored. The config is raised to format 2 first (once), so that a cairn
    /// reading only format 1 refuses the repository instead of misjudging what the new key
    /// writes.
    pub fn add_put_only_key(
        &mut self,
        password: &[u8],
        kdf: KdfParams,
        host: &str,
        user: &str,
        now_ns: i64,
    ) -> Result<KeyId> {
        self.require_full_key("add keys")?;
        self.refuse_a_password_in_use(password)?;
        self.raise_to_put_only_format()?;
        let config = crypto::PutOnlyConfig {
            repo_id: self.config.id.0,
            chunker: self.config.chunker,
            compression: self.config.compression.clone(),
            pack_size: self.config.pack_size,
        };
        let file =
            crypto::make_put_only_key_file(&self.keys, &config, password, kdf, host, user, now_ns)?;
        put_key(self.backend.as_ref(), &file)
    }
}

impl Repository {
    /// Refuses a new key's password that already opens a key file: `open` takes the first key
    /// file a password opens, so a put-only password shared with a full key could open the
    /// full key (or a full password the put-only one). Costs one Argon2id run per key file.
    fn refuse_a_password_in_use(&self, password: &[u8]) -> Result<()> {
        for (name, _) in self.list(FileKind::Key)? {
            let Some(id) = KeyId::from_hex(&name) else {
                continue;
            };
            // A key file that cannot be read or parsed opens nothing.
            let Ok(bytes) = self.get_verified(FileKind::Key, &name) else {
                continue;
            };
            if crypto::open_key_file(&bytes, password).is_ok() {
                return Err(Error::InvalidInput(format!(
                    "the new password already opens key {}: give every key its own password \
                     (cairn opens the first key file a password opens, so a put-only key and a \
                     full key sharing one would not stay apart)",
                    id.short()
                )));
            }
        }
        Ok(())
    }
}

/// A key file as `key list` shows it.
#[derive(Clone, Debug)]
pub struct KeyEntry {
    /// The key file's id, its file name under `keys/` (repo-format.md §3.2).
    pub id: KeyId,
    /// Who made it and when: only for the key file in use ([`Repository::key_id`]), since
    /// another key file's sealed payload opens only with that key's own password.
    pub info: Option<KeyInfo>,
    /// The key file's Argon2id parameters, read from its clear part; None when it is unreadable.
    pub params: Option<KdfParams>,
    /// Why the key file could not be read or parsed (damaged, not cairn's); None when it could.
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
        self.require_full_key("remove keys")?;
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
        self.require_full_key("change passwords")?;
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
            put_only: None,
        };
        Ok(new)
    }
}

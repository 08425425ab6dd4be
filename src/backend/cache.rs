//! A local cache in front of a remote repository (repo-format.md §10.5; remote stores §10.4).
//!
//! Keeps index files, snapshots and the packs that hold trees, so `snapshots`, `ls`, `diff` and
//! incremental backups do not download the repository again. Only sealed repository files are
//! kept, exactly as stored, under `<cache dir>/<repository id>/{index,snapshots,data}/<name>`;
//! every one is checked against its content-hash name before use, and one that does not match
//! is dropped and fetched again. Deleting the directory at any time only costs downloads.
//! Listing a kind removes cached files the repository no longer has.
//!
//! The cache is private like the repository's own files: directories 0700, files 0600
//! ([`create_private_dir`], [`write_private_file`]). Cached files are read with the same bounds
//! as the repository's ([`FileKind::max_len`]), without following links or waiting on FIFOs.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::{read_at_most, temp_name, Backend, FileKind, OsLock};
use crate::id::content_hash;

/// Creates a directory and any missing parents, owner-only (0700): local state about a
/// repository (its cache, check's verification record) is nobody else's business.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes `bytes` to `path` owner-only (0600), through a temporary name in the same directory
/// (created 0700 if missing) and a rename, so a reader never sees a partial file.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_private(path, bytes, false)
}

/// Like [`write_private_file`], and durable: the file is fsynced before the rename and its
/// directory after it (a directory that cannot be fsynced, as on FAT or some FUSE mounts,
/// still renamed atomically). For records that must survive a power cut, such as plan state.
pub fn write_private_file_durable(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_private(path, bytes, true)
}

fn write_private(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    create_private_dir(dir)?;
    let tmp = dir.join(temp_name());
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            if durable {
                f.sync_all()?;
            }
            Ok(())
        })
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
        return written;
    }
    if durable {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Opens a cached file for reading: a regular file only (no link followed, no FIFO waited
/// on), with its size.
fn open_cached(path: &Path) -> io::Result<(fs::File, u64)> {
    let (f, meta) = crate::safe_fs::open_regular(path)?;
    Ok((f, meta.len()))
}

/// A [`Backend`] that passes every operation to `inner` and keeps copies of index files,
/// snapshots and tree packs in a local directory, serving them from there after checking each
/// against its name. Until [`CachedBackend::set_dir`] is called it caches nothing.
pub struct CachedBackend {
    inner: Arc<dyn Backend>,
    /// Set once the repository id is known (after its config is read).
    dir: OnceLock<PathBuf>,
    /// Cached tree packs checked against their names by this process.
    verified: Mutex<HashSet<String>>,
}

fn cached_kind(kind: FileKind) -> bool {
    matches!(kind, FileKind::Index | FileKind::Snapshot)
}

fn name_matches(name: &str, bytes: &[u8]) -> bool {
    hex::encode(content_hash(bytes)) == name
}

impl CachedBackend {
    /// Wraps `inner` (the remote repository); caching starts once the repository id, and so
    /// the cache directory, is known ([`CachedBackend::set_dir`]).
    pub fn new(inner: Arc<dyn Backend>) -> CachedBackend {
        CachedBackend {
            inner,
            dir: OnceLock::new(),
            verified: Mutex::new(HashSet::new()),
        }
    }

    /// Starts caching into `dir` (the repository's own cache directory).
    pub fn set_dir(&self, dir: PathBuf) {
        let _ = self.dir.set(dir);
    }

    fn file(&self, kind: FileKind, name: &str) -> Option<PathBuf> {
        let sub = match kind {
            FileKind::Index => "index",
            FileKind::Snapshot => "snapshots",
            FileKind::Pack => "data",
            _ => return None,
        };
        Some(self.dir.get()?.join(sub).join(name))
    }

    /// Stores a copy; failures only mean a later download.
    fn keep(&self, path: &Path, data: &[u8]) {
        let _ = write_private_file(path, data);
    }

    /// Removes cached files of one kind the repository no longer lists.
    fn forget_unlisted(&self, kind: FileKind, listed: &[(String, u64)]) {
        let Some(dir) = self
            .file(kind, "x")
            .and_then(|p| p.parent().map(Path::to_path_buf))
        else {
            return;
        };
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        let names: HashSet<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
        for e in entries.flatten() {
            let n = e.file_name();
            if !names.contains(n.to_string_lossy().as_ref()) {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    fn mark_verified(&self, name: &str) {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string());
    }

    fn read_cached_range(
        &self,
        path: &Path,
        name: &str,
        offset: u64,
        len: usize,
    ) -> Option<Vec<u8>> {
        let (mut f, size) = open_cached(path).ok()?;
        let known = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name);
        if !known {
            let limit = FileKind::Pack.max_len();
            let Ok(all) = read_at_most(&mut f, size, limit, FileKind::Pack, name) else {
                let _ = fs::remove_file(path);
                return None;
            };
            if !name_matches(name, &all) {
                let _ = fs::remove_file(path);
                return None;
            }
            self.mark_verified(name);
        }
        if offset.saturating_add(len as u64) > size {
            return None;
        }
        f.seek(SeekFrom::Start(offset)).ok()?;
        let mut buf = vec![0u8; len];
        io::Read::read_exact(&mut f, &mut buf).ok()?;
        Some(buf)
    }
}

impl Backend for CachedBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> io::Result<()> {
        self.inner.create()
    }

    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()> {
        self.inner.put(kind, name, data)?;
        if cached_kind(kind) {
            if let Some(p) = self.file(kind, name) {
                self.keep(&p, data);
            }
        }
        Ok(())
    }

    fn put_owned(&self, kind: FileKind, name: &str, data: Vec<u8>) -> io::Result<Option<Vec<u8>>> {
        if cached_kind(kind) {
            return self.put(kind, name, &data).map(|()| Some(data));
        }
        self.inner.put_owned(kind, name, data)
    }

    fn get_at_most(&self, kind: FileKind, name: &str, limit: u64) -> io::Result<Vec<u8>> {
        let Some(path) = self.file(kind, name).filter(|_| cached_kind(kind)) else {
            return self.inner.get_at_most(kind, name, limit);
        };
        let cached =
            open_cached(&path).and_then(|(f, size)| read_at_most(f, size, limit, kind, name));
        match cached {
            Ok(b) if name_matches(name, &b) => return Ok(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Damaged, too large, or not a file: dropped and fetched again.
            _ => {
                let _ = fs::remove_file(&path);
            }
        }
        let b = self.inner.get_at_most(kind, name, limit)?;
        if name_matches(name, &b) {
            self.keep(&path, &b);
        }
        Ok(b)
    }

    fn get_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        self.inner.get_range(kind, name, offset, len)
    }

    fn list(&self, kind: FileKind) -> io::Result<Vec<(String, u64)>> {
        let listed = self.inner.list(kind)?;
        if cached_kind(kind) || kind == FileKind::Pack {
            self.forget_unlisted(kind, &listed);
        }
        Ok(listed)
    }

    fn delete(&self, kind: FileKind, name: &str) -> io::Result<()> {
        self.inner.delete(kind, name)?;
        if let Some(p) = self.file(kind, name) {
            let _ = fs::remove_file(p);
        }
        Ok(())
    }

    fn os_lock(&self, exclusive: bool) -> io::Result<Option<OsLock>> {
        self.inner.os_lock(exclusive)
    }

    fn remove_temporaries(&self) -> io::Result<u64> {
        self.inner.remove_temporaries()
    }

    fn connections(&self) -> usize {
        self.inner.connections()
    }

    fn is_remote(&self) -> bool {
        self.inner.is_remote()
    }

    fn put_tree_pack(&self, name: &str, data: &[u8]) -> io::Result<()> {
        self.inner.put_tree_pack(name, data)?;
        if let Some(p) = self.file(FileKind::Pack, name) {
            self.keep(&p, data);
        }
        Ok(())
    }

    fn get_tree_range(&self, name: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let Some(path) = self.file(FileKind::Pack, name) else {
            return self.inner.get_tree_range(name, offset, len);
        };
        if let Some(b) = self.read_cached_range(&path, name, offset, len) {
            return Ok(b);
        }
        // Tree packs are small next to data packs: fetch the whole pack once, keep it.
        match self.inner.get(FileKind::Pack, name) {
            Ok(all) if name_matches(name, &all) => {
                self.keep(&path, &all);
                self.mark_verified(name);
                let start = offset as usize;
                match all.get(start..start + len) {
                    Some(b) => Ok(b.to_vec()),
                    None => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("pack {name} is {} bytes, shorter than asked", all.len()),
                    )),
                }
            }
            // A damaged or unreadable pack: read just the range, so the error is the blob's.
            _ => self.inner.get_tree_range(name, offset, len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemBackend;

    fn hashed(data: &[u8]) -> String {
        hex::encode(content_hash(data))
    }

    #[test]
    fn serves_from_the_cache_and_refetches_damaged_copies() {
        let mem = Arc::new(MemBackend::new());
        let dir = tempfile::tempdir().expect("test");
        let cache = CachedBackend::new(mem.clone());
        cache.set_dir(dir.path().to_path_buf());
        let data = b"sealed index bytes".to_vec();
        let name = hashed(&data);
        cache.put(FileKind::Index, &name, &data).expect("test");
        let file = dir.path().join("index").join(&name);
        assert_eq!(fs::read(&file).expect("test"), data);
        // Served from the cache even when the remote copy is gone.
        mem.delete(FileKind::Index, &name).expect("test");
        assert_eq!(cache.get(FileKind::Index, &name).expect("test"), data);
        // A damaged cached copy is dropped and fetched again.
        mem.put(FileKind::Index, &name, &data).expect("test");
        fs::write(&file, b"damaged!").expect("test");
        assert_eq!(cache.get(FileKind::Index, &name).expect("test"), data);
        assert_eq!(fs::read(&file).expect("test"), data);
        // Listing forgets what the repository no longer has.
        mem.delete(FileKind::Index, &name).expect("test");
        assert!(cache.list(FileKind::Index).expect("test").is_empty());
        assert!(!file.exists());
    }

    #[test]
    fn tree_packs_are_fetched_once_and_verified() {
        let mem = Arc::new(MemBackend::new());
        let dir = tempfile::tempdir().expect("test");
        let cache = CachedBackend::new(mem.clone());
        cache.set_dir(dir.path().to_path_buf());
        let pack: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let name = hashed(&pack);
        mem.put(FileKind::Pack, &name, &pack).expect("test");
        assert_eq!(
            cache.get_tree_range(&name, 100, 50).expect("test"),
            &pack[100..150]
        );
        mem.delete(FileKind::Pack, &name).expect("test");
        assert_eq!(
            cache.get_tree_range(&name, 9_000, 1_000).expect("test"),
            &pack[9_000..]
        );
        // A tampered cached pack is not trusted by a new process.
        let file = dir.path().join("data").join(&name);
        let mut bad = pack.clone();
        bad[5] ^= 1;
        fs::write(&file, &bad).expect("test");
        let fresh = CachedBackend::new(mem.clone());
        fresh.set_dir(dir.path().to_path_buf());
        assert!(fresh.get_tree_range(&name, 0, 10).is_err());
        assert!(!file.exists());
    }

    #[test]
    fn the_cache_is_owner_only_and_bounded() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).expect("test").permissions().mode() & 0o7777;
        let mem = Arc::new(MemBackend::new());
        let base = tempfile::tempdir().expect("test");
        let dir = base.path().join("cairn").join("repo-id");
        let cache = CachedBackend::new(mem.clone());
        cache.set_dir(dir.clone());
        let data = b"sealed snapshot bytes".to_vec();
        let name = hashed(&data);
        cache.put(FileKind::Snapshot, &name, &data).expect("test");
        let tree = b"a tree pack".to_vec();
        cache.put_tree_pack(&hashed(&tree), &tree).expect("test");
        for d in [
            base.path().join("cairn"),
            dir.clone(),
            dir.join("snapshots"),
            dir.join("data"),
        ] {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        }
        for f in [
            dir.join("snapshots").join(&name),
            dir.join("data").join(hashed(&tree)),
        ] {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
        // A cached file grown past its kind's bound is dropped, not read; the store's copy
        // serves the read.
        let file = dir.join("snapshots").join(&name);
        fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .expect("test")
            .set_len(FileKind::Snapshot.max_len() + 1)
            .expect("test");
        assert_eq!(cache.get(FileKind::Snapshot, &name).expect("test"), data);
        assert_eq!(fs::read(&file).expect("test"), data);
        // A FIFO in its place is not waited on.
        fs::remove_file(&file).expect("test");
        let c = std::ffi::CString::new(file.as_os_str().as_encoded_bytes()).expect("test");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(cache.get(FileKind::Snapshot, &name).expect("test"), data);
    }

    #[test]
    fn without_a_directory_everything_passes_through() {
        let mem = Arc::new(MemBackend::new());
        let cache = CachedBackend::new(mem.clone());
        let data = b"snapshot".to_vec();
        let name = hashed(&data);
        cache.put(FileKind::Snapshot, &name, &data).expect("test");
        assert_eq!(mem.get(FileKind::Snapshot, &name).expect("test"), data);
        assert_eq!(cache.get(FileKind::Snapshot, &name).expect("test"), data);
    }
}

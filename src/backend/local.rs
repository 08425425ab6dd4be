//! A repository in a local directory (a USB disk, a NAS mount).
//!
//! Write protocol (repo-format.md §10.1): temp name in the final directory → write → fsync →
//! rename to the final name → fsync the directory. Never renames over an existing file.
//! Filesystems that refuse directory fsync (exFAT, FAT32, some FUSE mounts) are tolerated.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Backend, FileKind, OsLock};
use crate::id::is_id_name;

pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, kind: FileKind, name: &str) -> PathBuf {
        self.root.join(kind.path(name))
    }

    /// Where an existing object is: its own place, or — for a pack a file copier or a person
    /// put in the wrong `data/` subdirectory — wherever `list` found it.
    fn existing(&self, kind: FileKind, name: &str) -> PathBuf {
        let own = self.full(kind, name);
        if kind != FileKind::Pack || own.exists() {
            return own;
        }
        let Ok(subdirs) = fs::read_dir(self.root.join("data")) else {
            return own;
        };
        subdirs
            .filter_map(Result::ok)
            .map(|d| d.path().join(name))
            .find(|p| p.is_file())
            .unwrap_or(own)
    }
}

/// fsync a directory, tolerating filesystems that cannot (EINVAL, ENOTSUP, ENOSYS, EBADF).
fn sync_dir(dir: &Path) -> io::Result<()> {
    let f = match File::open(dir) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(()),
        Err(e) => return Err(e),
    };
    match f.sync_all() {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINVAL | libc::ENOTSUP | libc::ENOSYS | libc::EBADF)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn create_dir_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_dir_durable(parent_of(dir))?;
            match fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    }
    sync_dir(parent_of(dir))
}

/// The directory holding `path` (`.` for a bare relative name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn temp_name() -> String {
    let mut r = [0u8; 8];
    // A collision only makes create_new fail and the put retry with another name.
    let _ = getrandom::getrandom(&mut r);
    format!(".tmp-{}", hex::encode(r))
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> io::Result<()> {
        match fs::read_dir(&self.root) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "directory is not empty",
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => create_dir_durable(&self.root)?,
            Err(e) => return Err(e),
        }
        for kind in [
            FileKind::Key,
            FileKind::Pack,
            FileKind::Index,
            FileKind::Snapshot,
            FileKind::Lock,
        ] {
            create_dir_durable(&self.root.join(kind.dir()))?;
        }
        sync_dir(&self.root)
    }

    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()> {
        let path = self.full(kind, name);
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone());
        if let Ok(meta) = fs::metadata(&path) {
            if meta.len() == data.len() as u64 {
                return Ok(());
            }
            // A damaged leftover under a content-hash name: it can only be wrong, replace it.
            fs::remove_file(&path)?;
        }
        create_dir_durable(&dir)?;
        let mut attempt = 0;
        let (tmp, mut f) = loop {
            let tmp = dir.join(temp_name());
            match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(f) => break (tmp, f),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 8 => attempt += 1,
                Err(e) => return Err(e),
            }
        };
        let written = f.write_all(data).and_then(|_| f.sync_all());
        drop(f);
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        sync_dir(&dir)
    }

    fn get(&self, kind: FileKind, name: &str) -> io::Result<Vec<u8>> {
        fs::read(self.existing(kind, name))
    }

    fn get_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        let mut f = File::open(self.existing(kind, name))?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0u8; len];
        f.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn list(&self, kind: FileKind) -> io::Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        // Key-file copies are `<id>.copy`; every other kind is a bare `<id>`.
        let suffix = if kind == FileKind::KeyCopy {
            ".copy"
        } else {
            ""
        };
        let list_dir = |dir: &Path, out: &mut Vec<(String, u64)>| -> io::Result<()> {
            let entries = match fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name();
                let Some(name) = name.to_str().and_then(|n| n.strip_suffix(suffix)) else {
                    continue;
                };
                if is_id_name(name) {
                    let meta = entry.metadata()?;
                    if meta.is_file() {
                        out.push((name.to_string(), meta.len()));
                    }
                }
            }
            Ok(())
        };
        match kind {
            FileKind::Config => {
                if let Ok(meta) = fs::metadata(self.root.join("config")) {
                    out.push(("config".to_string(), meta.len()));
                }
            }
            FileKind::Pack => {
                let data = self.root.join("data");
                let subdirs = match fs::read_dir(&data) {
                    Ok(e) => e,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(e),
                };
                for sub in subdirs {
                    let sub = sub?;
                    if sub.file_type()?.is_dir() {
                        list_dir(&sub.path(), &mut out)?;
                    }
                }
            }
            k => list_dir(&self.root.join(k.dir()), &mut out)?,
        }
        out.sort();
        Ok(out)
    }

    fn os_lock(&self, exclusive: bool) -> io::Result<Option<OsLock>> {
        use std::os::fd::AsRawFd;
        let dir = File::open(self.root.join(FileKind::Lock.dir()))?;
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        } | libc::LOCK_NB;
        // SAFETY: the descriptor is open for the duration of the call.
        if unsafe { libc::flock(dir.as_raw_fd(), op) } == 0 {
            return Ok(Some(OsLock::new(dir)));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => Err(io::Error::new(io::ErrorKind::WouldBlock, e)),
            // Filesystems without flock (some FUSE mounts): lock files alone guard the repository.
            Some(libc::ENOLCK | libc::EINVAL | libc::ENOTSUP | libc::ENOSYS) => Ok(None),
            _ => Err(e),
        }
    }

    fn remove_temporaries(&self) -> io::Result<u64> {
        fn sweep(dir: &Path, depth: u32, freed: &mut u64) -> io::Result<()> {
            let entries = match fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let t = entry.file_type()?;
                if t.is_dir() && depth > 0 {
                    sweep(&entry.path(), depth - 1, freed)?;
                } else if t.is_file() && entry.file_name().to_string_lossy().starts_with(".tmp-") {
                    *freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
                    fs::remove_file(entry.path())?;
                }
            }
            Ok(())
        }
        let mut freed = 0;
        // The top level, keys/, index/, snapshots/, locks/, drills/ and data/XX/.
        sweep(&self.root, 2, &mut freed)?;
        Ok(freed)
    }

    fn delete(&self, kind: FileKind, name: &str) -> io::Result<()> {
        let path = self.existing(kind, name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        sync_dir(parent_of(&path))
    }
}

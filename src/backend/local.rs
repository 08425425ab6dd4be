//! A repository in a local directory (a USB disk, a NAS mount).
//!
//! Write protocol (repo-format.md §10.1): temp name in the final directory → write → fsync →
//! rename to the final name → fsync the directory. Never renames over an existing file.
//! Filesystems that refuse directory fsync (exFAT, FAT32, some FUSE mounts) are tolerated.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{temp_name, Backend, FileKind, OsLock};
use crate::aligned::{AlignedBuf, ALIGN};
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

    /// Opens an object for reading: where it belongs, or (a pack) wherever it is.
    fn open_existing(&self, kind: FileKind, name: &str) -> io::Result<File> {
        match File::open(self.full(kind, name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && kind == FileKind::Pack => {
                File::open(self.existing(kind, name))
            }
            other => other,
        }
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

/// Objects at least this large (packs) bypass the page cache (`O_DIRECT`): they are written
/// once and not read back soon, the kernel's copy into its cache costs more CPU than a copy
/// into an aligned buffer, and the user's cached files are not evicted by backup data.
const DIRECT_MIN: usize = 1 << 20;
/// The aligned staging buffer of each writing thread.
const STAGE_BYTES: usize = 1 << 20;

thread_local! {
    static STAGE: std::cell::RefCell<Option<AlignedBuf>> = const { std::cell::RefCell::new(None) };
}

/// Writes `data` at the start of the new file `f`: large objects through `O_DIRECT` where the
/// file system supports it, the rest (and everything elsewhere) through the page cache.
fn write_object(f: &mut File, data: &[u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let aligned = data.len() / ALIGN * ALIGN;
    if data.len() < DIRECT_MIN {
        return f.write_all(data);
    }
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a file descriptor this function borrows; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // File systems without direct I/O (tmpfs, many FUSE mounts) refuse the flag: buffered.
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_DIRECT) } < 0 {
        return f.write_all(data);
    }
    let mut done = 0;
    let direct = STAGE.with(|stage| -> io::Result<()> {
        let mut stage = stage.borrow_mut();
        let buf = stage
            .get_or_insert_with(|| AlignedBuf::new(STAGE_BYTES))
            .as_mut_slice();
        while done < aligned {
            let n = buf.len().min(aligned - done);
            buf[..n].copy_from_slice(&data[done..done + n]);
            f.write_all(&buf[..n])?;
            done += n;
        }
        Ok(())
    });
    // SAFETY: as above; restores the flags the file was opened with.
    let restored = unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
    match direct {
        Ok(()) => {}
        // Accepted the flag but not the write (alignment rules of an odd device): finish
        // through the page cache from where direct I/O stopped.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && restored == 0 => {
            f.seek(SeekFrom::Start(done as u64))?;
        }
        Err(e) => return Err(e),
    }
    if restored < 0 {
        return Err(io::Error::last_os_error());
    }
    f.write_all(&data[done..])
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
        for kind in FileKind::LAYOUT_DIRS {
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
        let written = write_object(&mut f, data).and_then(|_| f.sync_all());
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
        let mut f = self.open_existing(kind, name)?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn get_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.get_range_into(kind, name, offset, len, &mut buf)?;
        Ok(buf)
    }

    fn get_range_into<'b>(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        len: usize,
        buf: &'b mut Vec<u8>,
    ) -> io::Result<&'b [u8]> {
        use std::os::unix::fs::FileExt;
        let f = self.open_existing(kind, name)?;
        // Grown, never shrunk: a reused buffer is not zeroed again for every read.
        if buf.len() < len {
            buf.resize(len, 0);
        }
        f.read_exact_at(&mut buf[..len], offset)?;
        Ok(&buf[..len])
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

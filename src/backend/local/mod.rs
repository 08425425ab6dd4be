//! A repository in a local directory (a USB disk, a NAS mount).
//!
//! Write protocol (repo-format.md §10.1): temp name in the final directory → write → fsync →
//! rename to the final name → fsync the directory. Never renames over an existing file.
//! Filesystems that refuse directory fsync (exFAT, FAT32, some FUSE mounts) are tolerated.
//!
//! **No links are followed inside the repository** (repo-format.md §1.2). The repository
//! directory is opened once — its path is the user's choice and may itself be a link — and
//! every layout directory below it (`keys/`, `data/`, `data/XX/`, `index/`, `snapshots/`,
//! `locks/`, `drills/`) is opened relative to that descriptor with `O_DIRECTORY | O_NOFOLLOW`.
//! Every file is then opened, created, renamed, listed and unlinked relative to its directory's
//! descriptor, files with `O_NOFOLLOW`. So this holds by construction, not by a check before
//! use: a link, or anything but a directory, where a layout directory belongs is a
//! [`LayoutError`] naming it; a link or other non-regular file where an object belongs is not
//! an object — it is never listed, read, replaced or deleted.
//!
//! **Permissions**: files are created 0600 and directories 0700, so another local user cannot
//! copy the key files for an offline password search. A repository shared between users on
//! purpose keeps sharing: when its `config` is group-readable, new files get group read (0640)
//! and new directories group rwx (0770), as restic does. File systems that ignore modes (FAT,
//! exFAT) simply ignore them.
//!
//! - `dirfd.rs`: the repository and layout directories opened once, without following links,
//!   and everything opened relative to them;
//! - `durable.rs`: file and directory modes, the temp → fsync → rename → fsync write, and
//!   direct I/O for packs.

mod dirfd;
mod durable;

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::limit::PacedReader;
use super::{read_at_most, Backend, FileKind, Limits, OsLock};
use dirfd::{entries, is_fanout_name, is_regular, kind_name, FLAT_DIRS};
use durable::{sync_dir, Modes};

/// Something other than a directory (typically a symbolic link) where the repository layout
/// has a directory. Carried inside an [`io::Error`] of kind [`io::ErrorKind::NotADirectory`].
#[derive(Debug)]
pub struct LayoutError {
    /// The repository directory.
    pub root: PathBuf,
    /// The layout directory, relative to the repository (`data/ab/`).
    pub dir: String,
    /// What is there instead (`"a symbolic link"`).
    pub found: &'static str,
}

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} in the repository {} is {}, not a directory: cairn never follows links inside \
             a repository (it could read or delete another directory's files); put the real \
             directory there",
            self.dir,
            self.root.display(),
            self.found
        )
    }
}

impl std::error::Error for LayoutError {}

/// A link or other non-regular file under an object's name. Carried inside an [`io::Error`] of
/// kind [`io::ErrorKind::InvalidData`].
#[derive(Debug)]
pub struct NotAnObject {
    /// Repository-relative path (`keys/<id>`).
    pub path: String,
    /// What is there instead (`"a symbolic link"`, `"a directory"`).
    pub found: &'static str,
}

impl std::fmt::Display for NotAnObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is {}, not a regular file: it is not a repository object and cairn neither \
             reads nor replaces it",
            self.path, self.found
        )
    }
}

impl std::error::Error for NotAnObject {}

/// A repository in a local directory (see the module documentation).
pub struct LocalBackend {
    root: PathBuf,
    /// The repository directory, opened once (following a link: the path is the user's).
    root_fd: Mutex<Option<Arc<OwnedFd>>>,
    /// Decided on first use from the mode of `config`.
    modes: OnceLock<Modes>,
    /// Layout directories already opened (without following links), by their path in the
    /// repository: a restore or check reads thousands of ranges of packs, and opening
    /// `data/` and `data/XX/` again for each cost two system calls more per read. A held
    /// descriptor keeps naming the directory it was opened on, whatever is put at its name.
    dirs: Mutex<std::collections::HashMap<String, Arc<OwnedFd>>>,
    /// Bandwidth limits: writes and reads are paced piece by piece (a USB disk shared with
    /// other work).
    limits: Limits,
}

/// The file name of an object inside its directory.
fn file_name(kind: FileKind, name: &str) -> String {
    match kind {
        FileKind::Config => super::CONFIG_NAME.to_string(),
        FileKind::KeyCopy => format!("{name}.copy"),
        _ => name.to_string(),
    }
}

/// Names are ids (or `config`): nothing that could leave its directory.
fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a repository object name"),
        ));
    }
    Ok(())
}

impl LocalBackend {
    /// The repository at `root`; nothing is opened until first use.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend {
            root: root.into(),
            root_fd: Mutex::new(None),
            modes: OnceLock::new(),
            dirs: Mutex::new(std::collections::HashMap::new()),
            limits: Limits::default(),
        }
    }

    /// Paces writes by `limits.upload` and reads by `limits.download`.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The repository directory as given.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory an object is written into (created if missing) and its file name there.
    fn dir_to_write(&self, kind: FileKind, name: &str) -> io::Result<(Arc<OwnedFd>, String)> {
        check_name(name)?;
        let dir = self.dir_for(kind, name, true)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} cannot be created", kind.path(name)),
            )
        })?;
        Ok((dir, file_name(kind, name)))
    }

    /// Stores a new object and never replaces a stored one (an append-only server's `put`):
    /// an object already stored under `name` with the same bytes is left as it is (a no-op,
    /// as [`Backend::put`]); one with other bytes — also one that appears under the name while
    /// this one is written — is an `AlreadyExists` error and stays as it is.
    pub fn put_new(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()> {
        let (dir, fname) = self.dir_to_write(kind, name)?;
        let stored = |st: rfs::Stat| {
            // Read back only when the length matches (a retried put): the stored bytes decide.
            let same = st.st_size.max(0) as u64 == data.len() as u64
                && self.get_at_most(kind, name, data.len() as u64)? == data;
            if same {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} is stored already ({} bytes), with other bytes than the {} given",
                        kind.path(name),
                        st.st_size,
                        data.len()
                    ),
                ))
            }
        };
        if let Some(st) = self.stat_object(&dir, &fname, kind, name)? {
            return stored(st);
        }
        match self.write_new(&dir, &fname, data, true) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                match self.stat_object(&dir, &fname, kind, name)? {
                    Some(st) => stored(st),
                    None => Err(e),
                }
            }
            r => r,
        }
    }
}

fn not_an_object(kind: FileKind, name: &str, t: FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        NotAnObject {
            path: kind.path(name),
            found: kind_name(t),
        },
    )
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> io::Result<()> {
        match self.root_if_any()? {
            Some(root) => {
                if !entries(root.as_fd())?.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "directory is not empty",
                    ));
                }
            }
            None => {
                // Parents are the user's directories (their usual modes); the repository is
                // private (see the module documentation).
                let parent = match self.root.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                std::fs::create_dir_all(&parent)?;
                match rfs::mkdir(&self.root, Mode::from_raw_mode(self.modes().dir)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                if let Ok(p) = rfs::open(
                    &parent,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    sync_dir(p.as_fd())?;
                }
            }
        }
        let root = self.root_fd()?;
        for kind in FileKind::LAYOUT_DIRS {
            self.create_dir_at(root.as_fd(), kind.dir(), &format!("{}/", kind.dir()))?;
        }
        sync_dir(root.as_fd())
    }

    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()> {
        let (dir, fname) = self.dir_to_write(kind, name)?;
        if let Some(st) = self.stat_object(&dir, &fname, kind, name)? {
            if st.st_size.max(0) as u64 == data.len() as u64 {
                return Ok(());
            }
            // A damaged leftover under a content-hash name: it can only be wrong, replace it.
            match rfs::unlinkat(&dir, fname.as_str(), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.write_new(&dir, &fname, data, false)
    }

    fn replace(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()> {
        let (dir, fname) = self.dir_to_write(kind, name)?;
        // A link or other non-regular file there is not an object: refused, not replaced.
        self.stat_object(&dir, &fname, kind, name)?;
        // The rename in `write_new` replaces the old file atomically.
        self.write_new(&dir, &fname, data, false)
    }

    fn get_at_most(&self, kind: FileKind, name: &str, limit: u64) -> io::Result<Vec<u8>> {
        let (f, size) = self.open_object(kind, name)?;
        match self.limits.download.as_deref() {
            Some(l) => read_at_most(PacedReader::new(f, l), size, limit, kind, name),
            None => read_at_most(f, size, limit, kind, name),
        }
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
        let (f, size) = self.open_object(kind, name)?;
        if offset.saturating_add(len as u64) > size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} is {size} bytes, shorter than {len} bytes at {offset}",
                    kind.path(name)
                ),
            ));
        }
        // Grown, never shrunk: a reused buffer is not zeroed again for every read.
        if buf.len() < len {
            buf.resize(len, 0);
        }
        match self.limits.download.as_deref() {
            Some(l) => {
                let mut at = offset;
                for piece in buf[..len].chunks_mut(l.piece()) {
                    l.take(piece.len());
                    f.read_exact_at(piece, at)?;
                    at += piece.len() as u64;
                }
            }
            None => f.read_exact_at(&mut buf[..len], offset)?,
        }
        Ok(&buf[..len])
    }

    fn list(&self, kind: FileKind) -> io::Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let Some(root) = self.root_if_any()? else {
            return Ok(out);
        };
        match kind {
            FileKind::Config => {
                if let Ok(st) = rfs::statat(&*root, super::CONFIG_NAME, AtFlags::SYMLINK_NOFOLLOW) {
                    if is_regular(&st) {
                        out.push((super::CONFIG_NAME.to_string(), st.st_size.max(0) as u64));
                    }
                }
            }
            k if k.fans_out() => {
                let Some(data) =
                    self.open_dir_at(root.as_fd(), k.dir(), &format!("{}/", k.dir()))?
                else {
                    return Ok(out);
                };
                for sub in entries(data.as_fd())? {
                    if !is_fanout_name(&sub) {
                        continue;
                    }
                    if let Some(dir) =
                        self.open_dir_at(data.as_fd(), &sub, &format!("{}/{sub}/", k.dir()))?
                    {
                        Self::list_files(&dir, "", &mut out)?;
                    }
                }
            }
            k => {
                // Key-file copies are `<id>.copy`; every other kind is a bare `<id>`.
                let suffix = if k == FileKind::KeyCopy { ".copy" } else { "" };
                if let Some(dir) =
                    self.open_dir_at(root.as_fd(), k.dir(), &format!("{}/", k.dir()))?
                {
                    Self::list_files(&dir, suffix, &mut out)?;
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn os_lock(&self, exclusive: bool) -> io::Result<Option<OsLock>> {
        // A descriptor of its own, not a cached one: the lock lives as long as it does.
        let dir = self
            .open_dir_for(FileKind::Lock, "", false)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "locks/ does not exist"))?;
        let op = if exclusive {
            rfs::FlockOperation::NonBlockingLockExclusive
        } else {
            rfs::FlockOperation::NonBlockingLockShared
        };
        match rfs::flock(&dir, op) {
            Ok(()) => Ok(Some(OsLock::new(dir))),
            Err(Errno::WOULDBLOCK) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                io::Error::from(Errno::WOULDBLOCK),
            )),
            // Filesystems without flock (some FUSE mounts), or a directory opened only as a
            // path: lock files alone guard the repository.
            Err(Errno::NOLCK | Errno::INVAL | Errno::OPNOTSUPP | Errno::NOSYS | Errno::BADF) => {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn remove_temporaries(&self) -> io::Result<u64> {
        let Some(root) = self.root_if_any()? else {
            return Ok(0);
        };
        // The top level, keys/, index/, snapshots/, locks/, drills/ and data/XX/.
        let mut freed = Self::sweep_temporaries(&root)?;
        for d in FLAT_DIRS {
            if let Some(dir) = self.open_dir_at(root.as_fd(), d, &format!("{d}/"))? {
                freed += Self::sweep_temporaries(&dir)?;
            }
        }
        for top in [FileKind::Pack, FileKind::Parity].map(FileKind::dir) {
            let Some(data) = self.open_dir_at(root.as_fd(), top, &format!("{top}/"))? else {
                continue;
            };
            freed += Self::sweep_temporaries(&data)?;
            for sub in entries(data.as_fd())? {
                if !is_fanout_name(&sub) {
                    continue;
                }
                if let Some(dir) = self.open_dir_at(data.as_fd(), &sub, &format!("{top}/{sub}/"))? {
                    freed += Self::sweep_temporaries(&dir)?;
                }
            }
        }
        Ok(freed)
    }

    fn delete(&self, kind: FileKind, name: &str) -> io::Result<()> {
        let Some(dir) = self.find(kind, name)? else {
            return Ok(());
        };
        let fname = file_name(kind, name);
        match self.stat_object(&dir, &fname, kind, name) {
            Ok(Some(_)) => {}
            // Absent, or not an object (a link is never deleted through its name's owner).
            Ok(None) | Err(_) => return Ok(()),
        }
        match rfs::unlinkat(&dir, fname.as_str(), AtFlags::empty()) {
            Ok(()) => {}
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        sync_dir(dir.as_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn hashed(data: &[u8]) -> String {
        hex::encode(crate::id::content_hash(data))
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p)
            .expect("test")
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn new_files_are_owner_only_and_group_readable_configs_share_with_the_group() {
        let tmp = tempfile::tempdir().expect("test");
        let root = tmp.path().join("repo");
        let b = LocalBackend::new(&root);
        b.create().expect("test");
        b.put(FileKind::Config, "config", b"config").expect("test");
        let pack = b"a pack".to_vec();
        b.put(FileKind::Pack, &hashed(&pack), &pack).expect("test");
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("keys")), 0o700);
        assert_eq!(mode(&root.join("config")), 0o600);
        let sub = root.join("data").join(&hashed(&pack)[..2]);
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&sub.join(hashed(&pack))), 0o600);

        // The owner shares the repository with a group: new files follow.
        std::fs::set_permissions(root.join("config"), std::fs::Permissions::from_mode(0o640))
            .expect("test");
        let shared = LocalBackend::new(&root);
        let idx = b"an index".to_vec();
        shared
            .put(FileKind::Index, &hashed(&idx), &idx)
            .expect("test");
        assert_eq!(mode(&root.join("index").join(hashed(&idx))), 0o640);
        // A set-group-id data/ (so new entries keep the shared group) stays so below.
        std::fs::set_permissions(root.join("data"), std::fs::Permissions::from_mode(0o2770))
            .expect("test");
        let pack2 = b"another pack, elsewhere".to_vec();
        let sub2 = root.join("data").join(&hashed(&pack2)[..2]);
        assert!(!sub2.exists());
        shared
            .put(FileKind::Pack, &hashed(&pack2), &pack2)
            .expect("test");
        assert_eq!(mode(&sub2), 0o2770);
    }

    #[test]
    fn a_symlinked_layout_directory_is_an_error_naming_it_and_nothing_behind_it_is_touched() {
        let tmp = tempfile::tempdir().expect("test");
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).expect("test");
        let victim = b"someone else's file".to_vec();
        std::fs::write(other.join(hashed(&victim)), &victim).expect("test");
        for dir in ["keys", "index", "snapshots", "locks", "data"] {
            let root = tmp.path().join(format!("repo-{dir}"));
            let b = LocalBackend::new(&root);
            b.create().expect("test");
            std::fs::remove_dir(root.join(dir)).expect("test");
            symlink(&other, root.join(dir)).expect("test");
            let kind = match dir {
                "keys" => FileKind::Key,
                "index" => FileKind::Index,
                "snapshots" => FileKind::Snapshot,
                "locks" => FileKind::Lock,
                _ => FileKind::Pack,
            };
            let name = hashed(&victim);
            for e in [
                b.list(kind).expect_err("list"),
                b.get(kind, &name).expect_err("get"),
                b.delete(kind, &name).expect_err("delete"),
                b.put(kind, &hashed(b"x"), b"x").expect_err("put"),
            ] {
                assert_eq!(e.kind(), io::ErrorKind::NotADirectory, "{dir}: {e}");
                assert!(e.to_string().contains(&format!("{dir}/")), "{e}");
                assert!(e.to_string().contains("symbolic link"), "{e}");
            }
            if kind == FileKind::Lock {
                assert!(b.os_lock(true).is_err());
            }
            assert!(b.remove_temporaries().is_err());
            assert_eq!(std::fs::read(other.join(&name)).expect("test"), victim);
            assert_eq!(std::fs::read_dir(&other).expect("test").count(), 1);
        }
    }

    #[test]
    fn symlinked_files_and_fifos_are_not_objects() {
        let tmp = tempfile::tempdir().expect("test");
        let root = tmp.path().join("repo");
        let b = LocalBackend::new(&root);
        b.create().expect("test");
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"outside").expect("test");
        let name = hashed(b"outside");
        symlink(&outside, root.join("snapshots").join(&name)).expect("test");
        let fifo = hashed(b"fifo");
        let c = std::ffi::CString::new(
            root.join("locks")
                .join(&fifo)
                .as_os_str()
                .as_encoded_bytes(),
        )
        .expect("test");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(b.list(FileKind::Snapshot).expect("test").is_empty());
        assert!(b.list(FileKind::Lock).expect("test").is_empty());
        let e = b
            .get(FileKind::Snapshot, &name)
            .expect_err("a link is not read");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = b
            .get(FileKind::Lock, &fifo)
            .expect_err("a FIFO is not waited on");
        assert!(e.to_string().contains("FIFO"), "{e}");
        b.delete(FileKind::Snapshot, &name).expect("test");
        assert!(root
            .join("snapshots")
            .join(&name)
            .symlink_metadata()
            .is_ok());
        assert_eq!(std::fs::read(&outside).expect("test"), b"outside");
        assert!(b.put(FileKind::Snapshot, &name, b"other").is_err());
        assert_eq!(std::fs::read(&outside).expect("test"), b"outside");
    }

    #[test]
    fn put_new_stores_new_objects_and_never_replaces_a_stored_one() {
        let tmp = tempfile::tempdir().expect("test");
        let b = LocalBackend::new(tmp.path().join("repo"));
        b.create().expect("test");
        let name = hashed(b"snapshot");
        b.put_new(FileKind::Snapshot, &name, b"snapshot")
            .expect("new");
        // The same bytes again (a retried put): a no-op.
        b.put_new(FileKind::Snapshot, &name, b"snapshot")
            .expect("again");
        for other in [&b"forgery!"[..], b"a longer forgery", b""] {
            let e = b
                .put_new(FileKind::Snapshot, &name, other)
                .expect_err("other bytes");
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
            assert!(e.to_string().contains(&format!("snapshots/{name}")), "{e}");
        }
        assert_eq!(b.get(FileKind::Snapshot, &name).expect("test"), b"snapshot");
        b.put_new(FileKind::Config, "config", b"config")
            .expect("config");
        assert!(b.put_new(FileKind::Config, "config", b"CONFIG").is_err());
        assert_eq!(b.get(FileKind::Config, "config").expect("test"), b"config");
        assert_eq!(
            b.remove_temporaries().expect("test"),
            0,
            "no temporary left"
        );
    }

    #[test]
    fn whole_reads_are_bounded_by_kind() {
        let tmp = tempfile::tempdir().expect("test");
        let root = tmp.path().join("repo");
        let b = LocalBackend::new(&root);
        b.create().expect("test");
        let name = hashed(b"huge lock");
        let f = std::fs::File::create(root.join("locks").join(&name)).expect("test");
        f.set_len(1 << 40).expect("sparse file");
        let e = b.get(FileKind::Lock, &name).expect_err("too large");
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge, "{e}");
        assert!(e.to_string().contains(&format!("locks/{name}")), "{e}");
        let small = b"small".to_vec();
        b.put(FileKind::Index, &hashed(&small), &small)
            .expect("test");
        let e = b
            .get_at_most(FileKind::Index, &hashed(&small), 4)
            .expect_err("over a tighter bound");
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(
            b.get_at_most(FileKind::Index, &hashed(&small), 5)
                .expect("test"),
            small
        );
    }
}

//! The repository directory and its layout directories, each opened once and without following
//! links (the module documentation of `local` says why), and every object opened, listed and
//! swept relative to its directory's descriptor. The descriptors of layout directories are
//! cached: a restore or check reads thousands of ranges of packs.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::durable::sync_dir;
use super::{check_name, file_name, not_an_object, LayoutError, LocalBackend};
use crate::backend::FileKind;
use crate::id::is_id_name;

/// The layout directories below the root that hold objects directly (`data/` holds `XX/`).
pub(super) const FLAT_DIRS: [&str; 5] = ["keys", "index", "snapshots", "locks", "drills"];

pub(super) fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::Symlink => "a symbolic link",
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Fifo => "a FIFO",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        FileType::Socket => "a socket",
        FileType::Unknown => "not a regular file",
    }
}

pub(super) fn is_regular(st: &rfs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
}

/// Two lowercase hex digits: a `data/` subdirectory.
pub(super) fn is_fanout_name(n: &str) -> bool {
    n.len() == 2 && n.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Lists the entries of a directory (without `.` and `..`), as UTF-8 names; others are
/// foreign and skipped.
pub(super) fn entries(dir: BorrowedFd<'_>) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for e in rfs::Dir::read_from(dir)? {
        let e = e?;
        let Ok(n) = e.file_name().to_str() else {
            continue;
        };
        if n != "." && n != ".." {
            out.push(n.to_string());
        }
    }
    Ok(out)
}

impl LocalBackend {
    /// The repository directory, opened once. `NotFound` while it does not exist.
    pub(super) fn root_fd(&self) -> io::Result<Arc<OwnedFd>> {
        let mut held = self.root_fd.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fd) = &*held {
            return Ok(fd.clone());
        }
        let fd = match rfs::open(
            &self.root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // A directory one may enter but not list (mode 0300): enough to reach the files.
            Err(Errno::ACCESS) => rfs::open(
                &self.root,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?,
            Err(e) => return Err(e.into()),
        };
        self.check_layout(fd.as_fd())?;
        let fd = Arc::new(fd);
        *held = Some(fd.clone());
        Ok(fd)
    }

    /// Refuses, before anything is read or written, a repository where a layout directory is
    /// a link or anything but a directory: every command then fails at once naming it, not
    /// only those that would have used it. (Every later operation opens its directory without
    /// following links anyway; this makes the answer the same for every command.)
    pub(super) fn check_layout(&self, root: BorrowedFd<'_>) -> io::Result<()> {
        for d in FLAT_DIRS.iter().chain(&["data"]) {
            match rfs::statat(root, *d, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {
                    return Err(self.layout_error(root, d, &format!("{d}/")));
                }
                _ => {}
            }
        }
        let Ok(Some(data)) = self.open_dir_at(root, "data", "data/") else {
            return Ok(());
        };
        // A directory that may be entered but not listed cannot be checked here; the
        // operations below check each subdirectory they open.
        let Ok(subs) = entries(data.as_fd()) else {
            return Ok(());
        };
        for sub in subs.iter().filter(|n| is_fanout_name(n)) {
            match rfs::statat(&data, sub.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {
                    return Err(self.layout_error(data.as_fd(), sub, &format!("data/{sub}/")));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The root, or None when it does not exist.
    pub(super) fn root_if_any(&self) -> io::Result<Option<Arc<OwnedFd>>> {
        match self.root_fd() {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(super) fn layout_error(
        &self,
        parent: BorrowedFd<'_>,
        name: &str,
        shown: &str,
    ) -> io::Error {
        let found = match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => kind_name(FileType::from_raw_mode(st.st_mode)),
            Err(_) => "not a directory",
        };
        io::Error::new(
            io::ErrorKind::NotADirectory,
            LayoutError {
                root: self.root.clone(),
                dir: shown.to_string(),
                found,
            },
        )
    }

    /// Opens the layout directory `name` in `parent` without following a link; None when it
    /// does not exist. `shown` names it in errors (`data/ab/`).
    pub(super) fn open_dir_at(
        &self,
        parent: BorrowedFd<'_>,
        name: &str,
        shown: &str,
    ) -> io::Result<Option<OwnedFd>> {
        let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rfs::openat(parent, name, flags | OFlags::RDONLY, Mode::empty()) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) => Ok(None),
            Err(Errno::LOOP | Errno::NOTDIR) => Err(self.layout_error(parent, name, shown)),
            // Enterable but not listable: enough to reach the files in it.
            Err(Errno::ACCESS) => {
                match rfs::openat(parent, name, flags | OFlags::PATH, Mode::empty()) {
                    Ok(fd) => Ok(Some(fd)),
                    Err(Errno::LOOP | Errno::NOTDIR) => Err(self.layout_error(parent, name, shown)),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Like [`Self::open_dir_at`], creating the directory (durably, with the repository's
    /// mode) when it is missing.
    pub(super) fn create_dir_at(
        &self,
        parent: BorrowedFd<'_>,
        name: &str,
        shown: &str,
    ) -> io::Result<OwnedFd> {
        if let Some(fd) = self.open_dir_at(parent, name, shown)? {
            return Ok(fd);
        }
        let modes = self.modes();
        match rfs::mkdirat(parent, name, Mode::from_raw_mode(modes.dir)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let fd = self.open_dir_at(parent, name, shown)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{shown} vanished right after it was created"),
            )
        })?;
        if modes.group {
            // Past the umask (keeping a set-group-id bit inherited from the parent, so new
            // entries keep the shared group); file systems without modes refuse or ignore it.
            let setgid = rfs::fstat(&fd).map_or(0, |st| st.st_mode & 0o2000);
            let _ = rfs::fchmod(&fd, Mode::from_raw_mode(modes.dir | setgid));
        }
        sync_dir(parent)?;
        Ok(fd)
    }

    /// `data/`, opened (or created).
    pub(super) fn data_dir(
        &self,
        root: BorrowedFd<'_>,
        create: bool,
    ) -> io::Result<Option<OwnedFd>> {
        if create {
            self.create_dir_at(root, "data", "data/").map(Some)
        } else {
            self.open_dir_at(root, "data", "data/")
        }
    }

    /// The directory an object of `kind` named `name` belongs in (packs: `data/XX/`); None
    /// when it does not exist and `create` is false.
    pub(super) fn dir_for(
        &self,
        kind: FileKind,
        name: &str,
        create: bool,
    ) -> io::Result<Option<Arc<OwnedFd>>> {
        let key = match kind {
            k if k.fans_out() => format!("{}/{}", k.dir(), name.get(..2).unwrap_or("00")),
            k => k.dir().to_string(),
        };
        if let Some(fd) = self
            .dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(Some(fd.clone()));
        }
        let opened = self.open_dir_for(kind, name, create)?.map(Arc::new);
        if let Some(fd) = &opened {
            self.dirs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, fd.clone());
        }
        Ok(opened)
    }

    /// Opens (or with `create`, makes) the directory of [`Self::dir_for`] afresh.
    pub(super) fn open_dir_for(
        &self,
        kind: FileKind,
        name: &str,
        create: bool,
    ) -> io::Result<Option<OwnedFd>> {
        let root = if create {
            self.root_fd()?
        } else {
            match self.root_if_any()? {
                Some(r) => r,
                None => return Ok(None),
            }
        };
        match kind {
            FileKind::Config => Ok(Some(
                rfs::openat(
                    &*root,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .or_else(|_| {
                    rfs::openat(
                        &*root,
                        ".",
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                })?,
            )),
            k if k.fans_out() => {
                let sub = name.get(..2).unwrap_or("00");
                let shown = format!("{}/{sub}/", k.dir());
                let top = if k == FileKind::Pack {
                    self.data_dir(root.as_fd(), create)?
                } else if create {
                    Some(self.create_dir_at(root.as_fd(), k.dir(), &format!("{}/", k.dir()))?)
                } else {
                    self.open_dir_at(root.as_fd(), k.dir(), &format!("{}/", k.dir()))?
                };
                let Some(data) = top else {
                    return Ok(None);
                };
                if create {
                    self.create_dir_at(data.as_fd(), sub, &shown).map(Some)
                } else {
                    self.open_dir_at(data.as_fd(), sub, &shown)
                }
            }
            k => {
                let shown = format!("{}/", k.dir());
                if create {
                    self.create_dir_at(root.as_fd(), k.dir(), &shown).map(Some)
                } else {
                    self.open_dir_at(root.as_fd(), k.dir(), &shown)
                }
            }
        }
    }

    /// A regular file in `dir`, as (its directory, its stat); None when absent. A link or
    /// other non-regular file is not an object: `Err(NotAnObject)`.
    pub(super) fn stat_object(
        &self,
        dir: &OwnedFd,
        fname: &str,
        kind: FileKind,
        name: &str,
    ) -> io::Result<Option<rfs::Stat>> {
        match rfs::statat(dir, fname, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if is_regular(&st) => Ok(Some(st)),
            Ok(st) => Err(not_an_object(
                kind,
                name,
                FileType::from_raw_mode(st.st_mode),
            )),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The directory holding an existing object: its own, or — for a pack a file copier or a
    /// person put in the wrong `data/` subdirectory — whichever `data/XX/` holds it.
    pub(super) fn find(&self, kind: FileKind, name: &str) -> io::Result<Option<Arc<OwnedFd>>> {
        check_name(name)?;
        let fname = file_name(kind, name);
        if let Some(dir) = self.dir_for(kind, name, false)? {
            if rfs::statat(&*dir, fname.as_str(), AtFlags::SYMLINK_NOFOLLOW).is_ok() {
                return Ok(Some(dir));
            }
        }
        if kind != FileKind::Pack {
            return Ok(None);
        }
        let Some(root) = self.root_if_any()? else {
            return Ok(None);
        };
        let Some(data) = self.data_dir(root.as_fd(), false)? else {
            return Ok(None);
        };
        for sub in entries(data.as_fd())? {
            if !is_fanout_name(&sub) {
                continue;
            }
            let Some(dir) = self.open_dir_at(data.as_fd(), &sub, &format!("data/{sub}/"))? else {
                continue;
            };
            if matches!(self.stat_object(&dir, &fname, kind, name), Ok(Some(_))) {
                return Ok(Some(Arc::new(dir)));
            }
        }
        Ok(None)
    }

    /// Opens an object for reading without following a link and without blocking (a FIFO
    /// under an object's name is refused, not waited on); returns it with its size.
    pub(super) fn open_object(&self, kind: FileKind, name: &str) -> io::Result<(File, u64)> {
        let missing = || {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found", kind.path(name)),
            )
        };
        let dir = self.find(kind, name)?.ok_or_else(missing)?;
        let fname = file_name(kind, name);
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match rfs::openat(&dir, fname.as_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Err(missing()),
            Err(Errno::LOOP) => return Err(not_an_object(kind, name, FileType::Symlink)),
            Err(e) => return Err(e.into()),
        };
        let st = rfs::fstat(&fd)?;
        if !is_regular(&st) {
            return Err(not_an_object(
                kind,
                name,
                FileType::from_raw_mode(st.st_mode),
            ));
        }
        // O_NONBLOCK stays: it has no effect on reads of a regular file (open(2)), and clearing
        // it cost two more system calls on every read of a restore or check.
        Ok((File::from(fd), st.st_size.max(0) as u64))
    }

    /// Every regular `.tmp-*` file directly in `dir` is removed; returns the bytes freed.
    pub(super) fn sweep_temporaries(dir: &OwnedFd) -> io::Result<u64> {
        let mut freed = 0;
        for n in entries(dir.as_fd())? {
            if !n.starts_with(".tmp-") {
                continue;
            }
            match rfs::statat(dir, n.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if is_regular(&st) => {
                    match rfs::unlinkat(dir, n.as_str(), AtFlags::empty()) {
                        Ok(()) => freed += st.st_size.max(0) as u64,
                        Err(Errno::NOENT) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                _ => {}
            }
        }
        Ok(freed)
    }

    /// Lists the objects directly in `dir`: regular files named `<id><suffix>`.
    pub(super) fn list_files(
        dir: &OwnedFd,
        suffix: &str,
        out: &mut Vec<(String, u64)>,
    ) -> io::Result<()> {
        for n in entries(dir.as_fd())? {
            let Some(id) = n.strip_suffix(suffix) else {
                continue;
            };
            if !is_id_name(id) {
                continue;
            }
            match rfs::statat(dir, n.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if is_regular(&st) => out.push((id.to_string(), st.st_size.max(0) as u64)),
                Ok(_) | Err(Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

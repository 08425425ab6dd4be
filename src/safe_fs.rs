//! Directories held open by descriptor, and every entry below them reached without following
//! symlinks.
//!
//! A restore target is a directory the user (or someone else who can write there) may already
//! have filled: a symlink `target/tmp -> /etc`, a hard link to a file outside, a FIFO. Checking
//! a path with `lstat` and then opening it by name leaves a window, and a path walked from the
//! top follows every symlink on the way. So nothing below a [`Dir`] is ever named by a path:
//! each entry is created, opened, linked, removed or changed relative to its directory's
//! descriptor, and never through a symlink (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `O_EXCL`,
//! `openat2` with `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH`). An entry name is always a single
//! component: never empty, `.` or `..`, and free of `/` and NUL (trees are checked on decode,
//! `tree::valid_name`, and [`Dir`] checks again).
//!
//! The few path-based helpers backup and the cache share live here too: [`open_regular`]
//! (a regular file, opened without following a link or waiting on a FIFO) and [`absolute`].

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};

use crate::tree::{Node, NodeKind};

/// An open directory. Entries below it are reached only through it.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

/// What [`Dir::stat`] tells about an entry (not following a symlink).
#[derive(Clone, Copy, Debug)]
pub struct EntryStat {
    pub kind: NodeKind,
    pub size: u64,
    pub atime: (i64, u32),
    pub mtime: (i64, u32),
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub uid: u32,
}

impl EntryStat {
    // The field types of `stat` differ between architectures: the casts are not redundant
    // everywhere.
    #[allow(clippy::unnecessary_cast)]
    fn from_stat(st: &rustix::fs::Stat) -> EntryStat {
        let kind = match FileType::from_raw_mode(st.st_mode as _) {
            FileType::Directory => NodeKind::Dir,
            FileType::Symlink => NodeKind::Symlink,
            FileType::Fifo => NodeKind::Fifo,
            FileType::CharacterDevice => NodeKind::CharDevice,
            FileType::BlockDevice => NodeKind::BlockDevice,
            FileType::Socket => NodeKind::Socket,
            _ => NodeKind::File,
        };
        EntryStat {
            kind,
            size: st.st_size as u64,
            atime: (st.st_atime as i64, st.st_atime_nsec as u32),
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as u32),
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            nlink: st.st_nlink as u64,
            uid: st.st_uid,
        }
    }
}

/// A short English name of an entry's type, for messages.
pub fn kind_name(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::File => "file",
        NodeKind::Dir => "directory",
        NodeKind::Symlink => "symlink",
        NodeKind::Fifo => "FIFO",
        NodeKind::CharDevice => "character device",
        NodeKind::BlockDevice => "block device",
        NodeKind::Socket => "socket",
    }
}

fn invalid_name() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a single file name (empty, `.`, `..`, or holds `/` or NUL)",
    )
}

/// Refuses anything but one plain path component.
fn check_name(name: &[u8]) -> io::Result<&[u8]> {
    if crate::tree::valid_name(name) {
        Ok(name)
    } else {
        Err(invalid_name())
    }
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

impl Dir {
    /// Opens a directory the user named. Symlinks in this path are followed: it is the user's
    /// own choice of where to work, not something found inside it.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir { fd })
    }

    /// Opens the directory `name` in this one; a symlink there is an error (`ELOOP` or
    /// `ENOTDIR`), never followed.
    pub fn open_dir(&self, name: &[u8]) -> io::Result<Dir> {
        let fd = rustix::fs::openat(&self.fd, check_name(name)?, DIR_FLAGS, Mode::empty())?;
        Ok(Dir { fd })
    }

    /// Opens the directory at `rel`, a relative path below this one, with no symlink anywhere
    /// on the way and never leaving this directory (`..` is refused). The empty path is this
    /// directory again.
    pub fn open_beneath(&self, rel: &Path) -> io::Result<Dir> {
        let mut parts = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(n) => parts.push(check_name(n.as_bytes())?),
                Component::CurDir => {}
                _ => return Err(invalid_name()),
            }
        }
        if parts.is_empty() {
            let fd = rustix::fs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty())?;
            return Ok(Dir { fd });
        }
        let path = parts.join(&b'/');
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        match rustix::fs::openat2(&self.fd, path.as_slice(), DIR_FLAGS, Mode::empty(), resolve) {
            Ok(fd) => Ok(Dir { fd }),
            // Kernels before 5.6 (or a seccomp filter) lack openat2: one component at a time.
            Err(e) if e == rustix::io::Errno::NOSYS || e == rustix::io::Errno::PERM => {
                let mut cur = self.open_dir(parts[0])?;
                for p in &parts[1..] {
                    cur = cur.open_dir(p)?;
                }
                Ok(cur)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The entry `name` (a symlink itself, not what it points to); None when there is none.
    pub fn stat(&self, name: &[u8]) -> io::Result<Option<EntryStat>> {
        match rustix::fs::statat(&self.fd, check_name(name)?, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(EntryStat::from_stat(&st))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// This directory itself.
    pub fn stat_self(&self) -> io::Result<EntryStat> {
        Ok(EntryStat::from_stat(&rustix::fs::fstat(&self.fd)?))
    }

    /// Makes the directory `name` (which must not exist) with `mode` (before the umask).
    pub fn create_dir(&self, name: &[u8], mode: u32) -> io::Result<()> {
        Ok(rustix::fs::mkdirat(
            &self.fd,
            check_name(name)?,
            Mode::from_raw_mode(mode as _),
        )?)
    }

    /// Creates the regular file `name` for writing (and reading back); it must not exist in
    /// any form (a symlink there is an error, not followed).
    pub fn create_file(&self, name: &[u8], mode: u32) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            check_name(name)?,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode as _),
        )?;
        Ok(File::from(fd))
    }

    /// Opens the existing regular file `name` for reading. Anything else there — a symlink, a
    /// FIFO (which would block), a device (which an open may act on) — is refused without
    /// being opened for I/O: the entry is first opened with `O_PATH` (which opens nothing for
    /// I/O), checked, and only that very inode is then opened for reading.
    pub fn open_file(&self, name: &[u8]) -> io::Result<File> {
        let name = check_name(name)?;
        let path_fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rustix::fs::fstat(&path_fd)?;
        if FileType::from_raw_mode(st.st_mode as _) != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let read_flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY;
        match rustix::fs::open(proc_path(&path_fd).as_str(), read_flags, Mode::empty()) {
            Ok(fd) => Ok(File::from(fd)),
            // No /proc (a rescue system): by name again, never following a symlink nor
            // blocking, and checked once more.
            Err(rustix::io::Errno::NOENT) => {
                let fd = rustix::fs::openat(
                    &self.fd,
                    name,
                    read_flags | OFlags::NOFOLLOW | OFlags::NONBLOCK,
                    Mode::empty(),
                )?;
                let again = rustix::fs::fstat(&fd)?;
                if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "the file was replaced while it was opened",
                    ));
                }
                let flags = rustix::fs::fcntl_getfl(&fd)?;
                rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK)?;
                Ok(File::from(fd))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Makes a symlink `name` pointing at `target` (whose bytes are not interpreted).
    pub fn symlink(&self, target: &[u8], name: &[u8]) -> io::Result<()> {
        Ok(rustix::fs::symlinkat(target, &self.fd, check_name(name)?)?)
    }

    /// Makes a FIFO or a device node `name`.
    pub fn mknod(&self, name: &[u8], node: &Node) -> io::Result<()> {
        let file_type = match node.kind {
            NodeKind::Fifo => FileType::Fifo,
            NodeKind::CharDevice => FileType::CharacterDevice,
            NodeKind::BlockDevice => FileType::BlockDevice,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "not a special file",
                ))
            }
        };
        Ok(rustix::fs::mknodat(
            &self.fd,
            check_name(name)?,
            file_type,
            Mode::from_raw_mode((node.mode & 0o777) as _),
            node.rdev as _,
        )?)
    }

    /// Makes `to_dir/to_name` another link to `self/name`. A symlink at `name` is linked as
    /// itself, never followed.
    pub fn hard_link(&self, name: &[u8], to_dir: &Dir, to_name: &[u8]) -> io::Result<()> {
        Ok(rustix::fs::linkat(
            &self.fd,
            check_name(name)?,
            &to_dir.fd,
            check_name(to_name)?,
            AtFlags::empty(),
        )?)
    }

    /// Removes the non-directory entry `name` (a symlink itself, never its target).
    pub fn remove_file(&self, name: &[u8]) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(
            &self.fd,
            check_name(name)?,
            AtFlags::empty(),
        )?)
    }

    /// Removes the directory `name` if it is empty (`ENOTEMPTY` otherwise: nothing inside a
    /// directory is ever removed by this).
    pub fn remove_empty_dir(&self, name: &[u8]) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(
            &self.fd,
            check_name(name)?,
            AtFlags::REMOVEDIR,
        )?)
    }

    /// Applies ownership (with `set_owner`), mode, extended attributes and times to the entry
    /// `name` that this process has just made — a symlink or a special file, which are not
    /// opened for I/O. The entry is opened with `O_PATH` (nothing is opened for I/O, so a FIFO
    /// does not block and a device does nothing), and changed only if it is still what was
    /// made: of the node's type, owned by this process, with a single link — so an entry
    /// swapped for a hard link to a file elsewhere is never changed. Every change then goes
    /// through `/proc/self/fd`, which names exactly that inode (a symlink itself, not what it
    /// points to). Returns the first failure; later steps still run.
    pub fn set_entry_metadata(&self, name: &[u8], node: &Node, set_owner: bool) -> io::Result<()> {
        let fd = rustix::fs::openat(
            &self.fd,
            check_name(name)?,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = EntryStat::from_stat(&rustix::fs::fstat(&fd)?);
        let ours = euid();
        if st.kind != node.kind || st.nlink != 1 || st.uid != ours {
            return Err(io::Error::other(
                "the entry was replaced while it was restored; its metadata was not applied",
            ));
        }
        apply_metadata(MetaTarget::Path(&proc_path(&fd)), node, set_owner)
    }

    /// Flushes every file system holding this directory (one `syncfs` instead of an fsync
    /// per restored file).
    pub fn sync_filesystem(&self) -> io::Result<()> {
        Ok(rustix::fs::syncfs(&self.fd)?)
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// This process's effective user id (asked once).
fn euid() -> u32 {
    static EUID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    // SAFETY: geteuid has no preconditions.
    *EUID.get_or_init(|| unsafe { libc::geteuid() })
}

/// `/proc/self/fd/<fd>`: the path that names exactly the inode `fd` is open on.
fn proc_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn timespec(secs: i64, nanos: u32) -> Timespec {
    Timespec {
        tv_sec: secs as _,
        tv_nsec: nanos as _,
    }
}

/// Applies ownership (with `set_owner`), mode, extended attributes and times to an open file
/// or directory, through its descriptor: no path is looked up again, so a renamed or replaced
/// path cannot redirect it. Returns the first failure; later steps still run.
pub fn apply_fd_metadata(fd: BorrowedFd<'_>, node: &Node, set_owner: bool) -> io::Result<()> {
    apply_metadata(MetaTarget::Fd(fd), node, set_owner)
}

/// Where metadata goes: an open file or directory, or the `/proc/self/fd` path of an `O_PATH`
/// descriptor (a symlink or special file, which is not opened for I/O; the path names that
/// very inode, a symlink itself rather than what it points to).
#[derive(Clone, Copy)]
enum MetaTarget<'a> {
    Fd(BorrowedFd<'a>),
    Path(&'a str),
}

/// The one place metadata is written back. Ownership comes first, since `chown` clears
/// set-user-id bits that the mode then sets; times come last, since the other changes would
/// not move them but a later write would. A symlink has no mode of its own. Returns the first
/// failure; later steps still run.
fn apply_metadata(target: MetaTarget<'_>, node: &Node, set_owner: bool) -> io::Result<()> {
    use rustix::fs::{Gid, Uid, XattrFlags};
    let mut first_err: Option<io::Error> = None;
    let mut note = |r: rustix::io::Result<()>| {
        if let Err(e) = r {
            first_err.get_or_insert(e.into());
        }
    };
    if set_owner {
        let (uid, gid) = (Some(Uid::from_raw(node.uid)), Some(Gid::from_raw(node.gid)));
        note(match target {
            MetaTarget::Fd(fd) => rustix::fs::fchown(fd, uid, gid),
            MetaTarget::Path(p) => rustix::fs::chown(p, uid, gid),
        });
    }
    if node.kind != NodeKind::Symlink {
        let mode = Mode::from_raw_mode((node.mode & 0o7777) as _);
        note(match target {
            MetaTarget::Fd(fd) => rustix::fs::fchmod(fd, mode),
            MetaTarget::Path(p) => rustix::fs::chmod(p, mode),
        });
    }
    for x in &node.xattrs {
        let (name, value) = (OsStr::from_bytes(&x.0), x.1.as_slice());
        note(match target {
            MetaTarget::Fd(fd) => rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty()),
            MetaTarget::Path(p) => rustix::fs::setxattr(p, name, value, XattrFlags::empty()),
        });
    }
    let t = timespec(node.mtime.0, node.mtime.1);
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    note(match target {
        MetaTarget::Fd(fd) => rustix::fs::futimens(fd, &times),
        MetaTarget::Path(p) => rustix::fs::utimensat(rustix::fs::CWD, p, &times, AtFlags::empty()),
    });
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What an open file or directory is.
pub fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<EntryStat> {
    Ok(EntryStat::from_stat(&rustix::fs::fstat(fd)?))
}

/// Sets the access and modification times of an open file or directory.
pub fn set_fd_times(fd: BorrowedFd<'_>, atime: (i64, u32), mtime: (i64, u32)) -> io::Result<()> {
    Ok(rustix::fs::futimens(
        fd,
        &Timestamps {
            last_access: timespec(atime.0, atime.1),
            last_modification: timespec(mtime.0, mtime.1),
        },
    )?)
}

/// Opens the very file `file` is open on, again, for direct (`O_DIRECT`) writes.
pub fn reopen_direct(file: &File) -> io::Result<File> {
    let fd = rustix::fs::open(
        format!("/proc/self/fd/{}", file.as_raw_fd()).as_str(),
        OFlags::WRONLY | OFlags::DIRECT | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

/// Opens `path` for reading if it is a regular file: no symlink followed, no FIFO or device
/// waited on (`O_NONBLOCK`), never made the controlling terminal. Returns the file and its
/// metadata, taken from the open descriptor so they describe the same file.
pub fn open_regular(path: &Path) -> io::Result<(File, std::fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok((file, meta))
}

/// The whole content of `path` if it is a regular file (opened as [`open_regular`] does) of at
/// most `max` bytes; a larger file is an error, also one that grows past `max` while read.
/// For small records (state files) that must never make a reader allocate without bound.
pub fn read_regular_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let too_large = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {max} bytes", path.display()),
        )
    };
    let (f, meta) = open_regular(path)?;
    if meta.len() > max {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    f.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Makes a path absolute and lexically clean, without resolving symlinks (like restic): the
/// path a snapshot records for what the user named.
pub fn absolute(path: &Path) -> io::Result<std::path::PathBuf> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut out = std::path::PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn setup() -> (tempfile::TempDir, Dir) {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::create_dir(tmp.path().join("t")).expect("mkdir");
        fs::create_dir(tmp.path().join("outside")).expect("mkdir");
        fs::write(tmp.path().join("outside/f"), b"keep").expect("write");
        let d = Dir::open(&tmp.path().join("t")).expect("open");
        (tmp, d)
    }

    #[test]
    fn nothing_is_reached_through_a_symlink_in_the_directory() {
        let (tmp, d) = setup();
        let outside = tmp.path().join("outside");
        std::os::unix::fs::symlink(&outside, tmp.path().join("t/link")).expect("symlink");
        std::os::unix::fs::symlink(outside.join("f"), tmp.path().join("t/flink")).expect("symlink");
        assert!(d.open_dir(b"link").is_err(), "open_dir followed a symlink");
        assert!(d.open_beneath(Path::new("link")).is_err());
        assert!(
            d.create_file(b"flink", 0o600).is_err(),
            "create followed a symlink"
        );
        assert!(
            d.open_file(b"flink").is_err(),
            "open_file followed a symlink"
        );
        assert!(d.create_dir(b"link", 0o700).is_err());
        d.remove_file(b"flink")
            .expect("a symlink is removed as itself");
        assert_eq!(fs::read(outside.join("f")).expect("read"), b"keep");
        assert!(d
            .stat(b"link")
            .expect("stat")
            .is_some_and(|s| s.kind == NodeKind::Symlink));
    }

    #[test]
    fn paths_that_leave_the_directory_are_refused() {
        let (tmp, d) = setup();
        fs::create_dir_all(tmp.path().join("t/a/b")).expect("mkdir");
        std::os::unix::fs::symlink("../..", tmp.path().join("t/a/up")).expect("symlink");
        assert!(d.open_beneath(Path::new("a/b")).is_ok());
        for bad in ["a/up", "a/up/outside", "../outside", "/etc", "a/../.."] {
            assert!(d.open_beneath(Path::new(bad)).is_err(), "{bad} was opened");
        }
        for bad in [&b""[..], b".", b"..", b"a/b", b"x\0y"] {
            assert!(d.stat(bad).is_err(), "{bad:?} was accepted as a name");
        }
    }

    #[test]
    fn a_fifo_is_refused_by_open_file_without_blocking() {
        let (tmp, d) = setup();
        d.mknod(b"fifo", &Node::new(b"fifo".to_vec(), NodeKind::Fifo))
            .expect("mkfifo");
        let err = d
            .open_file(b"fifo")
            .expect_err("a FIFO is not a regular file");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(tmp.path().join("t/fifo").exists());
    }

    /// Metadata meant for a FIFO the restore just made must not land on what someone put at
    /// its name since: a hard link to a file elsewhere (which has two links, or another
    /// owner), or an entry of another type.
    #[test]
    fn entry_metadata_is_never_applied_to_a_swapped_in_hard_link() {
        let (tmp, d) = setup();
        let outside = tmp.path().join("outside/f");
        let before = fs::metadata(&outside).expect("stat");
        let mut node = Node::new(b"p".to_vec(), NodeKind::Fifo);
        node.mode = 0o4777;
        node.mtime = crate::tree::Timestamp(1_000_000_000, 0);
        d.mknod(b"p", &node).expect("mkfifo");
        d.set_entry_metadata(b"p", &node, false)
            .expect("applied to the FIFO it made");
        // Swapped for a hard link to the outside file.
        d.remove_file(b"p").expect("unlink");
        fs::hard_link(&outside, tmp.path().join("t/p")).expect("link");
        let err = d
            .set_entry_metadata(b"p", &node, true)
            .expect_err("refused");
        assert!(err.to_string().contains("replaced"), "{err}");
        // Swapped for a regular file with one link: another type, refused too.
        d.remove_file(b"p").expect("unlink");
        fs::write(tmp.path().join("t/p"), b"x").expect("write");
        assert!(d.set_entry_metadata(b"p", &node, true).is_err());
        let after = fs::metadata(&outside).expect("stat");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            (
                before.mode(),
                before.uid(),
                before.mtime(),
                before.mtime_nsec()
            ),
            (after.mode(), after.uid(), after.mtime(), after.mtime_nsec())
        );
    }

    #[test]
    fn a_non_empty_directory_is_never_removed() {
        let (tmp, d) = setup();
        fs::create_dir_all(tmp.path().join("t/full")).expect("mkdir");
        fs::write(tmp.path().join("t/full/x"), b"x").expect("write");
        assert!(d.remove_empty_dir(b"full").is_err());
        assert!(d.remove_file(b"full").is_err());
        assert!(tmp.path().join("t/full/x").exists());
        fs::create_dir(tmp.path().join("t/empty")).expect("mkdir");
        d.remove_empty_dir(b"empty")
            .expect("an empty directory goes");
    }
}

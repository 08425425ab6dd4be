//! Writing an object durably (repo-format.md §10.1): a temporary name in the final directory,
//! write, fsync, rename to the final name, fsync the directory; large objects through direct
//! I/O. And the modes new files and directories get (private, or shared with a group).

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::dirfd::is_regular;
use super::LocalBackend;
use crate::aligned::{AlignedBuf, ALIGN};
use crate::backend::limit::{paced_write, RateLimiter};
use crate::backend::{temp_name, CONFIG_NAME};

/// Modes for new files and directories (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Modes {
    pub(super) file: u32,
    pub(super) dir: u32,
    /// Set the modes explicitly after creating (the umask would otherwise take group bits).
    pub(super) group: bool,
}

const PRIVATE: Modes = Modes {
    file: 0o600,
    dir: 0o700,
    group: false,
};
const GROUP: Modes = Modes {
    file: 0o640,
    dir: 0o770,
    group: true,
};

/// fsync a directory, tolerating filesystems that cannot (EINVAL, ENOTSUP, ENOSYS, EBADF).
pub(super) fn sync_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    match rfs::fsync(dir) {
        Ok(()) => Ok(()),
        Err(Errno::INVAL | Errno::OPNOTSUPP | Errno::NOSYS | Errno::BADF) => Ok(()),
        Err(e) => Err(e.into()),
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
/// file system supports it, the rest (and everything elsewhere) through the page cache; paced
/// piece by piece by `limit` (its pieces are multiples of 4 KiB, so direct I/O stays aligned).
fn write_object(f: &mut File, data: &[u8], limit: Option<&RateLimiter>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let aligned = data.len() / ALIGN * ALIGN;
    if data.len() < DIRECT_MIN {
        return paced_write(limit, data, |p| f.write_all(p));
    }
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a file descriptor this function borrows; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // File systems without direct I/O (tmpfs, many FUSE mounts) refuse the flag: buffered.
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_DIRECT) } < 0 {
        return paced_write(limit, data, |p| f.write_all(p));
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
            paced_write(limit, &buf[..n], |p| f.write_all(p))?;
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
    paced_write(limit, &data[done..], |p| f.write_all(p))
}

impl LocalBackend {
    pub(super) fn modes(&self) -> Modes {
        *self.modes.get_or_init(|| {
            let group_readable = self.root_if_any().ok().flatten().is_some_and(|root| {
                rfs::statat(&*root, CONFIG_NAME, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| is_regular(&st) && st.st_mode & 0o040 != 0)
            });
            if group_readable {
                GROUP
            } else {
                PRIVATE
            }
        })
    }
    /// Writes `data` as a new file `fname` in `dir` (temp name, write, fsync, rename, fsync
    /// the directory); the caller has made sure nothing is stored under `fname`, or asks for
    /// `no_replace`: then a file that appeared there meanwhile is never replaced, and the
    /// write fails with `AlreadyExists`.
    pub(super) fn write_new(
        &self,
        dir: &OwnedFd,
        fname: &str,
        data: &[u8],
        no_replace: bool,
    ) -> io::Result<()> {
        let modes = self.modes();
        let mut attempt = 0;
        let (tmp, mut f) = loop {
            let tmp = temp_name();
            let flags =
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rfs::openat(dir, tmp.as_str(), flags, Mode::from_raw_mode(modes.file)) {
                Ok(fd) => break (tmp, File::from(fd)),
                Err(Errno::EXIST) if attempt < 8 => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        };
        if modes.group {
            // Past the umask; file systems without modes refuse or ignore it.
            let _ = rfs::fchmod(&f, Mode::from_raw_mode(modes.file));
        }
        let written =
            write_object(&mut f, data, self.limits.upload.as_deref()).and_then(|_| f.sync_all());
        drop(f);
        if let Err(e) = written {
            let _ = rfs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
            return Err(e);
        }
        let renamed = if no_replace {
            rename_no_replace(dir, &tmp, fname)
        } else {
            rfs::renameat(dir, tmp.as_str(), dir, fname)
        };
        if let Err(e) = renamed {
            let _ = rfs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
            return Err(e.into());
        }
        sync_dir(dir.as_fd())
    }
}

/// Renames `tmp` to `fname` in `dir` unless something is there (`EEXIST`): `renameat2` with
/// `RENAME_NOREPLACE`, or, on file systems without it, a hard link to the new name (which
/// refuses an existing name too) and the temporary name's removal.
fn rename_no_replace(dir: &OwnedFd, tmp: &str, fname: &str) -> Result<(), Errno> {
    match rfs::renameat_with(dir, tmp, dir, fname, rfs::RenameFlags::NOREPLACE) {
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
            rfs::linkat(dir, tmp, dir, fname, AtFlags::empty())?;
            let _ = rfs::unlinkat(dir, tmp, AtFlags::empty());
            Ok(())
        }
        r => r,
    }
}

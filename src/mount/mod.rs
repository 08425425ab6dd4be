//! `cairn mount`: the repository's snapshots as a read-only FUSE file system.
//!
//! Layout (docs/cli.md `mount`): `snapshots/<time>/` for each snapshot, `snapshots/latest` a
//! symlink to the newest, `ids/<short id>/`, `hosts/<host>/<time>/`, `tags/<tag>/<time>/`.
//! Below each snapshot directory is its root tree `/` as stored, with the stored sizes, modes,
//! owners, times, link targets, hard links (one inode number) and extended attributes.
//!
//! Invariants: nothing is ever written, to the repository or through the mount; a read
//! fetches only the blobs covering its byte range, through a [`cache::BlobCache`] bounded by
//! bytes; snapshot lists are re-read when a top-level directory is visited and the last
//! listing is older than a second, so new snapshots appear without remounting.
//! Reads run on a small pool of threads, so the kernel's read-ahead is served in parallel.

pub mod cache;
mod fs;

use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use crate::error::{Error, Result};
use crate::repo::SnapshotFilter;
use crate::Repository;

/// How a mount behaves. The defaults suit a desktop: 64 MiB of cached blobs, 4 read threads.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Which snapshots are shown (`--host`, `--tag`, `--path`).
    pub filter: SnapshotFilter,
    /// The most bytes of opened data blobs kept in memory.
    pub cache_bytes: usize,
    /// Threads serving reads.
    pub read_threads: usize,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            filter: SnapshotFilter::default(),
            cache_bytes: 64 << 20,
            read_threads: 4,
        }
    }
}

/// A mounted file system; [`Mount::run`] serves it until it is unmounted.
pub struct Mount {
    session: fuser::Session<fs::CairnFs>,
}

/// Unmounts a [`Mount`] from another thread (a signal handler's watcher).
pub struct Unmounter(fuser::SessionUnmounter);

impl Unmounter {
    /// Unmounts the file system; [`Mount::run`] then returns.
    pub fn unmount(&mut self) -> Result<()> {
        self.0
            .unmount()
            .map_err(|e| Error::InvalidInput(format!("unmounting failed: {e}")))
    }
}

/// Why a directory cannot be a mount point: it does not exist, is not a directory (a symlink
/// to one is followed, as `mount` does), cannot be read, or is not empty. None: it can.
pub fn mountpoint_problem(path: &Path) -> Option<String> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(format!(
                "mount point {shown} does not exist; create an empty directory there first"
            ))
        }
        Err(e) => return Some(format!("mount point {shown} cannot be read: {e}")),
    };
    if !meta.is_dir() {
        return Some(format!(
            "mount point {shown} is not a directory; give an empty directory"
        ));
    }
    match std::fs::read_dir(path) {
        Ok(mut entries) => entries.next().map(|_| {
            format!(
                "mount point {shown} is not empty; give an empty directory (is something already mounted there?)"
            )
        }),
        Err(e) => Some(format!("mount point {shown} cannot be listed: {e}")),
    }
}

/// Why this machine cannot mount FUSE file systems (no `/dev/fuse`); None: it can, as far as
/// the kernel goes (`fusermount3` is the caller's to find).
pub fn fuse_problem() -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata("/dev/fuse") {
        Ok(m) if m.file_type().is_char_device() => None,
        Ok(_) => Some("/dev/fuse is not a character device: FUSE is unavailable here".into()),
        Err(e) => Some(format!(
            "FUSE is unavailable here: /dev/fuse: {e} (load the fuse module; in a container, pass --device /dev/fuse --cap-add SYS_ADMIN)"
        )),
    }
}

/// The read-ahead asked for the mount's backing device: sequential readers then get the
/// kernel's requests in large, parallel pieces instead of 128 KiB at a time.
const READAHEAD_KIB: u32 = 8 << 10;

/// Raises the kernel's read-ahead for the mount at `canon`, a canonical path
/// (`/sys/class/bdi/<dev>/read_ahead_kb`; the FUSE protocol cannot ask for more than the
/// kernel's 128 KiB default, and the kernel sets that when the session starts, so this runs
/// once the session serves requests). Only root may; for anyone else the default stays, and
/// nothing is said, as nothing is wrong. Touches nothing of the mount itself.
pub(crate) fn raise_readahead(canon: &[u8]) {
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else {
        return;
    };
    if let Some(dev) = mount_device(&info, canon) {
        let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
        let _ = std::fs::write(knob, READAHEAD_KIB.to_string());
    }
}

/// The `major:minor` of the last mount at `point` in a `/proc/self/mountinfo` text (fields:
/// id, parent, major:minor, root, mount point with ` `, tab, newline and `\` escaped in octal).
fn mount_device(info: &[u8], point: &[u8]) -> Option<String> {
    info.split(|&b| b == b'\n').rev().find_map(|line| {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let (dev, at) = (fields.get(2)?, fields.get(4)?);
        (unescape_mountinfo(at) == point).then(|| String::from_utf8_lossy(dev).into_owned())
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape_mountinfo(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let octal = s
            .get(i + 1..i + 4)
            .filter(|d| s[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        match octal {
            Some(b) => {
                out.push(b);
                i += 4;
            }
            None => {
                out.push(s[i]);
                i += 1;
            }
        }
    }
    out
}

impl Mount {
    /// Mounts the repository's snapshots read-only at `mountpoint` (an empty directory,
    /// checked first). The repository's index must be loaded.
    pub fn new(repo: Repository, mountpoint: &Path, opts: MountOptions) -> Result<Mount> {
        if let Some(why) = fuse_problem().or_else(|| mountpoint_problem(mountpoint)) {
            return Err(Error::InvalidInput(why));
        }
        let fsname = format!("cairn:{}", &repo.id().to_hex()[..8]);
        let mut fs = fs::CairnFs::new(Arc::new(RwLock::new(repo)), opts)?;
        // Known before mounting: resolving the path afterwards would ask the mount itself.
        fs.readahead_at = std::fs::canonicalize(mountpoint)
            .ok()
            .map(|p| p.into_os_string().into_vec());
        let options = [
            fuser::MountOption::RO,
            fuser::MountOption::NoDev,
            fuser::MountOption::NoSuid,
            fuser::MountOption::FSName(fsname),
            fuser::MountOption::Subtype("cairn".into()),
        ];
        // No `default_permissions`: whoever mounted holds the repository's password and may
        // read every file in it, whatever owner and mode the files had; the kernel lets only
        // that user (and root) in.
        let session = fuser::Session::new(fs, mountpoint, &options).map_err(|e| {
            Error::InvalidInput(format!(
                "mounting at {} failed: {e} (is fusermount3 installed, from Debian's fuse3?)",
                mountpoint.display()
            ))
        })?;
        Ok(Mount { session })
    }

    /// A handle that unmounts this file system from another thread.
    pub fn unmounter(&mut self) -> Unmounter {
        Unmounter(self.session.unmount_callable())
    }

    /// Serves requests until the file system is unmounted (`fusermount3 -u`, or an
    /// [`Unmounter`]).
    pub fn run(&mut self) -> Result<()> {
        self.session
            .run()
            .map_err(|e| Error::InvalidInput(format!("the FUSE session failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_device_is_found_by_its_escaped_mount_point() {
        let info = b"22 1 0:21 / / rw - ext4 /dev/sda rw\n\
            40 22 0:40 / /tmp/my\\040snaps rw,nosuid - fuse.cairn cairn:1 rw\n\
            41 22 0:41 / /tmp/other rw - fuse.cairn cairn:2 rw\n";
        assert_eq!(
            mount_device(info, b"/tmp/my snaps").as_deref(),
            Some("0:40")
        );
        assert_eq!(mount_device(info, b"/tmp/other").as_deref(), Some("0:41"));
        assert_eq!(mount_device(info, b"/tmp/none"), None);
        assert_eq!(unescape_mountinfo(b"a\\134b\\011"), b"a\\b\t");
        assert_eq!(unescape_mountinfo(b"trailing\\04"), b"trailing\\04");
        assert_eq!(unescape_mountinfo(b"big\\777"), b"big\\777");
    }
}

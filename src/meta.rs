//! Reading file metadata into nodes, and writing it back on restore. Unix only.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::tree::{Node, NodeKind, Timestamp, Xattr};

pub fn kind_of(meta: &Metadata) -> NodeKind {
    let t = meta.file_type();
    if t.is_dir() {
        NodeKind::Dir
    } else if t.is_symlink() {
        NodeKind::Symlink
    } else if t.is_fifo() {
        NodeKind::Fifo
    } else if t.is_char_device() {
        NodeKind::CharDevice
    } else if t.is_block_device() {
        NodeKind::BlockDevice
    } else if t.is_socket() {
        NodeKind::Socket
    } else {
        NodeKind::File
    }
}

/// Caches uid → user name and gid → group name lookups.
#[derive(Default)]
pub struct NameCache {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl NameCache {
    pub fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| lookup_user(uid))
            .clone()
    }
    pub fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| lookup_group(gid))
            .clone()
    }
}

fn lookup_user(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: buffers are valid for the call; result is checked before use.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name points into buf and is NUL-terminated.
    Some(
        unsafe { CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

fn lookup_group(gid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in lookup_user.
    let rc = unsafe {
        libc::getgrgid_r(
            gid,
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || grp.gr_name.is_null() {
        return None;
    }
    // SAFETY: gr_name points into buf and is NUL-terminated.
    Some(
        unsafe { CStr::from_ptr(grp.gr_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Builds a node from `lstat` metadata (no content, no subtree, no xattrs yet).
pub fn node_from_meta(name: Vec<u8>, meta: &Metadata, names: &mut NameCache) -> Node {
    let kind = kind_of(meta);
    let mut n = Node::new(name, kind);
    n.mode = meta.mode() & 0o7777;
    n.uid = meta.uid();
    n.gid = meta.gid();
    n.user = names.user(n.uid);
    n.group = names.group(n.gid);
    n.mtime = Timestamp(meta.mtime(), meta.mtime_nsec() as u32);
    n.ctime = Timestamp(meta.ctime(), meta.ctime_nsec() as u32);
    n.inode = meta.ino();
    n.device = meta.dev();
    n.links = meta.nlink();
    if matches!(kind, NodeKind::CharDevice | NodeKind::BlockDevice) {
        n.rdev = meta.rdev();
    }
    n
}

/// Extended attributes of `path` (not following symlinks), sorted by name. Filesystems without
/// xattr support give an empty list.
pub fn read_xattrs(path: &Path) -> io::Result<Vec<Xattr>> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        if let Some(value) = xattr::get(path, &name)? {
            out.push(Xattr(name.as_bytes().to_vec(), value));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

pub fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

/// Creates a FIFO or device node.
pub fn make_special(path: &Path, node: &Node) -> io::Result<()> {
    let c = cstring(path)?;
    let fmt = match node.kind {
        NodeKind::Fifo => libc::S_IFIFO,
        NodeKind::CharDevice => libc::S_IFCHR,
        NodeKind::BlockDevice => libc::S_IFBLK,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "not a special file",
            ))
        }
    };
    // SAFETY: c is a valid NUL-terminated path.
    let rc = unsafe {
        libc::mknod(
            c.as_ptr(),
            fmt | (node.mode & 0o777) as libc::mode_t,
            node.rdev as libc::dev_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether this process may set ownership (it is root).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Applies ownership (as root), mode, xattrs and times to a restored entry, without following
/// symlinks. Returns the first failure; later steps still run.
pub fn apply_metadata(path: &Path, node: &Node, set_owner: bool) -> io::Result<()> {
    let mut first_err: Option<io::Error> = None;
    let mut note = |r: io::Result<()>| {
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    };
    if set_owner {
        note(std::os::unix::fs::lchown(
            path,
            Some(node.uid),
            Some(node.gid),
        ));
    }
    if node.kind != NodeKind::Symlink {
        use std::os::unix::fs::PermissionsExt;
        note(std::fs::set_permissions(
            path,
            std::fs::Permissions::from_mode(node.mode),
        ));
    }
    for x in &node.xattrs {
        note(xattr::set(path, OsStr::from_bytes(&x.0), &x.1));
    }
    let mtime = filetime::FileTime::from_unix_time(node.mtime.0, node.mtime.1);
    // Access times are not stored (reading a file changes them); restored files get the mtime.
    note(filetime::set_symlink_file_times(path, mtime, mtime));
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// [`apply_metadata`] for a regular file this process has open: through the descriptor, so no
/// path is looked up again (and a renamed or replaced path cannot redirect it).
pub fn apply_file_metadata(file: &std::fs::File, node: &Node, set_owner: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use xattr::FileExt;
    let mut first_err: Option<io::Error> = None;
    let mut note = |r: io::Result<()>| {
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    };
    if set_owner {
        // SAFETY: fchown on a descriptor borrowed from `file` for the duration of the call.
        let r = unsafe { libc::fchown(file.as_raw_fd(), node.uid, node.gid) };
        note(if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        });
    }
    {
        use std::os::unix::fs::PermissionsExt;
        note(file.set_permissions(std::fs::Permissions::from_mode(node.mode)));
    }
    for x in &node.xattrs {
        note(file.set_xattr(OsStr::from_bytes(&x.0), &x.1));
    }
    let mtime = filetime::FileTime::from_unix_time(node.mtime.0, node.mtime.1);
    note(filetime::set_file_handle_times(
        file,
        Some(mtime),
        Some(mtime),
    ));
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Data regions `[start, end)` of a file, found with SEEK_DATA/SEEK_HOLE. A filesystem without
/// support reports the whole file as data.
pub fn data_regions(fd: std::os::fd::RawFd, size: u64) -> Vec<(u64, u64)> {
    let mut regions = Vec::new();
    let mut pos: i64 = 0;
    let end = size as i64;
    while pos < end {
        // SAFETY: fd is an open file descriptor owned by the caller.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole remains
            }
            return vec![(0, size)];
        }
        if data >= end {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let hole = if hole < 0 { end } else { hole.min(end) };
        regions.push((data as u64, hole as u64));
        pos = hole;
    }
    regions
}

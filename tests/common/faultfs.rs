//! A FUSE pass-through file system that fails chosen reads with EIO, for the tests of "read
//! errors are damage" (tests/read_errors.rs).
//!
//! [`FaultFs::mount`] shows a directory read-write at a temporary mount point: cairn's local
//! backend creates, writes, fsyncs, renames, lists and unlinks through it as on a disk. While it
//! is mounted the test chooses faults by path relative to that directory:
//! [`Mounted::fail_reads`] makes every read overlapping a byte range fail with EIO (a bad
//! sector), [`Mounted::fail_reads_times`] only the first few such reads (a USB hiccup),
//! [`Mounted::fail_opens`] every open of a file; [`Mounted::clear`] ends them all, and
//! [`Mounted::hits`] says how many reads or opens a file's faults failed (so a test can show its
//! fault was reached). A fault belongs to the file, not its name: it follows a rename and goes
//! when the file is unlinked or replaced by a rename (a rewritten sector is remapped by the
//! disk). Files are opened with `FOPEN_DIRECT_IO`: every read reaches this layer,
//! none is answered from the kernel's page cache. Dropping the [`Mounted`] unmounts, also while
//! a test panics.
//!
//! FUSE needs `/dev/fuse` and `fusermount3`: where either is missing, [`FaultFs::mount`] returns
//! None after [`super::missing`] (a skip on a laptop, a failure under `CI=true`).

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::consts::FOPEN_DIRECT_IO;
use fuser::{
    FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};
use tempfile::TempDir;

use super::prereq::{find_tool, missing};

/// Attributes and entries are never cached by the kernel: the test may change the source
/// directory behind the mount.
const TTL: Duration = Duration::ZERO;

/// One chosen fault: reads overlapping `range` fail, `left` more times (None: always).
#[derive(Clone, Debug)]
struct ReadFault {
    range: Range<u64>,
    left: Option<u64>,
}

/// The faults in force, by path relative to the source directory, and how often they struck.
#[derive(Default, Debug)]
struct Faults {
    reads: HashMap<PathBuf, Vec<ReadFault>>,
    opens: HashSet<PathBuf>,
    hits: HashMap<PathBuf, u64>,
}

impl Faults {
    /// Whether a read of `len` bytes at `offset` of `rel` fails (counting the hit).
    fn read_fails(&mut self, rel: &Path, offset: u64, len: u64) -> bool {
        let Some(list) = self.reads.get_mut(rel) else {
            return false;
        };
        let end = offset.saturating_add(len);
        let Some(i) = list
            .iter()
            .position(|f| f.range.start < end && offset < f.range.end)
        else {
            return false;
        };
        if let Some(left) = &mut list[i].left {
            *left -= 1;
            if *left == 0 {
                list.remove(i);
            }
        }
        *self.hits.entry(rel.to_path_buf()).or_default() += 1;
        true
    }

    /// The file at `rel` is gone (unlinked, or replaced by a rename): its faults go with it, as
    /// a disk's bad sectors belong to the blocks of the old file, not to its name.
    fn file_gone(&mut self, rel: &Path) {
        self.reads.retain(|p, _| !p.starts_with(rel));
        self.opens.retain(|p| !p.starts_with(rel));
    }

    /// The file (or directory) at `from` is now called `to`: its faults follow it.
    fn renamed(&mut self, from: &Path, to: &Path) {
        self.file_gone(to);
        let moved = |p: &Path| renamed_path(p, from, to);
        self.reads = std::mem::take(&mut self.reads)
            .into_iter()
            .map(|(p, f)| (moved(&p).unwrap_or(p), f))
            .collect();
        self.opens = std::mem::take(&mut self.opens)
            .into_iter()
            .map(|p| moved(&p).unwrap_or(p))
            .collect();
    }

    fn open_fails(&mut self, rel: &Path) -> bool {
        let fails = self.opens.contains(rel);
        if fails {
            *self.hits.entry(rel.to_path_buf()).or_default() += 1;
        }
        fails
    }
}

/// What `p` is called once `from` (and everything below it) is called `to`; None when `p` is
/// not `from` or below it.
fn renamed_path(p: &Path, from: &Path, to: &Path) -> Option<PathBuf> {
    match p.strip_prefix(from) {
        Ok(rest) if rest.as_os_str().is_empty() => Some(to.to_path_buf()),
        Ok(rest) => Some(to.join(rest)),
        Err(_) => None,
    }
}

/// Inode numbers handed to the kernel, and the path (relative to the source) each stands for.
#[derive(Default)]
struct Inodes {
    by_ino: HashMap<u64, PathBuf>,
    by_path: HashMap<PathBuf, u64>,
    next: u64,
}

impl Inodes {
    fn new() -> Self {
        let mut i = Inodes {
            next: fuser::FUSE_ROOT_ID + 1,
            ..Default::default()
        };
        i.by_ino.insert(fuser::FUSE_ROOT_ID, PathBuf::new());
        i.by_path.insert(PathBuf::new(), fuser::FUSE_ROOT_ID);
        i
    }

    fn ino(&mut self, rel: &Path) -> u64 {
        if let Some(&ino) = self.by_path.get(rel) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_ino.insert(ino, rel.to_path_buf());
        self.by_path.insert(rel.to_path_buf(), ino);
        ino
    }

    fn path(&self, ino: u64) -> Option<PathBuf> {
        self.by_ino.get(&ino).cloned()
    }

    fn forget_path(&mut self, rel: &Path) {
        if let Some(ino) = self.by_path.remove(rel) {
            self.by_ino.remove(&ino);
        }
    }

    /// `from` (and everything below it) is now called `to`.
    fn rename(&mut self, from: &Path, to: &Path) {
        self.forget_path(to);
        let moved: Vec<(PathBuf, u64)> = self
            .by_path
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        for (old, ino) in moved {
            let Some(new) = renamed_path(&old, from, to) else {
                continue;
            };
            self.by_path.remove(&old);
            self.by_path.insert(new.clone(), ino);
            self.by_ino.insert(ino, new);
        }
    }
}

/// The pass-through file system (see the module documentation).
pub struct FaultFs {
    source: PathBuf,
    faults: Arc<Mutex<Faults>>,
    inodes: Inodes,
    /// Open files by handle, with their path for the faults.
    files: HashMap<u64, (File, PathBuf)>,
    next_fh: u64,
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn time_of(secs: i64, nanos: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

fn attr_of(ino: u64, m: &fs::Metadata) -> FileAttr {
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        FileType::Directory
    } else if ft.is_symlink() {
        FileType::Symlink
    } else {
        FileType::RegularFile
    };
    FileAttr {
        ino,
        size: m.size(),
        blocks: m.blocks(),
        atime: time_of(m.atime(), m.atime_nsec()),
        mtime: time_of(m.mtime(), m.mtime_nsec()),
        ctime: time_of(m.ctime(), m.ctime_nsec()),
        crtime: time_of(m.ctime(), m.ctime_nsec()),
        kind,
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev() as u32,
        blksize: 4096,
        flags: 0,
    }
}

impl FaultFs {
    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn full(&self, rel: &Path) -> PathBuf {
        self.source.join(rel)
    }

    /// The relative path of `name` in directory `parent`.
    fn child(&self, parent: u64, name: &OsStr) -> Option<PathBuf> {
        self.inodes.path(parent).map(|p| p.join(name))
    }

    fn entry(&mut self, rel: &Path, reply: ReplyEntry) {
        match fs::symlink_metadata(self.full(rel)) {
            Ok(m) => {
                let ino = self.inodes.ino(rel);
                reply.entry(&TTL, &attr_of(ino, &m), 0)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn keep(&mut self, f: File, rel: PathBuf) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.files.insert(fh, (f, rel));
        fh
    }
}

impl Filesystem for FaultFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        match self.child(parent, name) {
            Some(rel) => self.entry(&rel, reply),
            None => reply.error(libc::ENOENT),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, fh: Option<u64>, reply: ReplyAttr) {
        let meta = match fh.and_then(|h| self.files.get(&h)) {
            Some((f, _)) => f.metadata(),
            None => match self.inodes.path(ino) {
                Some(rel) => fs::symlink_metadata(self.full(&rel)),
                None => return reply.error(libc::ENOENT),
            },
        };
        match meta {
            Ok(m) => reply.attr(&TTL, &attr_of(ino, &m)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let Some(rel) = self.inodes.path(ino) else {
            return reply.error(libc::ENOENT);
        };
        let full = self.full(&rel);
        let done = (|| -> io::Result<fs::Metadata> {
            if let Some(mode) = mode {
                fs::set_permissions(&full, fs::Permissions::from_mode(mode & 0o7777))?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::lchown(&full, uid, gid)?;
            }
            if let Some(size) = size {
                match fh.and_then(|h| self.files.get(&h)) {
                    Some((f, _)) => f.set_len(size)?,
                    None => OpenOptions::new().write(true).open(&full)?.set_len(size)?,
                }
            }
            let when = |t: TimeOrNow| match t {
                TimeOrNow::SpecificTime(t) => filetime::FileTime::from_system_time(t),
                TimeOrNow::Now => filetime::FileTime::now(),
            };
            if atime.is_some() || mtime.is_some() {
                let m = fs::symlink_metadata(&full)?;
                let a = atime
                    .map(when)
                    .unwrap_or_else(|| filetime::FileTime::from_last_access_time(&m));
                let w = mtime
                    .map(when)
                    .unwrap_or_else(|| filetime::FileTime::from_last_modification_time(&m));
                filetime::set_symlink_file_times(&full, a, w)?;
            }
            fs::symlink_metadata(&full)
        })();
        match done {
            Ok(m) => reply.attr(&TTL, &attr_of(ino, &m)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        let Some(rel) = self.inodes.path(ino) else {
            return reply.error(libc::ENOENT);
        };
        match fs::read_link(self.full(&rel)) {
            Ok(t) => reply.data(t.as_os_str().as_encoded_bytes()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let Some(rel) = self.child(parent, name) else {
            return reply.error(libc::ENOENT);
        };
        match fs::DirBuilder::new()
            .mode(mode & !umask & 0o7777)
            .create(self.full(&rel))
        {
            Ok(()) => self.entry(&rel, reply),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let Some(rel) = self.child(parent, name) else {
            return reply.error(libc::ENOENT);
        };
        match fs::remove_file(self.full(&rel)) {
            Ok(()) => {
                self.inodes.forget_path(&rel);
                self.faults().file_gone(&rel);
                reply.ok()
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let Some(rel) = self.child(parent, name) else {
            return reply.error(libc::ENOENT);
        };
        match fs::remove_dir(self.full(&rel)) {
            Ok(()) => {
                self.inodes.forget_path(&rel);
                reply.ok()
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        let (Some(from), Some(to)) = (self.child(parent, name), self.child(newparent, newname))
        else {
            return reply.error(libc::ENOENT);
        };
        if flags & libc::RENAME_NOREPLACE != 0 && fs::symlink_metadata(self.full(&to)).is_ok() {
            return reply.error(libc::EEXIST);
        }
        if flags & !libc::RENAME_NOREPLACE != 0 {
            return reply.error(libc::EINVAL);
        }
        match fs::rename(self.full(&from), self.full(&to)) {
            Ok(()) => {
                self.inodes.rename(&from, &to);
                self.faults().renamed(&from, &to);
                reply.ok()
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let Some(rel) = self.inodes.path(ino) else {
            return reply.error(libc::ENOENT);
        };
        if self.faults().open_fails(&rel) {
            return reply.error(libc::EIO);
        }
        let acc = flags & libc::O_ACCMODE;
        let opened = OpenOptions::new()
            .read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
            .write(acc == libc::O_WRONLY || acc == libc::O_RDWR)
            .truncate(flags & libc::O_TRUNC != 0)
            .open(self.full(&rel));
        match opened {
            Ok(f) => {
                let fh = self.keep(f, rel);
                reply.opened(fh, FOPEN_DIRECT_IO)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let Some(rel) = self.child(parent, name) else {
            return reply.error(libc::ENOENT);
        };
        let acc = flags & libc::O_ACCMODE;
        let mut o = OpenOptions::new();
        o.read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
            .write(true)
            .mode(mode & !umask & 0o7777);
        if flags & libc::O_EXCL != 0 {
            o.create_new(true);
        } else {
            o.create(true).truncate(flags & libc::O_TRUNC != 0);
        }
        let full = self.full(&rel);
        match o.open(&full).and_then(|f| Ok((f.metadata()?, f))) {
            Ok((m, f)) => {
                let ino = self.inodes.ino(&rel);
                let fh = self.keep(f, rel);
                reply.created(&TTL, &attr_of(ino, &m), 0, fh, FOPEN_DIRECT_IO)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let Some((f, rel)) = self.files.get(&fh) else {
            return reply.error(libc::EBADF);
        };
        let offset = offset.max(0) as u64;
        if self
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .read_fails(rel, offset, u64::from(size))
        {
            return reply.error(libc::EIO);
        }
        let mut buf = vec![0; size as usize];
        let mut got = 0;
        while got < buf.len() {
            match f.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return reply.error(errno(&e)),
            }
        }
        reply.data(&buf[..got])
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let Some((f, _)) = self.files.get(&fh) else {
            return reply.error(libc::EBADF);
        };
        match f.write_all_at(data, offset.max(0) as u64) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lo: u64, reply: ReplyEmpty) {
        reply.ok()
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.files.remove(&fh);
        reply.ok()
    }

    fn fsync(&mut self, _req: &Request<'_>, _ino: u64, fh: u64, _ds: bool, reply: ReplyEmpty) {
        match self.files.get(&fh).map(|(f, _)| f.sync_all()) {
            Some(Ok(())) => reply.ok(),
            Some(Err(e)) => reply.error(errno(&e)),
            None => reply.error(libc::EBADF),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let Some(rel) = self.inodes.path(ino) else {
            return reply.error(libc::ENOENT);
        };
        let listed = match fs::read_dir(self.full(&rel)) {
            Ok(rd) => rd.collect::<io::Result<Vec<_>>>(),
            Err(e) => Err(e),
        };
        let listed = match listed {
            Ok(l) => l,
            Err(e) => return reply.error(errno(&e)),
        };
        let parent = rel
            .parent()
            .map_or(fuser::FUSE_ROOT_ID, |p| self.inodes.ino(p));
        let mut all = vec![
            (ino, FileType::Directory, ".".into()),
            (parent, FileType::Directory, "..".into()),
        ];
        for e in listed {
            let kind = match e.file_type() {
                Ok(t) if t.is_dir() => FileType::Directory,
                Ok(t) if t.is_symlink() => FileType::Symlink,
                _ => FileType::RegularFile,
            };
            let child = self.inodes.ino(&rel.join(e.file_name()));
            all.push((child, kind, e.file_name()));
        }
        for (i, (ino, kind, name)) in all.into_iter().enumerate().skip(offset.max(0) as usize) {
            if reply.add(ino, i as i64 + 1, kind, name) {
                break;
            }
        }
        reply.ok()
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _ds: bool, reply: ReplyEmpty) {
        let Some(rel) = self.inodes.path(ino) else {
            return reply.error(libc::ENOENT);
        };
        match File::open(self.full(&rel)).and_then(|d| d.sync_all()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        // Generous fixed figures: nothing in the tests depends on free space.
        reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096)
    }

    fn access(&mut self, _req: &Request<'_>, _ino: u64, _mask: i32, reply: ReplyEmpty) {
        reply.ok()
    }
}

/// A mounted [`FaultFs`]; unmounted when dropped.
pub struct Mounted {
    /// Dropped first: unmounts (fusermount3 -u -z) before the mount point is removed.
    session: Option<fuser::BackgroundSession>,
    faults: Arc<Mutex<Faults>>,
    point: TempDir,
}

impl FaultFs {
    /// Mounts a pass-through view of `source` (a directory) at a new temporary directory. None
    /// after [`missing`] where FUSE is unavailable (no `/dev/fuse`, no `fusermount3`).
    #[track_caller]
    pub fn mount(source: &Path) -> Option<Mounted> {
        if !Path::new("/dev/fuse").exists() {
            missing("/dev/fuse is missing: no FUSE here (the EIO fault layer needs it)");
            return None;
        }
        if let Err(why) = find_tool("fusermount3") {
            missing(format!(
                "{why} (Debian: fuse3); the EIO fault layer needs it"
            ));
            return None;
        }
        let point = tempfile::Builder::new()
            .prefix("cairn-faultfs-")
            .tempdir()
            .expect("a temp dir for the mount point");
        let faults = Arc::new(Mutex::new(Faults::default()));
        let fs = FaultFs {
            source: fs::canonicalize(source).expect("the source directory exists"),
            faults: faults.clone(),
            inodes: Inodes::new(),
            files: HashMap::new(),
            next_fh: 1,
        };
        let options = [
            MountOption::FSName("cairn-faultfs".into()),
            MountOption::Subtype("faultfs".into()),
            MountOption::RW,
        ];
        let session = match fuser::spawn_mount2(fs, point.path(), &options) {
            Ok(s) => s,
            Err(e) => {
                missing(format!(
                    "cannot mount the EIO fault layer at {}: {e}",
                    point.path().display()
                ));
                return None;
            }
        };
        Some(Mounted {
            session: Some(session),
            faults,
            point,
        })
    }
}

impl Mounted {
    /// The mount point: the source directory as seen through the fault layer.
    pub fn path(&self) -> &Path {
        self.point.path()
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every read of `rel` (relative to the source) that overlaps `range` fails with EIO.
    pub fn fail_reads(&self, rel: impl AsRef<Path>, range: Range<u64>) {
        self.add(rel.as_ref(), range, None);
    }

    /// The next `times` reads of `rel` that overlap `range` fail with EIO; later ones work.
    pub fn fail_reads_times(&self, rel: impl AsRef<Path>, range: Range<u64>, times: u64) {
        assert!(times > 0, "a fault that fails no read is no fault");
        self.add(rel.as_ref(), range, Some(times));
    }

    fn add(&self, rel: &Path, range: Range<u64>, left: Option<u64>) {
        assert!(
            range.start < range.end,
            "an empty range {range:?} fails nothing"
        );
        self.faults()
            .reads
            .entry(rel.to_path_buf())
            .or_default()
            .push(ReadFault { range, left });
    }

    /// Every open of `rel` fails with EIO (its directory entry and size stay visible).
    pub fn fail_opens(&self, rel: impl AsRef<Path>) {
        self.faults().opens.insert(rel.as_ref().to_path_buf());
    }

    /// Ends every fault (the counts of [`Mounted::hits`] stay).
    pub fn clear(&self) {
        let mut f = self.faults();
        f.reads.clear();
        f.opens.clear();
    }

    /// How many reads and opens of `rel` its faults have failed so far.
    pub fn hits(&self, rel: impl AsRef<Path>) -> u64 {
        self.faults().hits.get(rel.as_ref()).copied().unwrap_or(0)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // Unmounts; the session's thread ends when the kernel closes the channel.
        drop(self.session.take());
    }
}

//! The FUSE file system itself: an inode table built as the kernel looks things up, the
//! top-level listings (snapshots, ids, hosts, tags) re-read when they are older than a second,
//! and reads handed to a pool of threads that answer the kernel themselves.
//!
//! Inode numbers: 1 is the root; every other number is handed out once, on first sight, and
//! never reused during the mount. A snapshot gets one directory inode per place it is shown
//! (`snapshots/`, `ids/`, `hosts/<h>/`, `tags/<t>/`), since a directory has one parent; files
//! with `links > 1` and the same `(device, inode)` below one such directory share an inode.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{
    FileAttr, FileType, Filesystem, KernelConfig, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry,
    ReplyOpen, ReplyXattr, Request,
};

use super::cache::BlobCache;
use super::MountOptions;
use crate::backend::FileKind;
use crate::error::Result;
use crate::id::SnapshotId;
use crate::repo::SnapshotFilter;
use crate::snapshot::Snapshot;
use crate::tree::{Node, NodeKind, Timestamp};
use crate::Repository;

/// A top-level listing older than this is read again when it is visited.
pub(super) const RELIST_AFTER: Duration = Duration::from_secs(1);
/// How long the kernel may keep what a snapshot's contents look like: they never change.
const TTL_SNAPSHOT: Duration = Duration::from_secs(3600);
/// How long the kernel may keep the top-level listings' attributes: they change with new
/// snapshots.
const TTL_LISTING: Duration = Duration::from_secs(1);
/// The largest read-ahead asked of the kernel (it may grant less).
const MAX_READAHEAD: u32 = 8 << 20;
/// Kernel requests in flight at once (reads served in parallel by the pool).
const MAX_BACKGROUND: u16 = 64;
/// Requests queued for the read threads: each holds a reply, not data.
const READ_QUEUE: usize = 256;
/// Blobs opened ahead of a sequential reader (about 2 MiB at the default chunk size), so that
/// every core decrypts while the reader copies.
const PREFETCH_BLOBS: usize = 4;

const ROOT: u64 = 1;

/// A top-level directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Listing {
    Snapshots,
    Ids,
    Hosts,
    Tags,
    Host(String),
    Tag(String),
}

/// What an inode is.
enum What {
    Root,
    Listing(Listing),
    /// `snapshots/latest`: its target follows the newest snapshot.
    Latest,
    /// A snapshot's root tree `/`.
    SnapRoot {
        snap: Arc<Snapshot>,
    },
    /// An entry below a snapshot; `root` is its snapshot directory's inode, `starts` the
    /// offset of each content part in the file (files only).
    Node {
        node: Arc<Node>,
        root: u64,
        starts: Arc<[u64]>,
    },
}

/// How a child is found again under its parent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Name(Vec<u8>),
    Snap(SnapshotId),
}

/// A directory's entries below a snapshot, sorted by name: (name, inode).
type Children = Arc<Vec<(Vec<u8>, u64)>>;

/// One snapshot shown, with its directory name.
struct Shown {
    id: SnapshotId,
    snap: Arc<Snapshot>,
    name: String,
}

pub(super) struct CairnFs {
    repo: Arc<RwLock<Repository>>,
    filter: SnapshotFilter,
    /// Inode n is `inodes[n - 1]`.
    inodes: Vec<What>,
    /// Each inode's parent (the root is its own).
    parents: Vec<u64>,
    /// Children already given an inode: (parent, key) → inode.
    memo: HashMap<(u64, Key), u64>,
    /// Hard-link groups: (snapshot directory inode, device, inode) → inode.
    links: HashMap<(u64, u64, u64), u64>,
    /// Directory contents below snapshots, once read: name → inode, sorted by name.
    dirs: HashMap<u64, Children>,
    /// Subdirectories of each directory in `dirs`: its link count is 2 plus these.
    subdirs: HashMap<u64, u32>,
    /// The snapshots read so far, by id (each read once).
    known: HashMap<SnapshotId, Arc<Snapshot>>,
    /// The snapshots shown, oldest first, and when they were listed.
    shown: Vec<Shown>,
    listed_at: Option<Instant>,
    mounted_at: SystemTime,
    uid: u32,
    gid: u32,
    cache: Arc<BlobCache>,
    pool: Option<crossbeam_channel::Sender<Box<dyn FnOnce() + Send>>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    /// The mount point's canonical path, until the first open raises its read-ahead.
    pub(super) readahead_at: Option<Vec<u8>>,
    /// The kernel opens files without asking (FUSE_NO_OPEN_SUPPORT) once `open` answers
    /// ENOSYS: nothing here keeps per-open state, content never changes, and each open and
    /// close of a small file is two requests fewer. Not for directories: a zero-message
    /// opendir lets the kernel cache listings, and the top-level ones change.
    zero_message_open: bool,
}

impl CairnFs {
    pub(super) fn new(repo: Arc<RwLock<Repository>>, opts: MountOptions) -> Result<Self> {
        let cache = Arc::new(BlobCache::new(repo.clone(), opts.cache_bytes));
        let (tx, rx) = crossbeam_channel::bounded::<Box<dyn FnOnce() + Send>>(READ_QUEUE);
        let mut workers = Vec::new();
        for i in 0..opts.read_threads.max(1) {
            let rx = rx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("cairn-mount-read-{i}"))
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                })
                .map_err(|e| crate::Error::InvalidInput(format!("starting a read thread: {e}")))?;
            workers.push(handle);
        }
        let mut fs = CairnFs {
            repo,
            filter: opts.filter,
            inodes: vec![What::Root],
            parents: vec![ROOT],
            memo: HashMap::new(),
            links: HashMap::new(),
            dirs: HashMap::new(),
            subdirs: HashMap::new(),
            known: HashMap::new(),
            shown: Vec::new(),
            listed_at: None,
            mounted_at: SystemTime::now(),
            // SAFETY: getuid and getgid have no preconditions.
            uid: unsafe { libc::getuid() },
            gid: unsafe { libc::getgid() },
            cache,
            pool: Some(tx),
            workers,
            readahead_at: None,
            zero_message_open: false,
        };
        fs.relist()?;
        Ok(fs)
    }

    fn repo(&self) -> RwLockReadGuard<'_, Repository> {
        self.repo.read().unwrap_or_else(|p| p.into_inner())
    }

    fn what(&self, ino: u64) -> Option<&What> {
        ino.checked_sub(1).and_then(|i| self.inodes.get(i as usize))
    }

    /// The inode of a child, made on first sight.
    fn child(&mut self, parent: u64, key: Key, what: impl FnOnce() -> What) -> u64 {
        if let Some(&ino) = self.memo.get(&(parent, key.clone())) {
            return ino;
        }
        let ino = self.push(parent, what());
        self.memo.insert((parent, key), ino);
        ino
    }

    fn push(&mut self, parent: u64, what: What) -> u64 {
        self.inodes.push(what);
        self.parents.push(parent);
        self.inodes.len() as u64
    }

    /// Reads the snapshot list again if it is older than [`RELIST_AFTER`]; a failure keeps
    /// the previous list.
    fn maybe_relist(&mut self) {
        if self.listed_at.is_none_or(|t| t.elapsed() >= RELIST_AFTER) {
            let _ = self.relist();
        }
    }

    /// Lists the repository's snapshots, reading the ones not seen before, and names them.
    fn relist(&mut self) -> Result<()> {
        let names = self.repo().list_names(FileKind::Snapshot)?;
        // A snapshot made since the last listing names blobs of index files written since:
        // read the index again first.
        let first = self.listed_at.is_none();
        let new = names
            .iter()
            .any(|n| SnapshotId::from_hex(n).is_some_and(|id| !self.known.contains_key(&id)));
        if new && !first {
            self.repo
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .load_index()?;
        }
        let mut now: Vec<(SnapshotId, Arc<Snapshot>)> = Vec::new();
        for name in names {
            let Some(id) = SnapshotId::from_hex(&name) else {
                continue;
            };
            let snap = match self.known.get(&id) {
                Some(s) => s.clone(),
                None => match self
                    .repo
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .read_snapshot(&id)
                {
                    Ok(s) => {
                        let s = Arc::new(s);
                        self.known.insert(id, s.clone());
                        s
                    }
                    // A damaged or newer snapshot is not shown (`cairn check` names it).
                    Err(_) => continue,
                },
            };
            if self.filter.matches(&snap) {
                now.push((id, snap));
            }
        }
        now.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
        let mut taken = BTreeSet::new();
        self.shown = now
            .into_iter()
            .map(|(id, snap)| {
                let name = unique_name(&mut taken, time_name(&snap));
                Shown { id, snap, name }
            })
            .collect();
        self.listed_at = Some(Instant::now());
        Ok(())
    }

    /// A listing's entries: (name, inode, type).
    fn listing_entries(&mut self, ino: u64, l: &Listing) -> Vec<(Vec<u8>, u64, FileType)> {
        let mut out = Vec::new();
        match l {
            Listing::Snapshots | Listing::Host(_) | Listing::Tag(_) => {
                let picked: Vec<(SnapshotId, Arc<Snapshot>, String)> = self
                    .shown
                    .iter()
                    .filter(|s| match l {
                        Listing::Host(h) => &dir_name(&s.snap.host) == h,
                        Listing::Tag(t) => s.snap.tags.iter().any(|x| &dir_name(x) == t),
                        _ => true,
                    })
                    .map(|s| (s.id, s.snap.clone(), s.name.clone()))
                    .collect();
                for (id, snap, name) in picked {
                    let child = self.child(ino, Key::Snap(id), || What::SnapRoot { snap });
                    out.push((name.into_bytes(), child, FileType::Directory));
                }
                if *l == Listing::Snapshots && !self.shown.is_empty() {
                    let child = self.child(ino, Key::Name(b"latest".to_vec()), || What::Latest);
                    out.push((b"latest".to_vec(), child, FileType::Symlink));
                }
            }
            Listing::Ids => {
                let picked: Vec<(SnapshotId, Arc<Snapshot>)> =
                    self.shown.iter().map(|s| (s.id, s.snap.clone())).collect();
                for (id, snap) in picked {
                    let child = self.child(ino, Key::Snap(id), || What::SnapRoot { snap });
                    out.push((id.short().into_bytes(), child, FileType::Directory));
                }
            }
            Listing::Hosts | Listing::Tags => {
                let mut names = BTreeSet::new();
                for s in &self.shown {
                    if *l == Listing::Hosts {
                        names.insert(dir_name(&s.snap.host));
                    } else {
                        names.extend(s.snap.tags.iter().map(|t| dir_name(t)));
                    }
                }
                for name in names {
                    let what = if *l == Listing::Hosts {
                        Listing::Host(name.clone())
                    } else {
                        Listing::Tag(name.clone())
                    };
                    let child = self.child(ino, Key::Name(name.clone().into_bytes()), || {
                        What::Listing(what)
                    });
                    out.push((name.into_bytes(), child, FileType::Directory));
                }
            }
        }
        out
    }

    /// Any directory's entries (without `.` and `..`), reading a tree if need be.
    fn entries(&mut self, ino: u64) -> std::result::Result<Vec<(Vec<u8>, u64, FileType)>, i32> {
        match self.what(ino) {
            None => Err(libc::ENOENT),
            Some(What::Root) => {
                self.maybe_relist();
                let mut out = Vec::new();
                for (name, l) in [
                    ("hosts", Listing::Hosts),
                    ("ids", Listing::Ids),
                    ("snapshots", Listing::Snapshots),
                    ("tags", Listing::Tags),
                ] {
                    let child = self.child(ROOT, Key::Name(name.into()), || What::Listing(l));
                    out.push((name.as_bytes().to_vec(), child, FileType::Directory));
                }
                Ok(out)
            }
            Some(What::Listing(l)) => {
                let l = l.clone();
                self.maybe_relist();
                Ok(self.listing_entries(ino, &l))
            }
            Some(What::SnapRoot { .. }) | Some(What::Node { .. }) => {
                let children = self.tree_children(ino)?;
                Ok(children
                    .iter()
                    .map(|(name, child)| {
                        let kind = match self.what(*child) {
                            Some(What::Node { node, .. }) => file_type(node.kind),
                            _ => FileType::RegularFile,
                        };
                        (name.clone(), *child, kind)
                    })
                    .collect())
            }
            Some(What::Latest) => Err(libc::ENOTDIR),
        }
    }

    /// A directory below a snapshot: its entries, each given an inode, read once.
    fn tree_children(&mut self, ino: u64) -> std::result::Result<Children, i32> {
        if let Some(c) = self.dirs.get(&ino) {
            return Ok(c.clone());
        }
        let (tree_id, root) = match self.what(ino) {
            Some(What::SnapRoot { snap }) => (snap.tree, ino),
            Some(What::Node { node, root, .. }) => match (node.kind, node.subtree) {
                (NodeKind::Dir, Some(t)) => (t, *root),
                (NodeKind::Dir, None) => return Err(libc::EIO),
                _ => return Err(libc::ENOTDIR),
            },
            _ => return Err(libc::ENOTDIR),
        };
        let tree = self.repo().read_tree(&tree_id).map_err(|_| libc::EIO)?;
        let mut out = Vec::with_capacity(tree.nodes.len());
        for node in tree.nodes {
            let name = node.name.clone();
            let group = (node.kind != NodeKind::Dir && node.links > 1).then_some((
                root,
                node.device,
                node.inode,
            ));
            let known = group.and_then(|g| self.links.get(&g).copied());
            let child = match known {
                Some(c) => c,
                None => {
                    let starts = starts(&node);
                    let what = What::Node {
                        node: Arc::new(node),
                        root,
                        starts,
                    };
                    let c = self.child(ino, Key::Name(name.clone()), || what);
                    if let Some(g) = group {
                        self.links.insert(g, c);
                    }
                    c
                }
            };
            out.push((name, child));
        }
        let out = Arc::new(out);
        let subdirs = out
            .iter()
            .filter(|(_, c)| {
                matches!(self.what(*c), Some(What::Node { node, .. }) if node.kind == NodeKind::Dir)
            })
            .count();
        self.subdirs
            .insert(ino, subdirs.try_into().unwrap_or(u32::MAX - 2));
        self.dirs.insert(ino, out.clone());
        Ok(out)
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let base = FileAttr {
            ino,
            size: 0,
            blocks: 0,
            atime: self.mounted_at,
            mtime: self.mounted_at,
            ctime: self.mounted_at,
            crtime: self.mounted_at,
            kind: FileType::Directory,
            perm: 0o555,
            nlink: 2,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        };
        Some(match self.what(ino)? {
            What::Root | What::Listing(_) => base,
            What::Latest => {
                let size = self.shown.last().map_or(0, |s| s.name.len() as u64);
                FileAttr {
                    kind: FileType::Symlink,
                    perm: 0o777,
                    nlink: 1,
                    size,
                    ..base
                }
            }
            What::SnapRoot { snap } => {
                let t = system_time_ns(snap.time_ns as i128);
                FileAttr {
                    atime: t,
                    mtime: t,
                    ctime: t,
                    crtime: t,
                    perm: 0o755,
                    nlink: self.dir_links(ino),
                    ..base
                }
            }
            What::Node { node, .. } => {
                let mtime = system_time(node.mtime);
                FileAttr {
                    size: node.size,
                    blocks: node.size.div_ceil(512),
                    atime: mtime,
                    mtime,
                    ctime: system_time(node.ctime),
                    crtime: mtime,
                    kind: file_type(node.kind),
                    perm: (node.mode & 0o7777) as u16,
                    nlink: if node.kind == NodeKind::Dir {
                        self.dir_links(ino)
                    } else {
                        node.links.clamp(1, u32::MAX as u64) as u32
                    },
                    uid: node.uid,
                    gid: node.gid,
                    rdev: node.rdev as u32,
                    ..base
                }
            }
        })
    }

    /// A directory's link count as a file system counts it: 2, plus one per subdirectory
    /// (known once its tree is read: [`Self::attr_of`] reads it).
    fn dir_links(&self, ino: u64) -> u32 {
        2 + self.subdirs.get(&ino).copied().unwrap_or(0)
    }

    /// The attributes of an inode, reading a directory's tree first so that its link count
    /// is exact.
    fn attr_of(&mut self, ino: u64) -> Option<FileAttr> {
        let dir = match self.what(ino) {
            Some(What::SnapRoot { .. }) => true,
            Some(What::Node { node, .. }) => node.kind == NodeKind::Dir,
            _ => false,
        };
        if dir {
            let _ = self.tree_children(ino);
        }
        self.attr(ino)
    }

    fn ttl(&self, ino: u64) -> Duration {
        match self.what(ino) {
            Some(What::Node { .. }) | Some(What::SnapRoot { .. }) => TTL_SNAPSHOT,
            _ => TTL_LISTING,
        }
    }

    fn xattrs(&self, ino: u64) -> &[crate::tree::Xattr] {
        match self.what(ino) {
            Some(What::Node { node, .. }) => &node.xattrs,
            _ => &[],
        }
    }

    /// Lists directory `ino` from `offset` (the kernel's cookie: the index of the next
    /// entry, "." and ".." first) through `add(self, child, next offset, kind, name)`, which
    /// says when the reply is full.
    fn list_dir(
        &mut self,
        ino: u64,
        offset: i64,
        mut add: impl FnMut(&mut Self, u64, i64, FileType, &[u8]) -> bool,
    ) -> std::result::Result<(), libc::c_int> {
        let parent = self
            .parents
            .get(ino.saturating_sub(1) as usize)
            .copied()
            .unwrap_or(ROOT);
        let dots = [
            (b".".to_vec(), ino, FileType::Directory),
            (b"..".to_vec(), parent, FileType::Directory),
        ];
        let skip = offset.max(0) as usize;
        if matches!(
            self.what(ino),
            Some(What::SnapRoot { .. }) | Some(What::Node { .. })
        ) {
            // A snapshot's directory: its entries straight from the list read once, so a
            // large directory listed in many calls costs each call only what it returns.
            let children = self.tree_children(ino)?;
            for (i, (name, child, kind)) in dots.into_iter().enumerate().skip(skip) {
                if add(self, child, i as i64 + 1, kind, &name) {
                    return Ok(());
                }
            }
            for (i, (name, child)) in children.iter().enumerate().skip(skip.saturating_sub(2)) {
                let kind = match self.what(*child) {
                    Some(What::Node { node, .. }) => file_type(node.kind),
                    _ => FileType::RegularFile,
                };
                if add(self, *child, i as i64 + 3, kind, name) {
                    break;
                }
            }
            return Ok(());
        }
        let entries = self.entries(ino)?;
        for (i, (name, child, kind)) in dots.into_iter().chain(entries).enumerate().skip(skip) {
            if add(self, child, i as i64 + 1, kind, &name) {
                break;
            }
        }
        Ok(())
    }

    fn spawn(&self, job: Box<dyn FnOnce() + Send>) {
        if let Some(pool) = &self.pool {
            if let Err(e) = pool.send(job) {
                // The pool is gone (only while shutting down): serve on this thread.
                (e.into_inner())();
            }
        }
    }
}

impl Filesystem for CairnFs {
    fn init(
        &mut self,
        _req: &Request<'_>,
        config: &mut KernelConfig,
    ) -> std::result::Result<(), libc::c_int> {
        // The kernel caps each value; what it grants is fine.
        let _ = config
            .set_max_readahead(MAX_READAHEAD)
            .or_else(|max| config.set_max_readahead(max));
        let _ = config
            .set_max_background(MAX_BACKGROUND)
            .or_else(|max| config.set_max_background(max));
        self.zero_message_open = config
            .add_capabilities(fuser::consts::FUSE_NO_OPEN_SUPPORT)
            .is_ok();
        // Always READDIRPLUS (not the kernel's adaptive choice, which stops after the first
        // batch unless lookups follow it: `find` does no lookups, `cat` after it does).
        let _ = config.add_capabilities(fuser::consts::FUSE_DO_READDIRPLUS);
        Ok(())
    }

    fn destroy(&mut self) {
        // Closing the queue ends the read threads once the queued reads are answered.
        self.pool = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let found = match self.what(parent) {
            Some(What::SnapRoot { .. }) | Some(What::Node { .. }) => {
                match self.tree_children(parent) {
                    Ok(c) => c
                        .binary_search_by(|(n, _)| n.as_slice().cmp(name.as_bytes()))
                        .ok()
                        .map(|i| c[i].1)
                        .ok_or(libc::ENOENT),
                    Err(e) => Err(e),
                }
            }
            _ => self.entries(parent).and_then(|e| {
                e.into_iter()
                    .find(|(n, _, _)| n.as_slice() == name.as_bytes())
                    .map(|(_, ino, _)| ino)
                    .ok_or(libc::ENOENT)
            }),
        };
        match found.and_then(|ino| self.attr_of(ino).ok_or(libc::ENOENT)) {
            Ok(attr) => reply.entry(&self.ttl(attr.ino), &attr, 0),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        if matches!(self.what(ino), Some(What::Latest)) {
            self.maybe_relist();
        }
        match self.attr_of(ino) {
            Some(attr) => reply.attr(&self.ttl(ino), &attr),
            None => reply.error(libc::ENOENT),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        match self.what(ino) {
            Some(What::Latest) => {
                self.maybe_relist();
                match self.shown.last() {
                    Some(s) => reply.data(s.name.as_bytes()),
                    None => reply.error(libc::ENOENT),
                }
            }
            Some(What::Node { node, .. }) => match &node.target {
                Some(t) if node.kind == NodeKind::Symlink => reply.data(t),
                _ => reply.error(libc::EINVAL),
            },
            Some(_) => reply.error(libc::EINVAL),
            None => reply.error(libc::ENOENT),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(libc::EROFS);
        }
        match self.what(ino) {
            Some(What::Node { node, .. }) if node.kind == NodeKind::File => {
                if let Some(at) = self.readahead_at.take() {
                    super::raise_readahead(&at);
                }
                if self.zero_message_open {
                    // From now on the kernel opens without asking, keeping its page cache
                    // across opens (what it does for a file system without `open`).
                    return reply.error(libc::ENOSYS);
                }
                // The content never changes: the kernel may keep its page cache across opens.
                reply.opened(0, fuser::consts::FOPEN_KEEP_CACHE)
            }
            Some(What::Node { .. }) => reply.error(libc::EACCES),
            Some(_) => reply.error(libc::EISDIR),
            None => reply.error(libc::ENOENT),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let (node, starts) = match self.what(ino) {
            Some(What::Node { node, starts, .. }) if node.kind == NodeKind::File => {
                (node.clone(), starts.clone())
            }
            Some(_) => return reply.error(libc::EISDIR),
            None => return reply.error(libc::ENOENT),
        };
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(libc::EINVAL);
        };
        let cache = self.cache.clone();
        let prefetch = self.cache.clone();
        let pool = self.pool.clone();
        self.spawn(Box::new(move || {
            match read_range(&cache, &node, &starts, offset, size as u64) {
                Ok((data, ahead)) => {
                    reply.data(&data);
                    // A reader that just entered a blob will likely want the next ones:
                    // open them now, in parallel, unless the queue is full.
                    if let Some(pool) = pool {
                        for id in ahead {
                            let cache = prefetch.clone();
                            let _ = pool.try_send(Box::new(move || {
                                let _ = cache.get(&id);
                            }));
                        }
                    }
                }
                Err(e) => reply.error(e),
            }
        }));
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        match self.attr(ino) {
            Some(a) if a.kind == FileType::Directory => reply.opened(0, 0),
            Some(_) => reply.error(libc::ENOTDIR),
            None => reply.error(libc::ENOENT),
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
        let full = self.list_dir(ino, offset, |_, child, off, kind, name| {
            reply.add(child, off, kind, OsStr::from_bytes(name))
        });
        match full {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    /// READDIR and LOOKUP in one (FUSE_DO_READDIRPLUS): a reader that walks a tree and then
    /// opens its files (`find`, `cp -r`, `rsync`) finds every entry already known to the
    /// kernel, one request per file fewer.
    fn readdirplus(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: fuser::ReplyDirectoryPlus,
    ) {
        let full = self.list_dir(ino, offset, |fs, child, off, _, name| {
            // "." and ".." carry attributes the kernel ignores; every other entry its own,
            // exact (a directory's tree is read for its link count, as `lookup` does).
            let attr_ino = if name == b"." || name == b".." {
                ino
            } else {
                child
            };
            match fs.attr_of(attr_ino) {
                Some(attr) => {
                    let ttl = fs.ttl(attr_ino);
                    let attr = FileAttr { ino: child, ..attr };
                    reply.add(child, off, OsStr::from_bytes(name), &ttl, &attr, 0)
                }
                None => false,
            }
        });
        match full {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: fuser::ReplyStatfs) {
        reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
    }

    fn getxattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        name: &OsStr,
        size: u32,
        reply: ReplyXattr,
    ) {
        if self.what(ino).is_none() {
            return reply.error(libc::ENOENT);
        }
        let found = self
            .xattrs(ino)
            .iter()
            .find(|x| x.0 == name.as_bytes())
            .map(|x| x.1.clone());
        match found {
            None => reply.error(libc::ENODATA),
            Some(v) => xattr_reply(reply, size, &v),
        }
    }

    fn listxattr(&mut self, _req: &Request<'_>, ino: u64, size: u32, reply: ReplyXattr) {
        if self.what(ino).is_none() {
            return reply.error(libc::ENOENT);
        }
        let mut list = Vec::new();
        for x in self.xattrs(ino) {
            list.extend_from_slice(&x.0);
            list.push(0);
        }
        xattr_reply(reply, size, &list);
    }

    fn access(&mut self, _req: &Request<'_>, ino: u64, mask: i32, reply: fuser::ReplyEmpty) {
        if self.what(ino).is_none() {
            reply.error(libc::ENOENT)
        } else if mask & libc::W_OK != 0 {
            reply.error(libc::EROFS)
        } else {
            reply.ok()
        }
    }
}

/// Answers a getxattr/listxattr: the length when asked for it (size 0), else the bytes if
/// they fit.
fn xattr_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32)
    } else if (size as usize) < value.len() {
        reply.error(libc::ERANGE)
    } else {
        reply.data(value)
    }
}

/// The bytes `[offset, offset + size)` of a file (fewer at its end), and, when the range
/// starts a blob, the next blobs a sequential reader will want. Only the blobs covering the
/// range are read: the first is found by binary search in the parts' start offsets.
fn read_range(
    cache: &BlobCache,
    node: &Node,
    starts: &[u64],
    offset: u64,
    size: u64,
) -> std::result::Result<(Vec<u8>, Vec<crate::id::BlobId>), i32> {
    let end = offset.saturating_add(size).min(node.size);
    if offset >= end {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut out = Vec::with_capacity((end - offset) as usize);
    let first = starts.partition_point(|&s| s <= offset).saturating_sub(1);
    let entered = starts.get(first).is_some_and(|&s| offset - s < size);
    let mut i = first;
    let mut pos = offset;
    while pos < end {
        let (Some(part), Some(&start)) = (node.content.get(i), starts.get(i)) else {
            // The parts are shorter than the size the node records: damage.
            return Err(libc::EIO);
        };
        let within = pos - start;
        let Some(left) = part.len().checked_sub(within) else {
            return Err(libc::EIO);
        };
        let take = left.min(end - pos);
        match part.chunk() {
            None => out.resize(out.len() + take as usize, 0),
            Some(id) => {
                let blob = cache.get(&id)?;
                if blob.len() as u64 != part.len() {
                    return Err(libc::EIO);
                }
                out.extend_from_slice(&blob[within as usize..(within + take) as usize]);
            }
        }
        pos += take;
        i += 1;
    }
    let ahead = if entered {
        node.content[i.min(node.content.len())..]
            .iter()
            .filter_map(|p| p.chunk())
            .take(PREFETCH_BLOBS)
            .collect()
    } else {
        Vec::new()
    };
    Ok((out, ahead))
}

/// Where each content part starts in the file.
fn starts(node: &Node) -> Arc<[u64]> {
    let mut at = 0u64;
    node.content
        .iter()
        .map(|p| {
            let s = at;
            at = at.saturating_add(p.len());
            s
        })
        .collect()
}

fn file_type(k: NodeKind) -> FileType {
    match k {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::CharDevice => FileType::CharDevice,
        NodeKind::BlockDevice => FileType::BlockDevice,
        NodeKind::Socket => FileType::Socket,
    }
}

fn system_time(t: Timestamp) -> SystemTime {
    system_time_ns(t.as_nanos())
}

fn system_time_ns(ns: i128) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs().min(u64::MAX as u128) as u64);
    if ns >= 0 {
        UNIX_EPOCH.checked_add(d).unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH.checked_sub(d).unwrap_or(UNIX_EPOCH)
    }
}

/// A snapshot's directory name: its time with the offset it was taken at, to the second
/// (`2026-12-05T22:10:03+00:00`, as restic names them).
pub(super) fn time_name(s: &Snapshot) -> String {
    let ts =
        jiff::Timestamp::from_nanosecond(s.time_ns as i128).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let off = jiff::tz::Offset::from_seconds(s.tz_offset_s).unwrap_or(jiff::tz::Offset::UTC);
    ts.to_zoned(jiff::tz::TimeZone::fixed(off))
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// `name`, or `name-1`, `name-2`, … for the second and later snapshots of the same second.
pub(super) fn unique_name(taken: &mut BTreeSet<String>, name: String) -> String {
    let mut candidate = name.clone();
    let mut n = 0u32;
    while taken.contains(&candidate) {
        n += 1;
        candidate = format!("{name}-{n}");
    }
    taken.insert(candidate.clone());
    candidate
}

/// A host or tag as a directory name: `/` becomes `_`, an empty one `_`, `.`/`..` get a `_`.
pub(super) fn dir_name(s: &str) -> String {
    let s = s.replace(['/', '\0'], "_");
    match s.as_str() {
        "" => "_".into(),
        "." | ".." => format!("{s}_"),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_of_the_same_second_get_distinct_names_in_order() {
        let mut taken = BTreeSet::new();
        let a = unique_name(&mut taken, "2026-12-05T22:10:03+00:00".into());
        let b = unique_name(&mut taken, "2026-12-05T22:10:03+00:00".into());
        let c = unique_name(&mut taken, "2026-12-05T22:10:03+00:00".into());
        assert_eq!(a, "2026-12-05T22:10:03+00:00");
        assert_eq!(b, "2026-12-05T22:10:03+00:00-1");
        assert_eq!(c, "2026-12-05T22:10:03+00:00-2");
    }

    #[test]
    fn host_and_tag_names_that_are_not_file_names_are_made_into_ones() {
        assert_eq!(dir_name("laptop"), "laptop");
        assert_eq!(dir_name("a/b"), "a_b");
        assert_eq!(dir_name(""), "_");
        assert_eq!(dir_name("."), "._");
        assert_eq!(dir_name(".."), ".._");
    }

    #[test]
    fn part_starts_are_cumulative_lengths() {
        let mut n = Node::new(b"f".to_vec(), NodeKind::File);
        n.content = vec![
            crate::tree::ContentPart(None, 10),
            crate::tree::ContentPart(None, 0),
            crate::tree::ContentPart(None, 5),
        ];
        assert_eq!(&*starts(&n), &[0, 10, 10]);
    }
}

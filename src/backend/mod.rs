//! The storage seam: a small blocking trait that moves opaque bytes (repo-format.md §10).
//!
//! A backend knows nothing about encryption, compression or ids. Its one promise: when `put`
//! returns, the object is stored whole and durably under its final name, and no partial object
//! is ever visible under a final name.
//!
//! Every whole-object read is bounded ([`FileKind::max_len`]): a file that is larger than any
//! object of its kind can be (or grows while it is read, or is a device) is reported as
//! [`ObjectTooLarge`], never read into memory.

use std::fmt;
use std::io;

mod cache;
mod failing;
mod fault;
mod limit;
mod local;
mod location;
mod mem;
#[cfg(feature = "remote")]
mod paced_http;
#[cfg(feature = "remote")]
mod remote;
mod ssh;
mod unreadable;

pub use cache::{
    create_private_dir, write_private_file, write_private_file_durable, CachedBackend,
};
pub use fault::FaultBackend;
pub use limit::{Clock, Limits, RateLimiter};
pub use local::{LayoutError, LocalBackend, NotAnObject};
pub use location::{Location, LocationError};
pub use mem::MemBackend;
#[cfg(feature = "remote")]
pub use remote::RemoteBackend;
pub use ssh::{SshBackend, SshOptions};
pub use unreadable::{is_read_error, read_around_errors, retry_read, Unreadable, SECTOR};

/// How a remote backend behaves on the wire (ignored by local directories).
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    /// Transfers in flight at once (`--connections`).
    pub connections: usize,
    /// How long to keep retrying an operation while the server fails (`--retry-timeout`).
    pub retry_for: std::time::Duration,
    /// Region and credentials of an S3-compatible bucket (ignored by SFTP, which runs `ssh`).
    pub s3: S3Credentials,
    /// The program an `ssh://` location's host runs as `PROGRAM serve --repo PATH` (`cairn`;
    /// the binary takes another from `CAIRN_REMOTE_COMMAND`).
    pub serve_program: String,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            connections: 4,
            retry_for: std::time::Duration::from_secs(120),
            s3: S3Credentials::default(),
            serve_program: "cairn".into(),
        }
    }
}

/// The region and credentials requests to an S3-compatible bucket are signed with, as values:
/// the library reads no environment and no AWS configuration file (the `cairn` binary takes
/// them from `AWS_*` variables and `~/.aws/`, docs/cli.md "Environment"). Without an access
/// key and a secret, every request fails as permission denied before it is sent.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Credentials {
    /// The region to sign for; None: `us-east-1`, which servers that ignore regions accept.
    pub region: Option<String>,
    /// The access key id (`AWS_ACCESS_KEY_ID`); used only together with
    /// [`Self::secret_access_key`].
    pub access_key_id: Option<String>,
    /// The secret access key (`AWS_SECRET_ACCESS_KEY`); used only together with
    /// [`Self::access_key_id`]. `Debug` prints it redacted.
    pub secret_access_key: Option<String>,
    /// A temporary credential's session token (`AWS_SESSION_TOKEN`); None for a long-lived
    /// key. `Debug` prints it redacted.
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Credentials")
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .finish()
    }
}

/// Opens the backend for a location: a local directory, a `cairn serve` through ssh, or
/// (with the `remote` feature) an SFTP server or S3-compatible bucket; all paced by `limits`.
pub fn open_location(
    location: &Location,
    remote: RemoteOptions,
    limits: Limits,
) -> io::Result<std::sync::Arc<dyn Backend>> {
    match location {
        Location::Local(p) => Ok(std::sync::Arc::new(
            LocalBackend::new(p.clone()).with_limits(limits),
        )),
        Location::Ssh { .. } => Ok(std::sync::Arc::new(
            SshBackend::open(
                location,
                SshOptions {
                    ssh_program: "ssh".into(),
                    serve_program: remote.serve_program,
                    connections: remote.connections,
                    retry_for: remote.retry_for,
                },
            )?
            .with_limits(limits),
        )),
        #[cfg(feature = "remote")]
        _ => Ok(std::sync::Arc::new(
            RemoteBackend::open(location, remote)?.with_limits(limits),
        )),
        #[cfg(not(feature = "remote"))]
        _ => {
            let _ = (remote, limits);
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{location}: this cairn was built without remote repositories \
                     (cargo feature `remote`)"
                ),
            ))
        }
    }
}

/// A temporary name for a file being written (`.tmp-` and 16 random hex digits), in the
/// directory of its final name. A collision only makes a writer retry or fail its check.
pub(crate) fn temp_name() -> String {
    let mut r = [0u8; 8];
    let _ = getrandom::getrandom(&mut r);
    format!(".tmp-{}", hex::encode(r))
}

/// The kinds of files in a repository, each in its own place (repo-format.md §1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    /// The sealed repository config, the file `config` at the top (repo-format.md §3.1).
    Config,
    /// A key file, `keys/<id>` (repo-format.md §2.1).
    Key,
    /// The copy of a key file, `keys/<id>.copy`: one damaged key file never locks anyone out.
    KeyCopy,
    /// A pack of sealed blobs, `data/XX/<id>` under the first two hex digits of its name
    /// (repo-format.md §6).
    Pack,
    /// An index file, `index/<id>` (repo-format.md §8).
    Index,
    /// A snapshot, `snapshots/<id>` (repo-format.md §9).
    Snapshot,
    /// A lock file, `locks/<id>` (repo-format.md §10.3).
    Lock,
    /// Sealed records of recovery drills (`drills/`).
    Drill,
    /// A parity file of a group of packs, `parity/XX/<id>` under the first two hex digits of
    /// its name, like packs (repo-format.md §14).
    Parity,
}

impl FileKind {
    /// Every kind, for tools that walk a whole repository.
    pub const ALL: [FileKind; 9] = [
        FileKind::Config,
        FileKind::Key,
        FileKind::KeyCopy,
        FileKind::Pack,
        FileKind::Index,
        FileKind::Snapshot,
        FileKind::Lock,
        FileKind::Drill,
        FileKind::Parity,
    ];

    /// The directories `init` creates (repo-format.md §1.2); the others appear on first use.
    pub const LAYOUT_DIRS: [FileKind; 5] = [
        FileKind::Key,
        FileKind::Pack,
        FileKind::Index,
        FileKind::Snapshot,
        FileKind::Lock,
    ];

    /// The top-level directory of this kind (`config` is a file at the top).
    pub fn dir(self) -> &'static str {
        match self {
            FileKind::Config => "",
            FileKind::Key | FileKind::KeyCopy => "keys",
            FileKind::Pack => "data",
            FileKind::Index => "index",
            FileKind::Snapshot => "snapshots",
            FileKind::Lock => "locks",
            FileKind::Drill => "drills",
            FileKind::Parity => "parity",
        }
    }

    /// Whether files of this kind are spread over `XX/` subdirectories of their directory
    /// by the first two hex digits of their name (packs and parity files).
    pub fn fans_out(self) -> bool {
        matches!(self, FileKind::Pack | FileKind::Parity)
    }

    /// Repository-relative path of a named file: packs go under `data/XX/`.
    pub fn path(self, name: &str) -> String {
        match self {
            FileKind::Config => "config".to_string(),
            FileKind::KeyCopy => format!("keys/{name}.copy"),
            FileKind::Pack | FileKind::Parity => {
                format!("{}/{}/{}", self.dir(), name.get(..2).unwrap_or("00"), name)
            }
            k => format!("{}/{}", k.dir(), name),
        }
    }
}

impl FileKind {
    /// The largest file of this kind a reader ever loads whole; anything larger is damaged (or
    /// not cairn's), and reading it would only exhaust memory.
    pub fn max_len(self) -> u64 {
        /// A sealed object's flag byte, nonce and tag (repo-format.md §4.1, §4.3), and the magic
        /// and ephemeral key of one sealed to the public key (§4.6).
        const SEALED: u64 = 1 + crate::crypto::PUBLIC_SEAL_OVERHEAD as u64;
        match self {
            // repo-format.md §3.1: the config's plaintext is bounded at 1 MiB.
            FileKind::Config => (1 << 20) + SEALED,
            // repo-format.md §2.1: readers skip key files over 1 MiB (they are a few hundred bytes).
            FileKind::Key | FileKind::KeyCopy => 1 << 20,
            // repo-format.md §6.3: a blob area below 2 GiB, a header of at most 16 MiB, the trailer.
            FileKind::Pack => {
                crate::pack::MAX_PACK_LEN
                    + crate::pack::MAX_HEADER_LEN as u64
                    + crate::pack::TRAILER_LEN as u64
            }
            // repo-format.md §4.5: index files and snapshots decode to at most 1 GiB.
            FileKind::Index | FileKind::Snapshot => crate::format::MAX_METADATA_LEN as u64 + SEALED,
            // repo-format.md §4.5, §10.3: lock files decode to at most 64 KiB.
            FileKind::Lock => (64 << 10) + SEALED,
            // repo-format.md §9.1: drill records are read with a 1 MiB bound.
            FileKind::Drill => (1 << 20) + SEALED,
            // repo-format.md §14: a shard as long as the longest pack, a sealed header of at
            // most 1 GiB, the trailer.
            FileKind::Parity => {
                FileKind::Pack.max_len() + crate::format::MAX_METADATA_LEN as u64 + SEALED + 4
            }
        }
    }
}

/// A whole-object read refused because the stored file is larger than any object of its kind
/// can be (or is not a regular file of bounded size). Carried inside an [`io::Error`] of kind
/// [`io::ErrorKind::FileTooLarge`].
#[derive(Debug)]
pub struct ObjectTooLarge {
    /// Repository-relative path (`locks/<id>`).
    pub path: String,
    /// The bound that was exceeded, in bytes.
    pub limit: u64,
    /// The size the store reported, when it reported one.
    pub size: Option<u64>,
}

impl fmt::Display for ObjectTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.size {
            Some(n) => write!(f, "{} is {n} bytes", self.path)?,
            None => write!(f, "{} is larger than expected", self.path)?,
        }
        write!(
            f,
            ", more than any such file can be ({} bytes at most): it is damaged or not cairn's, \
             and is not read",
            self.limit
        )
    }
}

impl std::error::Error for ObjectTooLarge {}

impl ObjectTooLarge {
    /// The I/O error that carries it.
    pub fn error(kind: FileKind, name: &str, limit: u64, size: Option<u64>) -> io::Error {
        io::Error::new(
            io::ErrorKind::FileTooLarge,
            ObjectTooLarge {
                path: kind.path(name),
                limit,
                size,
            },
        )
    }
}

/// Reads at most `limit` bytes from `r`, which claims to hold `size` bytes: an object larger
/// than `limit` (by its size, or by what it yields) is [`ObjectTooLarge`], and no more than
/// `limit + 1` bytes are ever buffered.
pub(crate) fn read_at_most(
    r: impl io::Read,
    size: u64,
    limit: u64,
    kind: FileKind,
    name: &str,
) -> io::Result<Vec<u8>> {
    if size > limit {
        return Err(ObjectTooLarge::error(kind, name, limit, Some(size)));
    }
    let mut buf = Vec::with_capacity(size as usize);
    io::Read::read_to_end(&mut r.take(limit.saturating_add(1)), &mut buf)?;
    if buf.len() as u64 > limit {
        return Err(ObjectTooLarge::error(kind, name, limit, None));
    }
    Ok(buf)
}

/// Name of the config file.
pub const CONFIG_NAME: &str = "config";

/// Blocking storage of whole objects.
pub trait Backend: Send + Sync {
    /// Where this is, for messages.
    fn location(&self) -> String;

    /// Creates an empty repository layout. Fails with `AlreadyExists` if something non-empty is there.
    fn create(&self) -> io::Result<()>;

    /// Stores `data` whole and durably under `name`. Returns only once the object and the
    /// directory entry naming it are durable. Storing an existing name again is a no-op when
    /// the stored object has the same length (names are content hashes).
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()>;

    /// Stores `data` under `name` in place of whatever is stored there (the config when its
    /// settings change, a damaged pack rebuilt byte-identically). A local directory renames
    /// the durable new file over the old one, so a reader sees one or the other; elsewhere the
    /// old object is deleted first.
    fn replace(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()> {
        self.delete(kind, name)?;
        self.put(kind, name, data)
    }

    /// Stores an object like [`Self::put`], given its buffer: a backend that would otherwise
    /// copy the bytes (to hand them to a network client) keeps it and returns None; others
    /// return it for reuse.
    fn put_owned(&self, kind: FileKind, name: &str, data: Vec<u8>) -> io::Result<Option<Vec<u8>>> {
        self.put(kind, name, &data).map(|()| Some(data))
    }

    /// Reads a whole object, refusing ([`ObjectTooLarge`]) one larger than any object of its
    /// kind can be ([`FileKind::max_len`]). A missing object is `NotFound`.
    fn get(&self, kind: FileKind, name: &str) -> io::Result<Vec<u8>> {
        self.get_at_most(kind, name, kind.max_len())
    }

    /// Reads a whole object of at most `limit` bytes. A larger one (or one that grows past
    /// `limit` while it is read) is an [`ObjectTooLarge`] error, and at most `limit + 1` bytes
    /// are ever held in memory for it. A missing object is `NotFound`.
    fn get_at_most(&self, kind: FileKind, name: &str, limit: u64) -> io::Result<Vec<u8>>;

    /// Reads `len` bytes at `offset`. Short objects give `UnexpectedEof`.
    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: usize)
        -> io::Result<Vec<u8>>;

    /// Reads like [`Backend::get_range`] into `buf`, which the caller reuses from read to
    /// read (a restore reads thousands of ranges of up to 16 MiB); returns the bytes read.
    fn get_range_into<'b>(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        len: usize,
        buf: &'b mut Vec<u8>,
    ) -> io::Result<&'b [u8]> {
        *buf = self.get_range(kind, name, offset, len)?;
        Ok(&buf[..])
    }

    /// Names (64-hex only; temporary and foreign files are skipped) and sizes of one kind.
    fn list(&self, kind: FileKind) -> io::Result<Vec<(String, u64)>>;

    /// Removes an object. Removing a missing object is not an error.
    fn delete(&self, kind: FileKind, name: &str) -> io::Result<()>;

    /// Takes an OS advisory lock where the storage has one (a local directory): shared or
    /// exclusive, never waiting; it vanishes with the process. `Ok(None)` where there is none,
    /// `WouldBlock` when another process holds a conflicting one.
    fn os_lock(&self, _exclusive: bool) -> io::Result<Option<OsLock>> {
        Ok(None)
    }

    /// Removes temporary files interrupted writers left behind (only call this under an
    /// exclusive lock, when no writer can be running). Returns how many bytes were removed.
    fn remove_temporaries(&self) -> io::Result<u64> {
        Ok(0)
    }

    /// Transfers worth keeping in flight at once (pack uploads, restore reads).
    fn connections(&self) -> usize {
        2
    }

    /// Whether each transfer waits on a server (SFTP, S3): readers then keep
    /// [`Self::connections`] transfers in flight besides the threads working on what has
    /// arrived, rather than one thread per transfer.
    fn is_remote(&self) -> bool {
        false
    }

    /// Stores a pack that holds trees. A caching layer keeps a copy: directory listings and
    /// incremental backups then never download it again.
    fn put_tree_pack(&self, name: &str, data: &[u8]) -> io::Result<()> {
        self.put(FileKind::Pack, name, data)
    }

    /// Reads a range of a pack that holds trees (a caching layer serves it locally).
    fn get_tree_range(&self, name: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.get_range(FileKind::Pack, name, offset, len)
    }
}

/// Holds an OS lock until dropped.
pub struct OsLock(#[allow(dead_code)] Box<dyn std::any::Any + Send + Sync>);

impl OsLock {
    /// Wraps whatever keeps the OS lock held (an open descriptor with a `flock` on it); the
    /// lock is released when that value is dropped with this one.
    pub fn new(guard: impl std::any::Any + Send + Sync) -> Self {
        OsLock(Box::new(guard))
    }
}

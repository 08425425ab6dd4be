//! One typed error for the library. The CLI maps [`Error::kind`] to exit codes.

use std::path::PathBuf;

/// What class of failure this is; the CLI turns it into an exit code (docs/cli.md "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Any fatal error (exit 1).
    Fatal,
    /// The repository does not exist at the given location (exit 10).
    RepoMissing,
    /// The repository is locked by another process (exit 11).
    Locked,
    /// No key file opens with the given password (exit 12).
    WrongPassword,
    /// The user interrupted the command (exit 130).
    Interrupted,
}

/// Every failure the library reports. Each variant's message says what broke and, where there
/// is one, what to do next; [`Error::kind`] sorts them into exit codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No config and no key file at the location (the `String` is the backend's location as
    /// the user named it); exit 10.
    #[error("there is no repository at {0} (no config and no key file); create one with `cairn init` (it also finishes an interrupted one)")]
    RepoMissing(String),
    /// An `init` was interrupted before its key file was durable: nothing can open the
    /// location, and `init` can finish it (exit 10, like a missing repository).
    #[error(
        "an interrupted `cairn init` left {location} ({why}); run `cairn init` again to finish it"
    )]
    InitInterrupted {
        /// The repository location as the user named it.
        location: String,
        /// What was found instead of a usable repository (no config, and why each key file
        /// could not be used).
        why: String,
    },
    /// `init` was pointed at an existing, non-empty directory or store (the `String` is its
    /// location); nothing was written.
    #[error("{0} already exists and is not empty; `cairn init` needs a new or empty directory")]
    RepoNotEmpty(String),
    /// No key file opens with the password (repo-format.md §2.1, "Opening a repository");
    /// exit 12.
    #[error("wrong password: no key file in {location} opens with it{note}")]
    WrongPassword {
        /// The repository location whose key files were tried.
        location: String,
        /// Empty, or ` (note: ...)` naming key files that could not be read, since a damaged
        /// key file fails exactly like a wrong password.
        note: String,
    },
    /// A config, key file or snapshot of a later format: named, never read as damage or as a
    /// wrong password (exit 1).
    #[error("{what} needs a newer cairn (format {found}; this cairn reads format {supported}); upgrade cairn")]
    UnsupportedVersion {
        /// The object that carries the version: `config`, a key file or a snapshot, by name.
        what: String,
        /// The format version written in the object.
        found: u32,
        /// The newest version of that object this build reads (for the config,
        /// [`crate::config::FORMAT_VERSION`]).
        supported: u32,
    },
    /// Stored bytes failed a check: authentication, a keyed hash, a decoding bound or a
    /// structural rule of repo-format.md.
    #[error("{what} is damaged: {why}")]
    Corrupt {
        /// The object that is damaged, by kind and name (for example `pack 3fa1...`).
        what: String,
        /// Which check failed.
        why: String,
    },
    /// A tree or snapshot references a blob that no index file lists (repo-format.md §8).
    #[error("blob {id} is not in the index; run `cairn check` (or `cairn repair index`)")]
    BlobMissing {
        /// The missing blob's id, 64 lowercase hex digits.
        id: String,
    },
    #[error("storage error on {path}: {source}{hint}", hint = io_hint(source))]
    /// The storage backend failed on one repository file (local disk, SFTP or S3).
    Backend {
        /// The file's path inside the repository (for example `index/<id>`), see
        /// repo-format.md §1.2.
        path: String,
        /// The backend's error; the error message adds advice for common errno values.
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}{hint}", path = path.display(), hint = io_hint(source))]
    /// A local file outside the repository failed: a backup source, a restore target, a
    /// cache or state file.
    Io {
        /// The local path the operation was on.
        path: PathBuf,
        /// The operating system's error; the error message adds advice for common errno values.
        #[source]
        source: std::io::Error,
    },
    /// No snapshot matches the selector (an id prefix, `latest`, ...) given as the `String`.
    #[error("no snapshot matches {0:?}")]
    SnapshotNotFound(String),
    /// A snapshot id prefix matches more than one snapshot.
    #[error("snapshot selector {selector:?} is ambiguous: it matches {count} snapshots; give more hex digits")]
    SnapshotAmbiguous {
        /// The id prefix the user gave.
        selector: String,
        /// How many snapshot ids start with it (at least 2).
        count: usize,
    },
    /// The stream of a stream backup (`backup --stdin`, `--stdin-from-command`) failed: a read
    /// error, or a command that could not start or did not exit 0 (the source's message holds
    /// its status and the end of its error output). No snapshot is made. Exit 1.
    #[error("{what}: {source}")]
    Stream {
        /// The stream as people know it: "standard input", "command `pg_dump`".
        what: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// An argument or input the caller gave is invalid or over a bound (a pattern, a size, a
    /// selector, a path); the `String` is the whole message. Exit 1.
    #[error("{0}")]
    InvalidInput(String),
    /// A conflicting lock is held (repo-format.md §10.3); the `String` names the holder (host,
    /// process, age). Exit 11.
    #[error("repository is locked: {0}")]
    Locked(String),
    /// `prune` ran its structure check first and it failed, so nothing was deleted.
    #[error("prune refuses to run: the repository's structure check fails ({}); nothing was deleted. Repair it first (`cairn check` names the damage and what it affects; `cairn repair index`, `cairn repair snapshots`), or prune anyway with `cairn prune --force`, which may delete data that only the unreadable snapshots or trees reference", summarize(problems))]
    PruneRefused {
        /// Each structural problem the check found, one message per problem.
        problems: Vec<String>,
    },
    /// The repository was opened with a put-only key (repo-format.md §2.2), which makes backups
    /// but reads and deletes nothing; the `String` says what was asked ("run `cairn restore`").
    /// Exit 1.
    #[error("this is a put-only key: it can make backups, but it cannot {0}; open the repository with a full key's password")]
    PutOnly(String),
    /// The caller's cancel flag was set (Ctrl-C in the CLI); what was written so far is
    /// consistent. Exit 130.
    #[error("interrupted")]
    Interrupted,
}

/// The first few of a list of problems, and how many more there are.
fn summarize(problems: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = problems
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > SHOWN {
        s.push_str(&format!("; and {} more", problems.len() - SHOWN));
    }
    s
}

/// What an I/O error means for someone with a USB disk in their hand.
pub fn io_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
            " — the disk is full: nothing was written under a final name and the repository is \
             still valid; free space (e.g. `cairn prune` removes the unreferenced partial data) \
             and run the backup again"
        }
        Some(libc::EIO)
        | Some(libc::ENODEV)
        | Some(libc::ENXIO)
        | Some(libc::ENOTCONN)
        | Some(libc::ECONNABORTED)
        | Some(libc::ESHUTDOWN) => {
            " — the device is gone or failing (unplugged?): reconnect it and run `cairn check`; \
             nothing half-written is ever used"
        }
        Some(libc::EROFS) => " — the file system is read-only",
        Some(libc::EACCES) | Some(libc::EPERM) => " — permission denied",
        _ => "",
    }
}

impl Error {
    /// The class of this error, which the CLI maps to an exit code (docs/cli.md "Exit codes").
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::RepoMissing(_) | Error::InitInterrupted { .. } => ErrorKind::RepoMissing,
            Error::WrongPassword { .. } => ErrorKind::WrongPassword,
            Error::Locked(_) => ErrorKind::Locked,
            Error::Interrupted => ErrorKind::Interrupted,
            _ => ErrorKind::Fatal,
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, why: impl Into<String>) -> Self {
        Error::Corrupt {
            what: what.into(),
            why: why.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The library's result type: `E` defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

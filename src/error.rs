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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("there is no repository at {0} (no config and no key file); create one with `cairn init` (it also finishes an interrupted one)")]
    RepoMissing(String),
    /// An `init` was interrupted before its key file was durable: nothing can open the
    /// location, and `init` can finish it (exit 10, like a missing repository).
    #[error(
        "an interrupted `cairn init` left {location} ({why}); run `cairn init` again to finish it"
    )]
    InitInterrupted { location: String, why: String },
    #[error("{0} already exists and is not empty; `cairn init` needs a new or empty directory")]
    RepoNotEmpty(String),
    #[error("wrong password: no key file in {location} opens with it{note}")]
    WrongPassword { location: String, note: String },
    /// A config, key file or snapshot of a later format: named, never read as damage or as a
    /// wrong password (exit 1).
    #[error("{what} needs a newer cairn (format {found}; this cairn reads format {supported}); upgrade cairn")]
    UnsupportedVersion {
        what: String,
        found: u32,
        supported: u32,
    },
    #[error("{what} is damaged: {why}")]
    Corrupt { what: String, why: String },
    #[error("blob {id} is not in the index; run `cairn check` (or `cairn repair index`)")]
    BlobMissing { id: String },
    #[error("storage error on {path}: {source}{hint}", hint = io_hint(source))]
    Backend {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}{hint}", path = path.display(), hint = io_hint(source))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no snapshot matches {0:?}")]
    SnapshotNotFound(String),
    #[error("snapshot selector {selector:?} is ambiguous: it matches {count} snapshots; give more hex digits")]
    SnapshotAmbiguous { selector: String, count: usize },
    #[error("{0}")]
    InvalidInput(String),
    #[error("repository is locked: {0}")]
    Locked(String),
    #[error("prune refuses to run: the repository's structure check fails ({}); nothing was deleted. Repair it first (`cairn check` names the damage and what it affects; `cairn repair index`, `cairn repair snapshots`), or prune anyway with `cairn prune --force`, which may delete data that only the unreadable snapshots or trees reference", summarize(problems))]
    PruneRefused { problems: Vec<String> },
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

pub type Result<T, E = Error> = std::result::Result<T, E>;

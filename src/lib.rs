//! cairn: encrypted, deduplicated, verifiable backups.
//!
//! The library holds everything; the `cairn` binary parses arguments, calls one function here,
//! and prints. Nothing in the library reads argv or the environment, or draws on a terminal:
//! what the environment says (passwords, S3 credentials and region, the cache directory)
//! reaches it as values from the binary. The programs and clients it drives read their own
//! configuration: `ssh` for SFTP (`~/.ssh/config`), and the HTTP client of S3 the usual proxy
//! variables (`HTTPS_PROXY`, `NO_PROXY`).
//! The on-disk format is specified in `repo-format.md`; modules that implement a part of it
//! cite its section.

//!
//! # The public modules
//!
//! | module | what it holds |
//! |---|---|
//! | [`repo`] | a repository: create ([`repo::InitOptions`]), open ([`Repository::open_existing`]), keys, locks, config, statistics |
//! | [`backend`] | where a repository lives: a local directory, SFTP, S3, in memory; [`backend::Location`] parses a location |
//! | [`backup`] | making a snapshot of local paths ([`backup::backup`]), excludes, path patterns |
//! | [`restore`] | restoring a snapshot, or part of it, and restore drills |
//! | [`snapshot`] | snapshots, their trees, file metadata, and comparing two snapshots |
//! | [`check`] | verifying a repository, and repairing the index and snapshots |
//! | [`policy`] | retention rules: which snapshots `forget` keeps |
//! | [`prune`] | freeing the space of data no snapshot uses |
//! | [`copy`] | copying snapshots into another repository |
//! | [`parity`] | parity across packs: protecting packs, healing damaged or lost ones |
//! | [`dump`] | one entry of a snapshot as a byte stream: a file's content, a tar or zip archive |
//! | [`plan`] | backup plans: targets, schedules, RPO, and one run of a plan |
//! | [`serve`] | `cairn serve`: a repository served over stdin/stdout (an SSH forced command), append-only if asked |
//! | [`format`](mod@format) | the on-disk format: ids, encryption, chunking, packs, index files (repo-format.md) |
//! | `mount` | `cairn mount`: snapshots as a read-only FUSE file system (feature `mount`, on by default) |
//! | [`units`] | sizes and durations as users write them |
//!
//! `examples/backup_restore.rs` backs up a directory and restores it through these modules.

#![warn(missing_docs)]

pub mod backend;
pub mod backup;
pub mod check;
pub mod copy;
pub mod dump;
pub mod format;
pub mod index;
#[cfg(feature = "mount")]
pub mod mount;
pub mod parity;
pub mod plan;
pub mod policy;
pub mod prune;
pub mod repo;
pub mod restore;
pub mod serve;
pub mod snapshot;
pub mod units;

pub(crate) mod aligned;
mod error;
pub(crate) mod safe_fs;
mod saver;
#[cfg(test)]
mod testutil;

// Short paths for the library's own use; embedders go through the public modules above.
pub(crate) use backup::filter;
pub(crate) use format::{chunker, crypto, id, pack};
pub(crate) use repo::{config, lock, stats};
pub(crate) use restore::drill;
pub(crate) use snapshot::{meta, tree};

pub use error::{Error, ErrorKind, Result};
pub use repo::Repository;

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

pub(crate) mod aligned;
pub mod backend;
pub mod backup;
pub mod check;
pub mod chunker;
pub mod config;
pub mod copy;
pub mod crypto;
pub mod diff;
pub mod drill;
pub mod error;
pub mod filter;
pub mod format;
pub mod id;
pub mod index;
pub mod lock;
pub mod meta;
pub mod pack;
pub mod plan;
pub mod policy;
pub mod prune;
pub mod repair;
pub mod repo;
pub mod restore;
pub mod safe_fs;
mod saver;
pub mod snapshot;
pub mod stats;
#[cfg(test)]
mod testutil;
pub mod tree;
pub mod units;

pub use error::{Error, ErrorKind, Result};
pub use repo::Repository;

//! Snapshots (repo-format.md §9): one sealed MessagePack map per file in `snapshots/`.

pub mod diff;
pub mod find;
pub mod meta;
pub mod rewrite;
pub mod tree;

use serde::{Deserialize, Serialize};

use crate::id::{SnapshotId, TreeId};

/// The snapshot format's own version, the `version` key inside the sealed map
/// (repo-format.md §9); a reader refuses a higher one as "needs a newer cairn".
pub const SNAPSHOT_VERSION: u32 = 1;

/// Which earlier snapshot a backup compared against (README.md "Backup modes"); stored as the
/// snapshot's `mode` string (repo-format.md §9). Every snapshot is a complete tree whatever its
/// mode: the mode only picks which files may be skipped as unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackupMode {
    /// Compare with the newest snapshot of the same host and paths (the default).
    #[default]
    Incremental,
    /// Compare with the newest `Full` snapshot of the same host and paths.
    Differential,
    /// Compare with nothing: read every file (new chunks are still the only ones stored).
    Full,
}

impl BackupMode {
    /// The mode's name as stored in a snapshot and accepted by `--mode`: `incremental`,
    /// `differential` or `full`.
    pub fn name(self) -> &'static str {
        match self {
            BackupMode::Incremental => "incremental",
            BackupMode::Differential => "differential",
            BackupMode::Full => "full",
        }
    }
}

impl std::str::FromStr for BackupMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "incremental" => Ok(BackupMode::Incremental),
            "differential" => Ok(BackupMode::Differential),
            "full" => Ok(BackupMode::Full),
            _ => Err(format!(
                "backup mode {s:?} is not incremental, differential or full"
            )),
        }
    }
}

/// What a backup did, stored with its snapshot as the `summary` map (repo-format.md §9); a
/// key missing from an older snapshot reads as 0.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    /// Regular files with no counterpart in the parent snapshot, read in full.
    pub files_new: u64,
    /// Regular files present in the parent snapshot but changed (or forced), read again.
    pub files_changed: u64,
    /// Regular files whose size, mtime, ctime and inode matched the parent snapshot: their
    /// chunk lists were reused without reading them.
    pub files_unmodified: u64,
    /// Directories stored, the ones leading from `/` to the backed-up paths included.
    pub dirs: u64,
    /// Symbolic links, FIFOs, device nodes and sockets stored.
    pub other_entries: u64,
    /// File content actually read from the source, in bytes.
    pub bytes_read: u64,
    /// Size of all files in the snapshot, in bytes (read or reused).
    pub total_bytes_processed: u64,
    /// Regular files in the snapshot: `files_new + files_changed + files_unmodified`.
    pub total_files: u64,
    /// New blob plaintext bytes.
    pub data_added: u64,
    /// New bytes written to the repository (sealed blobs, pack headers, index).
    pub data_added_stored: u64,
    /// Blobs (data and tree) this backup added that neither the repository nor the run had.
    pub blobs_added: u64,
    /// Wall-clock duration of the backup, in seconds.
    pub duration_s: f64,
    /// Source entries that could not be read and were left out (each listed by the backup;
    /// exit 3).
    pub errors: u64,
}

/// A snapshot: a root tree and where and when it came from. The plaintext of one sealed file in
/// `snapshots/` (repo-format.md §9), a MessagePack map in field order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The snapshot format version, [`SNAPSHOT_VERSION`] when this build writes it.
    pub version: u32,
    /// When the backup started (or the time given with `--time`), nanoseconds since the Unix
    /// epoch (UTC). Snapshots are ordered by it, then by id.
    pub time_ns: i64,
    /// The time zone offset in seconds east of UTC where the backup ran (for display).
    pub tz_offset_s: i32,
    /// Name of the host the backup ran on; with `paths` it picks the parent of the next backup.
    pub host: String,
    /// Name of the user that ran the backup.
    pub user: String,
    /// Numeric user id that ran the backup.
    pub uid: u32,
    /// Numeric group id that ran the backup.
    pub gid: u32,
    /// The backed-up paths: absolute, lexically normalized (no `.`, `..` or `//`), not resolved
    /// through symlinks; non-UTF-8 bytes replaced by U+FFFD.
    pub paths: Vec<String>,
    /// Labels the user attached with `--tag`, used to select snapshots.
    pub tags: Vec<String>,
    /// Id of the root tree blob, the directory `/`; the directories between it and the
    /// backed-up paths hold only the entries that lead to them (repo-format.md §7.1,
    /// "Snapshot roots").
    pub tree: TreeId,
    /// The snapshot this backup compared against to skip unchanged files, if any. Information
    /// only: every snapshot is a complete tree and does not depend on its parent.
    pub parent: Option<SnapshotId>,
    /// Which rule picked `parent`.
    pub mode: BackupMode,
    /// Version of the cairn that wrote the snapshot, e.g. `"0.1.0"`.
    pub program_version: String,
    /// What the backup did.
    pub summary: Summary,
    /// What `repair snapshots` changed, one sentence each (absent in older snapshots).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// An interrupted backup's checkpoint: complete for what it lists, but not every path was
    /// walked. The next backup of the same host and paths resumes from it and removes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// The snapshot this one replaced: the one it was made from by `repair snapshots`, `tag`
    /// or `rewrite` (its direct predecessor, which may since have been removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<SnapshotId>,
    /// Set by `copy`: the snapshot this one is a copy of, in the repository where it was first
    /// made (a copy of a copy keeps the first one's id), so copying again can recognise it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied_from: Option<SnapshotId>,
}

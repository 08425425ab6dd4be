//! Snapshots (repo-format.md §9): one sealed MessagePack map per file in `snapshots/`.

use serde::{Deserialize, Serialize};

use crate::id::{SnapshotId, TreeId};

/// The snapshot format's own version, inside the sealed map.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Which earlier snapshot a backup compared against (docs/cli.md `cairn backup`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackupMode {
    #[default]
    Incremental,
    Differential,
    Full,
}

impl BackupMode {
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

/// What a backup did, stored with its snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs: u64,
    pub other_entries: u64,
    /// File content actually read from the source.
    pub bytes_read: u64,
    /// Size of all files in the snapshot.
    pub total_bytes_processed: u64,
    pub total_files: u64,
    /// New blob plaintext bytes.
    pub data_added: u64,
    /// New bytes written to the repository (sealed blobs, pack headers, index).
    pub data_added_stored: u64,
    pub blobs_added: u64,
    pub duration_s: f64,
    pub errors: u64,
}

/// A snapshot: a root tree and where and when it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    /// Nanoseconds since the Unix epoch (UTC).
    pub time_ns: i64,
    /// The time zone offset in seconds east of UTC where the backup ran (for display).
    pub tz_offset_s: i32,
    pub host: String,
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    /// The backed-up paths, absolute.
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    pub tree: TreeId,
    pub parent: Option<SnapshotId>,
    pub mode: BackupMode,
    pub program_version: String,
    pub summary: Summary,
    /// What `repair snapshots` changed, one sentence each (absent in older snapshots).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// An interrupted backup's checkpoint: complete for what it lists, but not every path was
    /// walked. The next backup of the same host and paths resumes from it and removes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// The snapshot this one was repaired from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<SnapshotId>,
    /// Set by `copy`: the snapshot this one is a copy of, in the repository where it was first
    /// made (a copy of a copy keeps the first one's id), so copying again can recognise it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied_from: Option<SnapshotId>,
}

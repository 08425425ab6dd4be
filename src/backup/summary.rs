//! The summary of a backup as `cairn backup --json` prints it: its field names and values are
//! part of the command-line contract (README.md), so they are made here, once, from the
//! library's outcome, and the CLI only serialises them.

use std::os::unix::ffi::OsStrExt;

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::{BackupOutcome, EntryError};

/// The JSON summary line of a backup ([`BackupOutcome::json_summary`]).
///
/// The fields are in alphabetical order, the order the CLI's JSON objects have always listed
/// them in (serde_json sorts the keys of an object it builds): serialised directly or through
/// a `serde_json::Value`, the summary is the same bytes.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BackupSummary<'a> {
    /// Blobs (data and tree) the backup added that the repository did not have.
    pub blobs_added: u64,
    /// File content actually read from the source, in bytes (unchanged files reused from the
    /// parent are not read).
    pub bytes_read: u64,
    /// Plaintext bytes of the new blobs, before compression.
    pub data_added: u64,
    /// Bytes written to the repository for the new data: sealed blobs, pack headers, index.
    pub data_added_stored: u64,
    /// Directories stored, those leading from `/` to the backed-up paths included.
    pub dirs: u64,
    /// Whether this was a dry run (`--dry-run`): nothing was written.
    pub dry_run: bool,
    /// Every object was fsynced (file and directory) before the snapshot was written.
    pub durable: bool,
    /// Wall-clock duration of the backup, in seconds.
    pub duration_s: f64,
    /// Each as `{"error", "path"}`, plus `path_hex` when the path is not UTF-8.
    pub errors: &'a [EntryError],
    /// Regular files the parent snapshot has but that changed (or `--force`), read again.
    pub files_changed: u64,
    /// Regular files with no counterpart in the parent snapshot, read in full.
    pub files_new: u64,
    /// Regular files unchanged since the parent snapshot, whose content was reused unread.
    pub files_unmodified: u64,
    /// Always `"summary"`.
    pub message_type: &'static str,
    /// The snapshot's backup mode: `incremental`, `differential` or `full`.
    pub mode: &'static str,
    /// The parent snapshot's id in hex; None when the backup had no parent.
    pub parent: Option<String>,
    /// Paths where the walk met the repository's own directory and left it out (lossy UTF-8).
    pub repository_left_out: Vec<String>,
    /// The saved snapshot's id in hex; None for a dry run.
    pub snapshot_id: Option<String>,
    /// Size of all regular files in the snapshot, in bytes, read or reused.
    pub total_bytes_processed: u64,
    /// Regular files in the snapshot: `files_new + files_changed + files_unmodified`.
    pub total_files: u64,
}

impl BackupOutcome {
    /// The summary `cairn backup --json` prints.
    pub fn json_summary(&self) -> BackupSummary<'_> {
        let s = &self.summary;
        BackupSummary {
            blobs_added: s.blobs_added,
            bytes_read: s.bytes_read,
            data_added: s.data_added,
            data_added_stored: s.data_added_stored,
            dirs: s.dirs,
            // A backup that was not a dry run has saved its snapshot, or failed.
            dry_run: self.snapshot_id.is_none(),
            durable: self.snapshot_id.is_some(),
            duration_s: s.duration_s,
            errors: &self.errors,
            files_changed: s.files_changed,
            files_new: s.files_new,
            files_unmodified: s.files_unmodified,
            message_type: "summary",
            mode: self.snapshot.mode.name(),
            parent: self.snapshot.parent.map(|p| p.to_hex()),
            repository_left_out: self
                .repository_left_out
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
            snapshot_id: self.snapshot_id.map(|i| i.to_hex()),
            total_bytes_processed: s.total_bytes_processed,
            total_files: s.total_files,
        }
    }
}

/// `{"error": ..., "path": ...}`: the path as text when it is UTF-8, otherwise its lossy text
/// plus `path_hex` holding its exact bytes (the rule of every name in the CLI's JSON).
impl Serialize for EntryError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = self.path.as_os_str().as_bytes();
        let utf8 = std::str::from_utf8(bytes).ok();
        let mut m = s.serialize_map(Some(if utf8.is_some() { 2 } else { 3 }))?;
        m.serialize_entry("error", &self.error)?;
        match utf8 {
            Some(text) => m.serialize_entry("path", text)?,
            None => {
                m.serialize_entry("path", &String::from_utf8_lossy(bytes))?;
                m.serialize_entry("path_hex", &hex::encode(bytes))?;
            }
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;
    use crate::id::SnapshotId;
    use crate::snapshot::{BackupMode, Snapshot, Summary, SNAPSHOT_VERSION};

    fn outcome(snapshot_id: Option<SnapshotId>, errors: Vec<EntryError>) -> BackupOutcome {
        let summary = Summary {
            files_new: 1,
            files_changed: 2,
            files_unmodified: 3,
            dirs: 4,
            other_entries: 5,
            bytes_read: 6,
            total_bytes_processed: 7,
            total_files: 8,
            data_added: 9,
            data_added_stored: 10,
            blobs_added: 11,
            duration_s: 1.5,
            errors: errors.len() as u64,
        };
        BackupOutcome {
            snapshot_id,
            snapshot: Snapshot {
                version: SNAPSHOT_VERSION,
                time_ns: 0,
                tz_offset_s: 0,
                host: "h".into(),
                user: "u".into(),
                uid: 0,
                gid: 0,
                paths: vec!["/src".into()],
                tags: Vec::new(),
                tree: crate::id::TreeId(crate::id::BlobId([7; 32])),
                parent: Some(SnapshotId([2; 32])),
                mode: BackupMode::Differential,
                program_version: "0".into(),
                summary: summary.clone(),
                notes: Vec::new(),
                original: None,
                partial: false,
                copied_from: None,
            },
            summary,
            errors,
            repository_left_out: vec![PathBuf::from("/src/repo")],
        }
    }

    /// Every field, named and valued as the CLI printed it field by field: a UTF-8 path as
    /// text, any other as lossy text plus its exact bytes in hex.
    #[test]
    fn the_summary_names_every_field_as_the_cli_printed_it() {
        let errors = vec![
            EntryError {
                path: PathBuf::from("/src/plain"),
                error: "Permission denied".into(),
            },
            EntryError {
                path: PathBuf::from(OsStr::from_bytes(b"/src/bad\xff\xfename")),
                error: "gone".into(),
            },
            EntryError {
                path: PathBuf::from(OsStr::from_bytes(b"/src/\x80")),
                error: "".into(),
            },
        ];
        let out = outcome(Some(SnapshotId([1; 32])), errors);
        let got = serde_json::to_value(out.json_summary()).expect("test");
        let want = json!({
            "message_type": "summary",
            "snapshot_id": hex::encode([1u8; 32]),
            "parent": hex::encode([2u8; 32]),
            "mode": "differential",
            "dry_run": false,
            "files_new": 1,
            "files_changed": 2,
            "files_unmodified": 3,
            "dirs": 4,
            "total_files": 8,
            "bytes_read": 6,
            "total_bytes_processed": 7,
            "data_added": 9,
            "data_added_stored": 10,
            "blobs_added": 11,
            "durable": true,
            "duration_s": 1.5,
            "errors": [
                {"error": "Permission denied", "path": "/src/plain"},
                {"error": "gone", "path": "/src/bad\u{fffd}\u{fffd}name",
                 "path_hex": hex::encode(b"/src/bad\xff\xfename")},
                {"error": "", "path": "/src/\u{fffd}", "path_hex": "2f7372632f80"},
            ],
            "repository_left_out": ["/src/repo"],
        });
        assert_eq!(got, want);

        let dry = outcome(None, Vec::new());
        let got = serde_json::to_value(dry.json_summary()).expect("test");
        assert_eq!(got["dry_run"], json!(true));
        assert_eq!(got["durable"], json!(false));
        assert_eq!(got["snapshot_id"], json!(null));
    }

    /// Serialised directly, the summary is byte for byte what the CLI's sorted objects print.
    #[test]
    fn the_summary_serialises_to_the_same_bytes_directly_or_through_a_value() {
        let errors = vec![EntryError {
            path: PathBuf::from(OsStr::from_bytes(b"/\xff")),
            error: "e".into(),
        }];
        for out in [
            outcome(None, errors.clone()),
            outcome(Some(SnapshotId([3; 32])), errors),
        ] {
            let direct = serde_json::to_string(&out.json_summary()).expect("test");
            let value = serde_json::to_value(out.json_summary()).expect("test");
            assert_eq!(direct, serde_json::to_string(&value).expect("test"));
        }
    }
}

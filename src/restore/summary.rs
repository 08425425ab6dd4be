//! The summary line `cairn restore --json` prints, serialised from a [`RestoreOutcome`].
//!
//! A path is written as text under its field name; when it is not valid UTF-8, the text is the
//! lossy form and a `<field>_hex` field holds its exact bytes (the rule of every `--json`
//! output, src/cli/output.rs). Keys are written in sorted order, as serde_json writes a map.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::preview::Entries;
use super::{RestoreError, RestoreOutcome};
use crate::id::SnapshotId;

/// What a restore did, as `cairn restore --json` reports it: counts, every damaged file and
/// every other error (`damaged` tells them apart), and the target.
pub struct RestoreSummary<'a> {
    /// The snapshot restored from.
    pub snapshot: SnapshotId,
    /// The restore target, as the user gave it.
    pub target: &'a Path,
    /// What the restore did.
    pub outcome: &'a RestoreOutcome,
}

impl RestoreOutcome {
    /// The summary of this outcome, for `--json`.
    pub fn summary<'a>(&'a self, snapshot: SnapshotId, target: &'a Path) -> RestoreSummary<'a> {
        RestoreSummary {
            snapshot,
            target,
            outcome: self,
        }
    }
}

/// Writes `path` under `field`: its text, and `<field>_hex` with its bytes when it is not UTF-8.
pub(super) fn path_entry<M: SerializeMap>(
    map: &mut M,
    field: &str,
    path: &Path,
) -> Result<(), M::Error> {
    let bytes = path.as_os_str().as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(s) => map.serialize_entry(field, s),
        Err(_) => {
            map.serialize_entry(field, &String::from_utf8_lossy(bytes))?;
            map.serialize_entry(&format!("{field}_hex"), &hex::encode(bytes))
        }
    }
}

impl Serialize for RestoreSummary<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let out = self.outcome;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("bytes_restored", &out.bytes)?;
        map.serialize_entry("deleted", &out.deleted.len())?;
        map.serialize_entry("deleted_paths", &Entries(&out.deleted))?;
        map.serialize_entry("dirs_restored", &out.dirs)?;
        map.serialize_entry("disk_full", &out.disk_full)?;
        map.serialize_entry("errors", &Problems(out))?;
        map.serialize_entry("files_restored", &out.files)?;
        map.serialize_entry("files_verified", &out.verified_files)?;
        map.serialize_entry("message_type", "summary")?;
        map.serialize_entry("other_restored", &out.other)?;
        map.serialize_entry("skipped", &out.skipped)?;
        map.serialize_entry("snapshot_id", &self.snapshot.to_hex())?;
        path_entry(&mut map, "target", self.target)?;
        map.end()
    }
}

/// The damaged files, then every other error.
struct Problems<'a>(&'a RestoreOutcome);

impl Serialize for Problems<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let out = self.0;
        let mut seq = s.serialize_seq(Some(out.damaged.len() + out.errors.len()))?;
        for e in &out.damaged {
            seq.serialize_element(&Problem(e, true))?;
        }
        for e in &out.errors {
            seq.serialize_element(&Problem(e, false))?;
        }
        seq.end()
    }
}

/// One entry of `errors`: its path, what went wrong, and whether the repository's data is to
/// blame.
struct Problem<'a>(&'a RestoreError, bool);

impl Serialize for Problem<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("damaged", &self.1)?;
        map.serialize_entry("error", &self.0.error)?;
        path_entry(&mut map, "path", &self.0.path)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;

    fn error(path: &[u8], error: &str) -> RestoreError {
        RestoreError {
            path: PathBuf::from(OsStr::from_bytes(path)),
            error: error.into(),
        }
    }

    /// The summary as `cairn restore` built it field by field before it was a library type
    /// (a path field plus `<field>_hex` when the path is not UTF-8).
    fn field_by_field(id: &SnapshotId, target: &[u8], out: &RestoreOutcome) -> serde_json::Value {
        let name =
            |v: &mut serde_json::Value, field: &str, bytes: &[u8]| match std::str::from_utf8(bytes)
            {
                Ok(s) => v[field] = s.into(),
                Err(_) => {
                    v[field] = String::from_utf8_lossy(bytes).into_owned().into();
                    v[format!("{field}_hex")] = hex::encode(bytes).into();
                }
            };
        let problem = |e: &RestoreError, damaged: bool| {
            let mut v = json!({"path": null, "error": e.error, "damaged": damaged});
            name(&mut v, "path", e.path.as_os_str().as_bytes());
            v
        };
        let problems: Vec<_> = out
            .damaged
            .iter()
            .map(|e| problem(e, true))
            .chain(out.errors.iter().map(|e| problem(e, false)))
            .collect();
        let deleted: Vec<_> = out
            .deleted
            .iter()
            .map(|e| {
                let mut v = json!({"path": null, "type": e.kind.name()});
                name(&mut v, "path", e.path.as_os_str().as_bytes());
                v
            })
            .collect();
        let mut summary = json!({
            "message_type": "summary",
            "snapshot_id": id.to_hex(),
            "target": null,
            "files_restored": out.files,
            "dirs_restored": out.dirs,
            "other_restored": out.other,
            "skipped": out.skipped,
            "bytes_restored": out.bytes,
            "files_verified": out.verified_files,
            "disk_full": out.disk_full,
            "errors": problems,
            "deleted": out.deleted.len(),
            "deleted_paths": deleted,
        });
        name(&mut summary, "target", target);
        summary
    }

    /// The summary serialises to the very bytes of the field-by-field JSON, for targets and
    /// error paths that are UTF-8 (plain, with controls, with non-ASCII) or not, with no
    /// errors, damage only, errors only, or both.
    #[test]
    fn the_summary_is_byte_for_byte_the_json_cairn_restore_printed() {
        let id = SnapshotId([0xa5; 32]);
        let targets: [&[u8]; 5] = [
            b"/tmp/t",
            b"",
            "r\u{e9}stor\u{e9}\n\t".as_bytes(),
            b"/x/\xff\x1b",
            b"\xc3",
        ];
        let outcomes = [
            RestoreOutcome::default(),
            RestoreOutcome {
                files: 7,
                dirs: 3,
                other: 2,
                skipped: 1,
                bytes: 1 << 40,
                verified_files: 5,
                damaged: vec![error(
                    b"/t/a",
                    "not restored, its data is damaged or missing: x",
                )],
                errors: vec![],
                disk_full: false,
                deleted: vec![],
            },
            RestoreOutcome {
                errors: vec![
                    error(b"/t/\xfe\"q", "metadata: \"quoted\"\n"),
                    error(b"/t/b", ""),
                ],
                disk_full: true,
                ..RestoreOutcome::default()
            },
            RestoreOutcome {
                files: u64::MAX,
                damaged: vec![error(b"\x80", "d1"), error("/t/\u{202e}x".as_bytes(), "d2")],
                errors: vec![error(b"/t/c", "e1")],
                deleted: vec![
                    super::super::PreviewEntry {
                        path: PathBuf::from(OsStr::from_bytes(b"/t/\xff")),
                        kind: crate::tree::NodeKind::Symlink,
                    },
                    super::super::PreviewEntry {
                        path: PathBuf::from("/t/d"),
                        kind: crate::tree::NodeKind::Dir,
                    },
                ],
                ..RestoreOutcome::default()
            },
        ];
        for target in targets {
            for out in &outcomes {
                let want = field_by_field(&id, target, out);
                let summary = out.summary(id, Path::new(OsStr::from_bytes(target)));
                let value = serde_json::to_value(&summary).expect("to a value");
                assert_eq!(value, want);
                let direct = serde_json::to_string(&summary).expect("to a string");
                let printed = serde_json::to_string(&want).expect("to a string");
                assert_eq!(direct, printed, "the same bytes, keys in the same order");
            }
        }
    }
}

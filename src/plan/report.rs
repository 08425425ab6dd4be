//! The typed report of a plan run: one [`RunReport`] with a [`TargetRun`] per target visited,
//! each holding the steps that ran on it ([`BackupStep`], [`ForgetStep`], [`PruneStep`],
//! [`CheckStep`]), and the [`RunOutcome`] the exit code is chosen from. The `Serialize` of these
//! types is the CLI's `plan run --json` output (the target lines and the summary's `targets`).

use std::path::PathBuf;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::ser;
use super::time::Stamp;
use super::PruneWhen;
use crate::backup::{BackupOutcome, EntryError};
use crate::check::{CheckReport, ReadData};
use crate::id::SnapshotId;
use crate::prune::PruneReport;
use crate::snapshot::BackupMode;

/// One run of a plan: `{"plan", "mode", "time", "targets_present", "targets_failed",
/// "targets"}` in JSON.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// The plan's name (`plan`).
    pub plan: String,
    /// The backup mode of the run, the same on every target (`mode`).
    pub mode: BackupMode,
    /// The snapshot time of every target's backup.
    pub time: Stamp,
    /// How many of the visited targets were present (`targets_present`).
    pub targets_present: usize,
    /// How many present targets failed (`targets_failed`); each has `ok: Some(false)`.
    pub targets_failed: usize,
    /// The targets visited, in the plan's order (all of them unless interrupted).
    pub targets: Vec<TargetRun>,
    /// The user interrupted the run; the targets after the last one here were not visited.
    #[serde(skip)]
    pub interrupted: bool,
}

/// How a run ended, most serious first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// The user interrupted the run (`plan run` exits 130).
    Interrupted,
    /// No target was present: nothing was backed up (exit 1).
    NoTargetPresent,
    /// A present target failed (exit 1).
    Failed,
    /// Every present target succeeded, but some source files could not be read (exit 3).
    Partial,
    /// Every present target succeeded and read every source file (exit 0).
    Ok,
}

impl RunReport {
    /// How the run ended, the most serious case that applies; `plan run` chooses its exit code
    /// from it.
    pub fn outcome(&self) -> RunOutcome {
        if self.interrupted {
            RunOutcome::Interrupted
        } else if self.targets_present == 0 {
            RunOutcome::NoTargetPresent
        } else if self.targets_failed > 0 {
            RunOutcome::Failed
        } else if self
            .targets
            .iter()
            .any(|t| t.ok == Some(true) && t.unreadable() > 0)
        {
            RunOutcome::Partial
        } else {
            RunOutcome::Ok
        }
    }
}

/// One target of a run. `ok` is null for a target that is not present; `error` exists only for
/// one that failed, and the steps only once they ran.
#[derive(Clone, Debug, Serialize)]
pub struct TargetRun {
    /// The target's repository name ([`RepoDef::name`](super::RepoDef::name)).
    pub target: String,
    /// The target's repository directory (written lossily as UTF-8 in JSON).
    #[serde(serialize_with = "ser::lossy_path")]
    pub path: PathBuf,
    /// Whether the target was present ([`RepoDef::is_present`](super::RepoDef::is_present));
    /// an absent one was skipped.
    pub present: bool,
    /// Why a target that is not present was skipped (`"not present"` for a missing directory,
    /// the server's failure for a remote one); None when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub absent: Option<String>,
    /// None: not present; `Some(true)`: every step succeeded; `Some(false)`: one failed.
    pub ok: Option<bool>,
    /// Why the target failed, as a sentence for people (`backup: …`, `check found 2 errors;
    /// …`); None unless `ok` is `Some(false)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The backup, once it completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStep>,
    /// The keep rules applied; None when the plan has none, or a failure came first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forget: Option<ForgetStep>,
    /// The prune, or why it did not run (not due); None when a failure came first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneStep>,
    /// The check; None when the plan has no `check_subset`, or a failure came first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckStep>,
    /// The scrub; None when none was due (the repository's `scrub`), or a failure came first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrub: Option<super::scrub::ScrubStep>,
    /// The failure was an interruption.
    #[serde(skip)]
    pub interrupted: bool,
}

impl TargetRun {
    /// Source files or directories the backup could not read.
    pub fn unreadable(&self) -> usize {
        self.backup.as_ref().map_or(0, |b| b.errors.len())
    }
}

/// The backup on one target.
#[derive(Clone, Debug, Serialize)]
pub struct BackupStep {
    /// The id of the snapshot saved in this target's repository (None only for a dry run,
    /// which a plan never makes).
    #[serde(serialize_with = "ser::opt_id")]
    pub snapshot_id: Option<SnapshotId>,
    /// The snapshot the backup compared against to skip unchanged files; None: none.
    #[serde(serialize_with = "ser::opt_id")]
    pub parent: Option<SnapshotId>,
    /// The mode recorded in the snapshot.
    pub mode: BackupMode,
    /// Regular files with no counterpart in the parent snapshot, read in full.
    pub files_new: u64,
    /// Regular files the parent snapshot has but that changed, read again.
    pub files_changed: u64,
    /// Regular files unchanged since the parent snapshot, whose content was reused unread.
    pub files_unmodified: u64,
    /// Directories stored, those leading from `/` to the backed-up paths included.
    pub dirs: u64,
    /// File content actually read from the sources, in bytes.
    pub bytes_read: u64,
    /// Size of all regular files in the snapshot, in bytes, read or reused.
    pub total_bytes_processed: u64,
    /// Plaintext bytes of the new blobs, before compression.
    pub data_added: u64,
    /// Bytes written to the repository for the new data: sealed blobs, pack headers, index.
    pub data_added_stored: u64,
    /// Wall-clock duration of the backup, in seconds.
    pub duration_s: f64,
    /// Source entries that could not be read (`{"path", "error"}`, `path_hex` for a name that
    /// is not UTF-8).
    #[serde(serialize_with = "ser::entry_errors")]
    pub errors: Vec<EntryError>,
    /// Where the walk met the repository itself and left it out.
    #[serde(serialize_with = "ser::lossy_paths")]
    pub repository_left_out: Vec<PathBuf>,
}

impl BackupStep {
    pub(crate) fn of(out: BackupOutcome) -> BackupStep {
        let s = &out.summary;
        BackupStep {
            snapshot_id: out.snapshot_id,
            parent: out.snapshot.parent,
            mode: out.snapshot.mode,
            files_new: s.files_new,
            files_changed: s.files_changed,
            files_unmodified: s.files_unmodified,
            dirs: s.dirs,
            bytes_read: s.bytes_read,
            total_bytes_processed: s.total_bytes_processed,
            data_added: s.data_added,
            data_added_stored: s.data_added_stored,
            duration_s: s.duration_s,
            errors: out.errors,
            repository_left_out: out.repository_left_out,
        }
    }
}

/// The keep rules applied to this plan's snapshots on one target.
#[derive(Clone, Debug, Serialize)]
pub struct ForgetStep {
    /// The rules, as `forget` prints them.
    pub policy: String,
    /// How many of the plan's snapshots the rules kept.
    pub kept: usize,
    /// The ids of the snapshots removed, in this target's repository (hex in JSON).
    #[serde(serialize_with = "ser::ids")]
    pub removed: Vec<SnapshotId>,
}

/// Prune on one target: it ran (`"due": true` and its figures), or was not due (`"due":
/// false`, the cadence and the last prune by this plan).
#[derive(Clone, Debug, PartialEq)]
pub enum PruneStep {
    /// Prune was due and ran.
    Ran {
        /// Packs holding no used blob, deleted.
        packs_deleted: u64,
        /// Packs whose used blobs were copied into new packs, then deleted.
        packs_repacked: u64,
        /// Bytes of pack files in `data/` freed, plus crash-left temporary files removed.
        bytes_freed: u64,
        /// Bytes of pack files in `data/` after the prune.
        bytes_after: u64,
    },
    /// Prune was not due by the plan's cadence.
    NotDue {
        /// The plan's cadence (`"when"`: `daily`, `weekly`, …).
        when: PruneWhen,
        /// The last prune by this plan on this target, with the machine's UTC offset; None:
        /// none is recorded.
        last: Option<Stamp>,
    },
}

impl Serialize for PruneStep {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match self {
            PruneStep::Ran {
                packs_deleted,
                packs_repacked,
                bytes_freed,
                bytes_after,
            } => {
                m.serialize_entry("due", &true)?;
                m.serialize_entry("packs_deleted", packs_deleted)?;
                m.serialize_entry("packs_repacked", packs_repacked)?;
                m.serialize_entry("bytes_freed", bytes_freed)?;
                m.serialize_entry("bytes_after", bytes_after)?;
            }
            PruneStep::NotDue { when, last } => {
                m.serialize_entry("due", &false)?;
                m.serialize_entry("when", when.name())?;
                m.serialize_entry("last", last)?;
            }
        }
        m.end()
    }
}

impl PruneStep {
    pub(crate) fn of(p: &PruneReport) -> PruneStep {
        PruneStep::Ran {
            packs_deleted: p.packs_deleted,
            packs_repacked: p.packs_repacked,
            bytes_freed: p.bytes_freed,
            bytes_after: p.bytes_after,
        }
    }
}

/// The check on one target.
#[derive(Clone, Debug, Serialize)]
pub struct CheckStep {
    /// `"5%"`, or null for a structure-only check.
    #[serde(serialize_with = "ser::subset_or_null")]
    pub read_data_subset: ReadData,
    /// No error was found (warnings allowed); false fails the target.
    pub ok: bool,
    /// Packs named by the index.
    pub packs: u64,
    /// Packs downloaded and verified (hash, header, every blob).
    pub packs_read: u64,
    /// Bytes of the packs counted in `packs_read`, as sized by the index.
    pub bytes_read: u64,
    /// The damage found, each a sentence naming the damaged object.
    pub errors: Vec<String>,
    /// Findings that are not damage (unreferenced packs, stale verification).
    pub warnings: Vec<String>,
}

impl CheckStep {
    pub(crate) fn of(read: ReadData, c: CheckReport) -> CheckStep {
        CheckStep {
            read_data_subset: read,
            ok: c.ok(),
            packs: c.packs,
            packs_read: c.packs_read,
            bytes_read: c.bytes_read,
            errors: c.errors,
            warnings: c.warnings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(present: bool, ok: Option<bool>, unreadable: usize) -> TargetRun {
        let backup = (unreadable > 0).then(|| BackupStep {
            snapshot_id: None,
            parent: None,
            mode: BackupMode::Incremental,
            files_new: 0,
            files_changed: 0,
            files_unmodified: 0,
            dirs: 0,
            bytes_read: 0,
            total_bytes_processed: 0,
            data_added: 0,
            data_added_stored: 0,
            duration_s: 0.0,
            errors: vec![
                EntryError {
                    path: "/x".into(),
                    error: "denied".into()
                };
                unreadable
            ],
            repository_left_out: Vec::new(),
        });
        TargetRun {
            target: "t".into(),
            path: "/t".into(),
            present,
            absent: None,
            ok,
            error: None,
            backup,
            forget: None,
            prune: None,
            check: None,
            scrub: None,
            interrupted: false,
        }
    }

    #[test]
    fn the_outcome_ranks_interruption_then_no_target_then_failure_then_unreadable_files() {
        let report = |targets: Vec<TargetRun>, interrupted: bool| RunReport {
            plan: "p".into(),
            mode: BackupMode::Incremental,
            time: Stamp { ns: 0, offset_s: 0 },
            targets_present: targets.iter().filter(|t| t.present).count(),
            targets_failed: targets.iter().filter(|t| t.ok == Some(false)).count(),
            targets,
            interrupted,
        };
        let ok = || target(true, Some(true), 0);
        let partial = || target(true, Some(true), 2);
        let failed = || target(true, Some(false), 0);
        let absent = || target(false, None, 0);
        assert_eq!(
            report(vec![ok(), absent()], false).outcome(),
            RunOutcome::Ok
        );
        assert_eq!(
            report(vec![ok(), partial()], false).outcome(),
            RunOutcome::Partial
        );
        assert_eq!(
            report(vec![partial(), failed()], false).outcome(),
            RunOutcome::Failed
        );
        assert_eq!(
            report(vec![absent()], false).outcome(),
            RunOutcome::NoTargetPresent
        );
        assert_eq!(
            report(vec![failed()], true).outcome(),
            RunOutcome::Interrupted
        );
        assert_eq!(report(vec![], true).outcome(), RunOutcome::Interrupted);
    }

    #[test]
    fn a_target_runs_json_names_unreadable_paths_exactly() {
        let mut t = target(true, Some(true), 1);
        if let Some(b) = t.backup.as_mut() {
            b.errors.push(EntryError {
                path: PathBuf::from(
                    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"/bad\xff"),
                ),
                error: "gone".into(),
            });
        }
        let v = serde_json::to_value(&t).expect("json");
        let errors = &v["backup"]["errors"];
        assert_eq!(
            errors[0],
            serde_json::json!({"path": "/x", "error": "denied"})
        );
        assert_eq!(errors[1]["path"], "/bad\u{fffd}");
        assert_eq!(errors[1]["path_hex"], "2f626164ff");
        assert!(v.get("error").is_none() && v.get("forget").is_none());
        assert_eq!(v["ok"], true);
    }
}

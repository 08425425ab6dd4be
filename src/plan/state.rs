//! What plan runs remember per repository: when each plan last ran (and whether it went well),
//! last pruned and last checked without errors. Kept in the repository's local cache directory
//! as `plan-state.json` (next to check's own record), never in the repository: it is a record
//! for `plan status` and the prune cadence, never needed for correctness, so a missing, damaged
//! or oversized file reads as empty.
//!
//! Several plans may share a repository: an update re-reads the file, changes one plan's record
//! and writes the whole file back through a temporary name (fsync, rename, fsync the
//! directory), so a crash leaves the old file or the new one, never a mix.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The state file's name inside a repository's local cache directory.
pub const STATE_FILE: &str = "plan-state.json";

/// The largest plan state file read (a few hundred bytes per plan); a larger one is ignored.
pub const MAX_STATE_FILE: u64 = 1 << 20;

/// What a plan run remembers per repository, next to check's state in the local cache
/// (`plan-state.json`): by plan name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanState {
    /// Each plan's record on this repository, by plan name ([`Plan::name`](super::Plan::name)).
    pub plans: BTreeMap<String, PlanRecord>,
    /// When a run (of any plan) last scrubbed this repository and left nothing damaged; the
    /// scrub cadence ([`RepoDef::scrub`](super::RepoDef::scrub)) counts from its local date.
    pub last_scrub_ns: Option<i64>,
}

/// One plan's record on one repository; times in ns since the epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanRecord {
    /// When the plan's last run on this repository ended, whether or not it succeeded; None:
    /// no run is recorded.
    pub last_run_ns: Option<i64>,
    /// Whether that run's steps all succeeded; None: not recorded (a record from before runs
    /// noted their outcome).
    pub last_run_ok: Option<bool>,
    /// When a run of this plan last pruned this repository; None: never. The prune cadence
    /// ([`PruneWhen::is_due`](super::PruneWhen::is_due)) counts from its local date.
    pub last_prune_ns: Option<i64>,
    /// The last check made by a run that found no errors.
    pub last_check_ns: Option<i64>,
}

impl PlanState {
    /// The state at `path`: empty when the file is missing, not a regular file (no link is
    /// followed), larger than [`MAX_STATE_FILE`] or not what this program writes.
    pub fn load(path: &Path) -> PlanState {
        let Ok(bytes) = crate::safe_fs::read_regular_bounded(path, MAX_STATE_FILE) else {
            return PlanState::default();
        };
        serde_json::from_slice(&bytes).unwrap_or_default()
    }

    /// Re-reads the state at `path` (another plan may have written it meanwhile), changes
    /// `plan`'s record with `f`, and writes it back owner-only and crash-safe.
    pub fn update(path: &Path, plan: &str, f: impl FnOnce(&mut PlanRecord)) -> io::Result<()> {
        let mut state = PlanState::load(path);
        f(state.plans.entry(plan.to_string()).or_default());
        state.save(path)
    }

    /// As [`PlanState::update`], for what is recorded per repository rather than per plan.
    pub fn update_repository(path: &Path, f: impl FnOnce(&mut PlanState)) -> io::Result<()> {
        let mut state = PlanState::load(path);
        f(&mut state);
        state.save(path)
    }

    /// Writes the state to `path`: 0600 in a 0700 directory (created if missing), through a
    /// temporary name in the same directory, fsynced before and after the rename.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self)?;
        crate::backend::write_private_file_durable(path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn record(run: i64) -> PlanRecord {
        PlanRecord {
            last_run_ns: Some(run),
            last_run_ok: Some(true),
            ..PlanRecord::default()
        }
    }

    #[test]
    fn a_saved_state_loads_back_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cache/id/plan-state.json");
        let mut state = PlanState::default();
        state.plans.insert("home".into(), record(5));
        state.save(&path).expect("save");
        assert_eq!(PlanState::load(&path), state);
        let mode = fs::metadata(&path).expect("meta").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    #[test]
    fn an_update_changes_one_plan_and_keeps_the_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(STATE_FILE);
        PlanState::update(&path, "home", |r| *r = record(1)).expect("update");
        PlanState::update(&path, "work", |r| *r = record(2)).expect("update");
        PlanState::update(&path, "home", |r| r.last_prune_ns = Some(3)).expect("update");
        let state = PlanState::load(&path);
        assert_eq!(state.plans["work"], record(2));
        assert_eq!(
            state.plans["home"],
            PlanRecord {
                last_prune_ns: Some(3),
                ..record(1)
            }
        );
        let left: Vec<_> = fs::read_dir(dir.path()).expect("dir").collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_missing_damaged_oversized_or_linked_state_reads_as_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = PlanState::default();
        assert_eq!(PlanState::load(&dir.path().join("none.json")), empty);
        let garbage = dir.path().join("garbage.json");
        fs::write(&garbage, b"{\"plans\": [1, 2").expect("write");
        assert_eq!(PlanState::load(&garbage), empty);
        let big = dir.path().join("big.json");
        let mut text = String::from("{\"plans\":{\"home\":{\"last_run_ns\":1}}}");
        text.push_str(&" ".repeat(MAX_STATE_FILE as usize));
        fs::write(&big, text.as_bytes()).expect("write");
        assert_eq!(PlanState::load(&big), empty);
        let good = dir.path().join("good.json");
        fs::write(&good, b"{\"plans\":{\"home\":{\"last_run_ns\":1}}}").expect("write");
        assert_eq!(PlanState::load(&good).plans["home"].last_run_ns, Some(1));
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&good, &link).expect("symlink");
        assert_eq!(PlanState::load(&link), empty);
        assert_eq!(PlanState::load(dir.path()), empty, "a directory");
    }
}

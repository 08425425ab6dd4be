//! What the program around a plan run supplies, so the library decides and performs every
//! step without asking for a password, drawing progress or printing: [`Opener`] opens a
//! target's repository and names its local state directory; [`PlanHost`] adds the locks, the
//! backup's progress display and the [`PlanEvent`]s a run reports as it goes. The `cairn`
//! binary implements both in `src/cli/plan.rs`; a test implements them over an in-memory
//! repository.

use std::path::PathBuf;

use jiff::tz::TimeZone;

use super::report::{BackupStep, CheckStep, ForgetStep, PruneStep, TargetRun};
use super::{Plan, RepoDef};
use crate::backup::{BackupOptions, BackupOutcome};
use crate::lock::RepoLock;
use crate::repo::Repository;
use crate::snapshot::BackupMode;

/// This machine, as plans see it: its name (the host of a plan's snapshots when the plan names
/// none) and its time zone (which local date it is: the mode of the day, the prune cadence).
#[derive(Clone, Debug)]
pub struct Machine {
    /// The machine's host name, recorded in snapshots of plans without `host`.
    pub hostname: String,
    /// The local time zone: it decides the day's mode, the prune cadence's dates and the
    /// offsets reports write times with.
    pub tz: TimeZone,
}

/// Opens the repositories a plan names and says where their local state lives.
pub trait Opener {
    /// The host's own error (e.g. a password file that cannot be read); library errors
    /// convert into it, and its text is what a report shows for a target that failed.
    type Error: From<crate::Error> + std::fmt::Display;

    /// Whether a target is there to be used: Ok, or why not (a skip, as for an unplugged
    /// disk). By default [`RepoDef::is_present`] with a sentence for a missing directory; a
    /// host that reaches servers answers for `sftp:` and `s3:` targets, quickly.
    fn present(&mut self, target: &RepoDef) -> Result<(), String> {
        if target.is_present() {
            Ok(())
        } else if target.remote {
            Err("this program cannot reach remote repositories".into())
        } else {
            Err("not present".into())
        }
    }

    /// Opens a present target's repository, asking its password source (`target.password`).
    fn open(&mut self, target: &RepoDef) -> Result<Repository, Self::Error>;

    /// The repository's local state directory (its cache directory, where `plan-state.json`
    /// and check's record live); None: no state is read or kept.
    fn state_dir(&self, repo: &Repository) -> Option<PathBuf>;

    /// Now, in ns since the epoch.
    fn now_ns(&self) -> i64;

    /// A warning about a repository (a damaged index file skipped, a state file not saved).
    fn warning(&mut self, message: &str);
}

/// Everything else a run needs: locks, the backup with its progress display, and events.
pub trait PlanHost: Opener {
    /// Whether `error` means the user interrupted the run (no further target is visited).
    fn is_interrupted(&self, error: &Self::Error) -> bool;

    /// Takes the repository lock for one step (`command` names it in the lock file).
    fn lock(
        &mut self,
        repo: &Repository,
        exclusive: bool,
        command: &str,
    ) -> Result<RepoLock, Self::Error>;

    /// Runs the backup step: [`crate::backup::backup`] with `opts`, drawing the host's
    /// progress (a bar, status lines) as it goes.
    fn backup(
        &mut self,
        repo: &mut Repository,
        opts: &BackupOptions,
    ) -> crate::Result<BackupOutcome>;

    /// What the run is doing, in order; the host prints what it wants of it.
    fn event(&mut self, event: PlanEvent<'_>);
}

/// What a run reports as it goes. For each present target: `TargetStarted`, then the steps
/// that ran (`Backup`, `Forget`, `Prune`, `NoKeepRules`, `Check`, `Scrub`, in that order), then
/// `TargetDone`; an absent target only gets `TargetDone` (with `present: false`).
#[derive(Clone, Copy, Debug)]
pub enum PlanEvent<'a> {
    /// The run begins: the mode of the day and the paths backed up (to `plan.targets`).
    Started {
        /// The plan being run.
        plan: &'a Plan,
        /// The backup mode of this run, the same on every target ([`crate::plan::mode_for`]).
        mode: BackupMode,
        /// The paths the snapshots record: the sources, absolute and lexically clean.
        paths: &'a [String],
    },
    /// A present target's steps begin.
    TargetStarted(&'a RepoDef),
    /// The backup on the current target made its snapshot.
    Backup(&'a BackupStep),
    /// The plan's keep rules were applied on the current target.
    Forget(&'a ForgetStep),
    /// Prune ran, or was not due.
    Prune(&'a PruneStep),
    /// The plan has no keep rules: nothing was forgotten.
    NoKeepRules,
    /// The check ran on the current target (it may have found errors: see [`CheckStep::ok`]).
    Check(&'a CheckStep),
    /// The repository was scrubbed (and healed what it could: see
    /// [`ScrubStep::ok`](super::scrub::ScrubStep::ok)).
    Scrub(&'a super::scrub::ScrubStep),
    /// A target is finished: skipped (not present), done, or failed.
    TargetDone(&'a TargetRun),
}

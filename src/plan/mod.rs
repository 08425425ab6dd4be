//! Backup plans: what to back up, to which repositories, in which mode on which day, how long
//! to keep it and how much to verify — one TOML file, run with `cairn plan run NAME`.
//!
//! This module holds the file's model (the types below) and re-exports the rest:
//!
//! | file | owns |
//! |---|---|
//! | `config.rs` | the file's grammar: TOML → [`PlanConfig`], errors naming the key, path resolution |
//! | `schedule.rs` | day rules, the mode of a day ([`mode_for`]), the prune cadence ([`PruneWhen::is_due`]) |
//! | `snapshots.rs` | which snapshots are a plan's, matching them across targets, what a target lacks |
//! | `state.rs` | what runs remember per repository (`plan-state.json` in its local cache) |
//! | `host.rs` | what the program around a run supplies: opening, locks, progress, events ([`PlanHost`]) |
//! | `run.rs` | `plan run`: the steps on each present target ([`run`], [`StepPlan`]) |
//! | `report.rs` | what a run did, as typed values ([`RunReport`], [`TargetRun`], the steps) |
//! | `status.rs` | `plan status`: each target's health against the plan as typed [`PlanStatus`] values |
//! | `time.rs` | instants, ages and spans as reports show them |
//! | `hooks.rs` | `[plans.NAME.hooks]`: `sh -c` commands around a run and their environment |
//! | `notify.rs` | `[plans.NAME.notify]`: the webhook and healthchecks pings, bounded HTTP requests |
//! | `metrics.rs` | statuses in the Prometheus text format, and the metrics file written whole |
//!
//! Nothing here reads the environment, argv or a terminal, or prints: the caller passes in the
//! file's text, the clock, the time zone and the machine's name, and opens repositories (asking
//! for their passwords) through [`Opener`].
//!
//! # The plan file
//!
//! Default location `~/.config/cairn/cairn.toml` (`$XDG_CONFIG_HOME/cairn/cairn.toml` when that
//! is set); `--config FILE` or `CAIRN_CONFIG` chooses another. Unknown keys are errors, so a
//! typo never silently turns a rule off. Relative paths (`path`, `password_file`, `sources`) are
//! relative to the directory of the plan file; a leading `~/` is the home directory.
//!
//! ```toml
//! [repositories.usb-a]                 # one table per repository, any name
//! path = "/media/me/usb-a/cairn"       # a local directory (a USB disk may be unplugged),
//!                                      # or an sftp: or s3: location (s3: may add
//!                                      # access_key_id, secret_access_key or
//!                                      # secret_access_key_env, region)
//! password_file = "~/.config/cairn/usb.pw"   # at most one password source:
//! # password_command = "pass show cairn"     #   its stdout's first line
//! # password_env = "USB_PASSWORD"            #   the name of an environment variable
//! # none: the global ones (--password-file, CAIRN_PASSWORD_FILE, CAIRN_PASSWORD, ...)
//! sibling = "usb-b"                    # optional: heal from this repository when scrubbing
//! scrub = "weekly"                     # optional: always | daily | weekly | monthly | never
//! scrub_subset = "100%"                # optional: the share of packs a scrub reads (default all)
//!
//! [plans.home]                         # one table per plan; the name is `plan run`'s NAME
//! sources = ["~/Documents", "~/Pictures"]    # required
//! targets = ["usb-a", "usb-b"]         # required: repository names; each run goes to all present
//! excludes = ["*.tmp", "node_modules"] # optional, as `backup --exclude`; also iexcludes = [..],
//!                                      # exclude_caches = true, exclude_if_present = [".nobackup"],
//!                                      # exclude_larger_than = "2G", one_file_system = true
//! host = "laptop"                      # optional: recorded host (default: this machine's name)
//! tags = ["home"]                      # optional: tags of every snapshot
//! rpo = "26h"                          # optional: recovery point objective (default 26h)
//! prune = "weekly"                     # optional: always | daily | weekly | monthly | never
//! check_subset = "5%"                  # optional: read and verify this share of packs per run
//! check_every = "7d"                   # optional: status alarms past it without a check
//! drill_every = "30d"                  # optional: ... or without a successful drill
//! metrics_file = "/var/lib/node_exporter/cairn.prom"   # optional: plan run writes metrics
//!
//! [plans.home.hooks]                   # optional, each: sh -c commands (hooks.rs)
//! before = "systemctl stop app"        # failing, it stops the run
//! after = "systemctl start app"
//! on_failure = "logger cairn failed"
//!
//! [plans.home.notify]                  # optional, each (notify.rs)
//! webhook = "https://hooks.example/x"  # POST of the run's JSON summary on failure,
//! on_success = true                    # and on success
//! healthcheck = "https://hc-ping.com/UUID"   # GET URL/start, then URL or URL/fail
//!
//! [plans.home.schedule]                # optional: which mode on which day
//! full = "first-sunday"                # default "never"
//! differential = "sunday"              # default "never"; every other day is incremental
//!
//! [plans.home.keep]                    # optional retention, as `forget --keep-*`
//! last = 3
//! daily = 7
//! weekly = 5
//! monthly = 12
//! yearly = "unlimited"
//! within = "2w"                        # also hourly = N; tags = ["keep", "a,b"]
//! ```
//!
//! ## Day rules (`schedule.full`, `schedule.differential`)
//!
//! A comma-separated list of rules; the day matches if any rule does. Case does not matter.
//!
//! | rule | matches |
//! |---|---|
//! | `never` (alone) | no day |
//! | `always`, `daily` | every day |
//! | `monday` … `sunday` (or `mon` … `sun`) | that weekday, every week |
//! | `first-sunday`, `second-`, `third-`, `fourth-`, `last-WEEKDAY` | that weekday's occurrence in each month |
//! | `monthly:N` (N = 1…31) | day N of each month; in shorter months, the month's last day |
//! | `monthly:last` | the last day of each month |
//!
//! The mode of a run is `full` if the full rule matches today's local date, else `differential`
//! if the differential rule matches, else `incremental` (README.md "Backup modes"). One run uses
//! the same mode and the same snapshot time on every target, so the targets' snapshots can be
//! matched by time, host and paths (their ids differ: each repository has its own keys).
//!
//! ## Retention, prune and check
//!
//! After each backup, `keep` is applied to this plan's snapshots only (same host and paths as
//! the plan; other plans sharing the repository are untouched), with `forget`'s rules. No `keep`
//! table: nothing is forgotten. `prune` runs when due: `always` every run, `daily` when the last
//! prune by this plan on that target was on an earlier date, `weekly` 7 or more days earlier,
//! `monthly` a calendar month or more earlier (default `weekly`; the first run always prunes).
//! `check_subset = "N%"` reads the least recently verified N% of the packs (as `check
//! --read-data-subset N%`), so a daily 5% covers everything in 20 days; `"0%"` checks the
//! structure only; omitted: no check.
//!
//! ## Scrubbing
//!
//! A repository with `scrub` set is scrubbed by the runs of every plan that targets it, on that
//! cadence (counted per repository, as `prune` is): `scrub_subset` of its packs, least recently
//! verified first, is read and verified, and what is damaged is healed from parity
//! (`repair packs`), then, for what parity cannot rebuild, from `sibling` when it is present
//! (`repair packs --from`). What stays damaged fails the target, naming the files.

mod config;
#[cfg(test)]
mod fake;
pub mod hooks;
mod host;
pub mod metrics;
pub mod notify;
mod report;
mod run;
mod schedule;
mod scrub;
mod snapshots;
mod state;
mod status;
mod time;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use jiff::civil::Weekday;

use crate::check::ReadData;
use crate::policy::KeepPolicy;

pub use config::{parse, parse_rpo, MAX_PLAN_FILE};
pub use host::{Machine, Opener, PlanEvent, PlanHost};
pub use report::{BackupStep, CheckStep, ForgetStep, PruneStep, RunOutcome, RunReport, TargetRun};
pub use run::{run, RunOptions, StepPlan};
pub use schedule::{mode_for, parse_days};
pub use scrub::ScrubStep;
pub use snapshots::{is_plan_snapshot, missing, SnapshotKey};
pub use state::{PlanRecord, PlanState, MAX_STATE_FILE, STATE_FILE};
pub use status::{
    rpo_met, status, LastDrill, LastRun, LastSnapshot, MissingSnapshot, PlanStatus, TargetHealth,
    TargetState, TargetStatus,
};
pub use time::{span, Stamp, When};

/// The recovery point objective when a plan names none: a daily plan, with slack for a late run.
pub const DEFAULT_RPO: Duration = Duration::from_secs(26 * 3600);

/// A parsed, validated plan file.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanConfig {
    /// The `[repositories.NAME]` tables, by NAME: the targets plans may name.
    pub repositories: BTreeMap<String, RepoDef>,
    /// The `[plans.NAME]` tables, by NAME (`plan run`'s and `plan status`'s NAME).
    pub plans: BTreeMap<String, Plan>,
}

/// `[repositories.NAME]`
#[derive(Clone, Debug, PartialEq)]
pub struct RepoDef {
    /// The table's NAME, as plans' `targets` and reports name the repository.
    pub name: String,
    /// The repository's local directory (`path`): as written in the file until
    /// [`PlanConfig::resolve_paths`] resolves `~/` and relative paths.
    pub path: PathBuf,
    /// How to get its password (`password_file`, `password_command`, `password_env`, or none).
    pub password: PasswordSource,
    /// `sibling`: another `[repositories.NAME]` holding the same snapshots (the other rotating
    /// disk, kept in step by `cairn copy`), from which a scrub heals what parity cannot.
    pub sibling: Option<String>,
    /// `scrub`: how often `plan run` scrubs this repository (reads `scrub_subset` of its packs
    /// and heals what it finds, from parity, then from `sibling`); default never.
    pub scrub: PruneWhen,
    /// `scrub_subset`: the share of packs a scrub reads (default all of them, `100%`).
    pub scrub_subset: crate::check::ReadData,
    /// `path` is an `sftp:` or `s3:` location (kept as written, never resolved as a path);
    /// whether it is reachable is for the host to find out ([`Opener::present`]).
    pub remote: bool,
    /// S3 credentials from the plan file (an `s3:` target only); what is not given comes from
    /// the environment, as for `--repo`.
    pub s3: S3Keys,
}

/// `access_key_id`, `secret_access_key` (or `secret_access_key_env`, the name of the
/// environment variable holding it) and `region` of an `s3:` repository.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Keys {
    /// The access key id; None: the environment's (`AWS_ACCESS_KEY_ID`, `~/.aws/`).
    pub access_key_id: Option<String>,
    /// The secret written in the plan file.
    pub secret_access_key: Option<String>,
    /// The name of the environment variable that holds the secret.
    pub secret_access_key_env: Option<String>,
    /// The region to sign for; None: the environment's.
    pub region: Option<String>,
}

/// `[plans.NAME.hooks]`: shell commands (`sh -c`) around a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Runs before the run; failing, it stops the run (which then fails).
    pub before: Option<String>,
    /// Runs after every run that started, whatever its outcome.
    pub after: Option<String>,
    /// Runs after a run that failed (exit code other than 0), after `after`.
    pub on_failure: Option<String>,
}

/// `[plans.NAME.notify]`: who hears of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notify {
    /// POSTed the run's JSON summary when the run fails (and on success with `on_success`).
    pub webhook: Option<String>,
    /// The webhook hears of successful runs too.
    pub on_success: bool,
    /// A healthchecks-style ping URL: `URL/start` as the run begins, `URL` when it succeeds,
    /// `URL/fail` when it fails.
    pub healthcheck: Option<String>,
}

/// Where a repository's password comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    /// None given: the global sources (`--password-file`, `CAIRN_PASSWORD`, a prompt...).
    Global,
    /// `password_file`: the file's first line (docs/cli.md, "Passwords"); the path is
    /// resolved by [`PlanConfig::resolve_paths`] as `path` is.
    File(PathBuf),
    /// `password_command`: the first line of the output of `sh -c` with this command.
    Command(String),
    /// The name of an environment variable holding the password.
    Env(String),
}

/// `[plans.NAME]`
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The table's NAME: `plan run NAME`, and the key of its record in the plan state.
    pub name: String,
    /// The paths to back up (`sources`, never empty), resolved by
    /// [`PlanConfig::resolve_paths`] as [`RepoDef::path`] is.
    pub sources: Vec<PathBuf>,
    /// Glob patterns of paths to leave out, as `backup --exclude`.
    pub excludes: Vec<String>,
    /// Glob patterns of paths to leave out ignoring case, as `backup --iexclude`.
    pub iexcludes: Vec<String>,
    /// Leave out directories holding a `CACHEDIR.TAG` file (`backup --exclude-caches`).
    pub exclude_caches: bool,
    /// Leave out directories holding a file of one of these names, as
    /// `backup --exclude-if-present`.
    pub exclude_if_present: Vec<String>,
    /// Leave out files larger than this many bytes.
    pub exclude_larger_than: Option<u64>,
    /// Do not cross into other file systems (`backup --one-file-system`).
    pub one_file_system: bool,
    /// Repository names, in the order the run visits them.
    pub targets: Vec<String>,
    /// None: this machine's host name.
    pub host: Option<String>,
    /// Tags recorded in every snapshot of the plan (`backup --tag`).
    pub tags: Vec<String>,
    /// Which mode each day's run uses (`[plans.NAME.schedule]`).
    pub schedule: Schedule,
    /// The retention rules applied to the plan's own snapshots after each backup
    /// (`[plans.NAME.keep]`); empty: nothing is forgotten.
    pub keep: KeepPolicy,
    /// How often a run prunes each target (`prune`; default weekly).
    pub prune: PruneWhen,
    /// None: no check after a run. [`parse`] gives `Some(ReadData::Percent(N))` for `"N%"` and
    /// `Some(ReadData::None)` (structure only) for `"0%"`.
    pub check_subset: Option<ReadData>,
    /// The recovery point objective: the oldest the newest snapshot may be (`rpo`; default
    /// [`DEFAULT_RPO`]).
    pub rpo: Duration,
    /// `check_every`: `plan status` raises an alarm for a target whose last check is older
    /// (None: no alarm).
    pub check_every: Option<Duration>,
    /// `drill_every`: `plan status` raises an alarm for a target whose last drill is older, or
    /// failed (None: no alarm).
    pub drill_every: Option<Duration>,
    /// `metrics_file`: where `plan run` writes the plan's metrics in the Prometheus text
    /// format (for node_exporter's textfile collector), resolved as `sources` are.
    pub metrics_file: Option<PathBuf>,
    /// Commands run around each run (`[plans.NAME.hooks]`).
    pub hooks: Hooks,
    /// Notifications of each run (`[plans.NAME.notify]`).
    pub notify: Notify,
}

/// Which days get a full and which a differential backup; every other day is incremental.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// `schedule.full`: the days a run makes a full backup (this rule wins over `differential`).
    pub full: DayRule,
    /// `schedule.differential`: the days a run makes a differential backup.
    pub differential: DayRule,
}

/// A set of days; empty matches none ("never").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DayRule(pub Vec<Day>);

/// One rule of a [`DayRule`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Day {
    /// `always` or `daily`: every day.
    Every,
    /// `monday` … `sunday` (`mon` … `sun`): that weekday, every week.
    Weekday(Weekday),
    /// The `n`th (1…4, or -1 for the last) such weekday of the month.
    NthWeekday(i8, Weekday),
    /// Day N (1…31) of the month, clamped to the month's last day.
    MonthDay(i8),
    /// `monthly:last`: the last day of each month.
    LastOfMonth,
}

/// When a plan run prunes a target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PruneWhen {
    /// `always`: every run prunes.
    Always,
    /// `daily`: when the last prune by this plan on the target was on an earlier local date.
    Daily,
    /// `weekly` (the default): when the last prune was 7 or more local days earlier.
    #[default]
    Weekly,
    /// `monthly`: when the last prune was a calendar month or more earlier.
    Monthly,
    /// `never`: no run prunes, not even the first.
    Never,
}

impl RepoDef {
    /// Whether the target is here: its directory holds a repository `config` file (an
    /// unplugged USB disk is not, and a run skips it). Never true of a remote target: the
    /// host asks its server ([`Opener::present`]).
    pub fn is_present(&self) -> bool {
        !self.remote && self.path.is_dir() && self.path.join("config").is_file()
    }
}

impl Plan {
    /// The host its snapshots record: the plan's `host`, else `machine` (this machine's name).
    pub fn host_or(&self, machine: &str) -> String {
        self.host.clone().unwrap_or_else(|| machine.to_string())
    }

    /// The paths its snapshots record: the sources made absolute and lexically clean.
    pub fn snapshot_paths(&self) -> crate::Result<Vec<String>> {
        self.sources
            .iter()
            .map(|p| {
                crate::safe_fs::absolute(p)
                    .map(|a| a.to_string_lossy().into_owned())
                    .map_err(|e| crate::Error::InvalidInput(format!("source {}: {e}", p.display())))
            })
            .collect()
    }
}

/// How plan reports write ids, paths and names in JSON (the rules of the CLI's `--json`).
mod ser {
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};

    use serde::ser::SerializeMap;
    use serde::Serializer;

    use crate::backup::EntryError;
    use crate::check::ReadData;
    use crate::id::SnapshotId;

    /// A path as text, each invalid UTF-8 sequence replaced by U+FFFD.
    pub fn lossy_path<P: AsRef<Path>, S: Serializer>(p: &P, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&p.as_ref().to_string_lossy())
    }

    pub fn lossy_paths<S: Serializer>(ps: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ps.iter().map(|p| p.to_string_lossy()))
    }

    pub fn id<S: Serializer>(id: &SnapshotId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.to_hex())
    }

    pub fn opt_id<S: Serializer>(id: &Option<SnapshotId>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => s.serialize_str(&id.to_hex()),
            None => s.serialize_none(),
        }
    }

    pub fn ids<S: Serializer>(ids: &[SnapshotId], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ids.iter().map(|i| i.to_hex()))
    }

    /// `{"error", "path"}`; a path that is not UTF-8 is written lossily and its exact bytes
    /// are added as `path_hex` (README.md, "--json").
    pub fn entry_errors<S: Serializer>(errors: &[EntryError], s: S) -> Result<S::Ok, S::Error> {
        struct One<'a>(&'a EntryError);
        impl serde::Serialize for One<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let bytes = self.0.path.as_os_str().as_bytes();
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("error", &self.0.error)?;
                match std::str::from_utf8(bytes) {
                    Ok(p) => m.serialize_entry("path", p)?,
                    Err(_) => {
                        m.serialize_entry("path", &String::from_utf8_lossy(bytes))?;
                        m.serialize_entry("path_hex", &hex::encode(bytes))?;
                    }
                }
                m.end()
            }
        }
        s.collect_seq(errors.iter().map(One))
    }

    /// `"5%"` for a share of the packs; null for anything else (a structure-only check).
    pub fn subset_or_null<S: Serializer>(r: &ReadData, s: S) -> Result<S::Ok, S::Error> {
        match r {
            ReadData::Percent(p) => s.serialize_str(&format!("{p}%")),
            _ => s.serialize_none(),
        }
    }

    /// A plan's `check_subset`: `"5%"`, `"0%"` (structure only), or null (no check).
    pub fn check_subset<S: Serializer>(r: &Option<ReadData>, s: S) -> Result<S::Ok, S::Error> {
        match r {
            Some(ReadData::Percent(p)) => s.serialize_str(&format!("{p}%")),
            Some(_) => s.serialize_str("0%"),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(dir: &std::path::Path) -> RepoDef {
        RepoDef {
            name: "usb".into(),
            path: dir.to_path_buf(),
            password: PasswordSource::Global,
            sibling: None,
            scrub: PruneWhen::Never,
            scrub_subset: ReadData::All,
            remote: false,
            s3: S3Keys::default(),
        }
    }

    #[test]
    fn a_target_is_present_only_when_its_directory_holds_a_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        assert!(
            !target(&repo).is_present(),
            "nothing there (an unplugged disk)"
        );
        std::fs::create_dir(&repo).expect("dir");
        assert!(!target(&repo).is_present(), "an empty directory");
        std::fs::create_dir(repo.join("config")).expect("dir");
        assert!(!target(&repo).is_present(), "config is a directory");
        std::fs::remove_dir(repo.join("config")).expect("rmdir");
        std::fs::write(repo.join("config"), b"x").expect("config");
        assert!(target(&repo).is_present());
        assert!(
            !target(&repo.join("config")).is_present(),
            "the path is a file"
        );
    }

    #[test]
    fn a_plans_host_and_paths_are_what_its_snapshots_record() {
        let cfg = parse(
            "[repositories.a]\npath = \"/a\"\n[plans.p]\nsources = [\"/data/./x/../docs\", \"/srv\"]\ntargets = [\"a\"]\n",
        )
        .expect("plan");
        let p = &cfg.plans["p"];
        assert_eq!(p.host_or("box"), "box");
        assert_eq!(p.snapshot_paths().expect("paths"), ["/data/docs", "/srv"]);
        let named = Plan {
            host: Some("laptop".into()),
            ..p.clone()
        };
        assert_eq!(named.host_or("box"), "laptop");
    }
}

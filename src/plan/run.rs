//! `plan run`: one run of a plan over its targets. For each target that is present (an
//! unplugged disk is skipped), in the plan's order: back up (the day's mode, one snapshot time
//! for all targets, under a shared lock), forget by the plan's keep rules and prune when due
//! (under one exclusive lock), check the plan's share of packs, and record the outcome in the
//! target's plan state. A target that fails does not stop the others; an interruption does.
//!
//! The result is a typed [`RunReport`] (report.rs); its JSON form (the CLI's `--json` lines)
//! is the `Serialize` of those types. What the host must do (passwords, locks, progress, printing)
//! goes through [`PlanHost`].

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use jiff::civil::Date;
use jiff::Timestamp;

use super::host::{PlanEvent, PlanHost};
use super::report::{BackupStep, CheckStep, ForgetStep, PruneStep, RunReport, TargetRun};
use super::state::{PlanRecord, PlanState, STATE_FILE};
use super::time::{local_date, Stamp};
use super::{is_plan_snapshot, mode_for, Plan, PlanConfig, RepoDef};
use crate::backend::Location;
use crate::backup::{BackupOptions, DirId, Excludes};
use crate::check::{check, CheckOptions, ReadData};
use crate::error::{Error, ErrorKind};
use crate::id::SnapshotId;
use crate::policy::{self, GroupBy};
use crate::prune::{prune, PruneOptions};
use crate::repo::Repository;
use crate::snapshot::{BackupMode, Snapshot};

/// Who runs the backup, as its snapshots record it, and how to stop it. The host's name and
/// time zone are the [`Machine`](super::Machine)'s.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// This machine: the host name recorded when the plan names none, and the time zone that
    /// decides the day's mode and the prune cadence.
    pub machine: super::Machine,
    /// Name of the user running the plan, recorded in each snapshot.
    pub user: String,
    /// Numeric user id running the plan, recorded in each snapshot.
    pub uid: u32,
    /// Numeric group id running the plan, recorded in each snapshot.
    pub gid: u32,
    /// Set from outside (Ctrl-C) to stop: the backup stops at the next file, and no further
    /// step or target starts.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// What a run does on one present target after its backup, decided from the plan and the
/// target's state before any of it starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepPlan {
    /// Apply the keep rules (the plan has some).
    pub forget: bool,
    /// Prune (due by the plan's cadence, given the target's last prune by this plan).
    pub prune: bool,
    /// Check, reading this share of the packs (`ReadData::None`: structure only).
    pub check: Option<ReadData>,
}

impl StepPlan {
    /// The steps for a run on local date `today`, the last prune having been on `last_prune`.
    pub fn decide(plan: &Plan, last_prune: Option<Date>, today: Date) -> StepPlan {
        StepPlan {
            forget: !plan.keep.is_empty(),
            prune: plan.prune.is_due(last_prune, today),
            check: plan.check_subset,
        }
    }
}

/// What is the same for every target of one run.
struct RunInfo<'a> {
    plan: &'a Plan,
    /// The plan file's repositories: a target's sibling is one of them.
    repositories: &'a std::collections::BTreeMap<String, RepoDef>,
    opts: &'a RunOptions,
    mode: BackupMode,
    /// One snapshot time for all targets, so their snapshots match by time across repositories.
    time_ns: i64,
    tz_offset_s: i32,
    today: Date,
    host: String,
    paths: Vec<String>,
    excludes: Excludes,
}

impl RunInfo<'_> {
    fn cancelled(&self) -> bool {
        self.opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
    }
}

/// Why a target failed: the host's error, a library error in a named step, or a finding.
pub(super) enum Failure<E> {
    Host(E),
    Step { context: String, error: Error },
    Found(String),
}

impl<E: From<Error> + std::fmt::Display> Failure<E> {
    /// The message a report shows (`backup: storage error on …`) and whether it was an
    /// interruption.
    fn describe<H: PlanHost<Error = E>>(self, host: &H) -> (String, bool) {
        match self {
            Failure::Host(e) => (e.to_string(), host.is_interrupted(&e)),
            Failure::Step { context, error } => {
                let interrupted = error.kind() == ErrorKind::Interrupted;
                let e = E::from(error);
                if context.is_empty() {
                    (e.to_string(), interrupted)
                } else {
                    (format!("{context}: {e}"), interrupted)
                }
            }
            Failure::Found(m) => (m, false),
        }
    }
}

/// A library error in the step `context` names ("" for none).
pub(super) fn step<E>(context: &str) -> impl FnOnce(Error) -> Failure<E> + '_ {
    move |error| Failure::Step {
        context: context.to_string(),
        error,
    }
}

fn interrupted<E>() -> Failure<E> {
    Failure::Step {
        context: String::new(),
        error: Error::Interrupted,
    }
}

/// The plan's excludes as backup options (the repository itself is added per target).
fn excludes(plan: &Plan) -> crate::Result<Excludes> {
    let sel = crate::filter::Selection::new(&[], &plan.excludes, &plan.iexcludes)
        .map_err(|e| Error::InvalidInput(format!("plans.{}.excludes: {e}", plan.name)))?;
    Ok(Excludes {
        patterns: (!sel.is_everything()).then_some(sel),
        caches: plan.exclude_caches,
        if_present: plan.exclude_if_present.clone(),
        larger_than: plan.exclude_larger_than,
        one_file_system: plan.one_file_system,
        repository: None,
    })
}

/// Runs `plan` (from `cfg`) on every present target. Errors before the first target (a source
/// path or an exclude pattern that cannot be used) end the run; a target's failure is in its
/// [`TargetRun`].
pub fn run<H: PlanHost>(
    host: &mut H,
    cfg: &PlanConfig,
    plan: &Plan,
    opts: &RunOptions,
) -> Result<RunReport, H::Error> {
    let start_ns = host.now_ns();
    let start = Timestamp::from_nanosecond(i128::from(start_ns))
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(opts.machine.tz.clone());
    let mut targets = Vec::with_capacity(plan.targets.len());
    for t in &plan.targets {
        let r = cfg.repositories.get(t).ok_or_else(|| {
            Error::InvalidInput(format!(
                "plans.{}.targets: unknown repository {t:?}",
                plan.name
            ))
        })?;
        targets.push(r);
    }
    let info = RunInfo {
        plan,
        repositories: &cfg.repositories,
        opts,
        mode: mode_for(plan, start.date()),
        time_ns: start_ns,
        tz_offset_s: start.offset().seconds(),
        today: start.date(),
        host: plan.host_or(&opts.machine.hostname),
        paths: plan.snapshot_paths()?,
        excludes: excludes(plan)?,
    };
    host.event(PlanEvent::Started {
        plan,
        mode: info.mode,
        paths: &info.paths,
    });
    let mut report = RunReport {
        plan: plan.name.clone(),
        mode: info.mode,
        time: Stamp {
            ns: info.time_ns,
            offset_s: info.tz_offset_s,
        },
        targets_present: 0,
        targets_failed: 0,
        targets: Vec::new(),
        interrupted: false,
    };
    for r in targets {
        if info.cancelled() {
            report.interrupted = true;
            break;
        }
        let presence = host.present(r);
        let mut t = TargetRun {
            target: r.name.clone(),
            path: r.path.clone(),
            present: presence.is_ok(),
            absent: presence.err(),
            ok: None,
            error: None,
            backup: None,
            forget: None,
            prune: None,
            check: None,
            scrub: None,
            interrupted: false,
        };
        if t.present {
            report.targets_present += 1;
            host.event(PlanEvent::TargetStarted(r));
            match run_target(host, &info, r, &mut t) {
                Ok(()) => t.ok = Some(true),
                Err(f) => {
                    let (message, interrupted) = f.describe(host);
                    report.targets_failed += 1;
                    t.ok = Some(false);
                    t.error = Some(message);
                    t.interrupted = interrupted;
                }
            }
        }
        host.event(PlanEvent::TargetDone(&t));
        report.interrupted |= t.interrupted;
        report.targets.push(t);
        if report.interrupted {
            break;
        }
    }
    Ok(report)
}

/// Runs the plan's steps on one present target and records the outcome in its plan state.
fn run_target<H: PlanHost>(
    host: &mut H,
    info: &RunInfo,
    r: &RepoDef,
    t: &mut TargetRun,
) -> Result<(), Failure<H::Error>> {
    let mut repo = host.open(r).map_err(Failure::Host)?;
    let state = host.state_dir(&repo).map(|d| d.join(STATE_FILE));
    let result = steps(host, info, r, &mut repo, state.as_deref(), t);
    let (now, ok) = (host.now_ns(), result.is_ok());
    record(host, state.as_deref(), &info.plan.name, |p| {
        p.last_run_ns = Some(now);
        p.last_run_ok = Some(ok);
    });
    result
}

/// Changes this plan's record in the state file; a failure to save is a warning.
fn record<H: PlanHost>(
    host: &mut H,
    path: Option<&Path>,
    plan: &str,
    f: impl FnOnce(&mut PlanRecord),
) {
    let Some(path) = path else {
        return;
    };
    if let Err(e) = PlanState::update(path, plan, f) {
        host.warning(&format!("could not save {}: {e}", path.display()));
    }
}

/// Hands the repository's collected warnings to the host.
fn flush_warnings<H: PlanHost>(host: &mut H, repo: &Repository) {
    for w in repo.take_warnings() {
        host.warning(&w);
    }
}

fn steps<H: PlanHost>(
    host: &mut H,
    info: &RunInfo,
    r: &RepoDef,
    repo: &mut Repository,
    state: Option<&Path>,
    t: &mut TargetRun,
) -> Result<(), Failure<H::Error>> {
    let plan = info.plan;

    // 1. Backup, under a shared lock.
    {
        let _lock = host
            .lock(repo, false, "plan run (backup)")
            .map_err(Failure::Host)?;
        repo.load_index().map_err(step("loading the index"))?;
        flush_warnings(host, repo);
        let repository = match Location::parse(&repo.backend().location()) {
            Ok(Location::Local(p)) => DirId::of(&p).ok(),
            _ => None,
        };
        let opts = BackupOptions {
            paths: plan.sources.clone(),
            host: info.host.clone(),
            user: info.opts.user.clone(),
            uid: info.opts.uid,
            gid: info.opts.gid,
            tags: plan.tags.clone(),
            time_ns: info.time_ns,
            tz_offset_s: info.tz_offset_s,
            mode: info.mode,
            parent: None,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            cancel: info.opts.cancel.clone(),
            exclude: Excludes {
                repository,
                ..info.excludes.clone()
            },
            checkpoint_every: Some(std::time::Duration::from_secs(300)),
            ..BackupOptions::default()
        };
        let out = host.backup(repo, &opts).map_err(step("backup"))?;
        let b = t.backup.insert(BackupStep::of(out));
        host.event(PlanEvent::Backup(b));
    }
    if info.cancelled() {
        return Err(interrupted());
    }

    // 2, 3. Forget and prune, under one exclusive lock.
    let last_prune = state
        .map(PlanState::load)
        .and_then(|s| s.plans.get(&plan.name).and_then(|p| p.last_prune_ns));
    let tz = &info.opts.machine.tz;
    let todo = StepPlan::decide(plan, last_prune.and_then(|t| local_date(t, tz)), info.today);
    if todo.forget || todo.prune {
        let _lock = host
            .lock(repo, true, "plan run (forget, prune)")
            .map_err(Failure::Host)?;
        if todo.forget {
            let now = host.now_ns();
            let f = t.forget.insert(forget(repo, info, now)?);
            host.event(PlanEvent::Forget(f));
        }
        if todo.prune {
            let p = prune(repo, &PruneOptions::default()).map_err(step("prune"))?;
            flush_warnings(host, repo);
            let now = host.now_ns();
            record(host, state, &plan.name, |r| r.last_prune_ns = Some(now));
            let p = t.prune.insert(PruneStep::of(&p));
            host.event(PlanEvent::Prune(p));
        }
    }
    if !todo.prune {
        let p = t.prune.insert(PruneStep::NotDue {
            when: plan.prune,
            last: last_prune.map(|ns| Stamp::local(ns, tz)),
        });
        host.event(PlanEvent::Prune(p));
    }
    if !todo.forget {
        host.event(PlanEvent::NoKeepRules);
    }
    if info.cancelled() {
        return Err(interrupted());
    }

    // 4. Check a subset of the data, under a shared lock.
    if let Some(read) = todo.check {
        let _lock = host
            .lock(repo, false, "plan run (check)")
            .map_err(Failure::Host)?;
        let opts = CheckOptions {
            read_data: read,
            state_file: host
                .state_dir(repo)
                .map(|d| d.join(crate::check::STATE_FILE)),
            now_ns: host.now_ns(),
            ..CheckOptions::default()
        };
        let c = check(repo, &opts).map_err(step("check"))?;
        let errors = c.errors.len();
        let c = t.check.insert(CheckStep::of(read, c));
        host.event(PlanEvent::Check(c));
        if errors > 0 {
            return Err(Failure::Found(format!(
                "check found {errors} errors; run `cairn -r {} check --read-data`",
                repo.backend().location()
            )));
        }
        record(host, state, &plan.name, |r| {
            r.last_check_ns = Some(opts.now_ns)
        });
    }
    if info.cancelled() {
        return Err(interrupted());
    }

    // 5. Scrub, when due for this repository: read, heal from parity, then from the sibling.
    let last_scrub = state.map(PlanState::load).and_then(|s| s.last_scrub_ns);
    if r.scrub
        .is_due(last_scrub.and_then(|t| local_date(t, tz)), info.today)
    {
        let sibling = r.sibling.as_ref().and_then(|n| info.repositories.get(n));
        let check_state = host
            .state_dir(repo)
            .map(|d| d.join(crate::check::STATE_FILE));
        let s = t
            .scrub
            .insert(super::scrub::scrub(host, repo, r, sibling, check_state)?);
        if !s.ok() {
            return Err(Failure::Found(format!(
                "scrub found damage it could not heal: {}; run `cairn -r {} repair packs`",
                s.unhealed.join("; "),
                repo.backend().location()
            )));
        }
        let now = host.now_ns();
        if let Some(path) = state {
            if let Err(e) = PlanState::update_repository(path, |st| st.last_scrub_ns = Some(now)) {
                host.warning(&format!("could not save {}: {e}", path.display()));
            }
        }
    }
    Ok(())
}

/// Applies the plan's keep rules to its own snapshots (same host and paths; grouped by host
/// and paths as `forget` does) and removes the rest.
fn forget<E>(repo: &mut Repository, info: &RunInfo, now_ns: i64) -> Result<ForgetStep, Failure<E>> {
    let all = repo.snapshots().map_err(step(""))?;
    let mine: Vec<(SnapshotId, &Snapshot)> = all
        .iter()
        .filter(|(_, s)| is_plan_snapshot(s, &info.host, &info.paths))
        .map(|(id, s)| (*id, s))
        .collect();
    let mut kept = 0;
    let mut removed = Vec::new();
    for members in policy::group(&mine, GroupBy::HOST_PATHS).values() {
        for d in policy::apply(&info.plan.keep, members, now_ns) {
            if d.keep {
                kept += 1;
            } else {
                removed.push(d.id);
            }
        }
    }
    for id in &removed {
        repo.remove_snapshot(id).map_err(|error| Failure::Step {
            context: format!("forgetting snapshot {}", id.short()),
            error,
        })?;
    }
    Ok(ForgetStep {
        policy: info.plan.keep.to_string(),
        kept,
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use crate::plan::{PruneWhen, RunOutcome};

    use crate::backend::{Backend, FileKind};
    use crate::plan::fake::{config, FakeHost};
    use crate::plan::{Machine, PlanState};
    use jiff::civil::date;
    use jiff::tz::TimeZone;

    /// 2024-03-03T10:00:00Z, the first Sunday of March 2024.
    const SUNDAY: i64 = 1_709_460_000 * 1_000_000_000;
    const DAY: i64 = 86_400 * 1_000_000_000;

    struct World {
        dir: tempfile::TempDir,
        host: FakeHost,
    }

    impl World {
        fn new() -> World {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::create_dir_all(dir.path().join("src/sub")).expect("src");
            std::fs::write(dir.path().join("src/a.txt"), b"first\n").expect("file");
            std::fs::write(
                dir.path().join("src/sub/b.bin"),
                crate::testutil::bytes(3, 50_000),
            )
            .expect("file");
            let host = FakeHost::new(&dir.path().join("state"), SUNDAY);
            World { dir, host }
        }

        fn targets(&self) -> PathBuf {
            self.dir.path().join("targets")
        }

        fn present(&mut self, name: &str) {
            let at = self.targets().join(name);
            self.host.add_present(name, &at);
        }

        fn config(&self, targets: &[&str], extra: &str) -> PlanConfig {
            config(
                &self.targets(),
                &self.dir.path().join("src"),
                targets,
                extra,
            )
        }

        fn run(&mut self, cfg: &PlanConfig, cancel: bool) -> RunReport {
            let opts = RunOptions {
                machine: Machine {
                    hostname: "this-machine".into(),
                    tz: TimeZone::UTC,
                },
                user: "me".into(),
                uid: 1000,
                gid: 1000,
                cancel: Some(Arc::new(AtomicBool::new(cancel))),
            };
            run(&mut self.host, cfg, &cfg.plans["p"], &opts).expect("run")
        }

        fn state(&self, target: &str) -> PlanRecord {
            let repo = self.host.reopen(target);
            let path = self.host.state.join(repo.id().to_hex()).join(STATE_FILE);
            PlanState::load(&path).plans.remove("p").unwrap_or_default()
        }
    }

    #[test]
    fn a_run_backs_up_each_present_target_and_skips_an_absent_one() {
        let mut w = World::new();
        w.present("a");
        let cfg = w.config(
            &["b", "a"],
            "check_subset = \"100%\"\n[plans.p.schedule]\nfull = \"first-sunday\"\n",
        );
        let report = w.run(&cfg, false);
        assert_eq!(report.outcome(), RunOutcome::Ok);
        assert_eq!((report.targets_present, report.targets_failed), (1, 0));
        assert_eq!(
            w.host.events,
            [
                "started full",
                "done b ok=None",
                "target a",
                "backup full",
                "prune",
                "no keep rules",
                "check ok=true",
                "done a ok=Some(true)",
            ]
        );
        let b = serde_json::to_value(&report.targets[0]).expect("json");
        assert_eq!(b["present"], false);
        assert!(b["ok"].is_null() && b.get("error").is_none() && b.get("backup").is_none());

        let snaps = w.host.reopen("a").snapshots().expect("snapshots");
        assert_eq!(snaps.len(), 1);
        let s = &snaps[0].1;
        assert_eq!((s.time_ns, s.mode), (SUNDAY, BackupMode::Full));
        assert_eq!(s.host, "plan-host");
        let src = w.dir.path().join("src").display().to_string();
        assert_eq!(s.paths, vec![src]);
        assert_eq!(
            w.state("a"),
            PlanRecord {
                last_run_ns: Some(SUNDAY),
                last_run_ok: Some(true),
                last_prune_ns: Some(SUNDAY),
                last_check_ns: Some(SUNDAY),
            }
        );
    }

    #[test]
    fn a_target_that_cannot_be_opened_fails_alone_and_fails_the_run() {
        let mut w = World::new();
        w.present("a");
        w.present("c");
        w.host.no_password.insert("a".into());
        let cfg = w.config(&["a", "c"], "");
        let report = w.run(&cfg, false);
        assert_eq!(report.outcome(), RunOutcome::Failed);
        assert_eq!((report.targets_present, report.targets_failed), (2, 1));
        let a = &report.targets[0];
        assert_eq!(a.ok, Some(false));
        assert_eq!(a.error.as_deref(), Some("no password for repository a"));
        assert!(!a.interrupted);
        assert_eq!(
            report.targets[1].ok,
            Some(true),
            "the next target still ran"
        );
        assert_eq!(w.host.reopen("c").snapshots().expect("list").len(), 1);
    }

    #[test]
    fn with_no_target_present_nothing_is_opened_and_the_run_says_so() {
        let mut w = World::new();
        let cfg = w.config(&["a", "b"], "");
        let report = w.run(&cfg, false);
        assert_eq!(report.outcome(), RunOutcome::NoTargetPresent);
        assert_eq!(report.targets.len(), 2);
        assert!(report.targets.iter().all(|t| !t.present && t.ok.is_none()));
    }

    #[test]
    fn an_interrupted_run_visits_no_further_target() {
        let mut w = World::new();
        w.present("a");
        let cfg = w.config(&["a"], "");
        let report = w.run(&cfg, true);
        assert_eq!(report.outcome(), RunOutcome::Interrupted);
        assert!(report.targets.is_empty());
        assert!(w.host.reopen("a").snapshots().expect("list").is_empty());
    }

    #[test]
    fn keep_rules_forget_only_the_plans_snapshots_and_prune_waits_for_its_cadence() {
        let mut w = World::new();
        w.present("a");
        // Another plan's snapshot in the same repository (another host).
        let mut repo = w.host.reopen("a");
        repo.load_index().expect("index");
        let other = BackupOptions {
            paths: vec![w.dir.path().join("src")],
            host: "elsewhere".into(),
            time_ns: SUNDAY - DAY,
            threads: 1,
            ..BackupOptions::default()
        };
        crate::backup::backup(&mut repo, &other, &crate::backup::NoProgress).expect("backup");
        let cfg = w.config(&["a"], "[plans.p.keep]\nlast = 1\n");
        let first = w.run(&cfg, false);
        assert!(matches!(
            first.targets[0].prune,
            Some(PruneStep::Ran { .. })
        ));
        assert_eq!(
            first.targets[0].forget.as_ref().map(|f| f.removed.len()),
            Some(0)
        );

        w.host.now_ns = SUNDAY + DAY;
        std::fs::write(w.dir.path().join("src/a.txt"), b"second\n").expect("file");
        let second = w.run(&cfg, false);
        let t = &second.targets[0];
        assert_eq!(t.ok, Some(true), "{t:?}");
        let forgot = t.forget.as_ref().expect("forget ran");
        assert_eq!((forgot.kept, forgot.removed.len()), (1, 1));
        assert_eq!(
            t.prune,
            Some(PruneStep::NotDue {
                when: PruneWhen::Weekly,
                last: Some(Stamp {
                    ns: SUNDAY,
                    offset_s: 0
                }),
            }),
            "a weekly prune is not due the next day"
        );
        let left = w.host.reopen("a").snapshots().expect("list");
        let hosts: BTreeSet<&str> = left.iter().map(|(_, s)| s.host.as_str()).collect();
        assert_eq!(left.len(), 2);
        assert_eq!(hosts, BTreeSet::from(["elsewhere", "plan-host"]));
        assert!(left.iter().any(|(_, s)| s.time_ns == SUNDAY + DAY));
    }

    #[test]
    fn a_check_that_finds_damage_fails_the_target_and_is_not_remembered_as_good() {
        let mut w = World::new();
        w.present("a");
        let cfg = w.config(&["a"], "prune = \"never\"\ncheck_subset = \"100%\"\n");
        assert_eq!(w.run(&cfg, false).outcome(), RunOutcome::Ok);
        let backend = w.host.repos["a"].clone();
        for (name, _) in backend.list(FileKind::Pack).expect("packs") {
            backend.delete(FileKind::Pack, &name).expect("delete");
        }
        w.host.now_ns = SUNDAY + DAY;
        let report = w.run(&cfg, false);
        assert_eq!(report.outcome(), RunOutcome::Failed);
        let t = &report.targets[0];
        assert!(t
            .check
            .as_ref()
            .is_some_and(|c| !c.ok && !c.errors.is_empty()));
        let error = t.error.as_deref().unwrap_or_default();
        assert!(
            error.starts_with("check found") && error.contains("check --read-data"),
            "{error}"
        );
        let state = w.state("a");
        assert_eq!(state.last_run_ok, Some(false));
        assert_eq!(state.last_run_ns, Some(SUNDAY + DAY));
        assert_eq!(
            state.last_check_ns,
            Some(SUNDAY),
            "the failed check is not recorded"
        );
    }

    #[test]
    fn a_scrub_heals_lost_packs_from_the_sibling_and_is_not_due_again_until_its_cadence() {
        let mut w = World::new();
        w.present("a");
        w.present("b");
        // b is a's sibling, kept in step by `copy` (the same trees and chunks).
        let mut cfg = w.config(&["a"], "prune = \"never\"\n");
        {
            let a = cfg.repositories.get_mut("a").expect("a");
            a.scrub = PruneWhen::Weekly;
            a.sibling = Some("b".into());
        }
        // The first run scrubs a whole repository: nothing to heal.
        let report = w.run(&cfg, false);
        assert_eq!(report.outcome(), RunOutcome::Ok);
        let first = report.targets[0]
            .scrub
            .as_ref()
            .expect("scrubbed on the first run");
        assert!(
            first.ok() && first.found.is_empty() && first.packs_read > 0,
            "{first:?}"
        );
        assert!(
            w.host
                .events
                .iter()
                .any(|e| e == "scrub found=0 parity=0 sibling=0 ok=true"),
            "a clean scrub is reported too: {:?}",
            w.host.events
        );
        let mut src = w.host.reopen("a");
        src.load_index().expect("index");
        let mut dst = w.host.reopen("b");
        dst.load_index().expect("index");
        let snaps = src.snapshots().expect("snapshots");
        crate::copy::copy(
            &src,
            &mut dst,
            &snaps,
            &crate::copy::CopyOptions::default(),
            &crate::copy::NoCopyProgress,
        )
        .expect("copy");
        // Every pack of a is lost; the next day's scrub is not due (weekly)...
        let backend = w.host.repos["a"].clone();
        let lost: Vec<String> = backend
            .list(FileKind::Pack)
            .expect("packs")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for name in &lost {
            backend.delete(FileKind::Pack, name).expect("delete");
        }
        w.host.now_ns = SUNDAY + DAY;
        let report = w.run(&cfg, false);
        assert!(report.targets[0].scrub.is_none(), "not due a day later");
        // ... a week later it is: it finds the damage and heals it from b.
        w.host.now_ns = SUNDAY + 7 * DAY;
        let report = w.run(&cfg, false);
        let t = &report.targets[0];
        let s = t.scrub.as_ref().expect("scrubbed a week later");
        assert!(!s.found.is_empty(), "{s:?}");
        assert_eq!(s.sibling.as_deref(), Some("b"));
        assert!(s.healed_from_sibling > 0, "{s:?}");
        assert!(s.ok(), "{s:?}");
        assert_eq!(t.ok, Some(true), "{:?}", t.error);
        let mut healed = w.host.reopen("a");
        healed.load_index().expect("index");
        let after = check(
            &mut healed,
            &CheckOptions {
                read_data: ReadData::All,
                ..CheckOptions::default()
            },
        )
        .expect("check");
        assert!(after.ok(), "{:?}", after.errors);
        assert!(w
            .host
            .events
            .iter()
            .any(|e| e.starts_with("scrub found=") && e.ends_with("ok=true")));
    }

    #[test]
    fn a_scrub_that_cannot_heal_fails_the_target_naming_the_damage() {
        let mut w = World::new();
        w.present("a");
        let mut cfg = w.config(&["a"], "prune = \"never\"\n");
        cfg.repositories.get_mut("a").expect("a").scrub = PruneWhen::Always;
        assert_eq!(w.run(&cfg, false).outcome(), RunOutcome::Ok);
        let backend = w.host.repos["a"].clone();
        for (name, _) in backend.list(FileKind::Pack).expect("packs") {
            backend.delete(FileKind::Pack, &name).expect("delete");
        }
        w.host.now_ns = SUNDAY + DAY;
        let report = w.run(&cfg, false);
        assert_eq!(report.outcome(), RunOutcome::Failed);
        let t = &report.targets[0];
        let s = t.scrub.as_ref().expect("scrubbed");
        assert!(!s.ok() && !s.unhealed.is_empty(), "{s:?}");
        let error = t.error.as_deref().unwrap_or_default();
        assert!(
            error.starts_with("scrub found damage it could not heal")
                && error.contains("repair packs"),
            "{error}"
        );
    }

    fn plan(extra: &str) -> Plan {
        let text = format!(
            "[repositories.a]\npath = \"/a\"\n[plans.p]\nsources = [\"/s\"]\ntargets = [\"a\"]\n{extra}"
        );
        crate::plan::parse(&text).expect("plan").plans["p"].clone()
    }

    #[test]
    fn the_steps_follow_the_keep_rules_the_prune_cadence_and_the_check_subset() {
        let today = date(2024, 3, 10);
        let p = plan("");
        assert_eq!(
            StepPlan::decide(&p, Some(today), today),
            StepPlan {
                forget: false,
                prune: false,
                check: None
            },
            "no keep rules, pruned today, no check_subset"
        );
        assert!(StepPlan::decide(&p, None, today).prune, "never pruned");
        assert!(StepPlan::decide(&p, Some(date(2024, 3, 3)), today).prune);
        let p = plan("check_subset = \"5%\"\nprune = \"never\"\n[plans.p.keep]\ndaily = 7\n");
        let steps = StepPlan::decide(&p, None, today);
        assert!(steps.forget && !steps.prune);
        assert_eq!(
            steps.check,
            Some(ReadData::Percent(5.0)),
            "checked on every run"
        );
        let p = plan("check_subset = \"0%\"\n");
        assert_eq!(
            StepPlan::decide(&p, None, today).check,
            Some(ReadData::None),
            "0% checks the structure only"
        );
    }
}

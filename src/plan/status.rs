//! `plan status`: each plan's targets against the plan — present or not, this plan's newest
//! snapshot and its age against the RPO, the last run, prune (and whether one is due), check
//! and drill, and which of this plan's snapshots a target lacks that another has. Each present
//! repository is opened once, whatever number of plans use it.
//!
//! The values are typed; their `Serialize` is the CLI's `plan status --json` document.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::host::{Machine, Opener};
use super::ser;
use super::state::{PlanState, STATE_FILE};
use super::time::{local_date, span, Stamp, When};
use super::{is_plan_snapshot, missing, mode_for, Plan, PlanConfig, PruneWhen, SnapshotKey};
use crate::check::ReadData;
use crate::drill::DrillRecord;
use crate::error::Error;
use crate::id::SnapshotId;
use crate::snapshot::{BackupMode, Snapshot};

/// Whether the newest snapshot (ns since the epoch) is recent enough at `now_ns`: at most
/// `rpo` old (exactly `rpo` still meets it).
pub fn rpo_met(newest_ns: Option<i64>, now_ns: i64, rpo: Duration) -> bool {
    newest_ns.is_some_and(|t| {
        i128::from(now_ns) - i128::from(t) <= i128::try_from(rpo.as_nanos()).unwrap_or(i128::MAX)
    })
}

/// One plan's status.
#[derive(Clone, Debug)]
pub struct PlanStatus {
    /// The plan's name.
    pub name: String,
    /// The host its snapshots record.
    pub host: String,
    /// The paths its snapshots record.
    pub paths: Vec<String>,
    /// The plan's recovery point objective (`"rpo"` as a span such as `26h`, and `"rpo_s"` in
    /// seconds, in JSON).
    pub rpo: Duration,
    /// Whether at least one target meets the RPO.
    pub rpo_met: bool,
    /// The mode a run today would use.
    pub mode_today: BackupMode,
    /// The plan's prune cadence.
    pub prune: PruneWhen,
    /// The plan's `check_subset` (None: no check; `"0%"` in JSON for a structure-only check).
    pub check_subset: Option<ReadData>,
    /// The plan's `check_every` (`"check_every_s"` in JSON).
    pub check_every: Option<Duration>,
    /// The plan's `drill_every` (`"drill_every_s"` in JSON).
    pub drill_every: Option<Duration>,
    /// Each of the plan's targets, in the plan's order.
    pub targets: Vec<TargetStatus>,
    /// What is wrong: no target meets the RPO, a readable target's last check or drill is
    /// older than the plan's `check_every` or `drill_every` (or the drill failed). Empty: all
    /// well. `plan status` exits 1 when a plan it shows has one.
    pub alarms: Vec<String>,
}

impl Serialize for PlanStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            name: &'a str,
            host: &'a str,
            paths: &'a [String],
            rpo: String,
            rpo_s: u64,
            rpo_met: bool,
            mode_today: BackupMode,
            prune: &'static str,
            #[serde(serialize_with = "ser::check_subset")]
            check_subset: Option<ReadData>,
            check_every_s: Option<u64>,
            drill_every_s: Option<u64>,
            ok: bool,
            alarms: &'a [String],
            targets: &'a [TargetStatus],
        }
        Wire {
            name: &self.name,
            host: &self.host,
            paths: &self.paths,
            rpo: span(self.rpo.as_secs() as i64),
            rpo_s: self.rpo.as_secs(),
            rpo_met: self.rpo_met,
            mode_today: self.mode_today,
            prune: self.prune.name(),
            check_subset: self.check_subset,
            check_every_s: self.check_every.map(|d| d.as_secs()),
            drill_every_s: self.drill_every.map(|d| d.as_secs()),
            ok: self.alarms.is_empty(),
            alarms: &self.alarms,
            targets: &self.targets,
        }
        .serialize(s)
    }
}

/// One target of a plan.
#[derive(Clone, Debug)]
pub struct TargetStatus {
    /// The target's repository name.
    pub name: String,
    /// The target's repository directory (written lossily as UTF-8 in JSON).
    pub path: PathBuf,
    /// Whether it is present and readable, and if so its health (JSON: `"present"`,
    /// `"error"`, and the [`TargetHealth`] keys, null when unknown).
    pub state: TargetState,
}

/// What is known of a target.
#[derive(Clone, Debug)]
pub enum TargetState {
    /// Not present (an unplugged disk, an unreachable server): why.
    Absent(String),
    /// Present, but it could not be opened or read: why.
    Unreadable(String),
    /// Present and read: its facts against the plan.
    Read(Box<TargetHealth>),
}

/// A readable target, against its plan.
#[derive(Clone, Debug, Serialize)]
pub struct TargetHealth {
    /// How many of this plan's snapshots it holds.
    pub snapshots: usize,
    /// This plan's newest snapshot on it; None: it holds none.
    pub last_snapshot: Option<LastSnapshot>,
    /// Its newest snapshot of this plan is at most the plan's RPO old.
    pub rpo_met: bool,
    /// The plan's last run on it, from its plan state; None: none recorded.
    pub last_run: Option<LastRun>,
    /// The last prune by this plan on it, from its plan state; None: none recorded.
    pub last_prune: Option<When>,
    /// Whether a run today would prune it ([`PruneWhen::is_due`]).
    pub prune_due: bool,
    /// The newer of check's last verification and the last error-free check by a run.
    pub last_check: Option<When>,
    /// The newest drill record in the repository (any host's, any snapshot's); None: none.
    pub last_drill: Option<LastDrill>,
    /// What check's record covers of the packs the repository holds now; None: no record
    /// can be kept (no local state directory).
    pub verification: Option<Verification>,
    /// The plan has `check_every` and the last check is older than that (or there is none).
    pub check_overdue: bool,
    /// The plan has `drill_every` and the last drill is older than that, failed, or is
    /// missing.
    pub drill_overdue: bool,
    /// This plan's snapshots that another readable target has and this one lacks, oldest first.
    pub missing: Vec<MissingSnapshot>,
}

impl Serialize for TargetStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        /// What an absent or unreadable target shows: null for every fact.
        #[derive(Default, Serialize)]
        struct Unknown {
            snapshots: (),
            last_snapshot: (),
            rpo_met: (),
            last_run: (),
            last_prune: (),
            last_check: (),
            last_drill: (),
            verification: (),
            check_overdue: (),
            drill_overdue: (),
            missing: (),
        }
        #[derive(Serialize)]
        struct Wire<'a> {
            name: &'a str,
            #[serde(serialize_with = "ser::lossy_path")]
            path: &'a PathBuf,
            present: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            absent: Option<&'a str>,
            #[serde(flatten)]
            health: Option<&'a TargetHealth>,
            #[serde(flatten)]
            unknown: Option<Unknown>,
        }
        let (present, error, absent, health) = match &self.state {
            TargetState::Absent(why) => (false, None, Some(why.as_str()), None),
            TargetState::Unreadable(e) => (true, Some(e.as_str()), None, None),
            TargetState::Read(h) => (true, None, None, Some(&**h)),
        };
        Wire {
            name: &self.name,
            path: &self.path,
            present,
            error,
            absent,
            health,
            unknown: health.is_none().then(Unknown::default),
        }
        .serialize(s)
    }
}

/// A plan's newest snapshot on a target; `time` carries the offset the snapshot recorded.
#[derive(Clone, Debug)]
pub struct LastSnapshot {
    /// The snapshot's time and its age when the status was made.
    pub when: When,
    /// Its id in this target's repository (JSON: `"id"` and the 8-digit `"short_id"`).
    pub id: SnapshotId,
    /// The backup mode it records.
    pub mode: BackupMode,
    /// The size of all its files, in bytes (its backup's `total_bytes_processed`).
    pub size: u64,
}

impl Serialize for LastSnapshot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("time", &self.when.time)?;
        m.serialize_entry("age_s", &self.when.age_s)?;
        m.serialize_entry("id", &self.id.to_hex())?;
        m.serialize_entry("short_id", &self.id.short())?;
        m.serialize_entry("mode", &self.mode)?;
        m.serialize_entry("size", &self.size)?;
        m.end()
    }
}

/// The last run of the plan on a target.
#[derive(Clone, Debug, Serialize)]
pub struct LastRun {
    /// When the run ended, and how long ago (flattened into `"time"` and `"age_s"`).
    #[serde(flatten)]
    pub when: When,
    /// None: a record from before runs noted their outcome.
    pub ok: Option<bool>,
}

/// The newest recovery drill recorded in a target.
#[derive(Clone, Debug, Serialize)]
pub struct LastDrill {
    /// When the drill ran, and how long ago (flattened into `"time"` and `"age_s"`).
    #[serde(flatten)]
    pub when: When,
    /// Every sampled file was restored and verified.
    pub ok: bool,
    /// The id of the snapshot drilled, in this repository (hex in JSON).
    #[serde(serialize_with = "ser::id")]
    pub snapshot: SnapshotId,
    /// Share of the snapshot's files restored, by count, in percent (0 < p ≤ 100).
    pub sample_percent: f64,
    /// The time a restore of the whole snapshot would take at the drill's throughput, in
    /// seconds.
    pub projected_full_s: f64,
}

/// What check's record covers of a repository's packs.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    /// Packs the repository holds.
    pub packs: u64,
    /// Packs among them with a recorded verification.
    pub verified: u64,
    /// `verified / packs`, 0 to 1.
    pub coverage: f64,
    /// Since when every pack has been verified at least once (the oldest verification of
    /// them all); None while some pack never was.
    pub last_full: Option<When>,
}

/// A snapshot of the plan that a target lacks, and the targets that have it.
#[derive(Clone, Debug, Serialize)]
pub struct MissingSnapshot {
    /// The snapshot's time, written with the machine's UTC offset at that instant.
    pub time: Stamp,
    /// The host it records (the plan's).
    pub host: String,
    /// The paths it records, sorted.
    pub paths: Vec<String>,
    /// The names of the readable targets that hold it, in the plan's order.
    pub on: Vec<String>,
}

/// What status learns from one present repository (read once, shared by the plans using it).
struct RepoFacts {
    snapshots: Vec<(SnapshotId, Snapshot)>,
    state: PlanState,
    last_verified: Option<i64>,
    last_drill: Option<DrillRecord>,
    coverage: Option<crate::check::Coverage>,
}

fn facts<O: Opener>(host: &mut O, r: &super::RepoDef) -> Result<RepoFacts, O::Error> {
    let repo = host.open(r)?;
    let snapshots = repo.snapshots()?;
    let last_drill = crate::drill::history(&repo)?.pop();
    for w in repo.take_warnings() {
        host.warning(&w);
    }
    let dir = host.state_dir(&repo);
    let coverage = match &dir {
        Some(d) => {
            let packs = repo.list(crate::backend::FileKind::Pack)?;
            Some(crate::check::coverage(
                &d.join(crate::check::STATE_FILE),
                packs.iter().map(|(n, _)| n.as_str()),
            ))
        }
        None => None,
    };
    Ok(RepoFacts {
        coverage,
        snapshots,
        state: dir
            .as_ref()
            .map(|d| PlanState::load(&d.join(STATE_FILE)))
            .unwrap_or_default(),
        last_verified: dir
            .as_ref()
            .and_then(|d| crate::check::last_verified(&d.join(crate::check::STATE_FILE))),
        last_drill,
    })
}

/// The status of `plans` (all from `cfg`), opening each present target once through `host`.
/// A target that cannot be opened or read is [`TargetState::Unreadable`], not an error.
pub fn status<O: Opener>(
    host: &mut O,
    cfg: &PlanConfig,
    plans: &[&Plan],
    machine: &Machine,
) -> Result<Vec<PlanStatus>, O::Error> {
    let now = host.now_ns();
    let today = Timestamp::from_nanosecond(i128::from(now))
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(machine.tz.clone())
        .date();
    // Each present repository is opened once, whatever number of plans use it.
    let mut repos: BTreeMap<&str, Result<Result<RepoFacts, String>, String>> = BTreeMap::new();
    for p in plans {
        for t in &p.targets {
            if repos.contains_key(t.as_str()) {
                continue;
            }
            let r = cfg.repositories.get(t).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "plans.{}.targets: unknown repository {t:?}",
                    p.name
                ))
            })?;
            let f = host
                .present(r)
                .map(|()| facts(host, r).map_err(|e| e.to_string()));
            repos.insert(t, f);
        }
    }

    let at = At {
        now,
        today,
        tz: &machine.tz,
    };
    let mut out = Vec::with_capacity(plans.len());
    for p in plans {
        let plan_host = p.host_or(&machine.hostname);
        let paths = p.snapshot_paths()?;
        let readable = |t: &str| match repos.get(t) {
            Some(Ok(Ok(f))) => Some(f),
            _ => None,
        };
        let mine = |f| plan_snapshots(f, &plan_host, &paths);
        // This plan's snapshots on each readable target, and what each lacks.
        let have: Vec<(&str, BTreeSet<SnapshotKey>)> = p
            .targets
            .iter()
            .filter_map(|t| {
                let f = readable(t)?;
                let keys = mine(f).iter().map(|(_, s)| SnapshotKey::of(s)).collect();
                Some((t.as_str(), keys))
            })
            .collect();
        let sets: Vec<BTreeSet<SnapshotKey>> = have.iter().map(|(_, k)| k.clone()).collect();
        let mut lacking = missing(&sets).into_iter();

        let mut targets = Vec::with_capacity(p.targets.len());
        for t in &p.targets {
            let path = cfg
                .repositories
                .get(t)
                .map(|r| r.path.clone())
                .unwrap_or_default();
            let state = match repos.get(t.as_str()) {
                None => TargetState::Absent("not present".into()),
                Some(Err(why)) => TargetState::Absent(why.clone()),
                Some(Ok(Err(e))) => TargetState::Unreadable(e.clone()),
                Some(Ok(Ok(f))) => {
                    let lacks = lacking.next().unwrap_or_default();
                    TargetState::Read(Box::new(health(p, f, &mine(f), lacks, &have, &at)))
                }
            };
            targets.push(TargetStatus {
                name: t.clone(),
                path,
                state,
            });
        }
        let rpo_met = targets
            .iter()
            .any(|t| matches!(&t.state, TargetState::Read(h) if h.rpo_met));
        let mut alarms = Vec::new();
        if !rpo_met {
            alarms.push(format!(
                "plan {}: no target holds a snapshot newer than its RPO ({})",
                p.name,
                span(p.rpo.as_secs() as i64)
            ));
        }
        for t in &targets {
            if let TargetState::Read(h) = &t.state {
                if h.check_overdue {
                    alarms.push(format!(
                        "plan {}, target {}: no check within check_every ({})",
                        p.name,
                        t.name,
                        span(p.check_every.unwrap_or_default().as_secs() as i64)
                    ));
                }
                if h.drill_overdue {
                    alarms.push(format!(
                        "plan {}, target {}: no successful drill within drill_every ({})",
                        p.name,
                        t.name,
                        span(p.drill_every.unwrap_or_default().as_secs() as i64)
                    ));
                }
            }
        }
        out.push(PlanStatus {
            alarms,
            check_every: p.check_every,
            drill_every: p.drill_every,
            name: p.name.clone(),
            host: plan_host,
            paths,
            rpo: p.rpo,
            rpo_met,
            mode_today: mode_for(p, today),
            prune: p.prune,
            check_subset: p.check_subset,
            targets,
        });
    }
    Ok(out)
}

/// A repository's snapshots of the plan with this host and these paths.
fn plan_snapshots<'f>(
    f: &'f RepoFacts,
    host: &str,
    paths: &[String],
) -> Vec<&'f (SnapshotId, Snapshot)> {
    f.snapshots
        .iter()
        .filter(|(_, s)| is_plan_snapshot(s, host, paths))
        .collect()
}

/// When a status is made: now, today's local date, and the zone times are shown in.
struct At<'a> {
    now: i64,
    today: jiff::civil::Date,
    tz: &'a jiff::tz::TimeZone,
}

/// One readable target's facts against plan `p`: `mine` are its snapshots of the plan, `lacks`
/// what it lacks, `have` the plan's snapshots on each readable target.
fn health(
    p: &Plan,
    f: &RepoFacts,
    mine: &[&(SnapshotId, Snapshot)],
    lacks: Vec<SnapshotKey>,
    have: &[(&str, BTreeSet<SnapshotKey>)],
    at: &At,
) -> TargetHealth {
    let (now, today, tz) = (at.now, at.today, at.tz);
    let when = |ns: i64| When::new(Stamp::local(ns, tz), now);
    let newest = mine
        .iter()
        .max_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
    let rec = f.state.plans.get(&p.name).cloned().unwrap_or_default();
    let last_check = [f.last_verified, rec.last_check_ns]
        .into_iter()
        .flatten()
        .max();
    let older_than = |t: Option<i64>, every: Option<Duration>| match every {
        Some(every) => !rpo_met(t, now, every),
        None => false,
    };
    let drill_ok = f.last_drill.as_ref().filter(|d| d.ok).map(|d| d.time_ns);
    TargetHealth {
        snapshots: mine.len(),
        last_snapshot: newest.map(|(id, s)| LastSnapshot {
            when: When::new(
                Stamp {
                    ns: s.time_ns,
                    offset_s: s.tz_offset_s,
                },
                now,
            ),
            id: *id,
            mode: s.mode,
            size: s.summary.total_bytes_processed,
        }),
        rpo_met: rpo_met(newest.map(|(_, s)| s.time_ns), now, p.rpo),
        last_run: rec.last_run_ns.map(|t| LastRun {
            when: when(t),
            ok: rec.last_run_ok,
        }),
        last_prune: rec.last_prune_ns.map(when),
        prune_due: p
            .prune
            .is_due(rec.last_prune_ns.and_then(|t| local_date(t, tz)), today),
        last_check: last_check.map(when),
        last_drill: f.last_drill.as_ref().map(|d| LastDrill {
            when: when(d.time_ns),
            ok: d.ok,
            snapshot: d.snapshot,
            sample_percent: d.sample_percent,
            projected_full_s: d.projected_full_s,
        }),
        verification: f.coverage.map(|c| Verification {
            packs: c.packs,
            verified: c.verified,
            coverage: c.ratio(),
            last_full: c.full_ns.map(when),
        }),
        check_overdue: older_than(last_check, p.check_every),
        drill_overdue: older_than(drill_ok, p.drill_every),
        missing: lacks
            .into_iter()
            .map(|k| MissingSnapshot {
                time: Stamp::local(k.time_ns, tz),
                on: have
                    .iter()
                    .filter(|(_, set)| set.contains(&k))
                    .map(|(n, _)| n.to_string())
                    .collect(),
                host: k.host,
                paths: k.paths,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fake::{config, FakeHost};
    use crate::plan::{run, RunOptions, DEFAULT_RPO};

    /// 2024-03-03T10:00:00Z.
    const T0: i64 = 1_709_460_000 * 1_000_000_000;
    const HOUR: i64 = 3_600_000_000_000;

    #[test]
    fn rpo_is_met_only_by_a_recent_enough_snapshot() {
        let h = 3_600_000_000_000i64;
        assert!(rpo_met(Some(0), 26 * h, DEFAULT_RPO));
        assert!(!rpo_met(Some(0), 26 * h + 1, DEFAULT_RPO));
        assert!(!rpo_met(None, 0, DEFAULT_RPO));
    }

    #[test]
    fn rpo_is_met_by_a_snapshot_from_the_future_and_a_huge_rpo_covers_any_age() {
        assert!(rpo_met(Some(10), 5, Duration::from_secs(1)), "clock skew");
        assert!(rpo_met(Some(i64::MIN), i64::MAX, Duration::MAX));
    }

    /// Targets `a` and `b` present (`a` gets the plan's snapshot at T0, `b` is plugged in
    /// after), `c` absent; the status at `now`.
    fn world(now: i64, plan_extra: &str) -> (tempfile::TempDir, FakeHost, PlanConfig) {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).expect("src");
        std::fs::write(src.join("f"), b"data\n").expect("file");
        let targets = dir.path().join("targets");
        let mut host = FakeHost::new(&dir.path().join("state"), T0);
        host.add_present("a", &targets.join("a"));
        let cfg = config(&targets, &src, &["a", "b", "c"], plan_extra);
        let opts = RunOptions {
            machine: machine(),
            user: String::new(),
            uid: 0,
            gid: 0,
            cancel: None,
        };
        let report = run(&mut host, &cfg, &cfg.plans["p"], &opts).expect("run");
        assert_eq!(report.targets_present, 1);
        host.add_present("b", &targets.join("b"));
        host.now_ns = now;
        (dir, host, cfg)
    }

    fn machine() -> Machine {
        Machine {
            hostname: "this-machine".into(),
            tz: jiff::tz::TimeZone::UTC,
        }
    }

    fn health(t: &TargetStatus) -> &TargetHealth {
        match &t.state {
            TargetState::Read(h) => h,
            other => panic!("{} is {other:?}", t.name),
        }
    }

    #[test]
    fn status_shows_each_target_against_the_plan_and_what_one_lacks() {
        let (_dir, mut host, cfg) = world(T0 + 26 * HOUR, "check_subset = \"10%\"\n");
        let plans: Vec<&Plan> = cfg.plans.values().collect();
        let st = status(&mut host, &cfg, &plans, &machine()).expect("status");
        let p = &st[0];
        assert_eq!((p.host.as_str(), p.rpo_met), ("plan-host", true));
        let (a, b) = (health(&p.targets[0]), health(&p.targets[1]));
        assert_eq!(a.snapshots, 1);
        assert!(a.rpo_met, "exactly the RPO old still meets it");
        let last = a.last_snapshot.as_ref().expect("a has one");
        assert_eq!((last.when.time.ns, last.when.age_s), (T0, 26 * 3600));
        assert_eq!(
            a.last_run.as_ref().map(|r| (r.when.time.ns, r.ok)),
            Some((T0, Some(true)))
        );
        assert_eq!(a.last_check.map(|w| w.time.ns), Some(T0));
        assert_eq!(a.last_prune.map(|w| w.time.ns), Some(T0));
        assert!(!a.prune_due, "weekly, pruned the day before");
        assert!(a.missing.is_empty());
        assert_eq!((b.snapshots, b.rpo_met, b.prune_due), (0, false, true));
        assert!(b.last_snapshot.is_none() && b.last_run.is_none() && b.last_check.is_none());
        assert_eq!(b.missing.len(), 1, "b lacks a's snapshot");
        assert_eq!(b.missing[0].time.ns, T0);
        assert_eq!(b.missing[0].on, vec!["a".to_string()]);
        assert!(matches!(p.targets[2].state, TargetState::Absent(_)));

        let (_dir, mut host, cfg) = world(T0 + 26 * HOUR + 1_000_000_000, "");
        let st = status(&mut host, &cfg, &[&cfg.plans["p"]], &machine()).expect("status");
        assert!(!health(&st[0].targets[0]).rpo_met, "a second past the RPO");
        assert!(!st[0].rpo_met, "no target meets it");
    }

    #[test]
    fn the_last_check_is_the_newer_of_checks_record_and_the_plans() {
        let (_dir, mut host, cfg) = world(T0 + HOUR, "check_subset = \"10%\"\n");
        let repo = host.reopen("a");
        let check_state = host
            .state
            .join(repo.id().to_hex())
            .join(crate::check::STATE_FILE);
        let newer = T0 + HOUR / 2;
        std::fs::write(
            &check_state,
            format!("{{\"{}\": {newer}}}", "00".repeat(32)),
        )
        .expect("check state");
        let st = status(&mut host, &cfg, &[&cfg.plans["p"]], &machine()).expect("status");
        assert_eq!(
            health(&st[0].targets[0]).last_check.map(|w| w.time.ns),
            Some(newer)
        );
    }

    #[test]
    fn a_target_that_cannot_be_read_is_shown_as_such_not_an_error() {
        let (_dir, mut host, cfg) = world(T0, "");
        host.no_password.insert("b".into());
        let st = status(&mut host, &cfg, &[&cfg.plans["p"]], &machine()).expect("status");
        match &st[0].targets[1].state {
            TargetState::Unreadable(e) => assert_eq!(e, "no password for repository b"),
            other => panic!("{other:?}"),
        }
        assert!(
            health(&st[0].targets[0]).missing.is_empty(),
            "b is not compared"
        );
    }

    #[test]
    fn alarms_are_raised_past_the_rpo_and_the_check_and_drill_cadences() {
        let (_dir, mut host, cfg) = world(T0 + HOUR, "check_subset = \"100%\"\n");
        let st = status(&mut host, &cfg, &[&cfg.plans["p"]], &machine()).expect("status");
        assert!(st[0].alarms.is_empty(), "{:?}", st[0].alarms);
        let a = health(&st[0].targets[0]);
        assert!(!a.check_overdue && !a.drill_overdue, "no cadence, no alarm");
        let v = a.verification.as_ref().expect("a state directory");
        assert_eq!((v.verified, v.coverage), (v.packs, 1.0), "{v:?}");
        assert_eq!(v.last_full.map(|w| w.time.ns), Some(T0));

        // Checked an hour ago; a check every 30 minutes is wanted, and a drill every day.
        let (_dir, mut host, cfg) = world(
            T0 + HOUR,
            "check_subset = \"100%\"\ncheck_every = \"30m\"\ndrill_every = \"1d\"\n",
        );
        let st = status(&mut host, &cfg, &[&cfg.plans["p"]], &machine()).expect("status");
        let a = health(&st[0].targets[0]);
        assert!(a.check_overdue && a.drill_overdue);
        let b = health(&st[0].targets[1]);
        assert!(b.check_overdue, "b was never checked");
        assert_eq!(st[0].alarms.len(), 4, "{:?}", st[0].alarms);
        assert!(st[0].alarms[0].contains("target a") && st[0].alarms[0].contains("check_every"));

        // Past the RPO on every target.
        let (_dir, mut host, cfg) = world(T0 + 27 * HOUR, "");
        let st = status(&mut host, &cfg, &[&cfg.plans["p"]], &machine()).expect("status");
        assert_eq!(st[0].alarms.len(), 1);
        assert!(st[0].alarms[0].contains("RPO"), "{:?}", st[0].alarms);
        let text = crate::plan::metrics::prometheus(&st);
        assert!(
            text.contains("cairn_plan_alarm{plan=\"p\",target=\"a\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("cairn_plan_rpo_seconds{plan=\"p\",target=\"c\"} 93600\n"),
            "{text}"
        );
        assert!(
            text.contains("cairn_plan_target_present{plan=\"p\",target=\"c\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("cairn_plan_last_snapshot_age_seconds{plan=\"p\",target=\"a\"} 97200\n"),
            "{text}"
        );
        assert!(
            !text.contains("cairn_plan_last_snapshot_age_seconds{plan=\"p\",target=\"b\"}"),
            "b has none: {text}"
        );
    }

    #[test]
    fn status_json_has_every_key_of_every_kind_of_target() {
        let (_dir, mut host, cfg) = world(T0 + HOUR, "");
        host.no_password.insert("b".into());
        let st = status(&mut host, &cfg, &[&cfg.plans["p"]], &machine()).expect("status");
        let v = serde_json::to_value(&st[0]).expect("json");
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().expect("object").keys().cloned().collect()
        };
        assert_eq!(
            keys(&v),
            [
                "alarms",
                "check_every_s",
                "check_subset",
                "drill_every_s",
                "host",
                "mode_today",
                "name",
                "ok",
                "paths",
                "prune",
                "rpo",
                "rpo_met",
                "rpo_s",
                "targets"
            ]
        );
        assert_eq!(
            (v["rpo"].clone(), v["rpo_s"].clone()),
            ("26h".into(), 93_600.into())
        );
        assert!(v["check_subset"].is_null());
        let facts = [
            "check_overdue",
            "drill_overdue",
            "last_check",
            "last_drill",
            "last_prune",
            "last_run",
            "last_snapshot",
            "missing",
            "rpo_met",
            "snapshots",
            "verification",
        ];
        let (a, b, c) = (&v["targets"][0], &v["targets"][1], &v["targets"][2]);
        let mut want: Vec<&str> = facts.to_vec();
        want.extend(["name", "path", "present", "prune_due"]);
        want.sort();
        assert_eq!(keys(a), want);
        assert_eq!(a["last_snapshot"]["time"], "2024-03-03T10:00:00+00:00");
        assert_eq!(a["last_snapshot"]["age_s"], 3600);
        assert_eq!(a["last_snapshot"]["mode"], "incremental");
        let mut want: Vec<&str> = facts.to_vec();
        want.extend(["error", "name", "path", "present"]);
        want.sort();
        assert_eq!(keys(b), want);
        assert_eq!(b["present"], true);
        assert_eq!(
            keys(c).len(),
            facts.len() + 4,
            "absent, no error, no prune_due"
        );
        assert_eq!(c["present"], false);
        assert_eq!(c["absent"], "not present");
        for f in facts {
            assert!(b[f].is_null() && c[f].is_null(), "{f}");
        }
    }
}

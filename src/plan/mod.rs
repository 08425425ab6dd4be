//! Backup plans: what to back up, to which repositories, in which mode on which day, how long
//! to keep it and how much to verify — one TOML file, run with `cairn plan run NAME`.
//!
//! This module is the file's model and the pure decisions made from it (which mode today,
//! whether a prune is due, which snapshots belong to a plan, what one target lacks). It reads
//! no environment, no clock and no files: the CLI passes in the text, "today" and "now".
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
//! path = "/media/me/usb-a/cairn"       # a local directory (a USB disk may be unplugged)
//! password_file = "~/.config/cairn/usb.pw"   # at most one password source:
//! # password_command = "pass show cairn"     #   its stdout's first line
//! # password_env = "USB_PASSWORD"            #   the name of an environment variable
//! # none: the global ones (--password-file, CAIRN_PASSWORD_FILE, CAIRN_PASSWORD, ...)
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
//! if the differential rule matches, else `incremental` (cli.md "Backup modes"). One run uses
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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::civil::{Date, Weekday};
use serde::{Deserialize, Serialize};

use crate::check::ReadData;
use crate::policy::{self, Count, KeepDuration, KeepPolicy};
use crate::snapshot::{BackupMode, Snapshot};

/// The recovery point objective when a plan names none: a daily plan, with slack for a late run.
pub const DEFAULT_RPO: Duration = Duration::from_secs(26 * 3600);

/// A parsed, validated plan file.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanConfig {
    pub repositories: BTreeMap<String, RepoDef>,
    pub plans: BTreeMap<String, Plan>,
}

/// `[repositories.NAME]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoDef {
    pub name: String,
    pub path: PathBuf,
    pub password: PasswordSource,
}

/// Where a repository's password comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    /// None given: the global sources (`--password-file`, `CAIRN_PASSWORD`, a prompt...).
    Global,
    File(PathBuf),
    Command(String),
    /// The name of an environment variable holding the password.
    Env(String),
}

/// `[plans.NAME]`
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub name: String,
    pub sources: Vec<PathBuf>,
    pub excludes: Vec<String>,
    pub iexcludes: Vec<String>,
    pub exclude_caches: bool,
    pub exclude_if_present: Vec<String>,
    /// Leave out files larger than this many bytes.
    pub exclude_larger_than: Option<u64>,
    pub one_file_system: bool,
    /// Repository names, in the order the run visits them.
    pub targets: Vec<String>,
    /// None: this machine's host name.
    pub host: Option<String>,
    pub tags: Vec<String>,
    pub schedule: Schedule,
    pub keep: KeepPolicy,
    pub prune: PruneWhen,
    /// None: no check after a run.
    pub check_subset: Option<ReadData>,
    pub rpo: Duration,
}

/// Which days get a full and which a differential backup; every other day is incremental.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    pub full: DayRule,
    pub differential: DayRule,
}

/// A set of days; empty matches none ("never").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DayRule(pub Vec<Day>);

/// One rule of a [`DayRule`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Day {
    Every,
    Weekday(Weekday),
    /// The `n`th (1…4, or -1 for the last) such weekday of the month.
    NthWeekday(i8, Weekday),
    /// Day N (1…31) of the month, clamped to the month's last day.
    MonthDay(i8),
    LastOfMonth,
}

/// When a plan run prunes a target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PruneWhen {
    Always,
    Daily,
    #[default]
    Weekly,
    Monthly,
    Never,
}

/// What a plan run remembers per repository, next to check's state in the local cache
/// (`plan-state.json`): by plan name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanState {
    pub plans: BTreeMap<String, PlanRecord>,
}

/// One plan's record on one repository; times in ns since the epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanRecord {
    pub last_run_ns: Option<i64>,
    pub last_run_ok: Option<bool>,
    pub last_prune_ns: Option<i64>,
    /// The last check made by a run that found no errors.
    pub last_check_ns: Option<i64>,
}

// ---------------------------------------------------------------------------------------------
// Parsing

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    repositories: BTreeMap<String, RawRepo>,
    #[serde(default)]
    plans: BTreeMap<String, RawPlan>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepo {
    path: Option<PathBuf>,
    password_file: Option<PathBuf>,
    password_command: Option<String>,
    password_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    sources: Option<Vec<PathBuf>>,
    targets: Option<Vec<String>>,
    #[serde(default)]
    excludes: Vec<String>,
    #[serde(default)]
    iexcludes: Vec<String>,
    #[serde(default)]
    exclude_caches: bool,
    #[serde(default)]
    exclude_if_present: Vec<String>,
    exclude_larger_than: Option<String>,
    #[serde(default)]
    one_file_system: bool,
    host: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    schedule: RawSchedule,
    #[serde(default)]
    keep: RawKeep,
    prune: Option<String>,
    check_subset: Option<String>,
    rpo: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    full: Option<String>,
    differential: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawKeep {
    last: Option<RawCount>,
    hourly: Option<RawCount>,
    daily: Option<RawCount>,
    weekly: Option<RawCount>,
    monthly: Option<RawCount>,
    yearly: Option<RawCount>,
    within: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// `7`, `"unlimited"` or `-1`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawCount {
    Int(i64),
    Text(String),
}

impl RawCount {
    fn to_count(&self, key: &str) -> Result<Count, String> {
        match self {
            RawCount::Int(-1) => Ok(Count::Unlimited),
            RawCount::Int(n) => u32::try_from(*n)
                .map(Count::N)
                .map_err(|_| format!("{key}: {n} is not a count (0 or more, or \"unlimited\")")),
            RawCount::Text(s) => s.parse().map_err(|e| format!("{key}: {e}")),
        }
    }
}

/// The largest plan file read: 1 MiB (a plan file is a few KiB).
pub const MAX_PLAN_FILE: usize = 1 << 20;

/// Parses and validates a plan file. Errors name the key (`plans.home.keep.daily: ...`) or,
/// for TOML syntax and unknown keys, the line.
pub fn parse(text: &str) -> Result<PlanConfig, String> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
    let mut repositories = BTreeMap::new();
    for (name, r) in raw.repositories {
        let key = format!("repositories.{name}");
        let path = r
            .path
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or_else(|| format!("{key}: `path` (the repository directory) is missing"))?;
        let mut sources = Vec::new();
        if let Some(f) = r.password_file {
            sources.push(PasswordSource::File(f));
        }
        if let Some(c) = r.password_command {
            sources.push(PasswordSource::Command(c));
        }
        if let Some(v) = r.password_env {
            if v.is_empty() || v.contains('=') {
                return Err(format!(
                    "{key}.password_env: {v:?} is not an environment variable name"
                ));
            }
            sources.push(PasswordSource::Env(v));
        }
        if sources.len() > 1 {
            return Err(format!(
                "{key}: give only one of password_file, password_command and password_env"
            ));
        }
        let password = sources.pop().unwrap_or(PasswordSource::Global);
        repositories.insert(
            name.clone(),
            RepoDef {
                name,
                path,
                password,
            },
        );
    }
    let mut plans = BTreeMap::new();
    for (name, p) in raw.plans {
        let plan = convert_plan(&name, p, &repositories)?;
        plans.insert(name, plan);
    }
    Ok(PlanConfig {
        repositories,
        plans,
    })
}

fn convert_plan(
    name: &str,
    p: RawPlan,
    repositories: &BTreeMap<String, RepoDef>,
) -> Result<Plan, String> {
    let key = format!("plans.{name}");
    let sources = p.sources.unwrap_or_default();
    if sources.is_empty() {
        return Err(format!(
            "{key}.sources: no paths to back up (e.g. sources = [\"~/Documents\"])"
        ));
    }
    if sources.iter().any(|s| s.as_os_str().is_empty()) {
        return Err(format!("{key}.sources: an empty path"));
    }
    let targets = p.targets.unwrap_or_default();
    if targets.is_empty() {
        return Err(format!(
            "{key}.targets: no target repositories (e.g. targets = [\"usb-a\"])"
        ));
    }
    let mut seen = BTreeSet::new();
    for t in &targets {
        if !repositories.contains_key(t) {
            let known: Vec<&str> = repositories.keys().map(String::as_str).collect();
            return Err(format!(
                "{key}.targets: unknown repository {t:?} ({})",
                if known.is_empty() {
                    "no [repositories.NAME] table is defined".to_string()
                } else {
                    format!("defined: {}", known.join(", "))
                }
            ));
        }
        if !seen.insert(t) {
            return Err(format!("{key}.targets: repository {t:?} is named twice"));
        }
    }
    if p.host.as_deref() == Some("") {
        return Err(format!("{key}.host: empty host name"));
    }
    let schedule = Schedule {
        full: parse_days(p.schedule.full.as_deref().unwrap_or("never"))
            .map_err(|e| format!("{key}.schedule.full: {e}"))?,
        differential: parse_days(p.schedule.differential.as_deref().unwrap_or("never"))
            .map_err(|e| format!("{key}.schedule.differential: {e}"))?,
    };
    let k = &p.keep;
    let count = |c: &Option<RawCount>, rule: &str| {
        c.as_ref()
            .map(|c| c.to_count(&format!("{key}.keep.{rule}")))
            .transpose()
    };
    let keep = KeepPolicy {
        last: count(&k.last, "last")?,
        hourly: count(&k.hourly, "hourly")?,
        daily: count(&k.daily, "daily")?,
        weekly: count(&k.weekly, "weekly")?,
        monthly: count(&k.monthly, "monthly")?,
        yearly: count(&k.yearly, "yearly")?,
        within: k
            .within
            .as_deref()
            .map(|w| policy::parse_duration(w).map_err(|e| format!("{key}.keep.within: {e}")))
            .transpose()?
            .filter(|d: &KeepDuration| !d.is_zero()),
        tags: k.tags.iter().map(|t| policy::parse_tag_list(t)).collect(),
    };
    let prune = match p.prune.as_deref() {
        None => PruneWhen::default(),
        Some(s) => s.parse().map_err(|e| format!("{key}.prune: {e}"))?,
    };
    let check_subset = p
        .check_subset
        .as_deref()
        .map(|s| parse_subset(s).map_err(|e| format!("{key}.check_subset: {e}")))
        .transpose()?;
    let rpo = match p.rpo.as_deref() {
        None => DEFAULT_RPO,
        Some(s) => parse_rpo(s).map_err(|e| format!("{key}.rpo: {e}"))?,
    };
    Ok(Plan {
        name: name.to_string(),
        sources,
        excludes: p.excludes,
        iexcludes: p.iexcludes,
        exclude_caches: p.exclude_caches,
        exclude_if_present: p.exclude_if_present,
        exclude_larger_than: p
            .exclude_larger_than
            .as_deref()
            .map(|s| {
                crate::units::parse_size(s).map_err(|e| format!("{key}.exclude_larger_than: {e}"))
            })
            .transpose()?,
        one_file_system: p.one_file_system,
        targets,
        host: p.host,
        tags: p.tags,
        schedule,
        keep,
        prune,
        check_subset,
        rpo,
    })
}

fn parse_weekday(s: &str) -> Option<Weekday> {
    Some(match s {
        "monday" | "mon" => Weekday::Monday,
        "tuesday" | "tue" => Weekday::Tuesday,
        "wednesday" | "wed" => Weekday::Wednesday,
        "thursday" | "thu" => Weekday::Thursday,
        "friday" | "fri" => Weekday::Friday,
        "saturday" | "sat" => Weekday::Saturday,
        "sunday" | "sun" => Weekday::Sunday,
        _ => return None,
    })
}

/// Parses a day rule list (module doc, "Day rules").
pub fn parse_days(s: &str) -> Result<DayRule, String> {
    let text = s.trim().to_ascii_lowercase();
    if text == "never" {
        return Ok(DayRule::default());
    }
    let mut days = Vec::new();
    for part in text.split(',').map(str::trim) {
        let day = parse_day(part).ok_or_else(|| {
            format!(
                "{part:?} is not a day rule (use never, daily, a weekday such as sunday, \
                 first-sunday … fourth-sunday, last-sunday, monthly:N or monthly:last)"
            )
        })?;
        days.push(day);
    }
    Ok(DayRule(days))
}

fn parse_day(s: &str) -> Option<Day> {
    if s == "always" || s == "daily" {
        return Some(Day::Every);
    }
    if let Some(w) = parse_weekday(s) {
        return Some(Day::Weekday(w));
    }
    if let Some(n) = s.strip_prefix("monthly:") {
        if n.trim() == "last" {
            return Some(Day::LastOfMonth);
        }
        let n: i8 = n.trim().parse().ok()?;
        return (1..=31).contains(&n).then_some(Day::MonthDay(n));
    }
    let (nth, wd) = s.split_once('-')?;
    let n = match nth {
        "first" | "1st" => 1,
        "second" | "2nd" => 2,
        "third" | "3rd" => 3,
        "fourth" | "4th" => 4,
        "last" => -1,
        _ => return None,
    };
    Some(Day::NthWeekday(n, parse_weekday(wd)?))
}

impl std::str::FromStr for PruneWhen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "always" => PruneWhen::Always,
            "daily" => PruneWhen::Daily,
            "weekly" => PruneWhen::Weekly,
            "monthly" => PruneWhen::Monthly,
            "never" => PruneWhen::Never,
            _ => {
                return Err(format!(
                    "{s:?} is not always, daily, weekly, monthly or never"
                ))
            }
        })
    }
}

impl PruneWhen {
    pub fn name(self) -> &'static str {
        match self {
            PruneWhen::Always => "always",
            PruneWhen::Daily => "daily",
            PruneWhen::Weekly => "weekly",
            PruneWhen::Monthly => "monthly",
            PruneWhen::Never => "never",
        }
    }

    /// Whether a run on `today` prunes, given the local date of the last prune (by calendar
    /// dates, so a daily timer's jitter does not push a weekly prune to the eighth day).
    pub fn is_due(self, last: Option<Date>, today: Date) -> bool {
        let Some(last) = last else {
            return self != PruneWhen::Never;
        };
        match self {
            PruneWhen::Always => true,
            PruneWhen::Never => false,
            PruneWhen::Daily => today > last,
            PruneWhen::Weekly => last
                .checked_add(jiff::Span::new().days(7))
                .is_ok_and(|due| today >= due),
            PruneWhen::Monthly => last
                .checked_add(jiff::Span::new().months(1))
                .is_ok_and(|due| today >= due),
        }
    }
}

/// `N%` (0 < N ≤ 100; least recently verified packs first) or `0%` (structure only).
fn parse_subset(s: &str) -> Result<ReadData, String> {
    let t = s.trim();
    if !t.ends_with('%') {
        return Err(format!("{s:?} is not a percentage such as \"5%\""));
    }
    if t[..t.len() - 1].trim().parse::<f64>() == Ok(0.0) {
        return Ok(ReadData::None);
    }
    t.parse()
}

/// `26h`, `2d`, `90m`, `1w`, `1d12h` (m = minutes).
pub fn parse_rpo(s: &str) -> Result<Duration, String> {
    crate::units::parse_span(s)
}

// ---------------------------------------------------------------------------------------------
// Decisions

impl Day {
    pub fn matches(self, date: Date) -> bool {
        match self {
            Day::Every => true,
            Day::Weekday(w) => date.weekday() == w,
            Day::NthWeekday(n, w) => date.nth_weekday_of_month(n, w).is_ok_and(|d| d == date),
            Day::MonthDay(n) => date.day() == n.min(date.days_in_month()),
            Day::LastOfMonth => date.day() == date.days_in_month(),
        }
    }
}

impl DayRule {
    pub fn matches(&self, date: Date) -> bool {
        self.0.iter().any(|d| d.matches(date))
    }

    pub fn is_never(&self) -> bool {
        self.0.is_empty()
    }
}

/// The backup mode of a run of `plan` on local date `date`.
pub fn mode_for(plan: &Plan, date: Date) -> BackupMode {
    if plan.schedule.full.matches(date) {
        BackupMode::Full
    } else if plan.schedule.differential.matches(date) {
        BackupMode::Differential
    } else {
        BackupMode::Incremental
    }
}

impl PlanConfig {
    /// The plan called `name`, or an error naming it and the plans there are.
    pub fn plan(&self, name: &str) -> Result<&Plan, String> {
        self.plans.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.plans.keys().map(String::as_str).collect();
            if known.is_empty() {
                format!("no plan {name:?}: the plan file defines no [plans.NAME] table")
            } else {
                format!("no plan {name:?} (plans: {})", known.join(", "))
            }
        })
    }

    /// Makes `path`, `password_file` and `sources` absolute: `~/x` below `home`, relative
    /// paths below `base` (the plan file's directory).
    pub fn resolve_paths(&mut self, base: &Path, home: Option<&Path>) {
        let fix = |p: &mut PathBuf| *p = resolve(p, base, home);
        for r in self.repositories.values_mut() {
            fix(&mut r.path);
            if let PasswordSource::File(f) = &mut r.password {
                fix(f);
            }
        }
        for p in self.plans.values_mut() {
            p.sources.iter_mut().for_each(fix);
        }
    }
}

fn resolve(p: &Path, base: &Path, home: Option<&Path>) -> PathBuf {
    if let (Ok(rest), Some(home)) = (p.strip_prefix("~"), home) {
        return home.join(rest);
    }
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Whether `s` is one of a plan's snapshots: the same host and the same set of paths
/// (`paths` as recorded, i.e. absolute; order does not matter).
pub fn is_plan_snapshot(s: &Snapshot, host: &str, paths: &[String]) -> bool {
    if s.host != host || s.paths.len() != paths.len() {
        return false;
    }
    let mut a: Vec<&String> = s.paths.iter().collect();
    let mut b: Vec<&String> = paths.iter().collect();
    a.sort();
    b.sort();
    a == b
}

/// What identifies "the same snapshot" across repositories, whose ids differ: its time, host
/// and sorted paths.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotKey {
    pub time_ns: i64,
    pub host: String,
    pub paths: Vec<String>,
}

impl SnapshotKey {
    pub fn of(s: &Snapshot) -> SnapshotKey {
        let mut paths = s.paths.clone();
        paths.sort();
        SnapshotKey {
            time_ns: s.time_ns,
            host: s.host.clone(),
            paths,
        }
    }
}

/// For each target's set of snapshots, the snapshots some other target has and it lacks,
/// oldest first.
pub fn missing(sets: &[BTreeSet<SnapshotKey>]) -> Vec<Vec<SnapshotKey>> {
    let union: BTreeSet<&SnapshotKey> = sets.iter().flatten().collect();
    sets.iter()
        .map(|own| {
            union
                .iter()
                .filter(|k| !own.contains(**k))
                .map(|k| (*k).clone())
                .collect()
        })
        .collect()
}

/// Whether the newest snapshot (ns since the epoch) is recent enough at `now_ns`.
pub fn rpo_met(newest_ns: Option<i64>, now_ns: i64, rpo: Duration) -> bool {
    newest_ns.is_some_and(|t| {
        i128::from(now_ns) - i128::from(t) <= i128::try_from(rpo.as_nanos()).unwrap_or(i128::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    const MINIMAL: &str = r#"
        [repositories.a]
        path = "/mnt/a"
        [plans.p]
        sources = ["/data"]
        targets = ["a"]
    "#;

    fn plan_with(extra: &str) -> Result<Plan, String> {
        let text = format!("{MINIMAL}{extra}");
        parse(&text).map(|c| c.plans["p"].clone())
    }

    fn schedule(full: &str, differential: &str) -> Plan {
        plan_with(&format!(
            "[plans.p.schedule]\nfull = {full:?}\ndifferential = {differential:?}\n"
        ))
        .expect("valid schedule")
    }

    #[test]
    fn the_example_config_parses_and_is_valid() {
        let cfg = parse(include_str!("../../scripts/cairn.example.toml")).expect("example parses");
        assert!(!cfg.plans.is_empty());
        for p in cfg.plans.values() {
            for t in &p.targets {
                assert!(cfg.repositories.contains_key(t));
            }
        }
    }

    #[test]
    fn a_minimal_plan_gets_the_documented_defaults() {
        let p = plan_with("").expect("minimal plan");
        assert_eq!(p.sources, vec![PathBuf::from("/data")]);
        assert_eq!(p.targets, vec!["a".to_string()]);
        assert!(p.schedule.full.is_never() && p.schedule.differential.is_never());
        assert!(p.keep.is_empty());
        assert_eq!(p.prune, PruneWhen::Weekly);
        assert_eq!(p.check_subset, None);
        assert_eq!(p.rpo, DEFAULT_RPO);
        assert_eq!(p.host, None);
    }

    #[test]
    fn a_full_plan_maps_every_key() {
        let cfg = parse(
            r#"
            [repositories.usb-a]
            path = "/media/a/cairn"
            password_file = "pw.txt"
            [repositories.usb-b]
            path = "/media/b/cairn"
            password_command = "pass show cairn"
            [repositories.nas]
            path = "/srv/cairn"
            password_env = "NAS_PW"
            [repositories.plain]
            path = "/srv/plain"

            [plans.home]
            sources = ["~/Documents", "docs"]
            targets = ["usb-a", "usb-b"]
            excludes = ["*.tmp"]
            iexcludes = ["*.BAK"]
            exclude_caches = true
            exclude_if_present = [".nobackup"]
            exclude_larger_than = "1.5G"
            one_file_system = true
            host = "laptop"
            tags = ["home", "plan"]
            rpo = "1d12h"
            prune = "monthly"
            check_subset = "2.5%"
            schedule = { full = "first-sunday", differential = "sunday" }
            [plans.home.keep]
            last = 3
            hourly = 0
            daily = 7
            weekly = "5"
            monthly = -1
            yearly = "unlimited"
            within = "2w"
            tags = ["keep", "a, b"]
            "#,
        )
        .expect("valid config");
        assert_eq!(
            cfg.repositories["usb-a"].password,
            PasswordSource::File("pw.txt".into())
        );
        assert_eq!(
            cfg.repositories["usb-b"].password,
            PasswordSource::Command("pass show cairn".into())
        );
        assert_eq!(
            cfg.repositories["nas"].password,
            PasswordSource::Env("NAS_PW".into())
        );
        assert_eq!(cfg.repositories["plain"].password, PasswordSource::Global);
        let p = &cfg.plans["home"];
        assert_eq!(p.excludes, vec!["*.tmp"]);
        assert_eq!(p.iexcludes, vec!["*.BAK"]);
        assert!(p.exclude_caches && p.one_file_system);
        assert_eq!(p.exclude_if_present, vec![".nobackup"]);
        assert_eq!(p.exclude_larger_than, Some(3 << 29));
        assert_eq!(p.host.as_deref(), Some("laptop"));
        assert_eq!(p.tags, vec!["home", "plan"]);
        assert_eq!(p.rpo, Duration::from_secs(36 * 3600));
        assert_eq!(p.prune, PruneWhen::Monthly);
        assert_eq!(p.check_subset, Some(ReadData::Percent(2.5)));
        assert_eq!(
            p.schedule.full,
            DayRule(vec![Day::NthWeekday(1, Weekday::Sunday)])
        );
        assert_eq!(
            p.schedule.differential,
            DayRule(vec![Day::Weekday(Weekday::Sunday)])
        );
        assert_eq!(
            p.keep,
            KeepPolicy {
                last: Some(Count::N(3)),
                hourly: Some(Count::N(0)),
                daily: Some(Count::N(7)),
                weekly: Some(Count::N(5)),
                monthly: Some(Count::Unlimited),
                yearly: Some(Count::Unlimited),
                within: Some(KeepDuration {
                    weeks: 2,
                    ..KeepDuration::default()
                }),
                tags: vec![vec!["keep".into()], vec!["a".into(), "b".into()]],
            }
        );
    }

    #[test]
    fn keep_maps_to_the_same_policy_as_forget_flags() {
        let p = plan_with("[plans.p.keep]\ndaily = 7\nweekly = 4\nmonthly = 12\n").expect("keep");
        assert_eq!(
            p.keep.to_string(),
            KeepPolicy {
                daily: Some(Count::N(7)),
                weekly: Some(Count::N(4)),
                monthly: Some(Count::N(12)),
                ..KeepPolicy::default()
            }
            .to_string()
        );
    }

    #[track_caller]
    fn assert_error(text: &str, wanted: &[&str]) {
        let e = parse(text).expect_err("should be rejected");
        for w in wanted {
            assert!(e.contains(w), "error {e:?} should contain {w:?}");
        }
    }

    #[test]
    fn an_unknown_target_is_an_error_naming_it() {
        assert_error(
            "[repositories.a]\npath = \"/a\"\n[plans.p]\nsources = [\"/x\"]\ntargets = [\"a\", \"usb-c\"]\n",
            &["plans.p.targets", "\"usb-c\"", "defined: a"],
        );
        assert_error(
            "[plans.p]\nsources = [\"/x\"]\ntargets = [\"a\"]\n",
            &["unknown repository \"a\"", "no [repositories.NAME]"],
        );
    }

    #[test]
    fn bad_values_are_errors_naming_the_key() {
        let cases: &[(&str, &[&str])] = &[
            (
                "[plans.p.keep]\ndaily = -3\n",
                &["plans.p.keep.daily", "-3"],
            ),
            (
                "[plans.p.keep]\nweekly = \"lots\"\n",
                &["plans.p.keep.weekly"],
            ),
            (
                "[plans.p.keep]\nwithin = \"3x\"\n",
                &["plans.p.keep.within"],
            ),
            (
                "[plans.p.schedule]\nfull = \"frist-sunday\"\n",
                &["plans.p.schedule.full", "frist-sunday"],
            ),
            (
                "[plans.p.schedule]\ndifferential = \"monthly:32\"\n",
                &["plans.p.schedule.differential", "monthly:32"],
            ),
            ("[plans.p]\n", &[]), // duplicate table: TOML error
            ("prune = \"sometimes\"\n", &[]),
        ];
        for (extra, wanted) in cases {
            let text = format!("{MINIMAL}{extra}");
            let e = parse(&text).expect_err(extra);
            for w in *wanted {
                assert!(e.contains(w), "{extra:?}: error {e:?} should contain {w:?}");
            }
        }
        let inline = |k: &str, v: &str| {
            format!(
                "[repositories.a]\npath = \"/a\"\n[plans.p]\nsources = [\"/x\"]\ntargets = [\"a\"]\n{k} = {v}\n"
            )
        };
        assert_error(&inline("prune", "\"sometimes\""), &["plans.p.prune"]);
        assert_error(&inline("check_subset", "\"5\""), &["plans.p.check_subset"]);
        assert_error(
            &inline("check_subset", "\"150%\""),
            &["plans.p.check_subset"],
        );
        assert_error(&inline("rpo", "\"26\""), &["plans.p.rpo"]);
        assert_error(&inline("rpo", "\"1y\""), &["plans.p.rpo"]);
        assert_error(&inline("host", "\"\""), &["plans.p.host"]);
        assert_error(
            &inline("exclude_larger_than", "\"big\""),
            &["plans.p.exclude_larger_than"],
        );
    }

    #[test]
    fn unknown_keys_and_missing_required_keys_are_errors() {
        assert_error(
            "[repositories.a]\npath = \"/a\"\n[plans.p]\nsorces = [\"/x\"]\ntargets = [\"a\"]\n",
            &["sorces"],
        );
        assert_error("[repositories.a]\npaht = \"/a\"\n", &["paht"]);
        assert_error("[repositories.a]\n", &["repositories.a", "path"]);
        assert_error(
            "[repositories.a]\npath = \"/a\"\n[plans.p]\ntargets = [\"a\"]\n",
            &["plans.p.sources"],
        );
        assert_error(
            "[repositories.a]\npath = \"/a\"\n[plans.p]\nsources = [\"/x\"]\n",
            &["plans.p.targets"],
        );
        assert_error(
            "[repositories.a]\npath = \"/a\"\n[plans.p]\nsources = [\"/x\"]\ntargets = [\"a\", \"a\"]\n",
            &["named twice"],
        );
        assert_error(
            "[repositories.a]\npath = \"/a\"\npassword_file = \"f\"\npassword_env = \"X\"\n",
            &["repositories.a", "only one"],
        );
        assert_error("[plans.p.keep]\nmonthy = 3\n", &["monthy"]);
        assert_error("not toml at all", &[]);
    }

    #[test]
    fn first_sunday_is_full_and_other_days_incremental() {
        let p = schedule("first-sunday", "never");
        // March 2024: Sundays on the 3rd, 10th, 17th, 24th, 31st.
        assert_eq!(mode_for(&p, date(2024, 3, 3)), BackupMode::Full);
        assert_eq!(mode_for(&p, date(2024, 3, 10)), BackupMode::Incremental);
        assert_eq!(mode_for(&p, date(2024, 3, 4)), BackupMode::Incremental);
        assert_eq!(mode_for(&p, date(2024, 3, 1)), BackupMode::Incremental);
        // September 2024 begins on a Sunday.
        assert_eq!(mode_for(&p, date(2024, 9, 1)), BackupMode::Full);
        assert_eq!(mode_for(&p, date(2024, 9, 8)), BackupMode::Incremental);
    }

    #[test]
    fn full_wins_over_differential_on_the_same_day() {
        let p = schedule("first-sunday", "sunday");
        assert_eq!(mode_for(&p, date(2024, 3, 3)), BackupMode::Full);
        assert_eq!(mode_for(&p, date(2024, 3, 10)), BackupMode::Differential);
        assert_eq!(mode_for(&p, date(2024, 3, 31)), BackupMode::Differential);
        assert_eq!(mode_for(&p, date(2024, 3, 11)), BackupMode::Incremental);
    }

    #[test]
    fn every_sunday_matches_only_sundays() {
        let p = schedule("Sunday", "never");
        let start = date(2024, 1, 1); // a Monday
        let fulls: Vec<Date> = (0..14)
            .map(|i| start.checked_add(jiff::Span::new().days(i)).expect("date"))
            .filter(|d| mode_for(&p, *d) == BackupMode::Full)
            .collect();
        assert_eq!(fulls, vec![date(2024, 1, 7), date(2024, 1, 14)]);
    }

    #[test]
    fn monthly_day_is_clamped_to_short_months() {
        let p = schedule("monthly:31", "monthly:1");
        assert_eq!(mode_for(&p, date(2024, 1, 31)), BackupMode::Full);
        assert_eq!(mode_for(&p, date(2024, 2, 29)), BackupMode::Full);
        assert_eq!(mode_for(&p, date(2023, 2, 28)), BackupMode::Full);
        assert_eq!(mode_for(&p, date(2024, 4, 30)), BackupMode::Full);
        assert_eq!(mode_for(&p, date(2024, 4, 29)), BackupMode::Incremental);
        assert_eq!(mode_for(&p, date(2024, 5, 1)), BackupMode::Differential);
        let p = schedule("monthly:15", "never");
        assert_eq!(mode_for(&p, date(2024, 2, 15)), BackupMode::Full);
        assert_eq!(mode_for(&p, date(2024, 2, 29)), BackupMode::Incremental);
    }

    #[test]
    fn last_weekday_last_day_lists_and_never() {
        let p = schedule("last-friday, monthly:last", "never");
        assert_eq!(mode_for(&p, date(2024, 3, 29)), BackupMode::Full); // last Friday
        assert_eq!(mode_for(&p, date(2024, 3, 31)), BackupMode::Full); // last day
        assert_eq!(mode_for(&p, date(2024, 3, 22)), BackupMode::Incremental);
        let p = schedule("never", "never");
        assert_eq!(mode_for(&p, date(2024, 3, 3)), BackupMode::Incremental);
        let p = schedule("daily", "never");
        assert_eq!(mode_for(&p, date(2024, 3, 5)), BackupMode::Full);
        let p = schedule("fourth-wed", "never");
        assert_eq!(mode_for(&p, date(2024, 3, 27)), BackupMode::Full);
        assert_eq!(mode_for(&p, date(2024, 3, 20)), BackupMode::Incremental);
    }

    #[test]
    fn prune_is_due_by_calendar_date() {
        let d = |day| date(2024, 3, day);
        assert!(PruneWhen::Weekly.is_due(None, d(1)));
        assert!(!PruneWhen::Weekly.is_due(Some(d(1)), d(7)));
        assert!(PruneWhen::Weekly.is_due(Some(d(1)), d(8)));
        assert!(!PruneWhen::Daily.is_due(Some(d(8)), d(8)));
        assert!(PruneWhen::Daily.is_due(Some(d(7)), d(8)));
        assert!(PruneWhen::Always.is_due(Some(d(8)), d(8)));
        assert!(!PruneWhen::Never.is_due(None, d(8)));
        assert!(!PruneWhen::Monthly.is_due(Some(d(8)), date(2024, 4, 7)));
        assert!(PruneWhen::Monthly.is_due(Some(d(8)), date(2024, 4, 8)));
    }

    #[test]
    fn paths_resolve_against_the_plan_file_and_home() {
        let mut cfg = parse(
            "[repositories.a]\npath = \"repo\"\npassword_file = \"~/pw\"\n\
             [plans.p]\nsources = [\"~\", \"docs\", \"/abs\"]\ntargets = [\"a\"]\n",
        )
        .expect("valid");
        cfg.resolve_paths(Path::new("/etc/cairn"), Some(Path::new("/home/me")));
        assert_eq!(cfg.repositories["a"].path, PathBuf::from("/etc/cairn/repo"));
        assert_eq!(
            cfg.repositories["a"].password,
            PasswordSource::File("/home/me/pw".into())
        );
        assert_eq!(
            cfg.plans["p"].sources,
            vec![
                PathBuf::from("/home/me"),
                PathBuf::from("/etc/cairn/docs"),
                PathBuf::from("/abs")
            ]
        );
    }

    #[test]
    fn an_unknown_plan_is_an_error_listing_the_plans() {
        let cfg = parse(MINIMAL).expect("valid");
        let e = cfg.plan("nope").expect_err("unknown");
        assert!(e.contains("\"nope\"") && e.contains("plans: p"), "{e}");
    }

    fn key(t: i64) -> SnapshotKey {
        SnapshotKey {
            time_ns: t,
            host: "h".into(),
            paths: vec!["/d".into()],
        }
    }

    #[test]
    fn missing_lists_what_other_targets_have() {
        let a: BTreeSet<_> = [key(1), key(2), key(3)].into_iter().collect();
        let b: BTreeSet<_> = [key(2), key(3), key(4)].into_iter().collect();
        let m = missing(&[a.clone(), b]);
        assert_eq!(m[0], vec![key(4)]);
        assert_eq!(m[1], vec![key(1)]);
        assert_eq!(missing(&[a]), vec![Vec::<SnapshotKey>::new()]);
    }

    #[test]
    fn rpo_is_met_only_by_a_recent_enough_snapshot() {
        let h = 3_600_000_000_000i64;
        assert!(rpo_met(Some(0), 26 * h, DEFAULT_RPO));
        assert!(!rpo_met(Some(0), 26 * h + 1, DEFAULT_RPO));
        assert!(!rpo_met(None, 0, DEFAULT_RPO));
    }
}

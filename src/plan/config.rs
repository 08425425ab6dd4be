//! The plan file's grammar: TOML into a validated [`PlanConfig`], with errors that name the key
//! (`plans.home.keep.daily: ...`), and the resolution of its relative and `~/` paths. The file's
//! format is described in the module doc of `cairn::plan`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::schedule::parse_days;
use super::{
    Hooks, Notify, PasswordSource, Plan, PlanConfig, PruneWhen, RepoDef, S3Keys, Schedule,
    DEFAULT_RPO,
};
use crate::backend::Location;
use crate::check::ReadData;
use crate::policy::{self, Count, KeepDuration, KeepPolicy};

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
    sibling: Option<String>,
    scrub: Option<String>,
    scrub_subset: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    secret_access_key_env: Option<String>,
    region: Option<String>,
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
    check_every: Option<String>,
    drill_every: Option<String>,
    metrics_file: Option<PathBuf>,
    #[serde(default)]
    hooks: RawHooks,
    #[serde(default)]
    notify: RawNotify,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    before: Option<String>,
    after: Option<String>,
    on_failure: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    webhook: Option<String>,
    #[serde(default)]
    on_success: bool,
    healthcheck: Option<String>,
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
        let scrub = match r.scrub.as_deref() {
            Some(w) => w.parse().map_err(|e| format!("{key}.scrub: {e}"))?,
            None => PruneWhen::Never,
        };
        let scrub_subset = match r.scrub_subset.as_deref() {
            Some(v) => match parse_subset(v).map_err(|e| format!("{key}.scrub_subset: {e}"))? {
                ReadData::None => {
                    return Err(format!(
                        "{key}.scrub_subset: a scrub reads data; give a share above 0%"
                    ))
                }
                r => r,
            },
            None => ReadData::All,
        };
        // `sftp:`, `s3:` and `ssh://` locations as `--repo` takes them; anything else is a
        // directory.
        let remote = match path.to_str() {
            Some(p)
                if p.starts_with("sftp:") || p.starts_with("s3:") || p.starts_with("ssh://") =>
            {
                Location::parse(p).map_err(|e| format!("{key}.path: {e}"))?;
                true
            }
            _ => false,
        };
        let is_s3 = remote && path.to_str().is_some_and(|p| p.starts_with("s3:"));
        let given: Vec<&str> = [
            ("access_key_id", r.access_key_id.is_some()),
            ("secret_access_key", r.secret_access_key.is_some()),
            ("secret_access_key_env", r.secret_access_key_env.is_some()),
            ("region", r.region.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        if !is_s3 && !given.is_empty() {
            return Err(format!(
                "{key}.{}: only an s3: repository takes S3 credentials",
                given[0]
            ));
        }
        if r.secret_access_key.is_some() && r.secret_access_key_env.is_some() {
            return Err(format!(
                "{key}: give only one of secret_access_key and secret_access_key_env"
            ));
        }
        if let Some(v) = &r.secret_access_key_env {
            if v.is_empty() || v.contains('=') {
                return Err(format!(
                    "{key}.secret_access_key_env: {v:?} is not an environment variable name"
                ));
            }
        }
        repositories.insert(
            name.clone(),
            RepoDef {
                name,
                path,
                remote,
                password,
                sibling: r.sibling,
                scrub,
                scrub_subset,
                s3: S3Keys {
                    access_key_id: r.access_key_id,
                    secret_access_key: r.secret_access_key,
                    secret_access_key_env: r.secret_access_key_env,
                    region: r.region,
                },
            },
        );
    }
    for (name, r) in &repositories {
        if let Some(s) = &r.sibling {
            if s == name {
                return Err(format!(
                    "repositories.{name}.sibling: a repository cannot heal from itself"
                ));
            }
            if !repositories.contains_key(s) {
                let known: Vec<&str> = repositories.keys().map(String::as_str).collect();
                return Err(format!(
                    "repositories.{name}.sibling: {s:?} is not a [repositories.NAME] table (there are: {})",
                    known.join(", ")
                ));
            }
        }
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
    let cadence = |v: &Option<String>, k: &str| {
        v.as_deref()
            .map(|s| parse_rpo(s).map_err(|e| format!("{key}.{k}: {e}")))
            .transpose()
    };
    let check_every = cadence(&p.check_every, "check_every")?;
    let drill_every = cadence(&p.drill_every, "drill_every")?;
    if p.metrics_file
        .as_ref()
        .is_some_and(|f| f.as_os_str().is_empty())
    {
        return Err(format!("{key}.metrics_file: an empty path"));
    }
    let command = |v: Option<String>, k: &str| match v {
        Some(c) if c.trim().is_empty() => Err(format!("{key}.hooks.{k}: an empty command")),
        v => Ok(v),
    };
    let hooks = Hooks {
        before: command(p.hooks.before, "before")?,
        after: command(p.hooks.after, "after")?,
        on_failure: command(p.hooks.on_failure, "on_failure")?,
    };
    let url = |v: Option<String>, k: &str| match v {
        Some(u) => super::notify::check_url(&u)
            .map(|()| Some(u))
            .map_err(|e| format!("{key}.notify.{k}: {e}")),
        None => Ok(None),
    };
    let notify = Notify {
        webhook: url(p.notify.webhook, "webhook")?,
        on_success: p.notify.on_success,
        healthcheck: url(p.notify.healthcheck, "healthcheck")?,
    };
    if notify.on_success && notify.webhook.is_none() {
        return Err(format!(
            "{key}.notify.on_success: there is no webhook to send a success to"
        ));
    }
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
        check_every,
        drill_every,
        metrics_file: p.metrics_file,
        hooks,
        notify,
    })
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
            if !r.remote {
                fix(&mut r.path);
            }
            if let PasswordSource::File(f) = &mut r.password {
                fix(f);
            }
        }
        for p in self.plans.values_mut() {
            p.sources.iter_mut().for_each(fix);
            if let Some(m) = &mut p.metrics_file {
                fix(m);
            }
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::plan::{Day, DayRule};
    use jiff::civil::Weekday;

    /// The smallest valid plan file, with one plan `p`; tests add to it.
    pub(in crate::plan) const MINIMAL: &str = r#"
        [repositories.a]
        path = "/mnt/a"
        [plans.p]
        sources = ["/data"]
        targets = ["a"]
    "#;

    /// Plan `p` of [`MINIMAL`] with `extra` appended to the file.
    pub(in crate::plan) fn plan_with(extra: &str) -> Result<Plan, String> {
        let text = format!("{MINIMAL}{extra}");
        parse(&text).map(|c| c.plans["p"].clone())
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
    fn a_repository_names_its_sibling_and_scrub_cadence_and_bad_ones_are_errors() {
        let two = "[repositories.a]\npath = \"/a\"\nsibling = \"b\"\nscrub = \"weekly\"\nscrub_subset = \"25%\"\n\
                   [repositories.b]\npath = \"/b\"\n";
        let c = parse(two).expect("valid");
        let (a, b) = (&c.repositories["a"], &c.repositories["b"]);
        assert_eq!(a.sibling.as_deref(), Some("b"));
        assert_eq!(a.scrub, PruneWhen::Weekly);
        assert_eq!(a.scrub_subset, ReadData::Percent(25.0));
        assert_eq!(b.sibling, None);
        assert_eq!(b.scrub, PruneWhen::Never, "no scrub unless asked");
        assert_eq!(
            b.scrub_subset,
            ReadData::All,
            "a scrub reads everything by default"
        );
        for (text, wanted) in [
            (
                "[repositories.a]\npath = \"/a\"\nsibling = \"a\"\n",
                &["repositories.a.sibling", "itself"][..],
            ),
            (
                "[repositories.a]\npath = \"/a\"\nsibling = \"nope\"\n",
                &["repositories.a.sibling", "\"nope\""],
            ),
            (
                "[repositories.a]\npath = \"/a\"\nscrub = \"sometimes\"\n",
                &["repositories.a.scrub"],
            ),
            (
                "[repositories.a]\npath = \"/a\"\nscrub_subset = \"0%\"\n",
                &["repositories.a.scrub_subset", "above 0%"],
            ),
            (
                "[repositories.a]\npath = \"/a\"\nscrub_subset = \"half\"\n",
                &["repositories.a.scrub_subset"],
            ),
        ] {
            assert_error(text, wanted);
        }
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
    fn hooks_notifications_metrics_and_cadences_map_to_the_plan() {
        let p = plan_with(
            "check_every = \"2d\"\ndrill_every = \"30d\"\nmetrics_file = \"m/cairn.prom\"\n\
             [plans.p.hooks]\nbefore = \"echo b\"\nafter = \"echo a\"\non_failure = \"echo f\"\n\
             [plans.p.notify]\nwebhook = \"http://127.0.0.1:9000/x\"\non_success = true\n\
             healthcheck = \"https://hc.example/ping/u\"\n",
        )
        .expect("valid");
        assert_eq!(p.check_every, Some(Duration::from_secs(2 * 86400)));
        assert_eq!(p.drill_every, Some(Duration::from_secs(30 * 86400)));
        assert_eq!(p.metrics_file, Some(PathBuf::from("m/cairn.prom")));
        assert_eq!(p.hooks.before.as_deref(), Some("echo b"));
        assert_eq!(p.hooks.after.as_deref(), Some("echo a"));
        assert_eq!(p.hooks.on_failure.as_deref(), Some("echo f"));
        assert_eq!(p.notify.webhook.as_deref(), Some("http://127.0.0.1:9000/x"));
        assert!(p.notify.on_success);
        assert_eq!(
            p.notify.healthcheck.as_deref(),
            Some("https://hc.example/ping/u")
        );
        let none = plan_with("").expect("minimal");
        assert_eq!(
            (none.check_every, none.drill_every, none.metrics_file),
            (None, None, None)
        );
        assert_eq!(
            (none.hooks, none.notify),
            (Hooks::default(), Notify::default())
        );
        for (extra, wanted) in [
            ("check_every = \"soon\"\n", "plans.p.check_every"),
            ("drill_every = \"3\"\n", "plans.p.drill_every"),
            ("[plans.p.hooks]\nbefore = \" \"\n", "plans.p.hooks.before"),
            ("[plans.p.hooks]\nbfore = \"x\"\n", "bfore"),
            (
                "[plans.p.notify]\nwebhook = \"ftp://x\"\n",
                "plans.p.notify.webhook",
            ),
            (
                "[plans.p.notify]\nhealthcheck = \"hc\"\n",
                "plans.p.notify.healthcheck",
            ),
            (
                "[plans.p.notify]\non_success = true\n",
                "plans.p.notify.on_success",
            ),
        ] {
            let e = plan_with(extra).expect_err(extra);
            assert!(e.contains(wanted), "{extra:?}: {e}");
        }
    }

    #[test]
    fn remote_targets_keep_their_location_and_take_s3_keys() {
        let mut cfg = parse(
            "[repositories.s3]\npath = \"s3:http://127.0.0.1:3900/b/p\"\naccess_key_id = \"K\"\n\
             secret_access_key_env = \"S\"\nregion = \"garage\"\n\
             [repositories.nas]\npath = \"sftp:me@nas:/srv/cairn\"\n\
             [repositories.srv]\npath = \"ssh://me@srv:2222/srv/cairn\"\n\
             [repositories.usb]\npath = \"usb\"\n",
        )
        .expect("valid");
        cfg.resolve_paths(Path::new("/etc/cairn"), None);
        let srv = &cfg.repositories["srv"];
        assert!(
            srv.remote,
            "an ssh:// target is reached through cairn serve"
        );
        assert_eq!(srv.path, PathBuf::from("ssh://me@srv:2222/srv/cairn"));
        let (s3, nas, usb) = (
            &cfg.repositories["s3"],
            &cfg.repositories["nas"],
            &cfg.repositories["usb"],
        );
        assert!(s3.remote && nas.remote && !usb.remote);
        assert_eq!(
            s3.path,
            PathBuf::from("s3:http://127.0.0.1:3900/b/p"),
            "not resolved"
        );
        assert_eq!(nas.path, PathBuf::from("sftp:me@nas:/srv/cairn"));
        assert_eq!(usb.path, PathBuf::from("/etc/cairn/usb"));
        assert!(!s3.is_present(), "the host asks the server");
        assert_eq!(
            s3.s3,
            S3Keys {
                access_key_id: Some("K".into()),
                secret_access_key: None,
                secret_access_key_env: Some("S".into()),
                region: Some("garage".into()),
            }
        );
        assert_error(
            "[repositories.a]\npath = \"/a\"\naccess_key_id = \"K\"\n",
            &["repositories.a.access_key_id", "s3:"],
        );
        assert_error(
            "[repositories.a]\npath = \"sftp:h:/a\"\nregion = \"r\"\n",
            &["repositories.a.region"],
        );
        assert_error(
            "[repositories.a]\npath = \"s3:ftp://x/b\"\n",
            &["repositories.a.path"],
        );
        assert_error(
            "[repositories.a]\npath = \"s3:http://x/b\"\nsecret_access_key = \"s\"\nsecret_access_key_env = \"S\"\n",
            &["repositories.a", "only one"],
        );
    }

    #[test]
    fn an_unknown_plan_is_an_error_listing_the_plans() {
        let cfg = parse(MINIMAL).expect("valid");
        let e = cfg.plan("nope").expect_err("unknown");
        assert!(e.contains("\"nope\"") && e.contains("plans: p"), "{e}");
    }
}

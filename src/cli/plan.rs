//! `cairn plan run NAME` / `cairn plan status [NAME]`: backup plans from the plan file.
//!
//! The file's model, its grammar and the decisions (mode of the day, prune due, which snapshots
//! are a plan's) live in `cairn::plan`; this file loads the file, visits the targets, calls the
//! library's backup, policy, prune and check, and prints. A target that is not present (an
//! unplugged USB disk) is reported and skipped; the run fails only if none is present or a
//! present one fails.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use cairn::backend::{Backend, LocalBackend};
use cairn::backup::{BackupOptions, Excludes};
use cairn::check::{check, CheckOptions, ReadData};
use cairn::id::SnapshotId;
use cairn::plan::{self, Plan, PlanConfig, PlanRecord, PlanState, RepoDef, SnapshotKey};
use cairn::policy::{self, GroupBy};
use cairn::prune::{prune, PruneOptions};
use cairn::snapshot::{BackupMode, Snapshot};
use cairn::{ErrorKind, Repository};
use serde_json::{json, Map, Value};

use super::{output, password, Ctx, EXIT_FATAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Back up to every present target, then forget by the plan's keep rules, prune when due and check
    #[command(
        after_help = "Example:\n  cairn plan run home\n  cairn --config /etc/cairn.toml plan run home --json"
    )]
    Run {
        /// The plan ([plans.NAME] in the plan file)
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Show each plan's targets: present or not, last snapshot and its age against the RPO, last check, run, prune and drill, and snapshots one target lacks
    #[command(after_help = "Example:\n  cairn plan status\n  cairn plan status home --json")]
    Status {
        /// Only this plan
        #[arg(value_name = "NAME")]
        name: Option<String>,
    },
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let cfg = load(ctx)?;
    match a.cmd {
        Cmd::Run { name } => run_plan(ctx, &cfg, &name),
        Cmd::Status { name } => status(ctx, &cfg, name.as_deref()),
    }
}

// ---------------------------------------------------------------------------------------------
// The plan file and per-repository state

/// `--config`/`CAIRN_CONFIG`, else `$XDG_CONFIG_HOME/cairn/cairn.toml`, else
/// `~/.config/cairn/cairn.toml`.
fn config_path(ctx: &Ctx) -> anyhow::Result<PathBuf> {
    if let Some(p) = &ctx.g.config {
        return Ok(p.clone());
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".config")))
        .ok_or_else(|| {
            anyhow!(
                "no --config given and no home directory to look for ~/.config/cairn/cairn.toml in"
            )
        })?;
    Ok(base.join("cairn").join("cairn.toml"))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn load(ctx: &Ctx) -> anyhow::Result<PlanConfig> {
    let path = config_path(ctx)?;
    let bytes = match super::input::read_file(&path, plan::MAX_PLAN_FILE, "plan file") {
        Ok(b) => b,
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            }) =>
        {
            bail!(
                "the plan file {} does not exist: write one (scripts/cairn.example.toml is an example) or name another with --config",
                path.display()
            )
        }
        Err(e) => return Err(e),
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow!("the plan file {} is not UTF-8 text", path.display()))?;
    let mut cfg = plan::parse(&text).map_err(|e| anyhow!("plan file {}: {e}", path.display()))?;
    let abs = std::path::absolute(&path).unwrap_or(path);
    let base = abs.parent().unwrap_or(Path::new("/"));
    cfg.resolve_paths(base, home().as_deref());
    Ok(cfg)
}

/// A target is present when its directory holds a repository `config` file.
fn is_present(r: &RepoDef) -> bool {
    r.path.is_dir() && r.path.join("config").is_file()
}

fn open(ctx: &Ctx, r: &RepoDef) -> anyhow::Result<Repository> {
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(&r.path));
    let what = format!("repository {}", r.name);
    let pw = match &r.password {
        plan::PasswordSource::Global => password::read(&ctx.g, false)?,
        plan::PasswordSource::File(f) => {
            password::read_from(Some(f), None, "CAIRN_PASSWORD", false, &what)?
        }
        plan::PasswordSource::Command(c) => {
            password::read_from(None, Some(c), "CAIRN_PASSWORD", false, &what)?
        }
        plan::PasswordSource::Env(v) => password::read_from(None, None, v, false, &what)?,
    };
    let repo = Repository::open(backend, &pw)?;
    ctx.print_warnings(&repo);
    Ok(repo)
}

fn state_path(repo: &Repository) -> Option<PathBuf> {
    super::cache_dir(repo).map(|d| d.join("plan-state.json"))
}

/// The largest plan state file read (a few hundred bytes per plan); a larger one is ignored.
const MAX_STATE_FILE: usize = 1 << 20;

fn load_state(path: Option<&Path>) -> PlanState {
    path.and_then(|p| super::input::read_file(p, MAX_STATE_FILE, "plan state file").ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Re-reads the state (another plan may have written it meanwhile), changes this plan's
/// record, and writes it back atomically (temporary file, then rename).
fn update_state(repo: &Repository, plan: &str, f: impl FnOnce(&mut PlanRecord)) {
    let Some(path) = state_path(repo) else {
        return;
    };
    let mut state = load_state(Some(&path));
    f(state.plans.entry(plan.to_string()).or_default());
    // Owner-only, like the rest of the cache.
    let write = || -> std::io::Result<()> {
        cairn::backend::write_private_file(&path, &serde_json::to_vec_pretty(&state)?)
    };
    if let Err(e) = write() {
        eprintln!("warning: could not save {}: {e}", output::esc(&path));
    }
}

/// The newest pack verification time in check's state file (`check-state.json`).
fn last_verified(repo: &Repository) -> Option<i64> {
    let path = super::cache_dir(repo)?.join("check-state.json");
    let bytes = std::fs::read(path).ok()?;
    let state: BTreeMap<String, i64> = serde_json::from_slice(&bytes).ok()?;
    state.into_values().max()
}

// ---------------------------------------------------------------------------------------------
// Small formatting helpers

/// `45s`, `12m`, `3h 12m`, `26h`, `2d 4h`: the two largest units, a zero second one left out.
fn span(secs: i64) -> String {
    let s = secs.max(0);
    let (big, small) = match s {
        0..=59 => return format!("{s}s"),
        60..=3599 => return format!("{}m", s / 60),
        3600..=172_799 => ((s / 3600, 'h'), (s % 3600 / 60, 'm')),
        _ => ((s / 86_400, 'd'), (s % 86_400 / 3600, 'h')),
    };
    if small.0 == 0 {
        format!("{}{}", big.0, big.1)
    } else {
        format!("{}{} {}{}", big.0, big.1, small.0, small.1)
    }
}

fn age_s(ns: i64, now_ns: i64) -> i64 {
    (now_ns.saturating_sub(ns)) / 1_000_000_000
}

/// `{"time": RFC 3339, "age_s": N}` for JSON.
fn when(ns: i64, now_ns: i64) -> Value {
    json!({"time": output::rfc3339(ns, local_offset(ns)), "age_s": age_s(ns, now_ns)})
}

/// `2024-03-03 10:00:00 (2h 3m ago)` for people.
fn when_human(ns: i64, now_ns: i64) -> String {
    format!(
        "{} ({} ago)",
        output::local_time(ns),
        span(age_s(ns, now_ns))
    )
}

fn local_offset(ns: i64) -> i32 {
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .map(|t| t.to_zoned(jiff::tz::TimeZone::system()).offset().seconds())
        .unwrap_or(0)
}

fn local_date(ns: i64) -> Option<jiff::civil::Date> {
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .ok()
        .map(|t| t.to_zoned(jiff::tz::TimeZone::system()).date())
}

/// The paths a plan's snapshots record (absolute, lexically clean).
fn plan_paths(plan: &Plan) -> anyhow::Result<Vec<String>> {
    plan.sources
        .iter()
        .map(|p| {
            cairn::safe_fs::absolute(p)
                .map(|a| a.to_string_lossy().into_owned())
                .with_context(|| format!("source {}", p.display()))
        })
        .collect()
}

fn plan_host(plan: &Plan) -> String {
    plan.host.clone().unwrap_or_else(super::hostname)
}

fn is_interrupted(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<cairn::Error>()
            .is_some_and(|e| e.kind() == ErrorKind::Interrupted)
    })
}

// ---------------------------------------------------------------------------------------------
// plan run

/// What is the same for every target of one run.
struct RunInfo<'a> {
    plan: &'a Plan,
    mode: BackupMode,
    /// One snapshot time for all targets, so their snapshots match by time across repositories.
    time_ns: i64,
    tz_offset_s: i32,
    today: jiff::civil::Date,
    host: String,
    paths: Vec<String>,
    excludes: Excludes,
}

fn excludes(plan: &Plan) -> anyhow::Result<Excludes> {
    let sel = cairn::filter::Selection::new(&[], &plan.excludes, &plan.iexcludes)
        .with_context(|| format!("plans.{}.excludes", plan.name))?;
    Ok(Excludes {
        patterns: (!sel.is_everything()).then_some(sel),
        caches: plan.exclude_caches,
        if_present: plan.exclude_if_present.clone(),
        larger_than: plan.exclude_larger_than,
        one_file_system: plan.one_file_system,
        repository: None,
    })
}

fn run_plan(ctx: &Ctx, cfg: &PlanConfig, name: &str) -> anyhow::Result<u8> {
    let plan = cfg.plan(name).map_err(anyhow::Error::msg)?;
    let human = !ctx.g.json && !ctx.g.quiet;
    let now = jiff::Zoned::now();
    let run = RunInfo {
        plan,
        mode: plan::mode_for(plan, now.date()),
        time_ns: now.timestamp().as_nanosecond() as i64,
        tz_offset_s: now.offset().seconds(),
        today: now.date(),
        host: plan_host(plan),
        paths: plan_paths(plan)?,
        excludes: excludes(plan)?,
    };
    if human {
        println!(
            "plan {name}: {} backup of {} to {}",
            run.mode.name(),
            run.paths.join(", "),
            plan.targets.join(", ")
        );
    }
    let mut targets = Vec::new();
    let (mut present, mut failed, mut partial, mut interrupted) = (0, 0, false, false);
    for t in &plan.targets {
        if ctx.cancel.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let r = &cfg.repositories[t];
        let mut rec = Map::new();
        rec.insert("target".into(), json!(t));
        rec.insert("path".into(), json!(r.path.to_string_lossy()));
        if !is_present(r) {
            // Always said, even with --quiet: a disk that is never plugged in is a lost copy.
            eprintln!(
                "target {t} ({}) is not present: skipped",
                output::esc(&r.path)
            );
            rec.insert("present".into(), json!(false));
            rec.insert("ok".into(), Value::Null);
        } else {
            present += 1;
            rec.insert("present".into(), json!(true));
            if human {
                println!("target {t} ({})", output::esc(&r.path));
            }
            match run_target(ctx, &run, r, &mut rec) {
                Ok(unreadable) => {
                    partial |= unreadable > 0;
                    rec.insert("ok".into(), json!(true));
                    if human {
                        println!("  done");
                    }
                }
                Err(e) => {
                    interrupted |= is_interrupted(&e);
                    failed += 1;
                    let msg = output::error_chain(&e);
                    eprintln!("target {t} ({}) failed: {msg}", output::esc(&r.path));
                    rec.insert("ok".into(), json!(false));
                    rec.insert("error".into(), json!(msg));
                }
            }
        }
        let rec = Value::Object(rec);
        if ctx.g.json {
            let mut line = json!({"message_type": "target", "plan": name});
            if let (Some(l), Value::Object(r)) = (line.as_object_mut(), &rec) {
                l.extend(r.clone());
            }
            output::json_line(&line)?;
        }
        targets.push(rec);
        if interrupted {
            break;
        }
    }
    let code = if interrupted {
        eprintln!("plan {name}: interrupted");
        EXIT_INTERRUPTED
    } else if present == 0 {
        eprintln!(
            "plan {name}: no target is present ({}); nothing was backed up",
            plan.targets
                .iter()
                .map(|t| format!("{t}: {}", cfg.repositories[t].path.display()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        EXIT_FATAL
    } else if failed > 0 {
        EXIT_FATAL
    } else if partial {
        EXIT_PARTIAL
    } else {
        EXIT_OK
    };
    if ctx.g.json {
        output::json_line(&json!({
            "message_type": "summary",
            "plan": name,
            "mode": run.mode.name(),
            "time": output::rfc3339(run.time_ns, run.tz_offset_s),
            "targets_present": present,
            "targets_failed": failed,
            "exit_code": code,
            "targets": targets,
        }))?;
    } else if human && present > 0 {
        println!(
            "plan {name}: {} of {} targets present, {} failed",
            present,
            plan.targets.len(),
            failed
        );
    }
    Ok(code)
}

/// Runs the plan's steps on one present target; returns the number of unreadable source files.
/// The outcome is recorded in the target's plan state.
fn run_target(
    ctx: &Ctx,
    run: &RunInfo,
    r: &RepoDef,
    rec: &mut Map<String, Value>,
) -> anyhow::Result<usize> {
    let mut repo = open(ctx, r)?;
    let result = steps(ctx, run, &mut repo, rec);
    let (now, ok) = (super::now_ns(), result.is_ok());
    update_state(&repo, &run.plan.name, |p| {
        p.last_run_ns = Some(now);
        p.last_run_ok = Some(ok);
    });
    result
}

fn steps(
    ctx: &Ctx,
    run: &RunInfo,
    repo: &mut Repository,
    rec: &mut Map<String, Value>,
) -> anyhow::Result<usize> {
    let human = !ctx.g.json && !ctx.g.quiet;
    let plan = run.plan;

    // 1. Backup, under a shared lock.
    let unreadable = {
        let _lock = ctx.lock(repo, false, "plan run (backup)")?;
        repo.load_index().context("loading the index")?;
        ctx.print_warnings(repo);
        let opts = BackupOptions {
            paths: plan.sources.clone(),
            host: run.host.clone(),
            user: super::username(),
            uid: super::current_uid(),
            gid: super::current_gid(),
            tags: plan.tags.clone(),
            time_ns: run.time_ns,
            tz_offset_s: run.tz_offset_s,
            mode: run.mode,
            parent: None,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            cancel: Some(ctx.cancel.clone()),
            exclude: Excludes {
                repository: super::backup::local_repository(&repo.backend().location()),
                ..run.excludes.clone()
            },
            checkpoint_every: Some(std::time::Duration::from_secs(300)),
            ..BackupOptions::default()
        };
        let result = super::progress::backup_with_progress(ctx, repo, &opts);
        let out = result.context("backup")?;
        let s = &out.summary;
        let id = out.snapshot_id.map(|i| i.to_hex());
        rec.insert(
            "backup".into(),
            json!({
                "snapshot_id": id,
                "parent": out.snapshot.parent.map(|p| p.to_hex()),
                "mode": out.snapshot.mode.name(),
                "files_new": s.files_new,
                "files_changed": s.files_changed,
                "files_unmodified": s.files_unmodified,
                "dirs": s.dirs,
                "bytes_read": s.bytes_read,
                "total_bytes_processed": s.total_bytes_processed,
                "data_added": s.data_added,
                "data_added_stored": s.data_added_stored,
                "duration_s": s.duration_s,
                "errors": out.errors.iter().map(|e| {
                    let mut v = json!({"error": e.error});
                    output::json_name(&mut v, "path", e.path.as_os_str().as_bytes());
                    v
                }).collect::<Vec<_>>(),
                "repository_left_out": out.repository_left_out.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>(),
            }),
        );
        super::backup::note_left_out(ctx, &out.repository_left_out);
        if human {
            println!(
                "  backup: snapshot {} ({}{}): {} new, {} changed, {} unmodified files; {} added ({} stored)",
                out.snapshot_id.map(|i| i.short()).unwrap_or_default(),
                out.snapshot.mode.name(),
                out.snapshot
                    .parent
                    .map(|p| format!(", parent {}", p.short()))
                    .unwrap_or_default(),
                s.files_new,
                s.files_changed,
                s.files_unmodified,
                output::size(s.data_added),
                output::size(s.data_added_stored)
            );
            if !out.errors.is_empty() {
                println!(
                    "  {} files or directories could not be read (listed above)",
                    out.errors.len()
                );
            }
        }
        out.errors.len()
    };
    if ctx.cancel.load(Ordering::SeqCst) {
        return Err(cairn::Error::Interrupted.into());
    }

    // 2, 3. Forget and prune, under one exclusive lock.
    let state = load_state(state_path(repo).as_deref());
    let last_prune = state.plans.get(&plan.name).and_then(|p| p.last_prune_ns);
    let prune_due = plan
        .prune
        .is_due(last_prune.and_then(local_date), run.today);
    if !plan.keep.is_empty() || prune_due {
        let _lock = ctx.lock(repo, true, "plan run (forget, prune)")?;
        if !plan.keep.is_empty() {
            let (kept, removed) = forget(repo, run)?;
            rec.insert(
                "forget".into(),
                json!({
                    "policy": plan.keep.to_string(),
                    "kept": kept,
                    "removed": removed.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
                }),
            );
            if human {
                println!(
                    "  forget ({}): {kept} kept, {} removed",
                    plan.keep,
                    removed.len()
                );
            }
        }
        if prune_due {
            let p = prune(repo, &PruneOptions::default()).context("prune")?;
            ctx.print_warnings(repo);
            let now = super::now_ns();
            update_state(repo, &plan.name, |r| r.last_prune_ns = Some(now));
            rec.insert(
                "prune".into(),
                json!({
                    "due": true,
                    "packs_deleted": p.packs_deleted,
                    "packs_repacked": p.packs_repacked,
                    "bytes_freed": p.bytes_freed,
                    "bytes_after": p.bytes_after,
                }),
            );
            if human {
                println!(
                    "  prune: {} packs deleted, {} repacked, {} freed",
                    p.packs_deleted,
                    p.packs_repacked,
                    output::size(p.bytes_freed)
                );
            }
        }
    }
    if !prune_due {
        rec.insert(
            "prune".into(),
            json!({"due": false, "when": plan.prune.name(), "last": last_prune.map(|t| output::rfc3339(t, local_offset(t)))}),
        );
        if human {
            println!(
                "  prune: not due ({}{})",
                plan.prune.name(),
                last_prune
                    .map(|t| format!(", last on {}", output::local_time(t)))
                    .unwrap_or_default()
            );
        }
    }
    if plan.keep.is_empty() && human {
        println!("  forget: no keep rules, nothing forgotten");
    }
    if ctx.cancel.load(Ordering::SeqCst) {
        return Err(cairn::Error::Interrupted.into());
    }

    // 4. Check a subset of the data, under a shared lock.
    if let Some(read) = plan.check_subset {
        let _lock = ctx.lock(repo, false, "plan run (check)")?;
        let opts = CheckOptions {
            read_data: read,
            state_file: super::cache_dir(repo).map(|d| d.join("check-state.json")),
            now_ns: super::now_ns(),
            ..CheckOptions::default()
        };
        let c = check(repo, &opts).context("check")?;
        rec.insert(
            "check".into(),
            json!({
                "read_data_subset": match read { ReadData::Percent(p) => json!(format!("{p}%")), _ => Value::Null },
                "ok": c.ok(),
                "packs": c.packs,
                "packs_read": c.packs_read,
                "bytes_read": c.bytes_read,
                "errors": c.errors,
                "warnings": c.warnings,
            }),
        );
        if !ctx.g.json {
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            for e in &c.errors {
                eprintln!("error: {e}");
            }
        }
        if human {
            println!(
                "  check: read and verified {} of {} packs ({}): {}",
                c.packs_read,
                c.packs,
                output::size(c.bytes_read),
                if c.ok() {
                    "no errors".to_string()
                } else {
                    format!("{} errors", c.errors.len())
                }
            );
        }
        if !c.ok() {
            bail!(
                "check found {} errors; run `cairn -r {} check --read-data`",
                c.errors.len(),
                repo.backend().location()
            );
        }
        let now = opts.now_ns;
        update_state(repo, &plan.name, |r| r.last_check_ns = Some(now));
    }
    Ok(unreadable)
}

/// Applies the plan's keep rules to its own snapshots (same host and paths; grouped by host
/// and paths as `forget` does) and removes the rest. Returns (kept, removed).
fn forget(repo: &mut Repository, run: &RunInfo) -> anyhow::Result<(usize, Vec<SnapshotId>)> {
    let all = repo.snapshots()?;
    let mine: Vec<(SnapshotId, &Snapshot)> = all
        .iter()
        .filter(|(_, s)| plan::is_plan_snapshot(s, &run.host, &run.paths))
        .map(|(id, s)| (*id, s))
        .collect();
    let mut kept = 0;
    let mut removed = Vec::new();
    for members in policy::group(&mine, GroupBy::HOST_PATHS).values() {
        for d in policy::apply(&run.plan.keep, members, super::now_ns()) {
            if d.keep {
                kept += 1;
            } else {
                removed.push(d.id);
            }
        }
    }
    for id in &removed {
        repo.remove_snapshot(id)
            .with_context(|| format!("forgetting snapshot {}", id.short()))?;
    }
    Ok((kept, removed))
}

// ---------------------------------------------------------------------------------------------
// plan status

/// What status learns from one present repository (read once, shared by the plans using it).
struct RepoFacts {
    snapshots: Vec<(SnapshotId, Snapshot)>,
    state: PlanState,
    last_verified: Option<i64>,
    last_drill: Option<cairn::drill::DrillRecord>,
}

fn facts(ctx: &Ctx, r: &RepoDef) -> anyhow::Result<RepoFacts> {
    let repo = open(ctx, r)?;
    let snapshots = repo.snapshots()?;
    let last_drill = cairn::drill::history(&repo)?.pop();
    ctx.print_warnings(&repo);
    Ok(RepoFacts {
        snapshots,
        state: load_state(state_path(&repo).as_deref()),
        last_verified: last_verified(&repo),
        last_drill,
    })
}

fn status(ctx: &Ctx, cfg: &PlanConfig, name: Option<&str>) -> anyhow::Result<u8> {
    let plans: Vec<&Plan> = match name {
        Some(n) => vec![cfg.plan(n).map_err(anyhow::Error::msg)?],
        None => cfg.plans.values().collect(),
    };
    let now = super::now_ns();
    let today = jiff::Zoned::now().date();
    // Each present repository is opened once, whatever number of plans use it.
    let mut repos: BTreeMap<&str, Option<Result<RepoFacts, String>>> = BTreeMap::new();
    for p in &plans {
        for t in &p.targets {
            if repos.contains_key(t.as_str()) {
                continue;
            }
            let r = &cfg.repositories[t];
            let f = is_present(r).then(|| facts(ctx, r).map_err(|e| output::error_chain(&e)));
            repos.insert(t, f);
        }
    }

    let mut out = Vec::new();
    for p in &plans {
        let host = plan_host(p);
        let paths = plan_paths(p)?;
        // This plan's snapshots on each readable target.
        let keys: Vec<Option<BTreeSet<SnapshotKey>>> = p
            .targets
            .iter()
            .map(|t| match &repos[t.as_str()] {
                Some(Ok(f)) => Some(
                    f.snapshots
                        .iter()
                        .filter(|(_, s)| plan::is_plan_snapshot(s, &host, &paths))
                        .map(|(_, s)| SnapshotKey::of(s))
                        .collect(),
                ),
                _ => None,
            })
            .collect();
        let readable: Vec<BTreeSet<SnapshotKey>> = keys.iter().flatten().cloned().collect();
        let mut missing = plan::missing(&readable).into_iter();

        let mut targets = Vec::new();
        for t in &p.targets {
            let r = &cfg.repositories[t];
            let mut o = Map::new();
            o.insert("name".into(), json!(t));
            o.insert("path".into(), json!(r.path.to_string_lossy()));
            o.insert("present".into(), json!(repos[t.as_str()].is_some()));
            let facts = match &repos[t.as_str()] {
                None => None,
                Some(Err(e)) => {
                    o.insert("error".into(), json!(e));
                    None
                }
                Some(Ok(f)) => Some(f),
            };
            let Some(f) = facts else {
                for k in [
                    "snapshots",
                    "last_snapshot",
                    "rpo_met",
                    "last_run",
                    "last_prune",
                    "last_check",
                    "last_drill",
                    "missing",
                ] {
                    o.insert(k.into(), Value::Null);
                }
                targets.push(Value::Object(o));
                continue;
            };
            let mine: Vec<&(SnapshotId, Snapshot)> = f
                .snapshots
                .iter()
                .filter(|(_, s)| plan::is_plan_snapshot(s, &host, &paths))
                .collect();
            let newest = mine
                .iter()
                .max_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
            let rec = f.state.plans.get(&p.name).cloned().unwrap_or_default();
            let last_check = [f.last_verified, rec.last_check_ns]
                .into_iter()
                .flatten()
                .max();
            let lacks = missing.next().unwrap_or_default();
            o.insert("snapshots".into(), json!(mine.len()));
            o.insert(
                "last_snapshot".into(),
                match newest {
                    Some((id, s)) => {
                        let mut w = when(s.time_ns, now);
                        w["time"] = json!(output::rfc3339(s.time_ns, s.tz_offset_s));
                        w["id"] = json!(id.to_hex());
                        w["short_id"] = json!(id.short());
                        w["mode"] = json!(s.mode.name());
                        w
                    }
                    None => Value::Null,
                },
            );
            o.insert(
                "rpo_met".into(),
                json!(plan::rpo_met(newest.map(|(_, s)| s.time_ns), now, p.rpo)),
            );
            o.insert(
                "last_run".into(),
                rec.last_run_ns.map_or(Value::Null, |t| {
                    let mut w = when(t, now);
                    w["ok"] = json!(rec.last_run_ok);
                    w
                }),
            );
            o.insert(
                "last_prune".into(),
                rec.last_prune_ns.map_or(Value::Null, |t| when(t, now)),
            );
            o.insert(
                "prune_due".into(),
                json!(p
                    .prune
                    .is_due(rec.last_prune_ns.and_then(local_date), today)),
            );
            o.insert(
                "last_check".into(),
                last_check.map_or(Value::Null, |t| when(t, now)),
            );
            o.insert(
                "last_drill".into(),
                f.last_drill.as_ref().map_or(Value::Null, |d| {
                    let mut w = when(d.time_ns, now);
                    w["ok"] = json!(d.ok);
                    w["snapshot"] = json!(d.snapshot.to_hex());
                    w["sample_percent"] = json!(d.sample_percent);
                    w
                }),
            );
            let have: Vec<&str> = p
                .targets
                .iter()
                .zip(&keys)
                .filter_map(|(n, k)| k.as_ref().map(|k| (n, k)))
                .map(|(n, _)| n.as_str())
                .collect();
            o.insert(
                "missing".into(),
                json!(lacks
                    .iter()
                    .map(|k| {
                        let on: Vec<&str> = have
                            .iter()
                            .zip(&readable)
                            .filter(|(_, set)| set.contains(k))
                            .map(|(n, _)| *n)
                            .collect();
                        json!({
                            "time": output::rfc3339(k.time_ns, local_offset(k.time_ns)),
                            "host": k.host,
                            "paths": k.paths,
                            "on": on,
                        })
                    })
                    .collect::<Vec<_>>()),
            );
            targets.push(Value::Object(o));
        }
        let any_met = targets.iter().any(|t| t["rpo_met"] == json!(true));
        out.push(json!({
            "name": p.name,
            "host": host,
            "paths": paths,
            "rpo": span(p.rpo.as_secs() as i64),
            "rpo_s": p.rpo.as_secs(),
            "rpo_met": any_met,
            "mode_today": plan::mode_for(p, today).name(),
            "prune": p.prune.name(),
            "check_subset": match p.check_subset { Some(ReadData::Percent(x)) => json!(format!("{x}%")), Some(_) => json!("0%"), None => Value::Null },
            "targets": targets,
        }));
    }

    if ctx.g.json {
        output::json_line(&json!({ "plans": out }))?;
        return Ok(EXIT_OK);
    }
    if plans.is_empty() && !ctx.g.quiet {
        println!("the plan file defines no plans");
    }
    for p in &out {
        print_status(p, now);
    }
    Ok(EXIT_OK)
}

fn print_status(p: &Value, now: i64) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let met = if p["rpo_met"] == json!(true) {
        "met"
    } else {
        "MISSED"
    };
    println!(
        "plan {}: {} (host {}); RPO {}: {met}; today's mode {}",
        s(&p["name"]),
        p["paths"]
            .as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
        s(&p["host"]),
        s(&p["rpo"]),
        s(&p["mode_today"])
    );
    let empty = Vec::new();
    for t in p["targets"].as_array().unwrap_or(&empty) {
        println!("  {}  {}", s(&t["name"]), s(&t["path"]));
        if t["present"] != json!(true) {
            println!("    not present");
            continue;
        }
        if !t["error"].is_null() {
            println!("    present, but cannot be read: {}", s(&t["error"]));
            continue;
        }
        let ns = |v: &Value| -> Option<i64> {
            let t = v["time"].as_str()?;
            Some(t.parse::<jiff::Timestamp>().ok()?.as_nanosecond() as i64)
        };
        let w = |v: &Value| ns(v).map(|t| when_human(t, now));
        println!(
            "    {:<14}{} of this plan",
            "snapshots",
            t["snapshots"].as_u64().unwrap_or(0)
        );
        match w(&t["last_snapshot"]) {
            Some(when) => println!(
                "    {:<14}{when}, {} {}: RPO {}",
                "last snapshot",
                s(&t["last_snapshot"]["mode"]),
                s(&t["last_snapshot"]["short_id"]),
                if t["rpo_met"] == json!(true) {
                    "met"
                } else {
                    "MISSED"
                }
            ),
            None => println!("    {:<14}none: RPO MISSED", "last snapshot"),
        }
        let line = |label: &str, v: &Value, extra: String| {
            println!(
                "    {label:<14}{}{extra}",
                w(v).unwrap_or_else(|| "never".into())
            )
        };
        line(
            "last run",
            &t["last_run"],
            match t["last_run"]["ok"].as_bool() {
                Some(true) => ": ok".into(),
                Some(false) => ": FAILED".into(),
                None => String::new(),
            },
        );
        line(
            "last prune",
            &t["last_prune"],
            if t["prune_due"] == json!(true) {
                " (due)".into()
            } else {
                String::new()
            },
        );
        line("last check", &t["last_check"], String::new());
        line(
            "last drill",
            &t["last_drill"],
            match t["last_drill"]["ok"].as_bool() {
                Some(true) => ": ok".into(),
                Some(false) => ": FAILED".into(),
                None => String::new(),
            },
        );
        let missing = t["missing"].as_array().cloned().unwrap_or_default();
        if missing.is_empty() {
            println!("    {:<14}none", "missing");
        } else {
            println!(
                "    {:<14}{} snapshot{} another target has:",
                "missing",
                missing.len(),
                if missing.len() == 1 { "" } else { "s" }
            );
            for m in &missing {
                let on: Vec<String> = m["on"]
                    .as_array()
                    .map(|a| a.iter().map(s).collect())
                    .unwrap_or_default();
                println!(
                    "      {} (on {})",
                    ns(m).map_or_else(|| s(&m["time"]), output::local_time),
                    on.join(", ")
                );
            }
        }
    }
}

//! `cairn plan run NAME` / `cairn plan status [NAME]`: backup plans from the plan file.
//!
//! The plan file's model, the run (backup, forget, prune, check on every present target) and
//! the status live in `cairn::plan`. This file finds and reads the plan file, lends the library
//! what it must not do itself through [`Host`] (passwords, locks, progress, the clock, the
//! cache directory), and prints: the run's events as they come, its report, the status.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use anyhow::{anyhow, bail};
use cairn::backup::BackupOptions;
use cairn::plan::hooks::HookEnv;
use cairn::plan::{
    self, Machine, Opener, PasswordSource, PlanConfig, PlanEvent, PlanHost, RepoDef, RunOptions,
    RunOutcome,
};
use cairn::repo::lock::RepoLock;
use cairn::{ErrorKind, Repository};
use serde_json::{json, Value};

mod text;

use super::output::outln;
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
    #[command(
        after_help = "Exits 1 when a plan is past its RPO, check_every or drill_every.\n\nExample:\n  cairn plan status\n  cairn plan status home --json\n  cairn plan status --prometheus > /var/lib/node_exporter/cairn.prom"
    )]
    Status {
        /// Only this plan
        #[arg(value_name = "NAME")]
        name: Option<String>,
        /// Print the metrics in the Prometheus text format instead
        #[arg(long)]
        prometheus: bool,
    },
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let cfg = load(ctx)?;
    match a.cmd {
        Cmd::Run { name } => run_plan(ctx, &cfg, &name),
        Cmd::Status { name, prometheus } => status(ctx, &cfg, name.as_deref(), prometheus),
    }
}

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

fn machine() -> Machine {
    Machine {
        hostname: super::hostname(),
        tz: jiff::tz::TimeZone::system(),
    }
}

/// An error of the CLI's (a password that cannot be read, a lock refused) or the library's,
/// shown as its whole chain.
struct HostError(anyhow::Error);

impl From<cairn::Error> for HostError {
    fn from(e: cairn::Error) -> Self {
        HostError(e.into())
    }
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&output::error_chain(&self.0))
    }
}

/// What `cairn::plan` borrows from the command line: passwords, locks, progress, printing.
struct Host<'a> {
    ctx: &'a Ctx,
    /// The plan being run (named in `--json` target lines).
    plan: &'a str,
    human: bool,
    /// Writing a JSON line failed (a closed pipe): the run stops and this is the result.
    output_error: Option<anyhow::Error>,
}

impl<'a> Host<'a> {
    fn new(ctx: &'a Ctx, plan: &'a str) -> Host<'a> {
        Host {
            ctx,
            plan,
            human: !ctx.g.json && !ctx.g.quiet,
            output_error: None,
        }
    }

    fn json_line(&mut self, v: &Value) {
        if let Err(e) = output::json_line(v) {
            self.output_failed(e);
        }
    }

    /// The first failure to print ends the run: its reader is gone or its disk is full.
    fn output_failed(&mut self, e: anyhow::Error) {
        if self.output_error.is_none() {
            self.output_error = Some(e);
            self.ctx.cancel.store(true, Ordering::SeqCst);
        }
    }
}

impl Opener for Host<'_> {
    type Error = HostError;

    fn present(&mut self, r: &RepoDef) -> Result<(), String> {
        if !r.remote {
            return if r.is_present() {
                Ok(())
            } else {
                Err("not present".into())
            };
        }
        probe_remote(self.ctx, r)
    }

    fn open(&mut self, r: &RepoDef) -> Result<Repository, HostError> {
        let location = r.path.to_str().ok_or_else(|| {
            HostError(anyhow!(
                "repository {}: its path {} is not UTF-8 text",
                r.name,
                output::esc(&r.path)
            ))
        })?;
        let what = format!("repository {}", r.name);
        let g = &self.ctx.g;
        let s3 = s3_credentials(r).map_err(HostError)?;
        self.ctx
            .open_with(location, false, s3, || match &r.password {
                PasswordSource::Global => password::read(g, false),
                PasswordSource::File(f) => {
                    password::read_from(Some(f), None, "CAIRN_PASSWORD", false, &what)
                }
                PasswordSource::Command(c) => {
                    password::read_from(None, Some(c), "CAIRN_PASSWORD", false, &what)
                }
                PasswordSource::Env(v) => password::read_from(None, None, v, false, &what),
            })
            .map_err(HostError)
    }

    fn state_dir(&self, repo: &Repository) -> Option<PathBuf> {
        super::cache_dir(repo)
    }

    fn now_ns(&self) -> i64 {
        super::now_ns()
    }

    fn warning(&mut self, message: &str) {
        eprintln!("warning: {}", output::esc(message));
    }
}

impl PlanHost for Host<'_> {
    fn is_interrupted(&self, e: &HostError) -> bool {
        e.0.chain().any(|c| {
            c.downcast_ref::<cairn::Error>()
                .is_some_and(|e| e.kind() == ErrorKind::Interrupted)
        })
    }

    fn lock(
        &mut self,
        repo: &Repository,
        exclusive: bool,
        cmd: &str,
    ) -> Result<RepoLock, HostError> {
        self.ctx.lock(repo, exclusive, cmd).map_err(HostError)
    }

    fn backup(
        &mut self,
        repo: &mut Repository,
        opts: &BackupOptions,
    ) -> cairn::Result<cairn::backup::BackupOutcome> {
        super::progress::backup_with_progress(self.ctx, repo, opts)
    }

    fn event(&mut self, event: PlanEvent<'_>) {
        if let Err(e) = text::event(self.ctx, &event) {
            self.output_failed(e.into());
        }
        if let (PlanEvent::TargetDone(t), true) = (event, self.ctx.g.json) {
            let mut line = serde_json::to_value(t).unwrap_or_default();
            line["message_type"] = json!("target");
            line["plan"] = json!(self.plan);
            self.json_line(&line);
        }
    }
}

fn run_plan(ctx: &Ctx, cfg: &PlanConfig, name: &str) -> anyhow::Result<u8> {
    let plan = cfg.plan(name).map_err(anyhow::Error::msg)?;
    let mut ops = Ops::new(plan);
    ops.ping("start");
    if let Some(cmd) = &plan.hooks.before {
        let env = HookEnv {
            plan: name.to_string(),
            targets: plan.targets.clone(),
            ..HookEnv::default()
        };
        if let Err(why) = ops.hook("before", cmd, &env) {
            let message = format!(
                "the before hook failed ({why}): the run did not start, nothing was backed up"
            );
            eprintln!("plan {name}: {}", output::esc(&message));
            let summary = json!({
                "message_type": "summary",
                "plan": name,
                "error": message,
                "targets_present": 0,
                "targets_failed": 0,
                "targets": [],
            });
            return ops.finish(ctx, cfg, summary, EXIT_FATAL, false);
        }
    }
    let mut host = Host::new(ctx, name);
    let opts = RunOptions {
        machine: machine(),
        user: super::username(),
        uid: super::current_uid(),
        gid: super::current_gid(),
        cancel: Some(ctx.cancel.clone()),
    };
    let report = match plan::run(&mut host, cfg, plan, &opts) {
        Ok(r) => r,
        Err(e) => {
            let message = output::error_chain(&e.0);
            let summary = json!({
                "message_type": "summary",
                "plan": name,
                "error": message,
                "targets_present": 0,
                "targets_failed": 0,
                "targets": [],
            });
            ops.quiet_json = true;
            let _ = ops.finish(ctx, cfg, summary, EXIT_FATAL, true);
            return Err(e.0);
        }
    };
    if let Some(e) = host.output_error {
        return Err(e);
    }
    let code = match report.outcome() {
        RunOutcome::Interrupted => {
            eprintln!("plan {name}: interrupted");
            EXIT_INTERRUPTED
        }
        RunOutcome::NoTargetPresent => {
            eprintln!(
                "plan {name}: no target is present ({}); nothing was backed up",
                plan.targets
                    .iter()
                    .filter_map(|t| cfg.repositories.get(t))
                    .map(|r| format!("{}: {}", r.name, r.path.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            EXIT_FATAL
        }
        RunOutcome::Failed => EXIT_FATAL,
        RunOutcome::Partial => EXIT_PARTIAL,
        RunOutcome::Ok => EXIT_OK,
    };
    if host.human && report.targets_present > 0 {
        outln!(
            "plan {name}: {} of {} targets present, {} failed",
            report.targets_present,
            plan.targets.len(),
            report.targets_failed
        )?;
    }
    let mut summary = serde_json::to_value(&report)?;
    summary["message_type"] = json!("summary");
    ops.done = report
        .targets
        .iter()
        .filter_map(|t| {
            let id = t.backup.as_ref()?.snapshot_id?;
            Some((t.target.clone(), id.to_hex()))
        })
        .collect();
    ops.finish(ctx, cfg, summary, code, true)
}

/// What a plan run does around the library's run: hooks, notifications, the metrics file;
/// and what became of each (the summary's `hooks` and `notifications`).
struct Ops<'a> {
    plan: &'a plan::Plan,
    /// The targets backed up and their snapshots' ids, for the hooks.
    done: Vec<(String, String)>,
    hooks: Vec<Value>,
    notifications: Vec<Value>,
    /// The run ends in an error of its own (printed by main): no summary line on stdout.
    quiet_json: bool,
}

impl<'a> Ops<'a> {
    fn new(plan: &'a plan::Plan) -> Ops<'a> {
        Ops {
            plan,
            done: Vec::new(),
            hooks: Vec::new(),
            notifications: Vec::new(),
            quiet_json: false,
        }
    }

    /// Runs one hook and records how it went; a failure is also said on stderr.
    fn hook(&mut self, which: &str, cmd: &str, env: &HookEnv) -> Result<(), String> {
        let r = plan::hooks::run_hook(cmd, env);
        if let Err(why) = &r {
            eprintln!(
                "plan {}: the {which} hook `{}` failed: {why}",
                self.plan.name,
                output::esc(cmd)
            );
        }
        self.hooks.push(json!({
            "hook": which,
            "command": cmd,
            "ok": r.is_ok(),
            "error": r.as_ref().err(),
        }));
        r
    }

    /// A healthchecks-style ping: `URL/start`, `URL` (""), `URL/fail`.
    fn ping(&mut self, suffix: &str) {
        if let Some(url) = self.plan.notify.healthcheck.clone() {
            let url = plan::notify::ping_url(&url, suffix);
            let r = plan::notify::get(&url);
            self.record("healthcheck", &url, r);
        }
    }

    fn record(&mut self, kind: &str, url: &str, r: Result<u16, String>) {
        if let Err(why) = &r {
            eprintln!(
                "warning: plan {}: {kind} notification not delivered: {}",
                self.plan.name,
                output::esc(why)
            );
        }
        self.notifications.push(json!({
            "kind": kind,
            "url": url,
            "ok": r.is_ok(),
            "status": r.as_ref().ok(),
            "error": r.as_ref().err(),
        }));
    }

    /// After the run (`ran`: it started, so `after` runs): the summary file, `after`, then
    /// `on_failure` when the run failed, the webhook and the final ping, the metrics file;
    /// then the summary line with `--json`. Returns the exit code: a failing `after` or
    /// `on_failure` hook fails a run that succeeded; a notification never does.
    fn finish(
        &mut self,
        ctx: &Ctx,
        cfg: &PlanConfig,
        mut summary: Value,
        mut code: u8,
        ran: bool,
    ) -> anyhow::Result<u8> {
        let name = self.plan.name.clone();
        summary["exit_code"] = json!(code);
        let file = SummaryFile::new(&name);
        let mut env = HookEnv {
            plan: name.clone(),
            targets: self.done.iter().map(|(t, _)| t.clone()).collect(),
            snapshot_ids: self.done.iter().map(|(_, id)| id.clone()).collect(),
            exit_code: Some(code),
            summary_file: None,
        };
        let hooks = self.plan.hooks.clone();
        let write_summary = |summary: &Value, env: &mut HookEnv| {
            if let Some(f) = &file {
                match f.write(summary) {
                    Ok(()) => env.summary_file = Some(f.path.clone()),
                    Err(e) => eprintln!(
                        "warning: could not write the run's summary to {}: {e}",
                        f.path.display()
                    ),
                }
            }
        };
        if let (Some(cmd), true) = (&hooks.after, ran) {
            write_summary(&summary, &mut env);
            if self.hook("after", cmd, &env).is_err() && matches!(code, EXIT_OK | EXIT_PARTIAL) {
                code = EXIT_FATAL;
            }
        }
        summary["exit_code"] = json!(code);
        summary["hooks"] = json!(self.hooks);
        let failed = code != EXIT_OK;
        if let (Some(cmd), true) = (&hooks.on_failure, failed) {
            env.exit_code = Some(code);
            write_summary(&summary, &mut env);
            let _ = self.hook("on_failure", cmd, &env);
            summary["hooks"] = json!(self.hooks);
        }
        if let Some(url) = self.plan.notify.webhook.clone() {
            if failed || self.plan.notify.on_success {
                let mut body = summary.clone();
                if let Some(m) = body.as_object_mut() {
                    m.remove("message_type");
                }
                let r = plan::notify::post_json(&url, &serde_json::to_vec(&body)?);
                self.record("webhook", &url, r);
            }
        }
        self.ping(if failed { "fail" } else { "" });
        if let Some(path) = self.plan.metrics_file.clone() {
            if let Err(e) = write_metrics(ctx, cfg, self.plan, &path) {
                eprintln!(
                    "warning: plan {name}: could not write the metrics file {}: {}",
                    path.display(),
                    output::error_chain(&e)
                );
                summary["metrics_file_error"] = json!(output::error_chain(&e));
            }
        }
        summary["notifications"] = json!(self.notifications);
        if ctx.g.json && !self.quiet_json {
            output::json_line(&summary)?;
        }
        Ok(code)
    }
}

/// The run's JSON summary for the hooks (`CAIRN_SUMMARY_FILE`): an owner-only file in the
/// temporary directory, removed when the run ends.
struct SummaryFile {
    path: PathBuf,
}

impl SummaryFile {
    fn new(plan: &str) -> Option<SummaryFile> {
        let mut r = [0u8; 8];
        getrandom::getrandom(&mut r).ok()?;
        let safe: String = plan
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        Some(SummaryFile {
            path: std::env::temp_dir()
                .join(format!("cairn-summary-{safe}-{}.json", hex::encode(r))),
        })
    }

    fn write(&self, v: &Value) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(&self.path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.path)?;
        f.write_all(&serde_json::to_vec_pretty(v)?)?;
        f.write_all(b"\n")
    }
}

impl Drop for SummaryFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The plan's status as metrics, written whole to `path` (temporary file, rename).
fn write_metrics(ctx: &Ctx, cfg: &PlanConfig, p: &plan::Plan, path: &Path) -> anyhow::Result<()> {
    let mut host = Host::new(ctx, &p.name);
    let out = plan::status(&mut host, cfg, &[p], &machine()).map_err(|e| e.0)?;
    plan::metrics::write_file(path, &plan::metrics::prometheus(&out))?;
    Ok(())
}

/// How long a remote target may take to answer whether it is there before the run skips it.
const PROBE_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether a remote target answers and holds a repository, within [`PROBE_BUDGET`]; why not.
fn probe_remote(ctx: &Ctx, r: &RepoDef) -> Result<(), String> {
    let location = r
        .path
        .to_str()
        .ok_or_else(|| "its location is not UTF-8 text".to_string())?;
    let loc = cairn::backend::Location::parse(location).map_err(|e| e.to_string())?;
    let s3 = s3_credentials(r)
        .map_err(|e| output::error_chain(&e))?
        .unwrap_or_default();
    let backend = cairn::backend::open_location(
        &loc,
        cairn::backend::RemoteOptions {
            connections: 1,
            retry_for: PROBE_BUDGET.min(ctx.g.retry_timeout),
            s3,
            serve_program: super::serve_program(),
        },
        ctx.limits.clone(),
    )
    .map_err(|e| e.to_string())?;
    cairn::repo::ensure_exists(backend.as_ref()).map_err(|e| match e.kind() {
        ErrorKind::RepoMissing => format!("no repository at {location}"),
        _ => {
            // The retry layer's reassurance about a half-done upload does not apply here.
            let e = e.to_string();
            let e = e.split(". What was stored").next().unwrap_or_default();
            format!(
                "unreachable within {}: {e}",
                plan::span(PROBE_BUDGET.as_secs() as i64)
            )
        }
    })
}

/// The S3 credentials of an `s3:` target: the environment's, with what the plan file gives
/// in their place; None for other targets.
fn s3_credentials(r: &RepoDef) -> anyhow::Result<Option<cairn::backend::S3Credentials>> {
    if !r.path.to_str().is_some_and(|p| p.starts_with("s3:")) {
        return Ok(None);
    }
    let mut c = super::aws::s3_credentials()?;
    let k = &r.s3;
    if let Some(id) = &k.access_key_id {
        c.access_key_id = Some(id.clone());
        // A session token belongs to the environment's key, not this one.
        c.session_token = None;
    }
    if let Some(secret) = &k.secret_access_key {
        c.secret_access_key = Some(secret.clone());
    }
    if let Some(var) = &k.secret_access_key_env {
        let v = std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                anyhow!(
                    "repository {}: secret_access_key_env names {var}, which is not set",
                    r.name
                )
            })?;
        c.secret_access_key = Some(v);
    }
    if let Some(region) = &k.region {
        c.region = Some(region.clone());
    }
    Ok(Some(c))
}

fn status(ctx: &Ctx, cfg: &PlanConfig, name: Option<&str>, prometheus: bool) -> anyhow::Result<u8> {
    let plans: Vec<&plan::Plan> = match name {
        Some(n) => vec![cfg.plan(n).map_err(anyhow::Error::msg)?],
        None => cfg.plans.values().collect(),
    };
    let mut host = Host::new(ctx, "");
    let out = plan::status(&mut host, cfg, &plans, &machine()).map_err(|e| e.0)?;
    let alarms: Vec<&String> = out.iter().flat_map(|p| &p.alarms).collect();
    let code = if alarms.is_empty() {
        EXIT_OK
    } else {
        EXIT_FATAL
    };
    if prometheus {
        use std::io::Write as _;
        let mut o = output::stdout();
        o.write_all(plan::metrics::prometheus(&out).as_bytes())?;
        o.flush()?;
    } else if ctx.g.json {
        output::json_line(&json!({
            "plans": serde_json::to_value(&out)?,
            "ok": alarms.is_empty(),
        }))?;
    } else {
        if plans.is_empty() && !ctx.g.quiet {
            outln!("the plan file defines no plans")?;
        }
        for p in &out {
            text::status(p)?;
        }
    }
    if !ctx.g.quiet {
        for a in &alarms {
            eprintln!("alarm: {}", output::esc(a.as_str()));
        }
    }
    Ok(code)
}

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
        self.ctx
            .open_at(location, false, || match &r.password {
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
    let mut host = Host::new(ctx, name);
    let opts = RunOptions {
        machine: machine(),
        user: super::username(),
        uid: super::current_uid(),
        gid: super::current_gid(),
        cancel: Some(ctx.cancel.clone()),
    };
    let report = plan::run(&mut host, cfg, plan, &opts).map_err(|e| e.0)?;
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
    if ctx.g.json {
        let mut summary = serde_json::to_value(&report)?;
        summary["message_type"] = json!("summary");
        summary["exit_code"] = json!(code);
        output::json_line(&summary)?;
    } else if host.human && report.targets_present > 0 {
        outln!(
            "plan {name}: {} of {} targets present, {} failed",
            report.targets_present,
            plan.targets.len(),
            report.targets_failed
        )?;
    }
    Ok(code)
}

fn status(ctx: &Ctx, cfg: &PlanConfig, name: Option<&str>) -> anyhow::Result<u8> {
    let plans: Vec<&plan::Plan> = match name {
        Some(n) => vec![cfg.plan(n).map_err(anyhow::Error::msg)?],
        None => cfg.plans.values().collect(),
    };
    let mut host = Host::new(ctx, "");
    let out = plan::status(&mut host, cfg, &plans, &machine()).map_err(|e| e.0)?;
    if ctx.g.json {
        output::json_line(&json!({ "plans": serde_json::to_value(&out)? }))?;
        return Ok(EXIT_OK);
    }
    if plans.is_empty() && !ctx.g.quiet {
        outln!("the plan file defines no plans")?;
    }
    for p in &out {
        text::status(p)?;
    }
    Ok(EXIT_OK)
}

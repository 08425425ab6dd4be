//! The text `cairn plan run` and `cairn plan status` print for people: one line per step of a
//! run as the library reports it, and each plan's targets with their last snapshot, run,
//! prune, check and drill. (`--json` prints the library's types as they serialise.)

use cairn::plan::{self, PlanEvent, PlanStatus, PruneStep, TargetRun, TargetState, When};

use super::super::{output, Ctx};
use super::output::outln;

pub fn event(ctx: &Ctx, event: &PlanEvent<'_>) -> std::io::Result<()> {
    let human = !ctx.g.json && !ctx.g.quiet;
    match *event {
        PlanEvent::Started { plan, mode, paths } if human => outln!(
            "plan {}: {} backup of {} to {}",
            plan.name,
            mode.name(),
            paths.join(", "),
            plan.targets.join(", ")
        )?,
        PlanEvent::TargetStarted(r) if human => {
            outln!("target {} ({})", r.name, output::esc(&r.path))?
        }
        PlanEvent::Backup(b) => {
            super::super::backup::note_left_out(ctx, &b.repository_left_out);
            if human {
                outln!(
                    "  backup: snapshot {} ({}{}): {} new, {} changed, {} unmodified files; {} added ({} stored)",
                    b.snapshot_id.map(|i| i.short()).unwrap_or_default(),
                    b.mode.name(),
                    b.parent.map(|p| format!(", parent {}", p.short())).unwrap_or_default(),
                    b.files_new,
                    b.files_changed,
                    b.files_unmodified,
                    output::size(b.data_added),
                    output::size(b.data_added_stored)
                )?;
                if !b.errors.is_empty() {
                    outln!(
                        "  {} files or directories could not be read (listed above)",
                        b.errors.len()
                    )?;
                }
            }
        }
        PlanEvent::Forget(f) if human => outln!(
            "  forget ({}): {} kept, {} removed",
            f.policy,
            f.kept,
            f.removed.len()
        )?,
        PlanEvent::Prune(PruneStep::Ran {
            packs_deleted,
            packs_repacked,
            bytes_freed,
            ..
        }) if human => outln!(
            "  prune: {packs_deleted} packs deleted, {packs_repacked} repacked, {} freed",
            output::size(*bytes_freed)
        )?,
        PlanEvent::Prune(PruneStep::NotDue { when, last }) if human => outln!(
            "  prune: not due ({}{})",
            when.name(),
            last.map(|t| format!(", last on {}", output::local_time(t.ns)))
                .unwrap_or_default()
        )?,
        PlanEvent::NoKeepRules if human => outln!("  forget: no keep rules, nothing forgotten")?,
        PlanEvent::Check(c) => {
            if !ctx.g.json {
                for w in &c.warnings {
                    eprintln!("warning: {w}");
                }
                for e in &c.errors {
                    eprintln!("error: {e}");
                }
            }
            if human {
                outln!(
                    "  check: read and verified {} of {} packs ({}): {}",
                    c.packs_read,
                    c.packs,
                    output::size(c.bytes_read),
                    if c.ok {
                        "no errors".to_string()
                    } else {
                        format!("{} errors", c.errors.len())
                    }
                )?;
            }
        }
        PlanEvent::Scrub(sc) => {
            if !ctx.g.json {
                for e in &sc.found {
                    eprintln!("scrub found: {}", output::esc(e));
                }
                for e in &sc.unhealed {
                    eprintln!("error: not healed: {}", output::esc(e));
                }
            }
            if human {
                let from = sc.sibling.as_deref().map_or(String::new(), |n| {
                    format!(", {} blobs from {}", sc.healed_from_sibling, output::esc(n))
                });
                outln!(
                    "  scrub: read {} packs ({}): {} problems found, {} packs healed from parity{from}; {}",
                    sc.packs_read,
                    output::size(sc.bytes_read),
                    sc.found.len(),
                    sc.healed_by_parity,
                    if sc.ok() { "whole" } else { "damage remains" }
                )?;
            }
        }
        PlanEvent::TargetDone(t) => target_done(human, t)?,
        _ => {}
    }
    Ok(())
}

fn target_done(human: bool, t: &TargetRun) -> std::io::Result<()> {
    let path = output::esc(&t.path);
    match t.ok {
        // Always said, even with --quiet: a disk that is never plugged in is a lost copy.
        None => match t.absent.as_deref() {
            Some(why) if why != "not present" => eprintln!(
                "target {} ({path}) is not present: skipped ({})",
                t.target,
                output::esc(why)
            ),
            _ => eprintln!("target {} ({path}) is not present: skipped", t.target),
        },
        Some(true) if human => outln!("  done")?,
        Some(true) => {}
        Some(false) => eprintln!(
            "target {} ({path}) failed: {}",
            t.target,
            t.error.as_deref().unwrap_or_default()
        ),
    }
    Ok(())
}

/// `2024-03-03 10:00:00 (2h 3m ago)`.
fn when_human(w: &When) -> String {
    format!(
        "{} ({} ago)",
        output::local_time(w.time.ns),
        plan::span(w.age_s)
    )
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn ok_or_failed(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => ": ok",
        Some(false) => ": FAILED",
        None => "",
    }
}

pub fn status(p: &PlanStatus) -> std::io::Result<()> {
    outln!(
        "plan {}: {} (host {}); RPO {}: {}; today's mode {}",
        p.name,
        p.paths.join(", "),
        p.host,
        plan::span(p.rpo.as_secs() as i64),
        verdict(p.rpo_met),
        p.mode_today.name()
    )?;
    for t in &p.targets {
        outln!("  {}  {}", t.name, t.path.to_string_lossy())?;
        let h = match &t.state {
            TargetState::Absent(why) => {
                if why == "not present" {
                    outln!("    not present")?;
                } else {
                    outln!("    not present: {}", output::esc(why))?;
                }
                continue;
            }
            TargetState::Unreadable(e) => {
                outln!("    present, but cannot be read: {e}")?;
                continue;
            }
            TargetState::Read(h) => h,
        };
        outln!("    {:<14}{} of this plan", "snapshots", h.snapshots)?;
        match &h.last_snapshot {
            Some(s) => outln!(
                "    {:<14}{}, {} {}: RPO {}",
                "last snapshot",
                when_human(&s.when),
                s.mode.name(),
                s.id.short(),
                verdict(h.rpo_met)
            )?,
            None => outln!("    {:<14}none: RPO MISSED", "last snapshot")?,
        }
        let line = |label: &str, w: Option<&When>, extra: &str| {
            let w = w.map_or_else(|| "never".to_string(), when_human);
            outln!("    {label:<14}{w}{extra}")
        };
        let run = h.last_run.as_ref();
        line(
            "last run",
            run.map(|r| &r.when),
            ok_or_failed(run.and_then(|r| r.ok)),
        )?;
        let due = if h.prune_due { " (due)" } else { "" };
        line("last prune", h.last_prune.as_ref(), due)?;
        let overdue = |o: bool| if o { " (OVERDUE)" } else { "" };
        line(
            "last check",
            h.last_check.as_ref(),
            overdue(h.check_overdue),
        )?;
        if let Some(v) = &h.verification {
            outln!(
                "    {:<14}{} of {} packs ({:.0}%){}",
                "verified",
                v.verified,
                v.packs,
                v.coverage * 100.0,
                v.last_full
                    .as_ref()
                    .map(|w| format!(", all of them since {}", when_human(w)))
                    .unwrap_or_default()
            )?;
        }
        let drill = h.last_drill.as_ref();
        line(
            "last drill",
            drill.map(|d| &d.when),
            &format!(
                "{}{}",
                ok_or_failed(drill.map(|d| d.ok)),
                overdue(h.drill_overdue)
            ),
        )?;
        if h.missing.is_empty() {
            outln!("    {:<14}none", "missing")?;
            continue;
        }
        outln!(
            "    {:<14}{} snapshot{} another target has:",
            "missing",
            h.missing.len(),
            if h.missing.len() == 1 { "" } else { "s" }
        )?;
        for m in &h.missing {
            outln!(
                "      {} (on {})",
                output::local_time(m.time.ns),
                m.on.join(", ")
            )?;
        }
    }
    Ok(())
}

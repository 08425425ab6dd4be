//! `cairn prune`

use cairn::prune::{prune, PruneOptions, PruneReport};
use serde_json::json;

use super::output::outln;
use super::{output, Ctx, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only say what would be done
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Repack packs with more than this percentage of unused data
    #[arg(long, value_name = "PERCENT", default_value_t = 5.0)]
    pub max_unused: f64,
    /// Prune even though the structure check fails (unreadable snapshots, trees or index
    /// files, blobs in no index, missing or truncated packs). Without it prune refuses and
    /// deletes nothing. With it, data that only the unreadable snapshots or trees reference
    /// may be deleted; packs holding the last verified copy of a used blob are still kept
    #[arg(long)]
    pub force: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let mut repo = ctx.open()?;
    let _lock = ctx.lock(&repo, true, "prune")?;
    run_locked(ctx, &mut repo, &a)
}

/// Prune on an already exclusively locked repository (also used by `forget --prune`).
pub fn run_locked(ctx: &Ctx, repo: &mut cairn::Repository, a: &Args) -> anyhow::Result<u8> {
    let opts = PruneOptions {
        dry_run: a.dry_run,
        max_unused_percent: a.max_unused,
        force: a.force,
    };
    let r = match prune(repo, &opts) {
        Ok(r) => r,
        Err(cairn::Error::PruneRefused { problems }) => {
            ctx.print_warnings(repo);
            if ctx.g.json {
                // Scripts see the refusal in the summary too; the error follows on stderr.
                output::json_line(&json!({
                    "message_type": "summary",
                    "dry_run": a.dry_run,
                    "refused": true,
                    "forced": false,
                    "structure_problems": problems,
                }))?;
            }
            return Err(cairn::Error::PruneRefused { problems }.into());
        }
        Err(e) => return Err(e.into()),
    };
    ctx.print_warnings(repo);
    print(ctx, &r, a.dry_run)?;
    if r.refused() {
        // A dry run reports what it would do; a real run would refuse, and says why.
        return Err(cairn::Error::PruneRefused {
            problems: r.structure_problems.clone(),
        }
        .into());
    }
    Ok(EXIT_OK)
}

fn print(ctx: &Ctx, r: &PruneReport, dry_run: bool) -> anyhow::Result<()> {
    for (pack, why) in &r.packs_kept {
        eprintln!("warning: pack {pack} kept: {why}");
    }
    if r.forced {
        for p in &r.structure_problems {
            eprintln!("warning: pruning despite (--force): {p}");
        }
    }
    if ctx.g.json {
        return output::json_line(&json!({
            "message_type": "summary",
            "dry_run": dry_run,
            "packs_total": r.packs_total,
            "packs_deleted": r.packs_deleted,
            "packs_repacked": r.packs_repacked,
            "packs_unindexed_deleted": r.packs_unindexed,
            "packs_written": r.packs_written,
            "blobs_used": r.blobs_used,
            "blobs_unused": r.blobs_unused,
            "bytes_before": r.bytes_before,
            "bytes_after": r.bytes_after,
            "bytes_freed": r.bytes_freed,
            "forced": r.forced,
            "refused": r.refused(),
            "structure_problems": r.structure_problems,
            "packs_verified": r.packs_verified,
            "packs_kept": r.packs_kept.iter().map(|(p, why)| json!({"pack": p, "reason": why})).collect::<Vec<_>>(),
        }));
    }
    if ctx.g.quiet {
        return Ok(());
    }
    let verb = if dry_run { "would " } else { "" };
    outln!(
        "{} packs: {} used blobs, {} unused",
        r.packs_total,
        r.blobs_used,
        r.blobs_unused
    )?;
    outln!(
        "{verb}delete {} packs, {verb}repack {} packs, {verb}delete {} packs no index names",
        r.packs_deleted,
        r.packs_repacked,
        r.packs_unindexed
    )?;
    if r.packs_verified > 0 {
        outln!(
            "read and verified {} kept packs before deleting their duplicates",
            r.packs_verified
        )?;
    }
    outln!(
        "{}{} freed ({} before, {} after)",
        if dry_run { "would have " } else { "" },
        output::size(r.bytes_freed),
        output::size(r.bytes_before),
        output::size(r.bytes_after)
    )?;
    Ok(())
}

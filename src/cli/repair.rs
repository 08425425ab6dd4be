//! `cairn repair index` / `cairn repair config` / `cairn repair snapshots` / `cairn repair packs`
//! (from parity here; `--from` another repository in src/cli/repair_from.rs) /
//! `cairn repair parity`

use serde_json::json;

use super::output::outln;
use super::{output, Ctx, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand, Debug)]
enum What {
    /// Rebuild the index from the pack files: every pack is read and verified (its bytes hash
    /// to its name, its blobs open) before it is indexed; packs that fail are named, left in
    /// place and not indexed (their readable blobs are copied into new packs)
    Index,
    /// Write the config back from the copy every key file keeps
    Config,
    /// Rewrite snapshots whose trees reference missing data
    Snapshots {
        /// Remove each damaged original once its repaired copy is saved
        #[arg(long)]
        forget: bool,
        /// Only say what would be done
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
    /// Heal damaged or missing packs: from parity (every pack is read and verified, each one
    /// parity can rebuild byte-identically is written back), or with --from from another
    /// repository (the blobs this one cannot read, verified by their id here, into new packs);
    /// what cannot be healed is named with the files it affects (exit 1)
    #[command(
        after_help = "Example:\n  cairn -r /mnt/usb1/cairn repair packs\n  CAIRN_FROM_PASSWORD_FILE=~/usb2-password cairn -r /mnt/usb1/cairn repair packs --from /mnt/usb2/cairn"
    )]
    Packs(super::repair_from::Args),
    /// Protect every pack with parity: put packs in no group into one, recompute groups whose
    /// parity files are missing or damaged or whose packs were pruned, delete parity files
    /// nothing uses
    Parity {
        /// The parity percentage (1%..50%), recorded in the config; default: the config's
        #[arg(long, value_name = "N%", value_parser = parse_percent)]
        parity: Option<u32>,
    },
}

fn parse_percent(s: &str) -> Result<u32, String> {
    cairn::parity::parse_percent(s)?.ok_or_else(|| {
        "`repair parity` takes a percentage (1% to 50%); to stop maintaining parity, create the repository with --parity off".to_string()
    })
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let what = match a.what {
        What::Packs(p) => match p.from.clone() {
            Some(from) => return super::repair_from::run(ctx, &from, p),
            None => What::Packs(p),
        },
        what => what,
    };
    let mut repo = ctx.open()?;
    let _lock = ctx.lock(&repo, true, "repair")?;
    match what {
        What::Index => {
            let r = cairn::check::repair::repair_index(&mut repo)?;
            ctx.print_warnings(&repo);
            for (name, why) in &r.rejected {
                eprintln!("error: pack {name} is not indexed (it stays in place): {why}");
            }
            if ctx.g.json {
                let rejected: Vec<_> = r
                    .rejected
                    .iter()
                    .map(|(n, e)| json!({"pack": n, "error": e}))
                    .collect();
                output::json_line(&json!({
                    "packs": r.packs,
                    "blobs": r.blobs,
                    "rejected_packs": rejected,
                    // The name of the same list before packs were verified whole.
                    "unreadable_packs": rejected,
                    "blobs_salvaged": r.blobs_salvaged,
                    "packs_written": r.packs_written,
                    "old_index_files": r.old_index_files,
                }))?;
            } else if !ctx.g.quiet {
                outln!(
                    "rebuilt the index from {} verified packs ({} blobs), replacing {} index files",
                    r.packs,
                    r.blobs,
                    r.old_index_files
                )?;
                if !r.rejected.is_empty() {
                    outln!(
                        "{} packs failed verification and were left out (named above); {} of their blobs were copied into {} new packs",
                        r.rejected.len(),
                        r.blobs_salvaged,
                        r.packs_written
                    )?;
                }
            }
        }
        What::Config => {
            let written = repo.repair_config()?;
            if ctx.g.json {
                output::json_line(&json!({"config_rewritten": written}))?;
            } else if !ctx.g.quiet {
                outln!(
                    "{}",
                    if written {
                        "config written back from the key file's copy"
                    } else {
                        "config is intact; nothing to do"
                    }
                )?;
            }
        }
        What::Snapshots { forget, dry_run } => {
            let r = cairn::check::repair::repair_snapshots(&mut repo, forget, dry_run)?;
            ctx.print_warnings(&repo);
            if ctx.g.json {
                output::json_line(&json!({
                    "intact": r.intact,
                    "forgotten": r.forgotten,
                    "repaired": r.repaired.iter().map(|(old, new, notes)| json!({
                        "snapshot": old.to_hex(),
                        "new_snapshot": new.map(|n| n.to_hex()),
                        "notes": notes,
                    })).collect::<Vec<_>>(),
                }))?;
            } else {
                for (old, new, notes) in &r.repaired {
                    match new {
                        Some(n) => outln!("snapshot {} repaired as {}:", old.short(), n.short())?,
                        None => outln!("snapshot {} would be repaired:", old.short())?,
                    }
                    for n in notes {
                        outln!("  {n}")?;
                    }
                }
                if !ctx.g.quiet {
                    outln!(
                        "{} snapshots intact, {} repaired",
                        r.intact,
                        r.repaired.len()
                    )?;
                }
            }
        }
        What::Packs(_) => return packs(ctx, &mut repo),
        What::Parity { parity } => return parity_cmd(ctx, &mut repo, parity),
    }
    Ok(EXIT_OK)
}

/// `cairn repair packs` (without `--from`): heal from parity.
fn packs(ctx: &Ctx, repo: &mut cairn::Repository) -> anyhow::Result<u8> {
    let start = std::time::Instant::now();
    repo.load_index()?;
    let r = cairn::parity::heal(repo)?;
    let secs = start.elapsed().as_secs_f64();
    let protected = cairn::parity::after_write(repo);
    ctx.print_warnings(repo);
    let affected = cairn::check::affected_by_packs(
        repo,
        &r.unhealable
            .iter()
            .map(|(id, _)| {
                (
                    *id,
                    "damaged or missing, and parity cannot rebuild it".to_string(),
                )
            })
            .collect::<Vec<_>>(),
    )?;
    let mib_s = if secs > 0.0 {
        (r.bytes_checked + r.bytes_healed) as f64 / secs / f64::from(1 << 20)
    } else {
        0.0
    };
    if ctx.g.json {
        output::json_line(&json!({
            "message_type": "summary",
            "ok": r.unhealable.is_empty(),
            "packs_checked": r.packs_checked,
            "bytes_checked": r.bytes_checked,
            "healed": r.healed.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
            "bytes_healed": r.bytes_healed,
            "unhealable": r.unhealable.iter().map(|(p, why)| json!({"pack": p.to_hex(), "error": why})).collect::<Vec<_>>(),
            "affected": output::affected_json(&affected),
            "packs_protected": protected.as_ref().map_or(0, |p| p.packs_protected),
            "duration_s": secs,
            "throughput_mib_s": mib_s,
        }))?;
    } else {
        for (id, why) in &r.unhealable {
            eprintln!(
                "error: pack {} cannot be healed: {}",
                id.to_hex(),
                output::esc(why)
            );
        }
        output::print_affected("affected files:", &affected);
        if !ctx.g.quiet {
            for id in &r.healed {
                outln!("healed pack {} from parity", id.to_hex())?;
            }
            outln!(
                "verified {} packs ({}) at {:.1} MiB/s; {} healed, {} cannot be healed",
                r.packs_checked,
                output::size(r.bytes_checked),
                mib_s,
                r.healed.len(),
                r.unhealable.len()
            )?;
        }
    }
    Ok(if r.unhealable.is_empty() {
        EXIT_OK
    } else {
        super::EXIT_FATAL
    })
}

/// `cairn repair parity`: protect every pack, recompute what is damaged.
fn parity_cmd(ctx: &Ctx, repo: &mut cairn::Repository, percent: Option<u32>) -> anyhow::Result<u8> {
    let Some(percent) = percent.or(repo.config().parity) else {
        anyhow::bail!(
            "this repository was made without parity: give the percentage to keep, e.g. `cairn repair parity --parity 10%`"
        );
    };
    let recorded = repo.set_parity(Some(percent))?;
    let shape = cairn::parity::Shape::for_percent(percent)?;
    repo.load_index()?;
    let r = cairn::parity::protect(repo, shape, true)?;
    ctx.print_warnings(repo);
    for (id, why) in &r.failed {
        eprintln!(
            "error: pack {} is not protected: {} (`cairn repair packs` heals it if parity can, `cairn check --read-data` examines it)",
            id.to_hex(),
            output::esc(why)
        );
    }
    if ctx.g.json {
        output::json_line(&json!({
            "message_type": "summary",
            "ok": r.failed.is_empty(),
            "parity_percent": percent,
            "config_updated": recorded,
            "groups_written": r.groups_written,
            "parity_files_written": r.files_written,
            "parity_bytes_written": r.bytes_written,
            "packs_protected": r.packs_protected,
            "parity_files_deleted": r.files_deleted,
            "failed": r.failed.iter().map(|(p, why)| json!({"pack": p.to_hex(), "error": why})).collect::<Vec<_>>(),
        }))?;
    } else if !ctx.g.quiet {
        if recorded {
            outln!("parity {percent}% recorded in the config")?;
        }
        outln!(
            "parity {percent}% ({} packs + {} parity files per group): {} groups written ({} packs, {}), {} old parity files deleted",
            shape.data,
            shape.parity,
            r.groups_written,
            r.packs_protected,
            output::size(r.bytes_written),
            r.files_deleted
        )?;
    }
    Ok(if r.failed.is_empty() {
        EXIT_OK
    } else {
        super::EXIT_FATAL
    })
}

//! `cairn repair index` / `cairn repair config` / `cairn repair snapshots` /
//! `cairn repair packs --from` (src/cli/repair_from.rs)

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
    /// Heal missing or damaged packs: take the blobs this repository cannot read from another
    /// repository (--from), verified by their id here, into new packs
    #[command(
        after_help = "Example:\n  CAIRN_FROM_PASSWORD_FILE=~/usb2-password cairn -r /mnt/usb1/cairn repair packs --from /mnt/usb2/cairn"
    )]
    Packs(super::repair_from::Args),
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let what = match a.what {
        What::Packs(p) => return super::repair_from::run(ctx, p),
        what => what,
    };
    let mut repo = ctx.open()?;
    let _lock = ctx.lock(&repo, true, "repair")?;
    match what {
        What::Packs(_) => {}
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
    }
    Ok(EXIT_OK)
}

//! `cairn repair packs --from OTHER_REPO`: heal missing or damaged packs from a sibling
//! repository (its own password: `CAIRN_FROM_PASSWORD`, `CAIRN_FROM_PASSWORD_FILE`,
//! `--from-password-file`, `--from-password-command`).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context};
use cairn::check::sibling::{heal_from, HealOptions};
use cairn::Repository;
use serde_json::json;

use super::output::outln;
use super::{output, password, Ctx, EXIT_FATAL, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Take the missing or damaged blobs from this repository (any location `copy --to`
    /// accepts; it has its own password and keys)
    /// (Without it, `repair packs` heals from parity: src/cli/repair.rs.)
    #[arg(long = "from", value_name = "OTHER_REPO")]
    pub from: Option<String>,
    /// Read the other repository's password from the file's first line
    #[arg(long, env = "CAIRN_FROM_PASSWORD_FILE", value_name = "FILE")]
    pub from_password_file: Option<PathBuf>,
    /// Run CMD and use the first line of its output as the other repository's password
    #[arg(long, env = "CAIRN_FROM_PASSWORD_COMMAND", value_name = "CMD")]
    pub from_password_command: Option<String>,
}

/// Opens the sibling: existence first (exit 10 without asking for a password), then keys with
/// its own password, never this repository's.
fn open_sibling(ctx: &Ctx, from: &str, a: &Args) -> anyhow::Result<Repository> {
    ctx.open_at(from, false, || {
        let none_given = a.from_password_file.is_none()
            && a.from_password_command.is_none()
            && std::env::var_os("CAIRN_FROM_PASSWORD").is_none();
        if none_given && !std::io::stdin().is_terminal() {
            bail!(
                "no password given for the repository to heal from and no terminal to ask on: set CAIRN_FROM_PASSWORD or CAIRN_FROM_PASSWORD_FILE, or use --from-password-file or --from-password-command"
            );
        }
        password::read_from(
            a.from_password_file.as_deref(),
            a.from_password_command.as_deref(),
            "CAIRN_FROM_PASSWORD",
            false,
            "repository to heal from",
        )
    })
}

/// `repair packs --from FROM` (`a.from` is `Some(FROM)`).
pub fn run(ctx: &Ctx, from: &str, a: Args) -> anyhow::Result<u8> {
    let mut repo = ctx.open()?;
    let sibling =
        open_sibling(ctx, from, &a).with_context(|| format!("repository to heal from {}", from))?;
    if sibling.id() == repo.id() {
        bail!(
            "--from {} is this repository itself (the same repository id {}): heal from another copy, such as the other disk kept in step by `cairn copy`",
            from,
            repo.id().to_hex()
        );
    }
    let _lock = ctx.lock(&repo, true, "repair packs")?;
    let _sib_lock = ctx
        .read_lock(&sibling, "repair packs (source)")
        .with_context(|| format!("repository to heal from {}", from))?;
    let mut sibling = sibling;
    sibling
        .load_index()
        .with_context(|| format!("loading the index of {}", from))?;
    ctx.print_warnings(&sibling);
    let mut copy_maps = Vec::new();
    if let Some(d) = super::cache_dir(&repo) {
        copy_maps.push(d.join(format!("copy-from-{}.map", sibling.id().to_hex())));
    }
    if let Some(d) = super::cache_dir(&sibling) {
        copy_maps.push(d.join(format!("copy-from-{}.map", repo.id().to_hex())));
    }
    let opts = HealOptions {
        copy_maps,
        cancel: Some(ctx.cancel.clone()),
    };
    let result = heal_from(&mut repo, &sibling, &opts);
    // The packs written here get parity, and groups that lost a deleted damaged pack are
    // recomputed (a repository without parity: nothing happens).
    if result.is_ok() {
        cairn::parity::after_write(&repo);
    }
    ctx.print_warnings(&repo);
    ctx.print_warnings(&sibling);
    let r = result?;
    let code = if r.complete() { EXIT_OK } else { EXIT_FATAL };
    if ctx.g.json {
        let affected = output::affected_json(&r.affected);
        output::json_line(&json!({
            "message_type": "summary",
            "ok": r.complete(),
            "packs_checked": r.packs_checked,
            "damaged_packs": r.damaged.iter().map(|d| json!({
                "pack": d.pack.to_hex(),
                "error": d.why,
                "blobs": d.blobs,
                "unrecovered": d.unrecovered,
                "deleted": d.deleted,
            })).collect::<Vec<_>>(),
            "blobs_lost": r.blobs_lost,
            "blobs_healed": r.blobs_healed,
            "blobs_salvaged": r.blobs_salvaged,
            "blobs_missing": r.missing.iter().map(|m| json!({
                "id": m.id.to_hex(),
                "kind": m.kind.name(),
                "referenced": m.referenced,
            })).collect::<Vec<_>>(),
            "packs_written": r.packs_written,
            "data_read": r.data_read,
            "sibling_scanned": r.scanned,
            "sibling_problems": r.sibling_problems,
            "affected": affected,
            "unindexed_packs": r.unindexed_packs,
        }))?;
        return Ok(code);
    }
    for p in &r.sibling_problems {
        eprintln!("warning: in {}: {}", output::esc(from), output::esc(p));
    }
    for d in &r.damaged {
        if d.unrecovered > 0 {
            // Complete: every tree is readable, so what is still missing no snapshot uses.
            let (level, unused) = if r.complete() {
                ("warning", ", which no snapshot uses,")
            } else {
                ("error", "")
            };
            eprintln!(
                "{level}: pack {} ({}) stays: {} of its {} blobs{unused} were not found in {}",
                d.pack.to_hex(),
                output::esc(&d.why),
                d.unrecovered,
                d.blobs,
                output::esc(from)
            );
        } else if !ctx.g.quiet {
            outln!(
                "pack {} healed ({}){}",
                d.pack.short(),
                output::esc(&d.why),
                if d.deleted {
                    "; the damaged file was deleted"
                } else {
                    ""
                }
            )?;
        }
    }
    for m in r.missing.iter().filter(|m| !m.referenced) {
        eprintln!(
            "warning: {} blob {}, indexed in a damaged pack, was not found in {}",
            m.kind.name(),
            m.id.short(),
            output::esc(from)
        );
    }
    if r.unindexed_packs > 0 && r.blobs_lost > 0 {
        eprintln!(
            "warning: {} pack files are in no index and may hold what was missing here: `cairn repair index` verifies and indexes them",
            r.unindexed_packs
        );
    }
    output::print_affected("still unrestorable:", &r.affected);
    if !ctx.g.quiet {
        outln!(
            "checked {} packs, {} damaged or missing; {} blobs had no readable copy: {} taken from {}, {} not found; {} readable blobs moved out of damaged packs; {} packs written",
            r.packs_checked,
            r.damaged.len(),
            r.blobs_lost,
            r.blobs_healed,
            output::esc(from),
            r.missing.len(),
            r.blobs_salvaged,
            r.packs_written
        )?;
        if r.complete() {
            outln!("every blob the snapshots need is readable")?;
        }
    }
    Ok(code)
}

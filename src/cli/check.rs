//! `cairn check`

use cairn::check::{check, CheckOptions, ReadData};
use serde_json::json;

use super::output::outln;
use super::{output, Ctx, EXIT_FATAL, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Decrypt and verify every blob and the hash of every pack
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Verify part of the data: N% (least recently verified packs first) or n/m (slice n of m)
    #[arg(long, value_name = "N% | n/m")]
    read_data_subset: Option<ReadData>,
    /// Report packs not verified within this long (e.g. 30d; units s, m = minutes, h, d, w)
    #[arg(long, value_name = "DURATION", value_parser = output::parse_span)]
    max_age: Option<std::time::Duration>,
    /// Stop reading data after this long (e.g. 20m); what was verified is remembered
    #[arg(long, value_name = "DURATION", value_parser = output::parse_span)]
    budget: Option<std::time::Duration>,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    // What the store holds is checked, never the local cache of a remote repository.
    let mut repo = ctx.open_uncached()?;
    let _lock = ctx.read_lock(&repo, "check")?;
    let read = match (a.read_data, a.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(s)) => s,
        (false, None) => ReadData::None,
    };
    let opts = CheckOptions {
        read_data: read,
        max_age_ns: a.max_age.map(|d| d.as_nanos() as i64),
        budget: a.budget,
        state_file: super::cache_dir(&repo).map(|d| d.join(cairn::check::STATE_FILE)),
        now_ns: super::now_ns(),
    };
    let r = check(&mut repo, &opts)?;
    if ctx.g.json {
        let affected = output::affected_json(&r.affected);
        output::json_line(&json!({
            "message_type": "summary",
            "ok": r.ok(),
            "snapshots": r.snapshots,
            "trees": r.trees,
            "packs": r.packs,
            "packs_read": r.packs_read,
            "bytes_read": r.bytes_read,
            "blobs_read": r.blobs_read,
            "packs_skipped_budget": r.packs_skipped_budget,
            "packs_overdue": r.packs_overdue,
            "errors": r.errors,
            "warnings": r.warnings,
            "affected": affected,
            "parity_files": r.parity_files,
            "parity_files_read": r.parity_files_read,
            "problems": r.pack_problems.iter().map(|p| json!({
                "path": p.path,
                "healable": p.healable,
                "note": p.note,
            })).collect::<Vec<_>>(),
        }))?;
    } else {
        for w in &r.warnings {
            eprintln!("warning: {}", output::esc(w));
        }
        for e in &r.errors {
            eprintln!("error: {}", output::esc(e));
        }
        if !r.pack_problems.is_empty() {
            eprintln!("damaged or missing files, and what heals them:");
        }
        for p in &r.pack_problems {
            match (p.healable, &p.note) {
                (Some(by), _) => eprintln!("  {}: healable by {by}", p.path),
                (None, Some(n)) => eprintln!("  {}: not healable: {}", p.path, output::esc(n)),
                (None, None) => eprintln!("  {}: not healable", p.path),
            }
        }
        output::print_affected("affected files:", &r.affected);
        if !ctx.g.quiet {
            outln!(
                "checked {} snapshots, {} trees, {} packs; read and verified {} packs ({}, {} blobs)",
                r.snapshots,
                r.trees,
                r.packs,
                r.packs_read,
                output::size(r.bytes_read),
                r.blobs_read
            )?;
            if r.packs_skipped_budget > 0 {
                outln!(
                    "time budget reached: {} selected packs left for the next run",
                    r.packs_skipped_budget
                )?;
            }
            if r.ok() {
                outln!("no errors were found")?;
            } else {
                outln!("{} errors found", r.errors.len())?;
            }
        }
    }
    Ok(if r.ok() { EXIT_OK } else { EXIT_FATAL })
}

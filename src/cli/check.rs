//! `cairn check`

use cairn::check::{check, CheckOptions};
use serde_json::json;

use super::{output, Ctx, EXIT_FATAL, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Decrypt and verify every blob and the hash of every pack
    #[arg(long)]
    read_data: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let mut repo = ctx.open()?;
    let _lock = ctx.lock(&repo, false, "check")?;
    let r = check(
        &mut repo,
        &CheckOptions {
            read_data: a.read_data,
        },
    )?;
    if ctx.g.json {
        output::json_line(&json!({
            "message_type": "summary",
            "ok": r.ok(),
            "snapshots": r.snapshots,
            "trees": r.trees,
            "packs": r.packs,
            "blobs_read": r.blobs_read,
            "errors": r.errors,
            "warnings": r.warnings,
        }))?;
    } else {
        for w in &r.warnings {
            eprintln!("warning: {w}");
        }
        for e in &r.errors {
            eprintln!("error: {e}");
        }
        if !ctx.g.quiet {
            println!(
                "checked {} snapshots, {} trees, {} packs{}",
                r.snapshots,
                r.trees,
                r.packs,
                if a.read_data {
                    format!(", {} blobs read and verified", r.blobs_read)
                } else {
                    String::new()
                }
            );
            if r.ok() {
                println!("no errors were found");
            } else {
                println!("{} errors found", r.errors.len());
            }
        }
    }
    Ok(if r.ok() { EXIT_OK } else { EXIT_FATAL })
}

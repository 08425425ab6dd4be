//! `cairn unlock`

use serde_json::json;

use super::output::outln;
use super::{output, Ctx, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove every lock of this repository, not only stale ones (files in locks/ that are not
    /// locks of this repository are never removed)
    #[arg(long)]
    remove_all: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    let out = cairn::repo::lock::unlock(&repo, a.remove_all, &super::hostname())?;
    if ctx.g.json {
        output::json_line(&json!({
            "removed": out.removed,
            "unreadable": out.unreadable.iter().map(|(name, why)| json!({"name": name, "error": why})).collect::<Vec<_>>(),
        }))?;
    } else {
        if !ctx.g.quiet {
            outln!("removed {} lock(s)", out.removed.len())?;
        }
        for (name, why) in &out.unreadable {
            eprintln!(
                "left alone: locks/{name} is not a lock of this repository ({why}); remove it by hand if it is no one's"
            );
        }
    }
    Ok(EXIT_OK)
}

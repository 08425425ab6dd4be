//! `cairn unlock`

use serde_json::json;

use super::{output, Ctx, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove every lock, not only stale ones
    #[arg(long)]
    remove_all: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    let removed = cairn::lock::unlock(&repo, a.remove_all, &super::hostname())?;
    if ctx.g.json {
        output::json_line(&json!({"removed": removed}))?;
    } else if !ctx.g.quiet {
        println!("removed {} lock(s)", removed.len());
    }
    Ok(EXIT_OK)
}

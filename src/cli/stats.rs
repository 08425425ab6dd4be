//! `cairn stats`

use cairn::repo::SnapshotFilter;
use serde_json::json;

use super::output::outln;
use super::{output, Ctx, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// One snapshot (default: every snapshot in the repository)
    snapshot: Option<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let repo = ctx.open_indexed()?;
    let roots: Vec<_> = match &a.snapshot {
        Some(sel) => vec![repo.find_snapshot(sel, &SnapshotFilter::default())?.1.tree],
        None => repo.snapshots()?.into_iter().map(|(_, s)| s.tree).collect(),
    };
    let s = cairn::repo::stats::stats(&repo, &roots)?;
    ctx.print_warnings(&repo);
    if ctx.g.json {
        output::json_line(&json!({
            "snapshots": s.snapshots,
            "total_size": s.restore_size,
            "total_file_count": s.files,
            "total_dir_count": s.dirs,
            "unique_blobs": s.unique_blobs,
            "unique_size": s.unique_raw,
            "unique_stored_size": s.unique_stored,
            "compression_ratio": s.compression_ratio(),
            "dedup_ratio": s.dedup_ratio(),
        }))?;
    } else {
        outln!("Snapshots:           {}", s.snapshots)?;
        outln!("Files:               {}", s.files)?;
        outln!("Directories:         {}", s.dirs)?;
        outln!("Restore size:        {}", output::size(s.restore_size))?;
        outln!(
            "Unique data:         {} in {} blobs",
            output::size(s.unique_raw),
            s.unique_blobs
        )?;
        outln!("Stored:              {}", output::size(s.unique_stored))?;
        outln!("Compression ratio:   {:.2}x", s.compression_ratio())?;
        outln!("Dedup ratio:         {:.2}x", s.dedup_ratio())?;
    }
    Ok(EXIT_OK)
}

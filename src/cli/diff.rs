//! `cairn diff`

use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use cairn::repo::SnapshotFilter;
use cairn::snapshot::diff::diff;
use serde_json::json;

use super::{output, Ctx, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The earlier snapshot
    snap1: String,
    /// The later snapshot
    snap2: String,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let repo = ctx.open_indexed()?;
    let all = repo.snapshots()?;
    let none = SnapshotFilter::default();
    let (id1, s1) = cairn::repo::select_snapshot(all.clone(), &a.snap1, &none)?;
    let (id2, s2) = cairn::repo::select_snapshot(all, &a.snap2, &none)?;
    let mut changes = Vec::new();
    let mut out = output::stdout();
    let json = ctx.g.json;
    let mut io_err = None;
    let totals = diff(&repo, s1.tree, s2.tree, &mut |path, change, _, _| {
        if json {
            let mut c = json!({"path": null, "modifier": change.symbol().to_string()});
            output::json_name(&mut c, "path", path.as_os_str().as_bytes());
            changes.push(c);
        } else if let Err(e) = writeln!(out, "{}    {}", change.symbol(), output::esc(path)) {
            io_err.get_or_insert(e);
        }
    })?;
    if let Some(e) = io_err {
        return Err(e.into());
    }
    if json {
        output::json_line(&json!({
            "snapshot1": id1.to_hex(),
            "snapshot2": id2.to_hex(),
            "changes": changes,
            "added": totals.added,
            "removed": totals.removed,
            "modified": totals.modified,
            "metadata_changed": totals.metadata,
            "type_changed": totals.type_changed,
            "bytes_added": totals.bytes_added,
            "bytes_removed": totals.bytes_removed,
        }))?;
    } else {
        writeln!(out)?;
        writeln!(
            out,
            "Added: {} entries ({})   Removed: {} entries ({})   Modified: {}   Metadata only: {}   Type changed: {}",
            totals.added,
            output::size(totals.bytes_added),
            totals.removed,
            output::size(totals.bytes_removed),
            totals.modified,
            totals.metadata,
            totals.type_changed
        )?;
    }
    Ok(EXIT_OK)
}

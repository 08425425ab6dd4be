//! `cairn ls`

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use cairn::repo::SnapshotFilter;
use cairn::restore::{select_path, walk, Selected};
use cairn::snapshot::tree::Node;
use serde_json::json;

use super::output::outln;
use super::{output, split_selector, Ctx, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// SNAPSHOT[:PATH]: `latest`, an id or a unique prefix, optionally a path inside it
    #[arg(value_name = "SNAPSHOT[:PATH]")]
    selector: String,
    /// Show mode, owner, size and modification time
    #[arg(short, long)]
    long: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let repo = ctx.open_indexed()?;
    let (sel, sub) = split_selector(&a.selector);
    let (_, snap) = repo.find_snapshot(sel, &SnapshotFilter::default())?;
    let sub = sub.unwrap_or("");
    let base = Path::new("/").join(sub.trim_start_matches('/'));
    let selected = select_path(&repo, snap.tree, sub)?;
    let mut entries: Vec<serde_json::Value> = Vec::new();
    let mut out = output::stdout();
    let json = ctx.g.json;
    let long = a.long;
    let mut visit = |path: &Path, node: &Node| -> std::io::Result<()> {
        if json {
            entries.push(node_json(path, node));
            return Ok(());
        }
        if long {
            writeln!(
                out,
                "{} {:>8} {:>8} {:>12} {} {}{}",
                output::mode_string(node.kind.letter(), node.mode),
                node.user
                    .as_deref()
                    .map_or_else(|| node.uid.to_string(), |u| output::esc(u).into_owned()),
                node.group
                    .as_deref()
                    .map_or_else(|| node.gid.to_string(), |g| output::esc(g).into_owned()),
                node.size,
                output::local_time(
                    node.mtime
                        .0
                        .saturating_mul(1_000_000_000)
                        .saturating_add(node.mtime.1 as i64)
                ),
                output::esc(path),
                node.target
                    .as_ref()
                    .map(|t| format!(" -> {}", output::escape(t)))
                    .unwrap_or_default()
            )
        } else {
            writeln!(out, "{}", output::esc(path))
        }
    };
    match selected {
        Selected::Dir(tree) => walk(&repo, tree, &base, &mut visit)?,
        Selected::Entry(node) => visit(&base, &node).map_err(anyhow::Error::from)?,
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&entries)?)?;
    }
    Ok(EXIT_OK)
}

/// One entry for `--json`; `path`, `name` and `target` follow [`output::json_name`].
fn node_json(path: &Path, n: &Node) -> serde_json::Value {
    let mut v = json!({
        "path": null,
        "name": null,
        "type": n.kind.name(),
        "mode": n.mode,
        "uid": n.uid,
        "gid": n.gid,
        "user": n.user,
        "group": n.group,
        "size": n.size,
        "mtime": output::rfc3339_parts(n.mtime.0, n.mtime.1),
        "inode": n.inode,
        "links": n.links,
        "target": null,
    });
    output::json_name(&mut v, "path", path.as_os_str().as_bytes());
    output::json_name(&mut v, "name", &n.name);
    if let Some(t) = &n.target {
        output::json_name(&mut v, "target", t);
    }
    v
}

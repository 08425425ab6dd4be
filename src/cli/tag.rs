//! `cairn tag`

use cairn::format::id::SnapshotId;
use cairn::repo::{select_snapshot, SnapshotFilter};
use cairn::snapshot::rewrite::{change_tags, TagEdit};
use cairn::snapshot::Snapshot;
use serde_json::json;

use super::output::outln;
use super::{Ctx, EXIT_OK};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["add", "remove", "set"])))]
pub struct Args {
    /// Snapshots to change (default: every snapshot the filters select)
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    /// Add this tag (repeatable)
    #[arg(long, value_name = "T")]
    add: Vec<String>,
    /// Remove this tag (repeatable)
    #[arg(long, value_name = "T")]
    remove: Vec<String>,
    /// Replace all tags with these (repeatable; `--set ''` removes every tag)
    #[arg(long, value_name = "T", conflicts_with_all = ["add", "remove"])]
    set: Vec<String>,
    #[command(flatten)]
    filter: super::FilterArgs,
}

/// The snapshots a command changes: those named (`latest` is the newest the filters select),
/// or, with none named, every snapshot the filters select; each once, oldest first.
pub fn select(
    all: &[(SnapshotId, Snapshot)],
    selectors: &[String],
    filter: &SnapshotFilter,
) -> anyhow::Result<Vec<(SnapshotId, Snapshot)>> {
    let mut out: Vec<(SnapshotId, Snapshot)> = if selectors.is_empty() {
        all.iter()
            .filter(|(_, s)| filter.matches(s))
            .cloned()
            .collect()
    } else {
        let mut v = Vec::new();
        for sel in selectors {
            v.push(select_snapshot(all.to_vec(), sel, filter)?);
        }
        v
    };
    out.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let edit = TagEdit::new(a.add, a.remove, a.set)?;
    let repo = ctx.open()?;
    let _lock = ctx.lock(&repo, true, "tag")?;
    let all = repo.snapshots()?;
    ctx.print_warnings(&repo);
    let chosen = select(&all, &a.snapshots, &a.filter.filter())?;
    let rep = change_tags(&repo, chosen, &edit)?;
    if ctx.g.json {
        let v: Vec<_> = rep
            .changed
            .iter()
            .map(|(o, n)| json!({"original": o.to_hex(), "new": n.to_hex()}))
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
    } else if !ctx.g.quiet {
        for (o, n) in &rep.changed {
            outln!("{} -> {}", o.short(), n.short())?;
        }
        outln!(
            "changed the tags of {} snapshots ({} already had them)",
            rep.changed.len(),
            rep.unchanged.len()
        )?;
    }
    Ok(EXIT_OK)
}

//! `cairn rewrite`

use std::path::PathBuf;

use cairn::backup::filter::Selection;
use cairn::snapshot::rewrite::{rewrite_snapshots, Counts, RewriteOptions};
use serde_json::json;

use super::output::outln;
use super::{output, Ctx, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshots to rewrite (default: every snapshot the filters select)
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    /// Leave out paths matching this glob (repeatable; the syntax of backup --exclude)
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Read --exclude patterns from a file, one per line (# starts a comment)
    #[arg(long, value_name = "FILE")]
    exclude_file: Vec<PathBuf>,
    /// Remove each rewritten original once every new snapshot is saved
    #[arg(long)]
    forget: bool,
    /// Only say what would be left out; write nothing
    #[arg(long, short = 'n')]
    dry_run: bool,
    #[command(flatten)]
    filter: super::FilterArgs,
}

impl Args {
    /// Whether the command may change the repository (it does not with `--dry-run`).
    pub fn writes(&self) -> bool {
        !self.dry_run
    }
}

fn counts_json(c: &Counts) -> serde_json::Value {
    json!({"files": c.files, "dirs": c.dirs, "other": c.other, "bytes": c.bytes})
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let patterns = super::input::exclude_patterns(&a.exclude, &a.exclude_file)?;
    if patterns.is_empty() {
        anyhow::bail!(
            "no exclude pattern given (--exclude, or patterns in --exclude-file): rewrite would change nothing"
        );
    }
    let exclude = Selection::new(&[], &patterns, &[])?;
    let mut repo = ctx.open()?;
    let _lock = if a.dry_run {
        ctx.read_lock(&repo, "rewrite")?
    } else {
        // Without --forget nothing is removed: a shared lock, as for backup.
        Some(ctx.lock(&repo, a.forget, "rewrite")?)
    };
    repo.load_index()?;
    let all = repo.snapshots()?;
    ctx.print_warnings(&repo);
    let chosen = super::tag::select(&all, &a.snapshots, &a.filter.filter())?;
    let opts = RewriteOptions {
        exclude,
        forget: a.forget,
        dry_run: a.dry_run,
    };
    let rep = rewrite_snapshots(&mut repo, chosen, &all, &opts)?;
    ctx.print_warnings(&repo);
    if ctx.g.json {
        let rewritten: Vec<_> = rep
            .rewritten
            .iter()
            .map(|r| {
                let removed: Vec<_> = r
                    .removed
                    .iter()
                    .map(|x| {
                        let mut v = json!({"type": x.kind.name()});
                        output::json_name(&mut v, "path", &x.path);
                        v["removed"] = counts_json(&x.counts);
                        v
                    })
                    .collect();
                json!({
                    "original": r.original.to_hex(),
                    "new": r.new.map(|n| n.to_hex()),
                    "existing": r.existing,
                    "removed_entries": removed,
                    "removed": counts_json(&r.totals),
                })
            })
            .collect();
        output::json_line(&json!({
            "dry_run": a.dry_run,
            "rewritten": rewritten,
            "unchanged": rep.unchanged.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
            "forgotten": rep.forgotten.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
            "trees_added": rep.trees_added,
        }))?;
        return Ok(EXIT_OK);
    }
    if ctx.g.quiet {
        return Ok(EXIT_OK);
    }
    for r in &rep.rewritten {
        let t = &r.totals;
        let what = format!(
            "{} files ({}), {} directories, {} other entries",
            t.files,
            output::size(t.bytes),
            t.dirs,
            t.other
        );
        match (r.new, r.existing) {
            (None, _) => outln!("snapshot {} would lose {what}:", r.original.short())?,
            (Some(n), false) => outln!(
                "snapshot {} rewritten as {} without {what}:",
                r.original.short(),
                n.short()
            )?,
            (Some(n), true) => outln!(
                "snapshot {} was already rewritten as {} without {what}:",
                r.original.short(),
                n.short()
            )?,
        }
        for x in &r.removed {
            outln!("  - {} ({})", output::escape(&x.path), x.kind.name())?;
        }
    }
    let verb = if a.dry_run {
        "would rewrite"
    } else {
        "rewrote"
    };
    outln!(
        "{verb} {} snapshots; {} hold no excluded path and keep their ids",
        rep.rewritten.len(),
        rep.unchanged.len()
    )?;
    if !rep.forgotten.is_empty() {
        outln!(
            "removed {} originals; `cairn prune` frees the data only they used",
            rep.forgotten.len()
        )?;
    } else if !a.dry_run && !rep.rewritten.is_empty() {
        outln!("the originals are kept: remove them with `cairn forget` (or rerun with --forget), then `cairn prune`")?;
    }
    Ok(EXIT_OK)
}

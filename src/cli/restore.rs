//! `cairn restore`

use std::path::PathBuf;

use cairn::restore::{
    preview, restore, select_path, Overwrite, PreviewEntry, PreviewSummary, RestoreOptions,
    Selected,
};

use super::output::outln;
use super::{output, split_selector, Ctx, EXIT_FATAL, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// SNAPSHOT[:SUBPATH]: `latest`, an id or a unique prefix, optionally a path inside it
    #[arg(value_name = "SNAPSHOT[:SUBPATH]")]
    selector: String,
    /// Directory to restore into (created if missing)
    #[arg(long, short = 't', value_name = "DIR")]
    target: PathBuf,
    /// Re-read every restored file and compare it with the snapshot
    #[arg(long)]
    verify: bool,
    /// Restore only paths matching this pattern (repeatable; see `backup --exclude` for syntax)
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Do not restore paths matching this pattern (repeatable)
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// What to do with entries that already exist where the snapshot has one: always (replace
    /// files, symlinks and empty directories), if-changed (like always, but keep a regular
    /// file whose size and modification time match the snapshot's) or never (change nothing
    /// that exists). A directory that is not empty is never removed (without --delete): it is
    /// reported and left in place. With --verify, kept files are read and compared with the snapshot too
    #[arg(long, default_value = "always", value_parser = parse_overwrite)]
    overwrite: Overwrite,
    /// After restoring, remove from the target whatever the snapshot (or SUBPATH) does not
    /// hold: files, directories with their contents, symlinks (never what they point to) and
    /// special files, inside the target only. Paths left out by --include/--exclude are kept.
    /// Refused with --overwrite never
    #[arg(long)]
    delete: bool,
    /// Write nothing: list what would be created, replaced, kept unchanged and (with --delete)
    /// deleted, then totals
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    filter: super::FilterArgs,
}

fn parse_overwrite(s: &str) -> Result<Overwrite, String> {
    s.parse()
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let mut repo = ctx.open()?;
    let _lock = ctx.read_lock(&repo, "restore")?;
    repo.load_index()?;
    ctx.print_warnings(&repo);
    let (sel, sub) = split_selector(&a.selector);
    let filter = a.filter.filter();
    let (id, snap) = repo.find_snapshot(sel, &filter)?;
    let selected = select_path(&repo, snap.tree, sub.unwrap_or(""))?;
    let opts = RestoreOptions {
        target: a.target.clone(),
        overwrite: a.overwrite,
        verify: a.verify,
        set_owner: cairn::snapshot::meta::is_root(),
        cancel: Some(ctx.cancel.clone()),
        select: selector(&a.include, &a.exclude)?,
        base: PathBuf::from(sub.unwrap_or("").trim_start_matches('/')),
        threads: 0,
        delete: a.delete,
    };
    if a.dry_run {
        let p = preview(&repo, &selected, &opts)?;
        ctx.print_warnings(&repo);
        if ctx.g.json {
            let summary = PreviewSummary {
                snapshot: id,
                target: &a.target,
                preview: &p,
            };
            output::json_line(&serde_json::to_value(&summary)?)?;
            return Ok(EXIT_OK);
        }
        // What destroys or fails is always listed; what is merely made or kept with -v.
        let list = |word: &str, entries: &[PreviewEntry], always: bool| {
            if always || ctx.g.verbose {
                for e in entries {
                    outln!("{word} {}", output::esc(&e.path))?;
                }
            }
            std::io::Result::Ok(())
        };
        list("create   ", &p.created, false)?;
        list("replace  ", &p.replaced, true)?;
        list("unchanged", &p.unchanged, false)?;
        list("delete   ", &p.deleted, true)?;
        for e in &p.blocked {
            outln!(
                "blocked   {}: {}",
                output::esc(&e.path),
                output::esc(&e.error)
            )?;
        }
        if !ctx.g.quiet {
            if p.target_created {
                outln!("the target {} would be created", output::esc(&a.target))?;
            }
            outln!(
                "dry run, nothing written: would create {}, replace {}, keep {} unchanged, \
                 delete {}; {} blocked (snapshot {} to {})",
                p.created.len(),
                p.replaced.len(),
                p.unchanged.len(),
                p.deleted.len(),
                p.blocked.len(),
                id.short(),
                output::esc(&a.target)
            )?;
        }
        return Ok(EXIT_OK);
    }
    let progress =
        super::progress::Progress::new(ctx, "restored", restore_totals(ctx, &repo, &selected));
    let out = restore(&repo, &selected, &opts, &progress);
    progress.finish();
    let out = out?;
    ctx.print_warnings(&repo);
    if ctx.g.json {
        let summary = out.summary(id, &a.target);
        output::json_line(&serde_json::to_value(&summary)?)?;
    } else {
        for e in &out.damaged {
            eprintln!(
                "DAMAGED: {}: {}",
                output::esc(&e.path),
                output::esc(&e.error)
            );
        }
        for e in &out.errors {
            eprintln!("error: {}: {}", output::esc(&e.path), output::esc(&e.error));
        }
        if ctx.g.verbose {
            for e in &out.deleted {
                outln!("deleted {}", output::esc(&e.path))?;
            }
        }
        if !ctx.g.quiet {
            if a.delete {
                outln!(
                    "deleted {} entries the snapshot does not hold",
                    out.deleted.len()
                )?;
            }
            outln!(
                "restored {} files, {} directories, {} other entries ({}) from snapshot {} to {}",
                out.files,
                out.dirs,
                out.other,
                output::size(out.bytes),
                id.short(),
                output::esc(&a.target)
            )?;
            if a.verify {
                outln!("verified {} files against the snapshot", out.verified_files)?;
            }
            if !out.damaged.is_empty() {
                outln!(
                    "{} files could NOT be restored (listed above)",
                    out.damaged.len()
                )?;
            }
        }
        if out.disk_full {
            eprintln!(
                "cairn: the disk holding {} is full: the restore stopped after writing {} \
                 ({} files); free space (or restore elsewhere) and run it again",
                output::esc(&a.target),
                output::size(out.bytes),
                out.files
            );
        }
    }
    Ok(if out.ok() { EXIT_OK } else { EXIT_FATAL })
}

/// A restore selector from `--include`/`--exclude`, or None to restore everything.
pub fn selector(
    include: &[String],
    exclude: &[String],
) -> anyhow::Result<Option<cairn::restore::Selector>> {
    let sel = cairn::backup::filter::Selection::new(include, exclude, &[])?;
    if sel.is_everything() {
        return Ok(None);
    }
    Ok(Some(std::sync::Arc::new(
        move |path: &std::path::Path, _: &cairn::snapshot::tree::Node| sel.accepts(path),
    )))
}

/// Files and bytes a restore of `selected` will write (for the progress bar); skipped when
/// nothing is shown.
pub fn restore_totals(
    ctx: &Ctx,
    repo: &cairn::Repository,
    selected: &Selected,
) -> std::sync::Arc<super::progress::Totals> {
    use std::sync::atomic::Ordering;
    let t = std::sync::Arc::new(super::progress::Totals::default());
    if ctx.draw_progress() || ctx.g.json {
        let stats = match selected {
            Selected::Dir(tree) => cairn::repo::stats::stats(repo, &[*tree])
                .ok()
                .map(|s| (s.files, s.restore_size)),
            Selected::Entry(n) => Some((1, n.size)),
        };
        if let Some((files, bytes)) = stats {
            t.files.store(files, Ordering::Relaxed);
            t.bytes.store(bytes, Ordering::Relaxed);
        }
    }
    t.complete.store(true, Ordering::Relaxed);
    t
}

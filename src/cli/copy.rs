//! `cairn copy`

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context};
use cairn::copy::{copy, CopiedSnapshot, CopyOptions, CopyProgress};
use cairn::format::id::SnapshotId;
use cairn::repo::select_snapshot;
use cairn::Repository;
use serde_json::json;

use super::output::outln;
use super::{output, password, Ctx, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The repository to copy into (it has its own password and keys)
    #[arg(long = "to", value_name = "REPO2")]
    to: String,
    /// Read the destination password from the file's first line
    #[arg(long, env = "CAIRN_TO_PASSWORD_FILE", value_name = "FILE")]
    to_password_file: Option<PathBuf>,
    /// Run CMD and use the first line of its output as the destination password
    #[arg(long, env = "CAIRN_TO_PASSWORD_COMMAND", value_name = "CMD")]
    to_password_command: Option<String>,
    /// Snapshots to copy (default: all, or all matching --host/--tag/--path)
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    #[command(flatten)]
    filter: super::FilterArgs,
}

/// Prints each snapshot as it is done: a line for people, a status object for `--json`.
struct Report<'a> {
    ctx: &'a Ctx,
    failed: std::cell::RefCell<Option<anyhow::Error>>,
}

impl CopyProgress for Report<'_> {
    fn snapshot_done(&self, r: &CopiedSnapshot) {
        let printed = if self.ctx.g.json {
            output::json_line(&json!({
                "message_type": "status",
                "action": if r.skipped { "skipped" } else { "copied" },
                "source": r.source.to_hex(),
                "destination": r.destination.to_hex(),
                "blobs_sent": r.blobs_sent,
                "data_sent": r.data_sent,
                "bytes_sent": r.bytes_sent,
            }))
        } else if self.ctx.g.quiet {
            Ok(())
        } else if r.skipped {
            outln!(
                "{} already in the destination as {}",
                r.source.short(),
                r.destination.short()
            )
            .map_err(anyhow::Error::from)
        } else {
            outln!(
                "copied {} -> {} ({} blobs, {} sent)",
                r.source.short(),
                r.destination.short(),
                r.blobs_sent,
                output::size(r.bytes_sent)
            )
            .map_err(anyhow::Error::from)
        };
        if let Err(e) = printed {
            self.failed.borrow_mut().get_or_insert(e);
        }
    }
}

/// Opens the destination: existence first (exit 10 without asking for a password), then keys.
fn open_destination(ctx: &Ctx, a: &Args) -> anyhow::Result<Repository> {
    ctx.open_at(&a.to, false, || {
        let none_given = a.to_password_file.is_none()
            && a.to_password_command.is_none()
            && std::env::var_os("CAIRN_TO_PASSWORD").is_none();
        if none_given && !std::io::stdin().is_terminal() {
            bail!(
                "no destination repository password given and no terminal to ask on: set CAIRN_TO_PASSWORD or CAIRN_TO_PASSWORD_FILE, or use --to-password-file or --to-password-command"
            );
        }
        password::read_from(
            a.to_password_file.as_deref(),
            a.to_password_command.as_deref(),
            "CAIRN_TO_PASSWORD",
            false,
            "destination repository",
        )
    })
}

/// The source snapshots to copy, oldest first, each once.
fn selected(
    src: &Repository,
    a: &Args,
) -> anyhow::Result<Vec<(SnapshotId, cairn::snapshot::Snapshot)>> {
    let filter = a.filter.filter();
    let all = src.snapshots()?;
    let mut out = if a.snapshots.is_empty() {
        // Partial snapshots are checkpoints of interrupted backups, not backups to keep.
        all.into_iter()
            .filter(|(_, s)| filter.matches(s) && !s.partial)
            .collect()
    } else {
        let mut v = Vec::new();
        for sel in &a.snapshots {
            let hit = select_snapshot(all.clone(), sel, &filter)?;
            if !v.iter().any(|(id, _)| *id == hit.0) {
                v.push(hit);
            }
        }
        v
    };
    out.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
    Ok(out)
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let mut src = ctx.open()?;
    let _src_lock = ctx.read_lock(&src, "copy (source)")?;
    src.load_index().context("loading the source index")?;
    ctx.print_warnings(&src);
    let mut dst = open_destination(ctx, &a).with_context(|| format!("destination {}", a.to))?;
    let _dst_lock = ctx.lock(&dst, false, "copy")?;
    dst.load_index().context("loading the destination index")?;
    ctx.print_warnings(&dst);
    let snapshots = selected(&src, &a)?;
    let opts = CopyOptions {
        map_file: super::cache_dir(&dst)
            .map(|d| d.join(format!("copy-from-{}.map", src.id().to_hex()))),
        cancel: Some(ctx.cancel.clone()),
    };
    let progress = Report {
        ctx,
        failed: std::cell::RefCell::new(None),
    };
    let result = copy(&src, &mut dst, &snapshots, &opts, &progress);
    ctx.print_warnings(&src);
    ctx.print_warnings(&dst);
    let r = result?;
    if let Some(e) = progress.failed.into_inner() {
        return Err(e);
    }
    if ctx.g.json {
        output::json_line(&json!({
            "message_type": "summary",
            "destination_repository": dst.id().to_hex(),
            "snapshots_copied": r.copied,
            "snapshots_skipped": r.skipped,
            "blobs_sent": r.blobs_sent,
            "data_sent": r.data_sent,
            "bytes_sent": r.bytes_sent,
            "data_read": r.data_read,
            // Every pack, index and snapshot file was fsynced before the next one named it.
            "durable": true,
        }))?;
    } else if !ctx.g.quiet {
        if snapshots.is_empty() {
            outln!("no snapshots to copy")?;
        }
        outln!(
            "{} snapshots copied, {} already there; {} blobs sent, {} ({} of data)",
            r.copied,
            r.skipped,
            r.blobs_sent,
            output::size(r.bytes_sent),
            output::size(r.data_sent)
        )?;
    }
    Ok(EXIT_OK)
}

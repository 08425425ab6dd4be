//! `cairn dump`: a file's content, or an entry as a tar or zip archive, to stdout or a file.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use cairn::dump::{self, ArchiveFormat, DumpOptions, DumpSummary, Selected};
use cairn::repo::SnapshotFilter;
use cairn::snapshot::tree::NodeKind;
use serde_json::json;

use super::output::outln;
use super::{output, Ctx, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// SNAPSHOT:PATH: `latest`, an id or a unique prefix, and a path inside it (`latest:/`
    /// for the whole snapshot)
    #[arg(value_name = "SNAPSHOT:PATH")]
    selector: OsString,
    /// Archive format for a directory (or, when given, for any entry): tar (default) or zip
    #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
    archive: Option<ArchiveFormat>,
    /// Write to FILE (a new file: an existing one is never overwritten) instead of stdout
    #[arg(long, value_name = "FILE")]
    target: Option<PathBuf>,
}

fn parse_format(s: &str) -> Result<ArchiveFormat, String> {
    s.parse()
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let raw = a.selector.as_bytes();
    let (sel, path) = match raw.iter().position(|&b| b == b':') {
        Some(i) => (&raw[..i], &raw[i + 1..]),
        None => (raw, &b"/"[..]),
    };
    let sel = std::str::from_utf8(sel)
        .map_err(|_| anyhow!("snapshot selector {} is not UTF-8", output::escape(sel)))?;
    if let Some(t) = &a.target {
        refuse_existing(t)?;
    }
    let repo = ctx.open_indexed()?;
    let (id, snap) = repo.find_snapshot(sel, &SnapshotFilter::default())?;
    let shown_path = output::escape(path).into_owned();
    let selected = dump::resolve(&repo, snap.tree, path)
        .with_context(|| format!("snapshot {}", id.short()))?;
    let content_only =
        a.archive.is_none() && matches!(&selected, Selected::Entry(n) if n.kind == NodeKind::File);
    let format = a.archive.unwrap_or(ArchiveFormat::Tar);
    if a.target.is_none() && !content_only && std::io::stdout().is_terminal() {
        bail!("refusing to write an archive to a terminal: redirect stdout or use --target FILE");
    }
    let mut opts = DumpOptions {
        cancel: Some(ctx.cancel.clone()),
        output: a
            .target
            .clone()
            .unwrap_or_else(|| PathBuf::from("standard output")),
    };
    let write = |out: &mut dyn Write, opts: &DumpOptions| -> cairn::Result<DumpSummary> {
        match &selected {
            Selected::Entry(node) if content_only => {
                let bytes = dump::write_content(&repo, node, out, opts)?;
                Ok(DumpSummary {
                    entries: 1,
                    bytes,
                    skipped: Vec::new(),
                })
            }
            _ => dump::write_archive(&repo, &selected, format, out, opts),
        }
    };
    let summary = match &a.target {
        None => {
            let mut out = BufWriter::with_capacity(1 << 20, output::stdout());
            let s = write(&mut out, &opts)?;
            out.flush().context("writing standard output")?;
            s
        }
        Some(target) => {
            opts.output = target.clone();
            write_new_file(target, |f| Ok(write(f, &opts)?))?
        }
    };
    for (p, why) in &summary.skipped {
        eprintln!("warning: left out {}: {why}", output::esc(p));
    }
    if let Some(target) = &a.target {
        if ctx.g.json {
            let mut v = json!({
                "snapshot": id.to_hex(),
                "path": shown_path,
                "target": null,
                "format": if content_only { "content" } else { match format { ArchiveFormat::Tar => "tar", ArchiveFormat::Zip => "zip" } },
                "entries": summary.entries,
                "bytes": summary.bytes,
                "skipped": summary.skipped.len(),
            });
            output::json_name(&mut v, "target", target.as_os_str().as_bytes());
            outln!("{}", serde_json::to_string_pretty(&v)?)?;
        } else if !ctx.g.quiet {
            eprintln!(
                "wrote {} ({} entries, {} of file content) from snapshot {}",
                output::esc(target),
                summary.entries,
                output::size(summary.bytes),
                id.short()
            );
        }
    }
    Ok(EXIT_OK)
}

fn refuse_existing(target: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(target) {
        Ok(_) => bail!(
            "{} already exists; dump never overwrites a file: choose another name or remove it first",
            output::esc(target)
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::Error::from(e).context(format!("checking {}", output::esc(target)))),
    }
}

/// Writes a new file at `target` crash-safely: a temporary name beside it, fsync, a rename
/// that refuses to replace anything, fsync of the directory. On any failure the temporary
/// file is removed and `target` is untouched.
fn write_new_file<T>(
    target: &Path,
    fill: impl FnOnce(&mut dyn Write) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let name = target
        .file_name()
        .ok_or_else(|| anyhow!("--target {} does not name a file", output::esc(target)))?;
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".cairn-dump-{}", std::process::id()));
    let tmp = dir.join(&tmp_name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .with_context(|| format!("creating {}", output::esc(&tmp)))?;
    let result = (|| {
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let v = fill(&mut out)?;
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {}", output::esc(&tmp)))?;
        file.sync_all()
            .with_context(|| format!("syncing {}", output::esc(&tmp)))?;
        drop(file);
        rename_no_replace(&tmp, target)?;
        Ok(v)
    })();
    match result {
        Ok(v) => {
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("syncing directory {}", output::esc(&dir)))?;
            Ok(v)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Renames `from` to `to` unless `to` exists (then an error naming it); where the file system
/// has no no-replace rename, a hard link and an unlink do the same.
fn rename_no_replace(from: &Path, to: &Path) -> anyhow::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    let exists = || {
        anyhow!(
            "{} appeared while dump was writing; dump never overwrites a file (the dump is not kept)",
            output::esc(to)
        )
    };
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Err(exists()),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS | rustix::io::Errno::NOTSUP) => {
            match std::fs::hard_link(from, to) {
                Ok(()) => {
                    std::fs::remove_file(from)
                        .with_context(|| format!("removing {}", output::esc(from)))?;
                    Ok(())
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
                Err(e) => Err(anyhow::Error::from(e)
                    .context(format!("moving the dump into place at {}", output::esc(to)))),
            }
        }
        Err(e) => Err(anyhow::Error::from(std::io::Error::from(e))
            .context(format!("moving the dump into place at {}", output::esc(to)))),
    }
}

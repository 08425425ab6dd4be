//! `cairn backup`

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use anyhow::{bail, Context};
use cairn::backup::BackupOptions;
use cairn::repo::SnapshotFilter;
use cairn::snapshot::BackupMode;

use super::output::outln;
use super::{output, Ctx, EXIT_OK, EXIT_PARTIAL};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files and directories to back up (with --stdin-from-command: the command and its arguments, after --)
    #[arg(
        value_name = "PATH",
        required_unless_present_any = ["stdin", "stdin_from_command", "files_from", "files_from_verbatim", "files_from_raw"]
    )]
    paths: Vec<PathBuf>,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag", value_name = "T")]
    tags: Vec<String>,
    /// Host name recorded in the snapshot (default: this machine's)
    #[arg(long, value_name = "H")]
    host: Option<String>,
    /// incremental (parent: newest snapshot of the same host and paths), differential (parent: newest full one) or full (read everything)
    #[arg(long, default_value = "incremental", value_parser = parse_mode)]
    mode: BackupMode,
    /// Compare against this snapshot instead of the one the mode picks
    #[arg(long, value_name = "SNAPSHOT")]
    parent: Option<String>,
    /// Record this time instead of now ("YYYY-MM-DD HH:MM:SS", local time)
    #[arg(long, value_name = "TIME")]
    time: Option<String>,
    /// Read every file even if unchanged (same as --mode full)
    #[arg(long)]
    force: bool,
    /// Do not compare ctime when deciding whether a file changed
    #[arg(long)]
    ignore_ctime: bool,
    /// Do not compare inode numbers when deciding whether a file changed
    #[arg(long)]
    ignore_inode: bool,
    /// Compress-and-encrypt threads (default: all cores)
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Do everything but write to the repository
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Leave out paths matching this glob (repeatable): `*.tmp` matches a name at any depth,
    /// `/home/*/.cache` matches from the root, `**` spans directories
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Like --exclude, ignoring case
    #[arg(long, value_name = "GLOB")]
    iexclude: Vec<String>,
    /// Read --exclude patterns from a file, one per line (# starts a comment)
    #[arg(long, value_name = "FILE")]
    exclude_file: Vec<std::path::PathBuf>,
    /// Leave out directories holding a CACHEDIR.TAG file
    #[arg(long)]
    exclude_caches: bool,
    /// Leave out directories holding a file of this name (repeatable)
    #[arg(long, value_name = "NAME")]
    exclude_if_present: Vec<String>,
    /// Leave out files larger than SIZE (e.g. 500M, 2G)
    #[arg(long, value_name = "SIZE", value_parser = output::parse_size)]
    exclude_larger_than: Option<u64>,
    /// Save a resumable partial snapshot this often during a long backup (e.g. 5m, 1h)
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = output::parse_span)]
    checkpoint_interval: std::time::Duration,
    /// Do not cross into other filesystems
    #[arg(long, short = 'x')]
    one_file_system: bool,
    /// Also back up the paths and glob patterns listed in FILE, one per line; blank lines and lines starting with # are skipped (repeatable; - reads standard input)
    #[arg(long, value_name = "FILE")]
    files_from: Vec<PathBuf>,
    /// Also back up the exact paths listed in FILE, one per line, no comments or patterns (repeatable; - reads standard input)
    #[arg(long, value_name = "FILE")]
    files_from_verbatim: Vec<PathBuf>,
    /// Also back up the exact paths listed in FILE, separated by NUL bytes as `find -print0` writes them (repeatable; - reads standard input)
    #[arg(long, value_name = "FILE")]
    files_from_raw: Vec<PathBuf>,
    /// Back up standard input as one file, /NAME in the snapshot (NAME from --stdin-filename)
    #[arg(long, conflicts_with = "stdin_from_command")]
    stdin: bool,
    /// The file name of a --stdin or --stdin-from-command stream in the snapshot [default: stdin]
    #[arg(long, value_name = "NAME")]
    stdin_filename: Option<OsString>,
    /// Back up the standard output of the command given after -- (run without a shell) as one file; a command that exits non-zero makes no snapshot
    #[arg(long)]
    stdin_from_command: bool,
}

/// The largest path list read (`--files-from*`): 256 MiB, some 4 million paths of typical
/// length, or 65 536 paths of the longest length.
pub const MAX_LIST_FILE: usize = 256 << 20;

/// A stream to back up (`--stdin`, `--stdin-from-command`): its name in the snapshot and,
/// for a command, the command line.
struct StreamArgs {
    name: OsString,
    command: Option<Vec<OsString>>,
}

/// Checks the stream options against the rest; None when this is not a stream backup.
fn stream_args(a: &Args) -> anyhow::Result<Option<StreamArgs>> {
    let lists = !a.files_from.is_empty()
        || !a.files_from_verbatim.is_empty()
        || !a.files_from_raw.is_empty();
    if !a.stdin && !a.stdin_from_command {
        if a.stdin_filename.is_some() {
            bail!("--stdin-filename names the file of a --stdin or --stdin-from-command stream; give one of those too");
        }
        return Ok(None);
    }
    let option = if a.stdin {
        "--stdin"
    } else {
        "--stdin-from-command"
    };
    if lists {
        bail!("{option} backs up one stream; it cannot be combined with --files-from, --files-from-verbatim or --files-from-raw");
    }
    if a.parent.is_some() {
        bail!("{option} has no parent snapshot: a stream is always read whole; leave out --parent");
    }
    let name = a
        .stdin_filename
        .clone()
        .unwrap_or_else(|| cairn::backup::stdin::DEFAULT_NAME.into());
    cairn::backup::stdin::validate_name(name.as_bytes())?;
    let command = if a.stdin {
        if let Some(p) = a.paths.first() {
            bail!(
                "--stdin backs up standard input; it takes no PATH arguments (got {}). For a command's output use --stdin-from-command -- CMD ARGS...",
                output::esc(p)
            );
        }
        None
    } else {
        if a.paths.is_empty() {
            bail!("--stdin-from-command needs the command after --, e.g. `cairn backup --stdin-from-command --stdin-filename db.sql -- pg_dump mydb`");
        }
        Some(a.paths.iter().map(|p| p.clone().into_os_string()).collect())
    };
    Ok(Some(StreamArgs { name, command }))
}

/// The paths the `--files-from*` lists name, in order: patterns expanded, exact paths as they
/// are. A pattern that matches nothing is kept as it is, so the backup reports it as missing.
fn listed_paths(a: &Args) -> anyhow::Result<Vec<PathBuf>> {
    use cairn::backup::files_from::{expand_glob, parse_list, ListFormat};
    let lists = a
        .files_from
        .iter()
        .map(|f| (f, ListFormat::Patterns))
        .chain(
            a.files_from_verbatim
                .iter()
                .map(|f| (f, ListFormat::Verbatim)),
        )
        .chain(a.files_from_raw.iter().map(|f| (f, ListFormat::Raw)));
    let mut stdin_used = false;
    let mut out = Vec::new();
    for (file, format) in lists {
        let what = format!("{} list", format.option());
        let bytes = if file.as_os_str() == "-" {
            if std::mem::replace(&mut stdin_used, true) {
                bail!("standard input (-) can be read by only one --files-from* option");
            }
            read_stdin(MAX_LIST_FILE, &what)?
        } else {
            read_list_file(file, &what)?
        };
        let source = if file.as_os_str() == "-" {
            "(standard input)".to_string()
        } else {
            output::esc(file).into_owned()
        };
        for entry in parse_list(&bytes, format, &source)? {
            if format == ListFormat::Patterns {
                let found = expand_glob(&entry)?;
                if found.is_empty() {
                    out.push(PathBuf::from(OsString::from_vec(entry)));
                } else {
                    out.extend(found);
                }
            } else {
                out.push(PathBuf::from(OsString::from_vec(entry)));
            }
        }
    }
    if out.is_empty() && a.paths.is_empty() {
        bail!("nothing to back up: the --files-from lists name no path");
    }
    Ok(out)
}

/// Reads a list file of at most [`MAX_LIST_FILE`] bytes. A regular file is read with a buffer
/// of its own size (plus room to grow while read), not one of the whole bound.
fn read_list_file(file: &std::path::Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let size = std::fs::metadata(file).map(|m| m.is_file().then_some(m.len()));
    let limit = match size {
        Ok(Some(n)) if n > MAX_LIST_FILE as u64 => bail!(
            "{what} {} is {} bytes; cairn reads at most {} of a {what}",
            output::esc(file),
            n,
            output::size(MAX_LIST_FILE as u64)
        ),
        Ok(Some(n)) => (n as usize + (64 << 10)).min(MAX_LIST_FILE),
        _ => MAX_LIST_FILE,
    };
    super::input::read_file(file, limit, what)
}

/// Reads all of standard input, at most `limit` bytes; `what` names it in messages.
fn read_stdin(limit: usize, what: &str) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    match super::input::read_bounded(&mut std::io::stdin(), limit, false, &mut buf)
        .with_context(|| format!("reading {what} from standard input"))?
    {
        super::input::End::Limit => bail!(
            "{what} on standard input holds more than {}, the most cairn reads of a {what}",
            output::size(limit as u64)
        ),
        _ => Ok(buf),
    }
}

/// The backup's exclusion rules from the arguments.
fn excludes(a: &Args) -> anyhow::Result<cairn::backup::Excludes> {
    let patterns = super::input::exclude_patterns(&a.exclude, &a.exclude_file)?;
    let sel = cairn::backup::filter::Selection::new(&[], &patterns, &a.iexclude)?;
    Ok(cairn::backup::Excludes {
        patterns: (!sel.is_everything()).then_some(sel),
        caches: a.exclude_caches,
        if_present: a.exclude_if_present.clone(),
        larger_than: a.exclude_larger_than,
        one_file_system: a.one_file_system,
        repository: None,
    })
}

/// The directory of a local repository, which a backup leaves out wherever it meets it.
pub fn local_repository(location: &str) -> Option<cairn::backup::DirId> {
    match cairn::backend::Location::parse(location).ok()? {
        cairn::backend::Location::Local(p) => cairn::backup::DirId::of(&p).ok(),
        _ => None,
    }
}

/// Says where the repository was left out of the backup (stderr).
pub fn note_left_out(ctx: &Ctx, left_out: &[PathBuf]) {
    if !ctx.g.quiet {
        for p in left_out {
            eprintln!(
                "note: {} is the repository itself; it is left out of the snapshot",
                output::esc(p)
            );
        }
    }
}

/// Runs a stream backup: standard input, or the output of a command started here.
fn backup_stream(
    ctx: &Ctx,
    repo: &mut cairn::Repository,
    opts: &BackupOptions,
    s: &StreamArgs,
) -> cairn::Result<cairn::backup::BackupOutcome> {
    use cairn::backup::stdin::{backup_stream, Cancellable, CommandStream};
    let progress = super::progress::Progress::new(
        ctx,
        "backed up",
        std::sync::Arc::new(super::progress::Totals::default()),
    );
    let name = s.name.as_bytes();
    let result = match &s.command {
        None => {
            let mut input = Cancellable::new(std::io::stdin().lock(), ctx.cancel.clone());
            backup_stream(repo, opts, name, "standard input", &mut input, &progress)
        }
        Some(cmd) => {
            // The command's error output passes through to ours as it comes.
            let child = CommandStream::spawn(&cmd[0], &cmd[1..], Box::new(std::io::stderr()))?;
            let mut child = Cancellable::new(child, ctx.cancel.clone());
            let what = format!("command `{}`", cmd[0].to_string_lossy());
            backup_stream(repo, opts, name, &what, &mut child, &progress)
        }
    };
    progress.finish();
    ctx.print_warnings(repo);
    result
}

fn parse_mode(s: &str) -> Result<BackupMode, String> {
    s.parse()
}

/// `YYYY-MM-DD HH:MM:SS` in local time, or RFC 3339.
pub fn parse_time(s: &str) -> anyhow::Result<(i64, i32)> {
    let tz = jiff::tz::TimeZone::system();
    let zoned = if let Ok(dt) = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", s) {
        dt.to_zoned(tz).with_context(|| format!("--time {s:?}"))?
    } else if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        ts.to_zoned(tz)
    } else {
        bail!("--time {s:?} is not \"YYYY-MM-DD HH:MM:SS\" or RFC 3339");
    };
    Ok((
        zoned.timestamp().as_nanosecond() as i64,
        zoned.offset().seconds(),
    ))
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    // Arguments first: a mistake is told before the password is asked or a command run.
    let stream = stream_args(&a)?;
    for t in &a.tags {
        cairn::snapshot::rewrite::check_tag(t)?;
    }
    let listed = match stream {
        Some(_) => Vec::new(),
        None => listed_paths(&a)?,
    };
    let mut repo = ctx.open()?;
    let _lock = ctx.lock(&repo, false, "backup")?;
    repo.load_index()?;
    ctx.print_warnings(&repo);
    let (time_ns, tz_offset_s) = match &a.time {
        Some(t) => parse_time(t)?,
        None => {
            let now = jiff::Zoned::now();
            (
                now.timestamp().as_nanosecond() as i64,
                now.offset().seconds(),
            )
        }
    };
    let parent = match &a.parent {
        Some(sel) => Some(repo.find_snapshot(sel, &SnapshotFilter::default())?.0),
        None => None,
    };
    let opts = BackupOptions {
        paths: if stream.is_some() {
            Vec::new()
        } else {
            a.paths.clone()
        },
        listed_paths: listed,
        host: a.host.clone().unwrap_or_else(super::hostname),
        user: super::username(),
        uid: super::current_uid(),
        gid: super::current_gid(),
        tags: a.tags.clone(),
        time_ns,
        tz_offset_s,
        mode: a.mode,
        parent,
        force: a.force,
        ignore_ctime: a.ignore_ctime,
        ignore_inode: a.ignore_inode,
        threads: a
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        dry_run: a.dry_run,
        cancel: Some(ctx.cancel.clone()),
        exclude: cairn::backup::Excludes {
            repository: local_repository(&ctx.location()?),
            ..excludes(&a)?
        },
        checkpoint_every: Some(a.checkpoint_interval),
    };
    let result = match &stream {
        Some(s) => backup_stream(ctx, &mut repo, &opts, s),
        None => super::progress::backup_with_progress(ctx, &mut repo, &opts),
    };
    if let (Err(cairn::Error::Interrupted), Some(_)) = (&result, &stream) {
        eprintln!("interrupted: the stream was not backed up whole; no snapshot was saved");
        return Ok(super::EXIT_INTERRUPTED);
    }
    if let Err(cairn::Error::Stream { what, source }) = &result {
        if let Some(failed) = source
            .get_ref()
            .and_then(|e| e.downcast_ref::<cairn::backup::stdin::CommandFailed>())
        {
            // Line by line, each escaped: the command's own words, never its control bytes.
            eprintln!("cairn: {what}: {}; no snapshot was made", failed.how);
            let tail = String::from_utf8_lossy(&failed.stderr_tail);
            if tail.trim().is_empty() {
                eprintln!("(it wrote nothing to its error output)");
            } else {
                eprintln!("the end of its error output:");
                for line in tail.trim_end().lines() {
                    eprintln!("  {}", output::esc(line));
                }
            }
            return Ok(super::EXIT_FATAL);
        }
    }
    if let Err(cairn::Error::Interrupted) = result {
        eprintln!(
            "interrupted: what was backed up so far is saved as a partial snapshot; \
             the next backup of the same paths resumes from it"
        );
        return Ok(super::EXIT_INTERRUPTED);
    }
    let out = result?;
    let s = &out.summary;
    let id = out.snapshot_id.map(|i| i.to_hex());
    note_left_out(ctx, &out.repository_left_out);
    if ctx.g.json {
        output::json_line(&serde_json::to_value(out.json_summary())?)?;
    } else {
        for e in &out.errors {
            eprintln!("error: {}: {}", output::esc(&e.path), output::esc(&e.error));
        }
        if !ctx.g.quiet {
            let parent = out
                .snapshot
                .parent
                .map(|p| format!("parent {}", p.short()))
                .unwrap_or_else(|| "no parent".into());
            outln!("mode {} ({parent})", out.snapshot.mode.name())?;
            outln!(
                "Files: {:>8} new, {:>8} changed, {:>8} unmodified",
                s.files_new,
                s.files_changed,
                s.files_unmodified
            )?;
            outln!("Dirs:  {:>8}", s.dirs)?;
            outln!(
                "Added to the repository: {} ({} stored)",
                output::size(s.data_added),
                output::size(s.data_added_stored)
            )?;
            outln!(
                "processed {} files, {} ({} read) in {:.1}s",
                s.total_files,
                output::size(s.total_bytes_processed),
                output::size(s.bytes_read),
                s.duration_s
            )?;
            if !out.errors.is_empty() {
                outln!(
                    "{} files or directories could not be read (listed above)",
                    out.errors.len()
                )?;
            }
        }
        match &id {
            Some(id) if ctx.g.quiet => outln!("{id}")?,
            Some(id) => {
                // docs/cli.md: the summary ends in the snapshot id, saying that unplugging is safe.
                outln!("snapshot saved and fsynced, safe to unplug the disk: {id}")?;
            }
            None => outln!("dry run: nothing was written")?,
        }
    }
    Ok(if out.errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_PARTIAL
    })
}

//! Command-line edge: arguments → library options → one library call → output.

mod aws;
mod backup;
mod check;
mod completions;
mod copy;
mod diff;
mod drill;
mod dump;
mod find;
mod forget;
mod init;
mod input;
mod key;
mod ls;
#[cfg(feature = "mount")]
mod mount;
mod output;
mod password;
mod plan;
mod progress;
mod prune;
mod repair;
mod repair_from;
mod restore;
mod rewrite;
mod serve;
mod snapshots;
mod stats;
mod tag;
mod unlock;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use cairn::backend::{Backend, CachedBackend, Location};
use cairn::repo::OpenOptions;
use cairn::{ErrorKind, Repository};
use clap::{Parser, Subcommand};

/// Exit codes (docs/cli.md "Exit codes").
pub const EXIT_OK: u8 = 0;
pub const EXIT_FATAL: u8 = 1;
pub const EXIT_PARTIAL: u8 = 3;
pub const EXIT_NO_REPO: u8 = 10;
pub const EXIT_LOCKED: u8 = 11;
pub const EXIT_WRONG_PASSWORD: u8 = 12;
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser, Debug)]
#[command(
    name = "cairn",
    version,
    about = "Encrypted, deduplicated, verifiable backups",
    after_help = "Example:\n  cairn -r /mnt/usb/backup init\n  cairn -r /mnt/usb/backup backup ~/Documents\n  cairn -r /mnt/usb/backup restore latest --target /tmp/restored"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// Repository location: a local directory, sftp://[user@]host[:port]/path,
    /// sftp:[user@]host:/path, s3:http(s)://endpoint/bucket[/prefix] or
    /// ssh://[user@]host[:port]/path (a `cairn serve` on the host)
    #[arg(
        short = 'r',
        long = "repo",
        env = "CAIRN_REPOSITORY",
        global = true,
        value_name = "PATH"
    )]
    pub repo: Option<String>,
    /// Read the password from the file's first line
    #[arg(long, env = "CAIRN_PASSWORD_FILE", global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Run CMD and use the first line of its output as the password
    #[arg(
        long,
        env = "CAIRN_PASSWORD_COMMAND",
        global = true,
        value_name = "CMD"
    )]
    pub password_command: Option<String>,
    /// Machine-readable output on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// Less human output
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More human output
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Never draw progress bars
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// The backup-plan file
    #[arg(long, env = "CAIRN_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Transfers in flight at once to a remote repository
    #[arg(
        long,
        env = "CAIRN_CONNECTIONS",
        global = true,
        value_name = "N",
        default_value_t = 4,
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    pub connections: u16,
    /// How long to keep retrying a failing remote server before giving up (one budget for
    /// the whole command)
    #[arg(
        long,
        env = "CAIRN_RETRY_TIMEOUT",
        global = true,
        value_name = "DURATION",
        default_value = "2m",
        value_parser = output::parse_span
    )]
    pub retry_timeout: std::time::Duration,
    /// Do not use or fill the local cache of a remote repository
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Read without writing a lock (read-only commands; automatic on a read-only repository)
    #[arg(long, global = true)]
    pub no_lock: bool,
    /// Limit writes to the repository to KIB KiB/s (any repository, a local directory too)
    #[arg(long, global = true, value_name = "KIB")]
    pub limit_upload: Option<u64>,
    /// Limit reads from the repository to KIB KiB/s (any repository, a local directory too)
    #[arg(long, global = true, value_name = "KIB")]
    pub limit_download: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create an encrypted repository
    #[command(
        after_help = "Example:\n  cairn -r /mnt/usb/backup init --pack-size 32 --compression auto"
    )]
    Init(init::Args),
    /// Store a snapshot of files and directories
    #[command(
        after_help = "Example:\n  cairn -r /mnt/usb/backup backup ~/Documents ~/Pictures --tag daily"
    )]
    Backup(backup::Args),
    /// List snapshots
    #[command(after_help = "Example:\n  cairn -r /mnt/usb/backup snapshots --host laptop")]
    Snapshots(snapshots::Args),
    /// List the files in a snapshot
    #[command(
        after_help = "Example:\n  cairn -r /mnt/usb/backup ls latest:/home/me/Documents --long"
    )]
    Ls(ls::Args),
    /// Restore files from a snapshot
    #[command(
        after_help = "Example:\n  cairn -r /mnt/usb/backup restore latest:/home/me/Documents --target /tmp/docs --verify"
    )]
    Restore(restore::Args),
    /// Show what changed between two snapshots
    #[command(after_help = "Example:\n  cairn -r /mnt/usb/backup diff 1a2b3c4d latest")]
    Diff(diff::Args),
    /// Show sizes, compression and deduplication
    #[command(after_help = "Example:\n  cairn -r /mnt/usb/backup stats latest")]
    Stats(stats::Args),
    /// Delete data no snapshot references; repack mostly-unused packs
    #[command(after_help = "Example:\n  cairn -r /mnt/usb/backup prune --dry-run")]
    Prune(prune::Args),
    /// Remove snapshots by id or by retention policy
    #[command(
        after_help = "Example:\n  cairn -r /mnt/usb/backup forget --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --prune"
    )]
    Forget(forget::Args),
    /// Verify the repository's structure and, with --read-data, every stored byte
    #[command(after_help = "Example:\n  cairn -r /mnt/usb/backup check --read-data")]
    Check(check::Args),
    /// Remove stale locks
    #[command(after_help = "Example:\n  cairn -r /mnt/usb/backup unlock")]
    Unlock(unlock::Args),
    /// Manage the passwords that open the repository
    #[command(
        after_help = "Example:\n  cairn -r /mnt/usb/backup key add --new-password-file ~/second-password"
    )]
    Key(key::Args),
    /// Rebuild the index from packs, or rewrite snapshots around missing data
    #[command(
        after_help = "Example:\n  cairn -r /mnt/usb/backup repair index\n  cairn -r /mnt/usb/backup repair snapshots --forget"
    )]
    Repair(repair::Args),
    /// Copy snapshots into another repository (its own password and keys), sending only data it lacks
    #[command(
        after_help = "Example:\n  CAIRN_TO_PASSWORD_FILE=~/offsite-password cairn -r /mnt/usb/backup copy --to /mnt/usb2/backup"
    )]
    Copy(copy::Args),
    /// Prove recovery: restore a sample (or all) of a snapshot to scratch space, verify every byte, project the full restore time
    #[command(
        after_help = "Example:\n  cairn -r /mnt/usb/backup drill --sample 5%\n  cairn -r /mnt/usb/backup drill --history"
    )]
    Drill(drill::Args),
    /// Print shell completions
    #[command(after_help = "Example:\n  cairn completions bash > /etc/bash_completion.d/cairn")]
    Completions(completions::Args),
    /// Run a backup plan from the plan file (backup, forget, prune, check) or show its status
    #[command(
        after_help = "Example:\n  cairn plan run home\n  cairn plan status\n  cairn --config ~/cairn.toml plan status home --json"
    )]
    Plan(plan::Args),
    /// Find which snapshots hold entries matching glob patterns
    #[command(
        after_help = "Example:\n  cairn -r /mnt/usb/backup find '*.pdf' --newest 2024-06-30\n  cairn -r /mnt/usb/backup find 'Documents/**/report*' --snapshot latest --json"
    )]
    Find(find::Args),
    /// Write a file's content, or a directory as a tar or zip archive, to stdout or a file
    #[command(
        after_help = "Example:\n  cairn -r /mnt/usb/backup dump latest:/etc/hosts\n  cairn -r /mnt/usb/backup dump latest:/home/me/Documents --archive zip --target docs.zip"
    )]
    Dump(dump::Args),
    /// Mount the snapshots as a read-only file system (FUSE) until unmounted
    #[cfg(feature = "mount")]
    #[command(
        after_help = "Example:\n  mkdir /tmp/snaps && cairn -r /mnt/usb/backup mount /tmp/snaps\n  ls /tmp/snaps/snapshots/latest/home/me\n  fusermount3 -u /tmp/snaps"
    )]
    Mount(mount::Args),
    /// Write man pages into a directory
    #[command(after_help = "Example:\n  cairn man /usr/local/share/man/man1")]
    Man(completions::ManArgs),
    /// Change snapshots' tags (each changed snapshot is saved anew, recording its original's id)
    #[command(
        after_help = "Example:\n  cairn -r /mnt/usb/backup tag latest --add keep\n  cairn -r /mnt/usb/backup tag --host laptop --remove daily"
    )]
    Tag(tag::Args),
    /// Write new snapshots without the excluded paths (a secret that should never have been backed up)
    #[command(
        after_help = "Example:\n  cairn -r /mnt/usb/backup rewrite --exclude /home/me/.ssh --dry-run\n  cairn -r /mnt/usb/backup rewrite --exclude '*.key' --forget && cairn -r /mnt/usb/backup prune"
    )]
    Rewrite(rewrite::Args),
    /// Serve a repository over stdin/stdout (an SSH forced command); clients use -r ssh://[user@]host[:port]/path
    #[command(
        after_help = "Example (in ~/.ssh/authorized_keys on the server, one line):\n  command=\"cairn serve --append-only --repo /srv/cairn\",restrict ssh-ed25519 AAAA... laptop\nthen on the client:\n  cairn -r ssh://backup@server/srv/cairn backup ~/Documents"
    )]
    Serve(serve::Args),
}

/// The program an `ssh://` location's host runs: `CAIRN_REMOTE_COMMAND`, else `cairn`.
pub fn serve_program() -> String {
    std::env::var("CAIRN_REMOTE_COMMAND")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "cairn".into())
}

/// The cache in front of a remote repository, attached once the repository id is known.
pub type CacheHandle = Arc<CachedBackend>;

/// Everything a command needs besides its own arguments.
pub struct Ctx {
    pub g: Global,
    pub cancel: Arc<AtomicBool>,
    /// The command being run (`restore`, `key`), as a put-only key's refusal names it.
    pub command: &'static str,
    /// `--limit-upload` and `--limit-download`: one limiter per direction, shared by every
    /// backend the command opens.
    pub limits: cairn::backend::Limits,
}

impl Ctx {
    /// Whether progress may be drawn on stderr.
    pub fn draw_progress(&self) -> bool {
        !self.g.json && !self.g.quiet && !self.g.no_progress && std::io::stderr().is_terminal()
    }

    pub fn location(&self) -> anyhow::Result<String> {
        self.g
            .repo
            .clone()
            .ok_or_else(|| anyhow!("no repository given: use -r/--repo or set CAIRN_REPOSITORY"))
    }

    pub fn backend(&self) -> anyhow::Result<Arc<dyn Backend>> {
        Ok(self.backend_at(&self.location()?, false)?.0)
    }

    /// The backend for a location; a remote one comes with its local cache (attached once the
    /// repository id is known) unless `--no-cache` or `uncached`.
    pub fn backend_at(
        &self,
        location: &str,
        uncached: bool,
    ) -> anyhow::Result<(Arc<dyn Backend>, Option<CacheHandle>)> {
        self.backend_with(location, uncached, None)
    }

    /// As [`Self::backend_at`], with these S3 credentials (a plan file's) in place of the
    /// environment's.
    pub fn backend_with(
        &self,
        location: &str,
        uncached: bool,
        s3: Option<cairn::backend::S3Credentials>,
    ) -> anyhow::Result<(Arc<dyn Backend>, Option<CacheHandle>)> {
        let loc = Location::parse(location)?;
        let s3 = match (loc.clone(), s3) {
            (Location::S3 { .. }, Some(c)) => c,
            (Location::S3 { .. }, None) => aws::s3_credentials()?,
            _ => Default::default(),
        };
        let raw = cairn::backend::open_location(
            &loc,
            cairn::backend::RemoteOptions {
                connections: self.g.connections.into(),
                retry_for: self.g.retry_timeout,
                s3,
                serve_program: serve_program(),
            },
            self.limits.clone(),
        )?;
        if !loc.is_remote() || uncached || self.g.no_cache {
            return Ok((raw, None));
        }
        let cached = Arc::new(CachedBackend::new(raw));
        Ok((cached.clone(), Some(cached)))
    }

    /// Opens the repository: existence first (exit 10 without asking for a password), then keys.
    pub fn open(&self) -> anyhow::Result<Repository> {
        self.open_at(&self.location()?, false, || password::read(&self.g, false))
    }

    /// Opens the repository without its local cache: what is read is what the store holds.
    pub fn open_uncached(&self) -> anyhow::Result<Repository> {
        self.open_at(&self.location()?, true, || password::read(&self.g, false))
    }

    /// Opens the repository at a location: existence first (exit 10 without asking for a
    /// password), then keys; attaches the cache of a remote one.
    pub fn open_at(
        &self,
        location: &str,
        uncached: bool,
        password: impl FnOnce() -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>>,
    ) -> anyhow::Result<Repository> {
        self.open_with(location, uncached, None, password)
    }

    /// As [`Self::open_at`], with these S3 credentials in place of the environment's.
    pub fn open_with(
        &self,
        location: &str,
        uncached: bool,
        s3: Option<cairn::backend::S3Credentials>,
        password: impl FnOnce() -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>>,
    ) -> anyhow::Result<Repository> {
        let (backend, cache) = self.backend_with(location, uncached, s3)?;
        let opts = OpenOptions {
            cache: cache.zip(cache_root()),
        };
        let mut repo = Repository::open_existing(backend, &opts, password)?;
        self.print_warnings(&repo);
        // The index's sorted runs live in the local cache (src/index/); without one (or with
        // --no-cache) each command builds them in a temporary directory.
        if !self.g.no_cache && !repo.is_put_only() {
            if let Some(dir) = cache_dir(&repo) {
                repo.set_index_cache(dir);
            }
        }
        if repo.is_put_only() {
            // A put-only key makes backups and nothing else (repo-format.md §2.2).
            if self.command != "backup" {
                repo.require_full_key(&format!("run `cairn {}`", self.command))?;
            }
            if let Some(dir) = cache_dir(&repo) {
                repo.use_sent_record(&dir.join("put-only"));
            }
        }
        Ok(repo)
    }

    /// Opens the repository and loads its index.
    pub fn open_indexed(&self) -> anyhow::Result<Repository> {
        let mut repo = self.open()?;
        repo.load_index().context("loading the index")?;
        self.print_warnings(&repo);
        Ok(repo)
    }

    /// Takes a shared or exclusive repository lock for the rest of a command that writes to
    /// the repository. A repository that cannot be written (its lock file cannot be) is an
    /// error saying so; `--no-lock` is refused (main refuses it earlier for known writers).
    pub fn lock(
        &self,
        repo: &Repository,
        exclusive: bool,
        command: &str,
    ) -> anyhow::Result<cairn::repo::lock::RepoLock> {
        if self.g.no_lock {
            return Err(no_lock_refused(command));
        }
        cairn::repo::lock::RepoLock::acquire(repo, exclusive, command, &hostname()).map_err(|e| {
            let e = anyhow::Error::from(e);
            if is_read_only(&e) {
                e.context(format!(
                    "the repository at {} is read-only: `cairn {command}` writes to it and cannot run there",
                    repo.backend().location()
                ))
            } else {
                e
            }
        })
    }

    /// The shared lock of a command that only reads: none with `--no-lock`, and none (with a
    /// note) when the repository is read-only, so a write-protected disk can still be read.
    pub fn read_lock(
        &self,
        repo: &Repository,
        command: &str,
    ) -> anyhow::Result<Option<cairn::repo::lock::RepoLock>> {
        if self.g.no_lock {
            return Ok(None);
        }
        match cairn::repo::lock::RepoLock::acquire(repo, false, command, &hostname()) {
            Ok(l) => Ok(Some(l)),
            Err(e) => {
                let e = anyhow::Error::from(e);
                if !is_read_only(&e) {
                    return Err(e);
                }
                if !self.g.quiet {
                    eprintln!("note: the repository is read-only; reading without a lock");
                }
                Ok(None)
            }
        }
    }

    pub fn print_warnings(&self, repo: &Repository) {
        for w in repo.take_warnings() {
            eprintln!("warning: {}", output::esc(&w));
        }
    }
}

/// Parses, runs, maps the outcome to an exit code; prints an error once.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        let _ = ctrlc::set_handler(move || {
            if cancel.swap(true, std::sync::atomic::Ordering::SeqCst) {
                // Second Ctrl-C: stop now. Nothing half-written is ever under a final name.
                std::process::exit(EXIT_INTERRUPTED as i32);
            }
        });
    }
    input::stop_on(cancel.clone());
    let limits =
        cairn::backend::Limits::kib_per_sec(cli.global.limit_upload, cli.global.limit_download);
    let ctx = Ctx {
        g: cli.global,
        cancel,
        command: cli.command.name(),
        limits,
    };
    if let Some(name) = cli.command.writer_name().filter(|_| ctx.g.no_lock) {
        eprintln!("cairn: {}", no_lock_refused(name));
        return ExitCode::from(EXIT_FATAL);
    }
    let result = match cli.command {
        Command::Init(a) => init::run(&ctx, a),
        Command::Backup(a) => backup::run(&ctx, a),
        Command::Snapshots(a) => snapshots::run(&ctx, a),
        Command::Ls(a) => ls::run(&ctx, a),
        Command::Restore(a) => restore::run(&ctx, a),
        Command::Diff(a) => diff::run(&ctx, a),
        Command::Stats(a) => stats::run(&ctx, a),
        Command::Prune(a) => prune::run(&ctx, a),
        Command::Forget(a) => forget::run(&ctx, a),
        Command::Check(a) => check::run(&ctx, a),
        Command::Unlock(a) => unlock::run(&ctx, a),
        Command::Key(a) => key::run(&ctx, a),
        Command::Repair(a) => repair::run(&ctx, a),
        Command::Copy(a) => copy::run(&ctx, a),
        Command::Drill(a) => drill::run(&ctx, a),
        Command::Completions(a) => completions::run(a),
        Command::Plan(a) => plan::run(&ctx, a),
        Command::Man(a) => completions::man(a),
        Command::Tag(a) => tag::run(&ctx, a),
        Command::Rewrite(a) => rewrite::run(&ctx, a),
        Command::Serve(a) => serve::run(&ctx, a),
        Command::Find(a) => find::run(&ctx, a),
        Command::Dump(a) => dump::run(&ctx, a),
        #[cfg(feature = "mount")]
        Command::Mount(a) => mount::run(&ctx, a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if output::is_stdout_closed(&e) {
                return ExitCode::from(EXIT_OK);
            }
            eprintln!("cairn: {}", output::esc(&output::error_chain(&e)));
            ExitCode::from(exit_code(&e))
        }
    }
}

impl Command {
    /// The command's name as typed.
    fn name(&self) -> &'static str {
        match self {
            Command::Init(_) => "init",
            Command::Backup(_) => "backup",
            Command::Snapshots(_) => "snapshots",
            Command::Ls(_) => "ls",
            Command::Restore(_) => "restore",
            Command::Diff(_) => "diff",
            Command::Stats(_) => "stats",
            Command::Prune(_) => "prune",
            Command::Forget(_) => "forget",
            Command::Check(_) => "check",
            Command::Unlock(_) => "unlock",
            Command::Key(_) => "key",
            Command::Repair(_) => "repair",
            Command::Copy(_) => "copy",
            Command::Drill(_) => "drill",
            Command::Completions(_) => "completions",
            Command::Plan(_) => "plan",
            Command::Man(_) => "man",
            Command::Tag(_) => "tag",
            Command::Rewrite(_) => "rewrite",
            Command::Find(_) => "find",
            Command::Dump(_) => "dump",
            Command::Serve(_) => "serve",
            #[cfg(feature = "mount")]
            Command::Mount(_) => "mount",
        }
    }

    /// The name of a command that can change a repository (these refuse `--no-lock`).
    fn writer_name(&self) -> Option<&'static str> {
        Some(match self {
            Command::Init(_) => "init",
            Command::Backup(_) => "backup",
            Command::Prune(_) => "prune",
            Command::Forget(_) => "forget",
            Command::Unlock(_) => "unlock",
            Command::Key(_) => "key",
            Command::Repair(_) => "repair",
            Command::Copy(_) => "copy",
            Command::Plan(_) => "plan",
            Command::Tag(_) => "tag",
            Command::Rewrite(a) if a.writes() => "rewrite",
            _ => return None,
        })
    }
}

fn no_lock_refused(command: &str) -> anyhow::Error {
    anyhow!(
        "--no-lock is only for commands that just read the repository (snapshots, ls, diff, stats, restore, check, drill); `cairn {command}` can change it and must hold its lock"
    )
}

/// Whether an error says the repository cannot be written: a read-only file system, or no
/// permission (EROFS, EACCES, EPERM) — a write-protected disk, a read-only mount or share.
pub fn is_read_only(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| {
            matches!(
                io.raw_os_error(),
                Some(libc::EROFS | libc::EACCES | libc::EPERM)
            ) || matches!(
                io.kind(),
                std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
            )
        })
}

fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(err) = cause.downcast_ref::<cairn::Error>() {
            return match err.kind() {
                ErrorKind::Fatal => EXIT_FATAL,
                ErrorKind::RepoMissing => EXIT_NO_REPO,
                ErrorKind::Locked => EXIT_LOCKED,
                ErrorKind::WrongPassword => EXIT_WRONG_PASSWORD,
                ErrorKind::Interrupted => EXIT_INTERRUPTED,
            };
        }
    }
    EXIT_FATAL
}

/// `--host`, `--tag`, `--path`: which snapshots `latest` (and policies) consider.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only snapshots of this host
    #[arg(long = "host", value_name = "H")]
    pub hosts: Vec<String>,
    /// Only snapshots with this tag
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
    /// Only snapshots of this path
    #[arg(long = "path", value_name = "P")]
    pub paths: Vec<String>,
}

impl FilterArgs {
    pub fn filter(&self) -> cairn::repo::SnapshotFilter {
        cairn::repo::SnapshotFilter {
            hosts: self.hosts.clone(),
            tags: self.tags.clone(),
            paths: self.paths.clone(),
        }
    }
}

/// Splits `SNAPSHOT[:PATH]`.
pub fn split_selector(s: &str) -> (&str, Option<&str>) {
    match s.split_once(':') {
        Some((snap, path)) => (snap, Some(path)),
        None => (s, None),
    }
}

/// The directory holding the local caches of all repositories (`$XDG_CACHE_HOME/cairn` or
/// `~/.cache/cairn`); None without a home.
fn cache_root() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("cairn"))
}

/// This repository's local cache directory (`$XDG_CACHE_HOME/cairn/<id>` or
/// `~/.cache/cairn/<id>`); None without a home.
pub fn cache_dir(repo: &Repository) -> Option<PathBuf> {
    cache_root().map(|root| repo.cache_dir_in(&root))
}

/// Now, in ns since the epoch.
pub fn now_ns() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

pub fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

pub fn username() -> String {
    std::env::var("USER")
        .ok()
        .or_else(|| cairn::snapshot::meta::NameCache::default().user(current_uid()))
        .unwrap_or_default()
}

pub fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

pub fn current_gid() -> u32 {
    // SAFETY: getgid has no preconditions.
    unsafe { libc::getgid() }
}

//! Progress for long commands: an indicatif bar redrawn in place when stderr is a terminal,
//! JSON-lines status objects with `--json`, nothing otherwise (no escape sequences in a pipe).
//! Totals may arrive later than the work (a scanner counts while the backup runs).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::{output, Ctx};

/// Totals known so far; `complete` once counting is finished.
#[derive(Default)]
pub struct Totals {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub complete: AtomicBool,
}

pub struct Progress {
    bar: Option<ProgressBar>,
    json: bool,
    verb: &'static str,
    totals: Arc<Totals>,
    files_done: AtomicU64,
    bytes_done: AtomicU64,
    last_json: Mutex<Instant>,
    current: Mutex<String>,
    start: Instant,
}

/// How often a JSON status line is written.
const JSON_EVERY: Duration = Duration::from_secs(1);

impl Progress {
    /// `verb` names the work in messages ("backed up", "restored", "verified").
    pub fn new(ctx: &Ctx, verb: &'static str, totals: Arc<Totals>) -> Progress {
        let bar = ctx.draw_progress().then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.enable_steady_tick(Duration::from_millis(100));
            b
        });
        Progress {
            bar,
            json: ctx.g.json,
            verb,
            totals,
            files_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            last_json: Mutex::new(Instant::now()),
            current: Mutex::new(String::new()),
            start: Instant::now(),
        }
    }

    fn refresh(&self) {
        let files = self.files_done.load(Ordering::Relaxed);
        let bytes = self.bytes_done.load(Ordering::Relaxed);
        let total_files = self.totals.files.load(Ordering::Relaxed);
        let total_bytes = self.totals.bytes.load(Ordering::Relaxed);
        let complete = self.totals.complete.load(Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_length(total_bytes.max(bytes));
            b.set_position(bytes);
            let current = self
                .current
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let of = if complete {
                format!("/{total_files}")
            } else {
                format!("/{total_files}+")
            };
            b.set_message(format!("{files}{of} files {}", shorten(&current, 40)));
        }
        if self.json {
            let mut last = self.last_json.lock().unwrap_or_else(|p| p.into_inner());
            if last.elapsed() >= JSON_EVERY {
                *last = Instant::now();
                let current = self
                    .current
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let elapsed = self.start.elapsed().as_secs_f64();
                let _ = output::json_line(&json!({
                    "message_type": "status",
                    "seconds_elapsed": elapsed,
                    "files_done": files,
                    "bytes_done": bytes,
                    "total_files": total_files,
                    "total_bytes": total_bytes,
                    "totals_complete": complete,
                    "percent_done": if total_bytes > 0 { (bytes as f64 / total_bytes as f64).min(1.0) } else { 0.0 },
                    "bytes_per_second": if elapsed > 0.0 { bytes as f64 / elapsed } else { 0.0 },
                    "current_files": [current],
                }));
            }
        }
    }

    pub fn file_started(&self, path: &Path) {
        // The bar shows it escaped (a name must not drive the terminal); JSON carries the
        // text as such (JSON escapes control characters itself).
        let shown = if self.json {
            path.to_string_lossy().into_owned()
        } else {
            output::esc(path).into_owned()
        };
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = shown;
        self.refresh();
    }

    pub fn bytes_done(&self, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
        self.refresh();
    }

    pub fn file_done(&self) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
    }

    /// Prints a line above the bar (or on stderr when there is none and no JSON).
    pub fn println(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(msg),
            None if !self.json => eprintln!("{msg}"),
            None => {}
        }
    }

    /// Leaves the bar's final state on the terminal with a closing message.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            let bytes = self.bytes_done.load(Ordering::Relaxed);
            let secs = self.start.elapsed().as_secs_f64().max(1e-3);
            b.finish_with_message(format!(
                "{} {} files, {} at {}/s",
                self.verb,
                self.files_done.load(Ordering::Relaxed),
                output::size(bytes),
                output::size((bytes as f64 / secs) as u64)
            ));
        }
    }
}

fn shorten(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        s.to_string()
    } else {
        format!("…{}", s.chars().skip(n - max + 1).collect::<String>())
    }
}

impl cairn::backup::BackupProgress for Progress {
    fn file_started(&self, path: &Path) {
        Progress::file_started(self, path)
    }
    fn bytes_done(&self, n: u64) {
        Progress::bytes_done(self, n)
    }
    fn file_done(&self, size: u64) {
        // Unchanged files are not read: count their bytes as done.
        let _ = size;
        Progress::file_done(self)
    }
    fn error(&self, path: &Path, error: &str) {
        self.println(&format!(
            "error: {}: {}",
            output::esc(path),
            output::esc(error)
        ));
    }
}

impl cairn::restore::RestoreProgress for Progress {
    fn file_started(&self, path: &Path) {
        Progress::file_started(self, path);
        Progress::file_done(self);
    }
    fn bytes_done(&self, n: u64) {
        Progress::bytes_done(self, n)
    }
}

/// A backup that ends sooner than this (an unchanged tree, a small change) is not scanned:
/// the scan would stat every entry a second time for totals nobody sees.
const SCAN_AFTER: Duration = Duration::from_millis(700);

/// Counts files and bytes under `paths` on a thread (stat only), for the backup's totals;
/// starts once the backup has run for [`SCAN_AFTER`].
pub fn scan(
    paths: Vec<std::path::PathBuf>,
    excludes: cairn::backup::Excludes,
    totals: Arc<Totals>,
    stop: Arc<AtomicBool>,
) {
    std::thread::spawn(move || {
        fn walk(p: &Path, ex: &cairn::backup::Excludes, t: &Totals, stop: &AtomicBool) {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(m) = std::fs::symlink_metadata(p) else {
                return;
            };
            if m.is_file() {
                if ex.larger_than.is_some_and(|max| m.len() > max) {
                    return;
                }
                t.files.fetch_add(1, Ordering::Relaxed);
                t.bytes.fetch_add(m.len(), Ordering::Relaxed);
            } else if m.is_dir() {
                let Ok(rd) = std::fs::read_dir(p) else { return };
                for e in rd.flatten() {
                    let child = e.path();
                    if ex.patterns.as_ref().is_some_and(|s| !s.accepts(&child)) {
                        continue;
                    }
                    walk(&child, ex, t, stop);
                }
            }
        }
        let start = Instant::now();
        while start.elapsed() < SCAN_AFTER {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for p in &paths {
            walk(p, &excludes, &totals, &stop);
        }
        totals.complete.store(true, Ordering::Relaxed);
    });
}

/// Runs a backup with progress (a concurrent scan supplies the totals when progress is shown).
pub fn backup_with_progress(
    ctx: &Ctx,
    repo: &mut cairn::Repository,
    opts: &cairn::backup::BackupOptions,
) -> cairn::Result<cairn::backup::BackupOutcome> {
    let totals = Arc::new(Totals::default());
    let stop_scan = Arc::new(AtomicBool::new(false));
    if ctx.draw_progress() || ctx.g.json {
        scan(
            opts.paths
                .iter()
                .chain(&opts.listed_paths)
                .cloned()
                .collect(),
            opts.exclude.clone(),
            totals.clone(),
            stop_scan.clone(),
        );
    }
    let progress = Progress::new(ctx, "backed up", totals);
    let result = cairn::backup::backup(repo, opts, &progress);
    stop_scan.store(true, Ordering::Relaxed);
    progress.finish();
    ctx.print_warnings(repo);
    result
}

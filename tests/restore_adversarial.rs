//! Adversarial restores: random snapshot trees restored into random targets that already hold
//! files, directories, FIFOs, symlinks pointing outside the target and hard links to files
//! outside it, for every `--overwrite` mode, with and without include/exclude selections and
//! subtree selectors.
//!
//! The laws, checked after every restore:
//! - `nothing_outside_the_target_changes`: a sentinel tree next to the target (which the
//!   target's symlinks and hard links point into) is byte- and metadata-identical, directory
//!   modification times included (so nothing was created or removed in it);
//! - `never_changes_what_exists`: with `--overwrite never`, every entry that existed in the
//!   target is still there, unchanged;
//! - `what_is_restored_is_the_snapshot`: every selected entry of the snapshot is in the target
//!   as the snapshot has it, unless the restore named it (or a directory above it) as an
//!   obstacle, or the mode kept what was there;
//! - `only_obstacles_are_errors`: the restore reports nothing but entries in the way.
//!
//! The restores run in-process through the library (an in-memory repository) so that a few
//! hundred cases take seconds; the command-line paths are covered by tests/restore_edges.rs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cairn::backend::MemBackend;
use cairn::backup::{backup, BackupOptions, NoProgress};
use cairn::repo::Repository;
use cairn::restore::{
    restore, select_path, NoRestoreProgress, Overwrite, RestoreOptions, RestoreOutcome, Selected,
};
use cairn::snapshot::tree::Node;
use proptest::prelude::*;

/// Names shared by snapshot trees and pre-existing targets, so that they collide often.
const NAMES: [&str; 4] = ["a", "b", "c", "d"];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL");
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

fn set_mtime(path: &Path, secs: i64) {
    let t = filetime::FileTime::from_unix_time(secs, 123);
    filetime::set_symlink_file_times(path, t, t).expect("set times");
}

/// A random source tree below `dir`.
fn make_source(rng: &mut Rng, dir: &Path, depth: u32, files: &mut Vec<PathBuf>) {
    for name in NAMES {
        let p = dir.join(name);
        match rng.below(20) {
            0..=5 => {}
            6..=11 => {
                let len = [0, 1, 100, 5000][rng.below(4) as usize];
                fs::write(&p, rng.bytes(len)).expect("write");
                set_mtime(&p, 1_600_000_000 + rng.below(3) as i64);
                files.push(p);
            }
            12..=15 if depth < 3 => {
                fs::create_dir(&p).expect("mkdir");
                make_source(rng, &p, depth + 1, files);
            }
            16 => {
                let target = ["../x", "/etc/passwd", "a", "../../.."][rng.below(4) as usize];
                std::os::unix::fs::symlink(target, &p).expect("symlink");
            }
            17 => mkfifo(&p),
            18 if !files.is_empty() => {
                let first = files[rng.below(files.len() as u64) as usize].clone();
                fs::hard_link(first, &p).expect("hard link");
            }
            _ => {
                fs::write(&p, b"same everywhere").expect("write");
                files.push(p);
            }
        }
    }
}

/// The sentinel tree outside the target.
fn make_outside(dir: &Path) {
    fs::create_dir_all(dir.join("d/e")).expect("mkdir");
    fs::write(dir.join("f"), b"outside file").expect("write");
    fs::write(dir.join("g"), b"outside hard-link source").expect("write");
    fs::write(dir.join("d/a"), b"outside a").expect("write");
    fs::write(dir.join("d/e/b"), b"outside b").expect("write");
    mkfifo(&dir.join("p"));
    for p in ["f", "g", "d/a", "d/e/b", "p", "d/e", "d", ""] {
        set_mtime(&dir.join(p), 1_500_000_000);
    }
}

/// A random pre-existing target below `dir`, pointing into `outside` in many ways.
fn make_target(rng: &mut Rng, dir: &Path, outside: &Path, depth: u32) {
    for name in NAMES {
        let p = dir.join(name);
        match rng.below(24) {
            0..=6 => {}
            7..=10 => {
                let len = rng.below(200) as usize;
                fs::write(&p, rng.bytes(len)).expect("write");
                set_mtime(&p, 1_600_000_000 + rng.below(3) as i64);
            }
            11..=14 => {
                fs::create_dir(&p).expect("mkdir");
                if depth < 3 && rng.below(3) > 0 {
                    make_target(rng, &p, outside, depth + 1);
                }
            }
            15 | 16 => std::os::unix::fs::symlink(outside.join("d"), &p).expect("symlink"),
            17 => std::os::unix::fs::symlink(outside.join("f"), &p).expect("symlink"),
            18 => {
                // Relative, climbing out of the target.
                let up = "../".repeat(depth as usize + 2);
                std::os::unix::fs::symlink(format!("{up}outside/d"), &p).expect("symlink")
            }
            19 => std::os::unix::fs::symlink("/nonexistent/dangling", &p).expect("symlink"),
            20 | 21 => fs::hard_link(outside.join("g"), &p).expect("hard link"),
            _ => mkfifo(&p),
        }
    }
}

/// What an entry is, without following symlinks and without opening FIFOs.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fp {
    File {
        content: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: (i64, i64),
    },
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
        /// Only compared where nothing may be added (outside the target).
        mtime: Option<(i64, i64)>,
    },
    Symlink(PathBuf),
    Fifo {
        mode: u32,
        mtime: (i64, i64),
    },
    Other,
}

fn fingerprint(path: &Path, dir_mtimes: bool) -> Fp {
    let m = fs::symlink_metadata(path).expect("lstat");
    let t = m.file_type();
    let mtime = (m.mtime(), m.mtime_nsec());
    if t.is_symlink() {
        Fp::Symlink(fs::read_link(path).expect("readlink"))
    } else if t.is_dir() {
        Fp::Dir {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime: dir_mtimes.then_some(mtime),
        }
    } else if t.is_file() {
        Fp::File {
            content: fs::read(path).expect("read"),
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime,
        }
    } else if t.is_fifo() {
        Fp::Fifo {
            mode: m.mode() & 0o7777,
            mtime,
        }
    } else {
        Fp::Other
    }
}

/// A one-line description of an entry (content by length and a hash, not byte by byte).
fn short(fp: &Fp) -> String {
    match fp {
        Fp::File {
            content,
            mode,
            mtime,
            ..
        } => format!(
            "file of {} bytes (hash {:016x}), mode {mode:o}, mtime {mtime:?}",
            content.len(),
            content
                .iter()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b))
                    .wrapping_mul(0x100_0000_01b3))
        ),
        other => format!("{other:?}"),
    }
}

/// The paths where two fingerprint maps differ, described.
fn differences(a: &BTreeMap<PathBuf, Fp>, b: &BTreeMap<PathBuf, Fp>) -> Vec<String> {
    let keys: BTreeSet<&PathBuf> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter_map(|k| match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if x == y => None,
            (x, y) => Some(format!(
                "{}: {} -> {}",
                k.display(),
                x.map_or("absent".into(), short),
                y.map_or("absent".into(), short)
            )),
        })
        .collect()
}

/// Every entry below `root` (not following symlinks), by relative path.
fn fingerprints(root: &Path, dir_mtimes: bool) -> BTreeMap<PathBuf, Fp> {
    let mut out = BTreeMap::new();
    fn rec(root: &Path, rel: &Path, dir_mtimes: bool, out: &mut BTreeMap<PathBuf, Fp>) {
        let full = root.join(rel);
        let fp = fingerprint(&full, dir_mtimes);
        let is_dir = matches!(fp, Fp::Dir { .. });
        out.insert(rel.to_path_buf(), fp);
        if is_dir {
            for e in fs::read_dir(&full).expect("read_dir") {
                let name = e.expect("entry").file_name();
                rec(root, &rel.join(name), dir_mtimes, out);
            }
        }
    }
    rec(root, Path::new(""), dir_mtimes, &mut out);
    out
}

/// One repository for the whole run: key derivation once.
fn repo() -> &'static Mutex<Repository> {
    static REPO: OnceLock<Mutex<Repository>> = OnceLock::new();
    REPO.get_or_init(|| {
        let opts = common::quick_init_options();
        let mut repo = Repository::init(Arc::new(MemBackend::new()), b"pw", &opts).expect("init");
        repo.load_index().expect("index");
        Mutex::new(repo)
    })
}

/// Which part of the snapshot a case restores.
#[derive(Clone, Copy, Debug)]
enum Subtree {
    /// The backed-up directory itself.
    Root,
    /// Its first subdirectory (the root when it has none).
    FirstDir,
    /// Its first file (the root when it has none).
    FirstFile,
}

#[derive(Clone, Debug)]
struct Case {
    seed: u64,
    overwrite: Overwrite,
    include: Vec<String>,
    exclude: Vec<String>,
    subtree: Subtree,
    verify: bool,
}

fn case() -> impl Strategy<Value = Case> {
    let overwrite = prop_oneof![
        Just(Overwrite::Always),
        Just(Overwrite::IfChanged),
        Just(Overwrite::Never)
    ];
    let pattern = prop_oneof![Just("a"), Just("b"), Just("*c*"), Just("d")];
    let include = prop::collection::vec(pattern.clone().prop_map(String::from), 0..2);
    let exclude = prop::collection::vec(pattern.prop_map(String::from), 0..2);
    let subtree = prop_oneof![
        3 => Just(Subtree::Root),
        1 => Just(Subtree::FirstDir),
        1 => Just(Subtree::FirstFile),
    ];
    (
        any::<u64>(),
        overwrite,
        include,
        exclude,
        subtree,
        any::<bool>(),
    )
        .prop_map(
            |(seed, overwrite, include, exclude, subtree, verify)| Case {
                seed: seed | 1,
                overwrite,
                include,
                exclude,
                subtree,
                verify,
            },
        )
}

/// The selected non-directory entries of the restored part of the snapshot, by their path
/// relative to the target, with the source path they came from.
fn expected(
    src: &Path,
    restored_from: &Path,
    single: bool,
    sel: &cairn::backup::filter::Selection,
) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    if single {
        let name = restored_from.file_name().expect("a name");
        if sel.accepts(restored_from) {
            out.push((PathBuf::from(name), restored_from.to_path_buf()));
        }
        return out;
    }
    for (rel, fp) in fingerprints(restored_from, false) {
        if rel.as_os_str().is_empty() || matches!(fp, Fp::Dir { .. }) {
            continue;
        }
        let source = restored_from.join(&rel);
        if sel.accepts(&source) {
            out.push((rel, source));
        }
    }
    let _ = src;
    out
}

fn run_case(c: &Case) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let outside = tmp.path().join("outside");
    let target = tmp.path().join("target");
    fs::create_dir(&src).expect("mkdir");
    fs::create_dir(&target).expect("mkdir");
    let mut rng = Rng(c.seed);
    let mut files = Vec::new();
    make_source(&mut rng, &src, 0, &mut files);
    make_outside(&outside);

    let mut repo = repo().lock().unwrap_or_else(|p| p.into_inner());
    let opts = BackupOptions {
        paths: vec![src.clone()],
        host: "h".into(),
        time_ns: 1,
        threads: 1,
        ..BackupOptions::default()
    };
    let out = backup(&mut repo, &opts, &NoProgress).expect("backup");
    let snap = repo
        .read_snapshot(&out.snapshot_id.expect("a snapshot"))
        .expect("snapshot");

    // Which part is restored, and where the target's pre-existing tree goes.
    let first = |want_dir: bool| -> Option<PathBuf> {
        NAMES.iter().map(|n| src.join(n)).find(|p| {
            fs::symlink_metadata(p).is_ok_and(|m| if want_dir { m.is_dir() } else { m.is_file() })
        })
    };
    let (from, single) = match c.subtree {
        Subtree::Root => (src.clone(), false),
        Subtree::FirstDir => (first(true).unwrap_or(src.clone()), false),
        Subtree::FirstFile => match first(false) {
            Some(f) => (f, true),
            None => (src.clone(), false),
        },
    };
    make_target(&mut rng, &target, &outside, 0);

    let outside_before = fingerprints(&outside, true);
    let target_before = fingerprints(&target, false);
    // With directory times: `never` keeps even those.
    let target_before_timed = fingerprints(&target, true);
    let sel = cairn::backup::filter::Selection::new(&c.include, &c.exclude, &[]).expect("patterns");
    let selector: Option<cairn::restore::Selector> = if sel.is_everything() {
        None
    } else {
        let sel = sel.clone();
        Some(Arc::new(move |p: &Path, _: &Node| sel.accepts(p)))
    };
    let sub = from.to_str().expect("UTF-8 temp path");
    let selected = select_path(&repo, snap.tree, sub).expect("select");
    prop_assert_eq!(matches!(selected, Selected::Entry(_)), single);
    let ropts = RestoreOptions {
        target: target.clone(),
        overwrite: c.overwrite,
        verify: c.verify,
        select: selector,
        base: PathBuf::from(sub.trim_start_matches('/')),
        threads: 2,
        ..RestoreOptions::default()
    };
    let outcome: RestoreOutcome =
        restore(&repo, &selected, &ropts, &NoRestoreProgress).expect("the restore runs");
    drop(repo);

    // nothing_outside_the_target_changes
    let outside_after = fingerprints(&outside, true);
    let changed = differences(&outside_before, &outside_after);
    prop_assert!(
        changed.is_empty(),
        "the tree outside the target changed: {changed:?}"
    );

    // only_obstacles_are_errors
    prop_assert!(outcome.damaged.is_empty(), "damaged: {:?}", outcome.damaged);
    for e in &outcome.errors {
        prop_assert!(
            e.error.contains("in the way")
                || (c.verify
                    && e.error
                        .contains("the existing file differs from the snapshot")),
            "an error that is not an obstacle: {}: {}",
            e.path.display(),
            e.error
        );
    }
    let blocked: BTreeSet<PathBuf> = outcome
        .errors
        .iter()
        .map(|e| {
            e.path
                .strip_prefix(&target)
                .expect("errors name paths in the target")
                .to_path_buf()
        })
        .collect();
    let under_blocked = |rel: &Path| rel.ancestors().any(|a| blocked.contains(a));

    // never_changes_what_exists
    if c.overwrite == Overwrite::Never {
        for (rel, before) in &target_before_timed {
            let full = target.join(rel);
            prop_assert!(
                fs::symlink_metadata(&full).is_ok(),
                "{} existed and is gone",
                rel.display()
            );
            let after = fingerprint(&full, true);
            prop_assert!(
                before == &after,
                "{} changed: {} became {}",
                rel.display(),
                short(before),
                short(&after)
            );
        }
    }

    // what_is_restored_is_the_snapshot
    let wanted = expected(&src, &from, single, &sel);
    for (rel, source) in &wanted {
        if under_blocked(rel) {
            continue;
        }
        let existed = target_before.get(rel);
        let kept = match c.overwrite {
            Overwrite::Never => target_before.contains_key(rel),
            Overwrite::IfChanged => match (existed, fingerprint(source, false)) {
                (
                    Some(Fp::File { content, mtime, .. }),
                    Fp::File {
                        content: c2,
                        mtime: m2,
                        ..
                    },
                ) => content.len() == c2.len() && *mtime == m2,
                _ => false,
            },
            Overwrite::Always => false,
        };
        if kept {
            continue;
        }
        let got = target.join(rel);
        prop_assert!(
            fs::symlink_metadata(&got).is_ok(),
            "{} was not restored (errors: {:?})",
            rel.display(),
            outcome.errors
        );
        let (want, have) = (fingerprint(source, false), fingerprint(&got, false));
        // Content, mode, owner and modification time (a symlink: its target).
        prop_assert!(
            want == have,
            "{}: {} restored as {}",
            rel.display(),
            short(&want),
            short(&have)
        );
    }
    // Entries the selection left out were not made.
    if !single {
        let wanted: BTreeSet<&PathBuf> = wanted.iter().map(|(r, _)| r).collect();
        for (rel, fp) in fingerprints(&target, false) {
            if matches!(fp, Fp::Dir { .. }) || target_before.contains_key(&rel) {
                continue;
            }
            prop_assert!(
                wanted.contains(&rel),
                "{} was restored but not selected",
                rel.display()
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn restores_into_lived_in_targets_keep_every_law(c in case()) {
        run_case(&c)?;
    }
}

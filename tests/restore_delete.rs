//! `cairn restore --delete` and `--dry-run` through the real binary.
//!
//! `--delete`: every class of thing a target may hold that the snapshot lacks (extra files at
//! several depths, extra directories with content, symlinks pointing outside or to a directory
//! inside, a file where the snapshot has a directory and the reverse, FIFOs, names that are not
//! UTF-8, read-only directories) is removed and the target then equals the snapshot, while
//! what the symlinks point to outside is untouched; `--include`/`--exclude` keep what they
//! leave out; `SNAPSHOT:SUBPATH` touches only that subtree; `--overwrite never` and a single
//! file selected are refused. `--dry-run` writes nothing (no byte, no time, no inode: every
//! entry's ctime is compared) and lists exactly what the real run then does, as measured on
//! the file system before and after.

// A failed unwrap in a test is a test failure with a backtrace, which is what it should be.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

use common::*;

/// Everything about an entry that any write would change, atime aside: type, inode, size,
/// mode, owner, link count, mtime and ctime (to the nanosecond), content or link target.
fn desc(p: &Path) -> String {
    let m = fs::symlink_metadata(p).expect("lstat");
    let what = if m.file_type().is_symlink() {
        format!("-> {:?}", fs::read_link(p).expect("readlink"))
    } else if m.is_file() {
        format!("{:?}", blake3::hash(&fs::read(p).expect("read")))
    } else {
        String::new()
    };
    format!(
        "{:?} ino {} size {} mode {:o} owner {}:{} links {} mtime {}.{} ctime {}.{} {what}",
        m.file_type(),
        m.ino(),
        m.size(),
        m.mode(),
        m.uid(),
        m.gid(),
        m.nlink(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    )
}

/// [`desc`] of every entry below `root`, the root itself included (key `""`); symlinks are not
/// followed. Empty when `root` does not exist.
fn state(root: &Path) -> BTreeMap<PathBuf, String> {
    if fs::symlink_metadata(root).is_err() {
        return BTreeMap::new();
    }
    walk(root)
        .into_iter()
        .map(|rel| {
            let d = desc(&root.join(&rel));
            (rel, d)
        })
        .collect()
}

fn is_dir(desc: &str) -> bool {
    desc.starts_with("FileType { is_file: false, is_dir: true")
}

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

fn mkfifo(p: &Path) {
    sh("mkfifo", &[p.as_os_str()]);
}

/// The source: files at several depths (empty, small, several chunks), hard links, a symlink,
/// a FIFO, a name that is not UTF-8, an empty directory, `shape_a` (a directory) and `shape_b`
/// (a file) whose shapes the messed-up target swaps.
fn source(f: &Fixture) -> PathBuf {
    let src = f.path("src");
    write(src.join("top.txt"), b"top");
    write(src.join("empty"), b"");
    write(src.join("big.bin"), random_bytes(1, 3 << 20));
    write(src.join("sub/mid.txt"), b"mid");
    write(src.join("sub/deeper/low.txt"), b"low");
    fs::hard_link(src.join("sub/mid.txt"), src.join("sub/mid-link.txt")).unwrap();
    write(src.join("shape_a/inside"), b"a dir in the snapshot");
    write(src.join("shape_b"), b"a file in the snapshot");
    write(src.join("linked_dir/kept"), b"kept");
    write(src.join(os(b"n\xffme")), b"not utf-8");
    fs::create_dir_all(src.join("hollow")).unwrap();
    symlink("sub/mid.txt", src.join("rel-link")).unwrap();
    mkfifo(&src.join("pipe"));
    for (i, d) in ["sub/deeper", "sub", "shape_a", "linked_dir", "hollow", ""]
        .iter()
        .enumerate()
    {
        set_mtime(src.join(d), 1_600_000_000 + i as i64, 0);
    }
    src
}

/// A directory outside the target with content that must survive, and its state.
fn outside(f: &Fixture) -> (PathBuf, BTreeMap<PathBuf, String>) {
    let out = f.path("outside");
    write(out.join("precious"), b"outside, never deleted");
    write(out.join("deep/also"), b"outside too");
    (out.clone(), state(&out))
}

/// Fills `t` (a restore of `src`) with everything `--delete` has to remove, of every class.
fn mess_up(t: &Path, out: &Path) {
    // Extra files at several depths, and stale content in restored files.
    write(t.join("extra.txt"), b"extra");
    write(t.join("sub/extra2"), b"extra");
    write(t.join("sub/deeper/extra3"), b"extra");
    write(t.join("top.txt"), b"stale top");
    // Extra directories with content, and an empty one.
    write(t.join("junk/a/b/c.txt"), b"junk");
    write(t.join("junk/a/d"), b"junk");
    fs::create_dir_all(t.join("junk/empty")).unwrap();
    // Symlinks pointing outside (to a directory with files and to a file), and to a
    // directory inside.
    symlink(out, t.join("escape")).unwrap();
    symlink(out.join("precious"), t.join("sub/esc-file")).unwrap();
    symlink("sub", t.join("inlink")).unwrap();
    // A directory of the snapshot swapped for a symlink to the outside directory.
    fs::remove_dir_all(t.join("linked_dir")).unwrap();
    symlink(out, t.join("linked_dir")).unwrap();
    // A file where the snapshot has a directory, and a full directory where it has a file.
    fs::remove_dir_all(t.join("shape_a")).unwrap();
    write(t.join("shape_a"), b"a file in the target");
    fs::remove_file(t.join("shape_b")).unwrap();
    write(t.join("shape_b/x/y"), b"a dir in the target");
    symlink(out, t.join("shape_b/x/out")).unwrap();
    // Special files and names that are not UTF-8.
    mkfifo(&t.join("pipe_extra"));
    mkfifo(&t.join("sub/deeper/pipe2"));
    write(t.join(os(b"bad\xfe")), b"x");
    write(t.join(os(b"d\xfd/f\xfc")), b"x");
    // Read-only extra directories.
    write(t.join("ro/inner/f"), b"read-only");
    chmod(t.join("ro/inner"), 0o500);
    chmod(t.join("ro"), 0o555);
    write(t.join("sub/locked/f"), b"locked");
    chmod(t.join("sub/locked"), 0o500);
}

fn restore(f: &Fixture, selector: &str, target: &Path, extra: &[&str]) -> Run {
    f.cmd()
        .args(["restore", selector, "--target"])
        .arg(target)
        .args(extra)
        .run()
}

fn restore_json(f: &Fixture, selector: &str, target: &Path, extra: &[&str]) -> Run {
    f.cmd()
        .args(["--json", "restore", selector, "--target"])
        .arg(target)
        .args(extra)
        .run()
}

/// A path of a JSON list entry (exact bytes from `path_hex` when it is not UTF-8), relative
/// to `target`.
fn json_path(v: &serde_json::Value, target: &Path) -> PathBuf {
    let full = match v["path_hex"].as_str() {
        Some(h) => PathBuf::from(os(&hex::decode(h).unwrap())),
        None => PathBuf::from(v["path"].as_str().unwrap()),
    };
    full.strip_prefix(target).unwrap().to_path_buf()
}

fn json_set(v: &serde_json::Value, target: &Path) -> BTreeSet<PathBuf> {
    v.as_array()
        .unwrap_or_else(|| panic!("a list: {v}"))
        .iter()
        .map(|e| json_path(e, target))
        .collect()
}

/// What a real restore did, measured on the file system: (created, replaced, unchanged,
/// deleted). Directories found where the snapshot has one are in none of them.
type Effect = [BTreeSet<PathBuf>; 4];

fn effect(before: &BTreeMap<PathBuf, String>, after: &BTreeMap<PathBuf, String>) -> Effect {
    let mut e: Effect = Default::default();
    for (p, a) in after {
        match before.get(p) {
            None => e[0].insert(p.clone()),
            Some(b) if is_dir(a) && is_dir(b) => continue,
            Some(b) if a != b => e[1].insert(p.clone()),
            Some(_) => e[2].insert(p.clone()),
        };
    }
    e[3] = before
        .keys()
        .filter(|p| !after.contains_key(*p))
        .cloned()
        .collect();
    e
}

/// The dry run's lists, in [`Effect`]'s order.
fn listed(dry: &serde_json::Value, target: &Path) -> Effect {
    ["created", "replaced", "unchanged", "deleted"].map(|k| json_set(&dry["paths"][k], target))
}

/// A snapshot of `src`, and its contents restored into `t` (the target `--delete` then works
/// on).
fn backed_up_and_restored(f: &Fixture, src: &Path, t: &Path) -> String {
    f.backup(&[src], &[]);
    let sel = format!("latest:{}", src.display());
    restore(f, &sel, t, &[]).ok();
    assert_same_entries(src, t);
    sel
}

#[test]
fn delete_makes_the_target_equal_the_snapshot_and_never_touches_what_symlinks_point_to() {
    let f = Fixture::new();
    let src = source(&f);
    let (out, out_before) = outside(&f);
    let t = f.path("t");
    let sel = backed_up_and_restored(&f, &src, &t);
    mess_up(&t, &out);
    let run = restore_json(&f, &sel, &t, &["--delete"]);
    assert_eq!(state(&out), out_before, "the outside directory changed");
    run.ok();
    assert_same_entries(&src, &t);
    let s = run.summary();
    let deleted = json_set(&s["deleted_paths"], &t);
    assert_eq!(s["deleted"].as_u64().unwrap() as usize, deleted.len());
    for p in [
        "extra.txt",
        "sub/deeper/extra3",
        "junk/a/b/c.txt",
        "junk/a/b",
        "junk",
        "escape",
        "sub/esc-file",
        "inlink",
        "shape_b/x/y",
        "shape_b/x/out",
        "shape_b/x",
        "pipe_extra",
        "ro/inner/f",
        "ro",
        "sub/locked/f",
    ] {
        assert!(
            deleted.contains(Path::new(p)),
            "{p} not reported: {deleted:?}"
        );
    }
    assert!(deleted.contains(Path::new(os(b"d\xfd/f\xfc"))));
    // The snapshot's own entries (and the `shape_b` directory, replaced by its file) are
    // never reported deleted.
    for p in ["top.txt", "sub", "shape_b", "linked_dir", "shape_a"] {
        assert!(!deleted.contains(Path::new(p)), "{p} reported deleted");
    }
    // Human output: the count, and each path with -v.
    mess_up(&t, &out);
    let run = f
        .cmd()
        .args(["-v", "restore", &sel, "--delete", "--target"])
        .arg(&t)
        .run();
    run.ok();
    assert!(
        run.stdout().contains("deleted 25 entries"),
        "{}",
        run.stdout()
    );
    assert!(run.stdout().contains("junk/a/b/c.txt"), "{}", run.stdout());
    assert_same_entries(&src, &t);
    assert_eq!(state(&out), out_before);
}

/// Without `--delete`, nothing the snapshot lacks is touched (the behaviour `--delete` adds
/// to, and what a wrongly wired flag would break), and the directory in the way is reported.
#[test]
fn without_delete_everything_the_snapshot_lacks_stays() {
    let f = Fixture::new();
    let src = source(&f);
    let (out, _) = outside(&f);
    let t = f.path("t");
    let sel = backed_up_and_restored(&f, &src, &t);
    mess_up(&t, &out);
    let run = restore(&f, &sel, &t, &[]);
    run.expect(1);
    assert!(run.stderr.contains("shape_b") && run.stderr.contains("not empty"));
    for p in [
        "extra.txt",
        "junk/a/b/c.txt",
        "escape",
        "ro/inner/f",
        "shape_b/x/y",
    ] {
        assert!(fs::symlink_metadata(t.join(p)).is_ok(), "{p} was removed");
    }
}

#[test]
fn a_dry_run_writes_nothing_into_an_existing_or_a_missing_target() {
    let f = Fixture::new();
    let src = source(&f);
    let (out, out_before) = outside(&f);
    let t = f.path("t");
    let sel = backed_up_and_restored(&f, &src, &t);
    mess_up(&t, &out);
    let missing = f.path("parent/missing");
    fs::create_dir_all(f.path("parent")).unwrap();
    let cases: [&[&str]; 5] = [
        &["--dry-run"],
        &["--dry-run", "--delete"],
        &["--dry-run", "--delete", "--overwrite", "if-changed"],
        &["--dry-run", "--overwrite", "never"],
        &["--dry-run", "--delete", "--include", "*.txt", "--verify"],
    ];
    for extra in cases {
        for json in [false, true] {
            let (before, parent_before) = (state(&t), state(&f.path("parent")));
            let run = if json {
                restore_json(&f, &sel, &t, extra)
            } else {
                restore(&f, &sel, &t, extra)
            };
            run.ok();
            assert_eq!(state(&t), before, "{extra:?} changed the target");
            let run = if json {
                restore_json(&f, &sel, &missing, extra)
            } else {
                restore(&f, &sel, &missing, extra)
            };
            run.ok();
            assert!(
                fs::symlink_metadata(&missing).is_err(),
                "{extra:?} made the missing target"
            );
            assert_eq!(state(&f.path("parent")), parent_before);
            if json {
                assert_eq!(run.summary()["target_created"], true);
                assert_eq!(run.summary()["dry_run"], true);
            } else {
                assert!(
                    run.stdout().contains("would be created"),
                    "{}",
                    run.stdout()
                );
            }
        }
    }
    assert_eq!(state(&out), out_before);
}

/// The dry run's lists are what the real run then does, measured on the file system: in a
/// messed-up target with `--delete` (each `--overwrite` that allows it, with a selection too),
/// without it, and into a missing target.
#[test]
fn the_dry_run_lists_exactly_what_the_real_run_then_does() {
    let f = Fixture::new();
    let src = source(&f);
    let (out, out_before) = outside(&f);
    let sel = {
        f.backup(&[&src], &[]);
        format!("latest:{}", src.display())
    };
    let cases: [(&str, &[&str]); 6] = [
        ("delete", &["--delete"]),
        (
            "delete-if-changed",
            &["--delete", "--overwrite", "if-changed"],
        ),
        ("delete-exclude", &["--delete", "--exclude", "deeper"]),
        ("delete-include", &["--delete", "--include", "*.txt"]),
        ("if-changed", &["--overwrite", "if-changed"]),
        ("never", &["--overwrite", "never"]),
    ];
    for (name, extra) in cases {
        let t = f.path(format!("t-{name}"));
        restore(&f, &sel, &t, &[]).ok();
        mess_up(&t, &out);
        let before = state(&t);
        let dry = restore_json(&f, &sel, &t, &[extra, &["--dry-run"][..]].concat());
        dry.ok();
        let dry = dry.summary();
        assert_eq!(state(&t), before, "{name}: the dry run wrote");
        let real = restore_json(&f, &sel, &t, extra);
        let after = state(&t);
        let want = listed(&dry, &t);
        let got = effect(&before, &after);
        for (i, what) in ["created", "replaced", "unchanged", "deleted"]
            .iter()
            .enumerate()
        {
            // What a selection leaves out, and without --delete what the snapshot lacks, is
            // in no list and stays as it is on disk.
            let exact = extra.contains(&"--delete") && !name.contains("clude");
            if i == 2 && !exact {
                assert!(want[2].is_subset(&got[2]), "{name}: unchanged");
                continue;
            }
            assert_eq!(
                want[i], got[i],
                "{name}: {what} differs from the real run's effect"
            );
        }
        let summary = real.summary();
        assert_eq!(json_set(&summary["deleted_paths"], &t), want[3], "{name}");
        // What the dry run says is blocked is what the real run reports (and exits 1 for).
        let blocked = json_set(&dry["paths"]["blocked"], &t);
        let errors = json_set(&summary["errors"], &t);
        assert_eq!(blocked, errors, "{name}: blocked");
        real.expect(if blocked.is_empty() { 0 } else { 1 });
        if name.starts_with("delete") {
            assert!(!want[3].is_empty(), "{name}: nothing to delete?");
        }
        assert_eq!(state(&out), out_before, "{name}: outside changed");
    }
    // A missing target: everything is created, and only that.
    let t = f.path("fresh");
    let dry = restore_json(&f, &sel, &t, &["--dry-run", "--delete"]).summary();
    restore(&f, &sel, &t, &["--delete"]).ok();
    let mut want = listed(&dry, &t);
    want[0].insert(PathBuf::new());
    assert_eq!(want, effect(&BTreeMap::new(), &state(&t)));
    assert_same_entries(&src, &t);
}

/// Paths `--include`/`--exclude` leave out are neither restored nor deleted, whether the
/// snapshot has them or not, and neither are the directories holding them.
#[test]
fn delete_keeps_what_include_and_exclude_leave_out() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a.txt"), b"a");
    write(src.join("b.log"), b"b");
    write(src.join("d/c.txt"), b"c");
    f.backup(&[&src], &[]);
    let sel = format!("latest:{}", src.display());
    let fill = |t: &Path| {
        restore(&f, &sel, t, &[]).ok();
        write(t.join("x.txt"), b"extra");
        write(t.join("y.log"), b"extra log");
        write(t.join("cache/z.txt"), b"extra in cache");
        write(t.join("old/only.txt"), b"extra");
        write(t.join("mixed/m.txt"), b"extra");
        write(t.join("mixed/m.log"), b"extra");
        fs::create_dir_all(t.join("emptydir")).unwrap();
        write(t.join("d/e.log"), b"extra");
    };
    let exists = |t: &Path, p: &str| fs::symlink_metadata(t.join(p)).is_ok();

    let t = f.path("t-exclude");
    fill(&t);
    restore(
        &f,
        &sel,
        &t,
        &["--delete", "--exclude", "*.log", "--exclude", "cache"],
    )
    .ok();
    for gone in ["x.txt", "old", "mixed/m.txt", "emptydir"] {
        assert!(!exists(&t, gone), "exclude: {gone} stayed");
    }
    for kept in [
        "y.log",
        "cache/z.txt",
        "mixed/m.log",
        "d/e.log",
        "a.txt",
        "b.log",
    ] {
        assert!(exists(&t, kept), "exclude: {kept} was deleted");
    }

    let t = f.path("t-include");
    fill(&t);
    restore(&f, &sel, &t, &["--delete", "--include", "*.txt"]).ok();
    // `cache` held only what the selection deletes: it goes; `emptydir` held nothing and is
    // not selected itself: it stays.
    for gone in ["x.txt", "cache", "old", "mixed/m.txt"] {
        assert!(!exists(&t, gone), "include: {gone} stayed");
    }
    for kept in ["y.log", "mixed/m.log", "d/e.log", "emptydir", "b.log"] {
        assert!(exists(&t, kept), "include: {kept} was deleted");
    }
}

/// With `SNAPSHOT:SUBPATH` the target stands for that subtree: a target holding the whole
/// snapshot loses only what that subtree lacks.
#[test]
fn delete_with_a_subpath_only_touches_that_subtree() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a/one"), b"1");
    write(src.join("b/two"), b"2");
    f.backup(&[&src], &[]);
    let t = f.path("t");
    f.restore_latest(&t);
    let root = restored(&t, &src);
    write(root.join("a/extra"), b"x");
    write(root.join("a/sub/extra"), b"x");
    write(root.join("b/extra"), b"x");
    write(root.join("extra"), b"x");
    write(t.join("extra-at-top"), b"x");
    let sel = format!("latest:{}/a", src.display());
    restore(&f, &sel, &root.join("a"), &["--delete"]).ok();
    assert_same_entries(&src.join("a"), &root.join("a"));
    for kept in [
        root.join("b/extra"),
        root.join("extra"),
        t.join("extra-at-top"),
    ] {
        assert!(kept.exists(), "{} was deleted", kept.display());
    }
    // The whole snapshot with --delete then removes the rest, inside the target only.
    let (out, out_before) = outside(&f);
    symlink(&out, root.join("b/to-outside")).unwrap();
    restore(&f, "latest", &t, &["--delete"]).ok();
    assert_eq!(
        walk(&t).len(),
        walk(&src).len() + src.components().count() - 1
    );
    assert_same_entries(&src, &root);
    assert_eq!(state(&out), out_before);
}

/// `--overwrite never` promises to change nothing that exists, and a single file selected
/// leaves "the rest" undefined: both are refused, before anything is written, dry run or not.
#[test]
fn delete_is_refused_with_overwrite_never_and_for_a_single_file() {
    let f = Fixture::new();
    let src = source(&f);
    let (out, _) = outside(&f);
    let t = f.path("t");
    let sel = backed_up_and_restored(&f, &src, &t);
    mess_up(&t, &out);
    let file_sel = format!("{sel}/top.txt");
    let cases: [(&str, &[&str], &str); 4] = [
        (
            &sel,
            &["--delete", "--overwrite", "never"],
            "--overwrite never",
        ),
        (
            &sel,
            &["--delete", "--overwrite", "never", "--dry-run"],
            "--overwrite never",
        ),
        (&file_sel, &["--delete"], "single file"),
        (&file_sel, &["--delete", "--dry-run"], "single file"),
    ];
    for (selector, extra, why) in cases {
        let before = state(&t);
        for json in [false, true] {
            let run = if json {
                restore_json(&f, selector, &t, extra)
            } else {
                restore(&f, selector, &t, extra)
            };
            run.expect(1);
            run.assert_no_panic();
            assert!(run.stderr.contains(why), "{extra:?}: {}", run.stderr);
            assert!(run.stderr.contains("--delete"), "{}", run.stderr);
            assert_eq!(state(&t), before, "{extra:?} changed the target");
        }
    }
}

/// An extra directory tree far deeper than the descriptors the restore may open (limit 128):
/// the sweep keeps only a bounded number open, so the whole tree goes, in a dry run listed
/// entry by entry, and a directory the snapshot has that holds one is swept too.
#[test]
fn delete_removes_an_extra_tree_deeper_than_the_descriptor_limit() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("keep/file"), b"kept");
    let t = f.path("t");
    let sel = backed_up_and_restored(&f, &src, &t);
    let depth = 300;
    let mut deep = t.join("junk");
    let mut in_keep = t.join("keep/junk");
    for i in 0..depth {
        deep.push(format!("{}", i % 10));
        in_keep.push("d");
    }
    write(deep.join("bottom"), b"x");
    write(in_keep.join("bottom"), b"x");
    let before = state(&t);
    let dry = f
        .cmd()
        .fd_limit(128)
        .args([
            "--json",
            "restore",
            &sel,
            "--delete",
            "--dry-run",
            "--target",
        ])
        .arg(&t)
        .run();
    dry.ok();
    assert_eq!(state(&t), before, "the dry run wrote");
    let listed = json_set(&dry.summary()["paths"]["deleted"], &t);
    assert_eq!(listed.len(), 2 * (depth + 2), "{}", dry.stderr);
    let run = f
        .cmd()
        .fd_limit(128)
        .args(["restore", &sel, "--delete", "--target"])
        .arg(&t)
        .run();
    run.ok();
    assert_same_entries(&src, &t);
}

/// Runs cairn as `uid` (when given) with the fixture's password.
fn run_as(f: &Fixture, uid: Option<u32>, args: &[&OsStr]) -> (i32, String) {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
    for (k, _) in std::env::vars_os() {
        if k.as_bytes().starts_with(b"CAIRN_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("CAIRN_PASSWORD", PASSWORD)
        .env("XDG_CACHE_HOME", f.path("cache-user"))
        .arg("--no-progress")
        .arg("-r")
        .arg(&f.repo)
        .args(args)
        .stdin(std::process::Stdio::null());
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Read-only directories the snapshot lacks (`r-x` and `r-x` for the owner only), holding
/// files and further read-only directories, go too for a user without root's privileges: the
/// permission to remove their contents is given back through each directory's descriptor.
/// As root (whom permissions do not stop) the run is made as an unprivileged owner.
#[test]
fn delete_removes_read_only_directories_as_an_unprivileged_user() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a/keep"), b"kept");
    f.backup(&[&src], &[]);
    // SAFETY: geteuid has no preconditions.
    let uid = (unsafe { libc::geteuid() } == 0).then_some(65534u32);
    let t = f.path("t");
    let sel = format!("latest:{}", src.display());
    restore(&f, &sel, &t, &[]).ok();
    write(t.join("ro/inner/f"), b"x");
    write(t.join("ro/g"), b"y");
    write(t.join("a/locked/deeper/h"), b"z");
    fs::create_dir_all(f.path("cache-user")).unwrap();
    if let Some(uid) = uid {
        chmod(f.tmp.path(), 0o755);
        for root in [&f.repo, &t, &f.path("cache-user")] {
            for rel in walk(root) {
                std::os::unix::fs::lchown(root.join(rel), Some(uid), Some(uid)).unwrap();
            }
        }
    }
    for (d, mode) in [
        ("ro/inner", 0o500),
        ("ro", 0o555),
        ("a/locked/deeper", 0o500),
        ("a/locked", 0o500),
    ] {
        chmod(t.join(d), mode);
    }
    let (code, out) = run_as(
        &f,
        uid,
        &[
            "restore".as_ref(),
            sel.as_ref(),
            "--delete".as_ref(),
            "--target".as_ref(),
            t.as_os_str(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    let rel = |root: &Path| walk(root).into_iter().collect::<BTreeSet<_>>();
    assert_eq!(rel(&t), rel(&src), "{out}");
}

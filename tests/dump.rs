//! `cairn dump` through the real binary, read back by independent tools: a file's bytes to
//! stdout and to `--target` (empty, multi-chunk, larger than the memory the process may
//! use), a directory as tar extracted by GNU `tar` (also straight from a pipe) and compared
//! entry for entry with the source, as zip extracted by Info-ZIP `unzip` and compared for
//! content, modes, mtimes and symlinks, the whole snapshot from `latest:/`, and every
//! malformed `SNAPSHOT:PATH` or target refused with a message naming it.

// A failed unwrap in a test is a test failure with a backtrace, which is what it should be.
#![allow(clippy::unwrap_used)]

mod common;

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// `SNAPSHOT:PATH` for an absolute source path.
fn sel(snap: &str, path: &Path) -> std::ffi::OsString {
    let mut s = std::ffi::OsString::from(format!("{snap}:"));
    s.push(path.as_os_str());
    s
}

/// A tree with every kind of entry a tar can hold: empty and multi-chunk files, nested
/// directories with their own modes and times, setuid and private modes, relative,
/// absolute and dangling symlinks, a hard-link pair, a FIFO, names longer than a tar header
/// holds, a non-UTF-8 name, and nanosecond and pre-1970 mtimes.
fn rich_tree(src: &Path, utf8_only: bool) {
    write(src.join("empty"), b"");
    write(src.join("small.txt"), b"hello\n");
    write(src.join("big.bin"), random_bytes(7, 5 << 20));
    write(src.join("dir/sub/deep.txt"), b"deep");
    write(src.join("dir/private"), b"secret");
    chmod(src.join("dir/private"), 0o600);
    write(src.join("tool"), b"#!/bin/sh\n");
    chmod(src.join("tool"), 0o755);
    std::os::unix::fs::symlink("small.txt", src.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", src.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("no/such/target", src.join("dangling")).unwrap();
    write(src.join("dir/linked"), b"one inode, two names");
    fs::hard_link(src.join("dir/linked"), src.join("dir/sub/linked-too")).unwrap();
    let long_dir = src.join("d".repeat(120));
    write(
        long_dir.join(format!("{}.txt", "n".repeat(150))),
        b"long name",
    );
    std::os::unix::fs::symlink("x".repeat(200), long_dir.join("long-target")).unwrap();
    set_mtime(src.join("small.txt"), 1_600_000_000, 123_456_789);
    set_mtime(src.join("empty"), 1_500_000_000, 0);
    set_mtime(src.join("rel-link"), 1_400_000_000, 42);
    if !utf8_only {
        chmod(src.join("tool"), 0o4755);
        let odd = src.join(OsStr::from_bytes(b"caf\xe9"));
        write(odd.join(OsStr::from_bytes(b"\xff\xfe.txt")), b"latin-1");
        sh("mkfifo", &[src.join("fifo").as_os_str()]);
        set_mtime(src.join("dir/sub/deep.txt"), -86_400 * 400, 500_000_000);
    }
    chmod(src.join("dir"), 0o750);
    for (d, t) in [("dir/sub", 1_300_000_001), ("dir", 1_300_000_002)] {
        set_mtime(src.join(d), t, 7);
    }
}

#[test]
fn a_file_is_written_byte_for_byte_to_stdout_and_to_a_new_target() {
    let f = Fixture::small_packs();
    let src = f.path("src");
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("one", b"1".to_vec()),
        ("multi-chunk", random_bytes(1, 9 << 20)),
        ("text", b"line\n".repeat(100_000)),
    ];
    for (name, data) in &files {
        write(src.join(name), data);
    }
    let snap = f.backup(&[&src], &[]);
    for (name, data) in &files {
        let run = f
            .cmd()
            .arg("dump")
            .arg(sel(&snap[..8], &src.join(name)))
            .run();
        run.ok();
        assert!(run.stdout == *data, "{name}: stdout differs from the file");
        let target = f.path(format!("out-{name}"));
        f.cmd()
            .arg("dump")
            .arg(sel("latest", &src.join(name)))
            .arg("--target")
            .arg(&target)
            .run()
            .ok();
        assert!(
            fs::read(&target).unwrap() == *data,
            "{name}: --target differs"
        );
    }
    let leftovers: Vec<_> = fs::read_dir(f.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.as_bytes().starts_with(b"."))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn a_file_larger_than_the_memory_limit_streams_through() {
    const MEM: u64 = 64 << 20;
    const BLOCKS: u64 = 20;
    let f = Fixture::new();
    let src = f.path("src");
    fs::create_dir_all(&src).unwrap();
    // 80 MiB of a repeating 4 MiB block: quick to back up (it deduplicates), yet more than
    // the whole address space the dump may use.
    let block = random_bytes(3, 4 << 20);
    let mut file = fs::File::create(src.join("huge")).unwrap();
    for _ in 0..BLOCKS {
        file.write_all(&block).unwrap();
    }
    drop(file);
    f.backup(&[&src], &[]);
    let target = f.path("huge.out");
    f.cmd()
        .mem_limit(MEM)
        .arg("dump")
        .arg(sel("latest", &src.join("huge")))
        .arg("--target")
        .arg(&target)
        .run()
        .ok();
    assert_eq!(fs::metadata(&target).unwrap().len(), BLOCKS << 22);
    let mut back = fs::File::open(&target).unwrap();
    let mut buf = vec![0u8; block.len()];
    for i in 0..BLOCKS {
        std::io::Read::read_exact(&mut back, &mut buf).unwrap();
        assert!(buf == block, "block {i} differs");
    }
    // A tar of the same file, through the same limit.
    let tar_target = f.path("huge.tar");
    f.cmd()
        .mem_limit(MEM)
        .arg("dump")
        .arg(sel("latest", &src))
        .args(["--target"])
        .arg(&tar_target)
        .run()
        .ok();
    assert!(fs::metadata(&tar_target).unwrap().len() > BLOCKS << 22);
}

/// Extracts a tar file into a new directory with GNU tar, as root keeping owners.
fn gnu_untar(tar: &Path, archive: &Path, into: &Path) {
    fs::create_dir_all(into).unwrap();
    let out = Command::new(tar)
        .args(["--extract", "--same-permissions", "--file"])
        .arg(archive)
        .arg("-C")
        .arg(into)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar -x failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // GNU tar notes a pre-1970 time (and still sets it); anything else is a problem.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<_> = stderr
        .lines()
        .filter(|l| !l.contains("implausibly old time stamp"))
        .collect();
    assert!(warnings.is_empty(), "tar warned: {stderr}");
}

#[test]
fn a_directory_as_tar_extracts_with_gnu_tar_to_the_same_tree() {
    let Some(tar) = require_tool("tar", "tar") else {
        return;
    };
    if !require_root("GNU tar keeps owners and makes the FIFO as root") {
        return;
    }
    let f = Fixture::small_packs();
    let src = f.path("src");
    rich_tree(&src, false);
    f.backup(&[&src], &[]);
    // To stdout, then extracted.
    let run = f.cmd().arg("dump").arg(sel("latest", &src)).run();
    run.ok();
    let archive = f.path("src.tar");
    fs::write(&archive, &run.stdout).unwrap();
    let out = f.path("x1");
    gnu_untar(&tar, &archive, &out);
    assert_same_tree(&src, &out.join("src"));
    // Straight from a pipe into `tar -x`: nothing needs to seek.
    let out2 = f.path("x2");
    fs::create_dir_all(&out2).unwrap();
    let mut dump = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .env("TZ", "UTC")
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("XDG_CACHE_HOME", f.path("cache"))
        .arg("-r")
        .arg(&f.repo)
        .arg("dump")
        .arg(sel("latest", &src.join("dir")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let untar = Command::new(&tar)
        .args(["-x", "-p", "-C"])
        .arg(&out2)
        .stdin(dump.stdout.take().unwrap())
        .output()
        .unwrap();
    let dumped = dump.wait_with_output().unwrap();
    assert!(
        dumped.status.success(),
        "{}",
        String::from_utf8_lossy(&dumped.stderr)
    );
    assert!(
        untar.status.success(),
        "{}",
        String::from_utf8_lossy(&untar.stderr)
    );
    // The pair's two names are both inside `dir`: still one inode.
    assert_same_tree(&src.join("dir"), &out2.join("dir"));
    let (a, b) = (out2.join("dir/linked"), out2.join("dir/sub/linked-too"));
    assert_eq!(
        fs::metadata(a).unwrap().ino(),
        fs::metadata(b).unwrap().ino()
    );
}

#[test]
fn the_whole_snapshot_dumps_from_latest_root() {
    let Some(tar) = require_tool("tar", "tar") else {
        return;
    };
    if !require_root("GNU tar keeps owners as root") {
        return;
    }
    let f = Fixture::new();
    let (a, b) = (f.path("a"), f.path("b"));
    rich_tree(&a, true);
    write(b.join("other.txt"), b"second path");
    f.backup(&[&a, &b], &[]);
    for selector in ["latest:/", "latest"] {
        let archive = f.path(format!("root-{}.tar", selector.len()));
        f.cmd()
            .args(["dump", selector, "--target"])
            .arg(&archive)
            .run()
            .ok();
        let out = f.path(format!("root-{}", selector.len()));
        gnu_untar(&tar, &archive, &out);
        assert_same_tree(&a, &restored(&out, &a));
        assert_same_tree(&b, &restored(&out, &b));
    }
}

/// Type, content, permission bits, mtime (whole seconds) and symlink target of every entry
/// below `root`, by relative path; symlinks' own mtimes are left out (`unzip` sets none).
fn zip_view(root: &Path) -> Vec<(PathBuf, String)> {
    walk(root)
        .into_iter()
        .filter(|r| !r.as_os_str().is_empty())
        .map(|rel| {
            let p = root.join(&rel);
            let m = fs::symlink_metadata(&p).unwrap();
            let desc = if m.file_type().is_symlink() {
                format!("symlink -> {}", fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                format!("dir {:o} {}", m.mode() & 0o777, m.mtime())
            } else {
                format!(
                    "file {:o} {} {:?}",
                    m.mode() & 0o777,
                    m.mtime(),
                    blake3::hash(&fs::read(&p).unwrap())
                )
            };
            (rel, desc)
        })
        .collect()
}

#[test]
fn a_directory_as_zip_extracts_with_unzip_to_the_same_content_modes_times_and_links() {
    let Some(unzip) = require_tool("unzip", "unzip") else {
        return;
    };
    let f = Fixture::small_packs();
    let src = f.path("src");
    rich_tree(&src, true);
    f.backup(&[&src], &[]);
    let archive = f.path("src.zip");
    let run = f
        .cmd()
        .arg("dump")
        .arg(sel("latest", &src))
        .args(["--archive", "zip"])
        .run();
    run.ok();
    fs::write(&archive, &run.stdout).unwrap();
    let out = f.path("unzipped");
    fs::create_dir_all(&out).unwrap();
    let x = Command::new(&unzip)
        .arg("-q")
        .arg(&archive)
        .arg("-d")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        x.status.success(),
        "unzip: {}",
        String::from_utf8_lossy(&x.stderr)
    );
    assert_eq!(zip_view(&out.join("src")), zip_view(&src));
    let t = unzip_test(&unzip, &archive);
    assert!(t.contains("No errors detected"), "unzip -t: {t}");
}

fn unzip_test(unzip: &Path, archive: &Path) -> String {
    let out = Command::new(unzip).arg("-t").arg(archive).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn what_zip_cannot_hold_is_refused_or_listed_and_no_target_is_left() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("ok.txt"), b"fine");
    sh("mkfifo", &[src.join("fifo").as_os_str()]);
    f.backup(&[&src], &[]);
    // A FIFO: left out and listed.
    let target = f.path("fifo.zip");
    let run = f
        .cmd()
        .arg("dump")
        .arg(sel("latest", &src))
        .args(["--archive", "zip", "--target"])
        .arg(&target)
        .run();
    run.ok();
    assert!(
        run.stderr.contains("left out") && run.stderr.contains("fifo"),
        "{}",
        run.stderr
    );
    assert!(target.exists());
    // A non-UTF-8 name: refused by name, nothing written.
    for bad in [&b"\xe9t\xe9.txt"[..], b"dir\xff/inner"] {
        let p = src.join(OsStr::from_bytes(bad));
        write(&p, b"x");
    }
    f.backup(&[&src], &[]);
    let target = f.path("bad.zip");
    let run = f
        .cmd()
        .arg("dump")
        .arg(sel("latest", &src))
        .args(["--archive", "zip", "--target"])
        .arg(&target)
        .run();
    run.expect(1);
    assert!(
        run.stderr.contains("not UTF-8") && run.stderr.contains("--archive tar"),
        "{}",
        run.stderr
    );
    assert!(!target.exists(), "a failed dump leaves no target");
    let names: Vec<_> = fs::read_dir(f.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !names.iter().any(|n| n.as_bytes().starts_with(b".bad.zip")),
        "no temporary file left: {names:?}"
    );
}

#[test]
fn malformed_selectors_and_targets_are_refused_by_name() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("file.txt"), b"content");
    sh("mkfifo", &[src.join("fifo").as_os_str()]);
    f.backup(&[&src], &[]);
    let s = src.display().to_string();
    let cases: Vec<(String, &str)> = vec![
        (format!("latest:{s}/missing.txt"), "missing.txt"),
        (format!("latest:{s}/nodir/file.txt"), "nodir"),
        (format!("latest:{s}/file.txt/below"), "not a directory"),
        (format!("latest:{s}/../etc"), ".."),
        (format!("deadbeef:{s}/file.txt"), "deadbeef"),
        (format!("xyz:{s}"), "xyz"),
        (format!(":{s}"), "\"\""),
    ];
    for (selector, needle) in &cases {
        let run = f.cmd().args(["dump", selector]).run();
        run.expect(1);
        run.assert_no_panic();
        assert!(run.stdout.is_empty(), "{selector}: nothing on stdout");
        assert!(
            run.stderr.contains(needle),
            "{selector}: stderr should name {needle:?}: {}",
            run.stderr
        );
    }
    // A FIFO has no content: it comes out as a one-entry tar.
    let run = f.cmd().args(["dump", &format!("latest:{s}/fifo")]).run();
    run.ok();
    assert!(run.stdout.windows(5).any(|w| w == b"ustar"), "a tar header");
    assert!(run.stdout.windows(4).any(|w| w == b"fifo"));
    // An existing target, a symlink included, is never touched.
    let existing = f.path("existing");
    write(&existing, b"keep me");
    let link = f.path("link");
    std::os::unix::fs::symlink(&existing, &link).unwrap();
    for target in [&existing, &link] {
        let run = f
            .cmd()
            .args(["dump", &format!("latest:{s}/file.txt"), "--target"])
            .arg(target)
            .run();
        run.expect(1);
        assert!(run.stderr.contains("already exists"), "{}", run.stderr);
        assert_eq!(fs::read(&existing).unwrap(), b"keep me");
    }
    // A target in a directory that does not exist, and an unknown format.
    let run = f
        .cmd()
        .args(["dump", &format!("latest:{s}/file.txt"), "--target"])
        .arg(f.path("no/such/dir/out"))
        .run();
    run.expect(1);
    assert!(run.stderr.contains("no/such/dir"), "{}", run.stderr);
    let run = f
        .cmd()
        .args(["dump", &format!("latest:{s}"), "--archive", "rar"])
        .run();
    run.expect(2);
    assert!(run.stderr.contains("rar"), "{}", run.stderr);
}

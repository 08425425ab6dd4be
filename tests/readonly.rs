//! Read-only repositories (a write-protected USB disk, a read-only mount) can be read:
//! `snapshots`, `ls`, `diff`, `stats`, `restore`, `check` and `drill` run without writing a
//! lock, with a note; commands that change the repository fail with a clear message. `--no-lock`
//! reads a writable repository without ever creating a lock file, and is refused by commands
//! that write.
//!
//! A read-only repository is made for real: a read-only bind mount (root; `chmod -w` does not
//! stop root), or, for the permission case, a repository the running user may not write.
//! Where mounting is impossible the mount tests skip with a message, except under `CI=true`,
//! where they fail.

// A failed unwrap in a test is a test failure with a backtrace, which is what it should be.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// A read-only bind mount of a directory, unmounted on drop.
struct ReadOnlyMount {
    at: PathBuf,
}

fn mount(mount: &Path, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    match Command::new(mount).args(args).stdin(Stdio::null()).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "mount {args:?}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("mount: {e}")),
    }
}

impl ReadOnlyMount {
    /// `src` seen read-only at `at`, or None where mounting is impossible: skipped on a
    /// laptop, a failure under CI (see [`missing`]).
    fn new(src: &Path, at: &Path) -> Option<ReadOnlyMount> {
        require(Self::try_new(src, at).map_err(|e| format!("a read-only bind mount: {e}")))
    }

    fn try_new(src: &Path, at: &Path) -> Result<ReadOnlyMount, String> {
        check_root("`chmod -w` does not stop root, so a read-only mount is needed")?;
        let mount_bin = find_tool("mount")?;
        fs::create_dir_all(at).unwrap();
        mount(
            &mount_bin,
            &["--bind".as_ref(), src.as_os_str(), at.as_os_str()],
        )?;
        let m = ReadOnlyMount {
            at: at.to_path_buf(),
        };
        mount(
            &mount_bin,
            &["-o".as_ref(), "remount,bind,ro".as_ref(), at.as_os_str()],
        )?;
        let probe = fs::write(at.join("probe"), b"x").unwrap_err();
        assert_eq!(
            probe.raw_os_error(),
            Some(libc::EROFS),
            "the mount is not read-only: {probe}"
        );
        Ok(m)
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.at)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        }
    }
}

/// A repository with two snapshots of `src` (a file changes between them).
struct Repo {
    f: Fixture,
    src: PathBuf,
    first: String,
}

impl Repo {
    fn new() -> Repo {
        let f = Fixture::new();
        let src = f.path("src");
        write(src.join("docs/a.txt"), "first version\n");
        write(src.join("docs/b.bin"), random_bytes(7, 300_000));
        write(src.join("empty"), "");
        std::os::unix::fs::symlink("docs/a.txt", src.join("link")).unwrap();
        let first = f.backup(&[&src], &[]);
        write(src.join("docs/a.txt"), "second version, longer\n");
        f.backup(&[&src], &[]);
        Repo { f, src, first }
    }

    /// `cairn -r AT` with the fixture's password and cache.
    fn cmd_at(&self, at: &Path) -> TestCommand {
        TestCommand::bare()
            .arg("-r")
            .arg(at)
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("XDG_CACHE_HOME", self.f.path("cache"))
    }

    fn locks(&self) -> PathBuf {
        self.f.repo.join("locks")
    }
}

const NOTE: &str = "note: the repository is read-only; reading without a lock";
const NOT_KEPT: &str = "this drill's result could not be kept";

#[test]
fn every_reading_command_works_on_a_read_only_mount_with_a_note() {
    let r = Repo::new();
    let before = r.f.repo_files();
    let Some(ro) = ReadOnlyMount::new(&r.f.repo, &r.f.path("ro")) else {
        return;
    };
    let at = &ro.at;

    // Commands that never lock: no note needed, nothing to say.
    for args in [
        vec!["snapshots"],
        vec!["--json", "snapshots"],
        vec!["ls", "latest"],
        vec!["ls", "--long", "latest"],
        vec!["--json", "ls", "latest"],
        vec!["diff", &r.first, "latest"],
        vec!["stats"],
        vec!["stats", "latest"],
        vec!["key", "list"],
    ] {
        let run = r.cmd_at(at).args(&args).run();
        run.ok();
        run.assert_no_panic();
    }
    let run = r.cmd_at(at).args(["--json", "snapshots"]).run();
    assert_eq!(run.json().as_array().unwrap().len(), 2);

    // Commands that take a shared lock elsewhere: they read without one, and say so.
    for args in [
        vec!["check"],
        vec!["check", "--read-data"],
        vec!["--json", "check", "--read-data"],
    ] {
        let run = r.cmd_at(at).args(&args).run();
        run.ok();
        assert!(run.stderr.contains(NOTE), "{}: {}", run.what, run.stderr);
    }
    let target = r.f.path("restored");
    let run = r
        .cmd_at(at)
        .args(["restore", "latest", "--verify", "--target"])
        .arg(&target)
        .run();
    run.ok();
    assert!(run.stderr.contains(NOTE), "{}", run.stderr);
    assert_same_tree(&r.src, &restored(&target, &r.src));

    let run = r
        .cmd_at(at)
        .args(["--json", "restore", "latest", "--target"])
        .arg(r.f.path("restored-json"))
        .run();
    run.ok();
    assert_eq!(run.summary()["errors"], serde_json::json!([]));

    // A drill proves recovery even though its record cannot be kept.
    let run = r.cmd_at(at).args(["drill", "--full"]).run();
    run.ok();
    assert!(run.stderr.contains(NOTE), "{}", run.stderr);
    assert!(run.stderr.contains(NOT_KEPT), "{}", run.stderr);
    assert!(run.stdout().contains("recovery proven"), "{}", run.stdout());
    let run = r.cmd_at(at).args(["--json", "drill", "--history"]).run();
    run.ok();
    assert_eq!(run.json(), serde_json::json!([]));

    drop(ro);
    assert_eq!(
        r.f.repo_files(),
        before,
        "nothing in the repository changed"
    );
}

#[test]
fn every_writing_command_fails_clearly_on_a_read_only_mount() {
    let r = Repo::new();
    let other = Fixture::new();
    other.backup(&[&r.src], &[]);
    write(r.f.path("new-password"), "another password\n");
    fs::create_dir(r.f.path("empty")).unwrap();
    let before = r.f.repo_files();
    let Some(ro) = ReadOnlyMount::new(&r.f.repo, &r.f.path("ro")) else {
        return;
    };
    let Some(empty_ro) = ReadOnlyMount::new(&r.f.path("empty"), &r.f.path("empty-ro")) else {
        return;
    };
    let at = &ro.at;
    let new_pw = r.f.path("new-password");
    // What each must say: commands that lock name the repository as read-only and
    // themselves as writers; the others name the file system.
    let says = |cmd: &str| {
        format!(
            "the repository at {} is read-only: `cairn {cmd}` writes to it",
            at.display()
        )
    };
    let fs_says = "Read-only file system (os error 30) — the file system is read-only".to_string();
    let runs = [
        (r.cmd_at(at).arg("backup").arg(&r.src).run(), says("backup")),
        (
            r.cmd_at(at).args(["forget", "--keep-last", "1"]).run(),
            says("forget"),
        ),
        (
            r.cmd_at(at).args(["forget", &r.first]).run(),
            says("forget"),
        ),
        (r.cmd_at(at).arg("prune").run(), says("prune")),
        (r.cmd_at(at).args(["repair", "index"]).run(), says("repair")),
        (
            r.cmd_at(at).args(["repair", "snapshots"]).run(),
            says("repair"),
        ),
        (
            other
                .cmd()
                .args(["copy", "--to"])
                .arg(at)
                .env("CAIRN_TO_PASSWORD", PASSWORD)
                .run(),
            says("copy"),
        ),
        (
            r.cmd_at(at)
                .args(["key", "add", "--new-password-file"])
                .arg(&new_pw)
                .run(),
            fs_says.clone(),
        ),
        (
            r.cmd_at(at)
                .args(["key", "passwd", "--new-password-file"])
                .arg(&new_pw)
                .run(),
            fs_says.clone(),
        ),
        (
            r.cmd_at(&empty_ro.at)
                .args(["init", "--kdf-memory-mib", "8"])
                .run(),
            fs_says.clone(),
        ),
        (
            r.cmd_at(&empty_ro.at.join("sub"))
                .args(["init", "--kdf-memory-mib", "8"])
                .run(),
            fs_says.clone(),
        ),
    ];
    for (run, said) in &runs {
        run.expect(1);
        run.assert_no_panic();
        assert!(
            run.stderr.contains(said.as_str()),
            "{} does not say {said:?}:\n{}",
            run.what,
            run.stderr
        );
        assert_eq!(
            run.stderr.lines().count(),
            1,
            "{}: one clear line:\n{}",
            run.what,
            run.stderr
        );
    }
    drop(empty_ro);
    drop(ro);
    assert_eq!(r.f.repo_files(), before);
}

#[test]
fn commands_that_write_refuse_no_lock() {
    let r = Repo::new();
    let other = Fixture::new();
    write(r.f.path("new-password"), "another password\n");
    let before = r.f.repo_files();
    let refusals = [
        r.f.cmd().args(["--no-lock", "backup"]).arg(&r.src).run(),
        r.f.cmd()
            .args(["--no-lock", "forget", "--keep-last", "1"])
            .run(),
        r.f.cmd().args(["--no-lock", "prune"]).run(),
        r.f.cmd().args(["--no-lock", "repair", "index"]).run(),
        r.f.cmd()
            .args(["--no-lock", "key", "add", "--new-password-file"])
            .arg(r.f.path("new-password"))
            .run(),
        r.f.cmd()
            .args(["--no-lock", "unlock", "--remove-all"])
            .run(),
        r.f.cmd()
            .args(["--no-lock", "copy", "--to"])
            .arg(&other.repo)
            .env("CAIRN_TO_PASSWORD", PASSWORD)
            .run(),
        TestCommand::bare()
            .arg("-r")
            .arg(r.f.path("fresh"))
            .env("CAIRN_PASSWORD", PASSWORD)
            .args(["--no-lock", "init"])
            .run(),
        r.f.cmd().args(["plan", "run", "home", "--no-lock"]).run(),
    ];
    for run in &refusals {
        run.expect(1);
        assert!(
            run.stderr
                .contains("--no-lock is only for commands that just read"),
            "{}:\n{}",
            run.what,
            run.stderr
        );
    }
    assert_eq!(r.f.repo_files(), before, "a refused command wrote nothing");
    assert!(!r.f.path("fresh").exists(), "init --no-lock made nothing");
}

/// `locks/`' modification time, which any lock file created or removed in it moves.
fn locks_mtime(r: &Repo) -> (i64, i64) {
    let m = fs::metadata(r.locks()).unwrap();
    (m.mtime(), m.mtime_nsec())
}

#[test]
fn no_lock_reads_a_writable_repository_without_ever_creating_a_lock_file() {
    let r = Repo::new();
    // An old, exact time: creating or deleting any file in locks/ replaces it with now.
    set_mtime(r.locks(), 1_000_000_000, 123_456_789);
    let quiet = locks_mtime(&r);
    let before = r.f.repo_files();
    let target = r.f.path("restored");
    let reads = [
        r.f.cmd().args(["--no-lock", "snapshots"]).run(),
        r.f.cmd()
            .args(["--no-lock", "ls", "--long", "latest"])
            .run(),
        r.f.cmd()
            .args(["--no-lock", "diff", &r.first, "latest"])
            .run(),
        r.f.cmd().args(["--no-lock", "stats"]).run(),
        r.f.cmd().args(["--no-lock", "check", "--read-data"]).run(),
        r.f.cmd()
            .args(["--no-lock", "restore", "latest", "--verify", "--target"])
            .arg(&target)
            .run(),
        r.f.cmd().args(["--no-lock", "drill", "--full"]).run(),
    ];
    for run in &reads {
        run.ok();
        assert!(!run.stderr.contains(NOTE), "{}: {}", run.what, run.stderr);
    }
    assert_same_tree(&r.src, &restored(&target, &r.src));
    assert_eq!(
        fs::read_dir(r.locks()).unwrap().count(),
        0,
        "a lock file was left"
    );
    assert_eq!(
        locks_mtime(&r),
        quiet,
        "a lock file was created (and removed) in locks/"
    );
    let mut after = r.f.repo_files();
    after.retain(|p, _| !p.starts_with("drills"));
    assert_eq!(after, before, "only the drill's record was added");

    // The watch sees a lock: the same restore without --no-lock writes (and removes) one.
    r.f.cmd()
        .args(["restore", "latest", "--target"])
        .arg(r.f.path("restored-locked"))
        .run()
        .ok();
    assert_ne!(
        locks_mtime(&r),
        quiet,
        "a locked restore moves locks/' time"
    );
}

/// Holds an exclusive OS lock on `locks/`, as a running `prune` on this machine does.
struct HeldLock(#[allow(dead_code)] fs::File);

fn hold_exclusive(dir: &Path) -> HeldLock {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(dir).unwrap();
    // SAFETY: flock on a descriptor this function owns.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    HeldLock(f)
}

#[test]
fn no_lock_reads_while_another_process_holds_the_repository_exclusively() {
    let r = Repo::new();
    let held = hold_exclusive(&r.locks());
    let run =
        r.f.cmd()
            .args(["restore", "latest", "--target"])
            .arg(r.f.path("blocked"))
            .run();
    run.expect(11);
    let target = r.f.path("restored");
    r.f.cmd()
        .args(["--no-lock", "restore", "latest", "--target"])
        .arg(&target)
        .run()
        .ok();
    assert_same_tree(&r.src, &restored(&target, &r.src));
    r.f.cmd().args(["--no-lock", "check"]).run().ok();
    r.f.cmd().args(["--no-lock", "drill"]).run().ok();
    drop(held);
}

/// `cairn` run as `uid` (when this test runs as root) with a clean environment.
fn run_as(uid: Option<u32>, cache: &Path, args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CAIRN_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("TZ", "UTC")
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("XDG_CACHE_HOME", cache)
        .arg("--no-progress")
        .args(args)
        .stdin(Stdio::null());
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn chmod_tree(root: &Path, dirs: u32, files: u32) {
    for rel in walk(root) {
        let p = root.join(rel);
        let m = fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            fs::set_permissions(&p, fs::Permissions::from_mode(dirs)).unwrap();
        } else if m.is_file() {
            fs::set_permissions(&p, fs::Permissions::from_mode(files)).unwrap();
        }
    }
}

/// Gives write permission back, so the fixture can be removed even by a non-root user.
struct Writable<'a>(&'a Path);

impl Drop for Writable<'_> {
    fn drop(&mut self) {
        chmod_tree(self.0, 0o755, 0o644);
    }
}

#[test]
fn a_repository_the_user_may_not_write_is_read_without_a_lock() {
    let r = Repo::new();
    // As root, permissions stop nobody: run cairn as an unprivileged user that owns the
    // repository but may not write it (the owner of a write-protected share).
    // SAFETY: geteuid has no preconditions.
    let uid = (unsafe { libc::geteuid() } == 0).then_some(65534u32);
    let cache = r.f.path("cache-ro-user");
    let target = r.f.path("restored");
    fs::create_dir_all(&cache).unwrap();
    fs::create_dir_all(&target).unwrap();
    if let Some(uid) = uid {
        fs::set_permissions(r.f.tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        for p in [&cache, &target] {
            std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
        }
        for rel in walk(&r.f.repo) {
            std::os::unix::fs::lchown(r.f.repo.join(rel), Some(uid), Some(uid)).unwrap();
        }
    }
    chmod_tree(&r.f.repo, 0o555, 0o444);
    let _writable = Writable(&r.f.repo);
    let before = r.f.repo_files();
    let repo = r.f.repo.as_os_str();
    let go = |args: &[&str]| {
        let mut all: Vec<&std::ffi::OsStr> = vec!["-r".as_ref(), repo];
        all.extend(args.iter().map(std::ffi::OsStr::new));
        run_as(uid, &cache, &all)
    };

    for args in [vec!["snapshots"], vec!["ls", "latest"], vec!["stats"]] {
        let (code, _, err) = go(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
    }
    let target_s = target.to_str().unwrap();
    for args in [
        vec!["check", "--read-data"],
        vec!["restore", "latest", "--verify", "--target", target_s],
        vec!["drill"],
    ] {
        let (code, _, err) = go(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(err.contains(NOTE), "{args:?}: {err}");
    }
    assert_eq!(
        fs::read(restored(&target, &r.src).join("docs/b.bin")).unwrap(),
        fs::read(r.src.join("docs/b.bin")).unwrap()
    );

    let src = r.src.to_str().unwrap();
    for args in [vec!["backup", src], vec!["prune"]] {
        let (code, _, err) = go(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains("read-only"), "{args:?}: {err}");
    }
    assert_eq!(r.f.repo_files(), before);
}

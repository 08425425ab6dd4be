//! Real media, set up by the tests themselves (they need root, loop devices, FUSE and tmpfs): a
//! repository on an exFAT image mounted through `mount.exfat-fuse`, a disk that fills up in the
//! middle of a backup (a small exFAT image and a small tmpfs), and the device disappearing in the
//! middle of a backup (the FUSE daemon killed). Every medium is torn down by a guard even when a
//! test fails; a test whose tools or privileges are missing says so and skips.

mod common;

use std::ffi::{CString, OsStr};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A program by name (see [`find_tool`]), or why it cannot be found and which Debian package
/// has it (`.ci/run` installs them).
fn tool(name: &str) -> Result<PathBuf, String> {
    let package = match name {
        "mkfs.exfat" | "fsck.exfat" => "exfatprogs",
        "mount.exfat-fuse" => "exfat-fuse",
        _ => "mount",
    };
    find_tool(name).map_err(|e| format!("{e} (Debian: {package})"))
}

/// Runs a set-up program; its stdout, or why it failed.
fn run_tool(program: &Path, args: &[&OsStr]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{} {:?} failed ({}): {}{}",
            program.display(),
            args,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

/// Whether `dir` is a mount point of this mount namespace.
fn is_mounted(dir: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = dir.as_os_str().as_bytes();
    info.lines().any(|line| {
        line.split(' ')
            .nth(4)
            .is_some_and(|p| unescape_mountinfo(p) == want)
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space...).
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Free bytes on the file system holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let c = CString::new(path.as_os_str().as_bytes()).expect("no NUL in path");
    // SAFETY: an all-zero statvfs is a valid out-parameter; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(rc, 0, "statvfs {}", path.display());
    st.f_bavail as u64 * st.f_frsize as u64
}

enum Kind {
    /// An exFAT image on a loop device, served by `mount.exfat-fuse`.
    ExfatFuse {
        loopdev: String,
    },
    Tmpfs,
}

/// A file system mounted for one test at its own mount point; unmounted (and its loop device
/// detached) on drop, whatever happened.
struct Medium {
    kind: Kind,
    mnt: PathBuf,
    mounted: bool,
    /// Holds the image and the mount point; removed last.
    _tmp: tempfile::TempDir,
}

impl Medium {
    fn new_dir() -> Result<(tempfile::TempDir, PathBuf), String> {
        let tmp = tempfile::Builder::new()
            .prefix("cairn-media-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let root = tmp.path().canonicalize().map_err(|e| e.to_string())?;
        let mnt = root.join("mnt");
        fs::create_dir(&mnt).map_err(|e| e.to_string())?;
        Ok((tmp, mnt))
    }

    /// A fresh exFAT file system of `mib` MiB, mounted through FUSE.
    fn exfat(mib: u64) -> Result<Medium, String> {
        check_root("loop devices and mounts need it")?;
        let mkfs = tool("mkfs.exfat")?;
        tool("mount.exfat-fuse")?;
        tool("fsck.exfat")?;
        let losetup = tool("losetup")?;
        if !Path::new("/dev/fuse").exists() {
            return Err("no /dev/fuse".into());
        }
        let (tmp, mnt) = Self::new_dir()?;
        let image = tmp.path().join("disk.img");
        fs::File::create(&image)
            .and_then(|f| f.set_len(mib << 20))
            .map_err(|e| format!("create image: {e}"))?;
        run_tool(&mkfs, &[image.as_os_str()])?;
        let loopdev = run_tool(
            &losetup,
            &["-f".as_ref(), "--show".as_ref(), image.as_os_str()],
        )?
        .trim()
        .to_string();
        // From here on the guard owns the loop device.
        let mut m = Medium {
            kind: Kind::ExfatFuse { loopdev },
            mnt,
            mounted: false,
            _tmp: tmp,
        };
        m.mount()?;
        Ok(m)
    }

    /// A tmpfs of `mib` MiB.
    fn tmpfs(mib: u64) -> Result<Medium, String> {
        check_root("loop devices and mounts need it")?;
        let (tmp, mnt) = Self::new_dir()?;
        let mut m = Medium {
            kind: Kind::Tmpfs,
            mnt,
            mounted: false,
            _tmp: tmp,
        };
        m.mount_tmpfs(mib)?;
        Ok(m)
    }

    fn mount_tmpfs(&mut self, mib: u64) -> Result<(), String> {
        let mount = tool("mount")?;
        run_tool(
            &mount,
            &[
                "-t".as_ref(),
                "tmpfs".as_ref(),
                "-o".as_ref(),
                format!("size={mib}m").as_ref(),
                "tmpfs".as_ref(),
                self.mnt.as_os_str(),
            ],
        )?;
        self.mounted = true;
        Ok(())
    }

    fn loopdev(&self) -> &str {
        match &self.kind {
            Kind::ExfatFuse { loopdev } => loopdev,
            Kind::Tmpfs => panic!("a tmpfs has no device"),
        }
    }

    /// (Re)mounts the exFAT image through FUSE.
    fn mount(&mut self) -> Result<(), String> {
        let fuse = tool("mount.exfat-fuse")?;
        run_tool(&fuse, &[self.loopdev().as_ref(), self.mnt.as_os_str()])?;
        self.mounted = true;
        try_wait_until(Duration::from_secs(10), "the FUSE mount", || {
            is_mounted(&self.mnt)
        })
    }

    fn repo(&self) -> PathBuf {
        self.mnt.join("repo")
    }

    /// The pid of the `mount.exfat-fuse` daemon serving this mount (it daemonizes, so it is not
    /// our child; it is found by its exact command line: our loop device and mount point).
    fn fuse_pid(&self) -> Option<i32> {
        let dev = self.loopdev().as_bytes();
        let mnt = self.mnt.as_os_str().as_bytes();
        fs::read_dir("/proc").ok()?.find_map(|e| {
            let e = e.ok()?;
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            let argv: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            (argv.len() >= 3
                && argv[0].ends_with(b"mount.exfat-fuse")
                && argv[1] == dev
                && argv[2] == mnt)
                .then_some(pid)
        })
    }

    /// Unmounts: normally, else lazily (something still has a file open).
    fn unmount(&mut self) -> Result<(), String> {
        if !self.mounted {
            return Ok(());
        }
        let umount = tool("umount")?;
        if let Err(e) = run_tool(&umount, &[self.mnt.as_os_str()]) {
            if is_mounted(&self.mnt) {
                eprintln!("umount failed ({e}); unmounting lazily");
                run_tool(&umount, &["-l".as_ref(), self.mnt.as_os_str()])?;
            }
        }
        self.mounted = false;
        if let Kind::ExfatFuse { .. } = self.kind {
            // The daemon exits once unmounted; it must be gone before the image is touched.
            try_wait_until(Duration::from_secs(10), "the FUSE daemon's exit", || {
                self.fuse_pid().is_none()
            })?;
        }
        Ok(())
    }

    /// `fsck.exfat -n`, and `-y` if that finds something; returns what fsck said.
    fn fsck(&self) -> String {
        let fsck = tool("fsck.exfat").expect("fsck.exfat");
        let dev = self.loopdev();
        match run_tool(&fsck, &["-n".as_ref(), dev.as_ref()]) {
            Ok(out) => format!("fsck.exfat -n: {}", out.trim()),
            Err(e) => {
                let fixed = run_tool(&fsck, &["-y".as_ref(), dev.as_ref()]);
                format!("fsck.exfat -n: {e}\nfsck.exfat -y: {fixed:?}")
            }
        }
    }
}

impl Drop for Medium {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            eprintln!("cleanup: {e}");
        }
        if let Kind::ExfatFuse { loopdev } = &self.kind {
            if let Ok(losetup) = tool("losetup") {
                if let Err(e) = run_tool(&losetup, &["-d".as_ref(), loopdev.as_ref()]) {
                    eprintln!("cleanup: {e}");
                }
            }
        }
        // `_tmp` (image and mount point) is removed after this.
    }
}

/// A spawned cairn, killed and reaped if the test ends while it runs.
struct Running(Option<Child>);

impl Running {
    /// Waits at most `limit`; the exit code (-1 for a signal) and stderr.
    fn finish(&mut self, limit: Duration) -> (i32, String) {
        let mut child = self.0.take().expect("running");
        let status = wait_for_exit(&mut child, limit, "cairn");
        let mut err = String::new();
        use std::io::Read;
        let _ = child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err);
        (status.code().unwrap_or(-1), err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `cairn -r REPO` with the fixture's password and a cache outside the medium.
fn cmd(f: &Fixture, repo: &Path) -> TestCommand {
    TestCommand::bare()
        .arg("-r")
        .arg(repo)
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("XDG_CACHE_HOME", f.path("cache"))
}

fn init(f: &Fixture, repo: &Path, extra: &[&str]) {
    cmd(f, repo)
        .args(["init", "--kdf-memory-mib", "8"])
        .args(extra)
        .run()
        .ok();
}

/// `files` files of `size` random bytes each under `dir`, in a few subdirectories.
fn random_tree(dir: &Path, seed: u64, files: u64, size: usize) {
    for i in 0..files {
        write(
            dir.join(format!("d{}/f{i:03}.bin", i % 3)),
            random_bytes(seed + i, size),
        );
    }
}

fn restore_and_compare(f: &Fixture, repo: &Path, src: &Path, target: &str) {
    let target = f.path(target);
    cmd(f, repo)
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .run()
        .ok();
    assert_same_tree(src, &restored(&target, src));
}

/// What a repository directory holds besides well-formed files.
#[derive(Debug, Default)]
struct Survey {
    /// `.tmp-*` files, with their sizes.
    temporaries: Vec<(PathBuf, u64)>,
    /// Files in `locks/`.
    locks: Vec<PathBuf>,
    /// Files under a final name whose bytes do not hash to it (partial, zeroed, foreign).
    bad: Vec<String>,
    /// Total bytes of every file.
    bytes: u64,
}

/// Walks the repository: every file other than `config` and `.tmp-*` must be named by the
/// BLAKE3 hash of its bytes (repo-format.md §3.2) — a partial write under a final name fails that.
fn survey(repo: &Path) -> Survey {
    let mut s = Survey::default();
    for rel in walk(repo) {
        let full = repo.join(&rel);
        let meta = fs::symlink_metadata(&full).expect("lstat");
        if !meta.is_file() {
            continue;
        }
        s.bytes += meta.len();
        let name = rel
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name.starts_with(".tmp-") {
            s.temporaries.push((rel.clone(), meta.len()));
            continue;
        }
        if rel.starts_with("locks") {
            s.locks.push(rel.clone());
        }
        if rel == Path::new("config") {
            if meta.len() == 0 {
                s.bad.push("config is empty".into());
            }
            continue;
        }
        let id = name.strip_suffix(".copy").unwrap_or(&name);
        let hash = blake3::hash(&fs::read(&full).expect("read")).to_hex();
        if hash.as_str() != id {
            s.bad.push(format!(
                "{}: {} bytes hashing to {}",
                rel.display(),
                meta.len(),
                &hash[..16]
            ));
        }
    }
    s
}

fn assert_no_panic(what: &str, stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{what} panicked:\n{stderr}"
    );
}

#[test]
fn a_repository_on_exfat_backs_up_restores_and_checks_across_a_replug() {
    let t0 = Instant::now();
    let Some(mut m) = require(Medium::exfat(64)) else {
        return;
    };
    let f = Fixture::empty();
    let src = f.path("src");
    write(src.join("docs/readme.txt"), "hello, exFAT\n");
    write(src.join("docs/empty"), "");
    write(src.join("photos/p1.raw"), random_bytes(1, 3 << 20));
    write(src.join("photos/p2.raw"), random_bytes(2, 2 << 20));
    write(src.join("photos/copy-of-p1.raw"), random_bytes(1, 3 << 20));
    write(src.join("deep/a/b/c/d.bin"), random_bytes(3, 100_000));
    chmod(src.join("docs/readme.txt"), 0o600);
    std::os::unix::fs::symlink("docs/readme.txt", src.join("link")).expect("symlink");
    let repo = m.repo();

    init(&f, &repo, &[]);
    let run = cmd(&f, &repo).args(["--json", "backup"]).arg(&src).run();
    run.ok();
    let summary = run.summary();
    assert_eq!(summary["durable"], true, "{summary}");
    restore_and_compare(&f, &repo, &src, "restore1");
    let check = cmd(&f, &repo).args(["check", "--read-data"]).run();
    check.ok();
    assert!(check.stdout().contains("no errors were found"));
    let s = survey(&repo);
    assert!(s.bad.is_empty(), "{s:?}");
    assert!(s.temporaries.is_empty() && s.locks.is_empty(), "{s:?}");

    // Unplug and plug back in: everything was on the medium, not just in a cache.
    m.unmount().expect("unmount");
    let fsck = m.fsck();
    assert!(fsck.contains("clean"), "{fsck}");
    m.mount().expect("remount");
    write(src.join("docs/new.txt"), "added after the replug\n");
    cmd(&f, &repo).arg("backup").arg(&src).run().ok();
    cmd(&f, &repo).args(["check", "--read-data"]).run().ok();
    restore_and_compare(&f, &repo, &src, "restore2");
    eprintln!(
        "exFAT round trip: {:.1}s, repository {} bytes",
        t0.elapsed().as_secs_f64(),
        survey(&repo).bytes
    );
}

/// The disk-full scenario on any medium: a first small backup, a backup of more than fits (a
/// clear error), `check`, `prune`, and a smaller backup that succeeds and restores.
fn disk_full(m: &Medium, big_files: u64) {
    let t0 = Instant::now();
    let f = Fixture::empty();
    let repo = m.repo();
    // Small packs: several reach their final names before the disk fills up.
    init(&f, &repo, &["--pack-size", "2"]);
    let small = f.path("small");
    random_tree(&small, 1000, 2, 256 << 10);
    cmd(&f, &repo).arg("backup").arg(&small).run().ok();

    let big = f.path("big");
    random_tree(&big, 2000, big_files, 1 << 20);
    let free_before = free_bytes(&m.mnt);
    let t = Instant::now();
    let run = cmd(&f, &repo).arg("backup").arg(&big).run();
    let took = t.elapsed();
    eprintln!(
        "disk full: {} MiB free, backing up {big_files} MiB: exit {} after {:.1}s, {} MiB free \
         after\nstderr: {}",
        free_before >> 20,
        run.code,
        took.as_secs_f64(),
        free_bytes(&m.mnt) >> 20,
        run.stderr.trim()
    );
    assert_no_panic("the backup", &run.stderr);
    run.expect(1);
    assert!(
        run.stderr.contains("the disk is full") && run.stderr.contains("os error 28"),
        "{}",
        run.stderr
    );
    let s = survey(&repo);
    eprintln!(
        "after the failure: {} bytes in the repository, temporaries {:?}, locks {:?}",
        s.bytes, s.temporaries, s.locks
    );
    assert!(s.bad.is_empty(), "partial files under final names: {s:?}");
    assert!(s.locks.is_empty(), "the failed backup left its lock: {s:?}");

    let check = cmd(&f, &repo).arg("check").run();
    eprintln!(
        "check: exit {}, stderr: {}",
        check.code,
        check.stderr.trim()
    );
    check.ok();

    let prune = cmd(&f, &repo).arg("prune").run();
    eprintln!("prune: exit {}\n{}", prune.code, prune.stdout().trim());
    prune.ok();
    let after = survey(&repo);
    assert!(after.bytes <= s.bytes, "{} > {}", after.bytes, s.bytes);
    assert!(after.bad.is_empty(), "{after:?}");
    assert!(after.temporaries.is_empty(), "prune left {after:?}");
    eprintln!(
        "prune: repository {} -> {} bytes, {} MiB free",
        s.bytes,
        after.bytes,
        free_bytes(&m.mnt) >> 20
    );

    // A smaller backup fits now.
    random_tree(&small, 3000, 2, 512 << 10);
    cmd(&f, &repo).arg("backup").arg(&small).run().ok();
    restore_and_compare(&f, &repo, &small, "restore");
    cmd(&f, &repo).args(["check", "--read-data"]).run().ok();
    eprintln!("disk-full scenario: {:.1}s", t0.elapsed().as_secs_f64());
}

#[test]
fn a_full_exfat_disk_fails_cleanly_and_prune_makes_room_again() {
    let Some(m) = require(Medium::exfat(24)) else {
        return;
    };
    disk_full(&m, 32);
}

#[test]
fn a_full_tmpfs_fails_cleanly_and_prune_makes_room_again() {
    let Some(m) = require(Medium::tmpfs(8)) else {
        return;
    };
    disk_full(&m, 12);
}

#[test]
fn an_exfat_disk_that_disappears_mid_backup_fails_cleanly_and_checks_clean_after_remount() {
    let t0 = Instant::now();
    let Some(mut m) = require(Medium::exfat(96)) else {
        return;
    };
    let f = Fixture::empty();
    let repo = m.repo();
    init(&f, &repo, &["--pack-size", "2"]);
    let first = f.path("first");
    random_tree(&first, 100, 3, 300 << 10);
    cmd(&f, &repo).arg("backup").arg(&first).run().ok();
    let bytes_before = survey(&repo).bytes;

    let big = f.path("big");
    random_tree(&big, 200, 16, 1 << 20);
    let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("-r")
        .arg(&repo)
        .args(["--no-progress", "backup"])
        .arg(&big)
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("XDG_CACHE_HOME", f.path("cache"))
        .env_remove("CAIRN_REPOSITORY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cairn");
    let mut backup = Running(Some(child));

    // Pull the plug while the backup writes packs: as soon as a new pack or a pack being
    // written shows up in data/.
    let (packs0, _) = data_files(&repo);
    let spawned = Instant::now();
    wait_until(
        Duration::from_secs(60),
        "a pack write of the big backup",
        || {
            let (p, t) = data_files(&repo);
            p > packs0 || t > 0
        },
    );
    let (packs_at_kill, temps_at_kill) = data_files(&repo);
    let pid = m.fuse_pid().expect("the FUSE daemon of this mount");
    // SAFETY: kill has no memory-safety preconditions; the pid is our own mount's daemon.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let killed_at = spawned.elapsed();
    let (code, stderr) = backup.finish(Duration::from_secs(60));
    eprintln!(
        "device gone: FUSE daemon killed {:.2}s into the backup ({} new packs, {} being \
         written); cairn exit {code} {:.2}s after the kill\nstderr: {}",
        killed_at.as_secs_f64(),
        packs_at_kill - packs0,
        temps_at_kill,
        (spawned.elapsed() - killed_at).as_secs_f64(),
        stderr.trim()
    );
    assert_no_panic("the backup", &stderr);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the device is gone")
            || stderr.contains("Transport endpoint is not connected")
            || stderr.contains("Input/output error"),
        "{stderr}"
    );

    // Plug back in.
    m.unmount().expect("unmount the dead mount");
    let fsck = m.fsck();
    eprintln!("{fsck}");
    m.mount().expect("remount");
    let s = survey(&repo);
    eprintln!(
        "after remount: repository {} bytes (was {bytes_before}), temporaries {:?}, locks {:?}",
        s.bytes, s.temporaries, s.locks
    );
    assert!(s.bad.is_empty(), "partial files under final names: {s:?}");
    let check = cmd(&f, &repo).arg("check").run();
    eprintln!(
        "check: exit {}, stderr: {}",
        check.code,
        check.stderr.trim()
    );
    check.ok();

    // The next backup completes; everything restores.
    cmd(&f, &repo).arg("backup").arg(&big).run().ok();
    cmd(&f, &repo).args(["check", "--read-data"]).run().ok();
    restore_and_compare(&f, &repo, &big, "restore");

    // What the dead backup left (its temporary file, its lock file) goes the documented ways:
    // `prune` removes temporaries, `unlock` removes stale locks.
    cmd(&f, &repo).arg("prune").run().ok();
    cmd(&f, &repo).arg("unlock").run().ok();
    let s = survey(&repo);
    assert!(
        s.bad.is_empty() && s.temporaries.is_empty() && s.locks.is_empty(),
        "{s:?}"
    );
    cmd(&f, &repo).arg("check").run().ok();
    eprintln!("device-gone scenario: {:.1}s", t0.elapsed().as_secs_f64());
}

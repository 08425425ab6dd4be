//! `cairn mount` on real FUSE: the mounted snapshot read by independent tools (`diff -r`,
//! `sha256sum`, `stat`, `getfattr` through the xattr calls), snapshots that appear while
//! mounted, unmounting by signal and by `fusermount3 -u`, and refused mount points.
//! Every mount is unmounted by a drop guard, so a failing test leaves nothing mounted.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::prereq::{find_tool, missing};
use common::wait::{wait_for_exit, wait_until};
use common::{random_bytes, set_mtime, write, Fixture, PASSWORD};

/// Bounds a hang only (mounting, unmounting, a new snapshot showing up).
const LIMIT: Duration = Duration::from_secs(60);

/// Whether this machine can run the tests: /dev/fuse and fusermount3 (else skip, or fail
/// under CI).
fn fuse_ready() -> bool {
    if !Path::new("/dev/fuse").exists() {
        missing("/dev/fuse is missing: no FUSE here");
        return false;
    }
    if let Err(why) = find_tool("fusermount3") {
        missing(why);
        return false;
    }
    true
}

/// `cairn -r REPO mount MNT ARGS...` running in the background; unmounted and stopped on drop.
struct Mounted {
    child: Child,
    mnt: PathBuf,
}

impl Mounted {
    fn start(f: &Fixture, mnt: &Path, args: &[&str]) -> Mounted {
        fs::create_dir_all(mnt).expect("mkdir mount point");
        let child = cairn(f)
            .arg("mount")
            .arg(mnt)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cairn mount");
        let mut m = Mounted {
            child,
            mnt: mnt.to_path_buf(),
        };
        let child = &mut m.child;
        wait_until(LIMIT, "the mount", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("cairn mount exited early with {status}");
            }
            mnt.join("snapshots").exists()
        });
        m
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&self.mnt)
                .status();
        }
    }
}

/// The binary with the fixture's repository and password, nothing else from `CAIRN_*`.
fn cairn(f: &Fixture) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    for (k, _) in std::env::vars_os() {
        if k.as_bytes().starts_with(b"CAIRN_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("TZ", "UTC")
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("XDG_CACHE_HOME", f.path("cache"))
        .arg("--no-progress")
        .arg("-r")
        .arg(&f.repo)
        .stdin(Stdio::null());
    cmd
}

/// Whether `path` is a mount point now (listed in /proc/self/mountinfo).
fn is_mounted(path: &Path) -> bool {
    let Ok(canon) = fs::canonicalize(path) else {
        return false;
    };
    let info = fs::read("/proc/self/mountinfo").unwrap_or_default();
    // Field 5 is the mount point, with spaces and such escaped as \040 (the paths here have none).
    info.split(|&b| b == b'\n')
        .any(|line| line.split(|&b| b == b' ').nth(4) == Some(canon.as_os_str().as_bytes()))
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill has no memory preconditions; pid is our own child.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {pid} {sig}");
}

/// A shell pipeline's stdout, run in `dir`; it must succeed.
fn sh_out(dir: &Path, script: &str) -> Vec<u8> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A source tree with every class of entry: empty, small and multi-chunk files, a hole-free
/// large file, symlinks (relative, absolute, dangling), hard links across directories,
/// extended attributes, non-UTF-8 names, a deep directory chain, a FIFO, odd modes.
fn make_source(root: &Path) {
    write(root.join("empty"), b"");
    write(root.join("small.txt"), b"hello\n");
    write(root.join("big.bin"), random_bytes(7, 6 << 20));
    write(root.join("dir/inner"), random_bytes(8, 100_000));
    fs::hard_link(root.join("dir/inner"), root.join("hard-link")).expect("link");
    std::os::unix::fs::symlink("small.txt", root.join("rel-link")).expect("symlink");
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling")).expect("symlink");
    let odd = root.join(OsStr::from_bytes(b"caf\xe9 \xff name"));
    write(&odd, b"latin-1 name");
    let mut deep = root.join("deep");
    for i in 0..12 {
        deep = deep.join(format!("level{i}"));
    }
    write(deep.join("leaf"), b"leaf");
    let fifo = root.join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).expect("cstring");
    // SAFETY: c is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o640) }, 0, "mkfifo");
    common::chmod(root.join("small.txt"), 0o600);
    common::chmod(root.join("dir/inner"), 0o751);
    if xattr::set(root.join("small.txt"), "user.note", b"kept").is_err() {
        missing("user.* extended attributes are not supported on the temp file system");
    }
    let _ = xattr::set(root.join("dir"), "user.dir", b"\x00\x01binary");
    set_mtime(root.join("big.bin"), 1_600_000_000, 123_456_789);
    set_mtime(root.join("dir"), 1_500_000_000, 5);
}

/// The source as the mounted snapshot shows it (its absolute path below the snapshot root).
fn in_snapshot(snapshot_dir: &Path, source: &Path) -> PathBuf {
    snapshot_dir.join(source.strip_prefix("/").expect("absolute source"))
}

#[test]
fn a_mounted_snapshot_reads_back_equal_to_its_source_for_every_independent_reader() {
    if !fuse_ready() {
        return;
    }
    let f = Fixture::small_packs();
    let src = f.path("src");
    make_source(&src);
    f.backup(&[&src], &[]);
    let m = Mounted::start(&f, &f.path("mnt"), &[]);
    let shown = in_snapshot(&m.mnt.join("snapshots/latest"), &src);

    // diff -r: names, contents, symlink targets (not following them), fifos left to `stat`.
    let out = Command::new("diff")
        .args(["-r", "--no-dereference", "-x", "fifo"])
        .arg(&src)
        .arg(&shown)
        .output()
        .expect("diff");
    assert!(
        out.status.success(),
        "diff -r: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // sha256sum of every file, and stat of every entry (mode, type, owner, mtime to the
    // nanosecond; size and link count of everything but directories, whose size is the file
    // system's own), through the mount and on the source.
    let same = |what: &str, script: &str| {
        let (a, b) = (sh_out(&src, script), sh_out(&shown, script));
        assert_eq!(
            String::from_utf8_lossy(&a),
            String::from_utf8_lossy(&b),
            "{what}"
        );
    };
    same(
        "sha256sum",
        "find . -type f -print0 | sort -z | xargs -0 sha256sum",
    );
    same(
        "stat",
        "find . -print0 | sort -z | xargs -0 stat -c '%n %a %F %u %g %Y %y'",
    );
    same(
        "stat of non-directories",
        "find . ! -type d -print0 | sort -z | xargs -0 stat -c '%n %s %h'",
    );
    // Everything at once, with the harness's own reader: xattrs, nanosecond mtimes,
    // hard-link groups, directory link counts.
    common::assert_same_entries(&src, &shown);
    // Hard links are one inode through the mount.
    let a = fs::metadata(shown.join("hard-link")).expect("stat");
    let b = fs::metadata(shown.join("dir/inner")).expect("stat");
    assert_eq!(a.ino(), b.ino(), "hard links share an inode");
    assert_eq!(a.nlink(), 2);
    // Extended attributes through getxattr/listxattr.
    assert_eq!(
        xattr::get(shown.join("small.txt"), "user.note").expect("getxattr"),
        Some(b"kept".to_vec())
    );
    assert_eq!(
        xattr::get(shown.join("small.txt"), "user.absent").expect("getxattr"),
        None
    );
    // The special file is shown as its type, and cannot be written through the mount.
    let fifo = fs::symlink_metadata(shown.join("fifo")).expect("lstat fifo");
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
    assert!(
        fs::write(shown.join("small.txt"), b"x").is_err(),
        "read-only"
    );
    assert!(fs::create_dir(shown.join("new")).is_err(), "read-only");
    // Reads at odd offsets and lengths cross chunk boundaries exactly.
    let want = fs::read(src.join("big.bin")).expect("read");
    let got = {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = fs::File::open(shown.join("big.bin")).expect("open");
        let mut out = Vec::new();
        for (off, len) in [
            (0u64, 1usize),
            (1_048_575, 3),
            (3_000_001, 2_000_000),
            (6 << 20, 10),
        ] {
            file.seek(SeekFrom::Start(off)).expect("seek");
            let mut buf = vec![0u8; len];
            let n = file.read(&mut buf).expect("read");
            out.push(buf[..n].to_vec());
        }
        out
    };
    assert_eq!(got[0], want[..1]);
    assert_eq!(got[1], want[1_048_575..1_048_578]);
    // One read may return less than asked; what it returns is the right bytes.
    assert_eq!(got[2], want[3_000_001..3_000_001 + got[2].len()]);
    assert!(got[3].is_empty(), "a read at the end returns nothing");
}

#[test]
fn the_layout_names_each_snapshot_by_time_id_host_and_tag_and_latest_follows_the_newest() {
    if !fuse_ready() {
        return;
    }
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a"), b"one");
    let first = f.backup(&[&src], &["--tag", "daily", "--host", "alpha"]);
    let m = Mounted::start(&f, &f.path("mnt"), &[]);
    let names = |dir: &str| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(m.mnt.join(dir))
            .expect("readdir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(""), ["hosts", "ids", "snapshots", "tags"]);
    assert_eq!(names("ids"), [first[..8].to_string()]);
    assert_eq!(names("hosts"), ["alpha"]);
    assert_eq!(names("tags"), ["daily"]);
    let time = names("hosts/alpha");
    assert_eq!(time.len(), 1);
    assert_eq!(names("tags/daily"), time);
    assert_eq!(names("snapshots"), [time[0].clone(), "latest".to_string()]);
    // The name is the snapshot's time as restic writes it.
    let t = &time[0];
    assert_eq!(t.len(), "2026-12-05T22:10:03+00:00".len(), "{t}");
    assert!(t.ends_with("+00:00") && t.as_bytes()[10] == b'T', "{t}");
    for dir in [
        format!("snapshots/{t}"),
        format!("ids/{}", &first[..8]),
        format!("hosts/alpha/{t}"),
        format!("tags/daily/{t}"),
    ] {
        let shown = in_snapshot(&m.mnt.join(&dir), &src);
        assert_eq!(fs::read(shown.join("a")).expect("read"), b"one", "{dir}");
    }

    // A backup made while mounted appears without remounting, everywhere it belongs.
    write(src.join("a"), b"two");
    let second = f.backup(&[&src], &["--tag", "weekly", "--host", "beta"]);
    let latest = m.mnt.join("snapshots/latest");
    wait_until(LIMIT, "the new snapshot in the mount", || {
        fs::read(in_snapshot(&latest, &src).join("a")).is_ok_and(|c| c == b"two")
    });
    assert_eq!(names("ids"), {
        let mut v = vec![first[..8].to_string(), second[..8].to_string()];
        v.sort();
        v
    });
    assert_eq!(names("hosts"), ["alpha", "beta"]);
    assert_eq!(names("tags"), ["daily", "weekly"]);
    assert_eq!(names("snapshots").len(), 3, "two snapshots and latest");
    let old = in_snapshot(&m.mnt.join("snapshots").join(t), &src);
    assert_eq!(fs::read(old.join("a")).expect("read"), b"one");
}

#[test]
fn host_and_tag_filters_show_only_matching_snapshots() {
    if !fuse_ready() {
        return;
    }
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a"), b"x");
    let keep = f.backup(&[&src], &["--host", "alpha", "--tag", "t"]);
    f.backup(&[&src], &["--host", "beta", "--tag", "t"]);
    f.backup(&[&src], &["--host", "alpha", "--tag", "u"]);
    let m = Mounted::start(&f, &f.path("mnt"), &["--host", "alpha", "--tag", "t"]);
    let ids: Vec<String> = fs::read_dir(m.mnt.join("ids"))
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ids, [keep[..8].to_string()]);
}

#[test]
fn sigterm_and_ctrl_c_unmount_and_exit_zero() {
    if !fuse_ready() {
        return;
    }
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a"), b"x");
    f.backup(&[&src], &[]);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mnt = f.path(format!("mnt-{sig}"));
        let mut m = Mounted::start(&f, &mnt, &[]);
        assert!(is_mounted(&mnt));
        signal(m.pid(), sig);
        let status = wait_for_exit(&mut m.child, LIMIT, "cairn mount");
        assert_eq!(status.code(), Some(0), "signal {sig}");
        assert!(
            !is_mounted(&mnt),
            "signal {sig} left {} mounted",
            mnt.display()
        );
        assert_eq!(fs::read_dir(&mnt).expect("readdir").count(), 0);
    }
}

#[test]
fn fusermount_u_ends_the_mount_with_exit_zero() {
    if !fuse_ready() {
        return;
    }
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a"), b"x");
    f.backup(&[&src], &[]);
    let mnt = f.path("mnt");
    let mut m = Mounted::start(&f, &mnt, &[]);
    let st = Command::new("fusermount3")
        .arg("-u")
        .arg(&mnt)
        .status()
        .expect("fusermount3");
    assert!(st.success());
    let status = wait_for_exit(&mut m.child, LIMIT, "cairn mount");
    assert_eq!(status.code(), Some(0));
    // The shared lock is gone: an exclusive command runs.
    let out = cairn(&f)
        .args(["forget", "--keep-last", "5"])
        .output()
        .expect("forget");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_killed_mount_leaves_a_mount_point_that_unmounts_and_mounts_again() {
    if !fuse_ready() {
        return;
    }
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a"), b"x");
    f.backup(&[&src], &[]);
    let mnt = f.path("mnt");
    let mut m = Mounted::start(&f, &mnt, &[]);
    signal(m.pid(), libc::SIGKILL);
    let _ = wait_for_exit(&mut m.child, LIMIT, "cairn mount");
    // The kernel still lists the mount, and accessing it fails (no server).
    assert!(is_mounted(&mnt));
    assert!(fs::read_dir(mnt.join("snapshots")).is_err());
    let st = Command::new("fusermount3")
        .arg("-u")
        .arg(&mnt)
        .status()
        .expect("fusermount3");
    assert!(st.success(), "fusermount3 -u after SIGKILL");
    assert!(!is_mounted(&mnt));
    drop(m);
    // The same mount point works again (the dead process's lock does not block a reader).
    let again = Mounted::start(&f, &mnt, &[]);
    let shown = in_snapshot(&again.mnt.join("snapshots/latest"), &src);
    assert_eq!(fs::read(shown.join("a")).expect("read"), b"x");
}

#[test]
fn a_mount_point_that_is_not_an_empty_directory_or_a_machine_without_fusermount3_is_refused() {
    let f = Fixture::new();
    let full = f.path("full");
    write(full.join("x"), b"x");
    let hidden = f.path("hidden");
    write(hidden.join(".dot"), b"x");
    let file = f.path("file");
    write(&file, b"x");
    let link_to_file = f.path("link");
    std::os::unix::fs::symlink(&file, &link_to_file).expect("symlink");
    let cases: [(&Path, &str); 5] = [
        (&full, "is not empty"),
        (&hidden, "is not empty"),
        (&file, "is not a directory"),
        (&link_to_file, "is not a directory"),
        (&f.path("absent"), "does not exist"),
    ];
    let fuse = fuse_ready();
    for (mnt, why) in cases {
        let out = cairn(&f).arg("mount").arg(mnt).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", mnt.display());
        if fuse {
            assert!(err.contains(why), "{}: {err}", mnt.display());
            assert!(err.contains(&*mnt.to_string_lossy()), "names it: {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
        assert!(!is_mounted(mnt));
    }
    assert_eq!(fs::read(full.join("x")).expect("untouched"), b"x");
    // Without fusermount3 on PATH: a clear message, exit 1, nothing mounted.
    let empty = f.path("empty");
    fs::create_dir(&empty).expect("mkdir");
    let out = cairn(&f)
        .env("PATH", f.path("no-bin"))
        .arg("mount")
        .arg(&empty)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("fusermount3") || err.contains("/dev/fuse"),
        "names what is missing: {err}"
    );
    assert!(!is_mounted(&empty));
}

#[test]
fn a_directory_of_thousands_of_entries_lists_completely_across_many_readdir_calls() {
    if !fuse_ready() {
        return;
    }
    let f = Fixture::new();
    let src = f.path("src");
    let mut want = Vec::new();
    for i in 0..3000 {
        // Long names: one readdir reply holds only some dozens of them.
        let name = format!("{i:05}-{}", "x".repeat(100));
        write(src.join(&name), i.to_string());
        want.push(name);
    }
    f.backup(&[&src], &[]);
    let m = Mounted::start(&f, &f.path("mnt"), &[]);
    let shown = in_snapshot(&m.mnt.join("snapshots/latest"), &src);
    let mut got: Vec<String> = fs::read_dir(&shown)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    got.sort();
    assert_eq!(got, want);
    for i in [0usize, 1499, 2999] {
        assert_eq!(
            fs::read_to_string(shown.join(&want[i])).expect("read"),
            i.to_string()
        );
    }
}

#[test]
fn opening_a_file_raises_the_mounts_read_ahead_when_run_as_root() {
    if !fuse_ready() || !common::prereq::require_root("raising a mount's read-ahead") {
        return;
    }
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a"), b"x");
    f.backup(&[&src], &[]);
    let m = Mounted::start(&f, &f.path("mnt"), &[]);
    let shown = in_snapshot(&m.mnt.join("snapshots/latest"), &src);
    assert_eq!(fs::read(shown.join("a")).expect("read"), b"x");
    // The mount's device number, and its backing device's read-ahead knob.
    let dev = fs::metadata(&m.mnt).expect("stat mount").dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let knob = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    let kib: u32 = fs::read_to_string(&knob)
        .expect("read_ahead_kb")
        .trim()
        .parse()
        .expect("a number");
    assert_eq!(kib, 8192, "{knob}");
}

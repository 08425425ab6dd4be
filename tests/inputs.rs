//! Inputs at the edges, through the real binary (and the library where a state must be made
//! by hand):
//!
//! - every password source, exclude file and plan file is read within a bound: each class of
//!   oversized or odd input ends in a clear message and exit 1, under a memory limit, so that
//!   unbounded growth fails the test instead of eating the machine;
//! - what an interrupted `init` leaves is finished or redone by `init`, and named by the other
//!   commands;
//! - key files, configs and snapshots of a later format are named as such, never read as a
//!   wrong password or as damage;
//! - a lock that blocks says who holds it, how old it is and how to remove it, and `unlock`
//!   removes nothing it cannot read as a lock of the repository;
//! - a repository inside a backed-up directory is left out of the snapshot.

#![allow(clippy::unwrap_used)]

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn::backend::{Backend, FaultBackend, FileKind, LocalBackend, MemBackend};
use cairn::format::crypto::{KdfParams, ObjectKind};
use cairn::format::id::content_hash;
use cairn::format::{encode_object, to_msgpack_named, Compression};
use cairn::repo::lock::LockInfo;
use cairn::repo::InitOptions;
use cairn::{Error, Repository};
use common::*;

/// Address space for a run that must stay bounded. `init` and `snapshots` run in under 64 MiB
/// of address space; reading any of the inputs below without a bound passes 256 MiB within a
/// second (and a 100 GiB sparse file is one 100 GiB allocation).
const MEM: u64 = 256 << 20;

/// The run failed as a bad input must: exit 1, no panic, a message with each of `words`.
#[track_caller]
fn refused(run: &Run, words: &[&str]) {
    run.expect(1);
    assert!(
        !run.stderr.contains("panicked"),
        "{}: panicked:\n{}",
        run.what,
        run.stderr
    );
    for w in words {
        assert!(
            run.stderr.contains(w),
            "{}: the message lacks {w:?}:\n{}",
            run.what,
            run.stderr
        );
    }
}

/// A file of `len` bytes that takes no space and has no line end (all zeros).
fn sparse(path: &Path, len: u64) -> PathBuf {
    let f = fs::File::create(path).expect("create sparse file");
    f.set_len(len).expect("set_len");
    path.to_path_buf()
}

fn mkfifo(path: &Path) -> PathBuf {
    sh("mkfifo", &[path.as_os_str()]);
    path.to_path_buf()
}

/// Opens a FIFO for reading and writing: it then has a writer (this test) before cairn opens
/// it, as a `<(command)` pipe has.
fn fifo_writer(path: &Path) -> fs::File {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .expect("open FIFO read-write")
}

/// Writes zeros into `f` until `stop`: an endless writer.
fn endless_zeros(f: fs::File, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    use std::io::Write;
    std::thread::spawn(move || {
        let mut f = f;
        let zeros = [0u8; 4096];
        while !stop.load(Ordering::SeqCst) {
            match f.write(&zeros) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // Wait for room in the pipe (the reader took some), looking at `stop`
                    // every 10 ms.
                    let mut pfd = libc::pollfd {
                        fd: f.as_raw_fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd for a descriptor this thread owns.
                    unsafe { libc::poll(&mut pfd, 1, 10) };
                }
                Err(e) => panic!("writing the FIFO: {e}"),
            }
        }
    })
}

/// `bash -c SCRIPT cairn REPO PASSWORD` with a memory limit: for process substitution.
fn bash(f: &Fixture, script: &str) -> Run {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("ulimit -v {}; {script}", MEM / 1024))
        .arg(env!("CARGO_BIN_EXE_cairn"))
        .arg(&f.repo)
        .arg(PASSWORD)
        .env("XDG_CACHE_HOME", f.path("cache"))
        .env_remove("CAIRN_PASSWORD")
        .env_remove("CAIRN_REPOSITORY")
        .stdin(Stdio::null())
        .output()
        .expect("bash is needed for process substitution");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        what: format!("bash -c {script:?}"),
    }
}

fn library_open(f: &Fixture) -> Repository {
    Repository::open(Arc::new(LocalBackend::new(&f.repo)), PASSWORD.as_bytes())
        .expect("open the fixture repository")
}

// ---------------------------------------------------------------------------------------------
// Password sources

/// Files that hold no password line within the bound, or are no file at all.
fn bad_password_files(f: &Fixture) -> Vec<(PathBuf, &'static [&'static str])> {
    let no_line_end = f.path("no-line-end");
    write(&no_line_end, vec![b'x'; 1 << 20]);
    let dir = f.path("a-directory");
    fs::create_dir_all(&dir).expect("mkdir");
    vec![
        (PathBuf::from("/dev/zero"), &["/dev/zero", "device"][..]),
        (PathBuf::from("/dev/urandom"), &["/dev/urandom", "device"]),
        (PathBuf::from("/dev/null"), &["/dev/null", "device"]),
        (
            sparse(&f.path("sparse"), 100 << 30),
            &["sparse", "no line end", "64 KiB"],
        ),
        (no_line_end, &["no-line-end", "no line end"]),
        (dir, &["a-directory", "is a directory"]),
        (
            mkfifo(&f.path("fifo-without-writer")),
            &["fifo-without-writer", "no writer"],
        ),
        (f.path("missing"), &["missing", "No such file"]),
    ]
}

#[test]
fn every_password_file_over_the_bound_or_not_a_file_is_refused_with_bounded_memory() {
    let f = Fixture::new();
    for (path, words) in bad_password_files(&f) {
        // Every way a password file is given: option, variable, and the other passwords.
        let run = f
            .cmd_without_password()
            .mem_limit(MEM)
            .arg("--password-file")
            .arg(&path)
            .arg("snapshots")
            .run();
        refused(&run, words);
        let run = f
            .cmd_without_password()
            .mem_limit(MEM)
            .env("CAIRN_PASSWORD_FILE", &path)
            .arg("snapshots")
            .run();
        refused(&run, words);
        let run = f
            .cmd()
            .mem_limit(MEM)
            .args(["key", "add", "--kdf-memory-mib", "8", "--new-password-file"])
            .arg(&path)
            .run();
        refused(&run, words);
        let run = f
            .cmd()
            .mem_limit(MEM)
            .args(["copy", "--to"])
            .arg(&f.repo)
            .arg("--to-password-file")
            .arg(&path)
            .run();
        refused(&run, words);
        let run = f
            .cmd()
            .mem_limit(MEM)
            .env("CAIRN_TO_PASSWORD_FILE", &path)
            .args(["copy", "--to"])
            .arg(&f.repo)
            .run();
        refused(&run, words);
    }
    // Nothing was added or changed by any of them.
    let keys = fs::read_dir(f.repo.join("keys")).expect("keys").count();
    assert_eq!(keys, 2, "one key file and its copy");
}

#[test]
fn a_password_fifo_that_never_stops_writing_is_cut_at_the_bound() {
    let f = Fixture::new();
    let fifo = mkfifo(&f.path("zeros"));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = endless_zeros(fifo_writer(&fifo), stop.clone());
    let run = f
        .cmd_without_password()
        .mem_limit(MEM)
        .arg("--password-file")
        .arg(&fifo)
        .arg("snapshots")
        .run();
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer");
    refused(&run, &["zeros", "no line end"]);

    // The same through process substitution, as a shell user writes it.
    let run = bash(
        &f,
        r#"exec "$0" -r "$1" --no-progress --password-file <(cat /dev/zero) snapshots"#,
    );
    refused(&run, &["no line end"]);
}

#[test]
fn a_password_from_a_fifo_or_process_substitution_works() {
    let f = Fixture::new();
    let fifo = mkfifo(&f.path("pw-fifo"));
    let w = fifo_writer(&fifo);
    {
        use std::io::Write;
        (&w).write_all(format!("{PASSWORD}\nsecond line\n").as_bytes())
            .expect("write FIFO");
    }
    f.cmd_without_password()
        .mem_limit(MEM)
        .arg("--password-file")
        .arg(&fifo)
        .arg("snapshots")
        .run()
        .ok();
    drop(w);
    let run = bash(
        &f,
        r#"exec "$0" -r "$1" --no-progress --password-file <(printf '%s\n' "$2") snapshots"#,
    );
    run.ok();
    let run = bash(
        &f,
        r#"exec "$0" -r "$1" --no-progress --password-command "printf '%s\r\n' '$2'" snapshots"#,
    );
    run.ok();
}

#[test]
fn a_password_file_is_its_first_line_whatever_the_line_ending() {
    let f = Fixture::new();
    let cases: &[(&str, &[u8])] = &[
        ("lf", b"\n"),
        ("crlf", b"\r\n"),
        ("no-newline", b""),
        ("more-lines", b"\nsomething else\n"),
    ];
    for (name, tail) in cases {
        let p = f.path(name);
        let mut bytes = PASSWORD.as_bytes().to_vec();
        bytes.extend_from_slice(tail);
        write(&p, bytes);
        f.cmd_without_password()
            .mem_limit(MEM)
            .arg("--password-file")
            .arg(&p)
            .arg("snapshots")
            .run()
            .ok();
    }
    // A long first line within the bound is a password like any other (here: a wrong one).
    let p = f.path("long");
    write(&p, [vec![b'y'; 60_000], b"\n".to_vec()].concat());
    f.cmd_without_password()
        .mem_limit(MEM)
        .arg("--password-file")
        .arg(&p)
        .arg("snapshots")
        .run()
        .expect(12);
    for (name, bytes) in [
        ("empty", &b""[..]),
        ("empty-first-line", b"\nsecond"),
        ("crlf-only", b"\r\n"),
    ] {
        let p = f.path(name);
        write(&p, bytes);
        let run = f
            .cmd_without_password()
            .arg("--password-file")
            .arg(&p)
            .arg("snapshots")
            .run();
        refused(&run, &["password is empty", name]);
    }
}

#[test]
fn a_password_command_that_writes_too_much_or_fails_is_killed_reaped_and_refused() {
    let f = Fixture::new();
    let pidfile = f.path("command.pid");
    let cases: &[(&str, &[&str])] = &[
        ("exec cat /dev/zero", &["printed more than 64 KiB"]),
        ("exec yes", &["printed more than 64 KiB"]),
        (
            "exec head -c 70000 /dev/zero",
            &["printed more than 64 KiB"],
        ),
        (
            "printf 'pw\\n'; exec cat /dev/urandom",
            &["printed more than 64 KiB"],
        ),
        ("true", &["password is empty"]),
        ("printf '\\nsecond\\n'", &["password is empty"]),
        ("echo pw; exit 3", &["failed", "exit status: 3"]),
    ];
    for (cmd, words) in cases {
        let _ = fs::remove_file(&pidfile);
        let cmd = format!("echo $$ > '{}'; {cmd}", pidfile.display());
        for via_env in [false, true] {
            let c = f.cmd_without_password().mem_limit(MEM);
            let c = if via_env {
                c.env("CAIRN_PASSWORD_COMMAND", &cmd)
            } else {
                c.arg("--password-command").arg(&cmd)
            };
            let run = c.arg("snapshots").run();
            refused(&run, words);
            // The command's process is gone, not left running or as a zombie of cairn's.
            let pid: i32 = fs::read_to_string(&pidfile)
                .expect("the command ran")
                .trim()
                .parse()
                .expect("pid");
            // SAFETY: signal 0 only asks whether the process exists.
            let alive = unsafe { libc::kill(pid, 0) } == 0;
            assert!(!alive, "{cmd}: its process {pid} is still there");
        }
    }
    // The copy destination's command, and an oversized password variable.
    let run = f
        .cmd()
        .mem_limit(MEM)
        .args(["copy", "--to"])
        .arg(&f.repo)
        .args(["--to-password-command", "cat /dev/zero"])
        .run();
    refused(&run, &["printed more than 64 KiB"]);
    let run = f
        .cmd_without_password()
        .mem_limit(MEM)
        .env("CAIRN_PASSWORD", "z".repeat(70_000))
        .arg("snapshots")
        .run();
    refused(&run, &["CAIRN_PASSWORD", "at most 65536 bytes"]);
}

/// Spawns cairn for a run this test interrupts itself.
fn spawn(f: &Fixture, args: &[&OsStr]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("-r")
        .arg(&f.repo)
        .arg("--no-progress")
        .args(args)
        .env_remove("CAIRN_PASSWORD")
        .env("XDG_CACHE_HOME", f.path("cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cairn")
}

fn interrupt(child: &mut std::process::Child) -> i32 {
    // SAFETY: kill with a valid signal to the child's PID.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    child.wait().expect("wait").code().unwrap_or(-1)
}

#[test]
fn ctrl_c_ends_a_wait_for_a_password_that_does_not_come() {
    let f = Fixture::new();
    // A command that never writes.
    let pidfile = f.path("sleep.pid");
    let cmd = format!("echo $$ > '{}'; exec sleep 1000", pidfile.display());
    let mut child = spawn(
        &f,
        &[
            "--password-command".as_ref(),
            cmd.as_ref(),
            "snapshots".as_ref(),
        ],
    );
    wait_until(
        Duration::from_secs(60),
        "the password command to start",
        || fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n')),
    );
    assert_eq!(interrupt(&mut child), 130);
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: signal 0 only asks whether the process exists.
    assert!(
        unsafe { libc::kill(pid, 0) } != 0,
        "sleep {pid} was left running"
    );

    // A FIFO whose writer never writes.
    let fifo = mkfifo(&f.path("silent"));
    let w = fifo_writer(&fifo);
    let mut child = spawn(
        &f,
        &[
            "--password-file".as_ref(),
            fifo.as_os_str(),
            "snapshots".as_ref(),
        ],
    );
    let fds = PathBuf::from(format!("/proc/{}/fd", child.id()));
    wait_until(Duration::from_secs(60), "cairn to open the FIFO", || {
        fs::read_dir(&fds).is_ok_and(|d| {
            d.filter_map(Result::ok)
                .any(|e| fs::read_link(e.path()).is_ok_and(|t| t == fifo))
        })
    });
    assert_eq!(interrupt(&mut child), 130);
    drop(w);
}

// ---------------------------------------------------------------------------------------------
// Exclude files and plan files

/// Files that no exclude file or plan file can be.
fn oversized_files(f: &Fixture) -> Vec<(PathBuf, &'static [&'static str])> {
    let dir = f.path("a-dir");
    fs::create_dir_all(&dir).expect("mkdir");
    vec![
        (PathBuf::from("/dev/zero"), &["/dev/zero", "more than"][..]),
        (
            PathBuf::from("/dev/urandom"),
            &["/dev/urandom", "more than"],
        ),
        (
            sparse(&f.path("huge"), 100 << 30),
            &["huge", "107374182400 bytes"],
        ),
        (dir, &["a-dir", "is a directory"]),
    ]
}

#[test]
fn exclude_files_and_plan_files_over_their_bound_are_refused_with_bounded_memory() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a"), "a");
    for (path, words) in oversized_files(&f) {
        let run = f
            .cmd()
            .mem_limit(MEM)
            .args(["backup", "--exclude-file"])
            .arg(&path)
            .arg(&src)
            .run();
        refused(&run, words);
        let run = f
            .cmd()
            .mem_limit(MEM)
            .arg("--config")
            .arg(&path)
            .args(["plan", "status"])
            .run();
        refused(&run, words);
        let run = f
            .cmd()
            .mem_limit(MEM)
            .env("CAIRN_CONFIG", &path)
            .args(["plan", "run", "home"])
            .run();
        refused(&run, words);
    }
    // Not UTF-8 text: named, with where.
    let latin1 = f.path("latin1");
    write(&latin1, b"*.tmp\ncaf\xe9\n");
    let run = f
        .cmd()
        .args(["backup", "--exclude-file"])
        .arg(&latin1)
        .arg(&src)
        .run();
    refused(&run, &["latin1", "not UTF-8"]);
    // A FIFO with no writer is an empty exclude file, not a hang.
    let fifo = mkfifo(&f.path("excludes-fifo"));
    f.cmd()
        .args(["backup", "--exclude-file"])
        .arg(&fifo)
        .arg(&src)
        .run()
        .ok();
    // A pipe with a writer that ends (process substitution) is read whole.
    let run = bash(
        &f,
        &format!(
            r#"CAIRN_PASSWORD="$2" exec "$0" -r "$1" --no-progress --json backup --exclude-file <(printf 'a\n') '{}'"#,
            src.display()
        ),
    );
    run.ok();
    let summary = run.summary();
    assert_eq!(
        summary["total_files"], 0,
        "the pattern from the FIFO applied"
    );
}

// ---------------------------------------------------------------------------------------------
// Interrupted init

/// The states an `init` killed at some instant leaves (repo-format.md §10.2: directories →
/// key file → its copy → config), made from a finished init.
#[derive(Clone, Copy, Debug)]
enum Leftover {
    /// Killed while creating directories: some of them, and temporary files.
    Directories,
    /// Killed while writing the key file, on a medium that leaves a zero-length file.
    EmptyKeyFile,
    /// ... or a partial one.
    PartialKeyFile,
    /// Killed before the key file's copy.
    KeyFile,
    /// Killed before the config.
    KeyFileAndCopy,
}

const LEFTOVERS: [Leftover; 5] = [
    Leftover::Directories,
    Leftover::EmptyKeyFile,
    Leftover::PartialKeyFile,
    Leftover::KeyFile,
    Leftover::KeyFileAndCopy,
];

/// A fixture whose repository is what `state` leaves; also returns the id of the repository
/// the interrupted init was making.
fn interrupted(state: Leftover) -> (Fixture, String) {
    let f = Fixture::empty();
    let run = f
        .cmd()
        .args(["--json", "init", "--kdf-memory-mib", "8"])
        .run();
    run.ok();
    let id = run.json()["repository_id"].as_str().unwrap().to_string();
    let keys = f.repo.join("keys");
    let names: Vec<PathBuf> = fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let key = names
        .iter()
        .find(|p| p.extension().is_none())
        .unwrap()
        .clone();
    let copy = key.with_extension("copy");
    fs::remove_file(f.repo.join("config")).unwrap();
    match state {
        Leftover::Directories => {
            fs::remove_file(&key).unwrap();
            fs::remove_file(&copy).unwrap();
            fs::remove_dir(f.repo.join("locks")).unwrap();
            fs::remove_dir(f.repo.join("snapshots")).unwrap();
            write(keys.join(".tmp-0123456789abcdef"), b"half a key");
            write(f.repo.join(".tmp-fedcba9876543210"), b"");
        }
        Leftover::EmptyKeyFile => {
            fs::remove_file(&copy).unwrap();
            fs::write(&key, b"").unwrap();
        }
        Leftover::PartialKeyFile => {
            fs::remove_file(&copy).unwrap();
            let bytes = fs::read(&key).unwrap();
            fs::write(&key, &bytes[..bytes.len() / 2]).unwrap();
        }
        Leftover::KeyFile => fs::remove_file(&copy).unwrap(),
        Leftover::KeyFileAndCopy => {}
    }
    (f, id)
}

/// The repository works: a backup, a full check and a restore.
fn assert_usable(f: &Fixture) {
    let src = f.path("data");
    write(src.join("file"), random_bytes(7, 100_000));
    f.backup(&[&src], &[]);
    f.cmd().args(["check", "--read-data"]).run().ok();
    let target = f.path("restored");
    f.restore_latest(&target);
    assert_same_tree(&src, &restored(&target, &src));
}

#[test]
fn other_commands_say_what_an_interrupted_init_left() {
    for state in LEFTOVERS {
        let (f, _) = interrupted(state);
        let run = f.cmd().arg("snapshots").run();
        match state {
            Leftover::Directories => {
                run.expect(10);
                assert!(
                    run.stderr.contains("also finishes an interrupted one"),
                    "{state:?}: {}",
                    run.stderr
                );
            }
            Leftover::EmptyKeyFile | Leftover::PartialKeyFile => {
                run.expect(10);
                assert!(
                    run.stderr.contains("an interrupted `cairn init` left")
                        && run.stderr.contains("run `cairn init` again to finish it"),
                    "{state:?}: {}",
                    run.stderr
                );
            }
            // The key file carries the config: the repository opens, and says what to do.
            Leftover::KeyFile | Leftover::KeyFileAndCopy => {
                run.ok();
                assert!(
                    run.stderr.contains("an interrupted `cairn init` left")
                        && run.stderr.contains("run `cairn init` again to finish it"),
                    "{state:?}: {}",
                    run.stderr
                );
            }
        }
        assert!(
            !run.stderr.contains("wrong password"),
            "{state:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn init_finishes_or_redoes_what_an_interrupted_init_left() {
    for state in LEFTOVERS {
        let (f, id) = interrupted(state);
        let run = f
            .cmd()
            .args(["--json", "init", "--kdf-memory-mib", "8"])
            .run();
        run.ok();
        let now = run.json()["repository_id"].as_str().unwrap().to_string();
        match state {
            // A durable key file: its init is finished, with the repository it was making.
            Leftover::KeyFile | Leftover::KeyFileAndCopy => {
                assert_eq!(now, id, "{state:?}: the interrupted init's repository");
                assert!(
                    run.stderr.contains("finished the interrupted"),
                    "{}",
                    run.stderr
                );
            }
            // Nothing usable: a new repository.
            _ => assert_ne!(now, id, "{state:?}"),
        }
        let keys: Vec<String> = fs::read_dir(f.repo.join("keys"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            keys.len(),
            2,
            "{state:?}: one key file and its copy: {keys:?}"
        );
        assert!(
            keys.iter().all(|k| !k.starts_with(".tmp-")),
            "{state:?}: temporary files removed: {keys:?}"
        );
        assert_usable(&f);
        let run = f.cmd().args(["init", "--kdf-memory-mib", "8"]).run();
        refused(&run, &["not empty"]);
    }
}

#[test]
fn init_never_finishes_over_another_password_or_over_anything_else() {
    // A durable key file for another password: refused, and nothing is touched.
    for state in [Leftover::KeyFile, Leftover::KeyFileAndCopy] {
        let (f, _) = interrupted(state);
        let before = f.repo_files();
        let run = f
            .cmd_without_password()
            .env("CAIRN_PASSWORD", "another password")
            .args(["init", "--kdf-memory-mib", "8"])
            .run();
        refused(&run, &["this password does not open", "cairn init"]);
        assert_eq!(f.repo_files(), before, "{state:?}: nothing touched");
    }
    // A foreign file beside the leftovers, or any data: "not empty", nothing touched.
    for state in [Leftover::Directories, Leftover::EmptyKeyFile] {
        let (f, _) = interrupted(state);
        write(f.repo.join("notes.txt"), "mine");
        let before = f.repo_files();
        let run = f.cmd().args(["init", "--kdf-memory-mib", "8"]).run();
        refused(&run, &["not empty"]);
        assert_eq!(f.repo_files(), before, "{state:?}: nothing touched");
    }
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a"), "a");
    f.backup(&[&src], &[]);
    fs::remove_file(f.repo.join("config")).unwrap();
    for k in fs::read_dir(f.repo.join("keys")).unwrap() {
        fs::write(k.unwrap().path(), b"").unwrap();
    }
    let before = f.repo_files();
    let run = f.cmd().args(["init", "--kdf-memory-mib", "8"]).run();
    refused(&run, &["not empty"]);
    assert_eq!(
        f.repo_files(),
        before,
        "a repository with data: nothing touched"
    );
}

fn small_init() -> InitOptions {
    InitOptions {
        kdf: KdfParams {
            m_cost_kib: KdfParams::MIN_M_COST_KIB,
            t_cost: 1,
            p_cost: 1,
        },
        ..InitOptions::default()
    }
}

/// Through the storage seam: an init that crashes at each of its storage operations in turn
/// leaves a location that another init (same password) finishes or redoes, and that an init
/// with another password redoes only when no key file is durable.
#[test]
fn an_init_crashing_at_any_storage_operation_can_be_finished() {
    let pw = b"pw";
    for crash_at in 0.. {
        let base = Arc::new(MemBackend::new());
        let fault = Arc::new(FaultBackend::new(base.clone(), crash_at));
        if Repository::init(fault.clone(), pw, &small_init()).is_ok() {
            assert!(crash_at >= 4, "init has four storage operations");
            break;
        }
        let key_durable = !base.list(FileKind::Key).unwrap().is_empty();
        // Without finishing allowed, a location with a key file is "not empty".
        let plain = Repository::init(base.clone(), b"other", &small_init());
        if key_durable {
            assert!(
                matches!(plain, Err(Error::RepoNotEmpty(_))),
                "crash at {crash_at}"
            );
            let other = Repository::init(
                base.clone(),
                b"other",
                &InitOptions {
                    finish_interrupted: true,
                    ..small_init()
                },
            );
            assert!(
                matches!(other, Err(Error::InvalidInput(_))),
                "crash at {crash_at}"
            );
            let repo = Repository::init(
                base.clone(),
                pw,
                &InitOptions {
                    finish_interrupted: true,
                    ..small_init()
                },
            )
            .unwrap_or_else(|e| panic!("crash at {crash_at}: {e}"));
            drop(repo);
        } else {
            plain.unwrap_or_else(|e| panic!("crash at {crash_at}: {e}"));
        }
        let repo = Repository::open(base.clone(), if key_durable { pw } else { b"other" })
            .unwrap_or_else(|e| panic!("crash at {crash_at}: {e}"));
        assert!(
            repo.take_warnings().is_empty(),
            "crash at {crash_at}: a whole repository"
        );
        assert_eq!(base.list(FileKind::Config).unwrap().len(), 1);
        assert_eq!(base.list(FileKind::KeyCopy).unwrap().len(), 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Newer formats

/// Replaces the repository's key files (and copies) with one file of these bytes.
fn replace_keys(f: &Fixture, bytes: &[u8]) {
    for k in fs::read_dir(f.repo.join("keys")).unwrap() {
        fs::remove_file(k.unwrap().path()).unwrap();
    }
    let name = hex::encode(content_hash(bytes));
    write(f.repo.join("keys").join(&name), bytes);
    write(f.repo.join("keys").join(format!("{name}.copy")), bytes);
}

/// The run names a later format, and is neither a wrong password nor damage.
#[track_caller]
fn needs_newer(run: &Run, what: &str) {
    refused(run, &[what, "needs a newer cairn (format 2"]);
    assert!(!run.stderr.contains("wrong password"), "{}", run.stderr);
    assert!(!run.stderr.contains("damaged"), "{}", run.stderr);
}

#[test]
fn key_files_of_a_later_format_are_named_not_taken_for_a_wrong_password() {
    // Version 2 that is otherwise a valid version 1 key file: the map's first entry is
    // `version` (repo-format.md §2.1), `a7 "version" 01`.
    let f = Fixture::new();
    let key = fs::read_dir(f.repo.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_none())
        .unwrap();
    let mut bytes = fs::read(&key).unwrap();
    let at = bytes.windows(8).position(|w| w == b"\xa7version").unwrap() + 8;
    assert_eq!(bytes[at], 1);
    bytes[at] = 2;
    replace_keys(&f, &bytes);
    needs_newer(&f.cmd().arg("snapshots").run(), "key file");
    // Even with a password that would never have opened it.
    let run = f
        .cmd_without_password()
        .env("CAIRN_PASSWORD", "wrong")
        .arg("snapshots")
        .run();
    needs_newer(&run, "key file");

    // Version 2 and nothing else that version 1 knows.
    let f = Fixture::new();
    replace_keys(&f, b"\x82\xa7version\x02\xa6future\xa7garbage");
    needs_newer(&f.cmd().arg("snapshots").run(), "key file");
    let run = f.cmd().args(["backup", "/dev/null"]).run();
    needs_newer(&run, "key file");
}

#[test]
fn a_config_of_a_later_format_is_named_and_its_copy_is_not_used_instead() {
    #[derive(serde::Serialize)]
    struct Future {
        version: u32,
        layout: &'static str,
    }
    let f = Fixture::new();
    let repo = library_open(&f);
    let mut config = repo.config().clone();
    config.version = 3;
    let valid_but_newer = encode_object(
        repo.keys(),
        ObjectKind::Config,
        &[],
        &to_msgpack_named(&config).unwrap(),
        Compression::Off,
    )
    .unwrap();
    let garbage_newer = encode_object(
        repo.keys(),
        ObjectKind::Config,
        &[],
        &to_msgpack_named(&Future {
            version: 3,
            layout: "something else",
        })
        .unwrap(),
        Compression::Off,
    )
    .unwrap();
    for bytes in [valid_but_newer, garbage_newer] {
        fs::write(f.repo.join("config"), &bytes).unwrap();
        // Format 2 (a repository with put-only keys) is read; 3 is not.
        for run in [
            f.cmd().arg("snapshots").run(),
            f.cmd().args(["backup", "/dev/null"]).run(),
        ] {
            refused(&run, &["the repository", "needs a newer cairn (format 3"]);
            assert!(!run.stderr.contains("damaged"), "{}", run.stderr);
        }
    }
}

#[test]
fn snapshots_of_a_later_format_are_named_and_skipped() {
    #[derive(serde::Serialize)]
    struct Future {
        version: u32,
        everything: &'static str,
    }
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a"), "a");
    f.backup(&[&src], &[]);
    let repo = library_open(&f);
    let (_, snap) = repo.find_snapshot("latest", &Default::default()).unwrap();
    let newer = repo
        .save_snapshot(&cairn::snapshot::Snapshot { version: 2, ..snap })
        .unwrap();
    let sealed = encode_object(
        repo.keys(),
        ObjectKind::Snapshot,
        &[],
        &to_msgpack_named(&Future {
            version: 2,
            everything: "changed",
        })
        .unwrap(),
        Compression::Off,
    )
    .unwrap();
    let garbage = hex::encode(content_hash(&sealed));
    write(f.repo.join("snapshots").join(&garbage), &sealed);

    let run = f.cmd().arg("snapshots").run();
    run.ok();
    for id in [newer.to_hex(), garbage.clone()] {
        let short = &id[..8];
        assert!(
            run.stderr.contains(&format!(
                "skipping snapshot {short}: snapshot {short} needs a newer cairn (format 2"
            )),
            "{}",
            run.stderr
        );
        needs_newer(&f.cmd().args(["ls", &id]).run(), short);
        needs_newer(
            &f.cmd()
                .args(["restore", short, "--target"])
                .arg(f.path("t"))
                .run(),
            short,
        );
    }
    // The readable snapshot still restores.
    let target = f.path("restored");
    f.restore_latest(&target);
    assert_same_tree(&src, &restored(&target, &src));
}

// ---------------------------------------------------------------------------------------------
// Locks

/// Writes a lock file sealed with the repository's keys, as a holder elsewhere would.
fn plant_lock(f: &Fixture, info: &LockInfo) -> String {
    let repo = library_open(f);
    let sealed = encode_object(
        repo.keys(),
        ObjectKind::Lock,
        &[],
        &to_msgpack_named(info).unwrap(),
        Compression::Off,
    )
    .unwrap();
    let name = hex::encode(content_hash(&sealed));
    write(f.repo.join("locks").join(&name), &sealed);
    name
}

fn foreign_lock(age_ns: i64) -> LockInfo {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    LockInfo {
        exclusive: true,
        host: "faraway-host".into(),
        pid: 4242,
        boot_id: "other-boot".into(),
        time_ns: now - age_ns,
        command: "prune".into(),
    }
}

const MINUTE: i64 = 60_000_000_000;
const DAY: i64 = 24 * 60 * MINUTE;

#[test]
fn a_foreign_lock_dated_in_the_future_names_its_host_and_age_and_how_to_remove_it() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a"), "a");
    // Three days ahead (and a bit, so the whole days shown do not depend on the run's speed).
    let lock = plant_lock(&f, &foreign_lock(-(3 * DAY + 30 * MINUTE)));
    let run = f.cmd().arg("backup").arg(&src).run();
    run.expect(11);
    for w in [
        "faraway-host",
        "dated 3 days in the future",
        "cairn unlock --remove-all",
    ] {
        assert!(run.stderr.contains(w), "lacks {w:?}: {}", run.stderr);
    }
    // Not stale: a plain unlock keeps it; --remove-all removes it; then the backup runs.
    let run = f.cmd().args(["--json", "unlock"]).run();
    run.ok();
    assert_eq!(run.json()["removed"], serde_json::json!([]));
    assert!(f.repo.join("locks").join(&lock).exists());
    let run = f.cmd().args(["--json", "unlock", "--remove-all"]).run();
    run.ok();
    assert_eq!(run.json()["removed"], serde_json::json!([lock]));
    f.backup(&[&src], &[]);
}

#[test]
fn a_foreign_lock_from_the_past_says_when_it_goes_stale() {
    let f = Fixture::new();
    plant_lock(&f, &foreign_lock(10 * MINUTE + 20_000_000_000));
    let run = f.cmd().arg("prune").run();
    run.expect(11);
    for w in [
        "faraway-host",
        "last refreshed 10 minutes ago",
        "goes stale in 19 minutes",
        "cairn unlock --remove-all",
    ] {
        assert!(run.stderr.contains(w), "lacks {w:?}: {}", run.stderr);
    }
    // Stale ones (over 30 minutes) are ignored and removed by a plain unlock.
    let f = Fixture::new();
    let stale = plant_lock(&f, &foreign_lock(31 * MINUTE));
    f.cmd().arg("prune").run().ok();
    let run = f.cmd().args(["--json", "unlock"]).run();
    run.ok();
    assert_eq!(run.json()["removed"], serde_json::json!([stale]));
}

#[test]
fn unlock_removes_only_what_it_can_read_as_a_lock_of_this_repository() {
    let f = Fixture::new();
    let other = Fixture::new();
    let locks = f.repo.join("locks");
    // Not locks of this repository: foreign bytes under an id name, a lock of another
    // repository, a zero-length file, a file too large to be a lock.
    let foreign = random_bytes(1, 300);
    let foreign_name = hex::encode(content_hash(&foreign));
    write(locks.join(&foreign_name), &foreign);
    let theirs = plant_lock(&other, &foreign_lock(0));
    fs::copy(other.repo.join("locks").join(&theirs), locks.join(&theirs)).unwrap();
    let empty_name = "0".repeat(64);
    write(locks.join(&empty_name), b"");
    let big = random_bytes(2, 100_000);
    let big_name = hex::encode(content_hash(&big));
    write(locks.join(&big_name), &big);
    // And locks of this repository: a live-looking foreign one and a stale one.
    let live = plant_lock(&f, &foreign_lock(MINUTE));
    let stale = plant_lock(&f, &foreign_lock(40 * MINUTE));

    let run = f.cmd().args(["--json", "unlock", "--remove-all"]).run();
    run.ok();
    let j = run.json();
    let mut removed: Vec<String> = serde_json::from_value(j["removed"].clone()).unwrap();
    removed.sort();
    let mut want = vec![live, stale];
    want.sort();
    assert_eq!(removed, want);
    let mut unreadable: Vec<String> = j["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_string())
        .collect();
    unreadable.sort();
    let mut left = vec![foreign_name, theirs, empty_name, big_name];
    left.sort();
    assert_eq!(unreadable, left);
    for n in &left {
        assert!(locks.join(n).exists(), "{n} was removed");
    }
    // In human output they are named too; and they never block anyone.
    let run = f.cmd().arg("unlock").run();
    run.ok();
    for n in &left {
        assert!(
            run.stderr.contains(n.as_str()),
            "{n} not named: {}",
            run.stderr
        );
    }
    f.cmd().arg("prune").run().ok();
}

#[test]
fn a_repository_without_its_locks_directory_can_still_be_locked() {
    let f = Fixture::new();
    fs::remove_dir(f.repo.join("locks")).unwrap();
    let src = f.path("src");
    write(src.join("a"), "a");
    f.backup(&[&src], &[]);
    f.cmd().arg("prune").run().ok();
    assert!(f.repo.join("locks").is_dir());
}

// ---------------------------------------------------------------------------------------------
// A repository inside a backed-up directory

#[test]
fn a_backup_of_a_directory_holding_the_repository_leaves_the_repository_out() {
    let f = Fixture::empty();
    let data = f.path("data");
    write(data.join("docs/a.txt"), "a");
    write(data.join("z.bin"), random_bytes(3, 50_000));
    fs::create_dir_all(f.tmp.path().join("links")).unwrap();
    std::os::unix::fs::symlink(&data, f.path("links/data")).unwrap();
    // The repository named by different paths: plain, through a symlink, relative with `..`
    // and a trailing slash.
    let repo = data.join("backups/repo");
    let names: Vec<(PathBuf, Option<&Path>)> = vec![
        (repo.clone(), None),
        (f.path("links/data/backups/repo"), None),
        (
            PathBuf::from("data/docs/../backups/repo/"),
            Some(f.tmp.path()),
        ),
    ];
    let cmd = |r: &Path, cwd: Option<&Path>| {
        let c = TestCommand::bare()
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("XDG_CACHE_HOME", f.path("cache"))
            .arg("-r")
            .arg(r);
        match cwd {
            Some(d) => c.current_dir(d),
            None => c,
        }
    };
    cmd(&repo, None)
        .args(["init", "--kdf-memory-mib", "8"])
        .run()
        .ok();
    for (i, (r, cwd)) in names.iter().enumerate() {
        let run = cmd(r, *cwd)
            .args(["--json", "backup", "--time"])
            .arg(format!("2024-01-0{} 00:00:00", i + 1))
            .arg(&data)
            .run();
        run.ok();
        let s = run.summary();
        assert_eq!(
            s["repository_left_out"],
            serde_json::json!([repo.to_str().unwrap()]),
            "{}: {}",
            r.display(),
            run.stderr
        );
        assert!(
            run.stderr.contains("is the repository itself"),
            "{}",
            run.stderr
        );
        let target = f.path(format!("restored-{i}"));
        cmd(&repo, None)
            .args(["restore", "latest", "--target"])
            .arg(&target)
            .run()
            .ok();
        // Everything but the repository; its parent directory stays, empty.
        let got = restored(&target, &data);
        assert_same_tree(&data.join("docs"), &got.join("docs"));
        assert_eq!(
            fs::read(got.join("z.bin")).unwrap(),
            fs::read(data.join("z.bin")).unwrap()
        );
        let left: Vec<_> = fs::read_dir(got.join("backups")).unwrap().collect();
        assert!(left.is_empty(), "the repository was backed up: {left:?}");
    }
    // The repository itself given as the path to back up: left out too.
    let run = cmd(&repo, None)
        .args(["--json", "backup"])
        .arg(&repo)
        .arg(data.join("docs"))
        .run();
    run.ok();
    assert_eq!(
        run.summary()["repository_left_out"],
        serde_json::json!([repo.to_str().unwrap()])
    );
}

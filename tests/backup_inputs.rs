//! `cairn backup --stdin`, `--stdin-from-command` and `--files-from*`, through the real binary:
//! streams of every shape restored byte for byte, failing commands that leave no snapshot,
//! names and lists refused with a clear message, and list contents checked against `ls --json`
//! of the snapshot.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// The snapshots as `snapshots --json` lists them.
fn snapshots(f: &Fixture) -> serde_json::Value {
    let run = f.cmd().args(["--json", "snapshots"]).run();
    run.ok();
    run.json()
}

/// Every path in the latest snapshot (`ls --json`), as bytes, with its type.
fn ls(f: &Fixture, snapshot: &str) -> BTreeSet<(Vec<u8>, String)> {
    let run = f.cmd().args(["--json", "ls", snapshot]).run();
    run.ok();
    let v = run.json();
    v.as_array()
        .expect("ls --json is an array")
        .iter()
        .map(|e| {
            let path = match e["path_hex"].as_str() {
                Some(h) => hex::decode(h).expect("hex path"),
                None => e["path"].as_str().expect("path").as_bytes().to_vec(),
            };
            (path, e["type"].as_str().expect("type").to_string())
        })
        .collect()
}

/// The files (not directories) of a snapshot.
fn ls_files(f: &Fixture, snapshot: &str) -> BTreeSet<Vec<u8>> {
    ls(f, snapshot)
        .into_iter()
        .filter(|(_, t)| t == "file")
        .map(|(p, _)| p)
        .collect()
}

/// A run that must fail as bad input does: exit 1, no panic, a message holding each of `words`.
#[track_caller]
fn refused(run: &Run, words: &[&str]) {
    run.assert_no_panic();
    assert_eq!(run.code, 1, "{}", run.output());
    for w in words {
        assert!(run.stderr.contains(w), "no {w:?} in:\n{}", run.stderr);
    }
}

/// Restores `snapshot` into a fresh directory under the fixture and returns it.
fn restore(f: &Fixture, snapshot: &str, dir: &str) -> PathBuf {
    let target = f.path(dir);
    f.cmd()
        .args(["restore", snapshot, "--target"])
        .arg(&target)
        .run()
        .ok();
    target
}

#[test]
fn stdin_streams_of_every_shape_are_restored_byte_for_byte_as_one_file_at_the_root() {
    let f = Fixture::small_packs();
    let mut nuls = Vec::new();
    for i in 0..200_000u32 {
        nuls.extend_from_slice(&[0, (i % 251) as u8, 0, 0, 0xff]);
    }
    let shapes: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("small.txt", b"hello, stream\n".to_vec()),
        // Several MiB: many chunks, over several 1 MiB packs.
        ("big.bin", random_bytes(7, 9 << 20)),
        ("nuls.bin", nuls),
    ];
    for (name, data) in &shapes {
        let input = f.path(format!("input-{name}"));
        write(&input, data);
        let run = f
            .cmd()
            .args(["--json", "backup", "--stdin", "--stdin-filename", name])
            .args(["--time", "2024-03-04 05:06:07"])
            .stdin_file(&input)
            .run();
        run.ok();
        let s = run.summary();
        let id = s["snapshot_id"].as_str().expect("snapshot id").to_string();
        assert_eq!(s["files_new"], 1, "{s}");
        assert_eq!(s["bytes_read"], data.len() as u64, "{s}");
        assert_eq!(s["total_bytes_processed"], data.len() as u64, "{s}");
        assert_eq!(
            s["parent"],
            serde_json::Value::Null,
            "a stream has no parent: {s}"
        );

        // One file, /NAME, at the root; the snapshot's paths say so.
        let entries = ls(&f, &id);
        let want: BTreeSet<_> = [(format!("/{name}").into_bytes(), "file".to_string())].into();
        assert_eq!(entries, want);
        let snap = snapshots(&f)
            .as_array()
            .expect("array")
            .iter()
            .find(|s| s["id"] == id.as_str())
            .cloned()
            .expect("the snapshot is listed");
        assert_eq!(snap["paths"], serde_json::json!([format!("/{name}")]));
        assert_eq!(snap["mode"], "full");

        // Metadata: mode 0644, mtime the backup time, owner the user running the backup.
        let long = f.cmd().args(["--json", "ls", &id]).run();
        long.ok();
        let e = &long.json()[0];
        assert_eq!(e["mode"], 0o644, "{e}");
        assert_eq!(e["size"], data.len() as u64, "{e}");
        assert!(
            e["mtime"]
                .as_str()
                .expect("mtime")
                .starts_with("2024-03-04T05:06:07"),
            "{e}"
        );
        // SAFETY: getuid has no preconditions.
        assert_eq!(e["uid"], unsafe { libc::getuid() }, "{e}");

        let target = restore(&f, &id, &format!("out-{name}"));
        let back = fs::read(target.join(name)).expect("the restored stream");
        assert!(back == *data, "{name}: the restored stream differs");
    }

    // Without --stdin-filename the file is /stdin, as restic names it.
    let input = f.path("input-default");
    write(&input, b"default name");
    let run = f
        .cmd()
        .args(["--json", "backup", "--stdin"])
        .stdin_file(&input)
        .run();
    run.ok();
    let id = run.snapshot_id();
    assert_eq!(ls_files(&f, &id), [b"/stdin".to_vec()].into());
    let target = restore(&f, &id, "out-default");
    assert_eq!(
        fs::read(target.join("stdin")).expect("restored"),
        b"default name"
    );
}

#[test]
fn a_stream_name_that_is_not_utf8_is_stored_and_restored_as_given() {
    let f = Fixture::new();
    let input = f.path("in");
    write(&input, b"latin-1 name");
    let name = OsStr::from_bytes(b"caf\xe9.txt");
    let run = f
        .cmd()
        .args(["--json", "backup", "--stdin", "--stdin-filename"])
        .arg(name)
        .stdin_file(&input)
        .run();
    run.ok();
    let id = run.snapshot_id();
    assert_eq!(ls_files(&f, &id), [b"/caf\xe9.txt".to_vec()].into());
    let target = restore(&f, &id, "out");
    assert_eq!(
        fs::read(target.join(name)).expect("restored"),
        b"latin-1 name"
    );
}

#[test]
fn a_command_stream_is_restored_byte_for_byte_and_its_stderr_passes_through() {
    let f = Fixture::small_packs();
    let data = random_bytes(11, 5 << 20);
    let src = f.path("dump.src");
    write(&src, &data);
    let run = f
        .cmd()
        .args([
            "--json",
            "backup",
            "--stdin-from-command",
            "--stdin-filename",
            "db.sql",
        ])
        .arg("--")
        .args(["sh", "-c", "echo 'dumping now' >&2; cat \"$1\"", "sh"])
        .arg(&src)
        .run();
    run.ok();
    assert!(run.stderr.contains("dumping now"), "{}", run.stderr);
    let s = run.summary();
    assert_eq!(s["bytes_read"], data.len() as u64, "{s}");
    let id = s["snapshot_id"].as_str().expect("id").to_string();
    assert_eq!(ls_files(&f, &id), [b"/db.sql".to_vec()].into());
    let target = restore(&f, &id, "out");
    assert!(fs::read(target.join("db.sql")).expect("restored") == data);

    // The command is run directly, without a shell: its arguments arrive as given.
    let run = f
        .cmd()
        .args([
            "--json",
            "backup",
            "--stdin-from-command",
            "--stdin-filename",
            "args",
        ])
        .args(["--", "printf", "%s|", "a b", "$HOME", "*", "'q'"])
        .run();
    run.ok();
    let id = run.snapshot_id();
    let target = restore(&f, &id, "out-args");
    assert_eq!(
        fs::read(target.join("args")).expect("restored"),
        b"a b|$HOME|*|'q'|"
    );
}

#[test]
fn a_failing_command_makes_no_snapshot_exits_1_and_shows_the_end_of_its_stderr() {
    let f = Fixture::small_packs();
    let first = f.cmd().args(["--json", "backup", "--stdin"]).run();
    first.ok();
    let before = snapshots(&f);
    assert_eq!(before.as_array().expect("array").len(), 1);
    let big = f.path("big");
    write(&big, random_bytes(3, 3 << 20));
    let big = big.to_string_lossy().into_owned();
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        // Exit 3 after writing several MiB (packs were written before the failure).
        (
            vec![
                "sh".into(),
                "-c".into(),
                format!("cat '{big}'; echo 'pg_dump: error: connection refused' >&2; exit 3"),
            ],
            vec!["exited with status 3", "connection refused", "no snapshot"],
        ),
        // Killed by a signal half-way.
        (
            vec![
                "sh".into(),
                "-c".into(),
                "printf partial; echo 'about to die' >&2; kill -9 $$".into(),
            ],
            vec!["killed by signal 9", "about to die", "no snapshot"],
        ),
        // Exit 1 with nothing on stdout or stderr.
        (vec!["false".into()], vec!["exited with status 1", "no snapshot"]),
        // A program that does not exist.
        (
            vec!["cairn-no-such-program-here".into()],
            vec!["cairn-no-such-program-here", "could not start"],
        ),
        // A long error output: its end is shown, bounded.
        (
            vec![
                "sh".into(),
                "-c".into(),
                "i=0; while [ $i -lt 3000 ]; do echo \"noise line $i\" >&2; i=$((i+1)); done; echo LAST-WORDS >&2; exit 2".into(),
            ],
            vec!["exited with status 2", "LAST-WORDS"],
        ),
    ];
    for (cmd, words) in cases {
        for json in [false, true] {
            let mut c = f.cmd();
            if json {
                c = c.arg("--json");
            }
            let run = c
                .args(["backup", "--stdin-from-command", "--"])
                .args(&cmd)
                .run();
            refused(&run, &words);
            if json {
                assert!(
                    !String::from_utf8_lossy(&run.stdout).contains("\"summary\""),
                    "no summary for a failed backup: {}",
                    run.output()
                );
            }
            assert_eq!(snapshots(&f), before, "{cmd:?} left a snapshot");
            if let Some(tail) = run.stderr.split("the end of its error output:\n").nth(1) {
                let shown: usize = tail.lines().map(|l| l.trim_start().len() + 1).sum();
                assert!(shown <= 4096 + 64, "{shown} bytes of error output shown");
            }
        }
    }
    // What the failed runs stored is named by an index: the repository checks clean.
    let check = f.cmd().args(["check"]).run();
    check.ok();
    assert!(
        !check.stderr.contains("not in any index"),
        "a failed stream left packs no index names:\n{}",
        check.stderr
    );
}

#[test]
fn stream_names_and_option_mixes_that_make_no_sense_are_refused_before_anything_is_read() {
    let f = Fixture::new();
    let long = "n".repeat(256);
    for name in ["", ".", "..", "a/b", "/etc/passwd", "dir/", long.as_str()] {
        for form in [
            vec!["--stdin"],
            vec!["--stdin-from-command", "--", "echo", "x"],
        ] {
            let run = f
                .cmd()
                .args(["backup", "--stdin-filename", name])
                .args(&form)
                .run();
            refused(&run, &["--stdin-filename"]);
        }
    }
    let list = f.path("list");
    write(&list, "/tmp\n");
    let src = f.path("src");
    fs::create_dir(&src).expect("mkdir");
    let list = list.to_string_lossy().into_owned();
    let src = src.to_string_lossy().into_owned();
    for (args, words) in [
        (vec!["--stdin", src.as_str()], vec!["--stdin", "PATH"]),
        (vec!["--stdin", "--files-from", &list], vec!["--files-from"]),
        (
            vec![
                "--stdin-from-command",
                "--files-from-raw",
                &list,
                "--",
                "echo",
            ],
            vec!["--files-from"],
        ),
        (vec!["--stdin-from-command"], vec!["needs the command"]),
        (
            vec!["--stdin-filename", "x", src.as_str()],
            vec!["--stdin-filename"],
        ),
        (vec!["--stdin", "--parent", "latest"], vec!["--parent"]),
    ] {
        let run = f.cmd().arg("backup").args(&args).run();
        refused(&run, &words);
    }
    // Both stream options at once is an argument error.
    let run = f
        .cmd()
        .args(["backup", "--stdin", "--stdin-from-command", "--", "echo"])
        .run();
    run.assert_no_panic();
    assert_ne!(run.code, 0);
    assert_eq!(snapshots(&f), serde_json::json!([]));
}

/// A source tree for the list tests: names with spaces, `#`, globs' own characters.
fn source_tree(f: &Fixture) -> PathBuf {
    let src = f.path("src");
    for rel in [
        "a.log",
        "b.log",
        "c.txt",
        ".hidden.log",
        "sub/d.log",
        "sub/deeper/e.txt",
        "other/f.log",
        "other/g.txt",
        "with space.txt",
        "#hash.txt",
        " lead",
        "trail ",
        "star*.txt",
    ] {
        write(src.join(rel), rel.as_bytes());
    }
    src
}

fn bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

#[test]
fn files_from_reads_paths_and_globs_and_skips_comments_and_blank_lines() {
    let f = Fixture::new();
    let src = source_tree(&f);
    let s = src.display();
    let list = f.path("list.txt");
    write(
        &list,
        format!(
            "# what to back up\n\n   {s}/*.log   \n\t# indented comment\n{s}/sub\r\n{s}/other/?.txt\n\n{s}/with space.txt\n"
        ),
    );
    let run = f
        .cmd()
        .args(["--json", "backup", "--files-from"])
        .arg(&list)
        .run();
    run.ok();
    let id = run.snapshot_id();
    let want: BTreeSet<Vec<u8>> = [
        "a.log",
        "b.log",
        ".hidden.log",
        "sub/d.log",
        "sub/deeper/e.txt",
        "other/g.txt",
        "with space.txt",
    ]
    .iter()
    .map(|r| bytes(&src.join(r)))
    .collect();
    assert_eq!(ls_files(&f, &id), want);
    // The expanded paths are the snapshot's paths.
    let snap = &snapshots(&f)[0];
    let paths: BTreeSet<String> = snap["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|p| p.as_str().expect("str").to_string())
        .collect();
    assert!(paths.contains(&format!("{s}/a.log")), "{paths:?}");
    assert!(paths.contains(&format!("{s}/sub")), "{paths:?}");
}

#[test]
fn files_from_verbatim_takes_spaces_hashes_and_glob_characters_literally() {
    let f = Fixture::new();
    let src = source_tree(&f);
    let names = [
        "#hash.txt",
        " lead",
        "trail ",
        "star*.txt",
        "with space.txt",
    ];
    let mut list = Vec::new();
    for n in names {
        list.extend_from_slice(&bytes(&src.join(n)));
        list.extend_from_slice(b"\n\n");
    }
    let file = f.path("verbatim");
    write(&file, &list);
    let run = f
        .cmd()
        .args(["--json", "backup", "--files-from-verbatim"])
        .arg(&file)
        .run();
    run.ok();
    let id = run.snapshot_id();
    let want: BTreeSet<Vec<u8>> = names.iter().map(|n| bytes(&src.join(n))).collect();
    assert_eq!(ls_files(&f, &id), want);
}

#[test]
fn files_from_raw_takes_names_with_newlines_and_bytes_that_are_not_utf8() {
    let f = Fixture::new();
    let src = f.path("raw");
    let names: [&[u8]; 4] = [b"new\nline", b"caf\xe9", b"\xff\xfe binary", b"plain"];
    for n in names {
        write(src.join(OsStr::from_bytes(n)), n);
    }
    write(src.join("not-listed"), b"x");
    // The list as find(1) writes it, when it is there; else as it would.
    let listed: Vec<Vec<u8>> = names
        .iter()
        .map(|n| bytes(&src.join(OsStr::from_bytes(n))))
        .collect();
    let raw = f.path("list0");
    let find = std::process::Command::new("find")
        .arg(&src)
        .args(["-type", "f", "!", "-name", "not-listed", "-print0"])
        .output();
    match find {
        Ok(out) if out.status.success() => write(&raw, &out.stdout),
        other => {
            missing(format!("find(1) is needed to write the list: {other:?}"));
            write(&raw, listed.join(&b'\0'));
        }
    }
    let run = f
        .cmd()
        .args(["--json", "backup", "--files-from-raw"])
        .arg(&raw)
        .run();
    run.ok();
    let id = run.snapshot_id();
    let want: BTreeSet<Vec<u8>> = listed.into_iter().collect();
    assert_eq!(ls_files(&f, &id), want);
    let target = restore(&f, &id, "out");
    for n in names {
        let p = restored(&target, &src.join(OsStr::from_bytes(n)));
        assert_eq!(fs::read(&p).expect("restored"), n);
    }
}

#[test]
fn lists_combine_with_each_other_with_paths_and_with_standard_input() {
    let f = Fixture::new();
    let src = source_tree(&f);
    let l1 = f.path("l1");
    write(&l1, format!("{}\n", src.join("a.log").display()));
    let l2 = f.path("l2");
    write(&l2, format!("{}\n", src.join("b.log").display()));
    let l3 = f.path("l3");
    write(&l3, [bytes(&src.join("c.txt")), b"\0".to_vec()].concat());
    let stdin_list = f.path("l4");
    write(
        &stdin_list,
        format!("{}\n", src.join("#hash.txt").display()),
    );
    let run = f
        .cmd()
        .args(["--json", "backup"])
        .arg(src.join("sub"))
        .arg("--files-from")
        .arg(&l1)
        .arg("--files-from")
        .arg(&l2)
        .arg("--files-from-raw")
        .arg(&l3)
        .args(["--files-from-verbatim", "-"])
        .stdin_file(&stdin_list)
        .run();
    run.ok();
    let id = run.snapshot_id();
    let want: BTreeSet<Vec<u8>> = [
        "sub/d.log",
        "sub/deeper/e.txt",
        "a.log",
        "b.log",
        "c.txt",
        "#hash.txt",
    ]
    .iter()
    .map(|r| bytes(&src.join(r)))
    .collect();
    assert_eq!(ls_files(&f, &id), want);

    // Standard input can feed only one list.
    let run = f
        .cmd()
        .args(["backup", "--files-from", "-", "--files-from-raw", "-"])
        .stdin_file(&stdin_list)
        .run();
    refused(&run, &["standard input"]);
}

#[test]
fn listed_paths_that_do_not_exist_are_reported_and_the_rest_is_backed_up() {
    let f = Fixture::new();
    let src = source_tree(&f);
    let list = f.path("list");
    let gone = src.join("gone.txt");
    let no_match = src.join("*.nothing");
    write(
        &list,
        format!(
            "{}\n{}\n{}\n",
            src.join("a.log").display(),
            gone.display(),
            no_match.display()
        ),
    );
    for format in ["--files-from", "--files-from-verbatim"] {
        let run = f.cmd().args(["--json", "backup", format]).arg(&list).run();
        assert_eq!(run.code, 3, "{}", run.output());
        let s = run.summary();
        let errors: Vec<String> = s["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| e["path"].as_str().expect("path").to_string())
            .collect();
        let mut want = vec![gone.display().to_string()];
        want.push(no_match.display().to_string());
        assert_eq!(errors, want, "{s}");
        let id = s["snapshot_id"].as_str().expect("id").to_string();
        assert_eq!(ls_files(&f, &id), [bytes(&src.join("a.log"))].into());
    }
    // Nothing listed exists: no snapshot.
    let before = snapshots(&f);
    let none = f.path("none");
    write(&none, format!("{}\n", gone.display()));
    let run = f.cmd().args(["backup", "--files-from"]).arg(&none).run();
    refused(&run, &["nothing to back up"]);
    assert_eq!(snapshots(&f), before);
}

#[test]
fn empty_oversize_and_malformed_lists_are_refused_with_a_clear_message() {
    let f = Fixture::new();
    let only_comments = f.path("comments");
    write(&only_comments, "# nothing\n\n   \n");
    let empty = f.path("empty");
    write(&empty, "");
    let huge = f.path("huge");
    fs::File::create(&huge)
        .expect("create")
        .set_len((256 << 20) + 1)
        .expect("sparse file over the bound");
    let long_line = f.path("long-line");
    write(&long_line, format!("/{}\n", "x".repeat(5000)));
    let nul_line = f.path("nul-line");
    write(&nul_line, b"/tmp\0/etc\n");
    let bad_glob = f.path("bad-glob");
    write(&bad_glob, "/tmp/[abc\n");
    let dir = f.path("a-dir");
    fs::create_dir(&dir).expect("mkdir");
    let cases: Vec<(&str, &Path, Vec<&str>)> = vec![
        ("--files-from", &only_comments, vec!["nothing to back up"]),
        ("--files-from-verbatim", &empty, vec!["nothing to back up"]),
        ("--files-from-raw", &empty, vec!["nothing to back up"]),
        ("--files-from", &huge, vec!["256.00 MiB", "huge"]),
        ("--files-from-raw", &huge, vec!["256.00 MiB"]),
        ("--files-from", &long_line, vec!["line 1", "4096"]),
        ("--files-from-verbatim", &long_line, vec!["line 1", "4096"]),
        (
            "--files-from-verbatim",
            &nul_line,
            vec!["NUL", "--files-from-raw"],
        ),
        ("--files-from", &bad_glob, vec!["malformed"]),
        ("--files-from", &dir, vec!["directory"]),
        (
            "--files-from",
            Path::new("/nonexistent/list"),
            vec!["/nonexistent/list"],
        ),
    ];
    for (option, file, words) in cases {
        let run = f.cmd().args(["backup", option]).arg(file).run();
        refused(&run, &words);
    }
    // The same bound on standard input, which has no size to look at first.
    let run = f
        .cmd()
        .args(["backup", "--files-from-raw", "-"])
        .stdin_file(&huge)
        .run();
    refused(&run, &["standard input", "256.00 MiB"]);
    assert_eq!(snapshots(&f), serde_json::json!([]));
}

/// Spawns `cairn backup` with `args` for a run the test interrupts itself; its standard input is
/// a pipe the test holds open and never writes to.
fn spawn_backup(f: &Fixture, args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("-r")
        .arg(&f.repo)
        .args(["--no-progress", "backup"])
        .args(args)
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("XDG_CACHE_HOME", f.path("cache"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn cairn")
}

#[test]
fn ctrl_c_ends_a_stream_that_says_nothing_and_saves_no_snapshot() {
    let f = Fixture::new();
    let pidfile = f.path("cmd.pid");
    let script = format!(
        "echo $$ > '{}.tmp'; mv '{0}.tmp' '{0}'; printf partial; exec sleep 1000",
        pidfile.display()
    );
    for form in ["command", "stdin"] {
        let mut child = if form == "command" {
            spawn_backup(&f, &["--stdin-from-command", "--", "sh", "-c", &script])
        } else {
            spawn_backup(&f, &["--stdin"])
        };
        // The stream is being read once the command runs, or once the backup holds its lock.
        wait_until(Duration::from_secs(60), "the stream to be read", || {
            if form == "command" {
                pidfile.exists()
            } else {
                fs::read_dir(f.repo.join("locks")).is_ok_and(|mut d| d.next().is_some())
            }
        });
        // SAFETY: kill with a valid signal to the child's PID, not waited for yet.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
        let status = wait_for_exit(&mut child, Duration::from_secs(60), "cairn backup");
        assert_eq!(status.code(), Some(130), "{form}: {status:?}");
        if form == "command" {
            let pid: i32 = fs::read_to_string(&pidfile)
                .expect("pid")
                .trim()
                .parse()
                .expect("a pid");
            // SAFETY: signal 0 only asks whether the process exists.
            let alive = unsafe { libc::kill(pid, 0) } == 0;
            assert!(!alive, "the command was left running");
        }
        assert_eq!(snapshots(&f), serde_json::json!([]), "{form}");
    }
}

#[test]
fn a_stream_is_chunked_as_it_comes_not_held_in_memory() {
    let f = Fixture::new();
    const LEN: u64 = 384 << 20;
    // Reaped below by wait4, which (unlike Child::wait) reports the child's peak memory.
    #[allow(clippy::zombie_processes)]
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("-r")
        .arg(&f.repo)
        .args(["--no-progress", "-q", "backup", "--stdin-from-command"])
        .args(["--stdin-filename", "zeros", "--", "head", "-c"])
        .arg(LEN.to_string())
        .arg("/dev/zero")
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("XDG_CACHE_HOME", f.path("cache"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn cairn");
    // wait4 reports this child's own peak memory (and of what it waited for: head).
    let mut status = 0;
    // SAFETY: rusage is plain data, filled in by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, with valid pointers for the call's duration.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status:#x}"
    );
    let peak_mib = usage.ru_maxrss / 1024;
    assert!(
        peak_mib < 160,
        "a {} MiB stream took {peak_mib} MiB of memory",
        LEN >> 20
    );
    let run = f.cmd().args(["--json", "ls", "latest"]).run();
    run.ok();
    assert_eq!(run.json()[0]["size"], LEN);
}

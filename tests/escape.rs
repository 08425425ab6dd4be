//! Hostile names on a terminal: files whose names (and a symlink whose target) hold newlines,
//! escape sequences that clear the screen or retitle the terminal, carriage returns, tabs,
//! backslashes, bidi overrides and bytes that are not UTF-8. Human output must show each name
//! escaped (as `ls -b` does: `\n`, `\t`, `\r`, `\xHH`, `\u{XXXX}`, `\\`) on its own line, with
//! no control character but the line breaks; `--json` must carry every name exactly (a name
//! that is not UTF-8 adds `<field>_hex` with its bytes).

// A failed unwrap in a test is a test failure with a backtrace, which is what it should be.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn::backend::LocalBackend;
use cairn::format::pack::BlobKind;
use common::*;

/// Each hostile file name, and how human output must show it.
const NAMES: &[(&[u8], &str)] = &[
    (b"nl\nname", "nl\\nname"),
    (b"esc\x1b[2Jclear", "esc\\x1b[2Jclear"),
    (b"title\x1b]0;pwned\x07", "title\\x1b]0;pwned\\x07"),
    (b"cr\rover", "cr\\rover"),
    (b"tab\there", "tab\\there"),
    (b"back\\slash", "back\\\\slash"),
    // Written out, the escape of a real ESC; must not print like one.
    (b"looks\\x1b-escaped", "looks\\\\x1b-escaped"),
    ("evil\u{202e}txt.exe".as_bytes(), "evil\\u{202e}txt.exe"),
    ("iso\u{2066}x\u{2069}".as_bytes(), "iso\\u{2066}x\\u{2069}"),
    ("c1\u{9b}csi".as_bytes(), "c1\\u{009b}csi"),
    (b"del\x7f", "del\\x7f"),
    (b"bad\xff\xfe", "bad\\xff\\xfe"),
    ("plain été".as_bytes(), "plain été"),
];

/// A directory with a hostile name, and a hostile file inside it.
const DIR: (&[u8], &str) = (b"dir\x1b[1m", "dir\\x1b[1m");
const INNER: (&[u8], &str) = (b"inner\nfile", "inner\\nfile");
/// A symlink named `link` whose target holds controls.
const TARGET: (&[u8], &str) = (b"tgt\x1b[31mred\nline\\", "tgt\\x1b[31mred\\nline\\\\");

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

fn bidi(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Human output: UTF-8, and no control character (C0, DEL, C1) or bidi control but `\n`.
#[track_caller]
fn assert_terminal_safe(what: &str, bytes: &[u8]) {
    let text = std::str::from_utf8(bytes)
        .unwrap_or_else(|e| panic!("{what}: output is not UTF-8 ({e}): {bytes:?}"));
    for c in text.chars() {
        assert!(
            c == '\n' || !(c.is_control() || bidi(c)),
            "{what}: {c:?} reaches the terminal:\n{}",
            text.escape_debug()
        );
    }
}

/// A source tree holding every hostile name (each file with distinct content), the
/// directory with its inner file, and the symlink.
fn hostile_tree(root: &Path) {
    for (i, (name, _)) in NAMES.iter().enumerate() {
        write(
            root.join(os(name)),
            format!("content of file {i}\n").repeat(i + 1),
        );
    }
    write(root.join(os(DIR.0)).join(os(INNER.0)), "inner content\n");
    std::os::unix::fs::symlink(os(TARGET.0), root.join("link")).unwrap();
}

/// Every entry of the tree as (exact path relative to the source, how it must print).
fn entries() -> Vec<(Vec<u8>, String)> {
    let mut v: Vec<(Vec<u8>, String)> = NAMES
        .iter()
        .map(|(n, e)| (n.to_vec(), e.to_string()))
        .collect();
    v.push((DIR.0.to_vec(), DIR.1.to_string()));
    v.push((
        [DIR.0, b"/", INNER.0].concat(),
        format!("{}/{}", DIR.1, INNER.1),
    ));
    v.push((b"link".to_vec(), "link".to_string()));
    v
}

/// Regular files of the tree (the ones with content), as (relative path, printed form).
fn files() -> Vec<(Vec<u8>, String)> {
    entries()
        .into_iter()
        .filter(|(p, _)| p.as_slice() != DIR.0 && p.as_slice() != b"link")
        .collect()
}

fn join(dir: &Path, rel: &[u8]) -> PathBuf {
    dir.join(os(rel))
}

/// A JSON name field read back exactly: `<field>_hex` when present, else the string.
#[track_caller]
fn json_bytes(v: &serde_json::Value, field: &str) -> Vec<u8> {
    let text = v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string in {v}"));
    match v.get(format!("{field}_hex")) {
        Some(h) => {
            assert!(
                std::str::from_utf8(&hex::decode(h.as_str().unwrap()).unwrap()).is_err(),
                "{field}_hex is present although the name is UTF-8: {v}"
            );
            hex::decode(h.as_str().unwrap()).unwrap()
        }
        None => text.as_bytes().to_vec(),
    }
}

/// A repository with one snapshot of the hostile tree at `src/`.
struct Hostile {
    f: Fixture,
    src: PathBuf,
}

impl Hostile {
    fn new() -> Self {
        let f = Fixture::new();
        let src = f.path("src");
        hostile_tree(&src);
        f.backup(&[&src], &[]);
        Hostile { f, src }
    }

    /// `SRC/` as human output shows it (the fixture's own path is clean).
    fn shown(&self, rel: &str) -> String {
        format!("{}/{rel}", self.src.display())
    }

    fn latest_src(&self) -> String {
        format!("latest:{}", self.src.display())
    }
}

#[test]
fn ls_prints_every_hostile_name_escaped_on_a_line_of_its_own() {
    let h = Hostile::new();
    let run = h.f.cmd().args(["ls", &h.latest_src()]).run();
    run.ok();
    assert_terminal_safe("ls", &run.stdout);
    let lines: Vec<String> = run.stdout().lines().map(str::to_string).collect();
    let want: BTreeSet<String> = entries().iter().map(|(_, e)| h.shown(e)).collect();
    assert_eq!(
        lines.iter().cloned().collect::<BTreeSet<_>>(),
        want,
        "ls shows each entry once, escaped"
    );
    assert_eq!(lines.len(), want.len(), "no name spans or fakes lines");
}

#[test]
fn ls_long_escapes_names_and_symlink_targets() {
    let h = Hostile::new();
    let run = h.f.cmd().args(["ls", "--long", &h.latest_src()]).run();
    run.ok();
    assert_terminal_safe("ls --long", &run.stdout);
    let out = run.stdout();
    assert_eq!(out.lines().count(), entries().len(), "{out}");
    for (rel, shown) in entries() {
        let tail = if rel == b"link" {
            format!(" {} -> {}", h.shown(&shown), TARGET.1)
        } else {
            format!(" {}", h.shown(&shown))
        };
        assert!(
            out.lines().any(|l| l.ends_with(&tail)),
            "no line ends with {tail:?}:\n{out}"
        );
    }
}

#[test]
fn ls_json_carries_every_name_path_and_target_exactly() {
    let h = Hostile::new();
    let run = h.f.cmd().args(["--json", "ls", &h.latest_src()]).run();
    run.ok();
    let listed = run.json();
    let listed = listed.as_array().unwrap();
    let mut paths = BTreeSet::new();
    for e in listed {
        let path = json_bytes(e, "path");
        let name = json_bytes(e, "name");
        assert!(
            path.ends_with(&name),
            "name {name:?} is the last part of {path:?}"
        );
        if path.ends_with(b"/link") {
            assert_eq!(json_bytes(e, "target"), TARGET.0, "symlink target");
        }
        paths.insert(path);
    }
    let want: BTreeSet<Vec<u8>> = entries()
        .iter()
        .map(|(rel, _)| join(&h.src, rel).into_os_string().into_vec())
        .collect();
    assert_eq!(paths, want);
}

#[test]
fn diff_escapes_names_and_its_json_carries_them_exactly() {
    let h = Hostile::new();
    let (modified, removed, added) = (
        NAMES[0],
        NAMES[1],
        (&b"new\x1b[5mblink"[..], "new\\x1b[5mblink"),
    );
    write(
        join(&h.src, modified.0),
        "changed, and longer than before\n",
    );
    fs::remove_file(join(&h.src, removed.0)).unwrap();
    write(join(&h.src, added.0), "added\n");
    let first = h.f.cmd().args(["--json", "snapshots"]).run().json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    h.f.backup(&[&h.src], &[]);

    let run = h.f.cmd().args(["diff", &first, "latest"]).run();
    run.ok();
    assert_terminal_safe("diff", &run.stdout);
    let out = run.stdout();
    for line in [
        format!("M    {}", h.shown(modified.1)),
        format!("-    {}", h.shown(removed.1)),
        format!("+    {}", h.shown(added.1)),
    ] {
        assert!(out.lines().any(|l| l == line), "no line {line:?}:\n{out}");
    }

    let run = h.f.cmd().args(["--json", "diff", &first, "latest"]).run();
    run.ok();
    let changes: BTreeSet<(String, Vec<u8>)> = run.json()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["modifier"].as_str().unwrap().to_string(),
                json_bytes(c, "path"),
            )
        })
        .collect();
    for (m, rel) in [("M", modified.0), ("-", removed.0), ("+", added.0)] {
        let path = join(&h.src, rel).into_os_string().into_vec();
        assert!(
            changes.contains(&(m.to_string(), path.clone())),
            "{m} {path:?} missing from {changes:?}"
        );
    }
}

/// Deletes every pack that holds only file data (not trees): every file with content is lost.
fn delete_data_packs(f: &Fixture) {
    let mut repo =
        cairn::Repository::open(Arc::new(LocalBackend::new(&f.repo)), PASSWORD.as_bytes()).unwrap();
    repo.load_index().unwrap();
    let mut deleted = 0;
    for (id, (_, entries)) in repo.entries_by_pack().expect("index") {
        if entries.iter().all(|e| e.kind == BlobKind::Data) {
            let hex = id.to_hex();
            fs::remove_file(f.repo.join("data").join(&hex[..2]).join(&hex)).unwrap();
            deleted += 1;
        }
    }
    assert!(deleted > 0, "no data-only pack to delete");
}

#[test]
fn restore_check_and_drill_name_damaged_files_escaped_and_json_carries_them_exactly() {
    let h = Hostile::new();
    delete_data_packs(&h.f);

    let target = h.f.path("restored");
    let run =
        h.f.cmd()
            .args(["restore", &h.latest_src(), "--target"])
            .arg(&target)
            .run();
    run.expect(1);
    assert_terminal_safe("restore stdout", &run.stdout);
    assert_terminal_safe("restore stderr", run.stderr.as_bytes());
    for (_, shown) in files() {
        let named = format!("{}/{shown}", target.display());
        assert!(
            run.stderr.lines().any(|l| l.contains(&named)),
            "restore does not name {named:?}:\n{}",
            run.stderr
        );
    }

    let target = h.f.path("restored-json");
    let run =
        h.f.cmd()
            .args(["--json", "restore", &h.latest_src(), "--target"])
            .arg(&target)
            .run();
    run.expect(1);
    let errors: BTreeSet<Vec<u8>> = run.summary()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| json_bytes(e, "path"))
        .collect();
    for (rel, _) in files() {
        let path = join(&target, &rel).into_os_string().into_vec();
        assert!(errors.contains(&path), "{path:?} not in {errors:?}");
    }

    let run = h.f.cmd().arg("check").run();
    run.expect(1);
    assert_terminal_safe("check stderr", run.stderr.as_bytes());
    for (_, shown) in files() {
        let named = h.shown(&shown);
        assert!(
            run.stderr.contains(&named),
            "check does not name {named:?}:\n{}",
            run.stderr
        );
    }
    let run = h.f.cmd().args(["--json", "check"]).run();
    run.expect(1);
    let affected: BTreeSet<Vec<u8>> = run.summary()["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| json_bytes(a, "path"))
        .collect();
    for (rel, _) in files() {
        let path = join(&h.src, &rel).into_os_string().into_vec();
        assert!(affected.contains(&path), "{path:?} not in {affected:?}");
    }

    let run = h.f.cmd().args(["drill", "--full"]).run();
    run.expect(1);
    assert_terminal_safe("drill stdout", &run.stdout);
    assert_terminal_safe("drill stderr", run.stderr.as_bytes());
    for (_, shown) in files() {
        let named = h.shown(&shown);
        assert!(
            run.stderr.contains(&format!("FAILED: {named}")),
            "drill does not name {named:?}:\n{}",
            run.stderr
        );
    }
}

#[test]
fn snapshots_escapes_hosts_tags_and_paths() {
    let f = Fixture::new();
    let src = f.path(os(DIR.0));
    write(src.join("a"), "a\n");
    f.backup(&[&src], &["--host", "host\x1b]0;x\x07"]);
    // cairn refuses such tags (backup, tag); a repository written by another program, or by a
    // hostile holder of the key, may hold them all the same.
    let repo =
        cairn::Repository::open(Arc::new(LocalBackend::new(&f.repo)), PASSWORD.as_bytes()).unwrap();
    let (id, mut snap) = repo.snapshots().unwrap().remove(0);
    snap.tags = vec!["tag\nfake".into(), "t\u{202e}ab".into()];
    repo.save_snapshot(&snap).unwrap();
    repo.remove_snapshot(&id).unwrap();
    let run = f.cmd().arg("snapshots").run();
    run.ok();
    assert_terminal_safe("snapshots", &run.stdout);
    let out = run.stdout();
    for shown in [
        "host\\x1b]0;x\\x07",
        "tag\\nfake,t\\u{202e}ab",
        &format!("{}/{}", f.tmp.path().display(), DIR.1),
    ] {
        assert!(out.contains(shown), "{shown:?} not in:\n{out}");
    }
    // Header, rule, one snapshot, the count: no name added a line.
    assert_eq!(out.lines().count(), 4, "{out}");
}

#[test]
fn error_messages_escape_paths_given_on_the_command_line() {
    let h = Hostile::new();
    let missing = h.f.path(os(b"gone\x1b[2J\nfake: line"));
    let run = h.f.cmd().arg("backup").arg(&missing).run();
    run.expect(1);
    assert_terminal_safe("backup of a missing path", run.stderr.as_bytes());
    assert!(
        run.stderr.contains("gone\\x1b[2J\\nfake: line"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);

    let nowhere = h.f.path(os(b"no-repo\x1b]0;pwned\x07"));
    let run = TestCommand::bare()
        .arg("-r")
        .arg(&nowhere)
        .arg("snapshots")
        .env("CAIRN_PASSWORD", PASSWORD)
        .run();
    run.expect(10);
    assert_terminal_safe("a missing repository", run.stderr.as_bytes());
    assert!(
        run.stderr.contains("no-repo\\x1b]0;pwned\\x07"),
        "{}",
        run.stderr
    );

    let pw = h.f.path(os("pw\u{202e}txt".as_bytes()));
    let run =
        h.f.cmd_without_password()
            .arg("--password-file")
            .arg(&pw)
            .arg("snapshots")
            .run();
    run.expect(1);
    assert_terminal_safe("a missing password file", run.stderr.as_bytes());
    assert!(run.stderr.contains("pw\\u{202e}txt"), "{}", run.stderr);

    // A target below a regular file cannot be made.
    write(h.f.path("a-file"), "x");
    let target = h.f.path("a-file").join(os(b"t\x1b[2J\r"));
    let run =
        h.f.cmd()
            .args(["restore", "latest", "--target"])
            .arg(&target)
            .run();
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert_terminal_safe("an impossible target", run.stderr.as_bytes());

    let run =
        h.f.cmd()
            .args(["ls", "latest:/nowhere/\x1b[2J\x1b]0;t\x07"])
            .run();
    run.expect(1);
    assert_terminal_safe("ls of a missing path", run.stderr.as_bytes());
}

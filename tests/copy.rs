//! `cairn copy --to REPO2`: snapshots move into a repository with its own password and keys,
//! only missing data is sent, and copying again writes nothing.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

const MIB: usize = 1 << 20;
/// The destination's password: not the source's.
const PW2: &str = "another password for the offsite disk";

/// A second repository next to the fixture's, opened by [`PW2`].
struct Dest {
    path: PathBuf,
    cache: PathBuf,
}

impl Dest {
    /// `init` at `f.path(name)`, with `extra` arguments and environment.
    fn init(f: &Fixture, name: &str, extra: &[&str], env: &[(&str, &str)]) -> Dest {
        let d = Dest {
            path: f.path(name),
            cache: f.path("cache"),
        };
        let mut c = d.cmd().args(["init", "--kdf-memory-mib", "8"]).args(extra);
        for (k, v) in env {
            c = c.env(k, v);
        }
        c.run().ok();
        d
    }

    fn cmd(&self) -> TestCommand {
        TestCommand::bare()
            .arg("-r")
            .arg(&self.path)
            .env("CAIRN_PASSWORD", PW2)
            .env("XDG_CACHE_HOME", &self.cache)
    }

    /// Every file of the repository with its bytes.
    fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        walk(&self.path)
            .into_iter()
            .filter(|rel| self.path.join(rel).is_file())
            .map(|rel| {
                let bytes = fs::read(self.path.join(&rel)).unwrap();
                (rel, bytes)
            })
            .collect()
    }

    fn bytes(&self) -> u64 {
        self.files().values().map(|v| v.len() as u64).sum()
    }

    fn snapshots(&self) -> Vec<Value> {
        let run = self.cmd().args(["--json", "snapshots"]).run();
        run.ok();
        run.json().as_array().unwrap().clone()
    }

    fn check_read_data(&self) {
        let run = self.cmd().args(["check", "--read-data"]).run();
        run.ok();
    }
}

/// `cairn --json copy --to DEST` from the fixture's repository; the run must succeed.
fn copy(f: &Fixture, d: &Dest, extra: &[&str]) -> Run {
    let run = f
        .cmd()
        .args(["--json", "copy", "--to"])
        .arg(&d.path)
        .args(extra)
        .env("CAIRN_TO_PASSWORD", PW2)
        .run();
    run.ok();
    run
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn snapshots(f: &Fixture) -> Vec<Value> {
    let run = f.cmd().args(["--json", "snapshots"]).run();
    run.ok();
    run.json().as_array().unwrap().clone()
}

/// What a copy keeps: everything but the tree (re-identified) and the parent (mapped).
fn kept(s: &Value) -> Value {
    json!({
        "time": s["time"], "host": s["host"], "user": s["user"], "paths": s["paths"],
        "tags": s["tags"], "mode": s["mode"], "summary": s["summary"],
    })
}

fn restore_latest(d: &Dest, target: &Path) {
    d.cmd()
        .args(["restore", "latest", "--verify", "--target"])
        .arg(target)
        .run()
        .ok();
}

/// A small tree of everything common: random data, text, nesting, a symlink, an empty file.
fn build_tree(root: &Path) {
    write(root.join("big.bin"), random_bytes(1, 3 * MIB));
    write(root.join("notes.txt"), b"copy me\n");
    write(root.join("empty"), b"");
    write(
        root.join("nested/deeper/file.bin"),
        random_bytes(2, 700_000),
    );
    write(root.join("nested/same.bin"), random_bytes(1, 3 * MIB));
    std::os::unix::fs::symlink("notes.txt", root.join("link")).unwrap();
    set_mtime(root.join("notes.txt"), 1_600_000_000, 123_456_789);
}

#[test]
fn a_copy_opens_with_its_own_password_and_restores_byte_identically() {
    let f = Fixture::new();
    let src = f.path("src");
    build_tree(&src);
    f.backup(
        &[&src],
        &[
            "--tag",
            "daily",
            "--host",
            "laptop",
            "--time",
            "2024-01-02 03:04:05",
        ],
    );
    write(src.join("added.txt"), b"second snapshot\n");
    f.backup(
        &[&src],
        &[
            "--tag",
            "weekly",
            "--tag",
            "daily",
            "--host",
            "laptop",
            "--time",
            "2024-01-09 03:04:05",
        ],
    );
    let d = Dest::init(&f, "offsite", &[], &[]);

    // The destination password comes from CAIRN_TO_PASSWORD_FILE; the source's does not open it.
    let pw_file = f.path("pw2");
    write(&pw_file, format!("{PW2}\n"));
    let run = f
        .cmd()
        .args(["--json", "copy", "--to"])
        .arg(&d.path)
        .env("CAIRN_TO_PASSWORD_FILE", &pw_file)
        .run();
    run.ok();
    let statuses: Vec<Value> = run
        .json_lines()
        .into_iter()
        .filter(|v| v["message_type"] == "status")
        .collect();
    assert_eq!(statuses.len(), 2, "{}", run.stdout());
    assert!(statuses.iter().all(|s| s["action"] == "copied"));
    let s = run.summary();
    assert_eq!(s["snapshots_copied"], json!(2));
    assert_eq!(s["snapshots_skipped"], json!(0));
    let sent = n(&s["bytes_sent"]);
    eprintln!(
        "first copy: {} blobs, {} data, {sent} bytes sent",
        s["blobs_sent"], s["data_sent"]
    );
    // The 3 MiB file is stored twice in the source tree but sent once.
    assert!(n(&s["data_sent"]) < (4 * MIB) as u64 + 200_000, "{s}");
    assert!(n(&s["data_sent"]) > (3 * MIB) as u64, "{s}");

    // Same snapshots: time, host, user, paths, tags, mode, summary; parents mapped.
    let a = snapshots(&f);
    let b = d.snapshots();
    assert_eq!(b.len(), 2);
    assert_eq!(
        a.iter().map(kept).collect::<Vec<_>>(),
        b.iter().map(kept).collect::<Vec<_>>()
    );
    assert_eq!(b[0]["tags"], json!(["daily"]));
    assert_eq!(b[0]["host"], json!("laptop"));
    assert_eq!(b[0]["time"], json!("2024-01-02T03:04:05+00:00"));
    assert_eq!(b[1]["parent"], b[0]["id"]);
    assert_ne!(
        a[1]["tree"], b[1]["tree"],
        "the destination has its own ids"
    );
    assert_eq!(statuses[1]["destination"], b[1]["id"]);
    assert_eq!(statuses[1]["source"], a[1]["id"]);

    let target = f.path("restored");
    restore_latest(&d, &target);
    assert_same_tree(&src, &restored(&target, &src));
    d.check_read_data();

    // The source's password does not open the destination.
    d.cmd()
        .env("CAIRN_PASSWORD", PASSWORD)
        .arg("snapshots")
        .run()
        .expect(12);
}

#[test]
fn copy_reports_a_wrong_missing_or_absent_destination_password_clearly() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a"), b"a\n");
    f.backup(&[&src], &[]);
    let d = Dest::init(&f, "offsite", &[], &[]);
    let wrong = f
        .cmd()
        .arg("copy")
        .arg("--to")
        .arg(&d.path)
        .env("CAIRN_TO_PASSWORD", "not it")
        .run();
    wrong.expect(12);
    assert!(wrong.stderr.contains("wrong password"), "{}", wrong.stderr);
    let none = f.cmd().arg("copy").arg("--to").arg(&d.path).run();
    none.expect(1);
    assert!(
        none.stderr.contains("CAIRN_TO_PASSWORD"),
        "names the variable: {}",
        none.stderr
    );
    let missing = f
        .cmd()
        .arg("copy")
        .arg("--to")
        .arg(f.path("nothing-here"))
        .env("CAIRN_TO_PASSWORD", PW2)
        .run();
    missing.expect(10);
    // --to-password-file works as well, and wins over the environment.
    let pw_file = f.path("pw2");
    write(&pw_file, format!("{PW2}\r\n"));
    let run = f
        .cmd()
        .args(["copy", "--to"])
        .arg(&d.path)
        .arg("--to-password-file")
        .arg(&pw_file)
        .env("CAIRN_TO_PASSWORD", "not it")
        .run();
    run.ok();
    assert!(run.stdout().contains("copied "), "{}", run.stdout());
    assert!(d.files().keys().all(|p| !p.starts_with("locks")));
}

#[test]
fn copying_the_same_snapshots_again_writes_nothing() {
    let f = Fixture::new();
    let src = f.path("src");
    build_tree(&src);
    f.backup(&[&src], &["--time", "2024-01-02 03:04:05"]);
    write(src.join("more.bin"), random_bytes(9, MIB));
    f.backup(&[&src], &["--time", "2024-01-03 03:04:05"]);
    let d = Dest::init(&f, "offsite", &[], &[]);
    copy(&f, &d, &[]);
    let before = d.files();

    let again = copy(&f, &d, &[]);
    let s = again.summary();
    assert_eq!(
        (
            &s["snapshots_copied"],
            &s["snapshots_skipped"],
            &s["blobs_sent"],
            &s["bytes_sent"],
            &s["data_read"]
        ),
        (&json!(0), &json!(2), &json!(0), &json!(0), &json!(0)),
        "{s}"
    );
    assert!(again
        .json_lines()
        .iter()
        .filter(|v| v["message_type"] == "status")
        .all(|v| v["action"] == "skipped"));
    assert_eq!(d.files(), before, "the destination's bytes are unchanged");

    // Without the local map, and naming a snapshot: still nothing, and people are told so.
    fs::remove_dir_all(f.path("cache")).unwrap();
    let run = f
        .cmd()
        .args(["copy", "latest", "--to"])
        .arg(&d.path)
        .env("CAIRN_TO_PASSWORD", PW2)
        .run();
    run.ok();
    assert!(
        run.stdout().contains("already in the destination"),
        "{}",
        run.stdout()
    );
    assert!(
        run.stdout().contains("0 snapshots copied, 1 already there"),
        "{}",
        run.stdout()
    );
    assert_eq!(d.files(), before, "the destination's bytes are unchanged");
}

#[test]
fn an_incremental_snapshot_sends_and_reads_only_new_data() {
    let f = Fixture::new();
    let src = f.path("src");
    for i in 0..8 {
        write(
            src.join(format!("dir{}/f{i}.bin", i % 3)),
            random_bytes(100 + i, MIB),
        );
    }
    f.backup(&[&src], &["--time", "2024-01-01 00:00:00"]);
    let d = Dest::init(&f, "offsite", &[], &[]);
    let empty = d.bytes();
    let first = copy(&f, &d, &[]).summary();
    let after_first = d.bytes();
    eprintln!(
        "full copy of 8 MiB: data_read {} data_sent {} bytes_sent {}, destination +{} bytes",
        first["data_read"],
        first["data_sent"],
        first["bytes_sent"],
        after_first - empty
    );
    assert!(n(&first["data_sent"]) >= (8 * MIB) as u64);

    // One new 1 MiB file: only it is read from the source and sent.
    write(src.join("dir1/new.bin"), random_bytes(7, MIB));
    f.backup(&[&src], &["--time", "2024-01-02 00:00:00"]);
    let second = copy(&f, &d, &[]).summary();
    let grew = d.bytes() - after_first;
    eprintln!(
        "incremental copy (+1 MiB): data_read {} data_sent {} bytes_sent {}, destination +{grew} bytes",
        second["data_read"], second["data_sent"], second["bytes_sent"]
    );
    assert_eq!(second["snapshots_copied"], json!(1));
    assert_eq!(second["snapshots_skipped"], json!(1));
    let limit = (MIB + MIB / 4) as u64;
    assert!(n(&second["data_sent"]) >= MIB as u64, "{second}");
    assert!(n(&second["data_sent"]) < limit, "{second}");
    assert!(
        n(&second["data_read"]) < limit,
        "unchanged data re-read: {second}"
    );
    assert!(grew < limit, "destination grew by {grew}");
    let snaps = d.snapshots();
    assert_eq!(snaps[1]["parent"], snaps[0]["id"]);

    // The local map is only a hint: without it, unchanged data is read again but not sent.
    fs::remove_dir_all(f.path("cache")).unwrap();
    write(src.join("dir2/newer.bin"), random_bytes(8, MIB));
    f.backup(&[&src], &["--time", "2024-01-03 00:00:00"]);
    let before = d.bytes();
    let third = copy(&f, &d, &[]).summary();
    let grew = d.bytes() - before;
    eprintln!(
        "incremental copy without the map (+1 MiB): data_read {} data_sent {} bytes_sent {}, destination +{grew} bytes",
        third["data_read"], third["data_sent"], third["bytes_sent"]
    );
    assert!(n(&third["data_read"]) >= (10 * MIB) as u64, "{third}");
    assert!(n(&third["data_sent"]) < limit, "{third}");
    assert!(grew < limit);

    let target = f.path("restored");
    restore_latest(&d, &target);
    assert_same_tree(&src, &restored(&target, &src));
    d.check_read_data();
}

#[test]
fn matching_chunker_params_let_copies_and_backups_deduplicate_in_the_destination() {
    let f = Fixture::new();
    let src = f.path("src");
    let original = random_bytes(42, 16 * MIB);
    write(src.join("big.bin"), &original);
    f.backup(&[&src], &["--time", "2024-01-01 00:00:00"]);
    let matching = Dest::init(
        &f,
        "matching",
        &["--copy-chunker-params-from", f.repo.to_str().unwrap()],
        &[("CAIRN_FROM_PASSWORD", PASSWORD)],
    );
    let own = Dest::init(&f, "own", &[], &[]);
    for d in [&matching, &own] {
        let s = copy(&f, d, &[]).summary();
        assert!(n(&s["data_sent"]) >= (16 * MIB) as u64);
    }

    // A small insertion in the middle of the file.
    let mut changed = original[..5 * MIB].to_vec();
    changed.extend_from_slice(b"a small insertion of forty-odd bytes here");
    changed.extend_from_slice(&original[5 * MIB..]);
    write(src.join("big.bin"), &changed);
    f.backup(&[&src], &["--time", "2024-01-02 00:00:00"]);
    for (name, d) in [("matching", &matching), ("own", &own)] {
        let before = d.bytes();
        let s = copy(&f, d, &[]).summary();
        let grew = d.bytes() - before;
        eprintln!(
            "copy of a 16 MiB file with a 41-byte insertion into the {name}-chunker destination: data_sent {} bytes_sent {}, destination +{grew} bytes",
            s["data_sent"], s["bytes_sent"]
        );
        // The source's chunks travel as they are: either way only the changed chunks go.
        assert!(n(&s["data_sent"]) < (4 * MIB) as u64, "{name}: {s}");
        assert!(grew < (4 * MIB) as u64, "{name}: grew {grew}");
    }

    // The difference: a backup made directly into the destination deduplicates against the
    // copied data only when both repositories cut files alike.
    let mut added = Vec::new();
    for (name, d) in [("matching", &matching), ("own", &own)] {
        // --force: read the file (the copied snapshot would otherwise be its parent, unchanged).
        let run = d
            .cmd()
            .args(["--json", "backup", "--force"])
            .arg(&src)
            .run();
        run.ok();
        let s = run.summary();
        eprintln!(
            "direct backup of the same file into the {name}-chunker destination: data_added {} data_added_stored {}",
            s["data_added"], s["data_added_stored"]
        );
        added.push(n(&s["data_added"]));
    }
    assert!(added[0] < 100_000, "matching chunker: {added:?}");
    assert!(added[1] > (8 * MIB) as u64, "own chunker: {added:?}");

    for (name, d) in [("matching", &matching), ("own", &own)] {
        d.check_read_data();
        let target = f.path(format!("restored-{name}"));
        d.cmd()
            .args(["restore", "latest", "--target"])
            .arg(&target)
            .run()
            .ok();
        assert_eq!(
            fs::read(restored(&target, &src).join("big.bin")).unwrap(),
            changed
        );
    }
}

#[test]
fn copy_takes_snapshot_selectors_and_filters() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a"), b"a\n");
    let first = f.backup(&[&src], &["--host", "one", "--tag", "x"]);
    write(src.join("b"), b"b\n");
    let second = f.backup(&[&src], &["--host", "two", "--parent", &first]);
    let d = Dest::init(&f, "offsite", &[], &[]);
    let s = copy(&f, &d, &["--host", "two"]).summary();
    assert_eq!(s["snapshots_copied"], json!(1));
    let copied = d.snapshots();
    assert_eq!(copied.len(), 1);
    assert_eq!(copied[0]["host"], json!("two"));
    // Its parent (of host one) is not in the destination: the copy has none.
    assert_eq!(copied[0]["parent"], Value::Null);
    let s = copy(&f, &d, &[&first[..8], &second[..8]]).summary();
    assert_eq!(
        (&s["snapshots_copied"], &s["snapshots_skipped"]),
        (&json!(1), &json!(1))
    );
    let unknown = f
        .cmd()
        .args(["copy", "ffffffff", "--to"])
        .arg(&d.path)
        .env("CAIRN_TO_PASSWORD", PW2)
        .run();
    unknown.expect(1);
    assert!(unknown.stderr.contains("ffffffff"), "{}", unknown.stderr);
}

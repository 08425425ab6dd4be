//! `cairn find` through the real binary: several snapshots of a tree that gains, loses and
//! changes files; for each pattern shape (name glob, path glob, `**`, case, non-UTF-8 names)
//! and mtime bound, `find --json` must list exactly what a model of the source trees, taken
//! from the file system when each snapshot was made and filtered by a predicate written
//! independently in the test, says it should.

// A failed unwrap in a test is a test failure with a backtrace, which is what it should be.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::*;

/// One entry of the model: absolute path bytes, type, size, mtime and permission bits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    path: Vec<u8>,
    kind: &'static str,
    size: u64,
    mtime: (i64, u32),
    mode: u32,
}

impl Entry {
    fn name(&self) -> &[u8] {
        self.path.rsplit(|&b| b == b'/').next().unwrap()
    }
    /// The path relative to the source root `src`, for predicates.
    fn rel(&self, src: &Path) -> Vec<u8> {
        let root = src.as_os_str().as_bytes();
        self.path[root.len() + 1..].to_vec()
    }
}

/// Every entry below `src` (not `src` itself), read from the file system.
fn model(src: &Path) -> Vec<Entry> {
    walk(src)
        .into_iter()
        .filter(|rel| !rel.as_os_str().is_empty())
        .map(|rel| {
            let p = src.join(&rel);
            let m = fs::symlink_metadata(&p).unwrap();
            let t = m.file_type();
            let kind = if t.is_dir() {
                "dir"
            } else if t.is_symlink() {
                "symlink"
            } else {
                "file"
            };
            Entry {
                path: p.as_os_str().as_bytes().to_vec(),
                kind,
                size: if t.is_dir() { 0 } else { m.len() },
                mtime: (m.mtime(), m.mtime_nsec() as u32),
                mode: m.mode() & 0o7777,
            }
        })
        .collect()
}

const DAY: i64 = 86_400;
/// 2021-01-01T00:00:00Z.
const T2021: i64 = 1_609_459_200;

/// Three snapshots: the first tree; one with a file added, one removed, one changed; one
/// with a directory removed and a non-UTF-8 name added. Returns the source root, the
/// snapshots' ids and each one's model.
fn three_snapshots(f: &Fixture) -> (PathBuf, Vec<String>, Vec<Vec<Entry>>) {
    let src = f.path("src");
    write(src.join("notes.txt"), "notes");
    write(src.join("README.TXT"), "upper case");
    write(src.join("logs/app.log"), "log 1");
    write(src.join("logs/old/app.log"), "log 0");
    write(src.join("data/a/b/deep.dat"), "deep");
    write(src.join("data/top.dat"), "top");
    std::os::unix::fs::symlink("notes.txt", src.join("link.txt")).unwrap();
    let mtimes = [
        ("notes.txt", T2021 + 10 * DAY),
        ("README.TXT", T2021 + 40 * DAY),
        ("logs/app.log", T2021 + 100 * DAY),
        ("logs/old/app.log", T2021 - 100 * DAY),
        ("data/a/b/deep.dat", T2021 + 200 * DAY),
        ("data/top.dat", T2021 + 300 * DAY),
    ];
    for (rel, t) in mtimes {
        set_mtime(src.join(rel), t, 123_456_789);
    }
    let mut ids = Vec::new();
    let mut models = Vec::new();
    models.push(model(&src));
    ids.push(f.backup(&[&src], &["--time", "2024-01-01 00:00:00"]));

    write(src.join("logs/new.log"), "added");
    set_mtime(src.join("logs/new.log"), T2021 + 150 * DAY, 0);
    fs::remove_file(src.join("notes.txt")).unwrap();
    write(src.join("data/top.dat"), "changed, longer");
    set_mtime(src.join("data/top.dat"), T2021 + 301 * DAY, 5);
    models.push(model(&src));
    ids.push(f.backup(&[&src], &["--time", "2024-01-02 00:00:00"]));

    fs::remove_dir_all(src.join("logs/old")).unwrap();
    let odd = src.join(OsStr::from_bytes(b"caf\xe9.txt"));
    write(&odd, "latin-1 name");
    set_mtime(&odd, T2021 + 20 * DAY, 0);
    models.push(model(&src));
    ids.push(f.backup(&[&src], &["--time", "2024-01-03 00:00:00"]));
    (src, ids, models)
}

/// `find --json` output as (snapshot id, entry) pairs.
fn found(f: &Fixture, args: &[&str]) -> BTreeSet<(String, Entry)> {
    let run = f.cmd().args(["--json", "find"]).args(args).run();
    run.ok();
    let mut out = BTreeSet::new();
    for snap in run.json().as_array().unwrap() {
        let id = snap["snapshot"].as_str().unwrap().to_string();
        assert_eq!(snap["short_id"].as_str().unwrap(), &id[..8]);
        assert!(snap["time"].as_str().unwrap().starts_with("2024-01-0"));
        assert!(snap["host"].is_string() && snap["paths"].is_array());
        let matches = snap["matches"].as_array().unwrap();
        assert!(
            !matches.is_empty(),
            "a snapshot without matches is not listed"
        );
        for m in matches {
            let path = match m.get("path_hex") {
                Some(h) => hex::decode(h.as_str().unwrap()).unwrap(),
                None => m["path"].as_str().unwrap().as_bytes().to_vec(),
            };
            let ts: jiff::Timestamp = m["mtime"].as_str().unwrap().parse().unwrap();
            let kind = match m["type"].as_str().unwrap() {
                "dir" => "dir",
                "symlink" => "symlink",
                "file" => "file",
                other => panic!("unexpected type {other}"),
            };
            out.insert((
                id.clone(),
                Entry {
                    path,
                    kind,
                    size: m["size"].as_u64().unwrap(),
                    mtime: (ts.as_second(), ts.subsec_nanosecond() as u32),
                    mode: m["mode"].as_u64().unwrap() as u32,
                },
            ));
        }
    }
    out
}

/// What the model says `find` must report: entries of each snapshot passing `pred`.
fn expected(
    ids: &[String],
    models: &[Vec<Entry>],
    pred: &dyn Fn(&Entry) -> bool,
) -> BTreeSet<(String, Entry)> {
    ids.iter()
        .zip(models)
        .flat_map(|(id, m)| {
            m.iter()
                .filter(|e| pred(e))
                .map(move |e| (id.clone(), e.clone()))
        })
        .collect()
}

#[test]
fn find_lists_exactly_the_entries_each_snapshot_holds_for_every_pattern_shape() {
    let f = Fixture::new();
    let (src, ids, models) = three_snapshots(&f);
    let src_str = src.to_str().unwrap().to_string();
    let anchored = format!("{src_str}/data/*");
    let rel = |e: &Entry| e.rel(&src);
    let ends = |e: &Entry, s: &[u8]| e.name().ends_with(s);
    type Pred<'a> = Box<dyn Fn(&Entry) -> bool + 'a>;
    let cases: Vec<(Vec<&str>, Pred)> = vec![
        // A name glob: every depth, non-UTF-8 names included, case kept.
        (vec!["*.txt"], Box::new(move |e| ends(e, b".txt"))),
        // Case folded.
        (
            vec!["*.TXT", "--ignore-case"],
            Box::new(move |e| e.name().to_ascii_lowercase().ends_with(b".txt")),
        ),
        // An exact name, in several directories.
        (vec!["app.log"], Box::new(move |e| e.name() == b"app.log")),
        // A path glob: `*` stays within one component.
        (
            vec!["logs/*.log"],
            Box::new(move |e| {
                let r = rel(e);
                r.starts_with(b"logs/")
                    && r.ends_with(b".log")
                    && r.iter().filter(|&&b| b == b'/').count() == 1
            }),
        ),
        // `**` crosses components.
        (
            vec!["data/**/*.dat"],
            Box::new(move |e| rel(e).starts_with(b"data/") && ends(e, b".dat")),
        ),
        // Anchored at the root with a leading `/`.
        (
            vec![anchored.as_str()],
            Box::new(move |e| {
                let r = rel(e);
                r.starts_with(b"data/") && r.iter().filter(|&&b| b == b'/').count() == 1
            }),
        ),
        // Several patterns: any may match; `?` is one character.
        (
            vec!["?ld", "new.*"],
            Box::new(move |e| e.name() == b"old" || e.name().starts_with(b"new.")),
        ),
        // Nothing matches.
        (vec!["*.nothing"], Box::new(|_| false)),
    ];
    for (args, pred) in &cases {
        let want = expected(&ids, &models, pred.as_ref());
        let got = found(&f, args);
        assert_eq!(got, want, "find {args:?}");
        if !args.contains(&"*.nothing") {
            assert!(!want.is_empty(), "{args:?}: a case that tests something");
        }
    }
}

#[test]
fn mtime_bounds_accept_dates_times_and_rfc3339() {
    let f = Fixture::new();
    let (_src, ids, models) = three_snapshots(&f);
    let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_second();
    let cases: Vec<(Vec<&str>, i64, i64)> = vec![
        (
            vec!["--oldest", "2021-03-01"],
            t("2021-03-01T00:00:00Z"),
            i64::MAX,
        ),
        (
            vec!["--newest", "2021-02-15 12:00:00"],
            i64::MIN,
            t("2021-02-15T12:00:00Z"),
        ),
        (
            vec![
                "--oldest",
                "2021-01-05T00:00:00Z",
                "--newest",
                "2021-07-20T00:00:00+00:00",
            ],
            t("2021-01-05T00:00:00Z"),
            t("2021-07-20T00:00:00Z"),
        ),
    ];
    for (bounds, lo, hi) in cases {
        let mut args = vec!["*.log", "*.dat", "*.txt", "*.TXT"];
        args.extend(&bounds);
        let want = expected(&ids, &models, &|e| {
            [&b".log"[..], b".dat", b".txt", b".TXT"]
                .iter()
                .any(|s| e.name().ends_with(s))
                && e.mtime.0 >= lo
                && (e.mtime.0 < hi || (e.mtime.0 == hi && e.mtime.1 == 0))
        });
        assert!(!want.is_empty(), "{bounds:?}: a case that tests something");
        assert_eq!(found(&f, &args), want, "find {args:?}");
    }
}

#[test]
fn snapshot_and_filter_options_narrow_the_search() {
    let f = Fixture::new();
    let (_src, ids, models) = three_snapshots(&f);
    let pred = |e: &Entry| e.name().ends_with(b".dat");
    let two = [ids[0].clone(), ids[2].clone()];
    let want = expected(&two, &[models[0].clone(), models[2].clone()], &pred);
    let got = found(
        &f,
        &[
            "*.dat",
            "--snapshot",
            &ids[0][..10],
            "--snapshot",
            &ids[2],
            "--snapshot",
            &ids[2][..8],
        ],
    );
    assert_eq!(got, want);
    let latest = found(&f, &["*.dat", "--snapshot", "latest"]);
    assert_eq!(latest, expected(&ids[2..], &models[2..], &pred));
    assert!(found(&f, &["*.dat", "--host", "no-such-host"]).is_empty());
    let host = hostname_of(&f);
    assert_eq!(
        found(&f, &["*.dat", "--host", &host]),
        expected(&ids, &models, &pred)
    );
}

fn hostname_of(f: &Fixture) -> String {
    let run = f.cmd().args(["--json", "snapshots"]).run();
    run.ok();
    run.json()[0]["host"].as_str().unwrap().to_string()
}

#[test]
fn bad_selectors_and_patterns_are_named_in_the_error() {
    let f = Fixture::new();
    let (_src, ids, _models) = three_snapshots(&f);
    for (args, needle) in [
        (vec!["*.dat", "--snapshot", "deadbeef"], "deadbeef"),
        (
            vec!["*.dat", "--snapshot", &ids[0], "--snapshot", "0000000000"],
            "0000000000",
        ),
        (vec!["*.dat", "--snapshot", "xyz"], "xyz"),
        (vec!["a[b"], "a[b"),
        (vec!["/"], "\"/\""),
        (vec!["*", "--newest", "yesterday"], "yesterday"),
        (vec!["*", "--oldest", "2021-13-45"], "2021-13-45"),
        (
            vec!["*", "--newest", "2020-01-01", "--oldest", "2021-01-01"],
            "--newest",
        ),
    ] {
        let run = f.cmd().args(["find"]).args(&args).run();
        run.expect(1);
        run.assert_no_panic();
        assert!(
            run.stderr.contains(needle),
            "find {args:?}: stderr should name {needle:?}: {}",
            run.stderr
        );
    }
    let run = f.cmd().args(["find"]).run();
    assert_eq!(run.code, 2, "no pattern is a usage error: {}", run.stderr);
}

#[test]
fn human_output_groups_matches_by_snapshot() {
    let f = Fixture::new();
    let (_src, ids, _models) = three_snapshots(&f);
    let run = f.cmd().args(["find", "deep.dat"]).run();
    run.ok();
    let out = run.stdout();
    for id in &ids {
        assert!(
            out.contains(&format!("Found in snapshot {}", &id[..8])),
            "{out}"
        );
    }
    assert_eq!(out.matches("deep.dat").count(), 3, "{out}");
    assert!(
        run.stderr.contains("3 matches in 3 of 3 snapshots"),
        "{}",
        run.stderr
    );
    let odd = f.cmd().args(["find", "caf*"]).run();
    odd.ok();
    assert!(
        odd.stdout().contains("caf\\xe9.txt"),
        "escaped: {}",
        odd.stdout()
    );
}

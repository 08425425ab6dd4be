//! Backup modes as views over one store (full, incremental, differential), diff and stats,
//! driven through the real binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Fixture, Run};
use serde_json::Value;

struct Env {
    f: Fixture,
    src: PathBuf,
}

impl Env {
    fn new() -> Env {
        let f = Fixture::new();
        let src = f.path("src");
        std::fs::create_dir_all(src.join("sub")).expect("mkdir");
        for i in 0..5 {
            common::write(
                src.join(format!("f{i}")),
                format!("file number {i}\n").repeat(1000),
            );
        }
        common::write(src.join("sub/deep"), vec![7u8; 300_000]);
        Env { f, src }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.f.cmd().args(args).run()
    }

    /// Runs a backup with --json and returns its summary object.
    fn backup(&self, extra: &[&str]) -> Value {
        self.f.backup_json(&[&self.src], extra)
    }

    fn snapshots(&self) -> Vec<Value> {
        let out = self.run(&["--json", "snapshots"]);
        out.ok();
        out.json().as_array().expect("array").clone()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.src.join(rel)
    }
}

fn append(path: &Path, data: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open");
    f.write_all(data.as_bytes()).expect("append");
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

#[test]
fn unchanged_rebackup_reads_nothing_and_reports_every_file_unmodified() {
    let e = Env::new();
    let first = e.backup(&[]);
    assert_eq!(u(&first, "files_new"), 6);
    assert!(u(&first, "bytes_read") > 300_000);
    let second = e.backup(&[]);
    assert_eq!(u(&second, "bytes_read"), 0);
    assert_eq!(u(&second, "files_unmodified"), 6);
    assert_eq!(u(&second, "files_new"), 0);
    assert_eq!(u(&second, "files_changed"), 0);
    assert_eq!(u(&second, "dirs"), u(&first, "dirs"));
    assert_eq!(
        u(&second, "total_bytes_processed"),
        u(&first, "total_bytes_processed")
    );
    assert_eq!(second["parent"], first["snapshot_id"]);
    // Nothing but the trees of directories above the source (/tmp churns while tests run).
    assert!(
        u(&second, "data_added") < 4096,
        "an unchanged tree adds no data: {second}"
    );
}

#[test]
fn appending_to_one_file_counts_exactly_one_changed() {
    let e = Env::new();
    e.backup(&[]);
    append(&e.path("f3"), "one more line\n");
    let s = e.backup(&[]);
    assert_eq!(u(&s, "files_changed"), 1);
    assert_eq!(u(&s, "files_unmodified"), 5);
    assert_eq!(u(&s, "files_new"), 0);
    assert_eq!(
        u(&s, "bytes_read"),
        std::fs::metadata(e.path("f3")).expect("stat").len()
    );
}

#[test]
fn differential_sees_every_change_since_the_full_and_records_it_as_parent() {
    let e = Env::new();
    let full = e.backup(&["--mode", "full"]);
    append(&e.path("f1"), "changed in the first incremental\n");
    let inc1 = e.backup(&[]);
    assert_eq!(inc1["parent"], full["snapshot_id"]);
    append(&e.path("f2"), "changed in the second incremental\n");
    let inc2 = e.backup(&[]);
    assert_eq!(inc2["parent"], inc1["snapshot_id"]);
    assert_eq!(u(&inc2, "files_changed"), 1);
    let diff = e.backup(&["--mode", "differential"]);
    assert_eq!(diff["parent"], full["snapshot_id"]);
    assert_eq!(diff["mode"], "differential");
    assert_eq!(u(&diff, "files_changed"), 2);
    assert_eq!(u(&diff, "files_unmodified"), 4);

    let snaps = e.snapshots();
    let modes: Vec<&str> = snaps
        .iter()
        .map(|s| s["mode"].as_str().expect("mode"))
        .collect();
    assert_eq!(
        modes,
        ["full", "incremental", "incremental", "differential"]
    );
    assert_eq!(snaps[3]["parent"], full["snapshot_id"]);
    assert_eq!(snaps[0]["parent"], Value::Null);
}

#[test]
fn full_mode_reads_everything_yet_adds_almost_nothing() {
    let e = Env::new();
    let first = e.backup(&[]);
    let full = e.backup(&["--mode", "full"]);
    assert_eq!(u(&full, "bytes_read"), u(&first, "bytes_read"));
    assert_eq!(full["parent"], Value::Null);
    // Only directory trees above the source may change (their mtimes move as other tests run).
    assert!(u(&full, "data_added") < 4096, "{full}");
    let forced = e.backup(&["--force"]);
    assert_eq!(u(&forced, "bytes_read"), u(&first, "bytes_read"));
    assert_eq!(forced["mode"], "full");
}

#[test]
fn explicit_parent_overrides_the_mode_choice() {
    let e = Env::new();
    let first = e.backup(&[]);
    append(&e.path("f0"), "x");
    e.backup(&[]);
    let id = first["snapshot_id"].as_str().expect("id");
    let s = e.backup(&["--parent", &id[..8]]);
    assert_eq!(s["parent"], first["snapshot_id"]);
    assert_eq!(u(&s, "files_changed"), 1);
}

#[test]
fn ctime_change_is_a_change_unless_ignored() {
    let e = Env::new();
    e.backup(&[]);
    // chmod changes ctime only.
    let out = Command::new("chmod")
        .arg("600")
        .arg(e.path("f4"))
        .output()
        .expect("chmod");
    assert!(out.status.success());
    let s = e.backup(&["--ignore-ctime"]);
    assert_eq!(u(&s, "files_changed"), 0);
    assert_eq!(u(&s, "bytes_read"), 0);
    let out = Command::new("chmod")
        .arg("640")
        .arg(e.path("f4"))
        .output()
        .expect("chmod");
    assert!(out.status.success());
    let s = e.backup(&[]);
    assert_eq!(u(&s, "files_changed"), 1);
}

#[test]
fn diff_lists_exactly_the_changed_paths() {
    let e = Env::new();
    std::fs::write(e.path("becomes-dir"), "file").expect("write");
    let a = e.backup(&[]);
    append(&e.path("f0"), "content change");
    std::fs::remove_file(e.path("f1")).expect("rm");
    std::fs::write(e.path("new-file"), "new").expect("write");
    let out = Command::new("chmod")
        .arg("700")
        .arg(e.path("f2"))
        .output()
        .expect("chmod");
    assert!(out.status.success());
    std::fs::remove_file(e.path("becomes-dir")).expect("rm");
    std::fs::create_dir(e.path("becomes-dir")).expect("mkdir");
    let b = e.backup(&[]);
    let out = e.run(&[
        "diff",
        a["snapshot_id"].as_str().expect("id"),
        b["snapshot_id"].as_str().expect("id"),
    ]);
    out.ok();
    let text = out.stdout();
    let src = e.src.to_str().expect("utf-8");
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.len() > 5 && "+-MUT".contains(&l[..1]) && l[5..].starts_with(src))
        .map(str::to_string)
        .collect();
    lines.sort();
    let mut want = vec![
        format!("+    {src}/new-file"),
        format!("-    {src}/f1"),
        format!("M    {src}/f0"),
        format!("T    {src}/becomes-dir"),
        format!("U    {src}/f2"),
        // The source directory itself: its mtime changed with the added and removed entries.
        format!("U    {src}"),
    ];
    want.sort();
    assert_eq!(lines, want, "full output:\n{text}");

    let out = e.run(&[
        "diff",
        "--json",
        a["snapshot_id"].as_str().expect("id"),
        b["snapshot_id"].as_str().expect("id"),
    ]);
    let v: Value = out.json();
    let under_src = v["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["path"].as_str().is_some_and(|p| p.starts_with(src)))
        .count();
    assert_eq!(under_src, 6);
    assert_eq!(u(&v, "added"), 1);
    assert_eq!(u(&v, "removed"), 1);
}

#[test]
fn stats_reports_dedup_across_snapshots() {
    let e = Env::new();
    e.backup(&[]);
    e.backup(&["--mode", "full"]);
    let out = e.run(&["stats", "--json"]);
    out.ok();
    let v: Value = out.json();
    assert_eq!(u(&v, "snapshots"), 2);
    assert_eq!(u(&v, "total_file_count"), 12);
    let one_snapshot = 5 * 16 * 1000 + 300_000 - 5 * 1000 * 16
        + (0..5)
            .map(|i: u32| format!("file number {i}\n").len() as u64 * 1000)
            .sum::<u64>();
    assert_eq!(u(&v, "total_size"), 2 * one_snapshot);
    let dedup = v["dedup_ratio"].as_f64().expect("ratio");
    assert!(dedup > 1.9, "two identical snapshots dedup about 2x: {v}");
    let compression = v["compression_ratio"].as_f64().expect("ratio");
    assert!(compression > 5.0, "repetitive text compresses: {v}");
}

//! Proving recovery: drills, partial data checks that cover every pack over successive runs,
//! and selective restores.

mod common;

use std::path::Path;

use common::*;

/// A repository with several packs and a snapshot of a few files.
fn fixture_with_data() -> (Fixture, std::path::PathBuf, String) {
    let f = Fixture::small_packs();
    let src = f.path("src");
    for i in 0..12u64 {
        write(
            src.join(format!("dir{}/file{i}.dat", i % 2)),
            random_bytes(i, 400_000),
        );
    }
    write(src.join("notes.txt"), "some text\n".repeat(1000));
    let id = f.backup(&[&src], &[]);
    (f, src, id)
}

#[test]
fn a_drill_restores_a_sample_verifies_it_and_records_the_result() {
    let (f, _src, id) = fixture_with_data();
    let scratch = f.path("tmp");
    std::fs::create_dir(&scratch).expect("mkdir");
    let run = f
        .cmd()
        .env("TMPDIR", &scratch)
        .args(["--json", "drill", "--sample", "50%"])
        .run();
    run.ok();
    let s = run.summary();
    assert_eq!(s["ok"], true);
    assert_eq!(s["snapshot_id"], id.as_str());
    assert_eq!(s["files_total"], 13);
    let verified = s["files_verified"].as_u64().expect("files_verified");
    assert!((1..=13).contains(&verified), "{s}");
    assert!(s["bytes_verified"].as_u64().expect("bytes") > 0);
    assert!(s["throughput_bytes_per_s"].as_f64().expect("throughput") > 0.0);
    assert!(s["projected_full_restore_s"].as_f64().expect("rto") > 0.0);

    let full = f.cmd().args(["--json", "drill", "--full"]).run();
    full.ok();
    let s = full.summary();
    assert_eq!(s["files_verified"], 13);
    assert_eq!(s["bytes_verified"], s["bytes_total"]);

    let h = f.cmd().args(["--json", "drill", "--history"]).run();
    h.ok();
    let h = h.json();
    let arr = h.as_array().expect("history array");
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[1]["sample_percent"], 100.0);
    // The drill's scratch directory is gone.
    let leftovers = std::fs::read_dir(&scratch).expect("tmp").count();
    assert_eq!(leftovers, 0, "temporary drill directories are removed");
}

#[test]
fn a_drill_on_a_damaged_pack_fails_and_names_the_affected_files() {
    let (f, src, _) = fixture_with_data();
    // Damage the largest pack: it holds file data (trees are small and come last), so a full
    // drill must fail and name at least one file.
    let victim = f
        .packs()
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a pack");
    let victim = &victim;
    let mut bytes = std::fs::read(victim).expect("read pack");
    bytes[100] ^= 0x55;
    std::fs::write(victim, bytes).expect("write pack");
    let run = f.cmd().args(["drill", "--full"]).run();
    run.expect(1);
    assert!(run.stderr.contains("FAILED"), "{}", run.stderr);
    let src_s = src.to_str().expect("utf-8");
    assert!(
        run.stderr.contains(src_s),
        "the damaged file is named by its path: {}",
        run.stderr
    );
    assert!(run.stdout().contains("DRILL FAILED"));
    let h = f.cmd().args(["--json", "drill", "--history"]).run().json();
    assert_eq!(h[0]["ok"], false);
    assert!(!h[0]["failures"].as_array().expect("failures").is_empty());
}

#[test]
fn partial_data_checks_cover_every_pack_least_recently_verified_first() {
    let (f, _, _) = fixture_with_data();
    let cache = f.path("cache");
    let packs = f.packs().len() as u64;
    assert!(packs >= 4, "several packs: {packs}");
    let mut total_read = 0;
    for _ in 0..3 {
        let run = f
            .cmd()
            .env("XDG_CACHE_HOME", &cache)
            .args(["--json", "check", "--read-data-subset", "34%"])
            .run();
        run.ok();
        let s = run.summary();
        total_read += s["packs_read"].as_u64().expect("packs_read");
    }
    assert!(total_read >= packs);
    // Every pack was verified within the last day: nothing is overdue.
    let run = f
        .cmd()
        .env("XDG_CACHE_HOME", &cache)
        .args(["--json", "check", "--max-age", "1d"])
        .run();
    run.ok();
    assert_eq!(run.summary()["packs_overdue"], 0, "{}", run.stdout());
    // A fresh cache knows nothing: every pack is overdue.
    let run = f
        .cmd()
        .env("XDG_CACHE_HOME", f.path("empty-cache"))
        .args(["--json", "check", "--max-age", "1d"])
        .run();
    run.ok();
    assert_eq!(run.summary()["packs_overdue"], packs);
    // Slices n/m partition the packs.
    let mut sliced = 0;
    for n in 1..=3 {
        let run = f
            .cmd()
            .args(["--json", "check", "--read-data-subset", &format!("{n}/3")])
            .run();
        run.ok();
        sliced += run.summary()["packs_read"].as_u64().expect("packs_read");
    }
    assert_eq!(sliced, packs);
}

#[test]
fn restore_include_and_exclude_select_paths() {
    let (f, src, id) = fixture_with_data();
    let target = f.path("out");
    f.cmd()
        .args([
            "restore",
            &id,
            "--include",
            "dir1",
            "--exclude",
            "file3.dat",
            "--target",
        ])
        .arg(&target)
        .run()
        .ok();
    let got: Vec<String> = walk(&target)
        .into_iter()
        .filter(|p| target.join(p).is_file())
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    let mut got = got;
    got.sort();
    assert_eq!(
        got,
        [
            "file1.dat",
            "file11.dat",
            "file5.dat",
            "file7.dat",
            "file9.dat"
        ]
    );
    let r = restored(&target, &src);
    assert_eq!(
        std::fs::read(r.join("dir1/file5.dat")).expect("read"),
        random_bytes(5, 400_000)
    );
    assert!(
        !Path::new(&r.join("dir0")).exists(),
        "nothing of dir0 is restored"
    );
}

#[test]
fn repair_snapshots_rewrites_around_a_lost_pack_and_everything_else_restores() {
    let (f, src, old_id) = fixture_with_data();
    let victim = f
        .packs()
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a pack");
    std::fs::remove_file(&victim).expect("rm pack");
    f.cmd().args(["repair", "index"]).run().ok();
    f.cmd().args(["check"]).run().expect(1);
    let run = f
        .cmd()
        .args(["--json", "repair", "snapshots", "--forget"])
        .run();
    run.ok();
    let v = run.json();
    let repaired = v["repaired"].as_array().expect("repaired");
    assert_eq!(repaired.len(), 1);
    assert_eq!(repaired[0]["snapshot"], old_id.as_str());
    let notes: Vec<String> = repaired[0]["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .map(|n| n.as_str().expect("note").to_string())
        .collect();
    assert!(
        !notes.is_empty() && notes.iter().all(|n| n.contains("dropped")),
        "{notes:?}"
    );
    f.cmd().args(["check", "--read-data"]).run().ok();
    let snaps = f.cmd().args(["--json", "snapshots"]).run().json();
    let arr = snaps.as_array().expect("array");
    assert_eq!(arr.len(), 1, "the damaged original is forgotten");
    assert!(arr[0]["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .any(|t| t == "repaired"));
    // Every file the notes do not name restores byte-identically.
    let target = f.path("out");
    f.restore_latest(&target);
    let out = restored(&target, &src);
    let mut restored_files = 0;
    for rel in walk(&src) {
        let orig = src.join(&rel);
        if !orig.is_file() {
            continue;
        }
        let dropped = notes
            .iter()
            .any(|n| n.starts_with(&format!("{}:", orig.display())));
        let copy = out.join(&rel);
        if dropped {
            assert!(!copy.exists(), "{} was dropped", rel.display());
        } else {
            assert_eq!(
                std::fs::read(&copy).expect("restored"),
                std::fs::read(&orig).expect("orig")
            );
            restored_files += 1;
        }
    }
    assert!(restored_files > 0);
}

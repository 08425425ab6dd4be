//! `cairn tag` and `cairn rewrite` through the real binary: what `snapshots --json` shows
//! afterwards, restores of the rewritten snapshots compared with the originals minus what was
//! excluded, and `rewrite --forget` + `prune` freeing a secret's data.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use serde_json::Value;

/// `snapshots --json`, by id.
fn snapshots(f: &Fixture) -> BTreeMap<String, Value> {
    let run = f.cmd().args(["--json", "snapshots"]).run();
    run.ok();
    run.json()
        .as_array()
        .expect("array")
        .iter()
        .map(|s| (s["id"].as_str().expect("id").to_string(), s.clone()))
        .collect()
}

fn ids(f: &Fixture) -> BTreeSet<String> {
    snapshots(f).into_keys().collect()
}

fn tags_of(s: &Value) -> Vec<String> {
    s["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| t.as_str().expect("tag").to_string())
        .collect()
}

/// `tag --json ARGS`: the (original, new) pairs it reports.
fn tag(f: &Fixture, args: &[&str]) -> Vec<(String, String)> {
    let run = f.cmd().args(["--json", "tag"]).args(args).run();
    run.ok();
    run.json()
        .as_array()
        .expect("array")
        .iter()
        .map(|c| {
            (
                c["original"].as_str().expect("original").to_string(),
                c["new"].as_str().expect("new").to_string(),
            )
        })
        .collect()
}

fn small_tree(f: &Fixture, name: &str) -> PathBuf {
    let src = f.path(name);
    write(src.join("a.txt"), name);
    write(src.join("d/b.txt"), "b");
    src
}

#[test]
fn tag_add_remove_and_set_show_in_snapshots_json_and_unchanged_snapshots_keep_their_ids() {
    let f = Fixture::new();
    let src = small_tree(&f, "src");
    let first = f.backup(&[&src], &["--tag", "daily"]);
    let second = f.backup(&[&src], &["--tag", "daily", "--tag", "old"]);

    // --add on one snapshot: a new id with the tag and the original's id; the original is gone.
    let changed = tag(&f, &[&first[..8], "--add", "keep"]);
    assert_eq!(changed.len(), 1);
    let (orig, new) = &changed[0];
    assert_eq!(orig, &first);
    let all = snapshots(&f);
    assert!(!all.contains_key(&first), "the original is removed");
    assert_eq!(tags_of(&all[new]), ["daily", "keep"]);
    assert_eq!(all[new]["original"], first.as_str());
    assert_eq!(all[&second]["original"], Value::Null);
    let before: BTreeSet<String> = all.keys().cloned().collect();

    // The same change again, and removing a tag no snapshot has: nothing changes, ids stay.
    assert!(tag(&f, &[new.as_str(), "--add", "keep"]).is_empty());
    assert!(tag(&f, &["--remove", "absent"]).is_empty());
    assert_eq!(ids(&f), before);

    // --remove and --add together, on every snapshot (no SNAPSHOT, no filter).
    let changed = tag(&f, &["--remove", "old", "--add", "keep"]);
    assert_eq!(
        changed.len(),
        1,
        "only the second snapshot changes: {changed:?}"
    );
    assert_eq!(changed[0].0, second);
    let all = snapshots(&f);
    assert_eq!(tags_of(&all[&changed[0].1]), ["daily", "keep"]);
    assert!(all.contains_key(new), "the unchanged one kept its id");

    // --set replaces (duplicates once), and `--set ''` clears.
    let changed = tag(&f, &["--set", "x", "--set", "y", "--set", "x"]);
    assert_eq!(changed.len(), 2);
    for (_, n) in &changed {
        assert_eq!(tags_of(&snapshots(&f)[n]), ["x", "y"]);
    }
    let changed = tag(&f, &["--set", ""]);
    assert_eq!(changed.len(), 2);
    let all = snapshots(&f);
    assert_eq!(all.len(), 2);
    for s in all.values() {
        assert!(tags_of(s).is_empty(), "{s}");
    }
    // The repository is still sound, and each snapshot restores.
    f.cmd().args(["check", "--read-data"]).run().ok();
    let out = f.path("out");
    f.restore_latest(&out);
    assert_same_entries(&src, &restored(&out, &src));
}

#[test]
fn tag_without_snapshot_arguments_changes_what_the_filters_select_and_says_how_many() {
    let f = Fixture::new();
    let (a, b) = (small_tree(&f, "a"), small_tree(&f, "b"));
    let on_x = f.backup(&[&a], &["--host", "x", "--tag", "t1"]);
    let on_y = f.backup(&[&a], &["--host", "y"]);
    let of_b = f.backup(&[&b], &["--host", "x"]);

    let changed = tag(&f, &["--host", "x", "--add", "hx"]);
    let originals: BTreeSet<&str> = changed.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(originals, BTreeSet::from([on_x.as_str(), of_b.as_str()]));
    assert!(ids(&f).contains(&on_y));

    let b_path = b.to_str().expect("utf-8");
    let changed = tag(&f, &["--path", b_path, "--add", "pb"]);
    assert_eq!(changed.len(), 1);
    let of_b = changed[0].1.clone();
    assert_eq!(tags_of(&snapshots(&f)[&of_b]), ["hx", "pb"]);

    // --tag selects by a tag the snapshot has; `latest` is the newest the filters select.
    let changed = tag(&f, &["--tag", "t1", "--remove", "t1"]);
    assert_eq!(changed.len(), 1);
    assert_eq!(tags_of(&snapshots(&f)[&changed[0].1]), ["hx"]);
    let changed = tag(&f, &["latest", "--host", "y", "--add", "newest-y"]);
    assert_eq!(changed, vec![(on_y.clone(), changed[0].1.clone())]);

    // Human output counts the changed and the unchanged.
    let run = f.cmd().args(["tag", "--add", "newest-y"]).run();
    run.ok();
    assert!(
        run.stdout()
            .contains("changed the tags of 2 snapshots (1 already had them)"),
        "{}",
        run.stdout()
    );
}

#[test]
fn bad_tags_bad_selectors_and_contradictory_options_change_nothing() {
    let f = Fixture::new();
    let src = small_tree(&f, "src");
    let id = f.backup(&[&src], &["--tag", "t"]);
    let before = f.repo_files();
    let long = "x".repeat(257);
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["--add", ""], 1, "is empty"),
        (vec!["--add", "a,b"], 1, "comma"),
        (vec!["--remove", "new\nline"], 1, "control character"),
        (
            vec!["--set", "ok", "--set", "tab\t"],
            1,
            "control character",
        ),
        (vec!["--add", " padded"], 1, "white space"),
        (vec!["--add", &long], 1, "longer than 256"),
        (
            vec!["--add", "k", "--remove", "k"],
            1,
            "both added and removed",
        ),
        (vec!["--set", "a", "--add", "b"], 2, "cannot be used with"),
        (
            vec!["--set", "a", "--remove", "t"],
            2,
            "cannot be used with",
        ),
        (vec![], 2, "required"),
        (vec!["--host", "h"], 2, "required"),
        (vec!["ffffffff", "--add", "k"], 1, "ffffffff"),
        (vec!["zz", "--add", "k"], 1, "\"zz\""),
        (vec![&id[..8], "nope", "--add", "k"], 1, "nope"),
    ];
    for (args, code, says) in cases {
        let run = f.cmd().arg("tag").args(&args).run();
        run.expect(code);
        run.assert_no_panic();
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
        assert!(f.repo_files() == before, "{args:?} changed the repository");
    }
    // A missing repository (10) and a wrong password (12).
    let other = Fixture::empty();
    other.cmd().args(["tag", "--add", "k"]).run().expect(10);
    f.cmd()
        .env("CAIRN_PASSWORD", "wrong")
        .args(["tag", "--add", "k"])
        .run()
        .expect(12);
    assert!(f.repo_files() == before);
}

#[test]
fn tag_and_rewrite_forget_refuse_a_conflicting_lock_with_exit_11() {
    let f = Fixture::new();
    let src = small_tree(&f, "src");
    f.backup(&[&src], &[]);
    let backend: Arc<dyn cairn::backend::Backend> =
        Arc::new(cairn::backend::LocalBackend::new(&f.repo));
    let repo = cairn::Repository::open(backend, PASSWORD.as_bytes()).expect("open");
    let held = cairn::repo::lock::RepoLock::acquire(&repo, false, "backup", "elsewhere.example")
        .expect("lock");
    for args in [
        &["tag", "--add", "k"][..],
        &["rewrite", "--exclude", "a.txt", "--forget"],
    ] {
        let run = f.cmd().args(args).run();
        run.expect(11);
        assert!(run.stderr.contains("elsewhere.example"), "{}", run.stderr);
    }
    drop(held);
    f.cmd().args(["tag", "--add", "k"]).run().ok();
}

/// A source tree of many kinds of entries, with a secret file and a directory of keys.
fn rich_tree(f: &Fixture) -> PathBuf {
    let src = f.path("src");
    write(src.join("empty"), "");
    write(src.join("big.bin"), random_bytes(7, 3 << 20));
    write(src.join("docs/notes.txt"), "notes");
    write(src.join("docs/secret.bin"), random_bytes(8, 300_000));
    write(src.join("keys/id_ed25519"), "private key");
    write(src.join("keys/nested/deeper/token"), "token");
    write(
        src.join(OsStr::from_bytes(b"docs/caf\xe9-latin1.txt")),
        "latin-1 name",
    );
    let mut deep = src.join("deep");
    for i in 0..30 {
        deep = deep.join(format!("level{i}"));
    }
    write(deep.join("leaf"), "deep leaf");
    std::os::unix::fs::symlink("docs/notes.txt", src.join("link")).expect("symlink");
    std::os::unix::fs::symlink("/nowhere/at/all", src.join("dangling")).expect("symlink");
    fs::hard_link(src.join("docs/notes.txt"), src.join("notes-hardlink")).expect("link");
    sh("mkfifo", &[src.join("fifo").as_os_str()]);
    chmod(src.join("docs/notes.txt"), 0o640);
    chmod(src.join("empty"), 0o600);
    // Extended attributes where the file system has them.
    let _ = xattr::set(src.join("docs/notes.txt"), "user.colour", b"blue");
    set_mtime(src.join("docs"), 1_600_000_000, 123_456_789);
    src
}

/// Removes `path` (a file or a whole directory) from a restored tree, keeping its parent's
/// mtime: the tree then looks as the snapshot would without it.
fn remove_keeping_parent_mtime(path: &Path) {
    let parent = path.parent().expect("parent");
    let m = fs::symlink_metadata(parent).expect("lstat parent");
    if fs::symlink_metadata(path).expect("lstat").is_dir() {
        fs::remove_dir_all(path).expect("remove dir");
    } else {
        fs::remove_file(path).expect("remove file");
    }
    set_mtime(parent, m.mtime(), m.mtime_nsec() as u32);
}

fn restore(f: &Fixture, id: &str, target: &Path) {
    f.cmd()
        .args(["restore", id, "--target"])
        .arg(target)
        .run()
        .ok();
}

#[test]
fn rewrite_removes_a_secret_file_and_a_subtree_from_several_snapshots_and_keeps_everything_else() {
    let f = Fixture::new();
    let src = rich_tree(&f);
    let first = f.backup(&[&src], &["--tag", "daily"]);
    write(src.join("docs/later.txt"), "added later");
    let second = f.backup(&[&src], &[]);
    let other = small_tree(&f, "other");
    let unaffected = f.backup(&[&other], &[]);
    let before = snapshots(&f);

    let keys = src.join("keys");
    let run = f
        .cmd()
        .args(["--json", "rewrite", "--exclude", "secret.bin", "--exclude"])
        .arg(&keys)
        .run();
    run.ok();
    let out = run.json();
    assert_eq!(out["dry_run"], false);
    assert_eq!(out["unchanged"], serde_json::json!([unaffected]));
    assert_eq!(out["forgotten"], serde_json::json!([]));
    let rewritten = out["rewritten"].as_array().expect("rewritten");
    assert_eq!(rewritten.len(), 2);

    let all = snapshots(&f);
    assert!(
        all.contains_key(&unaffected),
        "unaffected snapshot kept its id"
    );
    assert!(
        all.contains_key(&first) && all.contains_key(&second),
        "no --forget: originals stay"
    );
    let secret_path = src.join("docs/secret.bin");
    let want_removed = vec![
        secret_path.display().to_string(),
        keys.display().to_string(),
    ];
    let removed_bytes = 300_000 + "private key".len() + "token".len();
    for (r, orig) in rewritten.iter().zip([&first, &second]) {
        assert_eq!(r["original"], orig.as_str());
        let paths: Vec<String> = r["removed_entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["path"].as_str().expect("path").to_string())
            .collect();
        assert_eq!(paths, want_removed);
        assert_eq!(
            r["removed"],
            serde_json::json!({"files": 3, "dirs": 3, "other": 0, "bytes": removed_bytes})
        );
        let new_id = r["new"].as_str().expect("new id");
        let (old, new) = (&before[orig], &all[new_id]);
        assert_eq!(new["original"], orig.as_str());
        for k in ["time", "host", "paths", "mode", "parent", "user"] {
            assert_eq!(old[k], new[k], "{k}");
        }
        let mut want_tags = tags_of(old);
        want_tags.push("rewrite".into());
        assert_eq!(tags_of(new), want_tags);
        let (os, ns) = (&old["summary"], &new["summary"]);
        let n = |v: &Value, k: &str| v[k].as_u64().expect(k);
        assert_eq!(
            n(ns, "total_bytes_processed"),
            n(os, "total_bytes_processed") - removed_bytes as u64
        );
        assert_eq!(n(ns, "total_files"), n(os, "total_files") - 3);
        assert_eq!(n(ns, "dirs"), n(os, "dirs") - 3);
        assert_eq!(n(ns, "files_new"), n(os, "files_new"), "run counters kept");

        // Restored: the original minus the excluded paths, byte for byte and with metadata.
        let (a, b) = (f.path(format!("a-{orig}")), f.path(format!("b-{orig}")));
        restore(&f, orig, &a);
        restore(&f, new_id, &b);
        remove_keeping_parent_mtime(&restored(&a, &secret_path));
        remove_keeping_parent_mtime(&restored(&a, &keys));
        assert_same_entries(&a, &b);
        assert!(restored(&b, &src.join("docs/notes.txt")).exists());
        assert!(!restored(&b, &secret_path).exists());
    }
    f.cmd().args(["check", "--read-data"]).run().ok();

    // Run again: the earlier rewrites are found, nothing new is written.
    let files = f.repo_files();
    let run = f
        .cmd()
        .args(["--json", "rewrite", "--exclude", "secret.bin", "--exclude"])
        .arg(&keys)
        .run();
    run.ok();
    let again = run.json();
    let rewritten = again["rewritten"].as_array().expect("rewritten");
    assert_eq!(rewritten.len(), 2, "the originals still hold the paths");
    assert!(rewritten.iter().all(|r| r["existing"] == true), "{again}");
    assert!(
        f.repo_files().keys().collect::<Vec<_>>() == files.keys().collect::<Vec<_>>(),
        "no new files"
    );
}

#[test]
fn rewrite_of_named_or_filtered_snapshots_leaves_the_others_alone() {
    let f = Fixture::new();
    let src = small_tree(&f, "src");
    let s1 = f.backup(&[&src], &["--host", "x"]);
    let s2 = f.backup(&[&src], &["--host", "y"]);
    let s3 = f.backup(&[&src], &["--host", "z"]);
    let run = f
        .cmd()
        .args([
            "--json",
            "rewrite",
            &s1[..10],
            "--exclude",
            "b.txt",
            "--forget",
        ])
        .run();
    run.ok();
    let out = run.json();
    assert_eq!(out["forgotten"], serde_json::json!([s1]));
    let run = f
        .cmd()
        .args([
            "--json",
            "rewrite",
            "--host",
            "y",
            "--exclude",
            "d",
            "--forget",
        ])
        .run();
    run.ok();
    assert_eq!(run.json()["forgotten"], serde_json::json!([s2]));
    let all = snapshots(&f);
    assert_eq!(all.len(), 3);
    assert!(all.contains_key(&s3));
    let hosts: BTreeSet<&str> = all
        .values()
        .filter(|s| s["original"].is_string())
        .map(|s| s["host"].as_str().expect("host"))
        .collect();
    assert_eq!(hosts, BTreeSet::from(["x", "y"]));
}

#[test]
fn a_dry_run_rewrite_reports_per_snapshot_and_writes_nothing() {
    let f = Fixture::new();
    let src = rich_tree(&f);
    let first = f.backup(&[&src], &[]);
    let before = f.repo_files();
    let run = f
        .cmd()
        .args([
            "--json",
            "rewrite",
            "--dry-run",
            "--forget",
            "--exclude",
            "*.bin",
        ])
        .run();
    run.ok();
    let out = run.json();
    assert_eq!(out["dry_run"], true);
    let r = &out["rewritten"][0];
    assert_eq!(r["original"], first.as_str());
    assert_eq!(r["new"], Value::Null);
    let paths: Vec<&str> = r["removed_entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["path"].as_str().expect("path"))
        .collect();
    let want = [
        src.join("big.bin").display().to_string(),
        src.join("docs/secret.bin").display().to_string(),
    ];
    assert_eq!(paths, want);
    assert_eq!(out["forgotten"], serde_json::json!([]));
    // Human form, and a pattern matching nothing: nothing written either way.
    let run = f.cmd().args(["rewrite", "-n", "--exclude", "*.bin"]).run();
    run.ok();
    assert!(run.stdout().contains("would lose"), "{}", run.stdout());
    assert!(run.stdout().contains("/docs/secret.bin (file)"));
    let run = f
        .cmd()
        .args(["--json", "rewrite", "--exclude", "no-such-name", "--forget"])
        .run();
    run.ok();
    assert_eq!(run.json()["unchanged"], serde_json::json!([first]));
    // A dry run only reads: --no-lock is allowed for it, and refused for a real rewrite.
    f.cmd()
        .args(["--no-lock", "rewrite", "-n", "--exclude", "*.bin"])
        .run()
        .ok();
    let run = f
        .cmd()
        .args(["--no-lock", "rewrite", "--exclude", "*.bin"])
        .run();
    run.expect(1);
    assert!(run.stderr.contains("must hold its lock"), "{}", run.stderr);
    assert!(f.repo_files() == before, "the repository changed");
}

/// Bytes in the repository, and `stats --json`'s unique size.
fn sizes(f: &Fixture) -> (u64, u64) {
    let run = f.cmd().args(["--json", "stats"]).run();
    run.ok();
    let unique = run.json()["unique_size"].as_u64().expect("unique_size");
    (f.repo_bytes(), unique)
}

#[test]
fn rewrite_forget_then_prune_frees_the_secrets_data() {
    let f = Fixture::small_packs();
    let src = f.path("src");
    let secret = random_bytes(99, 4 << 20);
    write(src.join("keep.bin"), random_bytes(98, 1 << 20));
    write(src.join("notes.txt"), "notes");
    write(src.join("private/secret.bin"), &secret);
    f.backup(&[&src], &[]);
    write(src.join("notes.txt"), "notes, edited");
    f.backup(&[&src], &[]);
    let (repo_before, unique_before) = sizes(&f);

    let run = f
        .cmd()
        .args(["rewrite", "--exclude", "secret.bin", "--forget"])
        .run();
    run.ok();
    assert!(run.stdout().contains("cairn prune"), "{}", run.stdout());
    let (repo_mid, unique_mid) = sizes(&f);
    assert!(
        unique_mid + (4 << 20) <= unique_before,
        "no snapshot uses the secret: {unique_before} -> {unique_mid}"
    );
    assert!(
        repo_mid + (1 << 20) > repo_before,
        "before prune the data is still stored: {repo_before} -> {repo_mid}"
    );

    f.cmd().args(["prune"]).run().ok();
    let (repo_after, _) = sizes(&f);
    assert!(
        repo_after + (4 << 20) - (256 << 10) <= repo_before,
        "prune freed the secret: {repo_before} -> {repo_after} bytes"
    );
    f.cmd().args(["check", "--read-data"]).run().ok();

    // Every snapshot restores without the secret, by name or by content.
    let all = snapshots(&f);
    assert_eq!(all.len(), 2);
    for id in all.keys() {
        let target = f.path(format!("r-{id}"));
        restore(&f, id, &target);
        let root = restored(&target, &src);
        assert_eq!(
            fs::read(root.join("keep.bin")).expect("keep.bin"),
            random_bytes(98, 1 << 20)
        );
        for rel in walk(&target) {
            let p = target.join(&rel);
            assert!(!rel.ends_with("secret.bin"), "{}", p.display());
            if fs::symlink_metadata(&p).expect("lstat").is_file() {
                let bytes = fs::read(&p).expect("read");
                assert!(
                    !bytes.windows(4096).any(|w| w == &secret[..4096]),
                    "{} holds the secret",
                    p.display()
                );
            }
        }
    }
}

#[test]
fn a_bad_exclude_file_or_pattern_is_a_clear_error_and_changes_nothing() {
    let f = Fixture::new();
    let src = small_tree(&f, "src");
    f.backup(&[&src], &[]);
    let before = f.repo_files();

    let missing = f.path("no-such-file");
    let dir = f.path("a-directory");
    fs::create_dir(&dir).expect("mkdir");
    let oversize = f.path("oversize");
    fs::File::create(&oversize)
        .and_then(|h| h.set_len((16 << 20) + 1))
        .expect("sparse file");
    let not_utf8 = f.path("latin1");
    write(&not_utf8, b"caf\xe9\n");
    let only_comments = f.path("comments");
    write(&only_comments, "# nothing here\n\n   \n");
    let empty = f.path("empty");
    write(&empty, "");
    let bad_glob = f.path("bad-glob");
    write(&bad_glob, "ok.txt\n[unclosed\n");

    let file_cases: Vec<(&Path, &str)> = vec![
        (&missing, "no-such-file"),
        (&dir, "is a directory"),
        (&oversize, "16.00 MiB"),
        (&not_utf8, "not UTF-8"),
        (&only_comments, "no exclude pattern"),
        (&empty, "no exclude pattern"),
        (&bad_glob, "[unclosed"),
    ];
    for (file, says) in file_cases {
        let run = f.cmd().arg("rewrite").arg("--exclude-file").arg(file).run();
        run.expect(1);
        run.assert_no_panic();
        assert!(
            run.stderr.contains(says),
            "{}: {}",
            file.display(),
            run.stderr
        );
        assert!(
            f.repo_files() == before,
            "{} changed the repository",
            file.display()
        );
    }
    for (args, code, says) in [
        (vec!["--exclude", "a[b"], 1, "a[b"),
        (vec![], 1, "no exclude pattern"),
        (vec!["--exclude", "x", "nope"], 1, "nope"),
        (vec!["--exclude", "x", "--bogus"], 2, "--bogus"),
    ] {
        let run = f.cmd().arg("rewrite").args(&args).run();
        run.expect(code);
        run.assert_no_panic();
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
        assert!(f.repo_files() == before, "{args:?} changed the repository");
    }
}

/// `backup --tag` follows `tag`'s rules, for a path backup and for a command's stream (whose
/// command must not even start): a tag `forget --keep-tag` could never name is refused first.
#[test]
fn backup_refuses_the_tags_tag_refuses_before_reading_anything() {
    let f = Fixture::new();
    let src = small_tree(&f, "src");
    let before = f.repo_files();
    let marker = f.path("command-ran");
    let long = "x".repeat(257);
    for (bad, says) in [
        ("", "is empty"),
        ("a,b", "comma"),
        ("new\nline", "control character"),
        (" padded", "white space"),
        (&long[..], "longer than 256"),
    ] {
        let run = f.cmd().args(["backup", "--tag", bad]).arg(&src).run();
        run.expect(1);
        assert!(run.stderr.contains(says), "{bad:?}: {}", run.stderr);
        let run = f
            .cmd()
            .args([
                "backup",
                "--tag",
                bad,
                "--stdin-from-command",
                "--",
                "touch",
            ])
            .arg(&marker)
            .run();
        run.expect(1);
        assert!(run.stderr.contains(says), "{bad:?}: {}", run.stderr);
        assert!(!marker.exists(), "{bad:?}: the command ran");
        assert!(f.repo_files() == before, "{bad:?} changed the repository");
    }
}

//! forget + prune + locks through the real binary: space comes back, everything left restores,
//! and a prune or backup killed at any instant leaves a repository `check` accepts.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// A tree of random (incompressible) files, so every snapshot has measurable unique data.
fn make_files(dir: &std::path::Path, seed: u64, count: usize, size: usize) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for i in 0..count {
        write(
            dir.join(format!("file-{seed}-{i}")),
            random_bytes(seed * 1000 + i as u64, size),
        );
    }
}

fn spawn_cairn(f: &Fixture, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("-r")
        .arg(&f.repo)
        .arg("--no-progress")
        .args(args)
        .env("CAIRN_PASSWORD", PASSWORD)
        .env_remove("CAIRN_REPOSITORY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cairn")
}

fn kill9(child: &mut std::process::Child) {
    // SIGKILL: no destructor, no lock release but the kernel's.
    child.kill().expect("kill -9");
    let _ = child.wait();
}

#[test]
fn prune_frees_the_unique_data_of_forgotten_snapshots_and_the_rest_restores() {
    let f = Fixture::new();
    let keep_dir = f.path("src/keep");
    let gone_dir = f.path("src/gone");
    make_files(&keep_dir, 1, 3, 400_000);
    make_files(&gone_dir, 2, 5, 400_000);
    let src = f.path("src");
    let first = f.backup(&[&src], &[]);
    std::fs::remove_dir_all(&gone_dir).expect("rm");
    let second = f.backup(&[&src], &[]);
    let before = f.repo_bytes();

    // Pruning with every snapshot still present frees nothing.
    let r = f.cmd().args(["--json", "prune"]).run();
    r.ok();
    assert_eq!(r.summary()["bytes_freed"], 0);
    // Only the index may be rewritten (two index files merged into one).
    assert!(
        f.repo_bytes().abs_diff(before) < 1024,
        "{} -> {}",
        before,
        f.repo_bytes()
    );
    let before = f.repo_bytes();

    f.cmd().args(["forget", &first]).run().ok();
    let r = f.cmd().args(["--json", "prune", "--max-unused", "0"]).run();
    r.ok();
    let freed = r.summary()["bytes_freed"].as_u64().expect("bytes_freed");
    let after = f.repo_bytes();
    // The 2 MB only the forgotten snapshot had, less the padding of the pack the kept data is
    // repacked into (repo-format.md §6.4: at most 3.2 % of a pack over 1 MiB).
    let unique = 5 * 400_000 - 3 * 400_000 * 32 / 1000;
    assert!(
        freed >= unique,
        "freed {freed}: the 2 MB only the forgotten snapshot had"
    );
    assert!(
        before - after >= unique,
        "repository shrank by {}",
        before - after
    );
    f.cmd().args(["check", "--read-data"]).run().ok();

    let target = f.path("restored");
    f.cmd()
        .args(["restore", &second, "--target"])
        .arg(&target)
        .run()
        .ok();
    assert_same_tree(&src, &restored(&target, &src));
    // The forgotten snapshot is gone, and a second prune has nothing left to do.
    f.cmd().args(["ls", &first]).run().expect(1);
    let r = f.cmd().args(["--json", "prune"]).run();
    r.ok();
    assert_eq!(r.summary()["bytes_freed"], 0);
}

#[test]
fn prune_killed_at_any_instant_leaves_a_repository_that_checks_clean() {
    let f = Fixture::small_packs();
    let src = f.path("src");
    let mut snaps = Vec::new();
    for round in 0..4u64 {
        make_files(&src.join(format!("r{round}")), 10 + round, 6, 300_000);
        if round > 0 {
            std::fs::remove_dir_all(src.join(format!("r{}", round - 1))).expect("rm");
        }
        snaps.push(f.backup(&[&src], &[]));
    }
    f.cmd().args(["forget", &snaps[0], &snaps[1]]).run().ok();
    let last = snaps[3].clone();
    let pristine = f.path("pristine");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&f.repo)
        .arg(&pristine)
        .status()
        .expect("cp")
        .success());

    // Delays spread over a prune's life; each trial starts from the same repository.
    for (trial, delay_ms) in [0u64, 15, 40, 80, 120, 200, 350, 600]
        .into_iter()
        .enumerate()
    {
        let _ = std::fs::remove_dir_all(&f.repo);
        assert!(Command::new("cp")
            .arg("-a")
            .arg(&pristine)
            .arg(&f.repo)
            .status()
            .expect("cp")
            .success());
        let mut child = spawn_cairn(&f, &["prune", "--max-unused", "0"]);
        // Time itself is what varies here: the kill lands `delay_ms` into the prune's life.
        std::thread::sleep(Duration::from_millis(delay_ms));
        kill9(&mut child);
        let r = f.cmd().args(["check"]).run();
        assert_eq!(
            r.code, 0,
            "trial {trial} (kill after {delay_ms} ms): check failed:\n{}",
            r.stderr
        );
        f.cmd().args(["prune", "--max-unused", "0"]).run().ok();
        f.cmd().args(["check", "--read-data"]).run().ok();
        let target = f.path(format!("restored-{trial}"));
        f.cmd()
            .args(["restore", &last, "--target"])
            .arg(&target)
            .run()
            .ok();
        assert_same_tree(&src, &restored(&target, &src));
        let _ = std::fs::remove_dir_all(&target);
    }
}

#[test]
fn a_backup_killed_with_sigkill_does_not_block_a_following_prune() {
    let f = Fixture::new();
    let src = f.path("src");
    make_files(&src, 3, 40, 1_000_000);
    let mut child = spawn_cairn(&f, &["backup", src.to_str().expect("utf-8")]);
    // Wait until the backup holds its lock (its lock file exists), then kill it.
    let locks = f.repo.join("locks");
    wait_until(Duration::from_secs(60), "the backup's lock file", || {
        let held = final_entries(&locks) > 0;
        if !held {
            let ended = child.try_wait().expect("wait");
            assert!(
                ended.is_none(),
                "the backup ended ({ended:?}) before it was seen locking"
            );
        }
        held
    });
    kill9(&mut child);
    let stale = std::fs::read_dir(&locks).expect("locks").count();
    assert!(stale >= 1, "the killed backup's lock file is still there");
    f.cmd().args(["prune"]).run().ok();
    f.cmd().args(["check"]).run().ok();
    // unlock clears what the dead process left behind.
    f.cmd().args(["unlock"]).run().ok();
    assert_eq!(std::fs::read_dir(&locks).expect("locks").count(), 0);
    f.backup(&[&src], &[]);
}

#[test]
fn a_live_conflicting_lock_exits_11_and_names_its_holder() {
    let f = Fixture::new();
    let src = f.path("src");
    make_files(&src, 4, 2, 1000);
    f.backup(&[&src], &[]);
    let backend: Arc<dyn cairn::backend::Backend> =
        Arc::new(cairn::backend::LocalBackend::new(&f.repo));
    let repo = cairn::Repository::open(backend, PASSWORD.as_bytes()).expect("open");
    let held = cairn::repo::lock::RepoLock::acquire(&repo, true, "prune", "elsewhere.example")
        .expect("lock");

    let r = f.cmd().args(["backup"]).arg(&src).run();
    r.expect(11);
    assert!(
        r.stderr.contains("elsewhere.example"),
        "stderr names the holder: {}",
        r.stderr
    );
    let r = f.cmd().args(["prune"]).run();
    r.expect(11);
    // `unlock` (without --remove-all) leaves a live lock alone.
    f.cmd().args(["unlock"]).run().ok();
    f.cmd().args(["prune"]).run().expect(11);
    drop(held);
    f.cmd().args(["prune"]).run().ok();

    // A shared lock lets other shared users in but keeps prune out.
    let shared = cairn::repo::lock::RepoLock::acquire(&repo, false, "backup", "elsewhere.example")
        .expect("lock");
    f.cmd().args(["check"]).run().ok();
    f.cmd().args(["prune"]).run().expect(11);
    drop(shared);
}

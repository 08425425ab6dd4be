//! Interrupted backups resume: Ctrl-C saves a partial snapshot, periodic checkpoints survive
//! `kill -9`, and the next backup neither re-reads completed files nor re-sends their data.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn source(f: &Fixture, files: u64) -> std::path::PathBuf {
    let src = f.path("src");
    for i in 0..files {
        write(
            src.join(format!("d{}/f{i:03}", i % 4)),
            random_bytes(100 + i, 1 << 20),
        );
    }
    src
}

fn spawn_backup(f: &Fixture, src: &std::path::Path, extra: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("-r")
        .arg(&f.repo)
        .args(["--no-progress", "backup"])
        .arg(src)
        .args(extra)
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("XDG_CACHE_HOME", f.path("cache"))
        .env_remove("CAIRN_REPOSITORY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// Sends SIGINT (Ctrl-C) to `child`, which was not waited for yet: its PID is still its own.
fn interrupt(child: &std::process::Child) {
    // SAFETY: kill has no memory-safety preconditions; the PID is our unreaped child's.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
}

fn snapshots(f: &Fixture) -> Vec<serde_json::Value> {
    f.cmd()
        .args(["--json", "snapshots"])
        .run()
        .json()
        .as_array()
        .expect("array")
        .clone()
}

#[test]
fn ctrl_c_saves_a_partial_snapshot_and_the_next_backup_resumes_from_it() {
    let f = Fixture::new();
    let src = source(&f, 40);
    let child = spawn_backup(&f, &src, &[]);
    // Interrupt once the backup holds its lock (it is past start-up) and is well into its work:
    // its first pack (16 MiB of the 40) is being written or stored, so files are complete.
    let locks = f.repo.join("locks");
    wait_until(Duration::from_secs(60), "the backup's lock file", || {
        final_entries(&locks) > 0
    });
    wait_until(Duration::from_secs(60), "the backup's first pack", || {
        let (packs, temps) = data_files(&f.repo);
        packs + temps > 0
    });
    interrupt(&child);
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("partial snapshot"), "{stderr}");
    let snaps = snapshots(&f);
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["partial"], true);
    f.cmd().args(["check", "--read-data"]).run().ok();

    let s = f.backup_json(&[&src], &[]);
    let total = s["total_bytes_processed"].as_u64().expect("total");
    let read = s["bytes_read"].as_u64().expect("read");
    assert!(
        s["files_unmodified"].as_u64().expect("unmodified") > 0,
        "resumed: {s}"
    );
    assert!(
        read < total,
        "completed files are not read again: {read} of {total}"
    );
    assert_eq!(
        s["parent"], snaps[0]["id"],
        "the partial snapshot is the parent"
    );
    let snaps = snapshots(&f);
    assert_eq!(
        snaps.len(),
        1,
        "the partial snapshot is gone once a backup completes"
    );
    assert_eq!(snaps[0]["partial"], false);
    let target = f.path("out");
    f.restore_latest(&target);
    assert_same_tree(&src, &restored(&target, &src));
}

#[test]
fn backups_killed_at_random_moments_leave_a_clean_repository_and_are_resumed() {
    let f = Fixture::new();
    let src = source(&f, 64);
    let total_bytes: u64 = 64 << 20;
    let mut report = Vec::new();
    // Each run is killed at a different moment after its first checkpoint appears (timing
    // alone would depend on how loaded the machine is).
    for (trial, delay) in [0u64, 250, 600].into_iter().enumerate() {
        let snapshots_dir = f.repo.join("snapshots");
        let count = || {
            std::fs::read_dir(&snapshots_dir)
                .map(|d| d.count())
                .unwrap_or(0)
        };
        let before = count();
        let mut child = spawn_backup(&f, &src, &["--checkpoint-interval", "1s"]);
        wait_until(Duration::from_secs(60), "a checkpoint (or the end)", || {
            count() != before || child.try_wait().ok().flatten().is_some()
        });
        // Time itself is what varies here: the kill lands `delay` ms after the checkpoint.
        std::thread::sleep(Duration::from_millis(delay));
        // SIGKILL (a no-op if the backup already ended).
        child.kill().expect("kill -9 the backup");
        let _ = child.wait();
        let r = f.cmd().args(["check", "--read-data"]).run();
        assert_eq!(
            r.code, 0,
            "trial {trial}: check after kill -9 {delay} ms after a checkpoint:\n{}",
            r.stderr
        );
        report.push(format!(
            "kill {delay} ms after a checkpoint: {} bytes in the repository",
            f.repo_bytes()
        ));
        f.cmd().arg("unlock").run().ok();
    }
    let stored_before = f.repo_bytes();
    assert!(
        stored_before > total_bytes / 4,
        "the interrupted runs saved work: {stored_before}"
    );
    let s = f.backup_json(&[&src], &[]);
    let added = s["data_added"].as_u64().expect("data_added");
    let read = s["bytes_read"].as_u64().expect("bytes_read");
    eprintln!(
        "{}\ncompleting backup: read {read} of {total_bytes}, added {added} (already stored: {stored_before})",
        report.join("\n")
    );
    assert!(read < total_bytes, "completed files are not read again");
    // What the interrupted runs stored is reused: the completing backup sends only the rest
    // (plus at most the files that were in flight at each kill).
    assert!(
        added <= total_bytes.saturating_sub(stored_before) + 3 * (2 << 20),
        "re-sent data: added {added}, stored before {stored_before}, total {total_bytes}"
    );
    f.cmd().args(["check", "--read-data"]).run().ok();
    let target = f.path("out");
    f.restore_latest(&target);
    assert_same_tree(&src, &restored(&target, &src));
    assert!(snapshots(&f).iter().all(|s| s["partial"] == false));
}

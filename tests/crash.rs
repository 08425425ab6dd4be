//! Library-level crash tests through the storage seam: a backup and a prune "crash" at every
//! single storage operation in turn; after each, the reopened repository checks clean and every
//! earlier snapshot restores byte-identically.

mod common;

use std::path::Path;
use std::sync::Arc;

use cairn::backend::{Backend, FaultBackend, FileKind, MemBackend};
use cairn::backup::{backup, BackupOptions, NoProgress};
use cairn::check::{check, CheckOptions};
use cairn::format::id::SnapshotId;
use cairn::prune::{prune, PruneOptions};
use cairn::restore::{restore, select_path, NoRestoreProgress, RestoreOptions};
use cairn::Repository;
use common::{assert_same_tree, random_bytes, restored, write};

const PW: &[u8] = b"pw";

fn init(backend: Arc<dyn Backend>) -> Repository {
    Repository::init(backend, PW, &common::quick_init_options()).expect("init")
}

fn open(backend: Arc<dyn Backend>) -> Repository {
    let mut r = Repository::open(backend, PW).expect("open");
    r.load_index().expect("index");
    r
}

fn opts(src: &Path, time: i64) -> BackupOptions {
    BackupOptions {
        paths: vec![src.to_path_buf()],
        host: "h".into(),
        time_ns: time,
        threads: 2,
        ..BackupOptions::default()
    }
}

/// Restores snapshot `id` (of `src`) and compares it with `expected`.
fn assert_restores_as(
    repo: &Repository,
    id: &SnapshotId,
    src: &Path,
    expected: &Path,
    scratch: &Path,
) {
    let snap = repo.read_snapshot(id).expect("snapshot");
    let sel = select_path(repo, snap.tree, "").expect("select");
    let _ = std::fs::remove_dir_all(scratch);
    let out = restore(
        repo,
        &sel,
        &RestoreOptions {
            target: scratch.to_path_buf(),
            ..RestoreOptions::default()
        },
        &NoRestoreProgress,
    )
    .expect("restore");
    assert!(
        out.ok(),
        "restore problems: {:?} {:?}",
        out.damaged,
        out.errors
    );
    assert_same_tree(expected, &restored(scratch, src));
}

fn assert_restores(repo: &Repository, id: &SnapshotId, src: &Path, scratch: &Path) {
    assert_restores_as(repo, id, src, src, scratch);
}

fn assert_checks_clean(backend: Arc<dyn Backend>) {
    let mut repo = open(backend);
    let report = check(
        &mut repo,
        &CheckOptions {
            read_data: cairn::check::ReadData::All,
            ..CheckOptions::default()
        },
    )
    .expect("check");
    assert!(report.ok(), "check errors: {:?}", report.errors);
}

/// Copies every object of one backend into a fresh in-memory one.
fn clone_mem(from: &MemBackend) -> Arc<MemBackend> {
    let to = Arc::new(MemBackend::new());
    for kind in FileKind::ALL {
        for (name, _) in from.list(kind).expect("list") {
            to.put(kind, &name, &from.get(kind, &name).expect("get"))
                .expect("put");
        }
    }
    to
}

#[test]
fn a_backup_crashing_at_any_storage_operation_loses_nothing_already_saved() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    for i in 0..6 {
        write(src.join(format!("f{i}")), random_bytes(i, 300_000));
    }
    let base = Arc::new(MemBackend::new());
    let first = {
        let mut repo = init(base.clone());
        backup(&mut repo, &opts(&src, 1), &NoProgress)
            .expect("backup")
            .snapshot_id
            .expect("id")
    };
    let src_v1 = tmp.path().join("v1");
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&src_v1)
        .status()
        .expect("cp")
        .success());
    // The second backup changes half the files and adds more.
    for i in 3..9 {
        write(src.join(format!("f{i}")), random_bytes(100 + i, 300_000));
    }
    // Count the storage operations of an uncrashed second backup.
    let total = {
        let mem = clone_mem(&base);
        let fault = Arc::new(FaultBackend::new(mem, u64::MAX));
        let mut repo = open(fault.clone());
        backup(&mut repo, &opts(&src, 2), &NoProgress).expect("backup");
        fault.operations()
    };
    assert!(
        total >= 4,
        "a backup makes several writes (packs, index, snapshot): {total}"
    );
    for crash_at in 0..total {
        let mem = clone_mem(&base);
        let fault = Arc::new(FaultBackend::new(mem.clone(), crash_at));
        let mut repo = open(fault.clone());
        let r = backup(&mut repo, &opts(&src, 2), &NoProgress);
        assert!(
            r.is_err(),
            "crash at {crash_at} of {total} must fail the backup"
        );
        assert_checks_clean(mem.clone());
        let repo = open(mem.clone());
        assert_restores_as(&repo, &first, &src, &src_v1, &tmp.path().join("out"));
        // The next backup completes and restores.
        let mut repo = open(mem.clone());
        let id = backup(&mut repo, &opts(&src, 3), &NoProgress)
            .expect("backup")
            .snapshot_id
            .expect("id");
        assert_restores(&repo, &id, &src, &tmp.path().join("out"));
    }
}

#[test]
fn a_prune_crashing_at_any_storage_operation_keeps_every_snapshot_restorable() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    let base = Arc::new(MemBackend::new());
    let mut repo = init(base.clone());
    let mut ids = Vec::new();
    for round in 0..3u64 {
        for i in 0..4 {
            write(
                src.join(format!("r{round}-{i}")),
                random_bytes(round * 10 + i, 250_000),
            );
        }
        if round > 0 {
            for i in 0..4 {
                std::fs::remove_file(src.join(format!("r{}-{i}", round - 1))).expect("rm");
            }
        }
        ids.push(
            backup(&mut repo, &opts(&src, round as i64), &NoProgress)
                .expect("backup")
                .snapshot_id
                .expect("id"),
        );
    }
    drop(repo);
    // Forget the first snapshot.
    base.delete(FileKind::Snapshot, &ids[0].to_hex())
        .expect("forget");
    let total = {
        let mem = clone_mem(&base);
        let fault = Arc::new(FaultBackend::new(mem, u64::MAX));
        let mut repo = open(fault.clone());
        let r = prune(
            &mut repo,
            &PruneOptions {
                dry_run: false,
                max_unused_percent: 0.0,
                force: false,
            },
        )
        .expect("prune");
        assert!(
            r.packs_deleted + r.packs_repacked > 0,
            "the prune has work to do: {r:?}"
        );
        fault.operations()
    };
    for crash_at in 0..total {
        let mem = clone_mem(&base);
        let fault = Arc::new(FaultBackend::new(mem.clone(), crash_at));
        let mut repo = open(fault.clone());
        assert!(prune(
            &mut repo,
            &PruneOptions {
                dry_run: false,
                max_unused_percent: 0.0,
                force: false,
            }
        )
        .is_err());
        assert_checks_clean(mem.clone());
        let repo = open(mem.clone());
        assert_restores(&repo, &ids[2], &src, &tmp.path().join("out"));
        // The next prune finishes the job.
        let mut repo = open(mem.clone());
        prune(
            &mut repo,
            &PruneOptions {
                dry_run: false,
                max_unused_percent: 0.0,
                force: false,
            },
        )
        .expect("second prune");
        assert_checks_clean(mem.clone());
        let after = clone_mem(&mem);
        let mut repo = open(after);
        let again = prune(
            &mut repo,
            &PruneOptions {
                dry_run: false,
                max_unused_percent: 0.0,
                force: false,
            },
        )
        .expect("third");
        assert_eq!(
            again.bytes_freed, 0,
            "crash at {crash_at}: the second prune left work: {again:?}"
        );
    }
}

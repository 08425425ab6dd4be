//! Backs up a directory and restores it, through the library alone: what a program embedding
//! cairn needs, and nothing of the command-line client.
//!
//! Usage: backup_restore SOURCE_DIR REPOSITORY_DIR TARGET_DIR
//!
//! Creates a new repository in REPOSITORY_DIR (which must not exist or be empty), backs up
//! SOURCE_DIR into it, opens the repository again from scratch as a later program would, and
//! restores the snapshot into TARGET_DIR with every file verified against its chunk ids.
//! The password comes from this example's own code: a real program asks its user.

#![allow(clippy::disallowed_macros)] // an example prints to a terminal; a panic on a closed pipe is acceptable here

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cairn::backend::{Backend, LocalBackend};
use cairn::backup::{backup, BackupOptions, NoProgress};
use cairn::repo::{InitOptions, Repository};
use cairn::restore::{restore, select_path, NoRestoreProgress, RestoreOptions};

const PASSWORD: &[u8] = b"correct horse battery staple";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [source, repository, target] = args.as_slice() else {
        return Err("usage: backup_restore SOURCE_DIR REPOSITORY_DIR TARGET_DIR".into());
    };
    let now_ns = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos())?;

    // A new repository in a local directory (the default kind: no server).
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(repository.clone()));
    let init = InitOptions {
        host: "example".into(),
        now_ns,
        ..InitOptions::default()
    };
    let mut repo = Repository::init(backend, PASSWORD, &init)?;
    repo.load_index()?;

    let options = BackupOptions {
        paths: vec![source.clone()],
        host: "example".into(),
        time_ns: now_ns,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        ..BackupOptions::default()
    };
    let outcome = backup(&mut repo, &options, &NoProgress)?;
    for e in &outcome.errors {
        eprintln!("not backed up: {}: {}", e.path.display(), e.error);
    }
    let id = outcome.snapshot_id.ok_or("the backup made no snapshot")?;
    println!(
        "snapshot {id}: {} files, {} bytes added",
        outcome.summary.total_files, outcome.summary.data_added
    );
    drop(repo);

    // Later, perhaps in another program: open the repository and restore the snapshot.
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(repository.clone()));
    let mut repo = Repository::open(backend, PASSWORD)?;
    repo.load_index()?;
    let snapshot = repo.read_snapshot(&id)?;
    let selected = select_path(&repo, snapshot.tree, "")?;
    let options = RestoreOptions {
        target: target.clone(),
        verify: true,
        ..RestoreOptions::default()
    };
    let restored = restore(&repo, &selected, &options, &NoRestoreProgress)?;
    if !restored.ok() {
        return Err(format!("the restore is incomplete: {:?}", restored.errors).into());
    }
    println!(
        "restored {} files into {}",
        restored.files,
        target.display()
    );
    Ok(())
}

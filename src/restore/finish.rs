//! A file's last step, run by whichever thread writes its last chunk: its problems are
//! reported (and the file removed), or it is verified if asked, gets its metadata, and the hard
//! links waiting for it are made.

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

use super::flow::Shared;
use super::plan::BatchState;
use super::verify::verify_reader;
use super::{RestoreError, RestoreOutcome};
use crate::safe_fs;

impl Shared<'_> {
    /// The last step of a file: checks what happened to it, closes it, verifies it if asked,
    /// applies its metadata and makes the hard links that wait for it.
    pub(super) fn finish_file(&self, batch: &BatchState, i: usize) {
        let f = &batch.files[i];
        f.write_held_back();
        // A file with nothing to write (empty, all holes) and no problem is created only now.
        if f.problems().is_empty() {
            f.with_out(|_| ());
        }
        let problems = std::mem::take(&mut *f.problems());
        let links = {
            let mut l = f.links.lock().unwrap_or_else(|p| p.into_inner());
            l.finished = true;
            std::mem::take(&mut l.paths)
        };
        let mut done = RestoreOutcome::default();
        if !problems.is_empty() {
            let (error, damaged) = problems.describe();
            let error = f
                .remove_own()
                .map_or(error.clone(), |also| format!("{error}; {also}"));
            // Links are not made: they would share the missing content.
            for link in links {
                let e = RestoreError {
                    path: link.path,
                    error: error.clone(),
                };
                if damaged {
                    done.damaged.push(e);
                } else {
                    done.errors.push(e);
                }
            }
            let e = RestoreError {
                path: f.path.clone(),
                error,
            };
            if damaged {
                done.damaged.push(e);
            } else {
                done.errors.push(e);
            }
        } else {
            let verified = if self.opts.verify {
                // Read back through the descriptor it was written with (opened for reading
                // too): the very file, whatever its name is now.
                let reopened = f
                    .with_out(|out| out.file.try_clone())
                    .unwrap_or_else(|| f.dir.open_file(&f.name));
                match reopened {
                    Ok(file) => {
                        verify_reader(self.repo, file, &f.node).map(|()| done.verified_files += 1)
                    }
                    Err(e) => Err(format!("verify: cannot reopen: {e}")),
                }
            } else {
                Ok(())
            };
            match verified {
                Err(error) => {
                    // Not left on disk, and neither are its links (named too).
                    let error = f
                        .remove_own()
                        .map_or(error.clone(), |also| format!("{error}; {also}"));
                    for link in links {
                        done.damaged.push(RestoreError {
                            path: link.path,
                            error: error.clone(),
                        });
                    }
                    done.damaged.push(RestoreError {
                        path: f.path.clone(),
                        error,
                    });
                }
                Ok(()) => {
                    let applied = f.with_out(|out| {
                        safe_fs::apply_fd_metadata(out.file.as_fd(), &f.node, self.opts.set_owner)
                    });
                    f.close();
                    if let Some(Err(e)) = applied {
                        done.errors.push(RestoreError {
                            path: f.path.clone(),
                            error: format!("metadata: {e}"),
                        });
                    }
                    done.files += 1;
                    done.bytes += f.written.load(Ordering::Relaxed);
                    for link in links {
                        match link.link_to(&self.target, &f.dir, &f.name) {
                            Ok(()) => done.files += 1,
                            Err(e) => done.errors.push(RestoreError {
                                path: link.path,
                                error: format!("hard link to {}: {e}", f.path.display()),
                            }),
                        }
                    }
                }
            }
        }
        self.out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .absorb(done);
        if batch.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.batch_finished(batch.seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::{Arc, Condvar, Mutex};

    use super::super::file::pending;
    use super::super::flow::{Flow, Shared};
    use super::super::links::LinkAt;
    use super::super::plan::BatchState;
    use super::super::{NoRestoreProgress, RestoreOptions, RestoreOutcome};
    use crate::safe_fs::Dir;
    use crate::testutil::mem_repo;

    /// A file whose content fails `--verify` is not left on disk, and the hard links waiting
    /// for it are not made but named, each as damaged.
    #[test]
    fn a_file_failing_verify_is_removed_and_its_links_are_named() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (_, repo) = mem_repo(b"pw");
        let opts = RestoreOptions {
            target: tmp.path().to_path_buf(),
            verify: true,
            ..RestoreOptions::default()
        };
        let target = Arc::new(Dir::open(tmp.path()).expect("open"));
        let shared = Shared {
            repo: &repo,
            opts: &opts,
            progress: &NoRestoreProgress,
            out: Mutex::new(RestoreOutcome::default()),
            flow: Mutex::new(Flow::default()),
            changed: Condvar::new(),
            disk_full: Arc::new(AtomicBool::new(false)),
            target: target.clone(),
        };
        // The chunk id (7...7) is not the keyed hash of what is written: verify fails.
        let f = pending(tmp.path(), "f", 5);
        f.write_buffered(b"hello", 0);
        f.links.lock().expect("links").paths.push(LinkAt {
            rel: PathBuf::from("link"),
            path: tmp.path().join("link"),
        });
        let batch = BatchState {
            seq: 1,
            files: vec![f],
            left: AtomicUsize::new(1),
        };
        shared.finish_file(&batch, 0);
        let out = shared.out.into_inner().expect("outcome");
        assert!(
            !tmp.path().join("f").exists(),
            "the unverified file was left"
        );
        assert!(!tmp.path().join("link").exists());
        let named: Vec<_> = out.damaged.iter().map(|e| e.path.clone()).collect();
        assert_eq!(named, vec![tmp.path().join("link"), tmp.path().join("f")]);
        assert_eq!(out.files, 0);
    }
}

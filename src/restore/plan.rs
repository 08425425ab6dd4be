//! Planning by pack: the walk gathers files into batches (bounded in files and bytes, and by
//! the limit on open descriptors); each batch is planned as pack → its needed blobs in offset
//! order → where each blob goes, and cut into jobs of bounded size for the workers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::file::Pending;
use super::problems::Problem;
use super::walk::{Restorer, OPEN_DIRS};
use crate::error::{Error, Result};
use crate::id::{BlobId, PackId};
use crate::pack::PackEntry;
use crate::safe_fs::Dir;
use crate::tree::Node;

/// Batches queued or being written while the walk goes on. With two, workers sat idle while
/// the last job of the older batch ran and the walk could hand out nothing new.
pub(super) const BATCHES_IN_FLIGHT: u64 = 4;

/// Files whose content a batch writes: at most this many at once (each holds a descriptor
/// while it is written, two with direct I/O)...
const BATCH_FILES: usize = 256;
/// ...or this many bytes of content.
pub(super) const BATCH_BYTES: u64 = 256 << 20;
/// Descriptors kept free for everything else (the repository, the workers' pack reads,
/// verification, the walk's [`OPEN_DIRS`] directories).
const SPARE_DESCRIPTORS: u64 = 32 + OPEN_DIRS as u64;
/// Stored bytes of a pack one job reads at most (a single larger blob is one job)...
const JOB_BYTES: u64 = 4 << 20;
/// ...and blobs it opens at most: a job of small files finishes quickly, so the workers
/// share a batch evenly.
const JOB_ENTRIES: usize = 32;

/// Where a file waits for its content: (batch number, index in the batch).
pub(super) type PendingAt = (u64, usize);

/// A batch handed to the workers.
pub(super) struct BatchState {
    pub(super) seq: u64,
    pub(super) files: Vec<Pending>,
    /// Files not finished yet.
    pub(super) left: AtomicUsize,
}

/// One pack's part of a batch: its needed blobs in offset order and where each goes.
pub(super) struct Job {
    pub(super) batch: Arc<BatchState>,
    pub(super) pack: PackId,
    pub(super) entries: Vec<(PackEntry, Dests)>,
}

/// Where one blob goes: (file in the batch, offset in that file).
pub(super) type Dests = Vec<(usize, u64)>;

impl Restorer<'_, '_> {
    /// Queues a file for the batch being gathered; it is created when the workers first write
    /// to it (at its final size: holes stay holes).
    pub(super) fn restore_file(&mut self, dir: Arc<Dir>, path: PathBuf, node: &Node) {
        self.shared.progress.file_started(&path);
        self.batch_bytes += node.size;
        self.batch.push(Pending::new(
            dir,
            path,
            node.clone(),
            self.shared.disk_full.clone(),
        ));
    }

    /// Hands the gathered batch to the workers: one job per pack, its blobs in offset order.
    pub(super) fn submit(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let files = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let seq = self.seq;
        self.seq += 1;
        // Plan: pack → its needed blobs in offset order → where each blob goes.
        let mut by_blob: HashMap<BlobId, Dests> = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            let mut offset = 0u64;
            for part in &f.node.content {
                if let Some(id) = part.chunk() {
                    by_blob.entry(id).or_default().push((i, offset));
                }
                offset += part.len();
            }
        }
        let mut by_pack: HashMap<PackId, Vec<(PackEntry, Dests)>> = HashMap::new();
        for (id, dests) in by_blob {
            match self.shared.repo.index().get(&id) {
                Some(loc) => {
                    for &(i, _) in &dests {
                        files[i].left.fetch_add(1, Ordering::Relaxed);
                    }
                    by_pack
                        .entry(loc.pack)
                        .or_default()
                        .push((loc.entry, dests));
                }
                None => {
                    for (i, off) in dests {
                        files[i].failed(Problem::Damage(format!(
                            "chunk {} at offset {off} is in no index",
                            id.short()
                        )));
                    }
                }
            }
        }
        let mut jobs: Vec<(PackId, Vec<(PackEntry, Dests)>)> = by_pack.into_iter().collect();
        jobs.sort_by_key(|(p, _)| *p);
        for (_, entries) in &mut jobs {
            entries.sort_by_key(|(e, _)| e.offset);
        }
        let batch = Arc::new(BatchState {
            seq,
            left: AtomicUsize::new(files.len()),
            files,
        });
        self.recent.push_back(batch.clone());
        if self.recent.len() > BATCHES_IN_FLIGHT as usize + 1 {
            self.recent.pop_front();
        }
        // Bounded look-ahead: wait until the batches before the last few are finished.
        self.shared
            .wait_through(seq.saturating_sub(BATCHES_IN_FLIGHT))?;
        self.apply_ready_dirs();
        for (i, f) in batch.files.iter().enumerate() {
            if f.left.load(Ordering::Relaxed) == 0 {
                self.shared.finish_file(&batch, i);
            }
        }
        for (pack, entries) in jobs {
            for entries in split_job(entries) {
                let job = Job {
                    batch: batch.clone(),
                    pack,
                    entries,
                };
                if self.jobs.send(job).is_err() {
                    return Err(Error::Interrupted);
                }
            }
        }
        Ok(())
    }
}

/// Cuts a pack's needed entries (in offset order) into jobs of about [`JOB_BYTES`] or
/// [`JOB_ENTRIES`] blobs: a batch of small files often needs one or two packs, and as one job
/// each they kept only one or two workers busy while the others waited.
fn split_job(entries: Vec<(PackEntry, Dests)>) -> Vec<Vec<(PackEntry, Dests)>> {
    let mut jobs = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0u64;
    for (e, d) in entries {
        bytes += u64::from(e.length);
        cur.push((e, d));
        if bytes >= JOB_BYTES || cur.len() >= JOB_ENTRIES {
            jobs.push(std::mem::take(&mut cur));
            bytes = 0;
        }
    }
    if !cur.is_empty() {
        jobs.push(cur);
    }
    jobs
}

/// Files per batch: [`BATCH_FILES`], or fewer where the limit on open descriptors would not
/// hold every file of the batches in flight (three descriptors each: two for the file, one for
/// its directory): a file that cannot be opened would not be restored.
pub(super) fn batch_files() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_cur == libc::RLIM_INFINITY
    {
        return BATCH_FILES;
    }
    let per_batch = lim.rlim_cur.saturating_sub(SPARE_DESCRIPTORS) / (3 * (BATCHES_IN_FLIGHT + 1));
    (per_batch as usize).clamp(1, BATCH_FILES)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pack's entries are cut into jobs of about `JOB_BYTES`, in offset order, none lost;
    /// a blob larger than that is a job of its own.
    #[test]
    fn a_pack_is_cut_into_jobs_of_bounded_size() {
        let entry = |offset: u32, length: u32| PackEntry {
            kind: crate::pack::BlobKind::Data,
            id: BlobId([offset as u8; 32]),
            offset,
            length,
            raw_length: length,
        };
        let mut entries = Vec::new();
        let mut offset = 0u32;
        for i in 0..300u32 {
            let length = if i == 150 { 3 << 20 } else { 10_000 + i * 37 };
            entries.push((entry(offset, length), vec![(i as usize, 0)]));
            offset += length;
        }
        let jobs = split_job(entries.clone());
        assert!(
            jobs.len() >= 300 / JOB_ENTRIES,
            "{} jobs for 300 blobs",
            jobs.len()
        );
        let flat: Vec<_> = jobs.iter().flatten().cloned().collect();
        assert!(flat == entries, "entries lost or reordered");
        for job in &jobs {
            let bytes: u64 = job.iter().map(|(e, _)| u64::from(e.length)).sum();
            let last = u64::from(job[job.len() - 1].0.length);
            assert!(bytes - last < JOB_BYTES, "a job of {bytes} bytes");
            assert!(job.len() <= JOB_ENTRIES, "a job of {} blobs", job.len());
        }
    }
}

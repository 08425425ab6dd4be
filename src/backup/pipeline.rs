//! The sealing and packing pipeline: `threads` seal workers compress and seal the blobs the
//! walker queues; one packer thread adds them to the blob saver's open packs and hands each
//! finished pack to uploader threads that write it durably; written packs are named in an
//! index file at least every [`INDEX_EVERY`], and at a checkpoint's request ([`Pipeline::flush`]).
//!
//! Every queue is bounded (its memory cost is stated next to it), and a pack's buffer comes back
//! from its uploader for a later pack.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::crypto::MasterKeys;
use crate::error::{Error, Result};
use crate::format::Compression;
use crate::id::BlobId;
use crate::index::{IndexFile, IndexPack};
use crate::pack::{seal_blob, BlobKind, FinishedPack};
use crate::repo::Repository;
use crate::saver::Packs;

/// Chunks and trees waiting for compression: ≤ 2 × threads × 2 MiB (max chunk; trees may be
/// larger). Measured on 57,000 small files: deeper queues are no faster, only larger.
pub(super) const JOBS_PER_THREAD: usize = 2;
/// Sealed blobs waiting for the packer: ≤ 2 × threads × 2 MiB.
pub(super) const SEALED_PER_THREAD: usize = 2;

/// A blob the walker queued, on its way to a seal worker.
pub(super) struct Job {
    pub(super) kind: BlobKind,
    pub(super) id: BlobId,
    pub(super) data: Vec<u8>,
}

/// A sealed blob on its way to the packer.
pub(super) struct Sealed {
    kind: BlobKind,
    id: BlobId,
    raw_len: u32,
    sealed: Vec<u8>,
}

/// Shared counters between the walker and the packer.
#[derive(Default)]
pub(super) struct Pipeline {
    /// Blobs the packer has put into a pack writer.
    pub(super) packed: AtomicU64,
    /// The packer has ended (finished or failed).
    pub(super) stopped: AtomicBool,
}

impl Pipeline {
    /// A checkpoint's flush: waits until each of the `sent` blobs is in a pack writer, then has
    /// the packer write its open packs; returns the packs written since the last flush (durable,
    /// named by no index file yet).
    pub(super) fn flush(
        &self,
        sent: u64,
        flush: Option<&Sender<FlushRequest>>,
    ) -> Result<Vec<IndexPack>> {
        // Barrier: every blob sent is in a pack writer, then the packer writes them all.
        while self.packed.load(Ordering::SeqCst) < sent {
            if self.stopped.load(Ordering::SeqCst) {
                return Err(Error::InvalidInput("the storage pipeline stopped".into()));
            }
            thread::sleep(std::time::Duration::from_millis(1));
        }
        let flush = flush.ok_or_else(|| Error::InvalidInput("pipeline closed".into()))?;
        let (reply_tx, reply_rx) = bounded(1);
        flush
            .send(reply_tx)
            .map_err(|_| Error::InvalidInput("the storage pipeline stopped".into()))?;
        wait_for_reply(&reply_rx, &self.stopped)
    }
}

/// A checkpoint's request to the packer: close the open packs, write them, and send back the
/// packs written since the last request.
pub(super) type FlushRequest = Sender<Result<Vec<IndexPack>>>;

pub(super) fn seal_worker(
    keys: &MasterKeys,
    c: Compression,
    rx: Receiver<Job>,
    tx: Sender<Sealed>,
) -> Result<()> {
    for job in rx {
        let sealed = seal_blob(keys, job.kind, &job.id, &job.data, c)?;
        let msg = Sealed {
            kind: job.kind,
            id: job.id,
            raw_len: job.data.len() as u32,
            sealed,
        };
        if tx.send(msg).is_err() {
            break; // the packer failed; it reports why
        }
    }
    Ok(())
}

/// A checkpoint's answer from the packer. The packer can fail and end with the request still
/// in its queue: the reply channel is then never dropped (a queue keeps its messages while
/// anyone can still send to it), so waiting on it alone would wait for ever. A backup whose
/// server died mid-run hung here.
fn wait_for_reply(
    reply: &Receiver<Result<Vec<IndexPack>>>,
    stopped: &AtomicBool,
) -> Result<Vec<IndexPack>> {
    use crossbeam_channel::RecvTimeoutError;
    let gone = || Error::InvalidInput("the storage pipeline stopped".into());
    loop {
        match reply.recv_timeout(std::time::Duration::from_millis(50)) {
            Ok(r) => return r,
            Err(RecvTimeoutError::Timeout) if !stopped.load(Ordering::SeqCst) => {}
            // Stopped (or gone): an answer sent just before the end is still taken.
            Err(_) => return reply.try_recv().map_err(|_| gone())?,
        }
    }
}

/// The longest time a written pack waits for an index file naming it.
pub(super) const INDEX_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Packs whose write has finished, and the first write error.
#[derive(Default)]
struct Uploaded {
    packs: Vec<IndexPack>,
    error: Option<Error>,
    pending: usize,
}

/// Fills packs and hands each to an uploader thread that writes it durably; returns the packs
/// not yet handed to a checkpoint and the bytes stored. With `early_index`, written packs are
/// named in an index file at least that often.
pub(super) fn packer(
    repo: &Repository,
    packs: &mut Packs,
    dry_run: bool,
    rx: Receiver<Sealed>,
    flush_rx: Receiver<FlushRequest>,
    pipeline: &Pipeline,
    early_index: Option<std::time::Duration>,
) -> Result<(Vec<IndexPack>, u64)> {
    let uploaded = std::sync::Mutex::new(Uploaded::default());
    let done = std::sync::Condvar::new();
    let lock = || uploaded.lock().unwrap_or_else(|p| p.into_inner());
    // Packs being written at once (the backend's transfers in flight: 2 for a local disk, so
    // writing and fsyncing one pack overlaps with filling the next; `--connections` remotely).
    let uploads = repo.backend().connections().max(1);
    // ≤ `uploads` finished packs (each ≤ pack size + one blob) wait or are being written.
    let (up_tx, up_rx) = bounded::<FinishedPack>(0);
    // A written pack's buffer comes back for the next pack, so after the first few packs no
    // buffer is allocated (and faulted in) again: memory stays bounded by 2 writers + `uploads`
    // + 1 pack buffers, and the CPU spends nothing on page faults.
    let (recycle_tx, recycle_rx) = bounded::<Vec<u8>>(uploads + 1);
    packs.recycle_from(recycle_rx);
    // Full parity groups are computed from the packs as they are written, not read back.
    let parity = (!dry_run)
        .then(|| crate::parity::Streaming::new(repo))
        .flatten();
    thread::scope(|scope| {
        for _ in 0..uploads {
            let up_rx = up_rx.clone();
            let (uploaded, done, parity) = (&uploaded, &done, &parity);
            let recycle_tx = recycle_tx.clone();
            scope.spawn(move || {
                for mut p in up_rx {
                    let size = p.bytes.len() as u64;
                    // The buffer comes back unless the backend kept it (no copy of the pack).
                    let r = if dry_run {
                        Ok(Some(std::mem::take(&mut p.bytes)))
                    } else {
                        repo.put_pack_owned(&mut p)
                    };
                    // A pack whose buffer the backend kept is read back after the backup.
                    if let (Some(parity), Ok(Some(bytes))) = (parity, &r) {
                        parity.add(p.id, bytes);
                    }
                    let mut u = uploaded.lock().unwrap_or_else(|p| p.into_inner());
                    u.pending -= 1;
                    let back = match r {
                        Ok(back) => {
                            u.packs.push(IndexPack {
                                id: p.id,
                                size,
                                blobs: p.entries,
                            });
                            back
                        }
                        Err(e) => {
                            u.error.get_or_insert(e);
                            None
                        }
                    };
                    done.notify_all();
                    drop(u);
                    if let Some(buf) = back {
                        let _ = recycle_tx.try_send(buf);
                    }
                }
            });
        }
        drop(up_rx);
        let mut stored = 0u64;
        let send = |p: FinishedPack, stored: &mut u64| -> Result<()> {
            *stored += p.bytes.len() as u64;
            {
                let mut u = lock();
                if let Some(e) = u.error.take() {
                    return Err(e);
                }
                u.pending += 1;
            }
            up_tx
                .send(p)
                .map_err(|_| Error::InvalidInput("the pack writers stopped".into()))
        };
        // Waits for every pack handed over so far; returns them (or the first write error).
        let drain = || -> Result<Vec<IndexPack>> {
            let mut u = lock();
            while u.pending > 0 && u.error.is_none() {
                u = done.wait(u).unwrap_or_else(|p| p.into_inner());
            }
            match u.error.take() {
                Some(e) => Err(e),
                None => Ok(std::mem::take(&mut u.packs)),
            }
        };
        // Names the packs written so far in an index file when one is due (the packs stay out
        // of what `drain` returns, so no index file names a pack twice).
        let mut last_index = std::time::Instant::now();
        let mut index_due = || -> Result<()> {
            let Some(every) = early_index else {
                return Ok(());
            };
            if last_index.elapsed() < every {
                return Ok(());
            }
            last_index = std::time::Instant::now();
            let packs = std::mem::take(&mut lock().packs);
            if !packs.is_empty() {
                // Invariant: these packs are durable (their put returned).
                repo.write_index(&IndexFile {
                    supersedes: Vec::new(),
                    packs,
                })?;
            }
            Ok(())
        };
        let mut flush_rx = flush_rx;
        let result = (|| -> Result<()> {
            loop {
                crossbeam_channel::select! {
                    recv(rx) -> msg => {
                        let Ok(s) = msg else { return Ok(()) };
                        let full = packs.add(s.kind, s.id, &s.sealed, s.raw_len)?;
                        pipeline.packed.fetch_add(1, Ordering::SeqCst);
                        if let Some(p) = full {
                            send(p, &mut stored)?;
                            index_due()?;
                        }
                    }
                    recv(flush_rx) -> req => {
                        let Ok(reply) = req else {
                            flush_rx = crossbeam_channel::never();
                            continue;
                        };
                        let r = packs.finish_open().and_then(|open| {
                            open.into_iter().try_for_each(|p| send(p, &mut stored))
                        });
                        match r.and_then(|()| drain()) {
                            Ok(packs) => {
                                let _ = reply.send(Ok(packs));
                            }
                            Err(e) => {
                                let _ = reply.send(Err(Error::InvalidInput(e.to_string())));
                                return Err(e);
                            }
                        }
                    }
                }
            }
        })();
        let result = result.and_then(|()| {
            for p in packs.finish_open()? {
                send(p, &mut stored)?;
            }
            Ok(())
        });
        drop(up_tx); // uploaders finish what they hold and stop
        let packs = drain();
        result?;
        let packs = packs?;
        // Every pack is written: a short last group joins the full group before it.
        if let Some(parity) = &parity {
            parity.finish();
        }
        Ok((packs, stored))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packer failed and ended with a checkpoint's request still queued: the request's
    /// reply channel lives on in the queue, so the checkpoint must notice the packer stopped
    /// instead of waiting for an answer that never comes. It hung before (a backup whose S3
    /// server was killed mid-run, now and then).
    #[test]
    fn a_checkpoint_does_not_wait_for_a_packer_that_stopped() {
        let (flush_tx, flush_rx) = bounded::<FlushRequest>(1);
        let (reply_tx, reply_rx) = bounded(1);
        flush_tx.send(reply_tx).expect("queued");
        drop(flush_rx); // the packer ended without reading it; the walker still holds flush_tx
        let stopped = AtomicBool::new(true);
        let (done_tx, done_rx) = bounded(1);
        std::thread::spawn(move || {
            let _ = done_tx.send(wait_for_reply(&reply_rx, &stopped).is_err());
        });
        let failed = done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the checkpoint still waits for a packer that has stopped");
        assert!(failed, "no answer came, so the checkpoint fails");
        drop(flush_tx);

        // An answer sent just before the packer stopped is still taken.
        let (reply_tx, reply_rx) = bounded(1);
        reply_tx.send(Ok(Vec::new())).expect("answer");
        let stopped = AtomicBool::new(true);
        assert!(wait_for_reply(&reply_rx, &stopped).is_ok());
    }
}

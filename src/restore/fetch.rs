//! Fetching: each worker takes jobs off the queue, reads the job's blobs from its pack (blobs
//! close together in one read, each read bounded), opens and checks each blob, and hands its
//! plaintext to the writer (src/restore/write.rs). A read that fails is tried once more, then
//! blob by blob, so that an unreadable sector costs only the blobs on it. A blob that fails is
//! the damage of every file it belongs to; a read that failed for want of local resources is
//! not.

use std::sync::atomic::Ordering;

use super::flow::Shared;
use super::plan::{Dests, Job};
use super::problems::{is_local_shortage, Problem};
use super::write::Assembler;
use crate::backend::{retry_read, FileKind};
use crate::format::DecodeBufs;
use crate::pack::{self, PackEntry};

/// Blobs closer than this in a pack are fetched with one read (the gap is read and dropped).
const COALESCE_GAP: u64 = 256 << 10;
/// The most one read fetches: bounds each worker's memory.
const MAX_READ: u64 = 16 << 20;

/// A worker: reads, opens and writes jobs until the queue closes.
pub(super) fn worker(shared: &Shared, queue: crossbeam_channel::Receiver<Job>) {
    let mut read_buf = Vec::new();
    let mut bufs = DecodeBufs::default();
    let mut asm = Assembler::default();
    for job in queue {
        if shared.cancelled() {
            continue;
        }
        run_job(shared, &job, &mut read_buf, &mut bufs, &mut asm);
    }
}

/// Reads, opens and writes one job. The buffers are the worker's, reused from job to job.
fn run_job(
    shared: &Shared,
    job: &Job,
    read_buf: &mut Vec<u8>,
    bufs: &mut DecodeBufs,
    asm: &mut Assembler,
) {
    let (repo, files) = (shared.repo, &job.batch.files);
    let name = job.pack.to_hex();
    let mut touched = Vec::new();
    if shared.disk_full() {
        // Nothing more is written: each file of this job ends as not restored.
        for (_, dests) in &job.entries {
            for &(fi, _) in dests {
                touched.push(fi);
                files[fi].failed(Problem::DiskFull("not written".into()));
            }
        }
    }
    let entries = if shared.disk_full() {
        &[][..]
    } else {
        &job.entries[..]
    };
    let mut work = coalesce(entries);
    work.reverse();
    while let Some((run, dests)) = work.pop() {
        let start = run[0].offset as u64;
        let end = run
            .last()
            .map_or(start, |e| e.offset as u64 + e.length as u64);
        let len = (end - start) as usize;
        // One more try: a read can fail once (a USB hiccup) and work the second time.
        let bytes = retry_read(|| {
            repo.backend()
                .get_range_into(FileKind::Pack, &name, start, len, read_buf)
                .map(|b| b.len())
        });
        // A read that failed for want of descriptors or memory here says nothing about the
        // repository's data: the file is not restored, but it is not called damaged.
        let local = bytes.as_ref().err().is_some_and(is_local_shortage);
        if bytes.is_err() && !local && run.len() > 1 {
            // An unreadable sector costs the blobs on it, not their neighbours in the same
            // read: each blob of the run is read on its own.
            for (e, d) in run.into_iter().zip(dests).rev() {
                work.push((vec![e], vec![d]));
            }
            continue;
        }
        for (e, d) in run.iter().zip(dests) {
            let plain = match &bytes {
                Ok(_) => {
                    let o = (e.offset as u64 - start) as usize;
                    let sealed = &read_buf[o..o + e.length as usize];
                    pack::open_blob_into(repo.keys(), e, sealed, bufs).map_err(|why| {
                        format!(
                            "{} blob {} in pack {} is damaged: {why}",
                            e.kind.name(),
                            e.id.short(),
                            job.pack.short()
                        )
                    })
                }
                Err(err) => Err(format!("pack {} cannot be read: {err}", job.pack.short())),
            };
            for &(fi, off) in d {
                touched.push(fi);
                match &plain {
                    Ok(data) => {
                        asm.put(files, fi, off, data);
                        shared.progress.bytes_done(data.len() as u64);
                    }
                    Err(why) => {
                        let why = format!("chunk {} at offset {off}: {why}", e.id.short());
                        files[fi].failed(if local {
                            Problem::Target(why)
                        } else {
                            Problem::Damage(why)
                        })
                    }
                }
            }
        }
    }
    asm.flush_all(files);
    for fi in touched {
        if files[fi].left.fetch_sub(1, Ordering::AcqRel) == 1 {
            shared.finish_file(&job.batch, fi);
        }
    }
}

/// Groups a pack's needed entries (in offset order) into runs read with one request.
fn coalesce(entries: &[(PackEntry, Vec<(usize, u64)>)]) -> Vec<(Vec<PackEntry>, Vec<&Dests>)> {
    let mut out: Vec<(Vec<PackEntry>, Vec<&Dests>)> = Vec::new();
    for (e, d) in entries {
        let joins = out.last().is_some_and(|(run, _)| {
            let first = run[0].offset as u64;
            let last = run[run.len() - 1];
            let end = last.offset as u64 + last.length as u64;
            (e.offset as u64) >= end
                && (e.offset as u64) - end <= COALESCE_GAP
                && (e.offset as u64 + e.length as u64) - first <= MAX_READ
        });
        if joins {
            if let Some((run, dests)) = out.last_mut() {
                run.push(*e);
                dests.push(d);
            }
        } else {
            out.push((vec![*e], vec![d]));
        }
    }
    out
}

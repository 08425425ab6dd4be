//! Writing: content lands at its offset in its file. Large files are written with direct I/O in
//! whole aligned blocks, gathered into contiguous stretches by the [`Assembler`]; small files
//! and the partial blocks at a stretch's edges go through the page cache, held back
//! ([`Later`]) so they do not make the direct writes wait. A full disk stops the restore.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use super::file::Pending;
use crate::aligned::{align_down, align_up, AlignedBuf, ALIGN};

/// Files at least this large are written with direct I/O where whole aligned blocks allow it:
/// on most machines the kernel's copy into its page cache costs more than the rest of a
/// restore, and a restore of a large tree does not evict everything else from the cache.
pub(super) const DIRECT_FILE_MIN: u64 = 256 << 10;
/// A contiguous stretch of a file gathered by one worker before it is written.
const RUN_BYTES: usize = 4 << 20;
/// Stretches shorter than this go through the page cache (a direct write waits for the disk).
const DIRECT_WRITE_MIN: u64 = 64 << 10;
/// Bytes of a directly written file's small pieces held back from the page cache at most.
/// A stretch is at least one chunk (128 KiB or more, but for a file's last) and leaves at most
/// two partial blocks, so this is one flush per eight stretches or more; the files in flight
/// bound the total.
const LATER_MAX: usize = 64 << 10;
/// Stretches one worker gathers at once (a blob can go to several places).
const RUNS: usize = 2;

/// Pieces of a directly written file held back from the page cache: a buffered write takes
/// the file's lock exclusively and so waits for every direct write in flight, and makes the
/// next ones wait for it. Written when the file is finished, or when [`LATER_MAX`] bytes wait.
#[derive(Default)]
pub(super) struct Later {
    bytes: usize,
    pieces: Vec<(u64, Vec<u8>)>,
}

impl Pending {
    /// Writes through the page cache.
    pub(super) fn write_buffered(&self, data: &[u8], off: u64) {
        match self.with_out(|out| out.file.write_all_at(data, off)) {
            Some(Ok(())) => {
                self.written.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            Some(Err(e)) => self.target_failed(format!("write at offset {off} failed"), &e),
            None => {}
        }
    }

    /// Holds back a small piece of a directly written file (see [`Later`]).
    fn write_later(&self, data: &[u8], off: u64) {
        let due = {
            let mut later = self.later.lock().unwrap_or_else(|p| p.into_inner());
            later.bytes += data.len();
            later.pieces.push((off, data.to_vec()));
            later.bytes >= LATER_MAX
        };
        if due {
            self.write_held_back();
        }
    }

    /// Writes the pieces held back by [`Pending::write_later`].
    pub(super) fn write_held_back(&self) {
        let due = std::mem::take(&mut *self.later.lock().unwrap_or_else(|p| p.into_inner()));
        for (off, data) in due.pieces {
            self.write_buffered(&data, off);
        }
    }

    /// Writes whole aligned blocks with direct I/O (through the page cache where the file
    /// system refuses it).
    fn write_direct(&self, data: &[u8], off: u64) {
        let written = self.with_out(|out| -> io::Result<()> {
            let Some(direct) = &out.direct else {
                return out.file.write_all_at(data, off);
            };
            let mut done = 0;
            while done < data.len() {
                let at = off + done as u64;
                match direct.write_at(&data[done..], at) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) if n % ALIGN == 0 => done += n,
                    // A short write that broke the alignment: the rest through the page cache.
                    Ok(n) => return out.file.write_all_at(&data[done + n..], at + n as u64),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        return out.file.write_all_at(&data[done..], at)
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        });
        match written {
            Some(Ok(())) => {
                self.written.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            Some(Err(e)) => self.target_failed(format!("write at offset {off} failed"), &e),
            None => {}
        }
    }
}

/// Gathers what a worker writes into contiguous stretches of a file, so that large files
/// are written in whole aligned blocks with direct I/O; the partial blocks at the edges of a
/// stretch go through the page cache (two stretches never share a whole block).
#[derive(Default)]
pub(super) struct Assembler {
    runs: Vec<Run>,
    spare: Vec<AlignedBuf>,
}

/// A contiguous stretch of one file: `len` bytes at file offset `start`, kept at `buf[lead..]`
/// where `lead` puts every block boundary of the file on a block boundary of the buffer.
struct Run {
    file: usize,
    start: u64,
    lead: usize,
    len: usize,
    buf: AlignedBuf,
}

impl Run {
    fn end(&self) -> u64 {
        self.start + self.len as u64
    }

    /// Writes the whole blocks (direct) and, if `last`, hands the partial edge blocks to
    /// [`Pending::write_later`]; otherwise keeps the partial last block at the start of the
    /// buffer for more data.
    fn write(&mut self, f: &Pending, last: bool) {
        let (s, e) = (self.start, self.end());
        let (a, b) = (align_up(s), align_down(e));
        let at = |x: u64| (x - s) as usize + self.lead;
        let buf = self.buf.as_slice();
        if last && (b <= a || b - a < DIRECT_WRITE_MIN) {
            f.write_later(&buf[at(s)..at(e)], s);
            self.len = 0;
            return;
        }
        if a > s {
            f.write_later(&buf[at(s)..at(a)], s);
        }
        f.write_direct(&buf[at(a)..at(b)], a);
        if last {
            if e > b {
                f.write_later(&buf[at(b)..at(e)], b);
            }
            self.len = 0;
        } else {
            let tail = at(b)..at(e);
            self.buf.as_mut_slice().copy_within(tail, 0);
            self.start = b;
            self.lead = 0;
            self.len = (e - b) as usize;
        }
    }
}

impl Assembler {
    /// Writes `data` at `off` in file `fi` of `files`, now or with the stretch it continues.
    pub(super) fn put(&mut self, files: &[Pending], fi: usize, off: u64, data: &[u8]) {
        let f = &files[fi];
        match f.with_out(|out| out.direct.is_some()) {
            None => {}
            Some(false) => f.write_buffered(data, off),
            Some(true) => {
                let i = match self
                    .runs
                    .iter()
                    .position(|r| r.file == fi && r.end() == off)
                {
                    Some(i) => i,
                    None => {
                        if self.runs.len() >= RUNS {
                            let run = self.runs.remove(0);
                            self.finish(files, run);
                        }
                        let buf = self
                            .spare
                            .pop()
                            .unwrap_or_else(|| AlignedBuf::new(RUN_BYTES + ALIGN));
                        self.runs.push(Run {
                            file: fi,
                            start: off,
                            lead: (off % ALIGN as u64) as usize,
                            len: 0,
                            buf,
                        });
                        self.runs.len() - 1
                    }
                };
                let run = &mut self.runs[i];
                let mut data = data;
                loop {
                    let room = run.buf.len() - run.lead - run.len;
                    let n = room.min(data.len());
                    let at = run.lead + run.len;
                    run.buf.as_mut_slice()[at..at + n].copy_from_slice(&data[..n]);
                    run.len += n;
                    data = &data[n..];
                    if data.is_empty() {
                        break;
                    }
                    run.write(f, false);
                }
            }
        }
    }

    fn finish(&mut self, files: &[Pending], mut run: Run) {
        run.write(&files[run.file], true);
        self.spare.push(run.buf);
    }

    /// Writes every stretch still gathered (at the end of a job: its files may be finished
    /// next).
    pub(super) fn flush_all(&mut self, files: &[Pending]) {
        for run in std::mem::take(&mut self.runs) {
            self.finish(files, run);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::file::pending;
    use super::*;
    use crate::testutil::Rng;

    /// Pieces of two files arrive in uneven sizes, mostly in order but with whole segments
    /// out of order, interleaved, and with stretches cut off by job ends: every byte must land
    /// where it belongs, through direct and buffered writes alike.
    #[test]
    fn stretches_in_any_order_and_size_restore_every_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let sizes = [10 * (1 << 20) + 123, 700_001, DIRECT_FILE_MIN - 1];
        let contents: Vec<Vec<u8>> = sizes
            .iter()
            .map(|&n| (0..n).map(|_| rng.next() as u8).collect())
            .collect();
        let files: Vec<Pending> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| pending(dir.path(), &format!("f{i}"), n))
            .collect();
        // Each file in segments; each segment in pieces of 1 byte to 3 MiB, in order.
        let mut segments: Vec<Vec<(usize, u64, usize)>> = Vec::new();
        for (fi, &size) in sizes.iter().enumerate() {
            let mut off = 0u64;
            while off < size {
                let seg_end = (off + 1 + rng.below(12 << 20)).min(size);
                let mut seg = Vec::new();
                while off < seg_end {
                    let max = if rng.below(4) == 0 { 5000 } else { 3 << 20 };
                    let len = (1 + rng.below(max)).min(seg_end - off);
                    seg.push((fi, off, len as usize));
                    off += len;
                }
                segments.push(seg);
            }
        }
        // Shuffle the segments, then interleave them in pairs.
        for i in (1..segments.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            segments.swap(i, j);
        }
        let mut asm = Assembler::default();
        for pair in segments.chunks(2) {
            let (a, b) = (&pair[0], pair.get(1).map_or(&[][..], |v| &v[..]));
            for k in 0..a.len().max(b.len()) {
                for seg in [a.as_slice(), b] {
                    if let Some(&(fi, off, len)) = seg.get(k) {
                        let data = &contents[fi][off as usize..off as usize + len];
                        asm.put(&files, fi, off, data);
                    }
                }
            }
            if rng.below(3) == 0 {
                asm.flush_all(&files);
            }
        }
        asm.flush_all(&files);
        for (fi, f) in files.iter().enumerate() {
            let direct = f.with_out(|out| out.direct.is_some());
            assert!(direct.is_some(), "file {fi} was created");
            f.write_held_back();
            f.close();
            assert!(
                f.problems().is_empty(),
                "file {fi}: {:?}",
                f.problems().describe()
            );
            let got = fs::read(&f.path).expect("read back");
            assert_eq!(got.len(), contents[fi].len(), "file {fi}: length");
            assert!(got == contents[fi], "file {fi}: content differs");
        }
    }
}

//! Parity computed while a backup writes its packs (repo-format.md §14.4), so no pack is read
//! back from the disk: on a USB disk reading back every new pack would cost as much again as
//! writing it.
//!
//! `reed-solomon-simd` encodes a group at its "high rate" (G above P, every shape of §14.3) as
//! `FFT(⊕_c IFFT_c(chunk c))`, the data columns taken in chunks of C = P rounded up to a power
//! of two, each chunk transformed with its own skew. Every step is linear, so a chunk's
//! transform is the XOR of the transforms of its columns taken one at a time (the others zero):
//! a column can be added as soon as it is written, knowing only its position, and the group
//! holds C shards of work space instead of G packs. The result is byte for byte what
//! [`super::code::Encoder`] computes from the same columns in the same order (a test compares
//! them for every shape), which is why a streamed group lists its members in the order they
//! were written (header version 2).

use std::sync::Mutex;

use reed_solomon_simd::engine::{utils::xor, DefaultEngine, Engine, ShardsRefMut};
use serde_bytes::ByteBuf;

use super::format::{self, Member, SECTOR};
use super::{group, Shape};
use crate::backend::FileKind;
use crate::id::PackId;
use crate::repo::Repository;

/// 64-byte blocks transformed at once: 256 KiB of each shard, so the work space stays in cache.
const SLICE_BLOCKS: usize = 4096;
/// Streaming is used when its work space, C shards of one pack, stays within this; otherwise
/// (very large packs at a high percentage) the packs are read back after the backup.
const MAX_WORK_BYTES: u64 = 128 << 20;

/// The recovery shards of one group, computed one data column at a time in column order.
pub(crate) struct Accumulator {
    p: usize,
    /// C: P rounded up to a power of two.
    chunk: usize,
    engine: DefaultEngine,
    /// C shards of 64-byte blocks, as long as the longest column so far.
    work: Vec<Vec<[u8; 64]>>,
    /// Columns added so far: the next column's position.
    columns: usize,
    scratch: Vec<[u8; 64]>,
}

impl Accumulator {
    /// A group with `p` recovery shards.
    pub fn new(p: usize) -> Accumulator {
        let chunk = p.max(1).next_power_of_two();
        Accumulator {
            p: p.max(1),
            chunk,
            engine: DefaultEngine::new(),
            work: vec![Vec::new(); chunk],
            columns: 0,
            scratch: Vec::new(),
        }
    }

    /// Whether a group of `g` data columns and `p` recovery shards is one `reed-solomon-simd`
    /// surely encodes at the high rate (the only one computed here): G rounded up to a power
    /// of two above P rounded up. Every full group of §14.3 is.
    pub fn supports(g: usize, p: usize) -> bool {
        p >= 1 && g.next_power_of_two() > p.next_power_of_two()
    }

    /// Adds the next data column (zero-padded to the group's shard length at the end).
    pub fn add(&mut self, column: &[u8]) {
        let c = self.chunk;
        let slot = self.columns % c;
        // The skew of the column's chunk: its position plus C (the crate's `ifft_skew_end`).
        let skew = self.columns - slot + c;
        self.columns += 1;
        let blocks = column.len().div_ceil(64);
        for w in &mut self.work {
            if w.len() < blocks {
                w.resize(blocks, [0; 64]);
            }
        }
        if self.scratch.len() < c * SLICE_BLOCKS {
            self.scratch.resize(c * SLICE_BLOCKS, [0; 64]);
        }
        let mut start = 0;
        while start < blocks {
            let n = SLICE_BLOCKS.min(blocks - start);
            let scratch = &mut self.scratch[..c * n];
            scratch.fill([0; 64]);
            let (from, to) = (start * 64, ((start + n) * 64).min(column.len()));
            scratch[slot * n..(slot + 1) * n].as_flattened_mut()[..to - from]
                .copy_from_slice(&column[from..to]);
            self.engine
                .ifft(&mut ShardsRefMut::new(c, n, scratch), 0, c, c, skew);
            for (k, w) in self.work.iter_mut().enumerate() {
                xor(&mut w[start..start + n], &scratch[k * n..(k + 1) * n]);
            }
            start += n;
        }
    }

    /// A group's accumulator for the columns from position `first` on (the columns before it
    /// taken as zero): its shards XORed into those of the first `first` columns are the
    /// shards of them all, since every step is linear.
    pub fn starting_at(p: usize, first: usize) -> Accumulator {
        let mut acc = Accumulator::new(p);
        acc.columns = first;
        acc
    }

    /// The P recovery shards, each `l` bytes (a multiple of 64, at least the longest column),
    /// transformed in place in the work space (no second copy of the shards is made).
    pub fn finish(mut self, l: u64) -> Vec<Vec<u8>> {
        let (c, p) = (self.chunk, self.p);
        let blocks = (l / 64) as usize;
        for w in &mut self.work {
            w.resize(blocks, [0; 64]);
        }
        self.scratch
            .resize(c * SLICE_BLOCKS.min(blocks.max(1)), [0; 64]);
        let mut start = 0;
        while start < blocks {
            let n = SLICE_BLOCKS.min(blocks - start);
            let scratch = &mut self.scratch[..c * n];
            for (k, w) in self.work.iter().enumerate() {
                scratch[k * n..(k + 1) * n].copy_from_slice(&w[start..start + n]);
            }
            self.engine
                .fft(&mut ShardsRefMut::new(c, n, scratch), 0, c, p, 0);
            for (j, w) in self.work.iter_mut().take(p).enumerate() {
                w[start..start + n].copy_from_slice(&scratch[j * n..(j + 1) * n]);
            }
            start += n;
        }
        self.work.truncate(p);
        self.work.into_iter().map(Vec::into_flattened).collect()
    }
}

/// A group being filled.
struct Building {
    acc: Accumulator,
    members: Vec<Member>,
    longest: u64,
}

impl Building {
    fn new(acc: Accumulator) -> Building {
        Building {
            acc,
            members: Vec::new(),
            longest: 0,
        }
    }

    fn add(&mut self, bytes: &[u8], member: Member) {
        self.acc.add(bytes);
        self.longest = self.longest.max(bytes.len() as u64);
        self.members.push(member);
    }
}

/// The last full group written, and the packs written after it, transformed at the positions
/// after its G: if the run ends before the next group is full, one group of them all replaces
/// its files, its shards the written ones XORed with these.
struct Written {
    members: Vec<Member>,
    after: Building,
    /// Its parity files, once written (None: not yet, or their write failed).
    files: Option<Vec<String>>,
}

#[derive(Default)]
struct State {
    open: Option<Building>,
    last: Option<Written>,
}

/// Full groups of G packs protected as the packs are written: each pack is added right after
/// its write is durable, and a group's parity files are written as soon as its G-th member is.
///
/// The packs written after a full group also go into a second work space, at the positions
/// after that group's members, so that when the run ends with fewer than G packs in the next
/// group (k of them), [`Streaming::finish`] makes one group of G + k packs of them, as
/// [`Shape::split`] would have grouped them, instead of a short group whose parity costs more
/// than P / G: it reads back the full group's P parity files (not its packs) and XORs them in.
/// Packs left short with no full group before them are protected by [`super::after_write`],
/// which reads them back (and merges them with a smaller group).
pub struct Streaming<'r> {
    repo: &'r Repository,
    shape: Shape,
    state: Mutex<State>,
}

impl<'r> Streaming<'r> {
    /// None when the repository has no parity, or its shape or pack size is not streamed.
    pub fn new(repo: &'r Repository) -> Option<Streaming<'r>> {
        let shape = repo.parity_shape().ok().flatten()?;
        let work = shape.parity.next_power_of_two() as u64 * u64::from(repo.config().pack_size);
        (Accumulator::supports(shape.data, shape.parity) && work <= MAX_WORK_BYTES).then(|| {
            Streaming {
                repo,
                shape,
                state: Mutex::new(State::default()),
            }
        })
    }

    /// Adds a pack whose write is durable. Writing a full group's parity files can fail: a
    /// warning on the repository says so, and the packs stay unprotected until
    /// [`super::after_write`] or `repair parity` protects them.
    pub fn add(&self, id: PackId, bytes: &[u8]) {
        let member = Member {
            id,
            len: bytes.len() as u64,
            hashes: ByteBuf::from(
                bytes
                    .chunks(SECTOR)
                    .flat_map(format::sector_hash)
                    .collect::<Vec<u8>>(),
            ),
        };
        let (g, p) = (self.shape.data, self.shape.parity);
        let full = {
            // Columns are added under the lock, in the order the packs were written.
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let open = s
                .open
                .get_or_insert_with(|| Building::new(Accumulator::new(p)));
            if open.members.len() + 1 < g {
                open.add(bytes, member.clone());
                // The last written group takes it too, while it stays within a group's bounds.
                if let Some(last) = &mut s.last {
                    if last.members.len() + last.after.members.len()
                        < (2 * g - 1).min(format::MAX_DATA)
                    {
                        last.after.add(bytes, member);
                    } else {
                        s.last = None;
                    }
                }
                return;
            }
            open.add(bytes, member);
            let Some(full) = s.open.take() else {
                return;
            };
            // The group before it is complete for good.
            s.last = Some(Written {
                members: full.members.clone(),
                after: Building::new(Accumulator::starting_at(p, g)),
                files: None,
            });
            full
        };
        // Transformed in place and written without the lock: the other writer goes on adding.
        let first = full.members[0].id;
        let l = format::shard_len_for(full.longest);
        let n = full.members.len();
        let shards = full.acc.finish(l);
        match group::store_group(self.repo, full.members, shards, l) {
            Ok(files) => {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(last) = s.last.as_mut().filter(|w| w.members[0].id == first) {
                    last.files = Some(files);
                }
            }
            Err(e) => self.repo.warn(format!(
                "parity for {n} new packs was not written ({e}); the end of the run or \
                 `cairn repair parity` protects them"
            )),
        }
    }

    /// At the end of a run whose packs are all written: when fewer than G packs came after
    /// the last full group, writes that group with them as one (its written files are deleted
    /// once the new ones are stored). Otherwise the short group is left to
    /// [`super::after_write`]. Never fails: what is not done is a warning, and the packs stay
    /// protected by the files already written or are protected at the end of the command.
    pub fn finish(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (Some(open), Some(last)) = (s.open.take(), s.last.take()) else {
            return;
        };
        drop(s);
        let k = open.members.len();
        drop(open);
        let Written {
            mut members,
            after,
            files,
        } = last;
        // Every pack of the open group went into both (a group that reached its bounds was
        // dropped): anything else would be a group of other members.
        if after.members.len() != k {
            return;
        }
        // Its files were not written: the packs after it cannot be added to parity that does
        // not exist, and the end of the command protects them all, reading them back.
        let Some(files) = files else {
            return;
        };
        let written = match self.written_shards(&files, &members) {
            Ok(w) => w,
            Err(why) => {
                self.repo.warn(format!(
                    "the last {k} packs are protected on their own: the parity files of the \
                     group before them cannot be used ({why})"
                ));
                return;
            }
        };
        let l = written
            .iter()
            .map(|w| w.len() as u64)
            .chain([format::shard_len_for(after.longest)])
            .max()
            .unwrap_or(0);
        let mut shards = after.acc.finish(l);
        for (s, w) in shards.iter_mut().zip(&written) {
            xor_bytes(&mut s[..w.len()], w);
        }
        drop(written);
        members.extend(after.members);
        let n = members.len();
        if let Err(e) = group::store_group(self.repo, members, shards, l) {
            self.repo.warn(format!(
                "parity for {n} new packs was not rewritten as one group ({e}); the end of the \
                 run protects the last {k}"
            ));
            return;
        }
        for name in files {
            // A file left behind describes a group whose packs the new one holds too:
            // `repair parity` removes it. Its parity stays correct meanwhile.
            if let Err(e) = self.repo.backend().delete(FileKind::Parity, &name) {
                self.repo.warn(format!(
                    "parity file {name}, replaced by a larger group, was not deleted: {e}"
                ));
            }
        }
    }

    /// The shards of the group of `members` from its parity files as written in this run,
    /// each checked against its name and its header.
    fn written_shards(&self, files: &[String], members: &[Member]) -> Result<Vec<Vec<u8>>, String> {
        let backend = self.repo.backend();
        let mut out = Vec::with_capacity(files.len());
        for (j, name) in files.iter().enumerate() {
            let what = FileKind::Parity.path(name);
            let mut bytes = backend
                .get_at_most(FileKind::Parity, name, FileKind::Parity.max_len())
                .map_err(|e| format!("{what}: {e}"))?;
            if hex::encode(blake3::hash(&bytes).as_bytes()) != *name {
                return Err(format!("{what} does not hash to its name"));
            }
            let (h, shard) =
                format::decode_file(self.repo.keys(), &bytes, &what).map_err(|e| e.to_string())?;
            if h.index as usize != j || h.parity() != files.len() || h.members != members {
                return Err(format!("{what} describes another group"));
            }
            let len = shard.len();
            bytes.truncate(len);
            out.push(bytes);
        }
        Ok(out)
    }
}

/// `a ^= b` byte by byte (both as long).
fn xor_bytes(a: &mut [u8], b: &[u8]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

#[cfg(test)]
mod tests {
    use super::super::code;
    use super::*;

    fn column(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// What the readback path computes: every column zero-padded to `l`, in order.
    fn reference(p: usize, cols: &[Vec<u8>], l: usize) -> Vec<Vec<u8>> {
        let padded: Vec<Vec<u8>> = cols
            .iter()
            .map(|c| {
                let mut v = c.clone();
                v.resize(l, 0);
                v
            })
            .collect();
        let refs: Vec<&[u8]> = padded.iter().map(Vec::as_slice).collect();
        code::encode(p, &refs).expect("test")
    }

    #[test]
    fn streamed_shards_equal_the_crates_for_every_group_shape() {
        // Every percentage's full group, plus shapes around powers of two, with columns of
        // unequal lengths (not multiples of 64, one longer than a slice).
        let mut shapes: Vec<(usize, usize)> = (1..=50)
            .map(|n| {
                let s = Shape::for_percent(n).expect("test");
                (s.data, s.parity)
            })
            .collect();
        shapes.extend([(3, 1), (5, 2), (9, 4), (17, 8), (33, 16), (40, 3)]);
        shapes.sort();
        shapes.dedup();
        for (g, p) in shapes {
            assert!(Accumulator::supports(g, p), "{g}+{p}");
            let cols: Vec<Vec<u8>> = (0..g)
                .map(|i| {
                    column(
                        100 + (i * 977) % 3000 + if i == 1 { 300_000 } else { 0 },
                        i as u64,
                    )
                })
                .collect();
            let longest = cols.iter().map(Vec::len).max().unwrap_or(0);
            let l = format::shard_len_for(longest as u64);
            let mut acc = Accumulator::new(p);
            for c in &cols {
                acc.add(c);
            }
            let got = acc.finish(l);
            assert_eq!(got, reference(p, &cols, l as usize), "{g}+{p}");
        }
    }

    #[test]
    fn a_written_groups_shards_xored_with_the_columns_after_it_are_the_larger_groups() {
        // What `Streaming::finish` does: a full group of G, finished at its own shard length,
        // then k more columns (one longer than every column before) transformed from position
        // G on; the XOR is the encoding of all G + k, for every full group shape.
        for n in [1, 4, 5, 10, 25, 50] {
            let s = Shape::for_percent(n).expect("test");
            let (g, p) = (s.data, s.parity);
            for k in [1, g / 2, g - 1] {
                if k == 0 || g + k > format::MAX_DATA {
                    continue;
                }
                let cols: Vec<Vec<u8>> = (0..g + k)
                    .map(|i| {
                        column(
                            300 + (i * 613) % 2000 + if i == g { 9000 } else { 0 },
                            i as u64,
                        )
                    })
                    .collect();
                let la =
                    format::shard_len_for(cols[..g].iter().map(Vec::len).max().unwrap_or(0) as u64);
                let mut first = Accumulator::new(p);
                cols[..g].iter().for_each(|c| first.add(c));
                let written = first.finish(la);
                let mut after = Accumulator::starting_at(p, g);
                cols[g..].iter().for_each(|c| after.add(c));
                let l = format::shard_len_for(cols.iter().map(Vec::len).max().unwrap_or(0) as u64);
                let mut got = after.finish(l);
                for (s, w) in got.iter_mut().zip(&written) {
                    xor_bytes(&mut s[..w.len()], w);
                }
                assert_eq!(got, reference(p, &cols, l as usize), "{g}+{p}, {k} after");
            }
        }
    }

    #[test]
    fn a_shard_length_beyond_every_column_is_zero_padding() {
        let cols: Vec<Vec<u8>> = (0..20).map(|i| column(5000, i)).collect();
        let l = format::shard_len_for(5000) + 4096;
        let mut acc = Accumulator::new(2);
        for c in &cols {
            acc.add(c);
        }
        assert_eq!(acc.finish(l), reference(2, &cols, l as usize));
    }

    #[test]
    fn shapes_the_crate_encodes_at_the_low_rate_are_not_streamed() {
        assert!(!Accumulator::supports(2, 2));
        assert!(!Accumulator::supports(3, 4));
        assert!(!Accumulator::supports(4, 3));
        assert!(Accumulator::supports(5, 4));
    }
}

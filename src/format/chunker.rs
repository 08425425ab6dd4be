//! Content-defined chunking: the only file that names fastcdc (repo-format.md §5).
//!
//! FastCDC v2020 with normalization level 1 and a gear table keyed by the chunker key, so cut
//! points depend on a secret. Cut points are part of the format: fastcdc's version is pinned and
//! a golden test below fixes the cut offsets for a seeded input.

use std::io::{self, Read};

use fastcdc::v2020::{Normalization, StreamCDC};
use serde::{Deserialize, Serialize};

/// Chunk size bounds in bytes, recorded in the config as the `chunker` map (repo-format.md
/// §3.1, §5); [`ChunkerParams::validate`] holds them to `min <= avg <= max` and fastcdc's ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Smallest chunk, in bytes: no cut before it (only a stream's last chunk may be shorter).
    pub min: u32,
    /// Target average chunk size, in bytes (FastCDC's normalization point).
    pub avg: u32,
    /// Largest chunk, in bytes: a cut is forced here.
    pub max: u32,
}

impl Default for ChunkerParams {
    /// 128 KiB / 512 KiB / 2 MiB: see repo-format.md §5.1 for the measurement behind the choice.
    fn default() -> Self {
        ChunkerParams {
            min: 128 * 1024,
            avg: 512 * 1024,
            max: 2 * 1024 * 1024,
        }
    }
}

impl ChunkerParams {
    /// Bounds FastCDC v2020 accepts, and that keep every blob well inside a pack.
    pub fn validate(&self) -> Result<(), String> {
        // The ranges fastcdc v2020 accepts (it panics outside them); repo-format.md §5.
        let ok = (64..=1 << 20).contains(&self.min)
            && (256..=4 << 20).contains(&self.avg)
            && (1024..=16 << 20).contains(&self.max)
            && self.min <= self.avg
            && self.avg <= self.max;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "chunker bounds {}/{}/{} are outside min 64..=1 MiB, avg 256..=4 MiB, max 1 KiB..=16 MiB with min <= avg <= max",
                self.min, self.avg, self.max
            ))
        }
    }
}

/// Splits a stream into chunks; yields each chunk's bytes.
///
/// A stream of at most `min` bytes is one chunk (FastCDC never cuts before `min`), so it is read
/// into one buffer without setting up the streaming chunker and its `max`-sized buffer — most
/// files are small, and this is most of a small-file backup's allocation work.
pub struct Chunker<R: Read> {
    inner: Inner<R>,
}

enum Inner<R: Read> {
    /// The whole (short) stream, not yet yielded.
    Whole(Option<io::Result<Vec<u8>>>),
    Stream(StreamCDC<io::Chain<io::Cursor<Vec<u8>>, R>>),
}

impl<R: Read> Chunker<R> {
    /// Chunks `reader` with the repository's bounds and gear `seed` (the chunker master key's
    /// first 8 bytes, [`crate::crypto::MasterKeys::chunker_seed`]).
    pub fn new(reader: R, params: ChunkerParams, seed: u64) -> Self {
        Self::with_size_hint(reader, params, seed, 0)
    }

    /// Like [`Self::new`]; `hint` (the expected length, e.g. from `stat`) sizes the first read.
    pub fn with_size_hint(mut reader: R, params: ChunkerParams, seed: u64, hint: u64) -> Self {
        // Read up to min + 1 bytes: that decides whether this is a one-chunk stream.
        let mut head = Vec::with_capacity(hint.min(params.min as u64) as usize + 1);
        let probe = (&mut reader)
            .take(params.min as u64 + 1)
            .read_to_end(&mut head);
        let inner = match probe {
            Err(e) => Inner::Whole(Some(Err(e))),
            Ok(n) if n <= params.min as usize => Inner::Whole((n > 0).then_some(Ok(head))),
            Ok(_) => Inner::Stream(StreamCDC::with_level_and_seed(
                io::Cursor::new(head).chain(reader),
                params.min,
                params.avg,
                params.max,
                Normalization::Level1,
                seed,
            )),
        };
        Chunker { inner }
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Whole(w) => w.take(),
            Inner::Stream(s) => match s.next()? {
                Ok(c) => Some(Ok(c.data)),
                Err(fastcdc::v2020::Error::IoError(e)) => Some(Err(e)),
                Err(e) => Some(Err(io::Error::other(format!("chunker: {e:?}")))),
            },
        }
    }
}

/// Cut offsets (end of each chunk) for an in-memory buffer; used by tests and tools.
pub fn cut_points(data: &[u8], params: ChunkerParams, seed: u64) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut pos = 0;
    for chunk in Chunker::new(data, params, seed) {
        let Ok(chunk) = chunk else { break };
        pos += chunk.len();
        ends.push(pos);
    }
    ends
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deterministic pseudo-random bytes (xorshift64*), independent of any crate's RNG.
    pub(crate) fn seeded_bytes(len: usize, mut state: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn small() -> ChunkerParams {
        ChunkerParams {
            min: 1024,
            avg: 4096,
            max: 16384,
        }
    }

    /// Golden cut points: if this changes, existing repositories stop deduplicating against new
    /// backups. Never update these numbers without a format version bump.
    #[test]
    fn golden_cut_points_for_seeded_input() {
        let data = seeded_bytes(8 * 1024 * 1024, 0x00C0_FFEE);
        let cuts = cut_points(&data, ChunkerParams::default(), 0x005E_ED0F_CA12);
        assert_eq!(cuts, GOLDEN_DEFAULT);
        let cuts = cut_points(&data[..200_000], small(), 42);
        assert_eq!(&cuts[..12], GOLDEN_SMALL);
    }

    const GOLDEN_DEFAULT: &[usize] = &[
        549913, 688038, 1501527, 2453688, 3442196, 3742591, 4678331, 5194347, 5848851, 6599665,
        7773777, 8388608,
    ];
    const GOLDEN_SMALL: &[usize] = &[
        5097, 10193, 16705, 19321, 23398, 36506, 38754, 44799, 51211, 52525, 56815, 63472,
    ];

    #[test]
    fn the_short_stream_path_cuts_exactly_like_fastcdc() {
        let p = small();
        for len in [0usize, 1, 1023, 1024, 1025, 5000, 20_000] {
            let data = seeded_bytes(len, 9);
            let ours: Vec<usize> = Chunker::new(&data[..], p, 3)
                .map(|c| c.unwrap().len())
                .collect();
            let theirs: Vec<usize> = StreamCDC::with_level_and_seed(
                &data[..],
                p.min,
                p.avg,
                p.max,
                Normalization::Level1,
                3,
            )
            .map(|c| c.unwrap().length)
            .collect();
            assert_eq!(ours, theirs, "length {len}");
        }
    }

    #[test]
    fn seed_changes_cut_points() {
        let data = seeded_bytes(200_000, 7);
        assert_ne!(cut_points(&data, small(), 1), cut_points(&data, small(), 2));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn chunks_concatenate_to_input_and_respect_bounds(len in 0usize..120_000, seed in any::<u64>(), key in any::<u64>()) {
            let data = seeded_bytes(len, seed | 1);
            let p = small();
            let chunks: Vec<Vec<u8>> = Chunker::new(&data[..], p, key).map(|c| c.unwrap()).collect();
            let joined: Vec<u8> = chunks.concat();
            prop_assert_eq!(&joined, &data);
            for (i, c) in chunks.iter().enumerate() {
                prop_assert!(c.len() <= p.max as usize);
                if i + 1 < chunks.len() {
                    prop_assert!(c.len() >= p.min as usize);
                }
                prop_assert!(!c.is_empty());
            }
        }
    }
}

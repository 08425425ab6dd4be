//! A blocked Bloom filter over blob ids: "surely not in this run" without reading the disk.
//!
//! Blob ids are keyed BLAKE3 hashes, uniform without further hashing, so the filter takes its
//! block and its bits straight from the id's bytes. Each id sets 8 bits inside one
//! 512-bit block (one cache line), so a lookup costs one memory miss whatever the size; at
//! [`BITS_PER_ID`] bits per id about 1.5 % of absent ids pass (repo-format.md §8.1).

/// Bits of filter per indexed id.
pub const BITS_PER_ID: u64 = 10;
/// Bytes per block: one cache line.
pub const BLOCK_BYTES: usize = 64;
/// Bits set (and tested) per id, all in one block.
const PROBES: u32 = 8;

/// The filter: `blocks` blocks of 512 bits, kept as 64-bit words (little-endian on disk).
pub struct Filter {
    words: Vec<u64>,
}

/// How many 64-byte blocks a filter over `ids` ids has: at least one.
pub fn blocks_for(ids: u64) -> u64 {
    (ids * BITS_PER_ID).div_ceil(512).max(1)
}

impl Filter {
    /// An empty filter of `blocks` blocks.
    pub fn new(blocks: u64) -> Self {
        Filter {
            words: vec![0; blocks.max(1) as usize * 8],
        }
    }

    /// A filter read back from its bytes (a whole number of blocks, checked by the caller).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let words = bytes
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
            .collect();
        Filter { words }
    }

    /// The filter's bytes as stored.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// The word offset of the id's block, and its 8 bit numbers (0..512) within it.
    fn probes(&self, id: &[u8; 32]) -> (usize, [u32; PROBES as usize]) {
        let blocks = (self.words.len() / 8) as u128;
        let h = u64::from_le_bytes(id[8..16].try_into().expect("8 bytes"));
        let block = ((h as u128 * blocks) >> 64) as usize;
        let mut bits = u128::from_le_bytes(id[16..32].try_into().expect("16 bytes"));
        let mut out = [0u32; PROBES as usize];
        for b in &mut out {
            *b = (bits & 511) as u32;
            bits >>= 9;
        }
        (block * 8, out)
    }

    /// Adds an id.
    pub fn insert(&mut self, id: &[u8; 32]) {
        let (base, bits) = self.probes(id);
        for b in bits {
            self.words[base + (b >> 6) as usize] |= 1 << (b & 63);
        }
    }

    /// False when the id was surely never added.
    pub fn may_contain(&self, id: &[u8; 32]) -> bool {
        let (base, bits) = self.probes(id);
        bits.iter()
            .all(|b| self.words[base + (b >> 6) as usize] & (1 << (b & 63)) != 0)
    }

    /// Bytes held in memory.
    pub fn len_bytes(&self) -> usize {
        self.words.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64) -> [u8; 32] {
        *blake3::hash(&i.to_le_bytes()).as_bytes()
    }

    #[test]
    fn every_added_id_passes_and_few_others_do() {
        let n = 20_000;
        let mut f = Filter::new(blocks_for(n));
        for i in 0..n {
            f.insert(&id(i));
        }
        let back = Filter::from_bytes(&f.to_bytes());
        assert!((0..n).all(|i| back.may_contain(&id(i))));
        let false_hits = (n..n + 100_000)
            .filter(|i| back.may_contain(&id(*i)))
            .count();
        // About 1.5 % at 10 bits per id; 3 % would mean the bits are not spread.
        assert!(
            false_hits < 3_000,
            "{false_hits} of 100000 absent ids passed"
        );
        assert!(
            false_hits > 100,
            "{false_hits}: a filter that passes nothing absent is suspicious"
        );
    }

    #[test]
    fn an_empty_filter_passes_nothing() {
        let f = Filter::new(blocks_for(0));
        assert!(!(0..1000).any(|i| f.may_contain(&id(i))));
    }
}

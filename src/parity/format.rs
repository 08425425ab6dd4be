//! The parity file, byte by byte (repo-format.md §14.2): the raw recovery shard, then the sealed
//! group description, then the description's length. Pure: encoding and parsing know nothing of
//! storage.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::crypto::{MasterKeys, ObjectKind};
use crate::error::{Error, Result};
use crate::format::{
    decode_object, encode_object, from_msgpack, to_msgpack_compact, Compression, Expect,
};
use crate::id::PackId;

/// repo-format.md §14.1: the rows of a group are 4 KiB sectors.
pub const SECTOR: usize = 4096;
/// repo-format.md §14.1: shard lengths are multiples of 64 bytes (`reed-solomon-simd`'s unit).
pub const SHARD_ALIGN: u64 = 64;
/// repo-format.md §14.2: a sector hash is BLAKE3 of the sector's stored bytes, first 16 bytes.
pub const HASH_LEN: usize = 16;
/// repo-format.md §14.2, last 4 bytes: the sealed header's length, u32 little-endian.
pub const TRAILER_LEN: usize = 4;
/// repo-format.md §14.2: the newest header version this code writes and reads: members in
/// column order, which is the order they were written in when parity is computed as packs are
/// written (§14.4).
pub const HEADER_VERSION: u32 = 2;
/// repo-format.md §14.2: version 1, members sorted by id; still written for such groups, so a
/// cairn that knows only version 1 reads them.
pub const HEADER_VERSION_SORTED: u32 = 1;
/// Most data packs in one group (repo-format.md §14.3).
pub const MAX_DATA: usize = 128;
/// Most parity files in one group (repo-format.md §14.3).
pub const MAX_PARITY: usize = 64;
/// Largest sealed header read (repo-format.md §14.2): 16-byte hashes of 4 KiB sectors of at
/// most 192 columns of at most 2 GiB are far below it.
pub const MAX_HEADER_LEN: usize = 256 << 20;

/// One data pack of a group: its name, exact length and the hash of each of its sectors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The pack's id (its file name under `data/`).
    pub id: PackId,
    /// Its exact length in bytes.
    pub len: u64,
    /// 16 bytes per sector, `ceil(len / 4096)` sectors; the last may be short.
    pub hashes: ByteBuf,
}

/// The decoded header of a parity file: the whole group, and which shard this file holds
/// (repo-format.md §14.2; MessagePack array form, fields in this order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParityHeader {
    /// [`HEADER_VERSION`].
    pub version: u32,
    /// Which recovery shard this file holds, `0..parity_count`.
    pub index: u32,
    /// P: how many parity files the group has.
    pub parity_count: u32,
    /// L: the length of every column (the longest member, rounded up to 64 bytes).
    pub shard_len: u64,
    /// The G data packs in column order (version 1: sorted by id).
    pub members: Vec<Member>,
    /// For each parity shard `j < P`, 16 bytes per sector of its `L` bytes.
    pub shard_hashes: Vec<ByteBuf>,
}

/// The hash of one sector's stored bytes (repo-format.md §14.2).
pub fn sector_hash(bytes: &[u8]) -> [u8; HASH_LEN] {
    let h = blake3::hash(bytes);
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(&h.as_bytes()[..HASH_LEN]);
    out
}

/// How many sectors `len` bytes span.
pub fn sectors(len: u64) -> usize {
    len.div_ceil(SECTOR as u64) as usize
}

/// `len` rounded up to [`SHARD_ALIGN`].
pub fn shard_len_for(longest: u64) -> u64 {
    longest.div_ceil(SHARD_ALIGN) * SHARD_ALIGN
}

impl ParityHeader {
    /// The members' ids, in column order.
    pub fn member_ids(&self) -> Vec<PackId> {
        self.members.iter().map(|m| m.id).collect()
    }

    /// G.
    pub fn data_count(&self) -> usize {
        self.members.len()
    }

    /// P.
    pub fn parity(&self) -> usize {
        self.parity_count as usize
    }

    /// Whether `other` describes the same group (everything but the shard index).
    pub fn same_group(&self, other: &ParityHeader) -> bool {
        self.parity_count == other.parity_count
            && self.shard_len == other.shard_len
            && self.members == other.members
            && self.shard_hashes == other.shard_hashes
    }

    /// Every rule of repo-format.md §14.2 a reader relies on; `what` names the file.
    pub fn validate(&self, what: &str) -> Result<()> {
        let bad = |why: String| Err(Error::corrupt(what, why));
        if self.version != HEADER_VERSION && self.version != HEADER_VERSION_SORTED {
            return Err(Error::UnsupportedVersion {
                what: what.to_string(),
                found: self.version,
                supported: HEADER_VERSION,
            });
        }
        let (g, p) = (self.members.len(), self.parity_count as usize);
        if g == 0 || g > MAX_DATA || p == 0 || p > MAX_PARITY {
            return bad(format!(
                "a group of {g} packs and {p} parity files is out of bounds"
            ));
        }
        if self.index as usize >= p {
            return bad(format!("shard index {} of {p}", self.index));
        }
        if self.version == HEADER_VERSION_SORTED
            && self.members.windows(2).any(|w| w[0].id >= w[1].id)
        {
            return bad("members are not sorted by id without repeats".into());
        }
        let mut ids = self.member_ids();
        ids.sort();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return bad("a pack is a member twice".into());
        }
        let longest = self.members.iter().map(|m| m.len).max().unwrap_or(0);
        if longest == 0 || self.shard_len != shard_len_for(longest) {
            return bad(format!(
                "shard length {} does not fit its longest member ({longest} bytes)",
                self.shard_len
            ));
        }
        for m in &self.members {
            if m.hashes.len() != sectors(m.len) * HASH_LEN {
                return bad(format!(
                    "pack {}: sector hashes do not match its length",
                    m.id.short()
                ));
            }
        }
        if self.shard_hashes.len() != p
            || self
                .shard_hashes
                .iter()
                .any(|h| h.len() != sectors(self.shard_len) * HASH_LEN)
        {
            return bad("parity sector hashes do not match the shard length".into());
        }
        Ok(())
    }
}

/// A whole parity file: `shard || sealed header || u32 LE header length`, built in the shard's
/// own buffer (a large buffer grows in place, so no second copy of the shard is made).
pub fn encode_file_owned(
    keys: &MasterKeys,
    header: &ParityHeader,
    shard: Vec<u8>,
) -> Result<Vec<u8>> {
    let plain = to_msgpack_compact(header)?;
    // Sector hashes do not compress.
    let sealed = encode_object(
        keys,
        ObjectKind::ParityHeader,
        &[],
        &plain,
        Compression::Off,
    )?;
    let mut out = shard;
    out.reserve_exact(sealed.len() + TRAILER_LEN);
    out.extend_from_slice(&sealed);
    out.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    Ok(out)
}

/// The sealed header's length from a file's last 4 bytes, checked against the file size.
pub fn header_len(trailer: &[u8], file_len: u64, what: &str) -> Result<usize> {
    let t: [u8; TRAILER_LEN] = trailer
        .try_into()
        .map_err(|_| Error::corrupt(what, "shorter than its trailer"))?;
    let n = u32::from_le_bytes(t) as usize;
    if n == 0 || n > MAX_HEADER_LEN || (n + TRAILER_LEN) as u64 > file_len {
        return Err(Error::corrupt(
            what,
            format!("header length {n} does not fit the file"),
        ));
    }
    Ok(n)
}

/// Opens and validates a sealed header; `file_len` is the whole file's length.
pub fn decode_header(
    keys: &MasterKeys,
    sealed: &[u8],
    file_len: u64,
    what: &str,
) -> Result<ParityHeader> {
    let plain = decode_object(
        keys,
        ObjectKind::ParityHeader,
        &[],
        sealed,
        Expect::AtMost(MAX_HEADER_LEN),
    )
    .map_err(|e| Error::corrupt(what, e.to_string()))?;
    let h: ParityHeader = from_msgpack(&plain, what)?;
    h.validate(what)?;
    if h.shard_len + sealed.len() as u64 + TRAILER_LEN as u64 != file_len {
        return Err(Error::corrupt(
            what,
            "its length does not match its shard and header",
        ));
    }
    Ok(h)
}

/// Parses a whole parity file held in memory: the header and the shard.
pub fn decode_file<'a>(
    keys: &MasterKeys,
    bytes: &'a [u8],
    what: &str,
) -> Result<(ParityHeader, &'a [u8])> {
    let len = bytes.len();
    if len < TRAILER_LEN {
        return Err(Error::corrupt(what, "shorter than its trailer"));
    }
    let n = header_len(&bytes[len - TRAILER_LEN..], len as u64, what)?;
    let start = len - TRAILER_LEN - n;
    let h = decode_header(keys, &bytes[start..len - TRAILER_LEN], len as u64, what)?;
    Ok((h, &bytes[..start]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(index: u32) -> ParityHeader {
        let members = [(1u8, 5000u64), (2, 4096), (3, 70)]
            .iter()
            .map(|(b, len)| Member {
                id: PackId([*b; 32]),
                len: *len,
                hashes: ByteBuf::from(vec![*b; sectors(*len) * HASH_LEN]),
            })
            .collect();
        ParityHeader {
            version: HEADER_VERSION,
            index,
            parity_count: 2,
            shard_len: shard_len_for(5000),
            members,
            shard_hashes: vec![ByteBuf::from(vec![9; 2 * HASH_LEN]); 2],
        }
    }

    #[test]
    fn a_parity_file_round_trips_and_describes_its_whole_group() {
        let keys = MasterKeys::generate().expect("test");
        let h = header(1);
        assert_eq!(h.shard_len, 5056);
        let shard = vec![7u8; h.shard_len as usize];
        let file = encode_file_owned(&keys, &h, shard.clone()).expect("test");
        let (back, s) = decode_file(&keys, &file, "parity/x").expect("test");
        assert_eq!(back, h);
        assert_eq!(s, &shard[..]);
        assert!(back.same_group(&header(0)));
    }

    #[test]
    fn damaged_or_inconsistent_parity_files_are_refused() {
        let keys = MasterKeys::generate().expect("test");
        let h = header(0);
        let shard = vec![7u8; h.shard_len as usize];
        let file = encode_file_owned(&keys, &h, shard.clone()).expect("test");
        // A flipped byte in the header, a cut file, a trailer that points past the start.
        let mut flipped = file.clone();
        let at = file.len() - 10;
        flipped[at] ^= 1;
        assert!(decode_file(&keys, &flipped, "p").is_err());
        assert!(decode_file(&keys, &file[1..], "p").is_err());
        assert!(decode_file(&keys, &file[..3], "p").is_err());
        let mut trailer = file.clone();
        let n = trailer.len();
        trailer[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_file(&keys, &trailer, "p").is_err());
        // Headers that break the rules: unsorted members in version 1, a repeated member,
        // wrong shard length, bad index, hashes not matching a length, unknown versions.
        let mut bad = [
            header(0),
            header(0),
            header(0),
            header(0),
            header(0),
            header(0),
            header(0),
        ];
        bad[0].version = HEADER_VERSION_SORTED;
        bad[0].members.swap(0, 1);
        bad[1].shard_len += 64;
        bad[2].index = 2;
        bad[3].members[0].len += 5000;
        bad[4].members[2] = bad[4].members[0].clone();
        bad[5].version = HEADER_VERSION + 1;
        bad[6].version = 0;
        for b in &bad {
            assert!(b.validate("p").is_err(), "{b:?}");
        }
        // Version 2 takes members in any column order; version 1 sorted ones.
        let mut any_order = header(0);
        any_order.members.swap(0, 2);
        assert!(any_order.validate("p").is_ok());
        let mut sorted = header(0);
        sorted.version = HEADER_VERSION_SORTED;
        assert!(sorted.validate("p").is_ok());
        // Another repository's keys.
        let other = MasterKeys::generate().expect("test");
        assert!(decode_file(&other, &file, "p").is_err());
    }
}

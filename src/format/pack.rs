//! Pack files (repo-format.md §6): sealed blobs back to back, then the sealed header, then the
//! header's length as u32 little-endian. Nothing about a blob is visible in clear text.
//!
//! Encoding and parsing only: storing a finished pack is the repository's job (src/saver.rs).

use serde::{Deserialize, Serialize};

use crate::crypto::{MasterKeys, ObjectKind, SEAL_OVERHEAD};
use crate::error::{Error, Result};
use crate::format::{
    decode_object, decode_object_into, encode_object, from_msgpack, to_msgpack_compact,
    Compression, DecodeBufs, Expect,
};
use crate::id::{content_hash, BlobId, PackId};

/// repo-format.md §6: the trailing header length, u32 little-endian.
pub const TRAILER_LEN: usize = 4;
/// Largest sealed header a reader accepts (16 MiB ≈ 300,000 entries).
pub const MAX_HEADER_LEN: usize = 16 << 20;
/// Largest blob area a writer fills: far below FAT32's 4 GiB file limit.
pub const MAX_PACK_LEN: u64 = 1 << 31;
/// Most blobs a writer puts in one pack, so its header stays far below [`MAX_HEADER_LEN`]
/// (an entry is at most ~50 bytes of MessagePack plus sealing).
pub const MAX_PACK_ENTRIES: usize = 100_000;

/// Largest data blob plaintext: the chunker's largest `max` (repo-format.md §5).
pub const MAX_DATA_BLOB: usize = 16 << 20;

/// repo-format.md §6.4: a pack that is not full (the last one a writer closes) is padded to
/// at least this many bytes, then to its [`padme`] size.
pub const PAD_FLOOR: u64 = 16 << 10;

/// repo-format.md §6.4: Padmé (Nikitin, Barman, Lueks, Underwood, Hubaux and Ford, "Reducing
/// Metadata Leakage from Encrypted Files and Communication with PURBs", PETS 2019). A length
/// `L` with `E = floor(log2 L)` and `S = floor(log2 E) + 1` is rounded up to a multiple of
/// `2^(E - S)`: what remains of `L` is about `log2 log2 L` bits, for at most 11.1 % more bytes
/// (under 3.2 % from 1 MiB on).
pub fn padme(len: u64) -> u64 {
    if len < 2 {
        return len;
    }
    let e = 63 - u64::from(len.leading_zeros());
    let s = 64 - u64::from(e.leading_zeros());
    let mask = (1u64 << (e - s)) - 1;
    (len + mask) & !mask
}

/// repo-format.md §6: the type of a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlobKind {
    /// A chunk of file content (type `0` in a header entry, object kind 2).
    Data,
    /// An encoded directory, repo-format.md §7 (type `1`, object kind 3).
    Tree,
}

impl BlobKind {
    /// The object kind a blob of this type is sealed with (repo-format.md §4.2).
    pub fn object_kind(self) -> ObjectKind {
        match self {
            BlobKind::Data => ObjectKind::DataBlob,
            BlobKind::Tree => ObjectKind::TreeBlob,
        }
    }
    /// `"data"` or `"tree"`, for messages and JSON output.
    pub fn name(self) -> &'static str {
        match self {
            BlobKind::Data => "data",
            BlobKind::Tree => "tree",
        }
    }
}

impl Serialize for BlobKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(match self {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        })
    }
}

impl<'de> Deserialize<'de> for BlobKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u8::deserialize(d)? {
            0 => Ok(BlobKind::Data),
            1 => Ok(BlobKind::Tree),
            k => Err(serde::de::Error::custom(format!("unknown blob type {k}"))),
        }
    }
}

/// One blob in a pack: `[type, id, offset, length, raw_length]` (repo-format.md §6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    /// Whether the blob is file data or a tree.
    pub kind: BlobKind,
    /// The blob's keyed hash (chunk id or tree id); a blob whose plaintext hashes otherwise is
    /// damaged (repo-format.md §6.2).
    pub id: BlobId,
    /// Offset of the sealed blob from the start of the pack, in bytes.
    pub offset: u32,
    /// Length of the sealed blob in bytes: its envelope plaintext plus 40 (repo-format.md §4.1).
    pub length: u32,
    /// Length of the blob's plaintext after decompression, in bytes: the exact bound it is
    /// decoded with (repo-format.md §4.5).
    pub raw_length: u32,
}

/// Collects sealed blobs into one pack in memory.
#[derive(Default)]
pub struct PackWriter {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// A finished pack: its name, bytes and what it holds.
pub struct FinishedPack {
    /// The pack's file id, the hash of [`Self::bytes`] (repo-format.md §3.2).
    pub id: PackId,
    /// The whole pack file: blobs, padding, sealed header, trailer (repo-format.md §6).
    pub bytes: Vec<u8>,
    /// The header's entries, in offset order; an index file lists them as they are.
    pub entries: Vec<PackEntry>,
}

impl FinishedPack {
    /// True when the pack holds trees (packs hold one kind only, repo-format.md §6.3).
    pub fn holds_trees(&self) -> bool {
        self.entries
            .first()
            .is_some_and(|e| e.kind == BlobKind::Tree)
    }
}

impl PackWriter {
    /// An empty pack with a fresh buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer that fills `buf` (cleared): a recycled buffer saves the page faults of a fresh
    /// allocation for every pack.
    pub fn with_buffer(mut buf: Vec<u8>) -> Self {
        buf.clear();
        PackWriter {
            buf,
            entries: Vec::new(),
        }
    }

    /// Bytes of sealed blobs added so far (the blob area, without header or padding).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no blob has been added yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the pack has reached `target` bytes or the most entries a header may list.
    pub fn is_full(&self, target: usize) -> bool {
        self.buf.len() >= target || self.entries.len() >= MAX_PACK_ENTRIES
    }

    /// Appends a sealed blob (as made by [`seal_blob`]).
    pub fn add(
        &mut self,
        kind: BlobKind,
        id: BlobId,
        sealed: &[u8],
        raw_length: u32,
    ) -> Result<()> {
        let offset = u32::try_from(self.buf.len())
            .ok()
            .filter(|o| (*o as u64) + (sealed.len() as u64) < MAX_PACK_LEN)
            .ok_or_else(|| Error::InvalidInput("pack would exceed 2 GiB".into()))?;
        self.buf.extend_from_slice(sealed);
        self.entries.push(PackEntry {
            kind,
            id,
            offset,
            length: sealed.len() as u32,
            raw_length,
        });
        Ok(())
    }

    /// Seals the header, appends it and its length; the pack's id is the hash of it all.
    /// A pack below `target` bytes (the config's pack size: the last pack a writer closes) is
    /// padded with random bytes between its blobs and its header (repo-format.md §6.4), so its
    /// size does not tell how much data it holds.
    pub fn finish(mut self, keys: &MasterKeys, target: usize) -> Result<FinishedPack> {
        let header = to_msgpack_compact(&self.entries)?;
        let sealed = encode_object(
            keys,
            ObjectKind::PackHeader,
            &[],
            &header,
            Compression::Auto,
        )?;
        let len = u32::try_from(sealed.len())
            .map_err(|_| Error::InvalidInput("pack header too large".into()))?;
        if self.buf.len() < target {
            let unpadded = (self.buf.len() + sealed.len() + TRAILER_LEN) as u64;
            let pad = (padme(unpadded.max(PAD_FLOOR)) - unpadded) as usize;
            let start = self.buf.len();
            self.buf.resize(start + pad, 0);
            crate::crypto::random_bytes(&mut self.buf[start..])?;
        }
        self.buf.extend_from_slice(&sealed);
        self.buf.extend_from_slice(&len.to_le_bytes());
        let id = PackId(content_hash(&self.buf));
        Ok(FinishedPack {
            id,
            bytes: self.buf,
            entries: self.entries,
        })
    }
}

/// Compresses and seals one blob; the associated data binds its type and id.
pub fn seal_blob(
    keys: &MasterKeys,
    kind: BlobKind,
    id: &BlobId,
    plain: &[u8],
    c: Compression,
) -> Result<Vec<u8>> {
    encode_object(keys, kind.object_kind(), id.as_bytes(), plain, c)
}

/// Opens one sealed blob and checks that its plaintext hashes to its id.
pub fn open_blob(keys: &MasterKeys, entry: &PackEntry, sealed: &[u8]) -> Result<Vec<u8>, String> {
    check_claim(entry)?;
    let plain = decode_object(
        keys,
        entry.kind.object_kind(),
        entry.id.as_bytes(),
        sealed,
        Expect::Exact(entry.raw_length as usize),
    )
    .map_err(|e| e.to_string())?;
    check_id(keys, entry, &plain)?;
    Ok(plain)
}

/// [`open_blob`] into buffers reused from one blob to the next; the plaintext is borrowed
/// from `bufs`.
pub fn open_blob_into<'a>(
    keys: &MasterKeys,
    entry: &PackEntry,
    sealed: &[u8],
    bufs: &'a mut DecodeBufs,
) -> Result<&'a [u8], String> {
    check_claim(entry)?;
    let plain = decode_object_into(
        keys,
        entry.kind.object_kind(),
        entry.id.as_bytes(),
        sealed,
        Expect::Exact(entry.raw_length as usize),
        bufs,
    )
    .map_err(|e| e.to_string())?;
    check_id(keys, entry, plain)?;
    Ok(plain)
}

/// A hostile (but authenticated) entry must not make a reader allocate gigabytes.
fn check_claim(entry: &PackEntry) -> Result<(), String> {
    let max = match entry.kind {
        BlobKind::Data => MAX_DATA_BLOB,
        BlobKind::Tree => crate::format::MAX_METADATA_LEN,
    };
    if entry.raw_length as usize > max {
        return Err(format!(
            "claims {} bytes of plaintext, more than a {} blob can hold",
            entry.raw_length,
            entry.kind.name()
        ));
    }
    Ok(())
}

/// The plaintext must hash to the blob's keyed id.
fn check_id(keys: &MasterKeys, entry: &PackEntry, plain: &[u8]) -> Result<(), String> {
    let actual = match entry.kind {
        BlobKind::Data => keys.chunk_id(plain),
        BlobKind::Tree => keys.tree_id(plain),
    };
    if actual != entry.id {
        return Err(format!(
            "plaintext hashes to {}, not its id",
            actual.short()
        ));
    }
    Ok(())
}

/// Reads the header length from a pack's last 4 bytes, validated against the pack's size.
pub fn header_len_from_trailer(trailer: &[u8], pack_len: u64) -> Result<usize, String> {
    let arr: [u8; TRAILER_LEN] = trailer
        .try_into()
        .map_err(|_| "trailer is not 4 bytes".to_string())?;
    let len = u32::from_le_bytes(arr) as usize;
    if !(SEAL_OVERHEAD + 1..=MAX_HEADER_LEN).contains(&len) || (len + TRAILER_LEN) as u64 > pack_len
    {
        return Err(format!(
            "header length {len} does not fit a pack of {pack_len} bytes"
        ));
    }
    Ok(len)
}

/// Opens and validates a pack header: every entry lies inside the blob area, without overlap.
pub fn parse_header(
    keys: &MasterKeys,
    sealed_header: &[u8],
    pack_len: u64,
) -> Result<Vec<PackEntry>, String> {
    let plain = decode_object(
        keys,
        ObjectKind::PackHeader,
        &[],
        sealed_header,
        Expect::AtMost(MAX_HEADER_LEN * 4),
    )
    .map_err(|e| format!("header: {e}"))?;
    let mut entries: Vec<PackEntry> =
        from_msgpack(&plain, "pack header").map_err(|e| e.to_string())?;
    let blob_area = pack_len - (sealed_header.len() + TRAILER_LEN) as u64;
    entries.sort_by_key(|e| e.offset);
    let mut end = 0u64;
    for e in &entries {
        let start = e.offset as u64;
        if start < end
            || start + e.length as u64 > blob_area
            || (e.length as usize) < SEAL_OVERHEAD + 1
        {
            return Err(format!(
                "entry for blob {} lies outside the blob area or overlaps",
                e.id.short()
            ));
        }
        end = start + e.length as u64;
    }
    Ok(entries)
}

/// Parses a whole pack held in memory (repair, check, tests).
pub fn read_pack(keys: &MasterKeys, bytes: &[u8]) -> Result<Vec<PackEntry>, String> {
    let n = bytes.len();
    if n < TRAILER_LEN {
        return Err("pack shorter than its trailer".into());
    }
    let hl = header_len_from_trailer(&bytes[n - TRAILER_LEN..], n as u64)?;
    parse_header(
        keys,
        &bytes[n - TRAILER_LEN - hl..n - TRAILER_LEN],
        n as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_writer_and_reader_round_trip() {
        let keys = MasterKeys::generate().unwrap();
        let mut w = PackWriter::new();
        let blobs: Vec<Vec<u8>> = vec![b"first".to_vec(), vec![9u8; 5000], b"third blob".to_vec()];
        for (i, b) in blobs.iter().enumerate() {
            let kind = if i == 1 {
                BlobKind::Tree
            } else {
                BlobKind::Data
            };
            let id = if kind == BlobKind::Tree {
                keys.tree_id(b)
            } else {
                keys.chunk_id(b)
            };
            let sealed = seal_blob(&keys, kind, &id, b, Compression::Auto).unwrap();
            w.add(kind, id, &sealed, b.len() as u32).unwrap();
        }
        let p = w.finish(&keys, 0).unwrap();
        assert_eq!(p.id.0, content_hash(&p.bytes));
        let entries = read_pack(&keys, &p.bytes).unwrap();
        assert_eq!(entries, p.entries);
        for (e, b) in entries.iter().zip(&blobs) {
            let sealed = &p.bytes[e.offset as usize..(e.offset + e.length) as usize];
            assert_eq!(&open_blob(&keys, e, sealed).unwrap(), b);
        }
    }

    /// Padmé never shrinks, adds at most 11.1 %, is idempotent (a padded size is a bucket of
    /// its own), and leaves few distinct sizes: every length from 16 KiB to 1 MiB falls into
    /// a few hundred buckets.
    #[test]
    fn padme_rounds_up_by_at_most_a_ninth_into_few_buckets() {
        let mut buckets = std::collections::BTreeSet::new();
        for len in (0..5000u64)
            .chain((1 << 14..1 << 20).step_by(97))
            .chain([u64::MAX >> 2])
        {
            let p = padme(len);
            assert!(p >= len, "{len} -> {p}");
            assert!((p - len) as f64 <= len as f64 / 9.0 + 1.0, "{len} -> {p}");
            assert_eq!(padme(p), p, "{len} -> {p} is not a bucket");
            if (1 << 14..1 << 20).contains(&len) {
                buckets.insert(p);
            }
        }
        assert!(buckets.len() < 400, "{} buckets", buckets.len());
        assert_eq!(padme(1130), 1152);
    }

    /// The last pack of a writer (below the target size) is padded — to at least
    /// [`PAD_FLOOR`] and to a Padmé size — and still reads back blob for blob; a pack that
    /// reached the target is not padded. Two packs of different small content have the same
    /// size.
    #[test]
    fn a_pack_below_the_target_is_padded_and_reads_back() {
        let keys = MasterKeys::generate().unwrap();
        let pack_of = |content: &[u8], target: usize| {
            let mut w = PackWriter::new();
            let id = keys.chunk_id(content);
            let sealed = seal_blob(&keys, BlobKind::Data, &id, content, Compression::Off).unwrap();
            w.add(BlobKind::Data, id, &sealed, content.len() as u32)
                .unwrap();
            w.finish(&keys, target).unwrap()
        };
        let small = pack_of(b"a small file", 1 << 20);
        let other = pack_of(&[7u8; 3000], 1 << 20);
        assert_eq!(small.bytes.len() as u64, PAD_FLOOR);
        assert_eq!(
            small.bytes.len(),
            other.bytes.len(),
            "sizes tell the files apart"
        );
        let entries = read_pack(&keys, &small.bytes).unwrap();
        let e = entries[0];
        let sealed = &small.bytes[e.offset as usize..(e.offset + e.length) as usize];
        assert_eq!(open_blob(&keys, &e, sealed).unwrap(), b"a small file");
        assert_eq!(small.id.0, content_hash(&small.bytes));
        let big = pack_of(&[1u8; 40_000], 40_000);
        assert!(
            big.bytes.len() < 40_200,
            "a full pack is not padded: {}",
            big.bytes.len()
        );
        let mid = pack_of(&vec![1u8; 100_000], 1 << 20);
        assert_eq!(mid.bytes.len() as u64, padme(mid.bytes.len() as u64));
    }

    /// One set of buffers opens blob after blob, large and small, compressed and raw: each
    /// plaintext must be exactly its own (nothing left over from a longer one before it), and
    /// a damaged blob must fail without spoiling the next.
    #[test]
    fn reused_buffers_open_every_blob_exactly() {
        let keys = MasterKeys::generate().unwrap();
        let mut rng = crate::testutil::Rng(0x51ed_2701_a3c4_f00d);
        let mut bufs = DecodeBufs::default();
        for round in 0..40 {
            let len = [1, 17, 4096, 70_000, 300_000][rng.below(5) as usize];
            // Text compresses (zstd body); random bytes are stored raw.
            let plain: Vec<u8> = if rng.below(2) == 0 {
                (0..len).map(|i| b"restore "[i % 8]).collect()
            } else {
                crate::testutil::bytes(round, len)
            };
            let id = keys.chunk_id(&plain);
            let mut sealed =
                seal_blob(&keys, BlobKind::Data, &id, &plain, Compression::Auto).unwrap();
            let e = PackEntry {
                kind: BlobKind::Data,
                id,
                offset: 0,
                length: sealed.len() as u32,
                raw_length: plain.len() as u32,
            };
            if round % 7 == 3 {
                let at = rng.below(sealed.len() as u64) as usize;
                sealed[at] ^= 0x20;
                assert!(open_blob_into(&keys, &e, &sealed, &mut bufs).is_err());
                continue;
            }
            let opened = open_blob_into(&keys, &e, &sealed, &mut bufs).unwrap();
            assert!(opened == &plain[..], "round {round}: {len} bytes differ");
        }
    }

    #[test]
    fn a_blob_cannot_be_opened_as_another() {
        let keys = MasterKeys::generate().unwrap();
        let a = keys.chunk_id(b"a");
        let sealed = seal_blob(&keys, BlobKind::Data, &a, b"a", Compression::Off).unwrap();
        let mut e = PackEntry {
            kind: BlobKind::Data,
            id: keys.chunk_id(b"b"),
            offset: 0,
            length: sealed.len() as u32,
            raw_length: 1,
        };
        assert!(open_blob(&keys, &e, &sealed).is_err());
        e.id = a;
        e.kind = BlobKind::Tree;
        assert!(open_blob(&keys, &e, &sealed).is_err());
    }

    #[test]
    fn truncated_or_garbage_packs_are_errors() {
        let keys = MasterKeys::generate().unwrap();
        let mut w = PackWriter::new();
        let id = keys.chunk_id(b"x");
        w.add(
            BlobKind::Data,
            id,
            &seal_blob(&keys, BlobKind::Data, &id, b"x", Compression::Off).unwrap(),
            1,
        )
        .unwrap();
        let p = w.finish(&keys, 0).unwrap();
        for cut in 0..p.bytes.len() {
            assert!(read_pack(&keys, &p.bytes[..cut]).is_err());
        }
        assert!(read_pack(&keys, &[0xff; 100]).is_err());
    }
}

//! A run: the entries of one or more index files, sorted by blob id, in a local file of the
//! cache (repo-format.md §8.1). Lookups read one 1 KiB block with `pread`; only the run's
//! filter and a fan-out of 8 bytes per block stay in memory.
//!
//! Every byte is authenticated with a key derived from the repository's id key: the head by one
//! MAC, each block by its own MAC bound to the run's random salt and the block's number. A torn,
//! rotted or forged run is found on read, never believed.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::filter::{self, Filter};
use crate::id::{BlobId, IndexId, PackId};
use crate::pack::{BlobKind, PackEntry};

/// The first 8 bytes of a run file.
pub const MAGIC: &[u8; 8] = b"CAIRNRN1";
/// Bytes per block, MAC included. Small, because a lookup copies a whole block out of the page
/// cache (at 4 KiB the copy was half of `check`'s time); the fan-out costs 8 bytes per block.
pub const BLOCK: usize = 1024;
/// Bytes per entry: id, pack number, offset, length, raw length, kind.
pub const ENTRY: usize = 49;
/// Bytes of a MAC (keyed BLAKE3).
const MAC: usize = 32;
/// Entries per full block.
pub const PER_BLOCK: usize = (BLOCK - MAC) / ENTRY;
/// Bytes of the fixed header.
const HEADER: usize = 64;
/// A run never holds more packs or index files than this (a damaged head is refused before
/// anything is allocated from it).
const MAX_TABLE: u64 = 1 << 28;

/// One entry of a run: a blob, and where it is, with its pack as a number into the run's pack
/// table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The blob's id.
    pub id: BlobId,
    /// Its pack, as a position in the run's pack table.
    pub pack: u32,
    /// The blob's kind and place in the pack (`id` repeats the entry's id).
    pub kind: BlobKind,
    /// Offset of the sealed blob in the pack.
    pub offset: u32,
    /// Length of the sealed blob.
    pub length: u32,
    /// Length of its plaintext.
    pub raw_length: u32,
}

impl Entry {
    /// The pack entry this describes.
    pub fn pack_entry(&self) -> PackEntry {
        PackEntry {
            kind: self.kind,
            id: self.id,
            offset: self.offset,
            length: self.length,
            raw_length: self.raw_length,
        }
    }

    fn encode(&self, out: &mut [u8]) {
        out[..32].copy_from_slice(&self.id.0);
        out[32..36].copy_from_slice(&self.pack.to_le_bytes());
        out[36..40].copy_from_slice(&self.offset.to_le_bytes());
        out[40..44].copy_from_slice(&self.length.to_le_bytes());
        out[44..48].copy_from_slice(&self.raw_length.to_le_bytes());
        out[48] = match self.kind {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        };
    }

    fn decode(b: &[u8]) -> Option<Entry> {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Some(Entry {
            id: BlobId(b[..32].try_into().expect("32 bytes")),
            pack: u32_at(32),
            offset: u32_at(36),
            length: u32_at(40),
            raw_length: u32_at(44),
            kind: match b[48] {
                0 => BlobKind::Data,
                1 => BlobKind::Tree,
                _ => return None,
            },
        })
    }
}

/// The MAC key of runs: BLAKE3 `derive_key` of the repository's id key.
pub fn mac_key(id_key: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key("cairn v1 local index run", id_key)
}

fn block_mac(key: &[u8; 32], salt: &[u8; 16], block: u64, body: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(salt);
    h.update(&block.to_le_bytes());
    h.update(body);
    *h.finalize().as_bytes()
}

/// The 8-byte prefix of an id as a number that sorts as the id does.
pub fn prefix(id: &BlobId) -> u64 {
    u64::from_be_bytes(id.0[..8].try_into().expect("8 bytes"))
}

/// The file name of the run covering these index files (sorted): 32 hex digits of their hash.
pub fn file_name(covered: &[IndexId]) -> String {
    let mut h = blake3::Hasher::new();
    for id in covered {
        h.update(&id.0);
    }
    format!("{}.run", hex::encode(&h.finalize().as_bytes()[..16]))
}

struct Layout {
    head_len: u64,
    blocks: u64,
    filter_blocks: u64,
}

fn layout(entries: u64, packs: u64, covered: u64) -> Layout {
    let blocks = entries.div_ceil(PER_BLOCK as u64);
    let filter_blocks = filter::blocks_for(entries);
    let head_len = HEADER as u64
        + 32 * covered
        + 40 * packs
        + filter::BLOCK_BYTES as u64 * filter_blocks
        + 8 * blocks
        + MAC as u64;
    Layout {
        head_len,
        blocks,
        filter_blocks,
    }
}

/// Writes a run: entries are pushed in id order; [`RunWriter::finish`] writes the head, makes
/// the file durable and gives it its name.
pub struct RunWriter {
    file: File,
    tmp: PathBuf,
    path: PathBuf,
    key: [u8; 32],
    salt: [u8; 16],
    covered: Vec<IndexId>,
    packs: Vec<(PackId, u64)>,
    entries: u64,
    written: u64,
    layout: Layout,
    filter: Filter,
    fanout: Vec<u64>,
    block: Vec<u8>,
    in_block: usize,
    last: Option<BlobId>,
}

impl RunWriter {
    /// Starts a run of exactly `entries` entries in `dir`, covering the index files `covered`
    /// (sorted) with the pack table `packs`.
    pub fn create(
        dir: &Path,
        key: &[u8; 32],
        covered: Vec<IndexId>,
        packs: Vec<(PackId, u64)>,
        entries: u64,
    ) -> io::Result<RunWriter> {
        let mut salt = [0u8; 16];
        crate::crypto::random_bytes(&mut salt).map_err(io::Error::other)?;
        let path = dir.join(file_name(&covered));
        let tmp = dir.join(format!(".tmp-{}", hex::encode(salt)));
        let file = std::fs::OpenOptions::new()
            .mode(0o600)
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        let layout = layout(entries, packs.len() as u64, covered.len() as u64);
        Ok(RunWriter {
            file,
            tmp,
            path,
            key: *key,
            salt,
            covered,
            packs,
            entries,
            written: 0,
            filter: Filter::new(layout.filter_blocks),
            fanout: Vec::with_capacity(layout.blocks as usize),
            layout,
            block: vec![0; BLOCK],
            in_block: 0,
            last: None,
        })
    }

    /// Adds the next entry; entries come in id order (equal ids in the order readers prefer).
    pub fn push(&mut self, e: &Entry) -> io::Result<()> {
        if self.written == self.entries || self.last.is_some_and(|l| l > e.id) {
            return Err(io::Error::other("run entries out of order or too many"));
        }
        if e.pack as usize >= self.packs.len() {
            return Err(io::Error::other("run entry names a pack outside its table"));
        }
        if self.in_block == 0 {
            self.fanout.push(prefix(&e.id));
        }
        e.encode(&mut self.block[self.in_block * ENTRY..(self.in_block + 1) * ENTRY]);
        self.filter.insert(&e.id.0);
        self.last = Some(e.id);
        self.in_block += 1;
        self.written += 1;
        if self.in_block == PER_BLOCK || self.written == self.entries {
            self.flush_block()?;
        }
        Ok(())
    }

    fn flush_block(&mut self) -> io::Result<()> {
        let n = self.fanout.len() as u64 - 1;
        let mac = block_mac(&self.key, &self.salt, n, &self.block[..BLOCK - MAC]);
        self.block[BLOCK - MAC..].copy_from_slice(&mac);
        let at = self.layout.head_len + n * BLOCK as u64;
        self.file.write_all_at(&self.block, at)?;
        self.block.fill(0);
        self.in_block = 0;
        Ok(())
    }

    /// Writes the head, fsyncs and renames the file to its name; returns the opened run.
    pub fn finish(self) -> io::Result<Run> {
        if self.written != self.entries {
            return Err(io::Error::other("run ended before all its entries"));
        }
        let mut head = Vec::with_capacity(self.layout.head_len as usize);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&self.salt);
        head.extend_from_slice(&self.entries.to_le_bytes());
        head.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        head.extend_from_slice(&(self.covered.len() as u32).to_le_bytes());
        head.extend_from_slice(&self.layout.blocks.to_le_bytes());
        head.extend_from_slice(&self.layout.filter_blocks.to_le_bytes());
        head.resize(HEADER, 0);
        for id in &self.covered {
            head.extend_from_slice(&id.0);
        }
        for (id, size) in &self.packs {
            head.extend_from_slice(&id.0);
            head.extend_from_slice(&size.to_le_bytes());
        }
        head.extend_from_slice(&self.filter.to_bytes());
        for p in &self.fanout {
            head.extend_from_slice(&p.to_be_bytes());
        }
        let mac = blake3::keyed_hash(&self.key, &head);
        head.extend_from_slice(mac.as_bytes());
        debug_assert_eq!(head.len() as u64, self.layout.head_len);
        self.file.write_all_at(&head, 0)?;
        (&self.file).flush()?;
        self.file.sync_all()?;
        std::fs::rename(&self.tmp, &self.path)?;
        // Read back as any reader would: what is used is what was written.
        Run::open(&self.path, &self.key)
    }
}

impl Drop for RunWriter {
    fn drop(&mut self) {
        // Unfinished: the temporary file goes (after finish it was renamed and this fails).
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// An open run.
pub struct Run {
    file: File,
    path: PathBuf,
    key: [u8; 32],
    salt: [u8; 16],
    entries: u64,
    data_at: u64,
    covered: Vec<IndexId>,
    packs: Vec<(PackId, u64)>,
    filter: Filter,
    fanout: Vec<u64>,
    /// One bit per block whose MAC this process has checked.
    verified: Vec<AtomicU64>,
}

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

impl Run {
    /// Opens a run file, reading and authenticating its head (not its blocks).
    pub fn open(path: &Path, key: &[u8; 32]) -> io::Result<Run> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut header = [0u8; HEADER];
        file.read_exact_at(&mut header, 0)
            .map_err(|_| invalid("shorter than its header"))?;
        if &header[..8] != MAGIC {
            return Err(invalid("not a run file of this version"));
        }
        let u64_at = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().expect("8"));
        let u32_at = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4"));
        let salt: [u8; 16] = header[8..24].try_into().expect("16 bytes");
        let entries = u64_at(24);
        let packs = u32_at(32) as u64;
        let covered = u32_at(36) as u64;
        if packs > MAX_TABLE || covered > MAX_TABLE || entries > len {
            return Err(invalid("its header is damaged"));
        }
        let lay = layout(entries, packs, covered);
        if u64_at(40) != lay.blocks
            || u64_at(48) != lay.filter_blocks
            || len != lay.head_len + lay.blocks * BLOCK as u64
        {
            return Err(invalid("its length or header is damaged"));
        }
        let mut head = vec![0u8; lay.head_len as usize];
        file.read_exact_at(&mut head, 0)?;
        let body = head.len() - MAC;
        let mac = blake3::keyed_hash(key, &head[..body]);
        if mac.as_bytes()[..] != head[body..] {
            return Err(invalid("its head fails authentication"));
        }
        let mut at = HEADER;
        let mut take = |n: usize| {
            let s = &head[at..at + n];
            at += n;
            s
        };
        let covered_ids = take(32 * covered as usize)
            .chunks_exact(32)
            .map(|c| IndexId(c.try_into().expect("32 bytes")))
            .collect();
        let pack_table = take(40 * packs as usize)
            .chunks_exact(40)
            .map(|c| {
                (
                    PackId(c[..32].try_into().expect("32 bytes")),
                    u64::from_le_bytes(c[32..].try_into().expect("8 bytes")),
                )
            })
            .collect();
        let filter = Filter::from_bytes(take(filter::BLOCK_BYTES * lay.filter_blocks as usize));
        let fanout = take(8 * lay.blocks as usize)
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Ok(Run {
            file,
            path: path.to_path_buf(),
            key: *key,
            salt,
            entries,
            data_at: lay.head_len,
            covered: covered_ids,
            packs: pack_table,
            filter,
            fanout,
            verified: (0..lay.blocks.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
        })
    }

    /// The run's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many entries it holds.
    pub fn len(&self) -> u64 {
        self.entries
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The index files it covers, sorted.
    pub fn covered(&self) -> &[IndexId] {
        &self.covered
    }

    /// Its pack table: what an entry's `pack` numbers.
    pub fn packs(&self) -> &[(PackId, u64)] {
        &self.packs
    }

    /// Bytes it keeps in memory (filter and fan-out).
    pub fn memory(&self) -> usize {
        self.filter.len_bytes() + 8 * self.fanout.len() + 40 * self.packs.len()
    }

    /// Reads block `b` into `buf` and checks its MAC (once per process); returns how many
    /// entries it holds.
    pub fn read_block(&self, b: u64, buf: &mut [u8; BLOCK]) -> io::Result<usize> {
        self.file
            .read_exact_at(buf, self.data_at + b * BLOCK as u64)?;
        let (word, bit) = ((b / 64) as usize, 1u64 << (b % 64));
        if self.verified[word].load(Ordering::Relaxed) & bit == 0 {
            let mac = block_mac(&self.key, &self.salt, b, &buf[..BLOCK - MAC]);
            if mac[..] != buf[BLOCK - MAC..] {
                return Err(invalid(format!("block {b} fails authentication")));
            }
            self.verified[word].fetch_or(bit, Ordering::Relaxed);
        }
        Ok((self.entries - b * PER_BLOCK as u64).min(PER_BLOCK as u64) as usize)
    }

    fn entry_in(buf: &[u8], i: usize) -> io::Result<Entry> {
        Entry::decode(&buf[i * ENTRY..(i + 1) * ENTRY]).ok_or_else(|| invalid("bad entry kind"))
    }

    /// The first entry with this id and its position in the run, if the run lists the id.
    /// Blocks come through `cache` (`tag` tells this run's blocks from other runs').
    pub fn find(
        &self,
        id: &BlobId,
        cache: &BlockCache,
        tag: u32,
    ) -> io::Result<Option<(u64, Entry)>> {
        if self.entries == 0 || !self.filter.may_contain(&id.0) {
            return Ok(None);
        }
        let p = prefix(id);
        // The first block starting at or after the id's prefix; the id's first copy is at the
        // end of the block before it, or (equal prefixes) at the start of that block.
        let lo = self.fanout.partition_point(|&f| f < p) as u64;
        let mut buf = [0u8; BLOCK];
        let mut b = lo.saturating_sub(1);
        while b < self.fanout.len() as u64 {
            if b >= lo && self.fanout[b as usize] > p {
                break;
            }
            let n = cache.read(self, tag, b, &mut buf)?;
            let ids = |i: usize| &buf[i * ENTRY..i * ENTRY + 32];
            let at = {
                let (mut l, mut h) = (0, n);
                while l < h {
                    let m = (l + h) / 2;
                    if ids(m) < &id.0[..] {
                        l = m + 1;
                    } else {
                        h = m;
                    }
                }
                l
            };
            if at < n {
                if ids(at) == &id.0[..] {
                    let e = Self::entry_in(&buf, at)?;
                    return Ok(Some((b * PER_BLOCK as u64 + at as u64, e)));
                }
                return Ok(None);
            }
            b += 1;
        }
        Ok(None)
    }

    /// Every entry in id order, read a block at a time.
    pub fn iter(&self) -> RunIter<'_> {
        RunIter {
            run: self,
            buf: Box::new([0; BLOCK]),
            block: 0,
            in_block: 0,
            n: 0,
        }
    }
}

/// Reads a run's entries in order; see [`Run::iter`].
pub struct RunIter<'a> {
    run: &'a Run,
    buf: Box<[u8; BLOCK]>,
    block: u64,
    in_block: usize,
    n: usize,
}

impl Iterator for RunIter<'_> {
    type Item = io::Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.in_block == self.n {
            if self.block >= self.run.fanout.len() as u64 {
                return None;
            }
            match self.run.read_block(self.block, &mut self.buf) {
                Ok(n) => self.n = n,
                Err(e) => {
                    self.block = u64::MAX;
                    return Some(Err(e));
                }
            }
            self.block += 1;
            self.in_block = 0;
        }
        let e = Run::entry_in(&self.buf[..], self.in_block);
        self.in_block += 1;
        Some(e)
    }
}

/// Slots of the [`BlockCache`]: at most 8 MiB of blocks, whatever the repository's size.
const CACHE_SLOTS: usize = 8192;

/// A bounded cache of verified blocks, direct-mapped by (run, block). A small repository's
/// runs fit in it whole, so its lookups cost no system call; a large one's lookups hit it as
/// often as its size allows, and memory stays at most 8192 blocks (8 MiB).
pub struct BlockCache {
    slots: Vec<std::sync::Mutex<Option<CachedBlock>>>,
}

/// A cached block: its key ((run tag << 40) | block number) and its verified bytes.
type CachedBlock = (u64, Box<[u8; BLOCK]>);

impl Default for BlockCache {
    fn default() -> Self {
        BlockCache {
            slots: (0..CACHE_SLOTS)
                .map(|_| std::sync::Mutex::new(None))
                .collect(),
        }
    }
}

impl BlockCache {
    /// Block `b` of `run` into `buf` (verified), from the cache or the run; returns how many
    /// entries it holds.
    pub fn read(&self, run: &Run, tag: u32, b: u64, buf: &mut [u8; BLOCK]) -> io::Result<usize> {
        let key = (u64::from(tag) << 40) | b;
        let slot =
            &self.slots[(key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 51) as usize % CACHE_SLOTS];
        let entries = (run.entries - b * PER_BLOCK as u64).min(PER_BLOCK as u64) as usize;
        {
            let held = slot.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((k, data)) = held.as_ref() {
                if *k == key {
                    buf.copy_from_slice(&data[..]);
                    return Ok(entries);
                }
            }
        }
        let n = run.read_block(b, buf)?;
        let mut held = slot.lock().unwrap_or_else(|p| p.into_inner());
        match held.as_mut() {
            Some((k, data)) => {
                *k = key;
                data.copy_from_slice(&buf[..]);
            }
            None => *held = Some((key, Box::new(*buf))),
        }
        Ok(n)
    }

    /// Forgets every block (the runs were replaced: tags now name other runs).
    pub fn clear(&self) {
        for s in &self.slots {
            *s.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}

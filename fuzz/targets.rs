//! What each fuzz target does with its bytes, in one place.
//!
//! Included as a module (`#[path]`) by every `fuzz/fuzz_targets/*.rs` (libFuzzer, via
//! cargo fuzz), by `fuzz/examples/gen_seeds.rs` (the seed corpus) and by
//! `tests/fuzz_replay.rs` (stable `cargo test`: the seed corpus plus deterministic mutations).
//! It uses nothing but `cairn`, `serde` (derive) and std, so all three can compile it. It also
//! installs a global allocator that aborts on any single allocation over [`MAX_ALLOCATION`], in
//! the fuzz targets and in the replay test alike.
//!
//! Every function takes arbitrary bytes and must return without panicking; errors are fine.
//! Where a parser promises something about what it accepts (a pack header's entries lie inside
//! the blob area, a decoded tree re-encodes, ...) the function asserts it, so a broken promise
//! is a crash too. Sealed objects are fuzzed two ways: as raw bytes under a fixed key (they must
//! fail to open unless they are one of the seeds, never panic), and as plaintext that the
//! harness seals itself, which is where the structure is.

#![allow(dead_code)]

use std::sync::OnceLock;

use cairn::format::chunker::{Chunker, ChunkerParams};
use cairn::format::crypto::{
    key_file_params, open_key_file, KdfParams, MasterKeys, ObjectKind, SEAL_OVERHEAD,
};
use cairn::format::id::{BlobId, TreeId};
use cairn::format::index::IndexFile;
use cairn::format::pack::{
    header_len_from_trailer, open_blob, parse_header, read_pack, BlobKind, PackEntry,
    MAX_HEADER_LEN, TRAILER_LEN,
};
use cairn::format::{
    compress_body, decode_object, decompress_body, encode_object, from_msgpack, to_msgpack_compact,
    to_msgpack_named, Compression, Expect, MAX_METADATA_LEN,
};
use cairn::index::Index;
use cairn::repo::config::{RepoConfig, FORMAT_VERSION, MAX_PACK_SIZE, MIN_PACK_SIZE};
use cairn::repo::lock::{is_stale, LockInfo};
use cairn::snapshot::tree::Tree;
use cairn::snapshot::{Snapshot, SNAPSHOT_VERSION};

/// Largest single allocation any target may make. The readers bound every allocation by what
/// they expect (16 MiB chunks, 64 MiB pack headers here; a forged sealed object never gets as
/// far as the 1 GiB metadata bound); anything past this is a runaway allocation driven by the
/// input. libFuzzer's -malloc_limit_mb needs a sanitizer's malloc hooks, which a stable build
/// lacks, so the check is a global allocator: it reports and aborts (a crash libFuzzer saves).
pub const MAX_ALLOCATION: usize = 256 << 20;

struct CappedAllocator;

#[global_allocator]
static ALLOCATOR: CappedAllocator = CappedAllocator;

fn check_allocation(size: usize) {
    if size > MAX_ALLOCATION {
        // No allocation on this path: the digits go through a stack buffer.
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        let mut n = size;
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        use std::io::Write;
        let mut e = std::io::stderr();
        let _ = e.write_all(b"\nfuzz/targets.rs: allocation of ");
        let _ = e.write_all(&buf[i..]);
        let _ = e.write_all(b" bytes exceeds MAX_ALLOCATION: an input-driven runaway allocation\n");
        std::process::abort();
    }
}

// SAFETY: defers to the system allocator for everything; only refuses oversized requests.
unsafe impl std::alloc::GlobalAlloc for CappedAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        check_allocation(layout.size());
        std::alloc::System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        check_allocation(layout.size());
        std::alloc::System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        check_allocation(new_size);
        std::alloc::System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        std::alloc::System.dealloc(ptr, layout)
    }
}

/// A fuzz target: arbitrary bytes in, no panic; true when the main parser accepted them (the
/// replay test checks that every seed is accepted).
pub type Target = fn(&[u8]) -> bool;

/// Every target by name; the name is also its directory under `fuzz/corpus-seed/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("pack", pack),
    ("pack_header", pack_header),
    ("sealed", sealed),
    ("envelope", envelope),
    ("index", index),
    ("tree", tree),
    ("snapshot", snapshot),
    ("key_file", key_file),
    ("config", config),
    ("lock", lock),
];

/// The fixed master keys every sealed seed is made with (those of repo-format.md §13.1).
pub fn keys() -> &'static MasterKeys {
    static KEYS: OnceLock<MasterKeys> = OnceLock::new();
    KEYS.get_or_init(|| MasterKeys::new([1; 32], [2; 32], [3; 32]))
}

/// The password of the seed key files.
pub const KEY_PASSWORD: &[u8] = b"fuzz";

/// The tree id handed to `Tree::decode` (it only names the tree in errors).
pub const TREE_ID: TreeId = TreeId(BlobId([0; 32]));

/// Bounds the readers use (src/repo.rs, src/lock.rs, src/pack.rs).
pub const CONFIG_MAX: usize = 1 << 20;
pub const LOCK_MAX: usize = 64 * 1024;
pub const HEADER_MAX: usize = MAX_HEADER_LEN * 4;

// ---------------------------------------------------------------------------------------------
// Packs

/// A whole pack file as stored: `read_pack` (trailer, sealed header, entry checks), then every
/// blob it lists opened and, for tree blobs, decoded. Also the trailer and header parsers on
/// their own, the way `check` reads a pack with two ranged reads.
pub fn pack(data: &[u8]) -> bool {
    let keys = keys();
    let read = read_pack(keys, data);
    if let Ok(entries) = &read {
        let hl = header_len_from_trailer(&data[data.len() - TRAILER_LEN..], data.len() as u64)
            .expect("read_pack accepted a pack whose trailer header_len_from_trailer refuses");
        check_entries(entries, (data.len() - TRAILER_LEN - hl) as u64);
        for e in entries {
            let start = e.offset as usize;
            let sealed = &data[start..start + e.length as usize];
            if let Ok(plain) = open_blob(keys, e, sealed) {
                assert_eq!(
                    plain.len(),
                    e.raw_length as usize,
                    "open_blob: wrong length"
                );
                if e.kind == BlobKind::Tree {
                    tree_with_id(&plain, &TreeId(e.id));
                }
            }
        }
    }
    // The trailer parser with a pack length that need not be the input's.
    if data.len() >= TRAILER_LEN + 8 {
        let len = u64::from_le_bytes(data[TRAILER_LEN..TRAILER_LEN + 8].try_into().expect("8"));
        if let Ok(hl) = header_len_from_trailer(&data[..TRAILER_LEN], len) {
            assert!(hl > SEAL_OVERHEAD && hl <= MAX_HEADER_LEN && (hl + TRAILER_LEN) as u64 <= len);
        }
    }
    // The header parser on the input as a sealed header, in a pack at least that long.
    if let Ok(entries) = parse_header(keys, data, (data.len() + TRAILER_LEN) as u64) {
        check_entries(&entries, 0);
    }
    read.is_ok()
}

/// A pack header's plaintext, sealed by the harness: `u32 LE blob-area length || MessagePack
/// of [PackEntry]`. `parse_header` must accept only entries inside the blob area without
/// overlap, and `read_pack` on a whole pack built around it must agree.
pub fn pack_header(data: &[u8]) -> bool {
    if data.len() < 4 {
        pack_header_plain(data);
        return false;
    }
    let blob_area = u32::from_le_bytes(data[..4].try_into().expect("4")) as u64;
    let plain = &data[4..];
    pack_header_plain(plain);
    let keys = keys();
    let Ok(sealed) = encode_object(keys, ObjectKind::PackHeader, &[], plain, Compression::Auto)
    else {
        return false;
    };
    let pack_len = blob_area + (sealed.len() + TRAILER_LEN) as u64;
    let parsed = parse_header(keys, &sealed, pack_len);
    if let Ok(entries) = &parsed {
        check_entries(entries, blob_area);
    }
    // Small enough to build the whole pack in memory: zeros, the header, its length.
    if blob_area <= 1 << 16 {
        let mut whole = vec![0u8; blob_area as usize];
        whole.extend_from_slice(&sealed);
        whole.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        let read = read_pack(keys, &whole);
        assert_eq!(
            read.as_ref().ok(),
            parsed.as_ref().ok(),
            "read_pack and parse_header disagree"
        );
    }
    parsed.is_ok()
}

/// What `parse_header` promises about the entries it returns.
fn check_entries(entries: &[PackEntry], blob_area: u64) {
    let mut end = 0u64;
    for e in entries {
        let start = e.offset as u64;
        assert!(start >= end, "pack entries overlap or are unsorted");
        assert!(
            e.length as usize > SEAL_OVERHEAD,
            "pack entry shorter than a sealed byte"
        );
        end = start + e.length as u64;
        assert!(end <= blob_area, "pack entry outside the blob area");
    }
}

/// A pack header's plaintext as `from_msgpack` reads it.
pub fn pack_header_plain(plain: &[u8]) -> bool {
    let Ok(entries) = from_msgpack::<Vec<PackEntry>>(plain, "pack header") else {
        return false;
    };
    let again = to_msgpack_compact(&entries).expect("a decoded pack header re-encodes");
    let back: Vec<PackEntry> =
        from_msgpack(&again, "pack header").expect("a re-encoded pack header decodes");
    assert_eq!(back, entries);
    true
}

// ---------------------------------------------------------------------------------------------
// Sealed objects and the envelope

/// A stored object's raw bytes, tried as every kind sealed with the repository key. Forged
/// bytes never open; when they do (a seed), the plaintext goes to that kind's parser.
pub fn sealed(data: &[u8]) -> bool {
    let keys = keys();
    let mut accepted = false;
    let kinds: [(ObjectKind, usize, Target); 6] = [
        (ObjectKind::Config, CONFIG_MAX, config),
        (ObjectKind::PackHeader, HEADER_MAX, pack_header_plain),
        (ObjectKind::Index, MAX_METADATA_LEN, index),
        (ObjectKind::Snapshot, MAX_METADATA_LEN, snapshot),
        (ObjectKind::Lock, LOCK_MAX, lock),
        (ObjectKind::Drill, MAX_METADATA_LEN, |_| true),
    ];
    for (kind, max, parse) in kinds {
        if let Ok(plain) = decode_object(keys, kind, &[], data, Expect::AtMost(max)) {
            accepted |= parse(&plain);
        }
    }
    // Blobs are bound to their id: try the two kinds with the id of the blob's own plaintext
    // (a forger would need the key for that id) and with the last 32 bytes as the id.
    for kind in [BlobKind::Data, BlobKind::Tree] {
        let binding: [u8; 32] = match data.len().checked_sub(32) {
            Some(at) => data[at..].try_into().expect("32"),
            None => [0; 32],
        };
        let entry = PackEntry {
            kind,
            id: BlobId(binding),
            offset: 0,
            length: data.len() as u32,
            raw_length: data.len().saturating_sub(SEAL_OVERHEAD + 1) as u32,
        };
        let _ = open_blob(keys, &entry, data);
    }
    accepted
}

/// The envelope (flag byte, then the body raw or zstd) as the readers decompress it:
/// `u32 LE selector || envelope`. The selector's low 2 bits pick a caller's bound: exact
/// (a blob's raw length, the selector's other bits, at most 16 MiB: the largest chunk),
/// a lock's, the config's or a pack header's. Sealing the same envelope and opening it with
/// `decode_object` must give the same answer; `compress_body` of the input must round-trip.
pub fn envelope(data: &[u8]) -> bool {
    let Some((sel, body)) = data.split_first_chunk::<4>() else {
        return false;
    };
    let sel = u32::from_le_bytes(*sel);
    let expect = match sel & 3 {
        0 => Expect::Exact(((sel >> 2) as usize).min(16 << 20)),
        1 => Expect::AtMost(LOCK_MAX),
        2 => Expect::AtMost(CONFIG_MAX),
        _ => Expect::AtMost(HEADER_MAX),
    };
    let direct = decompress_body(body.to_vec(), expect);
    if let Ok(out) = &direct {
        match expect {
            Expect::Exact(n) => assert_eq!(out.len(), n, "decompress_body: not the exact length"),
            Expect::AtMost(n) => assert!(out.len() <= n, "decompress_body: longer than allowed"),
        }
    }
    let keys = keys();
    let sealed = keys
        .seal(ObjectKind::Snapshot, &[], body)
        .expect("sealing a small envelope");
    let opened = decode_object(keys, ObjectKind::Snapshot, &[], &sealed, expect);
    assert_eq!(
        opened.as_ref().ok(),
        direct.as_ref().ok(),
        "decode_object and decompress_body disagree"
    );
    for c in [Compression::Off, Compression::Auto, Compression::Zstd(1)] {
        let env = compress_body(body, c);
        let back = decompress_body(env, Expect::Exact(body.len()))
            .expect("compress_body's output decompresses");
        assert_eq!(back, body, "compress_body round trip");
    }
    direct.is_ok()
}

// ---------------------------------------------------------------------------------------------
// Plaintext parsers

/// An index file's plaintext: decoded, made into an `Index` (a sorted run), and re-encoded.
pub fn index(data: &[u8]) -> bool {
    let Ok(file) = from_msgpack::<IndexFile>(data, "index") else {
        return false;
    };
    let mut idx = Index::new();
    idx.add_index_file(cairn::format::id::IndexId([0; 32]), &file)
        .expect("any decoded index file makes a run");
    for p in &file.packs {
        for b in &p.blobs {
            let loc = idx.get(&b.id).expect("an indexed blob is found");
            assert!(idx.contains(&b.id));
            assert!(idx.packs().iter().any(|(id, _)| *id == loc.pack));
        }
    }
    let by_pack = idx.entries_by_pack().expect("the run reads back");
    assert!(by_pack.len() <= file.packs.len());
    let again = to_msgpack_compact(&file).expect("a decoded index file re-encodes");
    assert_eq!(
        from_msgpack::<IndexFile>(&again, "index").ok().as_ref(),
        Some(&file),
        "index file round trip"
    );
    true
}

/// A tree blob's plaintext: `Tree::decode` (MessagePack + validation). A tree it accepts
/// must encode (encode refuses invalid trees) and decode back to itself.
pub fn tree(data: &[u8]) -> bool {
    tree_with_id(data, &TREE_ID)
}

fn tree_with_id(data: &[u8], id: &TreeId) -> bool {
    let Ok(t) = Tree::decode(data, id) else {
        return false;
    };
    let again = t.encode().expect("a tree that decoded re-encodes");
    let back = Tree::decode(&again, id).expect("a re-encoded tree decodes");
    assert_eq!(back, t, "tree round trip");
    for n in &t.nodes {
        assert!(t.find(&n.name).is_some(), "Tree::find misses a node");
        let _ = n.chunks().count();
        let _ = n.link_group();
        let _ = (
            n.mtime.as_nanos(),
            n.ctime.as_nanos(),
            n.kind.name(),
            n.kind.letter(),
        );
    }
    true
}

/// A snapshot's plaintext, as `Repository::read_snapshot` reads it.
pub fn snapshot(data: &[u8]) -> bool {
    let Ok(s) = from_msgpack::<Snapshot>(data, "snapshot") else {
        return false;
    };
    if s.version == 0 || s.version > SNAPSHOT_VERSION {
        return false;
    }
    // Byte comparison: a NaN duration is not equal to itself.
    let again = to_msgpack_named(&s).expect("a decoded snapshot re-encodes");
    let back: Snapshot = from_msgpack(&again, "snapshot").expect("a re-encoded snapshot decodes");
    assert_eq!(
        to_msgpack_named(&back).ok().as_ref(),
        Some(&again),
        "snapshot round trip"
    );
    let _ = s.mode.name();
    true
}

/// The config's plaintext, as `decode_config` and `Repository::open` in src/repo.rs check it
/// (a version-only decode first, then the whole config, compression, chunker bounds, pack
/// size). Both are private, so this repeats their steps: keep it in step with src/repo.rs.
/// A config that passes must be usable: backup builds its chunker from it.
pub fn config(data: &[u8]) -> bool {
    let Ok(v) = from_msgpack::<VersionOnly>(data, "config") else {
        return false;
    };
    if v.version > FORMAT_VERSION || v.version == 0 {
        return false;
    }
    let Ok(c) = from_msgpack::<RepoConfig>(data, "config") else {
        return false;
    };
    if c.compression.parse::<Compression>().is_err()
        || c.chunker.validate().is_err()
        || !(MIN_PACK_SIZE..=MAX_PACK_SIZE).contains(&c.pack_size)
    {
        return false;
    }
    use_chunker(c.chunker);
    let again = to_msgpack_named(&c).expect("a decoded config re-encodes");
    assert_eq!(
        from_msgpack::<RepoConfig>(&again, "config").ok().as_ref(),
        Some(&c),
        "config round trip"
    );
    true
}

/// decode_config's first look (src/repo.rs): the version alone.
#[derive(serde::Deserialize)]
struct VersionOnly {
    version: u32,
}

/// What backup does with a validated config's chunker parameters.
pub fn use_chunker(p: ChunkerParams) {
    for chunk in Chunker::new(&b"cairn fuzz"[..], p, keys().chunker_seed()) {
        let _ = chunk;
    }
}

/// A lock file's plaintext, as `list_locks` reads it, and what lock holders do with it.
pub fn lock(data: &[u8]) -> bool {
    let Ok(l) = from_msgpack::<LockInfo>(data, "lock") else {
        return false;
    };
    let _ = l.describe();
    // Same host: checks the PID with signal 0 (sends nothing); other host: the time.
    let _ = is_stale(&l, "cairn-fuzz-host", "cairn-fuzz-boot");
    let _ = is_stale(&l, &l.host, "");
    true
}

/// A key file: parsed and validated without the password always; opened with Argon2 (which
/// costs what the file asks) only when its parameters are the smallest allowed, and then the
/// copy of the config it carries goes through the config target.
pub fn key_file(data: &[u8]) -> bool {
    key_file_opts(data, true)
}

/// [`key_file`], with Argon2 only when `derive` (the replay test rations it). True when the
/// file parses, and, if derived, opens with [`KEY_PASSWORD`] to the fixed keys.
pub fn key_file_opts(data: &[u8], derive: bool) -> bool {
    let Ok(p) = key_file_params(data) else {
        return false;
    };
    p.validate()
        .expect("key_file_params returned parameters that do not validate");
    if derive && is_cheap(&p) {
        return match open_key_file(data, KEY_PASSWORD) {
            Ok((k, info)) => {
                assert_eq!(info.params, p);
                // The copy of the sealed config a key file carries is read like the config
                // file when that is damaged (Repository::open).
                if let Some(copy) = &info.config_copy {
                    if let Ok(plain) = decode_object(
                        &k,
                        ObjectKind::Config,
                        &[],
                        copy,
                        Expect::AtMost(CONFIG_MAX),
                    ) {
                        config(&plain);
                    }
                }
                k == *keys()
            }
            Err(_) => false,
        };
    }
    true
}

/// Argon2id at 8 MiB, 1 pass: a few milliseconds optimized.
pub fn is_cheap(p: &KdfParams) -> bool {
    p.m_cost_kib == KdfParams::MIN_M_COST_KIB && p.t_cost == 1 && p.p_cost <= 2
}

// ---------------------------------------------------------------------------------------------
// Mutations: the stable replay test's mutator (tests/fuzz_replay.rs), and the MessagePack-aware
// step the libFuzzer targets add to libFuzzer's own mutations.

/// xorshift64*: deterministic, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    pub fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Bytes that mean something to MessagePack, zstd and the length fields.
pub const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0xff, 0xc0, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xca, 0xcb, 0xcc, 0xcd, 0xce,
    0xcf, 0xd0, 0xd3, 0xd9, 0xdc, 0xdd, 0xde, 0xdf, 0x90, 0x9f, 0x80, 0x8f, 0xa0, 0xbf, 0x28, 0xb5,
    0x2f, 0xfd,
];

/// MessagePack integers at the edges the parsers care about: 0, fixint ends, -1, the chunker
/// and KDF bounds ± 1, and the ends of every width.
pub const EDGE_INTS: &[&[u8]] = &[
    &[0x00],
    &[0x01],
    &[0x7f],
    &[0xff],
    &[0xcc, 0xff],
    &[0xcd, 0x03, 0xff],
    &[0xcd, 0x04, 0x00],
    &[0xcd, 0x1f, 0xff],
    &[0xcd, 0xff, 0xff],
    &[0xce, 0x00, 0x10, 0x00, 0x01],
    &[0xce, 0x00, 0x40, 0x00, 0x01],
    &[0xce, 0x01, 0x00, 0x00, 0x01],
    &[0xce, 0x7f, 0xff, 0xff, 0xff],
    &[0xce, 0xff, 0xff, 0xff, 0xff],
    &[0xcf, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00],
    &[0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0xd0, 0x80],
    &[0xd2, 0x80, 0x00, 0x00, 0x00],
    &[0xd3, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
    &[0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
];

/// Where the integers are in `v` read as a sequence of MessagePack values (containers are
/// walked into, strings and binaries skipped), as `(start, length)`; stops at the first byte
/// that cannot start a value.
pub fn msgpack_ints(v: &[u8]) -> Vec<(usize, usize)> {
    let be = |at: usize, n: usize| -> Option<usize> {
        let b = v.get(at..at + n)?;
        Some(b.iter().fold(0usize, |acc, &x| (acc << 8) | x as usize))
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let m = v[i];
        let (len, int) = match m {
            0x00..=0x7f | 0xe0..=0xff => (1, true),
            0x80..=0x9f | 0xc0 | 0xc2 | 0xc3 => (1, false),
            0xa0..=0xbf => (1 + (m & 0x1f) as usize, false),
            0xcc | 0xd0 => (2, true),
            0xcd | 0xd1 => (3, true),
            0xce | 0xd2 => (5, true),
            0xcf | 0xd3 => (9, true),
            0xca => (5, false),
            0xcb => (9, false),
            0xd4..=0xd8 => (2 + (1 << (m - 0xd4)), false),
            0xc4 | 0xd9 => match be(i + 1, 1) {
                Some(n) => (2 + n, false),
                None => break,
            },
            0xc5 | 0xda => match be(i + 1, 2) {
                Some(n) => (3 + n, false),
                None => break,
            },
            0xc6 | 0xdb => match be(i + 1, 4) {
                Some(n) => (5 + n, false),
                None => break,
            },
            0xc7 => match be(i + 1, 1) {
                Some(n) => (3 + n, false),
                None => break,
            },
            0xc8 => match be(i + 1, 2) {
                Some(n) => (4 + n, false),
                None => break,
            },
            0xc9 => match be(i + 1, 4) {
                Some(n) => (6 + n, false),
                None => break,
            },
            0xdc | 0xde => (3, false),
            0xdd | 0xdf => (5, false),
            0xc1 => break,
        };
        if i + len > v.len() {
            break;
        }
        if int {
            out.push((i, len));
        }
        i += len;
    }
    out
}

/// Swaps one of the MessagePack integers in `v[skip..]` for an edge value: the structure stays
/// valid and one field gets an extreme value, which byte-level mutators hardly ever produce
/// (an integer's encoding changes length with its value). False when there is none.
pub fn replace_msgpack_int(v: &mut Vec<u8>, skip: usize, rng: &mut Rng) -> bool {
    let Some(tail) = v.get(skip..) else {
        return false;
    };
    let ints = msgpack_ints(tail);
    if ints.is_empty() {
        return false;
    }
    let (i, n) = ints[rng.below(ints.len())];
    let edge = EDGE_INTS[rng.below(EDGE_INTS.len())];
    v.splice(skip + i..skip + i + n, edge.iter().copied());
    true
}

/// For a libFuzzer custom mutator (`fuzz_mutator!` in the MessagePack targets): replaces an
/// integer of `data[skip..size]` in place; the new size, or None when there is no integer or
/// the result would not fit `max_size` (then the caller uses libFuzzer's own mutations).
pub fn mutate_msgpack_in_place(
    data: &mut [u8],
    size: usize,
    max_size: usize,
    seed: u32,
    skip: usize,
) -> Option<usize> {
    let mut v = data.get(..size)?.to_vec();
    let mut rng = Rng(u64::from(seed) | 1 << 63);
    rng.next();
    if !replace_msgpack_int(&mut v, skip, &mut rng) || v.len() > max_size.min(data.len()) {
        return None;
    }
    data[..v.len()].copy_from_slice(&v);
    Some(v.len())
}

/// One to four stacked mutations of `seed` (`other` is another seed, for splicing).
pub fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(14) {
            11..=13 if !v.is_empty() => {
                // Inputs that are not MessagePack (packs, sealed objects) have few or no
                // integers and get a bit flip instead.
                if !replace_msgpack_int(&mut v, 0, rng) {
                    let i = rng.below(v.len());
                    v[i] ^= 1 << rng.below(8);
                }
            }
            0 | 1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.byte();
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            4 => {
                let cut = rng.below(v.len() + 1);
                v.truncate(cut);
            }
            5 if !v.is_empty() => {
                let a = rng.below(v.len());
                let b = (a + 1 + rng.below(16)).min(v.len());
                v.drain(a..b);
            }
            6 => {
                let at = rng.below(v.len() + 1);
                let n = 1 + rng.below(8);
                let ins: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
                v.splice(at..at, ins);
            }
            7 if !v.is_empty() => {
                // Duplicate a range (repeated structures, longer arrays).
                let a = rng.below(v.len());
                let b = (a + 1 + rng.below(32)).min(v.len());
                let dup = v[a..b].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, dup);
            }
            8 if !v.is_empty() => {
                // A u32 at a random place set to an edge value, little-endian (trailers,
                // selectors) or big-endian (MessagePack).
                let i = rng.below(v.len());
                let edge = [0u32, 1, 0x7fff_ffff, 0x8000_0000, u32::MAX, 1 << 24][rng.below(6)];
                let bytes = if rng.below(2) == 0 {
                    edge.to_le_bytes()
                } else {
                    edge.to_be_bytes()
                };
                for (k, b) in bytes.iter().enumerate() {
                    if let Some(x) = v.get_mut(i + k) {
                        *x = *b;
                    }
                }
            }
            9 if !other.is_empty() => {
                // Splice: our head, the other seed's tail.
                let a = rng.below(v.len() + 1);
                let b = rng.below(other.len());
                v.truncate(a);
                v.extend_from_slice(&other[b..]);
            }
            10 => {
                let n = rng.below(64);
                v = (0..n).map(|_| rng.byte()).collect();
            }
            _ => {
                let at = rng.below(v.len() + 1);
                v.insert(at, INTERESTING[rng.below(INTERESTING.len())]);
            }
        }
    }
    v
}

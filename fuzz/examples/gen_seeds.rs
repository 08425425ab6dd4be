//! Writes the seed corpus: a few valid inputs per fuzz target, made with the library itself.
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds -- fuzz/corpus-seed
//!
//! Sealed seeds use the fixed keys of `targets::keys()` and fresh random nonces, so a rerun
//! writes different bytes with the same meaning. Each target's directory is emptied first.

use std::fs;
use std::path::{Path, PathBuf};

use cairn::chunker::ChunkerParams;
use cairn::config::{RepoConfig, DEFAULT_PACK_SIZE, FORMAT_VERSION};
use cairn::crypto::{make_key_file, KdfParams, MasterKeys, ObjectKind};
use cairn::format::{
    compress_body, encode_object, to_msgpack_compact, to_msgpack_named, Compression,
};
use cairn::id::{BlobId, IndexId, PackId, RepoId, SnapshotId, TreeId};
use cairn::index::{IndexFile, IndexPack};
use cairn::lock::LockInfo;
use cairn::pack::{seal_blob, BlobKind, PackEntry, PackWriter};
use cairn::snapshot::{BackupMode, Snapshot, Summary, SNAPSHOT_VERSION};
use cairn::tree::{ContentPart, Node, NodeKind, Timestamp, Tree, Xattr};

#[path = "../targets.rs"]
mod targets;

type Seeds = Vec<(&'static str, Vec<u8>)>;

fn main() {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus-seed".into()),
    );
    let keys = targets::keys();

    let sub = sample_tree(None);
    let sub_bytes = sub.encode().expect("subtree encodes");
    let sub_id = TreeId(keys.tree_id(&sub_bytes));
    let root = sample_tree(Some(sub_id));
    let root_bytes = root.encode().expect("tree encodes");
    let root_id = TreeId(keys.tree_id(&root_bytes));

    // Packs: three blobs (small data, compressible data, a tree), and one raw blob.
    let big: Vec<u8> = (0..5000u32)
        .map(|i| (i % 251) as u8 ^ (i / 700) as u8)
        .collect();
    let blobs: Vec<(BlobKind, &[u8])> = vec![
        (BlobKind::Data, b"first"),
        (BlobKind::Data, &big),
        (BlobKind::Tree, &sub_bytes),
    ];
    let (pack3, entries3) = make_pack(keys, &blobs, Compression::Auto);
    let (pack1, entries1) = make_pack(keys, &[(BlobKind::Tree, &root_bytes)], Compression::Off);
    let hdr3 = to_msgpack_compact(&entries3).expect("header");
    let hdr1 = to_msgpack_compact(&entries1).expect("header");
    let area = |p: &[u8], e: &[PackEntry]| -> u32 {
        e.iter()
            .map(|e| e.offset + e.length)
            .max()
            .unwrap_or(0)
            .min(p.len() as u32)
    };

    let index = IndexFile {
        supersedes: vec![IndexId([9; 32])],
        packs: vec![
            IndexPack {
                id: PackId(cairn::id::content_hash(&pack3)),
                size: pack3.len() as u64,
                blobs: entries3.clone(),
            },
            IndexPack {
                id: PackId(cairn::id::content_hash(&pack1)),
                size: pack1.len() as u64,
                blobs: entries1.clone(),
            },
        ],
    };
    let index_bytes = to_msgpack_compact(&index).expect("index");
    let empty_index = to_msgpack_compact(&IndexFile::default()).expect("index");

    let snap = Snapshot {
        version: SNAPSHOT_VERSION,
        time_ns: 1_700_000_000_123_456_789,
        tz_offset_s: 3600,
        host: "fuzz-host".into(),
        user: "fuzzer".into(),
        uid: 1000,
        gid: 1000,
        paths: vec!["/home/fuzzer/docs".into(), "/etc".into()],
        tags: vec!["daily".into()],
        tree: root_id,
        parent: Some(SnapshotId([4; 32])),
        mode: BackupMode::Incremental,
        program_version: "0.1.0".into(),
        summary: Summary {
            files_new: 3,
            files_changed: 1,
            dirs: 2,
            bytes_read: 5005,
            total_bytes_processed: 5005,
            total_files: 4,
            data_added: 5005,
            data_added_stored: 700,
            blobs_added: 3,
            duration_s: 0.25,
            ..Summary::default()
        },
        notes: vec!["removed 1 missing file".into()],
        partial: true,
        original: Some(SnapshotId([5; 32])),
        copied_from: Some(SnapshotId([7; 32])),
    };
    let snap_bytes = to_msgpack_named(&snap).expect("snapshot");
    let snap_min = to_msgpack_named(&Snapshot {
        parent: None,
        mode: BackupMode::Full,
        notes: vec![],
        partial: false,
        original: None,
        copied_from: None,
        tags: vec![],
        summary: Summary::default(),
        ..snap.clone()
    })
    .expect("snapshot");

    let config = RepoConfig {
        version: FORMAT_VERSION,
        id: RepoId([6; 32]),
        chunker: ChunkerParams::default(),
        compression: "auto".into(),
        pack_size: DEFAULT_PACK_SIZE,
    };
    let config_bytes = to_msgpack_named(&config).expect("config");
    let config_small = to_msgpack_named(&RepoConfig {
        chunker: ChunkerParams {
            min: 1024,
            avg: 4096,
            max: 16384,
        },
        compression: "zstd:7".into(),
        pack_size: 1 << 20,
        ..config.clone()
    })
    .expect("config");

    // The chunker bounds at both ends of what validate() allows.
    let config_least = to_msgpack_named(&RepoConfig {
        chunker: ChunkerParams {
            min: 64,
            avg: 256,
            max: 1024,
        },
        compression: "off".into(),
        ..config.clone()
    })
    .expect("config");
    let config_most = to_msgpack_named(&RepoConfig {
        chunker: ChunkerParams {
            min: 1 << 20,
            avg: 4 << 20,
            max: 16 << 20,
        },
        compression: "zstd:19".into(),
        pack_size: 512 << 20,
        ..config.clone()
    })
    .expect("config");

    let lock_x = LockInfo {
        exclusive: true,
        host: "fuzz-host".into(),
        pid: 4242,
        boot_id: "0b8c4e2e-1f7a-4c55-9a0e-3c1d2b7f6e10".into(),
        time_ns: 1_700_000_000_000_000_000,
        command: "prune".into(),
    };
    let lock_x_bytes = to_msgpack_named(&lock_x).expect("lock");
    let lock_s_bytes = to_msgpack_named(&LockInfo {
        exclusive: false,
        command: "backup".into(),
        ..lock_x.clone()
    })
    .expect("lock");

    let seal = |kind: ObjectKind, plain: &[u8], c: Compression| -> Vec<u8> {
        encode_object(keys, kind, &[], plain, c).expect("seal")
    };
    let sealed_config = seal(ObjectKind::Config, &config_bytes, Compression::Off);

    let cheap = KdfParams {
        m_cost_kib: 8192,
        t_cost: 1,
        p_cost: 1,
    };
    // The cheap one carries a copy of the sealed config, as `init` writes them.
    let key_cheap = make_key_file(
        keys,
        targets::KEY_PASSWORD,
        cheap,
        "fuzz-host",
        "fuzzer",
        1_700_000_000,
        Some(&sealed_config),
    )
    .expect("key file");
    let key_default = make_key_file(
        keys,
        targets::KEY_PASSWORD,
        KdfParams::default(),
        "fuzz-host",
        "fuzzer",
        1_700_000_000,
        None,
    )
    .expect("key file");

    let sel = |s: u32, env: Vec<u8>| -> Vec<u8> {
        let mut v = s.to_le_bytes().to_vec();
        v.extend_from_slice(&env);
        v
    };
    let text: Vec<u8> = b"cairn envelope seed ".repeat(40);
    // A zstd frame without a content size (streaming): the reader's other path.
    let streamed = {
        let mut env = vec![1u8];
        env.extend_from_slice(&zstd::stream::encode_all(&text[..], 3).expect("zstd"));
        env
    };

    let corpus: Vec<(&str, Seeds)> = vec![
        (
            "pack",
            vec![
                ("3-blobs", pack3.clone()),
                ("1-tree-blob-raw", pack1.clone()),
            ],
        ),
        (
            "pack_header",
            vec![
                ("3-entries", with_area(area(&pack3, &entries3), &hdr3)),
                ("1-entry", with_area(area(&pack1, &entries1), &hdr1)),
                (
                    "empty",
                    with_area(0, &to_msgpack_compact(&Vec::<PackEntry>::new()).expect("h")),
                ),
            ],
        ),
        (
            "sealed",
            vec![
                (
                    "index",
                    seal(ObjectKind::Index, &index_bytes, Compression::Auto),
                ),
                (
                    "snapshot",
                    seal(ObjectKind::Snapshot, &snap_bytes, Compression::Auto),
                ),
                ("config", sealed_config.clone()),
                (
                    "lock",
                    seal(ObjectKind::Lock, &lock_x_bytes, Compression::Off),
                ),
                (
                    "pack-header",
                    seal(ObjectKind::PackHeader, &hdr3, Compression::Auto),
                ),
            ],
        ),
        (
            "envelope",
            vec![
                (
                    "raw-exact",
                    sel(5 << 2, compress_body(b"hello", Compression::Off)),
                ),
                (
                    "zstd-exact",
                    sel(
                        (text.len() as u32) << 2,
                        compress_body(&text, Compression::Zstd(3)),
                    ),
                ),
                (
                    "zstd-config-bound",
                    sel(2, compress_body(&text, Compression::Auto)),
                ),
                ("zstd-streamed-lock-bound", sel(1, streamed)),
                (
                    "raw-header-bound",
                    sel(3, compress_body(&hdr3, Compression::Off)),
                ),
            ],
        ),
        (
            "index",
            vec![("2-packs", index_bytes.clone()), ("empty", empty_index)],
        ),
        (
            "tree",
            vec![("root", root_bytes.clone()), ("subdir", sub_bytes.clone())],
        ),
        (
            "snapshot",
            vec![("full", snap_bytes.clone()), ("minimal", snap_min)],
        ),
        (
            "key_file",
            vec![
                ("argon-8mib-1pass-config-copy", key_cheap),
                ("argon-default", key_default),
            ],
        ),
        (
            "config",
            vec![
                ("default", config_bytes.clone()),
                ("small-chunks-zstd7", config_small),
                ("least-chunker", config_least),
                ("most-chunker", config_most),
            ],
        ),
        (
            "lock",
            vec![("exclusive", lock_x_bytes), ("shared", lock_s_bytes)],
        ),
    ];

    let mut total = 0;
    for (target, seeds) in corpus {
        assert!(
            targets::TARGETS.iter().any(|(n, _)| *n == target),
            "no target {target}"
        );
        let dir = out.join(target);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create corpus dir");
        for (name, bytes) in seeds {
            // Every seed must go through its target (and be accepted: checked by the replay test).
            let f = targets::TARGETS
                .iter()
                .find(|(n, _)| *n == target)
                .expect("target")
                .1;
            f(&bytes);
            write(&dir.join(name), &bytes);
            total += bytes.len();
        }
    }
    eprintln!("wrote {total} bytes of seeds under {}", out.display());
}

fn write(p: &Path, bytes: &[u8]) {
    fs::write(p, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
}

fn with_area(area: u32, header: &[u8]) -> Vec<u8> {
    let mut v = area.to_le_bytes().to_vec();
    v.extend_from_slice(header);
    v
}

fn make_pack(
    keys: &MasterKeys,
    blobs: &[(BlobKind, &[u8])],
    c: Compression,
) -> (Vec<u8>, Vec<PackEntry>) {
    let mut w = PackWriter::new();
    for (kind, plain) in blobs {
        let id = match kind {
            BlobKind::Data => keys.chunk_id(plain),
            BlobKind::Tree => keys.tree_id(plain),
        };
        let sealed = seal_blob(keys, *kind, &id, plain, c).expect("seal blob");
        w.add(*kind, id, &sealed, plain.len() as u32)
            .expect("add blob");
    }
    let p = w.finish(keys).expect("finish pack");
    (p.bytes, p.entries)
}

/// A directory with one node of each kind; `subtree` makes it the parent of another.
fn sample_tree(subtree: Option<TreeId>) -> Tree {
    let mut nodes = Vec::new();
    let mut f = Node::new(b"report.txt".to_vec(), NodeKind::File);
    f.mode = 0o644;
    f.uid = 1000;
    f.gid = 1000;
    f.user = Some("fuzzer".into());
    f.group = Some("users".into());
    f.mtime = Timestamp(1_700_000_000, 123_456_789);
    f.ctime = Timestamp(1_700_000_001, 5);
    f.inode = 77;
    f.device = 2049;
    f.links = 2;
    f.content = vec![
        ContentPart(Some(BlobId([0x11; 32])), 5),
        ContentPart(None, 4096),
        ContentPart(Some(BlobId([0x22; 32])), 5000),
    ];
    f.size = 5 + 4096 + 5000;
    f.xattrs = vec![
        Xattr(b"user.a".to_vec(), b"1".to_vec()),
        Xattr(b"user.b".to_vec(), vec![0, 255]),
    ];
    nodes.push(f);
    let mut l = Node::new(b"link".to_vec(), NodeKind::Symlink);
    l.mode = 0o777;
    l.target = Some(b"report.txt".to_vec());
    l.size = 10;
    nodes.push(l);
    nodes.push(Node::new(b"pipe".to_vec(), NodeKind::Fifo));
    let mut c = Node::new(b"tty0".to_vec(), NodeKind::CharDevice);
    c.rdev = 0x0400;
    nodes.push(c);
    nodes.push(Node::new(b"sock".to_vec(), NodeKind::Socket));
    nodes.push(Node::new("é-ünïcode".as_bytes().to_vec(), NodeKind::File));
    if let Some(id) = subtree {
        let mut d = Node::new(b"sub".to_vec(), NodeKind::Dir);
        d.mode = 0o755;
        d.subtree = Some(id);
        nodes.push(d);
        let mut b = Node::new(b"sda".to_vec(), NodeKind::BlockDevice);
        b.rdev = 0x0800;
        nodes.push(b);
    }
    let mut t = Tree { nodes };
    t.sort();
    t
}

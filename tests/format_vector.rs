//! Test vectors of repo-format.md §13: fixed keys, fixed sealed objects and a fixed key file.
//!
//! The constants were produced once by cairn and are frozen: if a test here fails, either the
//! code no longer reads format v1 or the spec is wrong. Never regenerate them without a format
//! version bump. Each vector is checked twice: through cairn's own API, and step by step with
//! the primitives the spec names (BLAKE3, Argon2id, XChaCha20-Poly1305, zstd, MessagePack), the
//! way a reimplementation would.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use cairn::format::chunker::ChunkerParams;
use cairn::format::crypto::{open_key_file, KdfParams, KeyFileError, MasterKeys, ObjectKind};
use cairn::format::id::{BlobId, RepoId, TreeId};
use cairn::format::index::IndexFile;
use cairn::format::pack::{open_blob, read_pack, BlobKind, PackEntry};
use cairn::format::{decode_object, to_msgpack_named, Expect};
use cairn::repo::config::RepoConfig;
use cairn::snapshot::tree::{ContentPart, Node, NodeKind, Timestamp, Tree};

/// The message every id vector hashes.
const MSG: &[u8] = b"cairn test vector";

/// §13.1: `MasterKeys::new([1; 32], [2; 32], [3; 32])`.
fn keys() -> MasterKeys {
    MasterKeys::new([1; 32], [2; 32], [3; 32])
}

const CHUNK_ID: &str = "6a6d86dc200e1d0ac3076d5ed2fde6d8657a1c565f9328e595adf87549a115b0";
const TREE_ID_KEY: &str = "1ea7cf3ab00f8425f157d5044de48f3de048b5ca4497ac86a73a241641d31f19";
const TREE_ID: &str = "2b2b133216289ce09cacee53f84bfeaa1de0342021f0e7ce57552446b27914a3";
const CHUNKER_SEED: u64 = 0x0303_0303_0303_0303;

/// §13.2: an index file (kind 5), flag 0, body `92 90 90` (an empty `[supersedes, packs]`).
const SEALED_INDEX: &str = "cc7addf7978dcf13196a232521fb3f0a7d2ad7b2dcea7e2ee8850fe80d873b2f\
                            7ea12f774349f818cec3820d";

/// §13.3: a data blob (kind 2) holding `MSG` four times, flag 1 (zstd), bound to its id.
const ZBLOB_ID: &str = "3826ffa0b69c13e7c3282fcd79aa2d4b3d544f39ae0707e88f399e5d7b66c39f";
const SEALED_ZBLOB: &str = "06c54642abfcc395df2962712387b4e60325f3d506bb50dd49cb728bf559f93c\
                            d2a812291060b2ce51bc002f7533d11e1a9e67daf1dfe7c701352c4b9409545c\
                            b2ed8b83697a1bb1c1be";
const ZBLOB_PLAIN: &str = "0128b52ffd2044c5000088636169726e207465737420766563746f72010041e75c02";

/// §13.4: a key file for the keys above, password `test`, Argon2id 8 MiB / 1 pass / 1 lane.
const KEY_FILE: &str = "87a776657273696f6e01a36b6466a86172676f6e326964aa6d5f636f73745f6b\
                        6962cd2000a6745f636f737401a6705f636f737401a473616c74c4206b0cee92\
                        a1df2e85d95c0af51f9bf2c8fc2cdc72dbce118e57ef0aa5f58e14f4a6736561\
                        6c6564c4c9bc81e921265ba7f783a05c09d51fb7debc61af155edfbb302f5f49\
                        c0b3b70683cc13610ddaae39c41ea30cb59a974361954adf36c681dc3d752706\
                        6e057701d98916f83c4a8a61a244488a44a288df3f6d2cd4546c9d81d39410dd\
                        9ea678bc2cb56cf314c66b4719c9697a31ab70d05256f7f25438d357979984bd\
                        ed49a29de38c9b5d18e10d08689a3dae9379f440aba656f47a42cbc662349296\
                        a6f8501ae98e4b19c7a239da5fe32a1006c6d2b9e5a66221ffe949590e86fff9\
                        ad4c9b1021adbfade1a06b4d8f8f";
const KEY_FILE_SALT: &str = "6b0cee92a1df2e85d95c0af51f9bf2c8fc2cdc72dbce118e57ef0aa5f58e14f4";
const KEK: &str = "63eaee00b66f12612c5312ddc5dd69503e10d1a74fd517fee8757913820964cb";
const KEY_PAYLOAD: &str = "87a776657273696f6e01a3656e63c420010101010101010101010101010101\
                           0101010101010101010101010101010101a26964c42002020202020202020202\
                           02020202020202020202020202020202020202020202a76368756e6b6572c420\
                           0303030303030303030303030303030303030303030303030303030303030303\
                           aa637265617465645f6e73cf17979cfe362a0000a4686f7374a168a4757365\
                           72a175";

/// §13.5: a pack holding one data blob (`MSG`, stored raw).
const PACK: &str = "7e50bbec51b07494a5aaca8971fe38f45c5a31728ddbb4b2bd06d270d94142d0\
                    94c5f211916c56d402bf1d22479c44f3d54f3e1ca7392491ed3628b27949e719\
                    7f35aaa45316ff9986629280157b9115f0a722d0242febd59ee3969d95ec270b\
                    b28c0bea08336059aa63b78b12b13725a452c02f94511025890538656976a03e\
                    73775a787f7dd3ffbb03e751000000";
const PACK_ID: &str = "93146724b53d3470306846187c60fad8d5cdbe2fbf250e2f72fc97e0760cb4b7";
const PACK_HEADER_PLAIN: &str =
    "00919500c4206a6d86dc200e1d0ac3076d5ed2fde6d8657a1c565f9328e595adf87549a115b0003a11";

/// §13.6: the plaintext of a tree with a file `a` (content: the chunk `MSG`) and a directory `d`.
const TREE_PLAIN: &str = "92dc0012c4016100cd01a40000c0c092ce6553f10005920000000001119192c4\
                          206a6d86dc200e1d0ac3076d5ed2fde6d8657a1c565f9328e595adf87549a115\
                          b011c0c00090dc0012c4016401000000c0c09200009200000000010090c42009\
                          09090909090909090909090909090909090909090909090909090909090909c0\
                          0090";
const TREE_PLAIN_ID: &str = "9ad299a07db896b35ee1b2d813c24c7943974acd364145d35f0e36f988183e1c";

/// §13.8: the plaintext of a config (map form) with repository id `11 × 32` and the defaults.
const CONFIG_PLAIN: &str = "85a776657273696f6e01a26964c42011111111111111111111111111111111\
                            11111111111111111111111111111111a76368756e6b657283a36d696ece0002\
                            0000a3617667ce00080000a36d6178ce00200000ab636f6d7072657373696f6e\
                            a46175746fa97061636b5f73697a65ce02000000";

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    hex::decode(s).expect("test vector is hex")
}

fn id(s: &str) -> BlobId {
    BlobId::from_hex(s).expect("test vector is a 64-digit id")
}

/// `"cairn" || 0x01 || kind || binding` (§4.2).
fn aad(kind: u8, binding: &[u8]) -> Vec<u8> {
    let mut a = b"cairn\x01".to_vec();
    a.push(kind);
    a.extend_from_slice(binding);
    a
}

/// Opens `nonce || ciphertext || tag` with XChaCha20-Poly1305 directly (§4.1).
fn open_raw(key: &[u8], aad: &[u8], sealed: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new_from_slice(key).expect("32-byte key");
    cipher
        .decrypt(
            XNonce::from_slice(&sealed[..24]),
            Payload {
                msg: &sealed[24..],
                aad,
            },
        )
        .expect("test vector opens")
}

#[test]
fn ids_and_chunker_seed_match_the_spec() {
    let k = keys();
    assert_eq!(k.chunk_id(MSG).to_hex(), CHUNK_ID);
    assert_eq!(k.tree_id(MSG).to_hex(), TREE_ID);
    assert_eq!(k.chunker_seed(), CHUNKER_SEED);

    // The same values from the primitives (§2).
    assert_eq!(
        blake3::keyed_hash(&[2; 32], MSG).to_hex().as_str(),
        CHUNK_ID
    );
    let tree_key = blake3::derive_key("cairn v1 tree id key", &[2; 32]);
    assert_eq!(hex::encode(tree_key), TREE_ID_KEY);
    assert_eq!(
        blake3::keyed_hash(&tree_key, MSG).to_hex().as_str(),
        TREE_ID
    );
    assert_eq!(u64::from_le_bytes([3; 8]), CHUNKER_SEED);
}

#[test]
fn sealed_index_object_decodes_to_an_empty_index_file() {
    let k = keys();
    let sealed = unhex(SEALED_INDEX);
    assert_eq!(sealed.len(), 44);
    let plain = decode_object(&k, ObjectKind::Index, &[], &sealed, Expect::AtMost(1 << 30))
        .expect("vector decodes");
    assert_eq!(plain, [0x92, 0x90, 0x90]);
    let file: IndexFile = rmp_serde::from_slice(&plain).expect("an index file");
    assert_eq!(file, IndexFile::default());

    // By hand: AEAD with the enc key and AAD "cairn" 01 05, then the flag byte 0.
    assert_eq!(
        open_raw(&[1; 32], &aad(5, &[]), &sealed),
        [0x00, 0x92, 0x90, 0x90]
    );
    // The kind is bound: the same bytes do not open as a snapshot.
    assert!(decode_object(
        &k,
        ObjectKind::Snapshot,
        &[],
        &sealed,
        Expect::AtMost(1 << 30)
    )
    .is_err());
}

#[test]
fn sealed_zstd_blob_decodes_and_is_bound_to_its_id() {
    let k = keys();
    let sealed = unhex(SEALED_ZBLOB);
    let plain = MSG.repeat(4);
    assert_eq!(k.chunk_id(&plain).to_hex(), ZBLOB_ID);
    let blob_id = id(ZBLOB_ID);
    let out = decode_object(
        &k,
        ObjectKind::DataBlob,
        blob_id.as_bytes(),
        &sealed,
        Expect::Exact(plain.len()),
    )
    .expect("vector decodes");
    assert_eq!(out, plain);

    // By hand: AEAD with AAD "cairn" 01 02 || id, flag 1, one zstd frame.
    let envelope = open_raw(&[1; 32], &aad(2, blob_id.as_bytes()), &sealed);
    assert_eq!(envelope, unhex(ZBLOB_PLAIN));
    assert_eq!(envelope[0], 1);
    assert_eq!(
        zstd::bulk::decompress(&envelope[1..], plain.len()).expect("a zstd frame"),
        plain
    );
    // Bound to its id and kind.
    assert!(decode_object(
        &k,
        ObjectKind::DataBlob,
        &[0; 32],
        &sealed,
        Expect::Exact(68)
    )
    .is_err());
    assert!(decode_object(
        &k,
        ObjectKind::TreeBlob,
        blob_id.as_bytes(),
        &sealed,
        Expect::Exact(68)
    )
    .is_err());
    // The length is enforced.
    assert!(decode_object(
        &k,
        ObjectKind::DataBlob,
        blob_id.as_bytes(),
        &sealed,
        Expect::Exact(67)
    )
    .is_err());
}

/// The clear-text part of a key file, as a reimplementation would read it (§2.1).
#[derive(serde::Deserialize)]
struct KeyFileMap {
    version: u32,
    kdf: String,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    #[serde(with = "serde_bytes")]
    salt: Vec<u8>,
    #[serde(with = "serde_bytes")]
    sealed: Vec<u8>,
}

/// The sealed payload of a key file (§2.1).
#[derive(serde::Deserialize)]
struct KeyPayloadMap {
    version: u32,
    #[serde(with = "serde_bytes")]
    enc: Vec<u8>,
    #[serde(with = "serde_bytes")]
    id: Vec<u8>,
    #[serde(with = "serde_bytes")]
    chunker: Vec<u8>,
    created_ns: i64,
    host: String,
    user: String,
}

#[test]
fn key_file_opens_with_its_password_to_the_fixed_keys() {
    let bytes = unhex(KEY_FILE);
    assert_eq!(bytes.len(), 302);
    let (k, info) = open_key_file(&bytes, b"test").expect("vector opens");
    assert_eq!(k, keys());
    assert_eq!(info.created_ns, 1_700_000_000_000_000_000);
    assert_eq!(info.host, "h");
    assert_eq!(info.user, "u");
    assert_eq!(
        info.params,
        KdfParams {
            m_cost_kib: 8192,
            t_cost: 1,
            p_cost: 1
        }
    );
    assert!(matches!(
        open_key_file(&bytes, b"Test"),
        Err(KeyFileError::WrongPassword)
    ));

    // By hand: the map, Argon2id, the AEAD with AAD "cairn" 01 07, the payload map.
    let file: KeyFileMap = rmp_serde::from_slice(&bytes).expect("a MessagePack map");
    assert_eq!((file.version, file.kdf.as_str()), (1, "argon2id"));
    assert_eq!((file.m_cost_kib, file.t_cost, file.p_cost), (8192, 1, 1));
    assert_eq!(hex::encode(&file.salt), KEY_FILE_SALT);
    assert_eq!(file.sealed.len(), 24 + 161 + 16);
    let params = argon2::Params::new(8192, 1, 1, Some(32)).expect("valid parameters");
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut kek = [0u8; 32];
    argon
        .hash_password_into(b"test", &file.salt, &mut kek)
        .expect("Argon2id");
    assert_eq!(hex::encode(kek), KEK);
    let payload = open_raw(&kek, &aad(7, &[]), &file.sealed);
    assert_eq!(
        payload,
        unhex(KEY_PAYLOAD),
        "no flag byte: the payload is the map itself"
    );
    let p: KeyPayloadMap = rmp_serde::from_slice(&payload).expect("a MessagePack map");
    assert_eq!(p.version, 1);
    assert_eq!(
        (p.enc, p.id, p.chunker),
        (vec![1; 32], vec![2; 32], vec![3; 32])
    );
    assert_eq!(
        (p.created_ns, p.host.as_str(), p.user.as_str()),
        (1_700_000_000_000_000_000, "h", "u")
    );
}

#[test]
fn pack_vector_parses_and_its_blob_opens() {
    let k = keys();
    let pack = unhex(PACK);
    assert_eq!(pack.len(), 143);
    assert_eq!(blake3::hash(&pack).to_hex().as_str(), PACK_ID);
    let entries = read_pack(&k, &pack).expect("vector parses");
    let entry = PackEntry {
        kind: BlobKind::Data,
        id: id(CHUNK_ID),
        offset: 0,
        length: 58,
        raw_length: 17,
    };
    assert_eq!(entries, [entry]);
    assert_eq!(open_blob(&k, &entry, &pack[..58]).expect("blob opens"), MSG);

    // By hand: trailer, sealed header, header entries, sealed blob.
    let header_len = u32::from_le_bytes(pack[139..].try_into().expect("4 bytes")) as usize;
    assert_eq!(header_len, 81);
    let header = open_raw(&[1; 32], &aad(4, &[]), &pack[58..139]);
    assert_eq!(header, unhex(PACK_HEADER_PLAIN));
    let mut blob = vec![0u8];
    blob.extend_from_slice(MSG);
    assert_eq!(
        open_raw(&[1; 32], &aad(2, &unhex(CHUNK_ID)), &pack[..58]),
        blob
    );
}

#[test]
fn tree_vector_is_the_canonical_encoding() {
    let k = keys();
    let mut file = Node::new(b"a".to_vec(), NodeKind::File);
    file.mode = 0o644;
    file.mtime = Timestamp(1_700_000_000, 5);
    file.size = MSG.len() as u64;
    file.content = vec![ContentPart(Some(id(CHUNK_ID)), MSG.len() as u64)];
    let mut dir = Node::new(b"d".to_vec(), NodeKind::Dir);
    dir.subtree = Some(TreeId(BlobId([9; 32])));
    let tree = Tree {
        nodes: vec![file, dir],
    };
    let plain = unhex(TREE_PLAIN);
    assert_eq!(tree.encode().expect("valid tree"), plain);
    assert_eq!(k.tree_id(&plain).to_hex(), TREE_PLAIN_ID);
    let id = TreeId(id(TREE_PLAIN_ID));
    assert_eq!(Tree::decode(&plain, &id).expect("decodes"), tree);
}

#[test]
fn config_plaintext_is_a_map_in_field_order() {
    let config = RepoConfig {
        parity: None,
        version: 1,
        id: RepoId([0x11; 32]),
        chunker: ChunkerParams::default(),
        compression: "auto".into(),
        pack_size: 32 << 20,
    };
    let plain = unhex(CONFIG_PLAIN);
    assert_eq!(to_msgpack_named(&config).expect("encodes"), plain);
    let back: RepoConfig = rmp_serde::from_slice(&plain).expect("decodes");
    assert_eq!(back, config);
}

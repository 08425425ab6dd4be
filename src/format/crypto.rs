//! Keys and sealing (repo-format.md §2 and §4).
//!
//! A password opens a key file: Argon2id derives a key-encryption key that unseals the random
//! master keys. Every other stored object is sealed with XChaCha20-Poly1305 under the encryption
//! key and a fresh random 24-byte nonce; the associated data binds the object's kind (and, for
//! blobs, its id), so nothing can be passed off as something else. No caller chooses a nonce.

use std::fmt;

use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};
use crate::id::BlobId;

/// repo-format.md §4.1: nonce length of XChaCha20-Poly1305, in bytes.
pub const NONCE_LEN: usize = 24;
/// repo-format.md §4.1: Poly1305 tag length, in bytes.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object adds to its plaintext: nonce and tag, 40 (repo-format.md §4.1).
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// repo-format.md §4.2: what a sealed object is, bound into its associated data as one byte
/// (the discriminant), so an object of one kind never opens as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    /// The repository's `config` file (repo-format.md §3.1); empty binding.
    Config = 1,
    /// A data blob (a file chunk) in a pack; bound to the blob's 32-byte id.
    DataBlob = 2,
    /// A tree blob (a directory listing, repo-format.md §7) in a pack; bound to its 32-byte id.
    TreeBlob = 3,
    /// A pack's header (repo-format.md §6.1); empty binding.
    PackHeader = 4,
    /// An index file in `index/` (repo-format.md §8); empty binding.
    Index = 5,
    /// A snapshot in `snapshots/` (repo-format.md §9); empty binding.
    Snapshot = 6,
    /// The `sealed` field of a key file, sealed under the password-derived key instead of
    /// `enc` and without a flag byte (repo-format.md §2.1); empty binding.
    KeyPayload = 7,
    /// A lock file in `locks/` (repo-format.md §10.3); empty binding.
    Lock = 8,
    /// A recovery-drill record in `drills/` (repo-format.md §9.1); empty binding.
    Drill = 9,
    /// The header of a parity file in `parity/` (repo-format.md §14.2); empty binding.
    ParityHeader = 10,
}

/// Associated data: `"cairn" || 0x01 || kind || binding` (repo-format.md §4.2).
fn aad(kind: ObjectKind, binding: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(7 + binding.len());
    a.extend_from_slice(b"cairn");
    a.push(1);
    a.push(kind as u8);
    a.extend_from_slice(binding);
    a
}

/// Fills `buf` from the operating system's random source.
pub fn random_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::getrandom(buf).map_err(|e| {
        Error::InvalidInput(format!("the operating system's random source failed: {e}"))
    })
}

/// `N` bytes from the operating system's random source (keys, salts, repository and lock ids).
pub fn random_array<const N: usize>() -> Result<[u8; N]> {
    let mut a = [0u8; N];
    random_bytes(&mut a)?;
    Ok(a)
}

/// A 32-byte secret (a master key or a key-encryption key) that is wiped on drop and never
/// printed: its `Debug` is `Secret(<redacted>)`.
#[derive(Clone, Zeroize, ZeroizeOnDrop, Serialize, Deserialize, PartialEq, Eq)]
pub struct Secret(#[serde(with = "serde_bytes")] pub [u8; 32]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The repository's master keys (repo-format.md §2): drawn once by `init`, never changed,
/// wrapped by every key file. Everything but key files is sealed or identified with them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterKeys {
    /// XChaCha20-Poly1305 key for every sealed object.
    pub enc: Secret,
    /// BLAKE3 key for data chunk ids.
    pub id: Secret,
    /// Seeds the chunker's gear table: its first 8 bytes, little-endian, are the FastCDC seed
    /// (repo-format.md §5.3); bytes 8..32 are unused in format 1.
    pub chunker: Secret,
    /// BLAKE3 key for tree ids, derived from `id` (kept apart from chunk ids).
    tree_id: Secret,
}

impl MasterKeys {
    /// Wraps the three master keys read from a key payload (or drawn by `init`) and derives the
    /// tree-id key from `id` (BLAKE3 `derive_key`, context `"cairn v1 tree id key"`).
    pub fn new(enc: [u8; 32], id: [u8; 32], chunker: [u8; 32]) -> Self {
        let tree_id = blake3::derive_key("cairn v1 tree id key", &id);
        MasterKeys {
            enc: Secret(enc),
            id: Secret(id),
            chunker: Secret(chunker),
            tree_id: Secret(tree_id),
        }
    }

    /// Three fresh random master keys, for a new repository.
    pub fn generate() -> Result<Self> {
        Ok(Self::new(random_array()?, random_array()?, random_array()?))
    }

    /// A data blob's id: keyed BLAKE3 of the chunk's plaintext under the `id` key.
    pub fn chunk_id(&self, plain: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(&self.id.0, plain).as_bytes())
    }

    /// A tree blob's id: keyed BLAKE3 of the tree's canonical encoding (repo-format.md §7.2),
    /// under the tree-id key.
    pub fn tree_id(&self, plain: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(&self.tree_id.0, plain).as_bytes())
    }

    /// The FastCDC gear seed: the first 8 bytes of the chunker key, little-endian.
    pub fn chunker_seed(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.chunker.0[..8]);
        u64::from_le_bytes(b)
    }

    /// Seals `plain` as `nonce || ciphertext || tag` with a fresh random nonce
    /// (repo-format.md §4.1); `binding` is the blob id for blob kinds and empty otherwise
    /// (§4.2). The result is [`SEAL_OVERHEAD`] bytes longer than `plain`.
    pub fn seal(&self, kind: ObjectKind, binding: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
        seal_with(&self.enc.0, kind, binding, plain)
    }

    /// Opens a sealed object; any change to its bytes, kind or binding fails.
    pub fn open(
        &self,
        kind: ObjectKind,
        binding: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, OpenError> {
        open_with(&self.enc.0, kind, binding, sealed)
    }

    /// [`MasterKeys::open`] into a buffer the caller reuses.
    pub fn open_into(
        &self,
        kind: ObjectKind,
        binding: &[u8],
        sealed: &[u8],
        plain: &mut Vec<u8>,
    ) -> Result<(), OpenError> {
        open_into(&self.enc.0, kind, binding, sealed, plain)
    }
}

/// A sealed object failed to open: it is damaged, or was made with another key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Shorter than [`SEAL_OVERHEAD`] (40 bytes): no room for a nonce and a tag.
    #[error("too short to be a sealed object")]
    TooShort,
    /// The Poly1305 tag does not match: the bytes, kind or binding changed, or the key differs.
    #[error("authentication failed (damaged, or sealed with another key)")]
    Authentication,
}

thread_local! {
    /// OS randomness fetched 4 KiB at a time and used once, byte by byte, for nonces: one
    /// syscall per ~170 sealed objects instead of one each.
    static NONCE_POOL: std::cell::RefCell<(Vec<u8>, usize)> = const { std::cell::RefCell::new((Vec::new(), 0)) };
}

fn fresh_nonce() -> Result<[u8; NONCE_LEN]> {
    NONCE_POOL.with(|p| {
        let mut p = p.borrow_mut();
        let (pool, used) = &mut *p;
        if pool.len() < *used + NONCE_LEN {
            pool.resize(4096, 0);
            random_bytes(pool)?;
            *used = 0;
        }
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(&pool[*used..*used + NONCE_LEN]);
        // Never hand out the same bytes twice.
        pool[*used..*used + NONCE_LEN].fill(0);
        *used += NONCE_LEN;
        Ok(n)
    })
}

pub(crate) fn seal_with(
    key: &[u8; 32],
    kind: ObjectKind,
    binding: &[u8],
    plain: &[u8],
) -> Result<Vec<u8>> {
    use chacha20poly1305::aead::AeadInPlace;
    let nonce = fresh_nonce()?;
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key));
    let a = aad(kind, binding);
    // nonce || plaintext, encrypted in place, then the tag: one buffer, no second copy.
    let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), &a, &mut out[NONCE_LEN..])
        .map_err(|_| Error::InvalidInput("encryption failed: object too large".into()))?;
    out.extend_from_slice(&tag);
    Ok(out)
}

pub(crate) fn open_with(
    key: &[u8; 32],
    kind: ObjectKind,
    binding: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, OpenError> {
    let mut plain = Vec::new();
    open_into(key, kind, binding, sealed, &mut plain)?;
    Ok(plain)
}

/// Opens `sealed` into `plain` (replacing what it held), reusing its allocation: the
/// restore's workers open one blob after another without asking the allocator each time.
pub(crate) fn open_into(
    key: &[u8; 32],
    kind: ObjectKind,
    binding: &[u8],
    sealed: &[u8],
    plain: &mut Vec<u8>,
) -> Result<(), OpenError> {
    use chacha20poly1305::aead::AeadInPlace;
    use chacha20poly1305::Tag;
    if sealed.len() < SEAL_OVERHEAD {
        return Err(OpenError::TooShort);
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    plain.clear();
    plain.extend_from_slice(ct);
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key));
    cipher
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            &aad(kind, binding),
            plain,
            Tag::from_slice(tag),
        )
        .map_err(|_| {
            plain.clear();
            OpenError::Authentication
        })
}

/// Argon2id parameters stored in clear text in a key file (repo-format.md §2.1, keys
/// `m_cost_kib`, `t_cost`, `p_cost`); checked by [`KdfParams::validate`] before any derivation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB, within [`KdfParams::MIN_M_COST_KIB`]..=[`KdfParams::MAX_M_COST_KIB`].
    pub m_cost_kib: u32,
    /// Passes (iterations), 1..=[`KdfParams::MAX_T_COST`].
    pub t_cost: u32,
    /// Lanes (parallelism), 1..=[`KdfParams::MAX_P_COST`].
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: about a third of a second on one core of a 2020s machine.
    fn default() -> Self {
        KdfParams {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// Smallest memory a key file may ask for (8 MiB).
    pub const MIN_M_COST_KIB: u32 = 8 * 1024;
    /// Largest memory a key file may ask for (4 GiB): a hostile key file cannot exhaust memory.
    pub const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
    /// Most passes a key file may ask for: bounds the time a hostile key file can cost.
    pub const MAX_T_COST: u32 = 64;
    /// Most lanes a key file may ask for.
    pub const MAX_P_COST: u32 = 16;

    /// Checks the parameters against the accepted bounds of repo-format.md §2.1; the error
    /// names the parameter that is out of range. A key file that fails this is damaged.
    pub fn validate(&self) -> Result<(), String> {
        if !(Self::MIN_M_COST_KIB..=Self::MAX_M_COST_KIB).contains(&self.m_cost_kib) {
            return Err(format!(
                "Argon2id memory {} KiB is outside {}..={} KiB",
                self.m_cost_kib,
                Self::MIN_M_COST_KIB,
                Self::MAX_M_COST_KIB
            ));
        }
        if !(1..=Self::MAX_T_COST).contains(&self.t_cost) {
            return Err(format!(
                "Argon2id passes {} outside 1..={}",
                self.t_cost,
                Self::MAX_T_COST
            ));
        }
        if !(1..=Self::MAX_P_COST).contains(&self.p_cost) {
            return Err(format!(
                "Argon2id lanes {} outside 1..={}",
                self.p_cost,
                Self::MAX_P_COST
            ));
        }
        Ok(())
    }

    fn derive(&self, password: &[u8], salt: &[u8]) -> Result<Secret, String> {
        self.validate()?;
        let params = argon2::Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| format!("bad Argon2id parameters: {e}"))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Secret([0u8; 32]);
        argon
            .hash_password_into(password, salt, &mut out.0)
            .map_err(|e| format!("Argon2id failed: {e}"))?;
        Ok(out)
    }
}

/// repo-format.md §2.1: a key file, stored as a MessagePack map in clear text.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    kdf: String,
    #[serde(flatten)]
    params: KdfParams,
    #[serde(with = "serde_bytes")]
    salt: Vec<u8>,
    #[serde(with = "serde_bytes")]
    sealed: Vec<u8>,
}

/// The sealed part of a key file: master keys and who made the key.
#[derive(Serialize, Deserialize)]
struct KeyPayloadRepr {
    version: u32,
    enc: Secret,
    id: Secret,
    chunker: Secret,
    created_ns: i64,
    host: String,
    user: String,
    /// A copy of the sealed `config` file, so a damaged config never locks anyone out.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    config: Option<Vec<u8>>,
}

/// What a key file says about itself once opened (its payload, repo-format.md §2.1).
#[derive(Clone, Debug)]
pub struct KeyInfo {
    /// When the key file was made, nanoseconds since the Unix epoch.
    pub created_ns: i64,
    /// Host name of the machine that made the key file.
    pub host: String,
    /// User name that made the key file.
    pub user: String,
    /// The Argon2id parameters the key file was opened with.
    pub params: KdfParams,
    /// The copy of the sealed config this key file carries, if any.
    pub config_copy: Option<Vec<u8>>,
}

/// Why a key file did not open.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The sealed payload failed authentication under the derived key: a wrong password, or a
    /// damaged payload (the two look the same to the AEAD).
    #[error("the password does not open it")]
    WrongPassword,
    /// The key file or its payload does not parse, or breaks a rule of repo-format.md §2.1
    /// (version 0, another KDF, a salt not 32 bytes, parameters out of bounds); says which.
    #[error("malformed key file: {0}")]
    Malformed(String),
    /// The key file or its payload has this `version`, above [`KEY_FILE_VERSION`].
    #[error(
        "it needs a newer cairn (key file format {0}; this cairn reads format {KEY_FILE_VERSION})"
    )]
    Newer(u32),
}

/// repo-format.md §2.1: the version of key files and key payloads this code reads and writes.
pub const KEY_FILE_VERSION: u32 = 1;

/// The `version` of a key file or key payload, read alone before anything else (repo-format.md
/// §12): a future format that no longer parses as this one is still named as newer, not
/// misread as damage or as a wrong password.
fn check_version(bytes: &[u8], what: &str) -> Result<(), KeyFileError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        version: u32,
    }
    let v: VersionOnly = rmp_serde::from_slice(bytes)
        .map_err(|e| KeyFileError::Malformed(format!("{what}: no version: {e}")))?;
    match v.version {
        KEY_FILE_VERSION => Ok(()),
        0 => Err(KeyFileError::Malformed(format!("{what} version 0"))),
        n => Err(KeyFileError::Newer(n)),
    }
}
const SALT_LEN: usize = 32;

/// Makes a key file (repo-format.md §2.1) that opens `keys` with `password`: a fresh 32-byte
/// salt, and the payload sealed under the Argon2id key derived with `params`. `created_ns` is
/// nanoseconds since the Unix epoch; `config_copy` is the sealed `config` file to carry as a
/// spare. Returns the clear-text MessagePack bytes to store under `keys/<id>` and its copy.
pub fn make_key_file(
    keys: &MasterKeys,
    password: &[u8],
    params: KdfParams,
    host: &str,
    user: &str,
    created_ns: i64,
    config_copy: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let salt: [u8; SALT_LEN] = random_array()?;
    let kek = params
        .derive(password, &salt)
        .map_err(Error::InvalidInput)?;
    let payload = KeyPayloadRepr {
        version: KEY_FILE_VERSION,
        enc: keys.enc.clone(),
        id: keys.id.clone(),
        chunker: keys.chunker.clone(),
        created_ns,
        host: host.to_string(),
        user: user.to_string(),
        config: config_copy.map(<[u8]>::to_vec),
    };
    let mut plain = rmp_serde::to_vec_named(&payload)
        .map_err(|e| Error::InvalidInput(format!("encoding key payload: {e}")))?;
    let sealed = seal_with(&kek.0, ObjectKind::KeyPayload, &[], &plain);
    plain.zeroize();
    let file = KeyFile {
        version: KEY_FILE_VERSION,
        kdf: "argon2id".into(),
        params,
        salt: salt.to_vec(),
        sealed: sealed?,
    };
    rmp_serde::to_vec_named(&file)
        .map_err(|e| Error::InvalidInput(format!("encoding key file: {e}")))
}

/// Reads a key file's Argon2id parameters without the password (for `key list`).
pub fn key_file_params(bytes: &[u8]) -> Result<KdfParams, KeyFileError> {
    parse_key_file(bytes).map(|f| f.params)
}

fn parse_key_file(bytes: &[u8]) -> Result<KeyFile, KeyFileError> {
    check_version(bytes, "key file")?;
    let file: KeyFile =
        rmp_serde::from_slice(bytes).map_err(|e| KeyFileError::Malformed(e.to_string()))?;
    if file.kdf != "argon2id" {
        return Err(KeyFileError::Malformed(format!(
            "unknown KDF {:?}",
            file.kdf
        )));
    }
    file.params.validate().map_err(KeyFileError::Malformed)?;
    if file.salt.len() != SALT_LEN {
        return Err(KeyFileError::Malformed(format!(
            "salt is {} bytes, not {SALT_LEN}",
            file.salt.len()
        )));
    }
    Ok(file)
}

/// Opens a key file with `password` (repo-format.md §2.1, "Opening a repository"): checks the
/// version and parameters, derives the key-encryption key, unseals the payload and returns the
/// master keys with what the key file says about itself.
pub fn open_key_file(bytes: &[u8], password: &[u8]) -> Result<(MasterKeys, KeyInfo), KeyFileError> {
    let file = parse_key_file(bytes)?;
    let kek = file
        .params
        .derive(password, &file.salt)
        .map_err(KeyFileError::Malformed)?;
    let mut plain = match open_with(&kek.0, ObjectKind::KeyPayload, &[], &file.sealed) {
        Ok(p) => p,
        Err(OpenError::TooShort) => {
            return Err(KeyFileError::Malformed("sealed keys too short".into()))
        }
        Err(OpenError::Authentication) => return Err(KeyFileError::WrongPassword),
    };
    let payload = check_version(&plain, "sealed key payload").and_then(|()| {
        rmp_serde::from_slice::<KeyPayloadRepr>(&plain)
            .map_err(|e| KeyFileError::Malformed(format!("sealed keys: {e}")))
    });
    plain.zeroize();
    let payload = payload?;
    let keys = MasterKeys::new(payload.enc.0, payload.id.0, payload.chunker.0);
    let info = KeyInfo {
        created_ns: payload.created_ns,
        host: payload.host.clone(),
        user: payload.user.clone(),
        params: file.params,
        config_copy: payload.config.clone(),
    };
    Ok((keys, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trips() {
        let k = MasterKeys::generate().unwrap();
        let sealed = k.seal(ObjectKind::Snapshot, b"", b"hello").unwrap();
        assert_eq!(
            k.open(ObjectKind::Snapshot, b"", &sealed).unwrap(),
            b"hello"
        );
    }

    #[test]
    fn open_refuses_other_kind_or_binding() {
        let k = MasterKeys::generate().unwrap();
        let sealed = k.seal(ObjectKind::DataBlob, &[1; 32], b"hello").unwrap();
        assert!(k.open(ObjectKind::TreeBlob, &[1; 32], &sealed).is_err());
        assert!(k.open(ObjectKind::DataBlob, &[2; 32], &sealed).is_err());
    }

    #[test]
    fn every_bit_flip_fails_to_open() {
        let k = MasterKeys::generate().unwrap();
        let sealed = k
            .seal(ObjectKind::Index, b"", b"some plaintext of a few bytes")
            .unwrap();
        for i in 0..sealed.len() * 8 {
            let mut s = sealed.clone();
            s[i / 8] ^= 1 << (i % 8);
            assert!(
                k.open(ObjectKind::Index, b"", &s).is_err(),
                "bit {i} flipped but opened"
            );
        }
    }

    #[test]
    fn nonces_are_fresh() {
        let k = MasterKeys::generate().unwrap();
        let a = k.seal(ObjectKind::Index, b"", b"x").unwrap();
        let b = k.seal(ObjectKind::Index, b"", b"x").unwrap();
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
    }

    fn small() -> KdfParams {
        KdfParams {
            m_cost_kib: KdfParams::MIN_M_COST_KIB,
            t_cost: 1,
            p_cost: 1,
        }
    }

    #[test]
    fn key_file_opens_with_its_password_only() {
        let k = MasterKeys::generate().unwrap();
        let f = make_key_file(&k, b"pw", small(), "h", "u", 5, None).unwrap();
        let (k2, info) = open_key_file(&f, b"pw").unwrap();
        assert_eq!(k, k2);
        assert_eq!(info.host, "h");
        assert!(matches!(
            open_key_file(&f, b"other"),
            Err(KeyFileError::WrongPassword)
        ));
    }

    #[test]
    fn key_file_with_absurd_memory_is_refused_before_deriving() {
        let k = MasterKeys::generate().unwrap();
        let f = make_key_file(&k, b"pw", small(), "h", "u", 5, None).unwrap();
        let mut file: KeyFile = rmp_serde::from_slice(&f).unwrap();
        file.params.m_cost_kib = u32::MAX;
        let bytes = rmp_serde::to_vec_named(&file).unwrap();
        assert!(matches!(
            open_key_file(&bytes, b"pw"),
            Err(KeyFileError::Malformed(_))
        ));
    }

    /// A key file whose payload says version 2 (its password is right): newer, not damaged.
    #[test]
    fn a_key_payload_of_a_newer_version_is_named_newer() {
        let k = MasterKeys::generate().expect("test setup");
        let salt = [7u8; SALT_LEN];
        let kek = small().derive(b"pw", &salt).expect("test setup");
        let payload = KeyPayloadRepr {
            version: 2,
            enc: k.enc.clone(),
            id: k.id.clone(),
            chunker: k.chunker.clone(),
            created_ns: 0,
            host: String::new(),
            user: String::new(),
            config: None,
        };
        let plain = rmp_serde::to_vec_named(&payload).expect("test setup");
        let file = KeyFile {
            version: KEY_FILE_VERSION,
            kdf: "argon2id".into(),
            params: small(),
            salt: salt.to_vec(),
            sealed: seal_with(&kek.0, ObjectKind::KeyPayload, &[], &plain).expect("test setup"),
        };
        let bytes = rmp_serde::to_vec_named(&file).expect("test setup");
        assert!(matches!(
            open_key_file(&bytes, b"pw"),
            Err(KeyFileError::Newer(2))
        ));
        // A payload of version 2 that no longer has the v1 fields: still newer.
        #[derive(Serialize)]
        struct Future {
            version: u32,
            keys: Vec<u8>,
        }
        let plain = rmp_serde::to_vec_named(&Future {
            version: 2,
            keys: vec![1, 2, 3],
        })
        .expect("test setup");
        let file = KeyFile {
            sealed: seal_with(&kek.0, ObjectKind::KeyPayload, &[], &plain).expect("test setup"),
            ..file
        };
        let bytes = rmp_serde::to_vec_named(&file).expect("test setup");
        assert!(matches!(
            open_key_file(&bytes, b"pw"),
            Err(KeyFileError::Newer(2))
        ));
    }

    /// A key file of version 2, whether or not the rest still parses as version 1.
    #[test]
    fn a_key_file_of_a_newer_version_is_named_newer_before_it_is_parsed() {
        let k = MasterKeys::generate().expect("test setup");
        let f = make_key_file(&k, b"pw", small(), "h", "u", 5, None).expect("test setup");
        let mut file: KeyFile = rmp_serde::from_slice(&f).expect("test setup");
        file.version = 2;
        let bytes = rmp_serde::to_vec_named(&file).expect("test setup");
        assert!(matches!(
            open_key_file(&bytes, b"pw"),
            Err(KeyFileError::Newer(2))
        ));
        #[derive(Serialize)]
        struct Future {
            version: u32,
            kdf: u8,
        }
        let bytes = rmp_serde::to_vec_named(&Future { version: 2, kdf: 9 }).expect("test setup");
        assert!(matches!(
            open_key_file(&bytes, b"pw"),
            Err(KeyFileError::Newer(2))
        ));
        assert!(matches!(
            key_file_params(&bytes),
            Err(KeyFileError::Newer(2))
        ));
        // Version 0 and a file with no version at all are damage.
        let bytes = rmp_serde::to_vec_named(&Future { version: 0, kdf: 9 }).expect("test setup");
        assert!(matches!(
            open_key_file(&bytes, b"pw"),
            Err(KeyFileError::Malformed(_))
        ));
        assert!(matches!(
            open_key_file(b"not a key file", b"pw"),
            Err(KeyFileError::Malformed(_))
        ));
    }

    #[test]
    fn secrets_do_not_print() {
        let k = MasterKeys::generate().unwrap();
        let s = format!("{k:?}");
        assert!(s.contains("redacted"));
        assert!(!s.contains(&hex::encode(k.enc.0)));
    }
}

//! Keys and sealing (repo-format.md §2 and §4).
//!
//! A password opens a key file: Argon2id derives a key-encryption key that unseals the random
//! master keys. Every other stored object is sealed with XChaCha20-Poly1305 under the encryption
//! key and a fresh random 24-byte nonce; the associated data binds the object's kind (and, for
//! blobs, its id), so nothing can be passed off as something else. No caller chooses a nonce.
//!
//! A put-only key (repo-format.md §2.2) holds no `enc`: what it writes is sealed to the
//! repository's X25519 public key instead, one ephemeral key pair per object (§4.6), and it
//! opens nothing. A full key opens both envelopes; the envelope's first 16 bytes say which.

use std::fmt;

use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

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

/// What a set of keys can do with sealed objects (repo-format.md §2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Access {
    /// The three master keys: seals under `enc`, opens both kinds of envelope.
    Full {
        /// XChaCha20-Poly1305 key for every sealed object.
        enc: Secret,
        /// The repository's X25519 secret key, derived from `enc` (repo-format.md §2.2).
        x25519: Secret,
    },
    /// A put-only key: seals to the repository's public key, opens nothing.
    PutOnly,
}

/// The repository's master keys (repo-format.md §2): drawn once by `init`, never changed,
/// wrapped by every key file. Everything but key files is sealed or identified with them.
/// A put-only key's keys lack `enc` (and with it the X25519 secret key): see
/// [`MasterKeys::put_only`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterKeys {
    access: Access,
    /// The repository's X25519 public key (repo-format.md §2.2).
    public: [u8; 32],
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
        let x25519 = Secret(blake3::derive_key(X25519_SECRET_CONTEXT, &enc));
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(x25519.0));
        MasterKeys {
            access: Access::Full {
                enc: Secret(enc),
                x25519,
            },
            public: public.to_bytes(),
            id: Secret(id),
            chunker: Secret(chunker),
            tree_id: Secret(tree_id),
        }
    }

    /// The keys of a put-only key file (repo-format.md §2.2): the repository's public key, the
    /// `id` key and the `chunker` key; no `enc`. They seal to the public key and open nothing.
    pub fn put_only(public: [u8; 32], id: [u8; 32], chunker: [u8; 32]) -> Self {
        let tree_id = blake3::derive_key("cairn v1 tree id key", &id);
        MasterKeys {
            access: Access::PutOnly,
            public,
            id: Secret(id),
            chunker: Secret(chunker),
            tree_id: Secret(tree_id),
        }
    }

    /// The key put-only writers seal their lock files under (repo-format.md §10.3), derived
    /// from `id`: every key, full or put-only, opens them.
    fn lock_key(&self) -> Secret {
        Secret(blake3::derive_key(LOCK_KEY_CONTEXT, &self.id.0))
    }

    /// Whether these are a put-only key's keys, which can write but never read.
    pub fn is_put_only(&self) -> bool {
        self.access == Access::PutOnly
    }

    /// The repository's X25519 public key (repo-format.md §2.2).
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// The `enc` master key; None for a put-only key.
    pub fn enc(&self) -> Option<&Secret> {
        match &self.access {
            Access::Full { enc, .. } => Some(enc),
            Access::PutOnly => None,
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
    ///
    /// A put-only key seals to the repository's public key instead (§4.6); the result is then
    /// [`PUBLIC_SEAL_OVERHEAD`] bytes longer.
    pub fn seal(&self, kind: ObjectKind, binding: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
        match &self.access {
            Access::Full { enc, .. } => seal_with(&enc.0, kind, binding, plain),
            // Locks must be read by other put-only writers too (repo-format.md §10.3).
            Access::PutOnly if kind == ObjectKind::Lock => {
                seal_with(&self.lock_key().0, kind, binding, plain)
            }
            Access::PutOnly => seal_to_public(&self.public, kind, binding, plain),
        }
    }

    /// Opens a sealed object; any change to its bytes, kind or binding fails.
    pub fn open(
        &self,
        kind: ObjectKind,
        binding: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, OpenError> {
        let mut plain = Vec::new();
        self.open_into(kind, binding, sealed, &mut plain)?;
        Ok(plain)
    }

    /// [`MasterKeys::open`] into a buffer the caller reuses.
    pub fn open_into(
        &self,
        kind: ObjectKind,
        binding: &[u8],
        sealed: &[u8],
        plain: &mut Vec<u8>,
    ) -> Result<(), OpenError> {
        if kind == ObjectKind::Lock {
            // A put-only key's lock (repo-format.md §10.3), or else a full key's.
            if open_into(&self.lock_key().0, kind, binding, sealed, plain).is_ok() {
                return Ok(());
            }
        }
        let Access::Full { enc, x25519 } = &self.access else {
            return Err(OpenError::PutOnly);
        };
        match sealed.strip_prefix(PUBLIC_MAGIC.as_slice()) {
            Some(rest) => {
                if rest.len() < 32 + SEAL_OVERHEAD {
                    return Err(OpenError::TooShort);
                }
                let (ephemeral, rest) = rest.split_at(32);
                let mut eph = [0u8; 32];
                eph.copy_from_slice(ephemeral);
                let key = public_envelope_key(x25519, &eph, &eph, &self.public)
                    .ok_or(OpenError::Authentication)?;
                open_into(&key.0, kind, binding, rest, plain)
            }
            None => open_into(&enc.0, kind, binding, sealed, plain),
        }
    }
}

/// repo-format.md §2.2: BLAKE3 `derive_key` context of the X25519 secret key, from `enc`.
const X25519_SECRET_CONTEXT: &str = "cairn v2 x25519 secret key";
/// repo-format.md §10.3: BLAKE3 `derive_key` context of put-only writers' lock key, from `id`.
const LOCK_KEY_CONTEXT: &str = "cairn v2 put-only lock key";
/// repo-format.md §4.6: BLAKE3 `derive_key` context of a public envelope's AEAD key.
const PUBLIC_ENVELOPE_CONTEXT: &str = "cairn v2 x25519 envelope key";
/// repo-format.md §4.6: the 16 bytes a public envelope starts with (`cairn-put-only-1`).
pub const PUBLIC_MAGIC: [u8; 16] = *b"cairn-put-only-1";
/// Bytes a public envelope adds to its plaintext: magic, ephemeral public key, nonce and tag,
/// 88 (repo-format.md §4.6).
pub const PUBLIC_SEAL_OVERHEAD: usize = PUBLIC_MAGIC.len() + 32 + SEAL_OVERHEAD;

/// The AEAD key of a public envelope: the X25519 shared secret of `ours` and `theirs`, then
/// BLAKE3 `derive_key` over `shared || ephemeral public key || repository public key`
/// (repo-format.md §4.6). The writer holds the ephemeral secret, the reader the repository's.
/// None when the shared secret is all zero (a public key of small order: never one cairn
/// writes).
fn public_envelope_key(
    ours: &Secret,
    theirs: &[u8; 32],
    ephemeral: &[u8; 32],
    public: &[u8; 32],
) -> Option<Secret> {
    let secret = x25519_dalek::StaticSecret::from(ours.0);
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*theirs));
    if !shared.was_contributory() {
        return None;
    }
    let mut material = Zeroizing::new([0u8; 96]);
    material[..32].copy_from_slice(shared.as_bytes());
    material[32..64].copy_from_slice(ephemeral);
    material[64..].copy_from_slice(public);
    Some(Secret(blake3::derive_key(
        PUBLIC_ENVELOPE_CONTEXT,
        material.as_slice(),
    )))
}

/// Seals `plain` to the repository's public key (repo-format.md §4.6):
/// `magic || ephemeral public key || nonce || ciphertext || tag`, with a fresh ephemeral
/// X25519 key pair whose secret half is wiped at once: not even the writer can open the
/// object afterwards.
fn seal_to_public(
    public: &[u8; 32],
    kind: ObjectKind,
    binding: &[u8],
    plain: &[u8],
) -> Result<Vec<u8>> {
    let ephemeral = Secret(random_array()?);
    let eph_public =
        x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(ephemeral.0)).to_bytes();
    let key = public_envelope_key(&ephemeral, public, &eph_public, public).ok_or_else(|| {
        Error::InvalidInput("the repository's public key is not a usable X25519 key".into())
    })?;
    drop(ephemeral);
    let sealed = seal_with(&key.0, kind, binding, plain)?;
    let mut out = Vec::with_capacity(PUBLIC_MAGIC.len() + 32 + sealed.len());
    out.extend_from_slice(&PUBLIC_MAGIC);
    out.extend_from_slice(&eph_public);
    out.extend_from_slice(&sealed);
    Ok(out)
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
    /// The keys are a put-only key's, which open nothing (repo-format.md §2.2).
    #[error("a put-only key cannot open what the repository stores")]
    PutOnly,
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
        let blocks = params.block_count();
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Secret([0u8; 32]);
        // The same computation either way; only where its memory comes from differs.
        match KdfMemory::new(blocks) {
            Some(mut memory) => {
                argon.hash_password_into_with_memory(password, salt, &mut out.0, memory.blocks())
            }
            None => argon.hash_password_into(password, salt, &mut out.0),
        }
        .map_err(|e| format!("Argon2id failed: {e}"))?;
        Ok(out)
    }
}

/// Argon2id's working memory (`m_cost_kib`, 64 MiB by default) mapped fresh from the kernel,
/// 2 MiB-aligned and marked for transparent huge pages: the argon2 crate's own allocation
/// writes zeros over all of it first and then takes a page fault every 4 KiB (16,384 of them
/// for 64 MiB), some 30 ms on the path of every command that opens a repository; pages the
/// kernel maps already zeroed, 2 MiB at a time, cost a few. Unmapped (and so gone from the
/// process) when dropped.
struct KdfMemory {
    map: *mut libc::c_void,
    map_len: usize,
    blocks: *mut argon2::Block,
    count: usize,
}

/// The alignment (and size) of a transparent huge page on x86-64 and arm64.
const HUGE_PAGE: usize = 2 << 20;

impl KdfMemory {
    /// `count` blocks, or None when the mapping cannot be had (the caller allocates then).
    fn new(count: usize) -> Option<KdfMemory> {
        let len = count.checked_mul(std::mem::size_of::<argon2::Block>())?;
        let map_len = len.checked_add(HUGE_PAGE)?;
        // SAFETY: a new private anonymous mapping; no existing memory is touched.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return None;
        }
        let offset = (map as usize).next_multiple_of(HUGE_PAGE) - map as usize;
        // SAFETY: `offset + len <= map_len`: the pointer stays inside the mapping.
        let blocks = unsafe { map.cast::<u8>().add(offset) }.cast::<argon2::Block>();
        #[cfg(target_os = "linux")]
        // SAFETY: advice on a range inside the mapping; failing (no THP) changes nothing.
        unsafe {
            libc::madvise(blocks.cast(), len, libc::MADV_HUGEPAGE);
        }
        Some(KdfMemory {
            map,
            map_len,
            blocks,
            count,
        })
    }

    fn blocks(&mut self) -> &mut [argon2::Block] {
        // SAFETY: `count` blocks lie inside the mapping, aligned to 2 MiB (more than a
        // block's 64-byte alignment); a fresh anonymous mapping is zeroed, and all zero bytes
        // are a valid block; the mapping lives as long as `self`, and `&mut self` makes this
        // the only reference to it.
        unsafe { std::slice::from_raw_parts_mut(self.blocks, self.count) }
    }
}

impl Drop for KdfMemory {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; no reference to it outlives
        // `self` (`blocks` borrows `self`).
        unsafe {
            libc::munmap(self.map, self.map_len);
        }
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
    /// For a put-only key file, what it carries of the config in place of the sealed config it
    /// cannot open (repo-format.md §2.2); None for a full key.
    pub put_only: Option<PutOnlyConfig>,
}

/// What a put-only key file carries of the repository's config (repo-format.md §2.2): what a
/// backup needs to cut, identify, compress and pack data like every other writer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutOnlyConfig {
    /// The repository id (its cache directory is named by it).
    #[serde(with = "serde_bytes")]
    pub repo_id: [u8; 32],
    /// The chunker parameters of the config (repo-format.md §3.1, §5).
    pub chunker: crate::chunker::ChunkerParams,
    /// The config's `compression`.
    pub compression: String,
    /// The config's `pack_size`.
    pub pack_size: u32,
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

/// repo-format.md §2.1: the version of key files and of full keys' payloads this code reads
/// and writes.
pub const KEY_FILE_VERSION: u32 = 1;
/// repo-format.md §2.2: the payload version of a put-only key file.
pub const PUT_ONLY_PAYLOAD_VERSION: u32 = 2;

/// The `version` of a key file or key payload, read alone before anything else (repo-format.md
/// §12): a future format that no longer parses as this one is still named as newer, not
/// misread as damage or as a wrong password. Versions above `highest` are newer.
fn check_version(bytes: &[u8], what: &str, highest: u32) -> Result<u32, KeyFileError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        version: u32,
    }
    let v: VersionOnly = rmp_serde::from_slice(bytes)
        .map_err(|e| KeyFileError::Malformed(format!("{what}: no version: {e}")))?;
    match v.version {
        0 => Err(KeyFileError::Malformed(format!("{what} version 0"))),
        n if n > highest => Err(KeyFileError::Newer(n)),
        n => Ok(n),
    }
}

/// The sealed part of a put-only key file (repo-format.md §2.2): the public key, the id and
/// chunker keys, and what a backup needs of the config. Nothing in it opens a stored object.
#[derive(Serialize, Deserialize)]
struct PutOnlyPayloadRepr {
    version: u32,
    public: Secret,
    id: Secret,
    chunker: Secret,
    created_ns: i64,
    host: String,
    user: String,
    config: PutOnlyConfig,
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
    let enc = keys
        .enc()
        .ok_or_else(|| Error::InvalidInput("a put-only key cannot make a full key file".into()))?;
    let payload = KeyPayloadRepr {
        version: KEY_FILE_VERSION,
        enc: enc.clone(),
        id: keys.id.clone(),
        chunker: keys.chunker.clone(),
        created_ns,
        host: host.to_string(),
        user: user.to_string(),
        config: config_copy.map(<[u8]>::to_vec),
    };
    let plain = rmp_serde::to_vec_named(&payload)
        .map_err(|e| Error::InvalidInput(format!("encoding key payload: {e}")))?;
    seal_key_file(Zeroizing::new(plain), &kek, params, salt)
}

/// Makes a put-only key file (repo-format.md §2.2) for `password`: it carries the public key of
/// `keys` (a full key's), their `id` and `chunker` keys and `config`, and nothing that opens a
/// stored object.
pub fn make_put_only_key_file(
    keys: &MasterKeys,
    config: &PutOnlyConfig,
    password: &[u8],
    params: KdfParams,
    host: &str,
    user: &str,
    created_ns: i64,
) -> Result<Vec<u8>> {
    let salt: [u8; SALT_LEN] = random_array()?;
    let kek = params
        .derive(password, &salt)
        .map_err(Error::InvalidInput)?;
    let payload = PutOnlyPayloadRepr {
        version: PUT_ONLY_PAYLOAD_VERSION,
        public: Secret(keys.public_key()),
        id: keys.id.clone(),
        chunker: keys.chunker.clone(),
        created_ns,
        host: host.to_string(),
        user: user.to_string(),
        config: config.clone(),
    };
    let plain = rmp_serde::to_vec_named(&payload)
        .map_err(|e| Error::InvalidInput(format!("encoding key payload: {e}")))?;
    seal_key_file(Zeroizing::new(plain), &kek, params, salt)
}

/// Seals a key payload under the key-encryption key and wraps it in a key file.
fn seal_key_file(
    plain: Zeroizing<Vec<u8>>,
    kek: &Secret,
    params: KdfParams,
    salt: [u8; SALT_LEN],
) -> Result<Vec<u8>> {
    let sealed = seal_with(&kek.0, ObjectKind::KeyPayload, &[], &plain);
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
    check_version(bytes, "key file", KEY_FILE_VERSION)?;
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
    let plain = match open_with(&kek.0, ObjectKind::KeyPayload, &[], &file.sealed) {
        Ok(p) => Zeroizing::new(p),
        Err(OpenError::TooShort) => {
            return Err(KeyFileError::Malformed("sealed keys too short".into()))
        }
        Err(OpenError::Authentication | OpenError::PutOnly) => {
            return Err(KeyFileError::WrongPassword)
        }
    };
    let version = check_version(&plain, "sealed key payload", PUT_ONLY_PAYLOAD_VERSION)?;
    if version == PUT_ONLY_PAYLOAD_VERSION {
        let p = rmp_serde::from_slice::<PutOnlyPayloadRepr>(&plain)
            .map_err(|e| KeyFileError::Malformed(format!("sealed put-only keys: {e}")))?;
        let keys = MasterKeys::put_only(p.public.0, p.id.0, p.chunker.0);
        let info = KeyInfo {
            created_ns: p.created_ns,
            host: p.host.clone(),
            user: p.user.clone(),
            params: file.params,
            config_copy: None,
            put_only: Some(p.config.clone()),
        };
        return Ok((keys, info));
    }
    let payload = rmp_serde::from_slice::<KeyPayloadRepr>(&plain)
        .map_err(|e| KeyFileError::Malformed(format!("sealed keys: {e}")))?;
    let keys = MasterKeys::new(payload.enc.0, payload.id.0, payload.chunker.0);
    let info = KeyInfo {
        created_ns: payload.created_ns,
        host: payload.host.clone(),
        user: payload.user.clone(),
        params: file.params,
        config_copy: payload.config.clone(),
        put_only: None,
    };
    Ok((keys, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key-encryption key from the mapped memory is the one the argon2 crate computes in
    /// memory of its own, for the parameters key files use (the default's 64 MiB and 3
    /// passes among them) and a memory size that is not a whole number of huge pages.
    #[test]
    fn the_key_from_mapped_memory_is_the_one_argon2_computes() {
        let salt = [7u8; 32];
        for params in [
            KdfParams::default(),
            KdfParams {
                m_cost_kib: KdfParams::MIN_M_COST_KIB + 1,
                t_cost: 2,
                p_cost: 3,
            },
        ] {
            let ours = params.derive(b"password", &salt).expect("derive");
            let p = argon2::Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
                .expect("params");
            let mut theirs = [0u8; 32];
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p)
                .hash_password_into(b"password", &salt, &mut theirs)
                .expect("argon2");
            assert_eq!(ours.0, theirs, "{params:?}");
        }
    }

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

    /// A key file whose payload says version 3 (its password is right): newer, not damaged
    /// (2 is a put-only key's payload).
    #[test]
    fn a_key_payload_of_a_newer_version_is_named_newer() {
        let k = MasterKeys::generate().expect("test setup");
        let salt = [7u8; SALT_LEN];
        let kek = small().derive(b"pw", &salt).expect("test setup");
        let payload = KeyPayloadRepr {
            version: 3,
            enc: k.enc().expect("full").clone(),
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
            Err(KeyFileError::Newer(3))
        ));
        // A payload of version 2 that no longer has the v1 fields: still newer.
        #[derive(Serialize)]
        struct Future {
            version: u32,
            keys: Vec<u8>,
        }
        let plain = rmp_serde::to_vec_named(&Future {
            version: 3,
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
            Err(KeyFileError::Newer(3))
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

    fn put_only_of(k: &MasterKeys) -> MasterKeys {
        MasterKeys::put_only(k.public_key(), k.id.0, k.chunker.0)
    }

    /// What a put-only key seals, only a full key opens: not the put-only key itself, and not
    /// under another kind or binding.
    #[test]
    fn a_put_only_key_seals_to_the_public_key_and_only_a_full_key_opens_it() {
        let full = MasterKeys::generate().expect("test setup");
        let put = put_only_of(&full);
        let sealed = put
            .seal(ObjectKind::DataBlob, &[1; 32], b"hello")
            .expect("seal");
        assert_eq!(&sealed[..16], &PUBLIC_MAGIC);
        assert_eq!(sealed.len(), 5 + PUBLIC_SEAL_OVERHEAD);
        assert_eq!(
            full.open(ObjectKind::DataBlob, &[1; 32], &sealed)
                .expect("opens"),
            b"hello"
        );
        assert_eq!(
            put.open(ObjectKind::DataBlob, &[1; 32], &sealed),
            Err(OpenError::PutOnly)
        );
        assert!(full.open(ObjectKind::TreeBlob, &[1; 32], &sealed).is_err());
        assert!(full.open(ObjectKind::DataBlob, &[2; 32], &sealed).is_err());
        // Another repository's full key does not open it.
        let other = MasterKeys::generate().expect("test setup");
        assert!(other.open(ObjectKind::DataBlob, &[1; 32], &sealed).is_err());
        // Nor what a full key sealed.
        let by_full = full.seal(ObjectKind::Index, b"", b"x").expect("seal");
        assert_eq!(
            put.open(ObjectKind::Index, b"", &by_full),
            Err(OpenError::PutOnly)
        );
        // Every bit of a public envelope counts.
        for i in 0..sealed.len() * 8 {
            let mut s = sealed.clone();
            s[i / 8] ^= 1 << (i % 8);
            assert!(
                full.open(ObjectKind::DataBlob, &[1; 32], &s).is_err(),
                "bit {i} flipped but opened"
            );
        }
    }

    /// Both kinds of key read a put-only key's lock; a put-only key does not read a full key's.
    #[test]
    fn put_only_locks_open_with_every_key() {
        let full = MasterKeys::generate().expect("test setup");
        let put = put_only_of(&full);
        let lock = put.seal(ObjectKind::Lock, b"", b"lock").expect("seal");
        assert_eq!(
            put.open(ObjectKind::Lock, b"", &lock).expect("opens"),
            b"lock"
        );
        assert_eq!(
            full.open(ObjectKind::Lock, b"", &lock).expect("opens"),
            b"lock"
        );
        let full_lock = full.seal(ObjectKind::Lock, b"", b"lock").expect("seal");
        assert!(put.open(ObjectKind::Lock, b"", &full_lock).is_err());
    }

    #[test]
    fn a_put_only_key_file_opens_put_only_keys_and_carries_the_config() {
        let full = MasterKeys::generate().expect("test setup");
        let config = PutOnlyConfig {
            repo_id: [9; 32],
            chunker: crate::chunker::ChunkerParams::default(),
            compression: "auto".into(),
            pack_size: 1 << 20,
        };
        let f = make_put_only_key_file(&full, &config, b"pw", small(), "h", "u", 5)
            .expect("test setup");
        let (k, info) = open_key_file(&f, b"pw").expect("opens");
        assert!(k.is_put_only());
        assert_eq!(k, put_only_of(&full));
        assert_eq!(info.put_only, Some(config));
        assert!(info.config_copy.is_none());
        assert!(matches!(
            open_key_file(&f, b"other"),
            Err(KeyFileError::WrongPassword)
        ));
        // It cannot make a full key file.
        assert!(make_key_file(&k, b"pw", small(), "h", "u", 5, None).is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let k = MasterKeys::generate().unwrap();
        let s = format!("{k:?}");
        assert!(s.contains("redacted"));
        assert!(!s.contains(&hex::encode(k.enc().expect("full").0)));
    }
}

//! 32-byte identifiers as distinct types, printed as lowercase hex.
//!
//! Blob ids (chunks and trees) are keyed BLAKE3 of the plaintext; file ids (packs, index files,
//! snapshots, key files) are plain BLAKE3 of the stored bytes (repo-format.md §3).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of every id in bytes.
pub const ID_LEN: usize = 32;

macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; ID_LEN]);

        impl $name {
            /// The id as 64 lowercase hex digits: the file name it gives, or how it is shown
            /// in full.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 8 hex digits, for display.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }

            /// Parses exactly 64 hex digits; `None` for any other length or a non-hex
            /// character. Prefix lookups (`cairn restore 3fa1`) are the repository's job.
            pub fn from_hex(s: &str) -> Option<Self> {
                let mut out = [0u8; ID_LEN];
                hex::decode_to_slice(s, &mut out).ok()?;
                Some(Self(out))
            }

            /// The 32 raw bytes, as they are hashed, bound into associated data or stored as
            /// a `bin32` (repo-format.md §1.1).
            pub fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let bytes: serde_bytes::ByteBuf = Deserialize::deserialize(d)?;
                let arr: [u8; ID_LEN] = bytes.as_slice().try_into().map_err(|_| {
                    serde::de::Error::invalid_length(bytes.len(), &"32 bytes")
                })?;
                Ok(Self(arr))
            }
        }
    };
}

define_id!(
    /// A blob (chunk or tree) in a pack: keyed BLAKE3 of its plaintext.
    BlobId
);
define_id!(
    /// A pack file: BLAKE3 of its bytes.
    PackId
);
define_id!(
    /// A snapshot file: BLAKE3 of its bytes.
    SnapshotId
);
define_id!(
    /// An index file: BLAKE3 of its bytes.
    IndexId
);
define_id!(
    /// A key file: BLAKE3 of its bytes.
    KeyId
);
define_id!(
    /// The repository's random identity, stored in the config.
    RepoId
);

/// A file chunk's id: keyed BLAKE3 of the chunk under the `id` master key (repo-format.md §2).
/// An alias of [`BlobId`] that names intent; unlike [`TreeId`], the compiler does not tell it
/// apart from other blob ids.
pub type ChunkId = BlobId;

/// A directory tree blob's id: keyed BLAKE3 of the tree's canonical encoding under the
/// tree-id key (repo-format.md §2, §7.2). A distinct type, so a function that wants a tree
/// cannot be handed a chunk.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TreeId(pub BlobId);

impl TreeId {
    /// The same id as a [`BlobId`], for looking the tree blob up in the index.
    pub fn blob(&self) -> BlobId {
        self.0
    }
}

impl fmt::Display for TreeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for TreeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TreeId({})", self.0.short())
    }
}

/// BLAKE3 of stored bytes: the name of every file in the repository but `config`.
pub fn content_hash(bytes: &[u8]) -> [u8; ID_LEN] {
    *blake3::hash(bytes).as_bytes()
}

/// True for a 64-character lowercase hex name, the only file names a repository lists.
pub fn is_id_name(name: &str) -> bool {
    name.len() == 2 * ID_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

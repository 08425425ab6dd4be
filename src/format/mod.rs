//! The object envelope (repo-format.md §4): `seal(compression-flag || body)`.
//!
//! Every stored object but key files goes through [`encode_object`]; readers go through
//! [`decode_object`], which bounds every allocation by what the caller expects.

pub mod chunker;
pub mod crypto;
pub mod id;
pub mod index;
pub mod pack;

use std::fmt;
use std::io::Read;

use crate::crypto::{MasterKeys, ObjectKind, OpenError};
use crate::error::{Error, Result};

/// repo-format.md §4: the first plaintext byte says how the body is stored.
const FLAG_RAW: u8 = 0;
const FLAG_ZSTD: u8 = 1;

/// Largest metadata object (index file, snapshot, tree) a reader accepts: 1 GiB.
pub const MAX_METADATA_LEN: usize = 1 << 30;

/// How objects are compressed (the `compression` field of the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Store everything raw.
    Off,
    /// zstd level 3, skipped quickly for data that does not compress.
    Auto,
    /// zstd at a fixed level (1..=19), still stored raw when that is smaller.
    Zstd(i32),
}

impl Compression {
    /// The zstd level `auto` compresses at (repo-format.md §4.4, step 3).
    pub const AUTO_LEVEL: i32 = 3;
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::Off => f.write_str("off"),
            Compression::Auto => f.write_str("auto"),
            Compression::Zstd(l) => write!(f, "zstd:{l}"),
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Compression::Off),
            "auto" => Ok(Compression::Auto),
            _ => {
                let level = s
                    .strip_prefix("zstd:")
                    .and_then(|l| l.parse::<i32>().ok())
                    .ok_or_else(|| format!("compression {s:?} is not one of auto, off, zstd:N"))?;
                if !(1..=19).contains(&level) {
                    return Err(format!("zstd level {level} is outside 1..=19"));
                }
                Ok(Compression::Zstd(level))
            }
        }
    }
}

thread_local! {
    /// One zstd compression context per thread and level: creating one costs more than
    /// compressing a small blob.
    static COMPRESSORS: std::cell::RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// zstd at `level`, reusing this thread's context.
fn zstd_compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSORS.with(|c| {
        let mut c = c.borrow_mut();
        if !c.iter().any(|(l, _)| *l == level) {
            c.push((level, zstd::bulk::Compressor::new(level)?));
        }
        let (_, comp) = c
            .iter_mut()
            .find(|(l, _)| *l == level)
            .ok_or_else(|| std::io::Error::other("zstd context"))?;
        comp.compress(data)
    })
}

/// zstd decompression of a frame of known size, reusing this thread's context.
/// Decompresses one frame into the spare capacity of `out` (reserved by the caller for the
/// frame's declared size).
fn zstd_decompress_into(data: &[u8], out: &mut Vec<u8>) -> std::io::Result<usize> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        match d.as_mut() {
            Some(dec) => dec.decompress_to_buffer(data, out),
            None => Err(std::io::Error::other("zstd context")),
        }
    })
}

/// Size of the sample that `auto` compresses first to decide whether the rest is worth it.
const SAMPLE_LEN: usize = 64 * 1024;

/// Builds the envelope plaintext: flag byte, then the body raw or zstd-compressed.
pub fn compress_body(plain: &[u8], compression: Compression) -> Vec<u8> {
    let level = match compression {
        Compression::Off => None,
        Compression::Auto => Some(Compression::AUTO_LEVEL),
        Compression::Zstd(l) => Some(l),
    };
    if let Some(level) = level {
        if plain.len() >= 64 && (compression != Compression::Auto || worth_compressing(plain)) {
            if let Ok(z) = zstd_compress(plain, level) {
                if z.len() + 1 < plain.len() {
                    let mut out = Vec::with_capacity(z.len() + 1);
                    out.push(FLAG_ZSTD);
                    out.extend_from_slice(&z);
                    return out;
                }
            }
        }
    }
    let mut out = Vec::with_capacity(plain.len() + 1);
    out.push(FLAG_RAW);
    out.extend_from_slice(plain);
    out
}

/// `auto`'s early give-up: compress a sample at level 1; under 3% saved means media or
/// encrypted data, stored raw without spending a full compression pass on it.
fn worth_compressing(plain: &[u8]) -> bool {
    if plain.len() <= 2 * SAMPLE_LEN {
        return true;
    }
    let mid = plain.len() / 2;
    let sample = &plain[mid - SAMPLE_LEN / 2..mid + SAMPLE_LEN / 2];
    match zstd_compress(sample, 1) {
        Ok(z) => z.len() * 100 < sample.len() * 97,
        Err(_) => false,
    }
}

/// Compresses (as configured) and seals one object.
pub fn encode_object(
    keys: &MasterKeys,
    kind: ObjectKind,
    binding: &[u8],
    plain: &[u8],
    compression: Compression,
) -> Result<Vec<u8>> {
    let body = compress_body(plain, compression);
    keys.seal(kind, binding, &body)
}

/// How long the decoded plaintext may be.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// Exactly this many bytes (blobs: the raw length from the pack header / index).
    Exact(usize),
    /// At most this many bytes.
    AtMost(usize),
}

/// Why an object could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The sealed object did not open: too short, or it fails authentication under this key,
    /// kind and binding (repo-format.md §4.1, §4.2).
    #[error("{0}")]
    Open(#[from] OpenError),
    /// The plaintext has no flag byte (repo-format.md §4.3).
    #[error("empty plaintext")]
    Empty,
    /// The flag byte is neither `00` (raw) nor `01` (zstd) (repo-format.md §4.3).
    #[error("unknown compression flag {0}")]
    Flag(u8),
    /// The zstd frame is damaged; zstd's own message.
    #[error("decompression failed: {0}")]
    Zstd(String),
    /// The body's length breaks the bound the reader expected ([`Expect`]; repo-format.md §4.5).
    #[error("plaintext is {found} bytes, expected {expected}")]
    Length {
        /// The body's length in bytes, or the content size a zstd frame declares.
        found: usize,
        /// The bound as text: `"4096"` (exact) or `"at most 4096"`.
        expected: String,
    },
}

/// Opens, decompresses and length-checks one object.
pub fn decode_object(
    keys: &MasterKeys,
    kind: ObjectKind,
    binding: &[u8],
    sealed: &[u8],
    expect: Expect,
) -> Result<Vec<u8>, DecodeError> {
    let plain = keys.open(kind, binding, sealed)?;
    decompress_body(plain, expect)
}

/// Buffers that [`decode_object_into`] reuses from one object to the next.
#[derive(Default)]
pub struct DecodeBufs {
    opened: Vec<u8>,
    out: Vec<u8>,
}

/// [`decode_object`] into reused buffers: the plaintext is borrowed from `bufs`.
pub fn decode_object_into<'a>(
    keys: &MasterKeys,
    kind: ObjectKind,
    binding: &[u8],
    sealed: &[u8],
    expect: Expect,
    bufs: &'a mut DecodeBufs,
) -> Result<&'a [u8], DecodeError> {
    keys.open_into(kind, binding, sealed, &mut bufs.opened)?;
    Ok(
        match decompress_into(&bufs.opened, expect, &mut bufs.out)? {
            Body::Raw => &bufs.opened[1..],
            Body::Decompressed => &bufs.out,
        },
    )
}

/// Checks and decompresses an opened envelope plaintext (flag byte, then the body) within
/// `expect` (repo-format.md §4.3, §4.5); returns the object's bytes. A raw body reuses `plain`.
pub fn decompress_body(mut plain: Vec<u8>, expect: Expect) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    match decompress_into(&plain, expect, &mut out)? {
        Body::Raw => {
            plain.remove(0);
            Ok(plain)
        }
        Body::Decompressed => Ok(out),
    }
}

/// Where [`decompress_into`] left the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// Stored raw: the plaintext after its flag byte.
    Raw,
    /// Decompressed into the output buffer.
    Decompressed,
}

/// Checks and decompresses an envelope plaintext (flag byte, then the body) into `out`,
/// reusing its allocation. A raw body is not copied: it stays in `plain`.
pub fn decompress_into(
    plain: &[u8],
    expect: Expect,
    out: &mut Vec<u8>,
) -> Result<Body, DecodeError> {
    let (max, exact) = match expect {
        Expect::Exact(n) => (n, true),
        Expect::AtMost(n) => (n, false),
    };
    let flag = *plain.first().ok_or(DecodeError::Empty)?;
    let body = &plain[1..];
    let (found, kind) = match flag {
        FLAG_RAW => (body.len(), Body::Raw),
        FLAG_ZSTD => {
            out.clear();
            match zstd::zstd_safe::get_frame_content_size(body) {
                Ok(Some(n)) if n as usize <= max => {
                    out.reserve(n as usize);
                    zstd_decompress_into(body, out)
                        .map_err(|e| DecodeError::Zstd(e.to_string()))?;
                }
                Ok(Some(n)) => {
                    return Err(DecodeError::Length {
                        found: n as usize,
                        expected: format!("at most {max}"),
                    })
                }
                _ => {
                    let dec = zstd::stream::read::Decoder::new(body)
                        .map_err(|e| DecodeError::Zstd(e.to_string()))?;
                    dec.take(max as u64 + 1)
                        .read_to_end(out)
                        .map_err(|e| DecodeError::Zstd(e.to_string()))?;
                }
            }
            (out.len(), Body::Decompressed)
        }
        f => return Err(DecodeError::Flag(f)),
    };
    if (exact && found != max) || found > max {
        return Err(DecodeError::Length {
            found,
            expected: if exact {
                max.to_string()
            } else {
                format!("at most {max}")
            },
        });
    }
    Ok(kind)
}

/// MessagePack with structs as arrays (trees, index files, pack headers: compact, canonical).
pub fn to_msgpack_compact<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    rmp_serde::to_vec(v)
        .map_err(|e| Error::InvalidInput(format!("MessagePack encoding failed: {e}")))
}

/// MessagePack with structs as maps (config, snapshots: small and extensible).
pub fn to_msgpack_named<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    rmp_serde::to_vec_named(v)
        .map_err(|e| Error::InvalidInput(format!("MessagePack encoding failed: {e}")))
}

/// Decodes MessagePack, naming `what` on failure.
pub fn from_msgpack<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| Error::corrupt(what, format!("bad MessagePack: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_data_is_compressed_and_round_trips() {
        let plain = vec![7u8; 100_000];
        let body = compress_body(&plain, Compression::Auto);
        assert_eq!(body[0], FLAG_ZSTD);
        assert!(body.len() < 1000);
        assert_eq!(
            decompress_body(body, Expect::Exact(plain.len())).unwrap(),
            plain
        );
    }

    #[test]
    fn random_data_is_stored_raw() {
        let mut plain = vec![0u8; 300_000];
        crate::crypto::random_bytes(&mut plain).unwrap();
        let body = compress_body(&plain, Compression::Auto);
        assert_eq!(body[0], FLAG_RAW);
        assert_eq!(
            decompress_body(body, Expect::Exact(plain.len())).unwrap(),
            plain
        );
    }

    #[test]
    fn decompression_is_bounded_by_expectation() {
        let plain = vec![0u8; 1 << 20];
        let body = compress_body(&plain, Compression::Zstd(3));
        assert!(decompress_body(body.clone(), Expect::AtMost(1000)).is_err());
        assert!(decompress_body(body, Expect::Exact((1 << 20) - 1)).is_err());
    }

    #[test]
    fn compression_setting_parses() {
        assert_eq!("auto".parse(), Ok(Compression::Auto));
        assert_eq!("off".parse(), Ok(Compression::Off));
        assert_eq!("zstd:7".parse(), Ok(Compression::Zstd(7)));
        assert!("zstd:99".parse::<Compression>().is_err());
        assert!("lz4".parse::<Compression>().is_err());
    }
}

//! The frames of `cairn serve` (docs/serve-protocol.md), shared by the server and the `ssh://`
//! client: pure encoding and decoding over `Read` and `Write`, no storage.
//!
//! Every read has a size bound stated here, checked before anything of that size is buffered:
//! a name is at most 255 bytes (its length is one byte), an error message at most
//! [`MAX_MESSAGE`] bytes, an object to store at most [`max_object_len`] (the largest object
//! of any kind), an object read at most its kind's [`FileKind::max_len`] (or less, as the
//! client asks), a listing at most [`MAX_LIST_BYTES`]. Payloads are read with [`read_exact_bounded`], which grows its buffer
//! only as bytes arrive, so a length a peer announces and never sends costs nothing.

use std::io::{self, Read, Write};

use crate::backend::FileKind;
use crate::id::is_id_name;

/// docs/serve-protocol.md §2: the 8 bytes that open both hellos.
pub const MAGIC: [u8; 8] = *b"cairn-sv";
/// docs/serve-protocol.md §2: the one protocol version this cairn speaks.
pub const VERSION: u32 = 1;
/// docs/serve-protocol.md §2, server hello flags: bit 0, the server is append-only.
pub const FLAG_APPEND_ONLY: u32 = 1;
/// docs/serve-protocol.md §4: the largest listing a server sends or a client accepts (about
/// 14 million names).
pub const MAX_LIST_BYTES: u64 = 1 << 30;
/// docs/serve-protocol.md §3.2: the longest error message (longer ones are cut by the server,
/// refused by the client).
pub const MAX_MESSAGE: usize = 4096;

/// A request's operation (docs/serve-protocol.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create the repository layout.
    Create,
    /// Store a new object.
    Put,
    /// Store an object in place of the stored one.
    Replace,
    /// Read a whole object of at most `arg0` bytes.
    Get,
    /// Read `arg1` bytes at offset `arg0`.
    GetRange,
    /// List the names and sizes of one kind.
    List,
    /// Remove an object.
    Delete,
    /// Remove interrupted writers' temporary files.
    RemoveTemporaries,
}

impl Op {
    /// The op's byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            Op::Create => 1,
            Op::Put => 2,
            Op::Replace => 3,
            Op::Get => 4,
            Op::GetRange => 5,
            Op::List => 6,
            Op::Delete => 7,
            Op::RemoveTemporaries => 8,
        }
    }

    fn from_code(c: u8) -> Option<Op> {
        Some(match c {
            1 => Op::Create,
            2 => Op::Put,
            3 => Op::Replace,
            4 => Op::Get,
            5 => Op::GetRange,
            6 => Op::List,
            7 => Op::Delete,
            8 => Op::RemoveTemporaries,
            _ => return None,
        })
    }

    /// Whether requests of this op name an object (a kind and a name).
    fn names_object(self) -> bool {
        !matches!(self, Op::Create | Op::RemoveTemporaries | Op::List)
    }

    /// Whether requests of this op carry a payload (the object to store).
    fn carries_payload(self) -> bool {
        matches!(self, Op::Put | Op::Replace)
    }
}

/// The largest object a request may carry: the largest of any kind ([`FileKind::max_len`], a
/// parity file's). Storing an object larger than its own kind's bound is the client's
/// business, as with any backend; no reader loads it.
pub fn max_object_len() -> u64 {
    FileKind::ALL
        .map(FileKind::max_len)
        .into_iter()
        .max()
        .unwrap_or(0)
}

/// A kind's byte on the wire (docs/serve-protocol.md §4); 0 is "no kind".
pub fn kind_code(k: FileKind) -> u8 {
    match k {
        FileKind::Config => 1,
        FileKind::Key => 2,
        FileKind::KeyCopy => 3,
        FileKind::Pack => 4,
        FileKind::Index => 5,
        FileKind::Snapshot => 6,
        FileKind::Lock => 7,
        FileKind::Drill => 8,
        FileKind::Parity => 9,
    }
}

fn kind_from_code(c: u8) -> Option<FileKind> {
    FileKind::ALL.into_iter().find(|k| kind_code(*k) == c)
}

/// Why a frame cannot be read: the session it arrived on cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended inside a frame.
    #[error("the stream ended inside a frame ({0})")]
    Truncated(&'static str),
    /// Reading or writing the stream failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The peer's hello does not start with [`MAGIC`]: it is not `cairn serve` (a shell's
    /// greeting, another program).
    #[error("the peer is not speaking the cairn serve protocol (its first bytes: {0:?})")]
    BadMagic(String),
    /// An op byte this version does not know.
    #[error("unknown operation {0}")]
    UnknownOp(u8),
    /// A kind byte this version does not know, or a kind where none belongs.
    #[error("unknown object kind {0} for this operation")]
    UnknownKind(u8),
    /// A name that is not an object name of its kind (64 lower-case hex digits, or `config`).
    #[error("{0:?} is not an object name of its kind")]
    BadName(String),
    /// A length over its bound.
    #[error("{what} of {len} bytes is more than the {limit} bytes allowed")]
    TooLarge {
        /// What was announced (`"payload of a put of data/ab/…"`).
        what: String,
        /// The announced length.
        len: u64,
        /// Its bound.
        limit: u64,
    },
    /// A field that must be zero for this operation is not.
    #[error("{0}")]
    Malformed(String),
}

/// Reads exactly `len` bytes, `len` having been checked against its bound by the caller; the
/// buffer grows as bytes arrive (a peer announcing 1 GiB and sending 10 bytes costs 10 bytes).
pub fn read_exact_bounded(
    r: &mut impl Read,
    len: u64,
    what: &'static str,
) -> Result<Vec<u8>, FrameError> {
    let mut buf = Vec::with_capacity(len.min(1 << 20) as usize);
    r.take(len).read_to_end(&mut buf)?;
    if (buf.len() as u64) < len {
        return Err(FrameError::Truncated(what));
    }
    Ok(buf)
}

fn read_array<const N: usize>(
    r: &mut impl Read,
    what: &'static str,
) -> Result<[u8; N], FrameError> {
    let mut b = [0u8; N];
    r.read_exact(&mut b).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Truncated(what),
        _ => FrameError::Io(e),
    })?;
    Ok(b)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Writes the client's hello (docs/serve-protocol.md §2): magic, version.
pub fn write_client_hello(w: &mut impl Write) -> io::Result<()> {
    let mut b = Vec::with_capacity(12);
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    w.write_all(&b)?;
    w.flush()
}

/// Reads the client's hello; None at a clean end of the stream before it. Returns the
/// client's version.
pub fn read_client_hello(r: &mut impl Read) -> Result<Option<u32>, FrameError> {
    let Some(first) = read_first_byte(r)? else {
        return Ok(None);
    };
    let rest: [u8; 11] = read_array(r, "client hello")?;
    let mut magic = [0u8; 8];
    magic[0] = first;
    magic[1..].copy_from_slice(&rest[..7]);
    if magic != MAGIC {
        return Err(FrameError::BadMagic(String::from_utf8_lossy(&magic).into()));
    }
    Ok(Some(u32::from_le_bytes([
        rest[7], rest[8], rest[9], rest[10],
    ])))
}

/// Writes the server's hello (docs/serve-protocol.md §2): magic, version, flags.
pub fn write_server_hello(w: &mut impl Write, flags: u32) -> io::Result<()> {
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&flags.to_le_bytes());
    w.write_all(&b)?;
    w.flush()
}

/// Reads the server's hello: its version and flags.
pub fn read_server_hello(r: &mut impl Read) -> Result<(u32, u32), FrameError> {
    let mut magic = [0u8; 8];
    let mut got = 0;
    // Byte by byte up to the magic's length, so what a non-cairn peer said can be shown.
    while got < magic.len() {
        match r.read(&mut magic[got..]) {
            Ok(0) => {
                return Err(if got == 0 {
                    FrameError::Truncated("server hello")
                } else {
                    FrameError::BadMagic(String::from_utf8_lossy(&magic[..got]).into())
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    if magic != MAGIC {
        return Err(FrameError::BadMagic(String::from_utf8_lossy(&magic).into()));
    }
    let rest: [u8; 8] = read_array(r, "server hello")?;
    Ok((
        u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]),
        u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]),
    ))
}

fn read_first_byte(r: &mut impl Read) -> Result<Option<u8>, FrameError> {
    let mut b = [0u8; 1];
    loop {
        match r.read(&mut b) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(b[0])),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// One request (docs/serve-protocol.md §3.1).
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// What to do.
    pub op: Op,
    /// The kind of object (None for `create`, `remove-temporaries`).
    pub kind: Option<FileKind>,
    /// The object's name ("" where the op names none).
    pub name: String,
    /// First argument (`get`: the largest size accepted; `get-range`: the offset).
    pub arg0: u64,
    /// Second argument (`get-range`: the length).
    pub arg1: u64,
    /// The object to store (`put`, `replace`); empty otherwise.
    pub payload: Vec<u8>,
}

/// Writes one request; see [`Request`] for the fields.
pub fn write_request(
    w: &mut impl Write,
    op: Op,
    kind: Option<FileKind>,
    name: &str,
    args: [u64; 2],
    payload: &[u8],
) -> io::Result<()> {
    let name_len = u8::try_from(name.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "object name too long"))?;
    let mut head = Vec::with_capacity(27 + name.len());
    head.push(op.code());
    head.push(kind.map_or(0, kind_code));
    head.push(name_len);
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(&args[0].to_le_bytes());
    head.extend_from_slice(&args[1].to_le_bytes());
    head.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    w.write_all(&head)?;
    w.write_all(payload)?;
    w.flush()
}

/// Reads one request, checking every field against its bound before reading on; None at a
/// clean end of the stream (between requests).
pub fn read_request(r: &mut impl Read) -> Result<Option<Request>, FrameError> {
    let Some(op) = read_first_byte(r)? else {
        return Ok(None);
    };
    let op = Op::from_code(op).ok_or(FrameError::UnknownOp(op))?;
    let [kind, name_len]: [u8; 2] = read_array(r, "request header")?;
    let kind = match (op.names_object() || op == Op::List, kind) {
        (false, 0) => None,
        (true, c) => Some(kind_from_code(c).ok_or(FrameError::UnknownKind(c))?),
        (false, c) => return Err(FrameError::UnknownKind(c)),
    };
    // At most 255 bytes: its length is one byte.
    let name = read_exact_bounded(r, u64::from(name_len), "object name")?;
    let name = String::from_utf8(name)
        .map_err(|e| FrameError::BadName(String::from_utf8_lossy(e.as_bytes()).into()))?;
    match kind {
        Some(FileKind::Config) if op.names_object() && name != crate::backend::CONFIG_NAME => {
            return Err(FrameError::BadName(name))
        }
        Some(k) if op.names_object() && k != FileKind::Config && !is_id_name(&name) => {
            return Err(FrameError::BadName(name))
        }
        _ if !op.names_object() && !name.is_empty() => return Err(FrameError::BadName(name)),
        _ => {}
    }
    let fixed: [u8; 24] = read_array(r, "request arguments")?;
    let (arg0, arg1, payload_len) = (u64_at(&fixed, 0), u64_at(&fixed, 8), u64_at(&fixed, 16));
    let payload = match kind {
        Some(k) if op.carries_payload() => {
            if payload_len > max_object_len() {
                return Err(FrameError::TooLarge {
                    what: format!("an object for {}", k.path(&name)),
                    len: payload_len,
                    limit: max_object_len(),
                });
            }
            read_exact_bounded(r, payload_len, "object payload")?
        }
        _ if payload_len != 0 => {
            return Err(FrameError::Malformed(format!(
                "a {op:?} request carries a payload of {payload_len} bytes; it takes none"
            )))
        }
        _ => Vec::new(),
    };
    Ok(Some(Request {
        op,
        kind,
        name,
        arg0,
        arg1,
        payload,
    }))
}

/// Error codes on the wire (docs/serve-protocol.md §3.2), each an [`io::ErrorKind`].
const ERROR_KINDS: [(u8, io::ErrorKind); 10] = [
    (1, io::ErrorKind::NotFound),
    (2, io::ErrorKind::AlreadyExists),
    (3, io::ErrorKind::PermissionDenied),
    (4, io::ErrorKind::FileTooLarge),
    (5, io::ErrorKind::InvalidInput),
    (6, io::ErrorKind::InvalidData),
    (7, io::ErrorKind::UnexpectedEof),
    (8, io::ErrorKind::NotADirectory),
    (9, io::ErrorKind::Unsupported),
    (10, io::ErrorKind::ReadOnlyFilesystem),
];

/// Writes a success response carrying `payload`.
pub fn write_ok(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let mut head = [0u8; 9];
    head[1..].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    w.write_all(&head)?;
    w.write_all(payload)?;
    w.flush()
}

/// Writes an error response: its kind's code and its message, cut to [`MAX_MESSAGE`] bytes
/// (at a character boundary).
pub fn write_error(w: &mut impl Write, e: &io::Error) -> io::Result<()> {
    let code = ERROR_KINDS
        .iter()
        .find(|(_, k)| *k == e.kind())
        .map_or(0, |(c, _)| *c);
    let msg = e.to_string();
    let mut end = msg.len().min(MAX_MESSAGE);
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    let mut b = Vec::with_capacity(4 + end);
    b.push(1);
    b.push(code);
    b.extend_from_slice(&(end as u16).to_le_bytes());
    b.extend_from_slice(&msg.as_bytes()[..end]);
    w.write_all(&b)?;
    w.flush()
}

/// Reads one response: Ok(payload of at most `limit` bytes), or the server's error as an
/// [`io::Error`] of the kind it names. A frame over its bound is a [`FrameError`]: the session
/// cannot go on.
pub fn read_response(
    r: &mut impl Read,
    limit: u64,
) -> Result<Result<Vec<u8>, io::Error>, FrameError> {
    let [status]: [u8; 1] = read_array(r, "response status")?;
    match status {
        0 => {
            let len = u64::from_le_bytes(read_array(r, "response length")?);
            if len > limit {
                return Err(FrameError::TooLarge {
                    what: "a response".into(),
                    len,
                    limit,
                });
            }
            Ok(Ok(read_exact_bounded(r, len, "response payload")?))
        }
        1 => {
            let [code, l0, l1]: [u8; 3] = read_array(r, "error response")?;
            let len = u16::from_le_bytes([l0, l1]);
            if usize::from(len) > MAX_MESSAGE {
                return Err(FrameError::TooLarge {
                    what: "an error message".into(),
                    len: len.into(),
                    limit: MAX_MESSAGE as u64,
                });
            }
            let msg = read_exact_bounded(r, len.into(), "error message")?;
            let kind = ERROR_KINDS
                .iter()
                .find(|(c, _)| *c == code)
                .map_or(io::ErrorKind::Other, |(_, k)| *k);
            Ok(Err(io::Error::new(
                kind,
                String::from_utf8_lossy(&msg).into_owned(),
            )))
        }
        s => Err(FrameError::Malformed(format!("response status {s}"))),
    }
}

/// Encodes a listing (docs/serve-protocol.md §4, `list`): for each object its name's length
/// (one byte), its name, its size (u64 LE).
pub fn encode_list(items: &[(String, u64)]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(items.len() * 73);
    for (name, size) in items {
        let len = u8::try_from(name.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "object name too long"))?;
        out.push(len);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&size.to_le_bytes());
    }
    if out.len() as u64 > MAX_LIST_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!(
                "the listing is {} bytes, more than the protocol's {MAX_LIST_BYTES}",
                out.len()
            ),
        ));
    }
    Ok(out)
}

/// Decodes a listing; every name must be an object name of `kind`.
pub fn decode_list(kind: FileKind, mut b: &[u8]) -> Result<Vec<(String, u64)>, FrameError> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = b.split_first() {
        let len = usize::from(len);
        if rest.len() < len + 8 {
            return Err(FrameError::Truncated("listing entry"));
        }
        let name = String::from_utf8_lossy(&rest[..len]).into_owned();
        let ok = if kind == FileKind::Config {
            name == crate::backend::CONFIG_NAME
        } else {
            is_id_name(&name)
        };
        if !ok {
            return Err(FrameError::BadName(name));
        }
        out.push((name, u64_at(rest, len)));
        b = &rest[len + 8..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn encoded(op: Op, kind: Option<FileKind>, name: &str, args: [u64; 2], p: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        write_request(&mut v, op, kind, name, args, p).expect("test");
        v
    }

    #[test]
    fn requests_round_trip_byte_for_byte_as_documented() {
        let b = encoded(Op::Put, Some(FileKind::Snapshot), ID, [0, 0], b"xyz");
        // docs/serve-protocol.md §3.1: op, kind, name length, name, arg0, arg1, payload length.
        assert_eq!(&b[..3], &[2, 6, 64]);
        assert_eq!(&b[3..67], ID.as_bytes());
        assert_eq!(&b[67..83], &[0; 16]);
        assert_eq!(&b[83..91], &3u64.to_le_bytes());
        assert_eq!(&b[91..], b"xyz");
        let r = read_request(&mut &b[..]).expect("test").expect("a request");
        assert_eq!(
            r,
            Request {
                op: Op::Put,
                kind: Some(FileKind::Snapshot),
                name: ID.into(),
                arg0: 0,
                arg1: 0,
                payload: b"xyz".to_vec()
            }
        );
        let b = encoded(Op::GetRange, Some(FileKind::Pack), ID, [7, 9], b"");
        let r = read_request(&mut &b[..]).expect("test").expect("a request");
        assert_eq!((r.op, r.arg0, r.arg1), (Op::GetRange, 7, 9));
        let b = encoded(Op::Create, None, "", [0, 0], b"");
        assert_eq!(b.len(), 27);
        let b = encoded(Op::Get, Some(FileKind::Config), "config", [5, 0], b"");
        assert!(read_request(&mut &b[..]).expect("test").is_some());
        assert!(read_request(&mut &[][..]).expect("a clean end").is_none());
    }

    #[test]
    fn malformed_requests_are_errors_never_panics() {
        let good = encoded(Op::Put, Some(FileKind::Index), ID, [0, 0], b"abc");
        // Every truncation of a good request is an error (never a panic, never a request).
        for cut in 1..good.len() {
            let e = read_request(&mut &good[..cut]).expect_err("truncated");
            assert!(matches!(e, FrameError::Truncated(_)), "{cut}: {e}");
        }
        let bad = |mut f: Vec<u8>, at: usize, v: u8| {
            f[at] = v;
            read_request(&mut &f[..]).expect_err("malformed")
        };
        assert!(matches!(bad(good.clone(), 0, 0), FrameError::UnknownOp(0)));
        assert!(matches!(
            bad(good.clone(), 0, 200),
            FrameError::UnknownOp(200)
        ));
        assert!(matches!(
            bad(good.clone(), 1, 0),
            FrameError::UnknownKind(0)
        ));
        assert!(matches!(
            bad(good.clone(), 1, 42),
            FrameError::UnknownKind(42)
        ));
        // A name that could leave its directory, or is not hex.
        for name in ["../../../../etc/passwd", "config", &ID.to_uppercase(), ""] {
            let f = encoded(Op::Delete, Some(FileKind::Snapshot), name, [0, 0], b"");
            let e = read_request(&mut &f[..]).expect_err(name);
            assert!(matches!(e, FrameError::BadName(_)), "{name}: {e}");
        }
        let f = encoded(Op::Get, Some(FileKind::Config), ID, [0, 0], b"");
        assert!(matches!(
            read_request(&mut &f[..]),
            Err(FrameError::BadName(_))
        ));
        // A kind or a name where the op takes none; a payload on an op that takes none.
        let mut f = encoded(Op::Create, None, "", [0, 0], b"");
        f[1] = 4;
        assert!(read_request(&mut &f[..]).is_err());
        let f = encoded(Op::RemoveTemporaries, None, ID, [0, 0], b"");
        assert!(read_request(&mut &f[..]).is_err());
        let f = encoded(Op::Delete, Some(FileKind::Lock), ID, [0, 0], b"x");
        assert!(matches!(
            read_request(&mut &f[..]),
            Err(FrameError::Malformed(_))
        ));
        // Invalid UTF-8 in a name.
        let mut f = good.clone();
        f[3] = 0xff;
        assert!(matches!(
            read_request(&mut &f[..]),
            Err(FrameError::BadName(_))
        ));
    }

    #[test]
    fn oversized_frames_are_refused_before_anything_of_their_size_is_read() {
        // An object over any object's bound, announced but not sent: refused from the header.
        let mut f = encoded(Op::Put, Some(FileKind::Lock), ID, [0, 0], b"");
        let at = f.len() - 8;
        let max = max_object_len();
        assert!(max >= FileKind::Parity.max_len() && max >= FileKind::Pack.max_len());
        f[at..].copy_from_slice(&(max + 1).to_le_bytes());
        match read_request(&mut &f[..]) {
            Err(FrameError::TooLarge { len, limit, .. }) => {
                assert_eq!((len, limit), (max + 1, max))
            }
            other => panic!("{other:?}"),
        }
        // u64::MAX announced for a pack: refused, nothing allocated.
        f[at..].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            read_request(&mut &f[..]),
            Err(FrameError::TooLarge { .. })
        ));
        // A payload within its bound but cut short: truncated, and the buffer only grew to
        // what arrived.
        let mut big = encoded(Op::Put, Some(FileKind::Pack), ID, [0, 0], b"");
        let at = big.len() - 8;
        big[at..].copy_from_slice(&(1u64 << 30).to_le_bytes());
        big.extend_from_slice(&[0; 100]);
        assert!(matches!(
            read_request(&mut &big[..]),
            Err(FrameError::Truncated(_))
        ));
        // Responses: a payload over the caller's bound, an overlong message, a bad status.
        let mut ok = Vec::new();
        write_ok(&mut ok, &[1; 10]).expect("test");
        assert!(matches!(
            read_response(&mut &ok[..], 9),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(
            read_response(&mut &ok[..], 10).expect("test").expect("ok"),
            vec![1; 10]
        );
        let long = [1u8, 3, 0xff, 0xff];
        assert!(matches!(
            read_response(&mut &long[..], 10),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            read_response(&mut &[7u8][..], 10),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn errors_keep_their_kind_and_a_bounded_message() {
        let mut b = Vec::new();
        let e = io::Error::new(io::ErrorKind::PermissionDenied, "é".repeat(3000));
        write_error(&mut b, &e).expect("test");
        let got = read_response(&mut &b[..], 0)
            .expect("test")
            .expect_err("an error");
        assert_eq!(got.kind(), io::ErrorKind::PermissionDenied);
        assert!(got.to_string().len() <= MAX_MESSAGE);
        assert!(got.to_string().starts_with('é'));
    }

    #[test]
    fn hellos_and_listings_round_trip_and_a_stranger_is_named() {
        let mut b = Vec::new();
        write_client_hello(&mut b).expect("test");
        assert_eq!(read_client_hello(&mut &b[..]).expect("test"), Some(VERSION));
        let mut s = Vec::new();
        write_server_hello(&mut s, FLAG_APPEND_ONLY).expect("test");
        assert_eq!(
            read_server_hello(&mut &s[..]).expect("test"),
            (VERSION, FLAG_APPEND_ONLY)
        );
        let e = read_server_hello(&mut &b"bash: cairn: command not found\n"[..])
            .expect_err("not cairn");
        assert!(e.to_string().contains("bash: ca"), "{e}");
        let e = read_client_hello(&mut &b"GET / HTTP/1.1\r\n"[..]).expect_err("not cairn");
        assert!(matches!(e, FrameError::BadMagic(_)));

        let items = vec![(ID.to_string(), 5), (ID.replace('0', "f"), 1 << 40)];
        let enc = encode_list(&items).expect("test");
        assert_eq!(decode_list(FileKind::Index, &enc).expect("test"), items);
        assert!(decode_list(FileKind::Index, &enc[..enc.len() - 1]).is_err());
        let bad = encode_list(&[("../x".into(), 1)]).expect("test");
        assert!(decode_list(FileKind::Index, &bad).is_err());
    }
}

//! Zip output (APPNOTE.TXT 6.3), written as a stream: the writer never seeks, so every entry
//! is stored (not compressed) with bit 3 set and a data descriptor after its content carrying
//! the CRC-32 and sizes. Zip64: an entry whose size needs 64 bits gets a zip64 extra field
//! in its local header and a 64-bit data descriptor; in the central directory, each of an
//! entry's sizes and offset that does not fit in 32 bits is 0xFFFFFFFF there and given, in
//! that order, in its zip64 extra field; a zip64 end record follows when the entry count, or
//! the directory's size or offset, does not fit.
//!
//! Each entry carries its Unix type and permission bits (`& 0o777`: zip has no setuid,
//! setgid or sticky bits) in the external attributes, and its mtime twice: the DOS time (UTC,
//! two-second steps, 1980–2107) and the extended-timestamp field (0x5455, whole seconds) that
//! `unzip` prefers. Names are flagged UTF-8 (bit 11): an entry whose name or symlink target is
//! not UTF-8 stops the dump with an error naming it (tar keeps such names exactly). Zip has no
//! hard links (each path is stored with its content) and no special files (FIFOs, devices and
//! sockets are left out and listed in the summary).
//!
//! Not the `zip` crate: its stream writer (7.3) marks every entry past 4 GiB as zip64 but
//! still writes that entry's 32-bit sizes in the central directory, so readers take a size
//! for the entry's offset and the archive cannot be read.

use std::io::{self, Write};
use std::path::Path;

use super::{from_io, visit, ContentReader, DumpOptions, DumpSummary, Guard, Selected, Sink};
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::tree::{Node, NodeKind};

/// 32-bit fields that do not hold the value: it is in the zip64 extra field.
const MAX32: u64 = 0xFFFF_FFFF;
/// 16-bit entry counts likewise.
const MAX16: u64 = 0xFFFF;
/// Version needed to extract: 2.0 (stored, directories), 4.5 (zip64).
const VERSION_20: u16 = 20;
const VERSION_45: u16 = 45;
/// Version made by: Unix (3) in the high byte, so readers use the Unix attributes.
const MADE_BY_UNIX: u16 = (3 << 8) | VERSION_45;
/// General purpose flags: sizes and CRC in a data descriptor (bit 3), UTF-8 names (bit 11).
const FLAGS: u16 = (1 << 3) | (1 << 11);
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

pub(super) fn write<W: Write>(
    repo: &Repository,
    selected: &Selected,
    out: W,
    opts: &DumpOptions,
) -> Result<DumpSummary> {
    let guard = Guard::new(out);
    let failed = guard.flag();
    let mut sink = ZipSink {
        repo,
        opts,
        out: Counting {
            inner: guard,
            offset: 0,
        },
        central: Vec::new(),
        summary: DumpSummary::default(),
    };
    if let Err(e) = visit(repo, selected, opts, &mut sink) {
        failed.set();
        return Err(e);
    }
    sink.finish().map_err(|e| from_io(e, &opts.output))?;
    Ok(sink.summary)
}

/// A writer that knows its offset (the archive's records refer to each other by offset).
struct Counting<W> {
    inner: W,
    offset: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.offset += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What the central directory needs of one entry, kept until the end (a few dozen bytes and
/// the name per entry).
struct Central {
    name: Vec<u8>,
    version_needed: u16,
    time: u16,
    date: u16,
    crc: u32,
    size: u64,
    offset: u64,
    external: u32,
    unix_mtime: u32,
}

struct ZipSink<'a, W: Write> {
    repo: &'a Repository,
    opts: &'a DumpOptions,
    out: Counting<Guard<W>>,
    central: Vec<Central>,
    summary: DumpSummary,
}

impl<W: Write> Sink for ZipSink<'_, W> {
    fn entry(&mut self, path: &Path, node: &Node) -> Result<()> {
        let type_bits = match node.kind {
            NodeKind::Dir => S_IFDIR,
            NodeKind::File => S_IFREG,
            NodeKind::Symlink => S_IFLNK,
            _ => {
                self.summary.skipped.push((
                    path.to_path_buf(),
                    format!("a zip archive cannot hold a {}", node.kind.name()),
                ));
                return Ok(());
            }
        };
        let mut name = utf8(path.as_os_str().as_encoded_bytes(), path, "name")?
            .as_bytes()
            .to_vec();
        if node.kind == NodeKind::Dir {
            name.push(b'/');
        }
        let target = match node.kind {
            NodeKind::Symlink => utf8(
                node.target.as_deref().unwrap_or_default(),
                path,
                "link target",
            )?
            .as_bytes()
            .to_vec(),
            _ => Vec::new(),
        };
        let size = match node.kind {
            NodeKind::File => node.size,
            _ => target.len() as u64,
        };
        let zip64 = size >= MAX32;
        let (time, date) = dos_time(node.mtime.0);
        let unix_mtime = u32::try_from(node.mtime.0.max(0)).unwrap_or(u32::MAX);
        let perm = if node.kind == NodeKind::Symlink {
            0o777
        } else {
            node.mode & 0o777
        };
        let mut c = Central {
            name,
            version_needed: if zip64 { VERSION_45 } else { VERSION_20 },
            time,
            date,
            crc: 0,
            size,
            offset: self.out.offset,
            external: ((type_bits | perm) << 16) | u32::from(node.kind == NodeKind::Dir) << 4,
            unix_mtime,
        };
        let err = |e| from_io(e, &self.opts.output);
        self.local_header(&c, zip64).map_err(err)?;
        let mut crc = crc32fast::Hasher::new();
        let written = match node.kind {
            NodeKind::File => {
                let mut reader = ContentReader::new(self.repo, node, self.opts.cancel.clone());
                let mut tee = Crc {
                    out: &mut self.out,
                    crc: &mut crc,
                };
                super::copy(&mut reader, &mut tee, self.opts)?
            }
            _ => {
                crc.update(&target);
                self.out.write_all(&target).map_err(err)?;
                target.len() as u64
            }
        };
        if written != size {
            return Err(Error::corrupt(
                path.display().to_string(),
                format!("its content is {written} bytes, its size says {size}"),
            ));
        }
        c.crc = crc.finalize();
        let mut dd = Vec::with_capacity(24);
        put32(&mut dd, 0x0807_4b50);
        put32(&mut dd, c.crc);
        if zip64 {
            put64(&mut dd, size);
            put64(&mut dd, size);
        } else {
            put32(&mut dd, size as u32);
            put32(&mut dd, size as u32);
        }
        self.out.write_all(&dd).map_err(err)?;
        self.summary.bytes += if node.kind == NodeKind::File { size } else { 0 };
        self.summary.entries += 1;
        self.central.push(c);
        Ok(())
    }
}

impl<W: Write> ZipSink<'_, W> {
    fn local_header(&mut self, c: &Central, zip64: bool) -> io::Result<()> {
        let mut extra = Vec::new();
        if zip64 {
            // Sizes follow in the data descriptor; the field says they are 64-bit.
            put16(&mut extra, 0x0001);
            put16(&mut extra, 16);
            put64(&mut extra, 0);
            put64(&mut extra, 0);
        }
        ut_field(&mut extra, c.unix_mtime);
        let mut h = Vec::with_capacity(30 + c.name.len() + extra.len());
        put32(&mut h, 0x0403_4b50);
        put16(&mut h, c.version_needed);
        put16(&mut h, FLAGS);
        put16(&mut h, 0); // stored
        put16(&mut h, c.time);
        put16(&mut h, c.date);
        put32(&mut h, 0); // CRC-32: in the data descriptor
        let sizes = if zip64 { MAX32 as u32 } else { 0 };
        put32(&mut h, sizes);
        put32(&mut h, sizes);
        put16(&mut h, c.name.len() as u16);
        put16(&mut h, extra.len() as u16);
        h.extend_from_slice(&c.name);
        h.extend_from_slice(&extra);
        self.out.write_all(&h)
    }

    /// The central directory and the end records.
    fn finish(&mut self) -> io::Result<()> {
        let start = self.out.offset;
        let mut buf = Vec::with_capacity(64 << 10);
        for c in &self.central {
            let mut z64 = Vec::new();
            let size32 = if c.size >= MAX32 {
                put64(&mut z64, c.size); // uncompressed
                put64(&mut z64, c.size); // compressed
                MAX32 as u32
            } else {
                c.size as u32
            };
            let offset32 = if c.offset >= MAX32 {
                put64(&mut z64, c.offset);
                MAX32 as u32
            } else {
                c.offset as u32
            };
            let mut extra = Vec::new();
            if !z64.is_empty() {
                put16(&mut extra, 0x0001);
                put16(&mut extra, z64.len() as u16);
                extra.extend_from_slice(&z64);
            }
            ut_field(&mut extra, c.unix_mtime);
            let version_needed = if z64.is_empty() {
                c.version_needed
            } else {
                VERSION_45
            };
            put32(&mut buf, 0x0201_4b50);
            put16(&mut buf, MADE_BY_UNIX);
            put16(&mut buf, version_needed);
            put16(&mut buf, FLAGS);
            put16(&mut buf, 0);
            put16(&mut buf, c.time);
            put16(&mut buf, c.date);
            put32(&mut buf, c.crc);
            put32(&mut buf, size32);
            put32(&mut buf, size32);
            put16(&mut buf, c.name.len() as u16);
            put16(&mut buf, extra.len() as u16);
            put16(&mut buf, 0); // comment
            put16(&mut buf, 0); // disk
            put16(&mut buf, 0); // internal attributes
            put32(&mut buf, c.external);
            put32(&mut buf, offset32);
            buf.extend_from_slice(&c.name);
            buf.extend_from_slice(&extra);
            if buf.len() >= 60 << 10 {
                self.out.write_all(&buf)?;
                buf.clear();
            }
        }
        self.out.write_all(&buf)?;
        buf.clear();
        let end = self.out.offset;
        let (count, size) = (self.central.len() as u64, end - start);
        if count >= MAX16 || size >= MAX32 || start >= MAX32 {
            // Zip64 end of central directory record, then its locator.
            put32(&mut buf, 0x0606_4b50);
            put64(&mut buf, 44);
            put16(&mut buf, MADE_BY_UNIX);
            put16(&mut buf, VERSION_45);
            put32(&mut buf, 0);
            put32(&mut buf, 0);
            put64(&mut buf, count);
            put64(&mut buf, count);
            put64(&mut buf, size);
            put64(&mut buf, start);
            put32(&mut buf, 0x0706_4b50);
            put32(&mut buf, 0);
            put64(&mut buf, end);
            put32(&mut buf, 1);
        }
        put32(&mut buf, 0x0605_4b50);
        put16(&mut buf, 0);
        put16(&mut buf, 0);
        put16(&mut buf, count.min(MAX16) as u16);
        put16(&mut buf, count.min(MAX16) as u16);
        put32(&mut buf, size.min(MAX32) as u32);
        put32(&mut buf, start.min(MAX32) as u32);
        put16(&mut buf, 0); // comment
        self.out.write_all(&buf)?;
        let Counting { inner, .. } = &mut self.out;
        inner.flush()
    }
}

/// Writes through to `out`, hashing what passes.
struct Crc<'a, W: Write> {
    out: &'a mut W,
    crc: &'a mut crc32fast::Hasher,
}

impl<W: Write> Write for Crc<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Info-ZIP's extended timestamp: flags (bit 0: mtime present), mtime as u32 LE.
fn ut_field(extra: &mut Vec<u8>, mtime: u32) {
    put16(extra, 0x5455);
    put16(extra, 5);
    extra.push(1);
    put32(extra, mtime);
}

/// DOS time and date of a Unix time, in UTC; times outside 1980–2107 are clamped.
fn dos_time(secs: i64) -> (u16, u16) {
    let Ok(ts) = jiff::Timestamp::from_second(secs) else {
        return (0, (1 << 5) | 1);
    };
    let z = ts.to_zoned(jiff::tz::TimeZone::UTC);
    match z.year() {
        y if y < 1980 => (0, (1 << 5) | 1),
        y if y > 2107 => ((23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31),
        y => (
            ((z.hour() as u16) << 11) | ((z.minute() as u16) << 5) | (z.second() as u16 / 2),
            (((y - 1980) as u16) << 9) | ((z.month() as u16) << 5) | z.day() as u16,
        ),
    }
}

fn put16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn put32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn put64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

fn utf8<'a>(bytes: &'a [u8], path: &Path, what: &str) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|_| {
        Error::InvalidInput(format!(
            "{}: its {what} is not UTF-8, which a zip archive cannot hold; dump it with --archive tar, which keeps name bytes exactly",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::mem_repo;
    use crate::tree::{ContentPart, Timestamp};
    use std::collections::BTreeMap;

    /// Keeps every write by offset, except long runs of zeros (file content of holes).
    #[derive(Default)]
    struct Sparse {
        at: u64,
        kept: BTreeMap<u64, Vec<u8>>,
    }

    impl Write for Sparse {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if buf.len() < 4096 || buf.iter().any(|&b| b != 0) {
                self.kept.insert(self.at, buf.to_vec());
            }
            self.at += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sparse {
        fn read(&self, at: u64, len: usize) -> Vec<u8> {
            let (start, bytes) = self.kept.range(..=at).next_back().expect("kept");
            let from = (at - start) as usize;
            assert!(from + len <= bytes.len(), "a record spans writes at {at}");
            bytes[from..from + len].to_vec()
        }
    }

    fn u16_at(b: &[u8], i: usize) -> u64 {
        u16::from_le_bytes([b[i], b[i + 1]]).into()
    }
    fn u32_at(b: &[u8], i: usize) -> u64 {
        u32::from_le_bytes(b[i..i + 4].try_into().expect("4")).into()
    }
    fn u64_at(b: &[u8], i: usize) -> u64 {
        u64::from_le_bytes(b[i..i + 8].try_into().expect("8"))
    }

    /// A file bigger than 4 GiB (all hole, so nothing is stored) and a small one after it:
    /// the central directory must give the big one's sizes and the small one's offset in
    /// zip64 fields, each 32-bit field it replaces reading 0xFFFFFFFF, and end with a zip64
    /// end record that points at the directory.
    #[test]
    fn sizes_and_offsets_past_4_gib_go_in_zip64_fields() {
        let (_b, repo) = mem_repo(b"pw");
        let big_len = (4u64 << 30) + 12345;
        let mut big = Node::new(b"big".to_vec(), NodeKind::File);
        big.content = vec![ContentPart(None, big_len)];
        big.size = big_len;
        big.mode = 0o640;
        big.mtime = Timestamp(1_600_000_000, 0);
        let small = Node::new(b"small".to_vec(), NodeKind::File);
        let opts = DumpOptions::default();
        let mut sink = ZipSink {
            repo: &repo,
            opts: &opts,
            out: Counting {
                inner: Guard::new(Sparse::default()),
                offset: 0,
            },
            central: Vec::new(),
            summary: DumpSummary::default(),
        };
        sink.entry(Path::new("big"), &big).expect("big");
        sink.entry(Path::new("small"), &small).expect("small");
        sink.finish().expect("finish");
        let total = sink.out.offset;
        let w = &sink.out.inner.into_inner();
        // End of central directory: 32-bit fields saturated; the zip64 locator before it.
        let eocd = w.read(total - 22, 22);
        assert_eq!(u32_at(&eocd, 0), 0x0605_4b50);
        assert_eq!(
            u32_at(&eocd, 16),
            MAX32,
            "directory offset is in the zip64 record"
        );
        let loc = w.read(total - 42, 20);
        assert_eq!(u32_at(&loc, 0), 0x0706_4b50);
        let rec = w.read(u64_at(&loc, 8), 56);
        assert_eq!(u32_at(&rec, 0), 0x0606_4b50);
        assert_eq!(u64_at(&rec, 32), 2, "two entries");
        let (cd_size, cd_start) = (u64_at(&rec, 40), u64_at(&rec, 48));
        assert!(cd_start > 4 << 30);
        let cd = w.read(cd_start, cd_size as usize);
        let mut i = 0;
        let mut seen = Vec::new();
        while i < cd.len() {
            assert_eq!(u32_at(&cd, i), 0x0201_4b50);
            let (csize, usize_, nlen, xlen) = (
                u32_at(&cd, i + 20),
                u32_at(&cd, i + 24),
                u16_at(&cd, i + 28) as usize,
                u16_at(&cd, i + 30) as usize,
            );
            let off32 = u32_at(&cd, i + 42);
            let name = cd[i + 46..i + 46 + nlen].to_vec();
            let extra = &cd[i + 46 + nlen..i + 46 + nlen + xlen];
            // The zip64 field holds exactly the saturated fields, in order.
            let mut z = Vec::new();
            let mut j = 0;
            while j < extra.len() {
                let (id, len) = (u16_at(extra, j), u16_at(extra, j + 2) as usize);
                if id == 1 {
                    z = (0..len / 8).map(|k| u64_at(extra, j + 4 + 8 * k)).collect();
                }
                j += 4 + len;
            }
            let mut zi = z.iter();
            let mut field = |v32: u64| {
                if v32 == MAX32 {
                    *zi.next().expect("zip64 field")
                } else {
                    v32
                }
            };
            let (usize_, csize, offset) = (field(usize_), field(csize), field(off32));
            assert!(
                zi.next().is_none(),
                "no zip64 field beyond the saturated ones"
            );
            let local = w.read(offset, 30 + nlen);
            assert_eq!(
                u32_at(&local, 0),
                0x0403_4b50,
                "{name:?}: a local header at its offset"
            );
            assert_eq!(local[30..], name[..]);
            seen.push((name, usize_, csize, offset > 4 << 30));
            i += 46 + nlen + xlen;
        }
        assert_eq!(
            seen,
            [
                (b"big".to_vec(), big_len, big_len, false),
                (b"small".to_vec(), 0, 0, true)
            ]
        );
        // The big entry's descriptor is 64-bit and carries the CRC of its zeros.
        // Local header: 30 bytes, the name, a zip64 field (20) and a timestamp field (9).
        let dd = w.read(30 + 3 + 20 + 9 + big_len, 24);
        assert_eq!(u32_at(&dd, 0), 0x0807_4b50);
        assert_eq!(u64_at(&dd, 8), big_len);
    }

    #[test]
    fn dos_times_are_utc_in_two_second_steps_and_clamped() {
        // 2020-01-02 03:04:05 UTC.
        assert_eq!(
            dos_time(1_577_934_245),
            ((3 << 11) | (4 << 5) | 2, (40 << 9) | (1 << 5) | 2)
        );
        assert_eq!(dos_time(0), (0, (1 << 5) | 1), "before 1980");
        assert_eq!(dos_time(i64::MIN), (0, (1 << 5) | 1));
        assert_eq!(dos_time(5_000_000_000).1 >> 9, 127, "after 2107");
    }
}

//! Read errors are damage (issue 18): a read of a repository file that fails is tried once
//! more ([`retry_read`]), and a pack that still fails can be read *around* its unreadable byte
//! ranges ([`read_around_errors`]), so that the blobs outside them are verified as usual and only
//! the ones inside are damage — which parity can then heal as erasures: the byte ranges are
//! known, their contents are not.
//!
//! How an unreadable range surfaces: [`Unreadable::ranges`] (byte offsets in the file, sector
//! aligned, sorted, disjoint), with the bytes there zero-filled in [`Unreadable::bytes`] and the
//! first error in [`Unreadable::error`]. [`is_read_error`] says which I/O errors mean "the medium
//! failed to give these bytes" (EIO and its kin), as opposed to a missing file or a refused
//! request.

use std::io;
use std::ops::Range;

use super::{Backend, FileKind};

/// Runs a read, and once more if it fails with anything but `NotFound`: a USB disk or a
/// network can fail one read and serve the next. A second failure is returned as it is.
pub fn retry_read<T>(mut read: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    match read() {
        Err(e) if e.kind() != io::ErrorKind::NotFound => read(),
        done => done,
    }
}

/// Whether `e` says the storage failed to produce stored bytes: an I/O error of the device
/// (EIO), or a device that went away (ENXIO, ENODEV). Such a range is damage of the file it
/// was read from (and an erasure for parity), not a missing file or a refused request.
pub fn is_read_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO) | Some(libc::ENXIO) | Some(libc::ENODEV)
    )
}

/// Reads are first tried in blocks of this size.
const BLOCK: u64 = 1 << 20;
/// A block that fails is read again sector by sector, to find the unreadable sectors.
pub const SECTOR: u64 = 4096;
/// After this many unreadable sectors in one file, failing blocks are no longer read sector by
/// sector but counted unreadable whole: a dying disk may take seconds for each failed read.
const MAX_BAD_SECTORS: usize = 256;

/// A file read around its unreadable byte ranges (see the module documentation).
#[derive(Debug)]
pub struct Unreadable {
    /// The file's bytes, zeros where a range could not be read.
    pub bytes: Vec<u8>,
    /// The byte ranges that could not be read (twice), sorted and disjoint.
    pub ranges: Vec<Range<u64>>,
    /// The error of the first range that could not be read.
    pub error: io::Error,
}

impl Unreadable {
    /// The unreadable range that overlaps `offset..offset + len`, if any.
    pub fn overlapping(&self, offset: u64, len: u64) -> Option<&Range<u64>> {
        let end = offset.saturating_add(len);
        self.ranges.iter().find(|r| r.start < end && offset < r.end)
    }

    /// The unreadable bytes, in all.
    pub fn unreadable_bytes(&self) -> u64 {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }
}

/// Reads the `size` bytes of object `name` around its unreadable byte ranges: blocks of 1 MiB,
/// each tried twice ([`retry_read`]); a block that fails with a read error ([`is_read_error`])
/// is read sector by sector ([`SECTOR`]), each sector tried twice, and the sectors that fail
/// are zero-filled and recorded. Returns `Ok(Err(unreadable))` when some range could not be
/// read, `Ok(Ok(bytes))` when everything could (the error went away); an error that is not a
/// read error (the object is missing or shorter than `size`) is returned as it is.
pub fn read_around_errors(
    backend: &dyn Backend,
    kind: FileKind,
    name: &str,
    size: u64,
) -> io::Result<Result<Vec<u8>, Unreadable>> {
    let mut bytes = Vec::with_capacity(size as usize);
    let mut ranges: Vec<Range<u64>> = Vec::new();
    let mut first: Option<io::Error> = None;
    let mut bad_sectors = 0;
    let mut fail = |range: Range<u64>, e: io::Error, bytes: &mut Vec<u8>| {
        bytes.resize(bytes.len() + (range.end - range.start) as usize, 0);
        match ranges.last_mut() {
            Some(last) if last.end == range.start => last.end = range.end,
            _ => ranges.push(range),
        }
        first.get_or_insert(e);
    };
    let mut at = 0;
    while at < size {
        let len = BLOCK.min(size - at);
        match retry_read(|| backend.get_range(kind, name, at, len as usize)) {
            Ok(b) => bytes.extend_from_slice(&b),
            Err(e) if !is_read_error(&e) => return Err(e),
            Err(e) if bad_sectors >= MAX_BAD_SECTORS => fail(at..at + len, e, &mut bytes),
            Err(_) => {
                let mut s = at;
                while s < at + len {
                    let n = SECTOR.min(at + len - s);
                    match retry_read(|| backend.get_range(kind, name, s, n as usize)) {
                        Ok(b) => bytes.extend_from_slice(&b),
                        Err(e) if !is_read_error(&e) => return Err(e),
                        Err(e) => {
                            bad_sectors += 1;
                            fail(s..s + n, e, &mut bytes);
                        }
                    }
                    s += n;
                }
            }
        }
        at += len;
    }
    Ok(match first {
        None => Ok(bytes),
        Some(error) => Err(Unreadable {
            bytes,
            ranges,
            error,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemBackend;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    /// Reads overlapping a `bad` (start, end) fail with EIO (`times` times each, or always).
    struct Sectors {
        inner: MemBackend,
        bad: Vec<(u64, u64)>,
        times: Option<u64>,
        failed: Mutex<Vec<(u64, u64)>>,
        reads: AtomicU64,
    }

    impl Backend for Sectors {
        fn location(&self) -> String {
            "sectors".into()
        }
        fn create(&self) -> io::Result<()> {
            self.inner.create()
        }
        fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()> {
            self.inner.put(kind, name, data)
        }
        fn get_at_most(&self, kind: FileKind, name: &str, limit: u64) -> io::Result<Vec<u8>> {
            self.inner.get_at_most(kind, name, limit)
        }
        fn get_range(&self, k: FileKind, n: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let end = offset + len as u64;
            if self.bad.iter().any(|&(s, e)| s < end && offset < e) {
                let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
                let before = failed.iter().filter(|f| **f == (offset, end)).count() as u64;
                if self.times.is_none_or(|t| before < t) {
                    failed.push((offset, end));
                    return Err(io::Error::from_raw_os_error(libc::EIO));
                }
            }
            self.inner.get_range(k, n, offset, len)
        }
        fn list(&self, kind: FileKind) -> io::Result<Vec<(String, u64)>> {
            self.inner.list(kind)
        }
        fn delete(&self, kind: FileKind, name: &str) -> io::Result<()> {
            self.inner.delete(kind, name)
        }
    }

    fn with(bad: Vec<(u64, u64)>, times: Option<u64>, data: &[u8]) -> Sectors {
        let b = Sectors {
            inner: MemBackend::new(),
            bad,
            times,
            failed: Mutex::new(Vec::new()),
            reads: AtomicU64::new(0),
        };
        b.put(FileKind::Pack, "p", data).expect("test");
        b
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn unreadable_sectors_are_zero_filled_and_named_and_every_other_byte_is_read() {
        let d = data(3 * BLOCK as usize + 1000);
        let size = d.len() as u64;
        // One sector, a range across a sector boundary, the file's last partial sector.
        let b = with(
            vec![
                (5000, 5001),
                (2 * BLOCK - 10, 2 * BLOCK + 10),
                (size - 3, size),
            ],
            None,
            &d,
        );
        let u = read_around_errors(&b, FileKind::Pack, "p", size)
            .expect("test")
            .expect_err("unreadable");
        let last = (size / SECTOR) * SECTOR;
        assert_eq!(
            u.ranges,
            vec![
                4096..8192,
                2 * BLOCK - SECTOR..2 * BLOCK + SECTOR,
                last..size
            ]
        );
        assert_eq!(u.bytes.len(), d.len());
        assert!(is_read_error(&u.error));
        for (i, (&got, &want)) in u.bytes.iter().zip(&d).enumerate() {
            let bad = u.overlapping(i as u64, 1).is_some();
            assert_eq!(got, if bad { 0 } else { want }, "byte {i}");
        }
        assert_eq!(u.unreadable_bytes(), SECTOR + 2 * SECTOR + (size - last));
    }

    #[test]
    fn a_read_error_that_goes_away_on_the_retry_leaves_nothing_unreadable() {
        let d = data(BLOCK as usize + 10);
        let b = with(vec![(100, 200)], Some(1), &d);
        let got = read_around_errors(&b, FileKind::Pack, "p", d.len() as u64)
            .expect("test")
            .expect("readable");
        assert_eq!(got, d);
        assert_eq!(
            b.reads.load(Ordering::SeqCst),
            3,
            "block 0 twice, block 1 once"
        );
    }

    #[test]
    fn a_missing_object_is_an_error_not_an_unreadable_range() {
        let b = with(vec![], None, b"x");
        let e = read_around_errors(&b, FileKind::Pack, "other", 10).expect_err("missing");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(b.reads.load(Ordering::SeqCst), 1, "NotFound is not retried");
    }

    #[test]
    fn a_file_that_fails_everywhere_stops_reading_sector_by_sector_after_the_bound() {
        let size = 4 * BLOCK;
        let b = with(vec![(0, size)], None, &data(size as usize));
        let u = read_around_errors(&b, FileKind::Pack, "p", size)
            .expect("test")
            .expect_err("unreadable");
        assert_eq!(u.ranges, vec![0..size]);
        assert!(u.bytes.iter().all(|&b| b == 0));
        // 256 sectors (2 reads each) found the bound; every block was tried twice.
        let per_block = BLOCK / SECTOR;
        assert_eq!(
            b.reads.load(Ordering::SeqCst),
            4 * 2 + (MAX_BAD_SECTORS as u64).div_ceil(per_block) * per_block * 2
        );
    }

    #[test]
    fn retry_read_tries_twice_except_for_a_missing_object() {
        let mut n = 0;
        let r: io::Result<()> = retry_read(|| {
            n += 1;
            Err(io::Error::from_raw_os_error(libc::EIO))
        });
        assert!(r.is_err());
        assert_eq!(n, 2);
        let mut n = 0;
        let r = retry_read(|| {
            n += 1;
            if n == 1 {
                Err(io::Error::from_raw_os_error(libc::EIO))
            } else {
                Ok(n)
            }
        });
        assert_eq!(r.expect("test"), 2);
        let mut n = 0;
        let r: io::Result<()> = retry_read(|| {
            n += 1;
            Err(io::ErrorKind::NotFound.into())
        });
        assert!(r.is_err());
        assert_eq!(n, 1);
    }
}

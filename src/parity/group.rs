//! One parity group against storage: computing its parity files from its packs, and rebuilding
//! damaged packs from what is left of its columns (repo-format.md §14.1, §14.4). Everything is
//! read in slices of [`SLICE`] bytes of every column, so memory stays at (G + P) × slice plus
//! the P shards being written or the packs being rebuilt.

use std::io;

use serde_bytes::ByteBuf;

use super::code;
use super::format::{self, Member, ParityHeader, HASH_LEN, SECTOR};
use crate::backend::{Backend, FileKind};
use crate::error::{Error, Result};
use crate::id::{content_hash, PackId};
use crate::repo::Repository;

/// Bytes of every column read at once: 1 MiB (256 rows), so a group of 20 + 2 holds 22 MiB.
pub const SLICE: usize = 1 << 20;

/// One slice of one column as read: its bytes (erased sectors zeroed) and which of its sectors
/// are erased (unreadable, past a truncated end, or not hashing to their entry).
struct Column {
    bytes: Vec<u8>,
    erased: Vec<bool>,
}

/// A column of the group in storage: where it is, how long it is, its sector hashes.
pub(crate) struct Source<'a> {
    pub kind: FileKind,
    /// None: the file is known to be gone (every sector within `len` is erased).
    pub name: Option<String>,
    pub len: u64,
    pub hashes: &'a [u8],
}

/// Reads bytes `[off, off + slice_len)` of a column (zeros past its length). An I/O error on
/// the range is retried sector by sector, so a failing sector costs only itself; a missing file
/// erases everything and is not asked again.
fn read_column(backend: &dyn Backend, src: &mut Source<'_>, off: u64, slice_len: usize) -> Column {
    let rows = slice_len.div_ceil(SECTOR);
    let mut c = Column {
        bytes: vec![0; slice_len],
        erased: vec![false; rows],
    };
    let end = (off + slice_len as u64).min(src.len);
    if off >= end {
        return c;
    }
    let real = (end - off) as usize;
    let real_rows = real.div_ceil(SECTOR);
    let Some(name) = src.name.clone() else {
        c.erased[..real_rows].iter_mut().for_each(|e| *e = true);
        return c;
    };
    match backend.get_range(src.kind, &name, off, real) {
        Ok(b) if b.len() == real => c.bytes[..real].copy_from_slice(&b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            src.name = None;
            c.erased[..real_rows].iter_mut().for_each(|e| *e = true);
            return c;
        }
        _ => {
            for k in 0..real_rows {
                let a = k * SECTOR;
                let n = SECTOR.min(real - a);
                match backend.get_range(src.kind, &name, off + a as u64, n) {
                    Ok(b) if b.len() == n => c.bytes[a..a + n].copy_from_slice(&b),
                    _ => c.erased[k] = true,
                }
            }
        }
    }
    let first = (off / SECTOR as u64) as usize;
    for k in 0..real_rows {
        if c.erased[k] {
            continue;
        }
        let a = k * SECTOR;
        let n = SECTOR.min(real - a);
        let h = src
            .hashes
            .get((first + k) * HASH_LEN..(first + k + 1) * HASH_LEN);
        if h != Some(&format::sector_hash(&c.bytes[a..a + n])[..]) {
            c.erased[k] = true;
        }
    }
    for k in 0..real_rows {
        if c.erased[k] {
            let a = k * SECTOR;
            let n = SECTOR.min(slice_len - a);
            c.bytes[a..a + n].fill(0);
        }
    }
    c
}

/// Why a pack could not join a group: it is unreadable, or its bytes do not hash to its name.
pub(crate) struct BadMember {
    pub id: PackId,
    pub why: String,
}

/// One member of a group being read back: its running hashes and the current slice.
struct Reading {
    id: PackId,
    len: u64,
    /// The whole-pack hash, when names are checked.
    hasher: Option<blake3::Hasher>,
    hashes: Vec<u8>,
    /// The current slice of its column, zero-padded.
    col: Vec<u8>,
    /// Why it cannot join the group, once known.
    bad: Option<String>,
}

impl Reading {
    /// Reads bytes `[off, off + slice_len)` of the pack into `col` (zeros past its end) and
    /// hashes them.
    fn read_slice(&mut self, backend: &dyn Backend, off: u64, slice_len: usize) {
        let end = (off + slice_len as u64).min(self.len);
        let mut n = 0;
        if off < end && self.bad.is_none() {
            n = (end - off) as usize;
            // Into the column's own buffer, reused from slice to slice: a fresh 1 MiB buffer
            // per read costs more in page faults than the hashing (measured, see README).
            let hex = self.id.to_hex();
            let (hasher, hashes) = (&mut self.hasher, &mut self.hashes);
            match backend.get_range_into(FileKind::Pack, &hex, off, n, &mut self.col) {
                Ok(b) if b.len() >= n => {
                    let b = &b[..n];
                    if let Some(h) = hasher {
                        h.update(b);
                    }
                    for s in b.chunks(SECTOR) {
                        hashes.extend_from_slice(&format::sector_hash(s));
                    }
                }
                Ok(_) => self.bad = Some("it is shorter than listed".into()),
                Err(e) => self.bad = Some(format!("it cannot be read: {e}")),
            }
            if self.bad.is_some() {
                n = 0;
            }
        }
        // The slice: the bytes read, then zeros (past the pack's end, or all of a bad one).
        self.col.resize(slice_len.max(n), 0);
        self.col.truncate(slice_len);
        self.col[n..].fill(0);
    }
}

/// Computes and stores the P parity files of a group of packs (`members`: id and length,
/// sorted by id). Every member is read back whole: one whose bytes cannot be read or do not
/// hash to its name is returned as bad and nothing is written. Returns the names written.
///
/// `check_names`: hash every member whole and refuse one whose bytes do not hash to its name
/// (`repair parity`). Without it (after a backup, for packs this process has just written and
/// named, read back from the page cache) only the sector hashes are computed: half the hashing,
/// and a wrong pack still can never be "healed" into anything, as a rebuilt pack is kept only
/// when it hashes to its name.
pub(crate) fn write_group(
    repo: &Repository,
    members: &[(PackId, u64)],
    p: usize,
    check_names: bool,
) -> Result<std::result::Result<Vec<String>, Vec<BadMember>>> {
    let backend = repo.backend().as_ref();
    let longest = members.iter().map(|m| m.1).max().unwrap_or(0);
    let l = format::shard_len_for(longest);
    let mut cols: Vec<Reading> = members
        .iter()
        .map(|(id, len)| Reading {
            id: *id,
            len: *len,
            hasher: check_names.then(blake3::Hasher::new),
            hashes: Vec::with_capacity(format::sectors(*len) * HASH_LEN),
            col: Vec::new(),
            bad: None,
        })
        .collect();
    // Reading back and hashing is most of the work: the members are shared among the cores.
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(members.len())
        .max(1);
    let per_thread = members.len().div_ceil(threads);
    let mut shards: Vec<Vec<u8>> = vec![Vec::with_capacity(l as usize); p];
    let mut encoder = code::Encoder::default();
    let mut off = 0u64;
    while off < l {
        let slice_len = SLICE.min((l - off) as usize);
        std::thread::scope(|scope| {
            for chunk in cols.chunks_mut(per_thread) {
                scope.spawn(move || {
                    for c in chunk {
                        c.read_slice(backend, off, slice_len);
                    }
                });
            }
        });
        if cols.iter().all(|c| c.bad.is_none()) {
            let refs: Vec<&[u8]> = cols.iter().map(|c| c.col.as_slice()).collect();
            for (j, r) in encoder.encode(p, &refs)?.into_iter().enumerate() {
                shards[j].extend_from_slice(&r);
            }
        }
        off += slice_len as u64;
    }
    let mut bad = Vec::new();
    let mut hashes = Vec::with_capacity(cols.len());
    for c in cols {
        let why = c.bad.or_else(|| {
            let hash = c.hasher.map(|h| h.finalize());
            hash.is_some_and(|h| h.as_bytes() != &c.id.0).then(|| {
                "its bytes do not hash to its name (damaged on the disk, or written wrong)".into()
            })
        });
        match why {
            Some(why) => bad.push(BadMember { id: c.id, why }),
            None => hashes.push(c.hashes),
        }
    }
    if !bad.is_empty() {
        return Ok(Err(bad));
    }
    let members = members
        .iter()
        .zip(hashes)
        .map(|((id, len), h)| Member {
            id: *id,
            len: *len,
            hashes: ByteBuf::from(h),
        })
        .collect();
    store_group(repo, members, shards, l).map(Ok)
}

/// Writes the parity files of a group whose shards are computed: `members` in column order
/// with their sector hashes, `shards` the P recovery shards of length `l`. The header's version
/// is the lowest that describes it (repo-format.md §14.2: 1 when the members are sorted by
/// id, else 2). Returns the names written.
pub(crate) fn store_group(
    repo: &Repository,
    members: Vec<Member>,
    shards: Vec<Vec<u8>>,
    l: u64,
) -> Result<Vec<String>> {
    let backend = repo.backend().as_ref();
    let shard_hashes: Vec<ByteBuf> = shards
        .iter()
        .map(|s| {
            ByteBuf::from(
                s.chunks(SECTOR)
                    .flat_map(format::sector_hash)
                    .collect::<Vec<u8>>(),
            )
        })
        .collect();
    let sorted = members.windows(2).all(|w| w[0].id < w[1].id);
    let mut header = ParityHeader {
        version: if sorted {
            format::HEADER_VERSION_SORTED
        } else {
            format::HEADER_VERSION
        },
        index: 0,
        parity_count: shards.len() as u32,
        shard_len: l,
        members,
        shard_hashes,
    };
    let mut names = Vec::with_capacity(shards.len());
    // Each shard becomes its file in place (the header appended to it), and is freed once
    // written: no second copy of a shard is held.
    for (j, shard) in shards.into_iter().enumerate() {
        header.index = j as u32;
        let file = format::encode_file_owned(repo.keys(), &header, shard)?;
        let name = hex::encode(content_hash(&file));
        backend
            .put(FileKind::Parity, &name, &file)
            .map_err(crate::repo::backend_err(FileKind::Parity, &name))?;
        names.push(name);
    }
    Ok(names)
}

/// What rebuilding one damaged member came to.
pub(crate) enum Rebuilt {
    /// The pack's exact bytes (they hash to its name).
    Bytes(Vec<u8>),
    /// It cannot be rebuilt; why.
    Unhealable(String),
}

/// Rebuilds the data columns `targets` of a group from every readable, intact sector of its
/// G + P columns. `parity_files[j]`: the stored parity file holding shard `j`, if any.
pub(crate) fn rebuild(
    backend: &dyn Backend,
    header: &ParityHeader,
    parity_files: &[Option<String>],
    targets: &[usize],
) -> Result<Vec<(usize, Rebuilt)>> {
    let g = header.data_count();
    let p = header.parity();
    let l = header.shard_len;
    let mut sources: Vec<Source<'_>> = header
        .members
        .iter()
        .map(|m| Source {
            kind: FileKind::Pack,
            name: Some(m.id.to_hex()),
            len: m.len,
            hashes: &m.hashes,
        })
        .chain((0..p).map(|j| Source {
            kind: FileKind::Parity,
            name: parity_files.get(j).cloned().flatten(),
            len: l,
            hashes: &header.shard_hashes[j],
        }))
        .collect();
    let mut out: Vec<(usize, Vec<u8>, Option<String>)> = targets
        .iter()
        .map(|t| {
            (
                *t,
                Vec::with_capacity(header.members[*t].len as usize),
                None,
            )
        })
        .collect();
    let mut decoder = code::Decoder::default();
    let mut off = 0u64;
    while off < l {
        let slice_len = SLICE.min((l - off) as usize);
        let mut cols: Vec<Column> = sources
            .iter_mut()
            .map(|s| read_column(backend, s, off, slice_len))
            .collect();
        let rows = slice_len.div_ceil(SECTOR);
        let erased_at = |cols: &[Column], k: usize| -> Vec<usize> {
            (0..g + p).filter(|c| cols[*c].erased[k]).collect()
        };
        let mut k = 0;
        while k < rows {
            let set = erased_at(&cols, k);
            let mut end = k + 1;
            while end < rows && erased_at(&cols, end) == set {
                end += 1;
            }
            let data_erased = set.iter().any(|c| *c < g);
            if data_erased && set.len() > p {
                for (t, _, why) in out.iter_mut() {
                    if set.contains(t) && why.is_none() {
                        *why = Some(format!(
                            "at byte {}, {} of the group's {} columns are damaged or unreadable and it has {p} parity files",
                            off + (k * SECTOR) as u64,
                            set.len(),
                            g + p
                        ));
                    }
                }
            } else if data_erased {
                let a = k * SECTOR;
                let b = (end * SECTOR).min(slice_len);
                let restored = {
                    let data: Vec<Option<&[u8]>> = (0..g)
                        .map(|c| (!set.contains(&c)).then(|| &cols[c].bytes[a..b]))
                        .collect();
                    let par: Vec<Option<&[u8]>> = (0..p)
                        .map(|j| (!set.contains(&(g + j))).then(|| &cols[g + j].bytes[a..b]))
                        .collect();
                    decoder.decode(&data, &par)?
                };
                for (c, bytes) in restored {
                    cols[c].bytes[a..b].copy_from_slice(&bytes);
                }
            }
            k = end;
        }
        for (t, buf, _) in out.iter_mut() {
            let len = header.members[*t].len;
            if off < len {
                let n = ((len - off) as usize).min(slice_len);
                buf.extend_from_slice(&cols[*t].bytes[..n]);
            }
        }
        off += slice_len as u64;
    }
    Ok(out
        .into_iter()
        .map(|(t, buf, why)| {
            let id = header.members[t].id;
            let r = match why {
                Some(w) => Rebuilt::Unhealable(w),
                None if content_hash(&buf) == id.0 => Rebuilt::Bytes(buf),
                None => Rebuilt::Unhealable(
                    "the rebuilt bytes do not hash to its name (a parity file disagrees with its own sector hashes)"
                        .into(),
                ),
            };
            (t, r)
        })
        .collect())
}

/// Whether a stored file's bytes hash to its name, read in slices (an I/O error anywhere
/// says no, with the error).
pub(crate) fn verify_file(
    backend: &dyn Backend,
    kind: FileKind,
    name: &str,
    len: u64,
) -> std::result::Result<(), String> {
    let mut h = blake3::Hasher::new();
    let mut off = 0u64;
    while off < len {
        let n = SLICE.min((len - off) as usize);
        match backend.get_range(kind, name, off, n) {
            Ok(b) if b.len() == n => {
                h.update(&b);
            }
            Ok(_) => return Err("it is shorter than listed".into()),
            Err(e) => return Err(format!("it cannot be read: {e}")),
        }
        off += n as u64;
    }
    if hex::encode(h.finalize().as_bytes()) == name {
        Ok(())
    } else {
        Err("its bytes do not hash to its name".into())
    }
}

/// An error reading or decoding a parity file's header.
pub(crate) fn read_header(
    backend: &dyn Backend,
    repo: &Repository,
    name: &str,
    size: u64,
) -> Result<ParityHeader> {
    let what = FileKind::Parity.path(name);
    if size < format::TRAILER_LEN as u64 {
        return Err(Error::corrupt(what, "shorter than its trailer"));
    }
    let trailer = backend
        .get_range(
            FileKind::Parity,
            name,
            size - format::TRAILER_LEN as u64,
            format::TRAILER_LEN,
        )
        .map_err(crate::repo::backend_err(FileKind::Parity, name))?;
    let n = format::header_len(&trailer, size, &what)?;
    let sealed = backend
        .get_range(
            FileKind::Parity,
            name,
            size - (format::TRAILER_LEN + n) as u64,
            n,
        )
        .map_err(crate::repo::backend_err(FileKind::Parity, name))?;
    format::decode_header(repo.keys(), &sealed, size, &what)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::MemBackend;
    use crate::testutil::mem_repo;

    /// Wraps a backend; reads of `fail.0` overlapping bytes `fail.1` fail with EIO.
    struct Eio {
        inner: Arc<MemBackend>,
        fail: (String, std::ops::Range<u64>),
    }

    impl Backend for Eio {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn create(&self) -> io::Result<()> {
            self.inner.create()
        }
        fn put(&self, k: FileKind, n: &str, d: &[u8]) -> io::Result<()> {
            self.inner.put(k, n, d)
        }
        fn get_at_most(&self, k: FileKind, n: &str, l: u64) -> io::Result<Vec<u8>> {
            self.inner.get_at_most(k, n, l)
        }
        fn get_range(&self, k: FileKind, n: &str, off: u64, len: usize) -> io::Result<Vec<u8>> {
            let (name, r) = &self.fail;
            if n == name && off < r.end && off + len as u64 > r.start {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            self.inner.get_range(k, n, off, len)
        }
        fn list(&self, k: FileKind) -> io::Result<Vec<(String, u64)>> {
            self.inner.list(k)
        }
        fn delete(&self, k: FileKind, n: &str) -> io::Result<()> {
            self.inner.delete(k, n)
        }
    }

    /// Four packs (a short last row, whole rows, one row and a bit, 64 bytes) and their group
    /// of two parity files, in memory.
    /// The backend, the group's header, its parity files by shard, the packs' bytes.
    type Fixture = (
        Arc<MemBackend>,
        ParityHeader,
        Vec<Option<String>>,
        Vec<Vec<u8>>,
    );

    fn group() -> Fixture {
        let (backend, repo) = mem_repo(b"pw");
        let lens = [3 * SECTOR + 100, 3 * SECTOR, SECTOR + 904, 64];
        let mut packs: Vec<(PackId, Vec<u8>)> = lens
            .iter()
            .enumerate()
            .map(|(i, len)| {
                let b: Vec<u8> = (0..*len).map(|x| (x * 7 + i * 13) as u8).collect();
                (PackId(content_hash(&b)), b)
            })
            .collect();
        packs.sort();
        for (id, b) in &packs {
            backend.put(FileKind::Pack, &id.to_hex(), b).expect("test");
        }
        let members: Vec<(PackId, u64)> =
            packs.iter().map(|(id, b)| (*id, b.len() as u64)).collect();
        let names = match write_group(&repo, &members, 2, true).expect("test") {
            Ok(n) => n,
            Err(_) => panic!("a member was refused"),
        };
        let file = backend.get(FileKind::Parity, &names[0]).expect("test");
        let (header, _) = format::decode_file(repo.keys(), &file, "p").expect("test");
        let mut files = vec![None, None];
        for n in names {
            let f = backend.get(FileKind::Parity, &n).expect("test");
            let (h, _) = format::decode_file(repo.keys(), &f, "p").expect("test");
            files[h.index as usize] = Some(n);
        }
        (
            backend,
            header,
            files,
            packs.into_iter().map(|p| p.1).collect(),
        )
    }

    fn damage(backend: &MemBackend, kind: FileKind, name: &str, at: std::ops::Range<usize>) {
        let mut b = backend.get(kind, name).expect("test");
        let end = at.end.min(b.len());
        b[at.start..end].iter_mut().for_each(|x| *x ^= 0xff);
        backend.delete(kind, name).expect("test");
        backend.put(kind, name, &b).expect("test");
    }

    fn healed(out: Vec<(usize, Rebuilt)>, originals: &[Vec<u8>]) -> usize {
        let mut n = 0;
        for (t, r) in out {
            match r {
                Rebuilt::Bytes(b) => {
                    assert_eq!(b, originals[t]);
                    n += 1;
                }
                Rebuilt::Unhealable(w) => panic!("column {t}: {w}"),
            }
        }
        n
    }

    #[test]
    fn erasures_in_the_first_row_the_short_last_row_and_parity_columns_are_decoded() {
        let (backend, h, files, orig) = group();
        let name = |i: usize| h.members[i].id.to_hex();
        let long = (0..4)
            .find(|i| orig[*i].len() == 3 * SECTOR + 100)
            .expect("test");
        let other = (0..4).find(|i| orig[*i].len() == 3 * SECTOR).expect("test");
        // First row of one pack, short last row of the same, a middle row of another together
        // with that row of parity file 0: never more than 2 erasures in a row.
        damage(&backend, FileKind::Pack, &name(long), 0..10);
        damage(
            &backend,
            FileKind::Pack,
            &name(long),
            3 * SECTOR + 50..3 * SECTOR + 51,
        );
        damage(
            &backend,
            FileKind::Pack,
            &name(other),
            SECTOR + 5..SECTOR + 6,
        );
        damage(
            &backend,
            FileKind::Parity,
            files[0].as_deref().expect("test"),
            SECTOR..SECTOR + 1,
        );
        let out = rebuild(backend.as_ref(), &h, &files, &[long, other]).expect("test");
        assert_eq!(healed(out, &orig), 2);
    }

    #[test]
    fn a_lost_pack_and_a_lost_parity_file_together_are_two_erasures() {
        let (backend, h, mut files, orig) = group();
        backend
            .delete(FileKind::Pack, &h.members[2].id.to_hex())
            .expect("test");
        files[1] = None;
        let out = rebuild(backend.as_ref(), &h, &files, &[2]).expect("test");
        assert_eq!(healed(out, &orig), 1);
        // A truncated pack: what is left of it is used, the rest decoded.
        let (backend, h, files, orig) = group();
        let n = h.members[0].id.to_hex();
        let b = backend.get(FileKind::Pack, &n).expect("test");
        backend.delete(FileKind::Pack, &n).expect("test");
        backend
            .put(FileKind::Pack, &n, &b[..SECTOR + 1])
            .expect("test");
        let out = rebuild(backend.as_ref(), &h, &files, &[0]).expect("test");
        assert_eq!(healed(out, &orig), 1);
    }

    #[test]
    fn a_sector_that_fails_to_read_is_an_erasure_and_the_rest_of_the_pack_is_used() {
        let (mem, h, files, orig) = group();
        let victim = (0..4).find(|i| orig[*i].len() >= 3 * SECTOR).expect("test");
        let name = h.members[victim].id.to_hex();
        // And another pack flipped in a different row: EIO costs only its own sector.
        let other = (0..4)
            .find(|i| *i != victim && orig[*i].len() > SECTOR)
            .expect("test");
        damage(&mem, FileKind::Pack, &h.members[other].id.to_hex(), 0..1);
        // Row 0 also loses parity file 0: two erasures there, so the whole failing pack
        // cannot be given up as a third.
        damage(
            &mem,
            FileKind::Parity,
            files[0].as_deref().expect("test"),
            0..1,
        );
        let eio = Eio {
            inner: mem,
            fail: (name, (2 * SECTOR) as u64..(2 * SECTOR + 1) as u64),
        };
        let out = rebuild(&eio, &h, &files, &[victim, other]).expect("test");
        assert_eq!(healed(out, &orig), 2);
    }

    #[test]
    fn more_erasures_in_a_row_than_parity_files_is_unhealable_and_says_where() {
        let (backend, h, files, _) = group();
        for i in 0..3 {
            damage(&backend, FileKind::Pack, &h.members[i].id.to_hex(), 0..1);
        }
        let out = rebuild(backend.as_ref(), &h, &files, &[0, 1, 2]).expect("test");
        for (_, r) in out {
            match r {
                Rebuilt::Unhealable(w) => {
                    assert!(w.contains("at byte 0, 3 of the group's 6"), "{w}")
                }
                Rebuilt::Bytes(_) => panic!("rebuilt from too little"),
            }
        }
    }

    #[test]
    fn a_pack_that_does_not_hash_to_its_name_is_refused_and_no_parity_is_written() {
        let (backend, repo) = mem_repo(b"pw");
        let good = vec![1u8; 5000];
        let bad = vec![2u8; 5000];
        let good_id = PackId(content_hash(&good));
        let wrong_id = PackId(content_hash(b"something else"));
        backend
            .put(FileKind::Pack, &good_id.to_hex(), &good)
            .expect("test");
        backend
            .put(FileKind::Pack, &wrong_id.to_hex(), &bad)
            .expect("test");
        let mut members = vec![(good_id, 5000), (wrong_id, 5000)];
        members.sort();
        match write_group(&repo, &members, 1, true).expect("test") {
            Err(b) => assert_eq!(b.iter().map(|b| b.id).collect::<Vec<_>>(), vec![wrong_id]),
            Ok(_) => panic!("a group with a wrong pack was written"),
        }
        assert!(backend.list(FileKind::Parity).expect("test").is_empty());
    }
}

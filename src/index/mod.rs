//! The repository's index as this process sees it: which pack holds each blob.
//!
//! Index files (repo-format.md §8, [`IndexFile`]) are sealed MessagePack lists of packs. Holding
//! them in a hash map costs some 100 bytes of memory per blob, which stops working at tens of
//! millions of blobs. Instead each live index file is turned, once, into a *run*: its entries
//! sorted by blob id in a local file of the cache ([`run`], repo-format.md §8.1). A lookup probes
//! each run's Bloom filter in memory and reads one 1 KiB block of the run that may hold the id.
//! Memory is about 1.7 bytes per blob (the filters and the fan-out), whatever the repository's
//! size; runs are merged in the background of loading so a lookup touches few of them.
//!
//! Runs are a cache: they are rebuilt from the index files whenever they are missing, stale (an
//! index file they cover was superseded) or fail authentication.

pub mod filter;
pub mod run;

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use crate::format::index::{BlobLocation, IndexFile, IndexPack};
use crate::id::{BlobId, IndexId, PackId};
use crate::pack::PackEntry;
use run::{BlockCache, Entry, Run, RunWriter};

/// A blob's place in the index: its run and its position in that run. Positions are stable for
/// the life of an [`Index`] (loading is over before anyone asks), so a bitmap over them can
/// mark blobs with one bit each (prune).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pos {
    /// The run, as a position in [`Index::runs`].
    pub run: u32,
    /// The entry's position in the run.
    pub at: u64,
}

/// Where runs are kept: the repository's cache directory, or a private temporary directory
/// that goes with the index (no cache, put-only keys, tests).
enum Store {
    Dir(PathBuf),
    Temp(tempfile::TempDir),
}

/// Blob id → location, for every pack in the loaded index files; see the module docs.
pub struct Index {
    store: Option<Store>,
    key: [u8; 32],
    runs: Vec<Run>,
    /// Per run: its pack table's numbers → positions in `packs`.
    run_packs: Vec<Vec<u32>>,
    packs: PackTable,
    problems: Mutex<Vec<String>>,
    /// Blocks read lately, shared by all runs (at most 8 MiB).
    cache: BlockCache,
}

impl Default for Index {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs with fewer entries than this are on level 0; each level above holds runs 4 times
/// larger. A level with [`MERGE_AT`] runs is merged into one run of the next level.
const LEVEL_BASE: u64 = 16_384;
const MERGE_AT: usize = 4;

fn level(entries: u64) -> u32 {
    let mut l = 0;
    let mut size = LEVEL_BASE;
    while entries >= size {
        l += 1;
        size = size.saturating_mul(4);
    }
    l
}

impl Index {
    /// An empty index whose runs (if any are added) live in a private temporary directory.
    pub fn new() -> Self {
        let key = crate::crypto::random_array::<32>().unwrap_or_else(|_| {
            // Without the system's random source the key only needs to differ from the
            // repository's: the runs are private and go with this index.
            *blake3::hash(format!("{:?}", std::time::SystemTime::now()).as_bytes()).as_bytes()
        });
        Index {
            store: None,
            key,
            runs: Vec::new(),
            run_packs: Vec::new(),
            packs: PackTable::default(),
            problems: Mutex::new(Vec::new()),
            cache: BlockCache::default(),
        }
    }

    /// An empty index keeping its runs in `dir` (created when needed), authenticated with a key
    /// derived from the repository's id key.
    pub fn in_dir(dir: PathBuf, id_key: &[u8; 32]) -> Self {
        Index {
            store: Some(Store::Dir(dir)),
            key: run::mac_key(id_key),
            ..Self::new()
        }
    }

    fn dir(&mut self) -> io::Result<PathBuf> {
        match &self.store {
            Some(Store::Dir(d)) => {
                if !d.is_dir() {
                    crate::backend::create_private_dir(d)?;
                }
                Ok(d.clone())
            }
            Some(Store::Temp(t)) => Ok(t.path().to_path_buf()),
            None => {
                let t = tempfile::Builder::new().prefix("cairn-index-").tempdir()?;
                let p = t.path().to_path_buf();
                self.store = Some(Store::Temp(t));
                Ok(p)
            }
        }
    }

    fn problem(&self, msg: String) {
        let mut p = self.problems.lock().unwrap_or_else(|p| p.into_inner());
        if !p.contains(&msg) {
            p.push(msg);
        }
    }

    /// Problems met since the last call: run files of the local cache that failed to read or
    /// authenticate (their entries were treated as absent; the file is rebuilt next time).
    pub fn take_problems(&self) -> Vec<String> {
        std::mem::take(&mut *self.problems.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn run_failed(&self, r: usize, e: &io::Error) {
        let run = &self.runs[r];
        if e.kind() == io::ErrorKind::InvalidData {
            // Damaged: it goes, so the next load rebuilds it from the index files.
            let _ = std::fs::remove_file(run.path());
        }
        self.problem(format!(
            "the local index cache file {} cannot be used ({e}); its entries were treated as absent, and it is rebuilt from the index files next time",
            run.path().display()
        ));
    }

    fn push_run(&mut self, run: Run) {
        // Tags are run positions: any change of the runs makes cached blocks another run's.
        self.cache.clear();
        let map = run
            .packs()
            .iter()
            .map(|(id, size)| self.packs.intern(*id, *size))
            .collect();
        self.run_packs.push(map);
        self.runs.push(run);
    }

    /// Sorts the entries of index files into a new run covering `covered`.
    fn write_run(&mut self, covered: Vec<IndexId>, files: &[&IndexFile]) -> io::Result<Run> {
        let dir = self.dir()?;
        let mut packs = PackTable::default();
        let mut entries: Vec<Entry> = Vec::new();
        for f in files {
            for p in &f.packs {
                let n = packs.intern(p.id, p.size);
                entries.extend(p.blobs.iter().map(|e| Entry {
                    id: e.id,
                    pack: n,
                    kind: e.kind,
                    offset: e.offset,
                    length: e.length,
                    raw_length: e.raw_length,
                }));
            }
        }
        // Stable: equal ids keep the files' order, the copy readers use first.
        entries.sort_by_key(|e| e.id);
        let mut covered = covered;
        covered.sort();
        let mut w = RunWriter::create(&dir, &self.key, covered, packs.list, entries.len() as u64)?;
        for e in &entries {
            w.push(e)?;
        }
        w.finish()
    }

    /// Writes the run of an index file just read (and a record of what it supersedes) into the
    /// cache, for [`Self::load`] to find, without adding it to this index.
    pub fn cache_index_file(&mut self, id: IndexId, file: &IndexFile) -> io::Result<()> {
        self.remember_supersedes(&id, &file.supersedes);
        self.write_run(vec![id], &[file]).map(drop)
    }

    /// Adds a new index file: a run of its own (and a record of what it supersedes), so the
    /// next process that opens the repository need not read it again.
    pub fn add_index_file(&mut self, id: IndexId, file: &IndexFile) -> io::Result<()> {
        self.remember_supersedes(&id, &file.supersedes);
        let run = self.write_run(vec![id], &[file])?;
        self.push_run(run);
        // A long backup writes an index file every 30 seconds: merged as they come, lookups
        // keep probing a few runs per level, not one per file.
        self.compact()
    }

    fn supersedes_path(&mut self, id: &IndexId) -> Option<PathBuf> {
        match &self.store {
            Some(Store::Dir(d)) => Some(d.join(format!("{}.sup", id.to_hex()))),
            _ => None,
        }
    }

    /// The MAC of a supersedes record: keyed BLAKE3 of `"supersedes"`, the index file's id and
    /// the record's ids (repo-format.md §8.1).
    fn supersedes_mac(&self, id: &IndexId, body: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(b"supersedes");
        h.update(&id.0);
        h.update(body);
        *h.finalize().as_bytes()
    }

    /// What an index file supersedes, as recorded when this cache first read it (None when not
    /// recorded, or the record fails authentication).
    pub fn cached_supersedes(&mut self, id: &IndexId) -> Option<Vec<IndexId>> {
        let path = self.supersedes_path(id)?;
        let bytes = std::fs::read(&path).ok()?;
        if bytes.len() < 32 || (bytes.len() - 32) % 32 != 0 {
            return None;
        }
        let (body, mac) = bytes.split_at(bytes.len() - 32);
        if self.supersedes_mac(id, body)[..] != *mac {
            return None;
        }
        Some(
            body.chunks_exact(32)
                .map(|c| IndexId(c.try_into().expect("32 bytes")))
                .collect(),
        )
    }

    /// Records what an index file supersedes (content-addressed, so true forever).
    pub fn remember_supersedes(&mut self, id: &IndexId, supersedes: &[IndexId]) {
        let Some(path) = self.supersedes_path(id) else {
            return;
        };
        if path.exists() || self.dir().is_err() {
            return;
        }
        let mut body: Vec<u8> = supersedes.iter().flat_map(|s| s.0).collect();
        let mac = self.supersedes_mac(id, &body);
        body.extend_from_slice(&mac);
        // A cache entry: one that cannot be written is read again from the repository next
        // time, and a torn one fails its MAC.
        let _ = crate::backend::write_private_file(&path, &body);
    }

    /// Builds this index for the live index files `live` (of the `listed` ones, whose
    /// supersedes records are kept): cached runs that cover only live
    /// files are used, stale ones are deleted, and `read` is asked for every live file no
    /// run covers (None: unreadable, left out). Then runs are merged until each level holds
    /// fewer than four.
    pub fn load(
        &mut self,
        live: &[IndexId],
        listed: &HashSet<IndexId>,
        mut read: impl FnMut(&IndexId) -> Option<IndexFile>,
    ) -> io::Result<()> {
        let live_set: HashSet<IndexId> = live.iter().copied().collect();
        let mut found: Vec<Run> = Vec::new();
        // Runs written by this process for these files already (add_index_file) count too.
        for run in std::mem::take(&mut self.runs) {
            found.push(run);
        }
        self.run_packs.clear();
        self.packs = PackTable::default();
        let dir = self.dir()?;
        let mine: HashSet<PathBuf> = found.iter().map(|r| r.path().to_path_buf()).collect();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with(".tmp-") {
                // Another process's unfinished run, or a dead one's: gone after a day.
                if is_older_than_a_day(&path) {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            if !name.ends_with(".run") || mine.contains(&path) {
                continue;
            }
            match Run::open(&path, &self.key) {
                Ok(r) => found.push(r),
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    let _ = std::fs::remove_file(&path);
                }
                // Deleted by another process's merge since the listing, or unreadable: the
                // files it covered are read again below.
                Err(_) => {}
            }
        }
        if let Some(Store::Dir(_)) = &self.store {
            for entry in std::fs::read_dir(&dir)?.flatten() {
                let path = entry.path();
                let stale = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".sup"))
                    .and_then(IndexId::from_hex)
                    .is_some_and(|id| !listed.contains(&id));
                // The record of a file no longer listed: not needed again.
                if stale {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        // Largest first: a merged run wins over the parts a crash left beside it.
        found.sort_by_key(|r| std::cmp::Reverse(r.len()));
        let mut covered: HashSet<IndexId> = HashSet::new();
        let mut chosen = Vec::new();
        for r in found {
            let valid = r.covered().iter().all(|c| live_set.contains(c));
            let disjoint = r.covered().iter().all(|c| !covered.contains(c));
            if valid && disjoint {
                covered.extend(r.covered().iter().copied());
                chosen.push(r);
            } else {
                // Stale (covers a superseded or vanished file) or redundant.
                let _ = std::fs::remove_file(r.path());
            }
        }
        for id in live {
            if covered.contains(id) {
                continue;
            }
            if let Some(file) = read(id) {
                self.remember_supersedes(id, &file.supersedes);
                chosen.push(self.write_run(vec![*id], &[&file])?);
                covered.insert(*id);
            }
        }
        // Readers prefer the copy in the run that comes first: order them by their files.
        chosen.sort_by(|a, b| a.covered().first().cmp(&b.covered().first()));
        for r in chosen {
            self.push_run(r);
        }
        self.compact()
    }

    /// Merges runs while some level holds [`MERGE_AT`] of them.
    fn compact(&mut self) -> io::Result<()> {
        loop {
            let mut by_level: HashMap<u32, Vec<usize>> = HashMap::new();
            for (i, r) in self.runs.iter().enumerate() {
                by_level.entry(level(r.len())).or_default().push(i);
            }
            let Some(group) = by_level
                .into_values()
                .filter(|g| g.len() >= MERGE_AT)
                .min_by_key(|g| g[0])
            else {
                return Ok(());
            };
            self.merge(&group)?;
        }
    }

    /// Replaces the runs at `group` (positions, ascending) with one run holding all their
    /// entries; equal ids keep the runs' order.
    fn merge(&mut self, group: &[usize]) -> io::Result<()> {
        let dir = self.dir()?;
        let mut packs = PackTable::default();
        let mut maps: Vec<Vec<u32>> = Vec::new();
        let mut covered: Vec<IndexId> = Vec::new();
        let mut total = 0;
        for &i in group {
            let r = &self.runs[i];
            maps.push(
                r.packs()
                    .iter()
                    .map(|(id, size)| packs.intern(*id, *size))
                    .collect(),
            );
            covered.extend_from_slice(r.covered());
            total += r.len();
        }
        covered.sort();
        let mut w = RunWriter::create(&dir, &self.key, covered, packs.list, total)?;
        let mut iters: Vec<_> = group
            .iter()
            .map(|&i| self.runs[i].iter().peekable())
            .collect();
        loop {
            // The smallest id among the heads; the first run wins ties. Few runs: a scan.
            let mut best: Option<(usize, BlobId)> = None;
            for (k, it) in iters.iter_mut().enumerate() {
                match it.peek() {
                    Some(Ok(e)) if best.is_none_or(|(_, id)| e.id < id) => {
                        best = Some((k, e.id));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) => {
                        return Err(it
                            .next()
                            .and_then(Result::err)
                            .unwrap_or_else(|| io::Error::other("run read failed")));
                    }
                    None => {}
                }
            }
            let Some((k, _)) = best else { break };
            let mut e = iters[k].next().expect("peeked")?;
            e.pack = maps[k][e.pack as usize];
            w.push(&e)?;
        }
        drop(iters);
        let merged = w.finish()?;
        let old: Vec<Run> = {
            let keep: HashSet<usize> = group.iter().copied().collect();
            let runs = std::mem::take(&mut self.runs);
            let mut old = Vec::new();
            let mut rest = Vec::new();
            for (i, r) in runs.into_iter().enumerate() {
                if keep.contains(&i) {
                    old.push(r);
                } else {
                    rest.push(r);
                }
            }
            self.runs = rest;
            old
        };
        for r in &old {
            let _ = std::fs::remove_file(r.path());
        }
        // The merged run takes the place of the first it replaced.
        let mut runs = std::mem::take(&mut self.runs);
        runs.insert(group[0].min(runs.len()), merged);
        self.run_packs.clear();
        self.packs = PackTable::default();
        for r in runs {
            self.push_run(r);
        }
        Ok(())
    }

    /// The first indexed copy of a blob and its position; None when no run lists it (or the
    /// run that does failed to read: see [`Self::take_problems`]).
    pub fn locate(&self, id: &BlobId) -> Option<(Pos, BlobLocation)> {
        for (r, run) in self.runs.iter().enumerate() {
            match run.find(id, &self.cache, r as u32) {
                Ok(Some((at, e))) => {
                    let pack = self.pack_of(r, &e);
                    let pos = Pos { run: r as u32, at };
                    return Some((
                        pos,
                        BlobLocation {
                            pack,
                            entry: e.pack_entry(),
                        },
                    ));
                }
                Ok(None) => {}
                Err(e) => self.run_failed(r, &e),
            }
        }
        None
    }

    /// The pack of an entry of run `r`.
    fn pack_of(&self, r: usize, e: &Entry) -> PackId {
        self.packs.list[self.run_packs[r][e.pack as usize] as usize].0
    }

    /// Where a blob is read from: its first indexed copy. None when no loaded index file
    /// lists it.
    pub fn get(&self, id: &BlobId) -> Option<BlobLocation> {
        self.locate(id).map(|(_, l)| l)
    }

    /// Whether any loaded index file lists the blob.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.locate(id).is_some()
    }

    /// How many entries are indexed; a blob listed twice (two packs, or one pack in two index
    /// files) counts twice.
    pub fn blob_count(&self) -> u64 {
        self.runs.iter().map(Run::len).sum()
    }

    /// Every pack with its size as recorded in the index.
    pub fn packs(&self) -> &[(PackId, u64)] {
        &self.packs.list
    }

    /// The runs, in the order lookups try them.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// Bytes of memory the index holds (filters, fan-outs, pack tables).
    pub fn memory(&self) -> usize {
        self.runs.iter().map(Run::memory).sum::<usize>() + self.packs.list.len() * 48
    }

    /// Every entry of run `r` in id order, with its position and its pack.
    pub fn scan(
        &self,
        r: usize,
    ) -> impl Iterator<Item = io::Result<(Pos, PackId, PackEntry)>> + '_ {
        self.runs[r].iter().enumerate().map(move |(at, e)| {
            let e = e?;
            let pack = self.pack_of(r, &e);
            Ok((
                Pos {
                    run: r as u32,
                    at: at as u64,
                },
                pack,
                e.pack_entry(),
            ))
        })
    }

    /// Every indexed entry (duplicates included), grouped by pack, with each pack's size. This
    /// holds every entry in memory: for repairs, not for the commands whose memory must stay
    /// flat.
    pub fn entries_by_pack(&self) -> io::Result<HashMap<PackId, (u64, Vec<PackEntry>)>> {
        let mut out: HashMap<PackId, (u64, Vec<PackEntry>)> = self
            .packs
            .list
            .iter()
            .map(|(id, size)| (*id, (*size, Vec::new())))
            .collect();
        for r in 0..self.runs.len() {
            for item in self.scan(r) {
                let (_, pack, e) = item?;
                if let Some(v) = out.get_mut(&pack) {
                    v.1.push(e);
                }
            }
        }
        for v in out.values_mut() {
            v.1.sort_by_key(|e| (e.offset, e.id));
            // The same pack listed by two index files lists its entries twice.
            v.1.dedup();
        }
        Ok(out)
    }

    /// A bitmap with one bit per indexed entry, all clear.
    pub fn marks(&self) -> Marks {
        Marks {
            bits: self
                .runs
                .iter()
                .map(|r| vec![0u64; r.len().div_ceil(64) as usize])
                .collect(),
        }
    }
}

/// Pack ids numbered in the order first seen: an index's or a run's pack table.
#[derive(Default)]
struct PackTable {
    list: Vec<(PackId, u64)>,
    number: HashMap<PackId, u32>,
}

impl PackTable {
    /// The pack's number, given it now if it has none (its first size is kept).
    fn intern(&mut self, id: PackId, size: u64) -> u32 {
        *self.number.entry(id).or_insert_with(|| {
            self.list.push((id, size));
            (self.list.len() - 1) as u32
        })
    }
}

fn is_older_than_a_day(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() > 86_400)
}

/// One bit per indexed entry ([`Index::marks`]): 1 bit per blob where a set of ids costs 50.
pub struct Marks {
    bits: Vec<Vec<u64>>,
}

impl Marks {
    /// Sets the bit of `pos`; returns whether it was clear. A position from another index
    /// (runs merged since the bitmap was made) is ignored.
    pub fn set(&mut self, pos: Pos) -> bool {
        let Some(w) = self
            .bits
            .get_mut(pos.run as usize)
            .and_then(|r| r.get_mut((pos.at / 64) as usize))
        else {
            return false;
        };
        let bit = 1u64 << (pos.at % 64);
        let was = *w & bit == 0;
        *w |= bit;
        was
    }

    /// Whether the bit of `pos` is set.
    pub fn get(&self, pos: Pos) -> bool {
        self.bits
            .get(pos.run as usize)
            .and_then(|r| r.get((pos.at / 64) as usize))
            .is_some_and(|w| w & (1u64 << (pos.at % 64)) != 0)
    }
}

#[cfg(test)]
mod tests;

//! Integrity checks: structure always; stored bytes with `read_data`.
//!
//! Every problem is named (which file, what is wrong) and mapped back to the files of the
//! snapshots it affects. Nothing here panics on hostile bytes: every parser it calls bounds its
//! allocations and returns errors. Which packs were verified when is remembered in a local state
//! file (per repository id), so partial checks over successive days cover every pack,
//! least-recently-verified first.

pub mod repair;
pub mod sibling;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::backend::{is_read_error, read_around_errors, Unreadable};
use crate::backend::{FileKind, ObjectTooLarge};
use crate::error::{Error, Result};
use crate::id::{content_hash, BlobId, IndexId, PackId, SnapshotId, TreeId};
use crate::pack::{self, PackEntry, TRAILER_LEN};
use crate::repo::Repository;

/// How much stored data to read and verify.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum ReadData {
    /// Structure only: headers, index, trees.
    #[default]
    None,
    /// Every pack (`--read-data`).
    All,
    /// This share of the packs, least recently verified first.
    Percent(f64),
    /// Slice `n` of `m` (1-based) of the packs, by pack id.
    Slice(u32, u32),
}

impl std::str::FromStr for ReadData {
    type Err = String;
    /// `N%` or `n/m`.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| format!("{s:?} is not N%"))?;
            if !(v > 0.0 && v <= 100.0) {
                return Err(format!("{s:?}: the percentage must be in (0, 100]"));
            }
            return Ok(ReadData::Percent(v));
        }
        if let Some((n, m)) = s.split_once('/') {
            let n: u32 = n.trim().parse().map_err(|_| format!("{s:?} is not n/m"))?;
            let m: u32 = m.trim().parse().map_err(|_| format!("{s:?} is not n/m"))?;
            if m == 0 || n == 0 || n > m {
                return Err(format!("{s:?}: need 1 <= n <= m"));
            }
            return Ok(ReadData::Slice(n, m));
        }
        Err(format!("{s:?} is neither N% nor n/m"))
    }
}

/// What [`check`] verifies beyond the structure, and where it keeps its record.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Which packs to download, decrypt and verify (`--read-data`, `--read-data-subset`).
    pub read_data: ReadData,
    /// Report packs whose last verification is older than this (ns), or that were never verified.
    pub max_age_ns: Option<i64>,
    /// Stop reading data when this much time has passed; what was verified counts.
    pub budget: Option<Duration>,
    /// The local verification-state file (created if missing).
    pub state_file: Option<PathBuf>,
    /// The current time, nanoseconds since the Unix epoch: recorded for packs verified now and
    /// the reference for `max_age_ns`.
    pub now_ns: i64,
}

/// What [`check`] found: the keys of the same names in `cairn check --json` (`ok` is
/// [`CheckReport::ok`]).
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// Each a complete sentence naming the damaged object.
    pub errors: Vec<String>,
    /// Not damage, but worth knowing (unreferenced packs, stale verification).
    pub warnings: Vec<String>,
    /// Every file or directory the damage affects, in every snapshot.
    pub affected: Vec<Affected>,
    /// Snapshots that could be read and whose trees were walked.
    pub snapshots: u64,
    /// Distinct trees visited across all snapshots, unreadable ones included.
    pub trees: u64,
    /// Packs named by the index.
    pub packs: u64,
    /// Packs downloaded and verified (hash, header, every blob), per `read_data`.
    pub packs_read: u64,
    /// Bytes of the packs counted in `packs_read`, as sized by the index.
    pub bytes_read: u64,
    /// Blobs decrypted and verified in the packs read.
    pub blobs_read: u64,
    /// Packs selected for reading but left unread because the budget ran out.
    pub packs_skipped_budget: u64,
    /// Packs not verified within `max_age`.
    pub packs_overdue: u64,
    /// Each damaged or missing pack (and parity file), and whether parity can heal it.
    pub pack_problems: Vec<PackProblem>,
    /// Parity files stored in `parity/`.
    pub parity_files: u64,
    /// Parity files read and verified (with `--read-data`).
    pub parity_files_read: u64,
}

/// A damaged or missing pack or parity file, and what can heal it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackProblem {
    /// Repository path of the file (`data/ab/<id>`, `parity/cd/<id>`).
    pub path: String,
    /// `Some("parity")` when `cairn repair packs` can rebuild it from parity (or, for a
    /// parity file, `cairn repair parity` can recompute it); None when nothing here can.
    pub healable: Option<&'static str>,
    /// Why it cannot be healed, when it cannot.
    pub note: Option<String>,
}

/// A file or directory (by its exact path in the snapshot) that damage makes unrestorable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Affected {
    /// The snapshot holding the entry.
    pub snapshot: SnapshotId,
    /// The entry's absolute path inside that snapshot (`/` for an unreadable root tree).
    pub path: PathBuf,
    /// What is damaged or missing.
    pub why: String,
}

impl CheckReport {
    /// True when no error was found (warnings allowed): `cairn check` exits 0.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Pack id → last successful verification (ns since epoch).
type State = BTreeMap<String, i64>;

/// The verification-state file's name in a repository's local cache directory (the caller
/// names the directory: the library reads no environment).
pub const STATE_FILE: &str = "check-state.json";

/// When a pack was last verified without errors according to the state file at `state_file`
/// (ns since the epoch): the newest of its records. None when no pack ever was, or the file is
/// missing or unreadable (see [`CheckOptions::state_file`]).
pub fn last_verified(state_file: &Path) -> Option<i64> {
    load_state(state_file).into_values().max()
}

/// What check's record says of a set of packs (those the repository holds now).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// The packs asked about.
    pub packs: u64,
    /// How many of them the record has a verification for.
    pub verified: u64,
    /// The oldest of their verifications, when every pack has one: since then, every pack
    /// was read and verified at least once (the last full verification). None otherwise.
    pub full_ns: Option<i64>,
}

impl Coverage {
    /// The share of the packs verified, 0 to 1 (1 for a repository without packs).
    pub fn ratio(&self) -> f64 {
        if self.packs == 0 {
            1.0
        } else {
            self.verified as f64 / self.packs as f64
        }
    }
}

/// How much of `packs` (pack ids in hex) the record at `state_file` covers.
pub fn coverage<'a>(state_file: &Path, packs: impl IntoIterator<Item = &'a str>) -> Coverage {
    let state = load_state(state_file);
    let mut c = Coverage::default();
    let mut oldest: Option<i64> = None;
    for p in packs {
        c.packs += 1;
        if let Some(t) = state.get(p) {
            c.verified += 1;
            oldest = Some(oldest.map_or(*t, |o| o.min(*t)));
        }
    }
    if c.verified == c.packs && c.packs > 0 {
        c.full_ns = oldest;
    }
    c
}

/// Largest verification-state file read: about 100 bytes per pack, so room for millions.
const MAX_STATE_LEN: u64 = 256 << 20;

/// The state file, or an empty state when it is missing, too large, not a regular file or
/// not what this program writes (it is a record, never needed for correctness).
fn load_state(path: &Path) -> State {
    let Ok(bytes) = crate::safe_fs::read_regular_bounded(path, MAX_STATE_LEN) else {
        return State::default();
    };
    serde_json::from_slice(&bytes).unwrap_or_default()
}

/// Saves the state owner-only (0600, in a 0700 directory), through a temporary name.
fn save_state(path: &Path, state: &State) -> Result<()> {
    let bytes = serde_json::to_vec(state).map_err(|e| Error::InvalidInput(e.to_string()))?;
    crate::backend::write_private_file(path, &bytes).map_err(|e| Error::io(path, e))
}

/// Which packs to read: all, a slice by id, or the least recently verified share.
fn select_packs(all: &[PackId], read: ReadData, state: &State) -> Vec<PackId> {
    match read {
        ReadData::None => Vec::new(),
        ReadData::All => all.to_vec(),
        ReadData::Slice(n, m) => all
            .iter()
            .filter(|p| u32::from_le_bytes([p.0[0], p.0[1], p.0[2], p.0[3]]) % m == n - 1)
            .copied()
            .collect(),
        ReadData::Percent(pct) => {
            let want = ((all.len() as f64) * pct / 100.0).ceil() as usize;
            let mut order: Vec<(i64, PackId)> = all
                .iter()
                .map(|p| (state.get(&p.to_hex()).copied().unwrap_or(i64::MIN), *p))
                .collect();
            order.sort();
            order.into_iter().take(want).map(|(_, p)| p).collect()
        }
    }
}

/// Checks `repo` (index loaded by this function).
pub fn check(repo: &mut Repository, opts: &CheckOptions) -> Result<CheckReport> {
    let mut r = CheckReport::default();
    repo.load_index()?;
    for w in repo.take_warnings() {
        r.errors.push(w);
    }
    let listed: HashMap<String, u64> = repo.list(FileKind::Pack)?.into_iter().collect();
    let mut state = opts
        .state_file
        .as_deref()
        .map(load_state)
        .unwrap_or_default();
    let mut pack_ids: Vec<PackId> = repo.index().packs().iter().map(|(id, _)| *id).collect();
    pack_ids.sort();
    let to_read: HashSet<PackId> = select_packs(&pack_ids, opts.read_data, &state)
        .into_iter()
        .collect();
    let mut run = PackRun {
        start: Instant::now(),
        damaged: HashMap::new(),
        problem_packs: HashSet::new(),
        listed: &listed,
        to_read: &to_read,
        opts,
    };
    // Each pack's entries come from the index files themselves, read once each and one at a
    // time (loading reads a file only the first time the local cache sees it, so this is also
    // where damaged index files are found); packs are checked in batches, so memory holds one
    // batch of entries, never the whole index.
    let live: HashSet<IndexId> = repo.index_files().iter().copied().collect();
    let mut seen: HashSet<PackId> = HashSet::new();
    let mut batch: Vec<(PackId, u64, Vec<PackEntry>)> = Vec::new();
    let mut in_batch = 0;
    let problems = {
        let repo = &*repo;
        repo.stream_index_files(|id, file| {
            if !live.contains(id) {
                return;
            }
            for p in file.packs {
                // A pack two index files list is checked once, with the first listing.
                if !seen.insert(p.id) {
                    continue;
                }
                in_batch += p.blobs.len().max(1);
                batch.push((p.id, p.size, p.blobs));
                if in_batch >= CHECK_BATCH {
                    run.check_batch(repo, std::mem::take(&mut batch), &mut r, &mut state);
                    in_batch = 0;
                }
            }
        })?
    };
    run.check_batch(repo, batch, &mut r, &mut state);
    for p in problems {
        if !r.errors.contains(&p) {
            r.errors.push(p);
        }
    }
    let PackRun {
        damaged,
        problem_packs,
        ..
    } = run;
    let indexed: HashSet<PackId> = pack_ids.iter().copied().collect();
    for (name, size) in &listed {
        let known = PackId::from_hex(name).is_some_and(|id| indexed.contains(&id));
        if !known {
            if *size == 0 {
                r.warnings.push(format!(
                    "zero-length file data/{}/{name} (treated as absent)",
                    &name[..2]
                ));
            } else {
                r.warnings.push(format!(
                    "pack {name} is not in any index (left by an interrupted backup, or the index lost it: `cairn repair index` verifies it and adds it back, `cairn prune` removes it once every used blob in it has a verified copy elsewhere)"
                ));
            }
        }
    }
    if let Some(max_age) = opts.max_age_ns {
        let cutoff = opts.now_ns.saturating_sub(max_age);
        let overdue: Vec<&PackId> = pack_ids
            .iter()
            .filter(|p| state.get(&p.to_hex()).is_none_or(|t| *t < cutoff))
            .collect();
        r.packs_overdue = overdue.len() as u64;
        if !overdue.is_empty() {
            r.warnings.push(format!(
                "{} of {} packs were not verified within the maximum age (oldest first: {})",
                overdue.len(),
                pack_ids.len(),
                overdue
                    .iter()
                    .take(5)
                    .map(|p| p.short())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if let Some(path) = &opts.state_file {
        save_state(path, &state)?;
    }
    check_parity(repo, opts, &problem_packs, &mut r)?;

    // Every key file, not only the one that opened: a damaged spare is a lost password.
    let copies: HashMap<String, u64> = repo.list(FileKind::KeyCopy)?.into_iter().collect();
    for k in repo.list_keys()? {
        if let Some(e) = &k.error {
            r.errors.push(format!("key file {} is damaged: {e}", k.id));
        }
        let name = k.id.to_hex();
        let copy_ok = copies.contains_key(&name)
            && repo
                .backend()
                .get(FileKind::KeyCopy, &name)
                .is_ok_and(|b| hex::encode(content_hash(&b)) == name);
        if !copy_ok {
            r.errors.push(format!(
                "the copy of key file {name} (keys/{name}.copy) is missing or damaged"
            ));
        }
    }
    for name in copies.keys() {
        if !repo.list(FileKind::Key)?.iter().any(|(n, _)| n == name) {
            r.errors.push(format!(
                "key file {name} is missing (its copy keys/{name}.copy still opens the repository)"
            ));
        }
    }
    match repo.backend().get(FileKind::Config, crate::backend::CONFIG_NAME) {
        Ok(b) if b == repo.config_bytes() => {}
        _ => r.errors.push(
            "config is missing or damaged; the copy kept in the key files is intact: run `cairn repair config`".into(),
        ),
    }
    let snapshots = repo.snapshots()?;
    for w in repo.take_warnings() {
        r.errors.push(w);
    }
    let mut seen_trees = HashSet::new();
    for (id, snap) in &snapshots {
        r.snapshots += 1;
        if let Some(w) = future_dated(id, snap, opts.now_ns) {
            r.warnings.push(w);
        }
        let mut missing = Vec::new();
        walk_check(
            repo,
            snap.tree,
            Path::new("/"),
            &mut seen_trees,
            &mut missing,
            &mut r,
        );
        for m in missing {
            r.errors.push(format!("snapshot {}: {m}", id.short()));
        }
    }
    if !damaged.is_empty() || !r.ok() {
        r.affected = affected_files(repo, &snapshots, &damaged);
    }
    Ok(r)
}

/// A warning for a snapshot dated beyond `forget`'s tolerance after `now_ns`
/// ([`crate::policy::FUTURE_TOLERANCE_NS`]): `forget` counts it toward no rule; a wrong clock
/// made it, or someone forged it to make `forget` remove real snapshots.
fn future_dated(id: &SnapshotId, snap: &crate::snapshot::Snapshot, now_ns: i64) -> Option<String> {
    let ahead = i128::from(snap.time_ns) - i128::from(now_ns);
    if now_ns == 0 || ahead <= i128::from(crate::policy::FUTURE_TOLERANCE_NS) {
        return None;
    }
    let hours = ahead / (3_600 * 1_000_000_000);
    Some(format!(
        "snapshot {} is dated {} hours in the future: forget counts it toward no rule (a wrong clock, or a forged snapshot)",
        id.short(),
        hours
    ))
}

/// Every file (or directory whose tree is lost) in every snapshot that needs a damaged,
/// missing or unindexed blob.
pub(crate) fn affected_files(
    repo: &Repository,
    snapshots: &[(SnapshotId, crate::snapshot::Snapshot)],
    damaged: &HashMap<BlobId, String>,
) -> Vec<Affected> {
    fn walk(
        repo: &Repository,
        tree: TreeId,
        damaged: &HashMap<BlobId, String>,
        memo: &mut HashMap<TreeId, Vec<(PathBuf, String)>>,
    ) -> Vec<(PathBuf, String)> {
        if let Some(v) = memo.get(&tree) {
            return v.clone();
        }
        let mut out = Vec::new();
        let why = |id: &BlobId| -> Option<String> {
            if let Some(w) = damaged.get(id) {
                return Some(w.clone());
            }
            (!repo.index().contains(id)).then(|| format!("blob {} is in no index", id.short()))
        };
        match repo.read_tree(&tree) {
            Err(e) => out.push((
                PathBuf::new(),
                format!("directory contents unreadable: {e}"),
            )),
            Ok(t) => {
                for n in &t.nodes {
                    let name = PathBuf::from(std::ffi::OsStr::from_bytes(&n.name));
                    if let Some(w) = n.chunks().find_map(|c| why(&c)) {
                        out.push((name.clone(), w));
                    }
                    if let Some(sub) = n.subtree {
                        if let Some(w) = why(&sub.0) {
                            out.push((name.clone(), format!("directory listing damaged: {w}")));
                        }
                        for (p, w) in walk(repo, sub, damaged, memo) {
                            out.push((name.join(p), w));
                        }
                    }
                }
            }
        }
        memo.insert(tree, out.clone());
        out
    }
    let mut memo = HashMap::new();
    let mut lines = Vec::new();
    for (id, snap) in snapshots {
        for (p, why) in walk(repo, snap.tree, damaged, &mut memo) {
            lines.push(Affected {
                snapshot: *id,
                path: Path::new("/").join(p),
                why,
            });
        }
    }
    lines
}

fn walk_check(
    repo: &Repository,
    tree: TreeId,
    path: &Path,
    seen: &mut HashSet<TreeId>,
    missing: &mut Vec<String>,
    r: &mut CheckReport,
) {
    if !seen.insert(tree) {
        return;
    }
    r.trees += 1;
    let t = match repo.read_tree(&tree) {
        Ok(t) => t,
        Err(e) => {
            missing.push(format!(
                "directory {}: tree {} cannot be read: {e}",
                path.display(),
                tree.0.short()
            ));
            return;
        }
    };
    let unindexed = unindexed_chunks(repo, &t.nodes);
    for (i, n) in t.nodes.iter().enumerate() {
        let p = path.join(std::ffi::OsStr::from_bytes(&n.name));
        for c in unindexed.iter().filter(|(at, _)| *at == i).map(|(_, c)| c) {
            missing.push(format!(
                "file {} needs chunk {} which is in no index",
                p.display(),
                c.short()
            ));
        }
        if let Some(sub) = n.subtree {
            walk_check(repo, sub, &p, seen, missing, r);
        }
    }
}

/// The chunks of a tree's nodes that no index lists, as (node position, chunk) in order. Each
/// lookup reads a block of the index's runs, so a large tree's lookups are spread over the
/// cores.
fn unindexed_chunks(repo: &Repository, nodes: &[crate::tree::Node]) -> Vec<(usize, BlobId)> {
    let lookups: usize = nodes.iter().map(|n| n.chunks().count()).sum();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let missing_in = |part: &[crate::tree::Node], first: usize| -> Vec<(usize, BlobId)> {
        let mut out = Vec::new();
        for (i, n) in part.iter().enumerate() {
            out.extend(
                n.chunks()
                    .filter(|c| !repo.index().contains(c))
                    .map(|c| (first + i, c)),
            );
        }
        out
    };
    if threads < 2 || lookups < 4096 || nodes.len() < 2 {
        return missing_in(nodes, 0);
    }
    let per = nodes.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = nodes
            .chunks(per)
            .enumerate()
            .map(|(k, part)| scope.spawn(move || missing_in(part, k * per)))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// What is wrong with an indexed pack of `size` bytes that the listing of `data/` gives as
/// `listed` (None: not listed), if anything: missing, empty, or of another length.
pub(crate) fn pack_size_problem(name: &str, listed: Option<u64>, size: u64) -> Option<String> {
    match listed {
        None => Some(format!(
            "pack {name} is in the index but missing from data/"
        )),
        Some(0) => Some(format!("pack {name} is empty (zero-length)")),
        Some(actual) if actual != size => Some(format!(
            "pack {name} is {actual} bytes, the index says {size} (truncated or damaged)"
        )),
        Some(_) => None,
    }
}

/// Index entries per batch of packs `check` verifies at once: what it holds in memory.
const CHECK_BATCH: usize = 200_000;

/// The state of `check`'s pass over the packs, batch after batch.
struct PackRun<'a> {
    start: Instant,
    damaged: HashMap<BlobId, String>,
    problem_packs: HashSet<PackId>,
    listed: &'a HashMap<String, u64>,
    to_read: &'a HashSet<PackId>,
    opts: &'a CheckOptions,
}

impl PackRun<'_> {
    /// Checks a batch of packs with their index entries: size checks first (from the
    /// listing), then the packs are read and verified on every core and with `connections`
    /// reads in flight; results are merged in pack order.
    fn check_batch(
        &mut self,
        repo: &Repository,
        mut batch: Vec<(PackId, u64, Vec<PackEntry>)>,
        r: &mut CheckReport,
        state: &mut State,
    ) {
        batch.sort_by_key(|(id, _, _)| *id);
        let opts = self.opts;
        let mut jobs: Vec<(&PackId, u64, &[PackEntry], bool)> = Vec::new();
        for (pack, size, entries) in &batch {
            r.packs += 1;
            let name = pack.to_hex();
            if let Some(p) = pack_size_problem(&name, self.listed.get(&name).copied(), *size) {
                self.problem_packs.insert(*pack);
                for e in entries {
                    self.damaged.insert(
                        e.id,
                        format!("pack {} is missing or truncated", pack.short()),
                    );
                }
                r.errors.push(p);
                continue;
            }
            jobs.push((pack, *size, entries, self.to_read.contains(pack)));
        }
        // From a remote repository, `connections` reads stay in flight while the cores verify
        // what has arrived (each worker holds one pack).
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let backend = repo.backend();
        let workers = if backend.is_remote() {
            cores + backend.connections()
        } else {
            cores.max(backend.connections())
        }
        .min(jobs.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let outcomes: Vec<std::sync::Mutex<Option<PackOutcome>>> =
            jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
        let start = self.start;
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((pack, size, entries, wanted)) = jobs.get(i) else {
                        break;
                    };
                    let skipped = *wanted && opts.budget.is_some_and(|b| start.elapsed() >= b);
                    let read = *wanted && !skipped;
                    let mut pr = CheckReport::default();
                    let mut pd = HashMap::new();
                    check_pack(repo, pack, *size, entries, read, &mut pr, &mut pd);
                    *outcomes[i].lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((pr, pd, skipped));
                });
            }
        });
        for ((pack, size, _, wanted), outcome) in jobs.iter().zip(outcomes) {
            let Some((pr, pd, skipped)) = outcome.into_inner().unwrap_or_else(|p| p.into_inner())
            else {
                continue;
            };
            let read = *wanted && !skipped;
            if skipped {
                r.packs_skipped_budget += 1;
            }
            if read {
                r.packs_read += 1;
                r.bytes_read += size;
                if pr.errors.is_empty() {
                    state.insert(pack.to_hex(), opts.now_ns);
                }
            }
            r.blobs_read += pr.blobs_read;
            if !pr.errors.is_empty() {
                self.problem_packs.insert(**pack);
            }
            r.errors.extend(pr.errors);
            self.damaged.extend(pd);
        }
    }
}

/// One pack's findings: its report, the blobs it found damaged, and whether the budget ran out
/// before it could be read.
type PackOutcome = (CheckReport, HashMap<BlobId, String>, bool);

fn check_pack(
    repo: &Repository,
    pack: &PackId,
    size: u64,
    entries: &[PackEntry],
    read_data: bool,
    r: &mut CheckReport,
    damaged: &mut HashMap<BlobId, String>,
) {
    let name = pack.to_hex();
    let backend = repo.backend();
    let all_damaged = |why: &str, damaged: &mut HashMap<BlobId, String>| {
        for e in entries {
            damaged.insert(e.id, format!("pack {}: {why}", pack.short()));
        }
    };
    let header_entries = if read_data {
        // A range of the size the listing gave (and the index agreed on), not `get`: a
        // remote store then needs no request for the size first.
        let whole = || {
            let bound = FileKind::Pack.max_len();
            if size > bound {
                return Err(ObjectTooLarge::error(
                    FileKind::Pack,
                    &name,
                    bound,
                    Some(size),
                ));
            }
            backend.get_range(FileKind::Pack, &name, 0, size as usize)
        };
        let (bytes, unreadable) = match read_retry(whole)
            .map(|b| (b, None))
            .or_else(|e| read_around(repo, &name, size, e))
        {
            Ok(read) => read,
            Err(e) => {
                r.errors.push(format!("pack {name} cannot be read: {e}"));
                all_damaged("unreadable", damaged);
                return;
            }
        };
        if let Some(u) = &unreadable {
            r.errors.push(format!(
                "pack {name} cannot be read at {}: {}",
                describe_ranges(&u.ranges, size),
                u.error
            ));
        } else if hex::encode(content_hash(&bytes)) != name {
            r.errors.push(format!(
                "pack {name} is damaged: its content does not hash to its name"
            ));
        }
        let header = match pack::read_pack(repo.keys(), &bytes) {
            Ok(h) => h,
            Err(e) => {
                r.errors.push(format!("pack {name}: {e}"));
                all_damaged(
                    if unreadable.is_some() {
                        "unreadable"
                    } else {
                        "header damaged"
                    },
                    damaged,
                );
                return;
            }
        };
        for e in &header {
            r.blobs_read += 1;
            if let Some(u) = &unreadable {
                if u.overlapping(e.offset as u64, e.length as u64).is_some() {
                    r.errors.push(format!(
                        "pack {name}: {} blob {} lies on bytes that cannot be read",
                        e.kind.name(),
                        e.id.short()
                    ));
                    damaged.insert(e.id, format!("pack {}: unreadable", pack.short()));
                    continue;
                }
            }
            let range = e.offset as usize..(e.offset as usize + e.length as usize);
            if let Err(why) = pack::open_blob(repo.keys(), e, &bytes[range]) {
                r.errors.push(format!(
                    "pack {name}: {} blob {} is damaged: {why}",
                    e.kind.name(),
                    e.id.short()
                ));
                damaged.insert(e.id, format!("pack {}: blob damaged", pack.short()));
            }
        }
        header
    } else {
        match read_header(repo, &name, size) {
            Ok(h) => h,
            Err(e) => {
                r.errors.push(format!("pack {name}: {e}"));
                all_damaged("header damaged", damaged);
                return;
            }
        }
    };
    let mut want: Vec<(BlobId, u32, u32)> =
        entries.iter().map(|e| (e.id, e.offset, e.length)).collect();
    let mut have: Vec<(BlobId, u32, u32)> = header_entries
        .iter()
        .map(|e| (e.id, e.offset, e.length))
        .collect();
    want.sort();
    have.sort();
    if want != have {
        r.errors.push(format!(
            "pack {name}: its header lists {} blobs, the index {} — they disagree (`cairn repair index` rebuilds the index from pack headers)",
            have.len(),
            want.len()
        ));
    }
}

/// Reads a pack's header with two ranged reads (trailer, then header).
pub fn read_header(repo: &Repository, name: &str, size: u64) -> Result<Vec<PackEntry>, String> {
    let backend = repo.backend();
    if size < TRAILER_LEN as u64 {
        return Err("shorter than its trailer".into());
    }
    let trailer = read_retry(|| {
        backend.get_range(FileKind::Pack, name, size - TRAILER_LEN as u64, TRAILER_LEN)
    })
    .map_err(|e| e.to_string())?;
    let hl = pack::header_len_from_trailer(&trailer, size)?;
    let start = size - (TRAILER_LEN + hl) as u64;
    let header = read_retry(|| backend.get_range(FileKind::Pack, name, start, hl))
        .map_err(|e| e.to_string())?;
    pack::parse_header(repo.keys(), &header, size)
}

/// What reading a whole pack showed: whether its bytes hash to its name (repo-format.md §3.2),
/// its header, and which blobs open (decrypt, and hash to their id: §6.2).
#[derive(Clone, Debug)]
pub struct PackVerdict {
    /// The pack's bytes hash to its name.
    pub hash_ok: bool,
    /// What its bytes hash to, when that is not its name.
    pub actual: Option<String>,
    /// Its header, if it opens and is consistent.
    pub header: Result<Vec<PackEntry>, String>,
    /// Entries whose blobs open.
    pub good: Vec<PackEntry>,
    /// Entries whose blobs do not, with why.
    pub bad: Vec<(PackEntry, String)>,
}

impl PackVerdict {
    /// Verified: the bytes hash to the name, the header opens and every blob in it opens.
    pub fn verified(&self) -> bool {
        self.hash_ok && self.header.is_ok() && self.bad.is_empty()
    }

    /// Why the pack is not verified, in one sentence (empty when it is).
    pub fn why(&self) -> String {
        let mut parts = Vec::new();
        if let Some(actual) = &self.actual {
            parts.push(format!(
                "its content does not hash to its name (it hashes to {actual})"
            ));
        }
        if let Err(e) = &self.header {
            parts.push(format!("its header cannot be read ({e})"));
        }
        if let Some((e, why)) = self.bad.first() {
            parts.push(format!(
                "{} of its blobs do not open (first: {} blob {}: {why})",
                self.bad.len(),
                e.kind.name(),
                e.id.short()
            ));
        }
        parts.join("; ")
    }
}

/// Verifies a pack held in memory: its hash against `name`, its header, and the blobs of
/// `entries` (or of its header when None; of `fallback` when the header does not open).
pub fn verify_pack_bytes(
    keys: &crate::crypto::MasterKeys,
    name: &str,
    bytes: &[u8],
    entries: Option<&[PackEntry]>,
    fallback: &[PackEntry],
) -> PackVerdict {
    let actual = hex::encode(content_hash(bytes));
    let hash_ok = actual == name;
    let header = pack::read_pack(keys, bytes);
    let check: Vec<PackEntry> = match (entries, &header) {
        (Some(e), _) => e.to_vec(),
        (None, Ok(h)) => h.clone(),
        (None, Err(_)) => fallback.to_vec(),
    };
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for e in check {
        let end = e.offset as usize + e.length as usize;
        match bytes.get(e.offset as usize..end) {
            None => bad.push((
                e,
                format!("it lies past the end of the pack ({} bytes)", bytes.len()),
            )),
            Some(sealed) => match pack::open_blob(keys, &e, sealed) {
                Ok(_) => good.push(e),
                Err(why) => bad.push((e, why)),
            },
        }
    }
    PackVerdict {
        hash_ok,
        actual: (!hash_ok).then_some(actual),
        header,
        good,
        bad,
    }
}

/// Runs `f` over `items` on up to `workers` threads; results in item order.
pub(crate) fn par_map<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let workers = workers.clamp(1, items.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = items.get(i) else {
                    break;
                };
                let r = f(item);
                *out[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            });
        }
    });
    out.into_iter()
        .filter_map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect()
}

/// Threads worth running to read and verify packs: every core, and at least as many as the
/// backend keeps transfers in flight.
pub(crate) fn pack_workers(repo: &Repository) -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(repo.backend().connections())
}

/// A pack whose whole read failed with a read error ([`is_read_error`]), read around its
/// unreadable byte ranges: its bytes (zeros there) and those ranges, so that the blobs elsewhere
/// are verified as usual. Any other error is returned as it is.
fn read_around(
    repo: &Repository,
    name: &str,
    size: u64,
    e: std::io::Error,
) -> std::io::Result<(Vec<u8>, Option<Unreadable>)> {
    if !is_read_error(&e) {
        return Err(e);
    }
    Ok(
        match read_around_errors(repo.backend().as_ref(), FileKind::Pack, name, size)? {
            Ok(bytes) => (bytes, None),
            Err(mut u) => (std::mem::take(&mut u.bytes), Some(u)),
        },
    )
}

/// `bytes 4096..8192, 1048576..1052672` (or `all of its N bytes`).
fn describe_ranges(ranges: &[std::ops::Range<u64>], size: u64) -> String {
    if let [r] = ranges {
        if r.start == 0 && r.end >= size {
            return format!("all of its {size} bytes");
        }
    }
    let shown: Vec<String> = ranges
        .iter()
        .take(8)
        .map(|r| format!("{}..{}", r.start, r.end))
        .collect();
    let more = ranges.len().saturating_sub(shown.len());
    format!(
        "bytes {}{}",
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more ranges")
        } else {
            String::new()
        }
    )
}

/// A failed read is retried once before it counts (a flaky cable is not a corrupt pack).
fn read_retry<T>(mut f: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    f().or_else(|_| f())
}

/// Parity (repo-format.md §14): parity files are verified like packs with `--read-data`, each
/// damaged pack is judged healable or not, and packs in no group are a warning when the config
/// asks for parity.
fn check_parity(
    repo: &Repository,
    opts: &CheckOptions,
    problem_packs: &HashSet<PackId>,
    r: &mut CheckReport,
) -> Result<()> {
    let layout = crate::parity::Layout::scan(repo)?;
    r.parity_files = layout.parity_files as u64;
    let mut bad_parity: HashSet<String> = HashSet::new();
    for (name, why) in &layout.unreadable {
        r.errors.push(format!("parity file {name}: {why}"));
        bad_parity.insert(name.clone());
    }
    if opts.read_data == ReadData::All {
        r.parity_files_read = layout.parity_files as u64;
        for (name, why) in crate::parity::verify_parity_files(repo)? {
            if bad_parity.insert(name.clone()) {
                r.errors
                    .push(format!("parity file {name} is damaged: {why}"));
            }
        }
    }
    for g in &layout.groups {
        let missing = g.files.iter().filter(|f| f.is_none()).count();
        if missing > 0 {
            r.errors.push(format!(
                "a parity group of {} packs (first {}) lacks {missing} of its {} parity files (`cairn repair parity` recomputes them)",
                g.header.members.len(),
                g.header.members[0].id.short(),
                g.header.parity()
            ));
        }
    }
    let assessed = crate::parity::assess(&layout, problem_packs, &bad_parity);
    let mut packs: Vec<&PackId> = problem_packs.iter().collect();
    packs.sort();
    for id in packs {
        let (healable, note) = match assessed.get(id) {
            Some(crate::parity::Healable::Parity) => (Some("parity"), None),
            Some(crate::parity::Healable::No(w)) => (None, Some(w.clone())),
            None => (None, None),
        };
        r.pack_problems.push(PackProblem {
            path: FileKind::Pack.path(&id.to_hex()),
            healable,
            note,
        });
    }
    let mut bad: Vec<&String> = bad_parity.iter().collect();
    bad.sort();
    for name in bad {
        r.pack_problems.push(PackProblem {
            path: FileKind::Parity.path(name),
            healable: Some("parity"),
            note: None,
        });
    }
    if !problem_packs.is_empty() && (layout.parity_files > 0 || repo.config().parity.is_some()) {
        let healable = r
            .pack_problems
            .iter()
            .filter(|p| p.healable.is_some() && p.path.starts_with("data/"))
            .count();
        r.warnings.push(format!(
            "{healable} of the {} damaged or missing packs can be rebuilt from parity (`cairn repair packs`)",
            problem_packs.len()
        ));
    }
    if repo.config().parity.is_some() {
        let n = crate::parity::unprotected_count(&layout);
        if n > 0 {
            r.warnings.push(format!(
                "{n} packs are not protected by parity yet (`cairn repair parity` protects them)"
            ));
        }
    }
    Ok(())
}

/// Every file, in every snapshot, that needs a blob stored in one of `packs` (with why): what
/// damage that cannot be healed costs.
pub fn affected_by_packs(repo: &Repository, packs: &[(PackId, String)]) -> Result<Vec<Affected>> {
    let by_pack = repo.entries_by_pack()?;
    let mut damaged = HashMap::new();
    for (p, why) in packs {
        if let Some((_, entries)) = by_pack.get(p) {
            for e in entries {
                damaged.insert(e.id, format!("pack {}: {why}", p.short()));
            }
        }
    }
    if damaged.is_empty() {
        return Ok(Vec::new());
    }
    let snapshots = repo.snapshots()?;
    Ok(affected_files(repo, &snapshots, &damaged))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u8) -> Vec<PackId> {
        (0..n).map(|i| PackId([i; 32])).collect()
    }

    #[test]
    fn percent_subsets_take_the_least_recently_verified_first() {
        let all = ids(10);
        let mut state = State::new();
        for (i, p) in all.iter().enumerate().take(6) {
            state.insert(p.to_hex(), 100 + i as i64);
        }
        let pick = select_packs(&all, ReadData::Percent(50.0), &state);
        // never verified (6..10) first, then the oldest verified (0).
        assert_eq!(pick, vec![all[6], all[7], all[8], all[9], all[0]]);
    }

    #[test]
    fn slices_partition_the_packs() {
        let all: Vec<PackId> = (0..=255u8).map(|i| PackId([i; 32])).collect();
        let mut seen = HashSet::new();
        for n in 1..=3 {
            for p in select_packs(&all, ReadData::Slice(n, 3), &State::new()) {
                assert!(seen.insert(p), "a pack in two slices");
            }
        }
        assert_eq!(seen.len(), all.len());
    }

    #[test]
    fn read_data_subset_parses() {
        assert_eq!("10%".parse(), Ok(ReadData::Percent(10.0)));
        assert_eq!("2/5".parse(), Ok(ReadData::Slice(2, 5)));
        assert!("0%".parse::<ReadData>().is_err());
        assert!("6/5".parse::<ReadData>().is_err());
        assert!("x".parse::<ReadData>().is_err());
    }

    #[test]
    fn last_verified_is_the_newest_pack_record_and_none_without_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(STATE_FILE);
        assert_eq!(last_verified(&path), None, "no file");
        let mut state = State::new();
        assert!(save_state(&path, &state).is_ok());
        assert_eq!(last_verified(&path), None, "no pack verified yet");
        state.insert("aa".into(), 30);
        state.insert("bb".into(), 70);
        state.insert("cc".into(), 50);
        assert!(save_state(&path, &state).is_ok());
        assert_eq!(last_verified(&path), Some(70));
        std::fs::write(&path, b"not json").expect("write");
        assert_eq!(last_verified(&path), None, "a damaged record");
    }
}

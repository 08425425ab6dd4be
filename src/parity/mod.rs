//! Parity across packs (repo-format.md §14): groups of G packs protected by P Reed-Solomon
//! parity files in `parity/`, striped by 4 KiB rows, with a hash per sector to locate damage.
//! This module owns protecting packs (after `backup`, `prune`, `copy` and `repair`), keeping
//! groups whole (`repair parity`), judging what parity can heal (`check`) and healing
//! (`repair packs`).
//!
//! Invariants: parity is written only after its packs are durable (after the index too, except
//! for the full groups a backup streams as it writes) and is never part of the commit order
//! (§10.2): a crash before it leaves packs unprotected, never wrong. A rebuilt pack
//! is stored only when its bytes hash to its name, so a wrong parity file can never make a pack
//! wrong. A group's old parity files are deleted only after the files that replace them are
//! durable, and only when every surviving member of the old group is in a new one.
//!
//! - `format.rs`: the parity file byte by byte;
//! - `code.rs`: the Reed-Solomon code, slice by slice;
//! - `group.rs`: one group against storage: writing its parity, rebuilding its packs;
//! - `stream.rs`: full groups computed while a backup writes its packs, without reading back.

mod code;
pub mod format;
mod group;
mod stream;

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::backend::FileKind;
use crate::error::{Error, Result};
use crate::id::PackId;
use crate::repo::{backend_err, Repository};

pub use format::ParityHeader;
pub use stream::Streaming;

/// Smallest and largest percentage `--parity` takes.
pub const PERCENT_RANGE: std::ops::RangeInclusive<u32> = 1..=50;
/// The default for new local repositories (README "Parity" says how it was chosen).
pub const DEFAULT_PERCENT: u32 = 10;
/// Packs per full group from 5 % up (repo-format.md §14.3).
pub const GROUP_PACKS: usize = 20;

/// G data packs and P parity files per group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// G: packs per full group.
    pub data: usize,
    /// P: parity files per group; any P lost columns of a row are healed.
    pub parity: usize,
}

impl Shape {
    /// The group shape for `percent` (repo-format.md §14.3): from 5 % up, G = 20 and
    /// P = round(20 × N / 100) (10 % → 20 + 2); below 5 %, P = 1 and G = round(100 / N)
    /// (1 % → 100 + 1), so the cost stays the percentage asked for.
    pub fn for_percent(percent: u32) -> Result<Shape> {
        if !PERCENT_RANGE.contains(&percent) {
            return Err(Error::InvalidInput(format!(
                "parity {percent}% is out of range: give 1% to 50%, or off"
            )));
        }
        Ok(if percent >= 5 {
            Shape {
                data: GROUP_PACKS,
                parity: ((GROUP_PACKS as u32 * percent + 50) / 100) as usize,
            }
        } else {
            Shape {
                data: ((100 + percent / 2) / percent) as usize,
                parity: 1,
            }
        })
    }
}

impl Shape {
    /// How `n` packs are split into groups: one group when `n <= G`, else as many groups as
    /// G fits into `n` (each of G to 2G - 1 packs, at most [`format::MAX_DATA`]), sizes
    /// differing by at most one. So only a run of fewer than G packs makes a group costing
    /// more than P / G.
    pub fn split(&self, n: usize) -> Vec<usize> {
        if n == 0 {
            return Vec::new();
        }
        let g = self.data.max(1);
        let k = if n <= g {
            1
        } else {
            (n / g).max(n.div_ceil(format::MAX_DATA))
        };
        (0..k).map(|i| n / k + usize::from(i < n % k)).collect()
    }

    /// P for a group of `n` packs: P for a full group, and for a smaller one (the last of a
    /// run) P scaled to its size, at least 1, so its cost stays near the percentage; it gets
    /// the full P when it is merged with later packs.
    pub fn parity_for(&self, n: usize) -> usize {
        if n >= self.data {
            self.parity
        } else {
            ((self.parity * n + self.data / 2) / self.data.max(1)).max(1)
        }
    }
}

/// Parses `N%` or `off` (`init --parity`, `repair parity --parity`): Some(N) or None.
pub fn parse_percent(s: &str) -> std::result::Result<Option<u32>, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let n: u32 = s
        .strip_suffix('%')
        .unwrap_or(s)
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is neither N% nor off"))?;
    if !PERCENT_RANGE.contains(&n) {
        return Err(format!(
            "parity {n}% is out of range: give 1% to 50%, or off"
        ));
    }
    Ok(Some(n))
}

/// One group as found in `parity/`: its description and which file holds each shard.
#[derive(Clone, Debug)]
pub struct Group {
    /// The group's description (from any one of its files).
    pub header: ParityHeader,
    /// For each shard `j < P`, the parity file that holds it (None: lost or unreadable).
    pub files: Vec<Option<String>>,
    /// Further files holding a shard already found (left by an interrupted rewrite).
    pub duplicates: Vec<String>,
}

/// What `parity/` and `data/` hold.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// Every stored pack and its size.
    pub packs: BTreeMap<PackId, u64>,
    /// Every group some readable parity file describes.
    pub groups: Vec<Group>,
    /// Parity files whose header cannot be read: name and why.
    pub unreadable: Vec<(String, String)>,
    /// How many parity files are stored.
    pub parity_files: usize,
}

impl Layout {
    /// Reads the listing of `data/` and `parity/` and every parity file's header (two small
    /// ranged reads each).
    pub fn scan(repo: &Repository) -> Result<Layout> {
        let mut l = Layout::default();
        for (name, size) in repo.list(FileKind::Pack)? {
            if let Some(id) = PackId::from_hex(&name) {
                l.packs.insert(id, size);
            }
        }
        let files = repo.list(FileKind::Parity)?;
        l.parity_files = files.len();
        for (name, size) in files {
            let h = match group::read_header(repo.backend().as_ref(), repo, &name, size) {
                Ok(h) => h,
                Err(e) => {
                    l.unreadable.push((name, e.to_string()));
                    continue;
                }
            };
            let j = h.index as usize;
            match l.groups.iter_mut().find(|g| g.header.same_group(&h)) {
                Some(g) if g.files[j].is_none() => g.files[j] = Some(name),
                Some(g) => g.duplicates.push(name),
                None => {
                    let mut files = vec![None; h.parity()];
                    files[j] = Some(name);
                    l.groups.push(Group {
                        header: h,
                        files,
                        duplicates: Vec::new(),
                    });
                }
            }
        }
        Ok(l)
    }

    /// Every pack some group holds.
    pub fn protected(&self) -> HashSet<PackId> {
        self.groups
            .iter()
            .flat_map(|g| g.header.members.iter().map(|m| m.id))
            .collect()
    }

    /// Stored packs (non-empty) in no group.
    pub fn unprotected(&self) -> Vec<PackId> {
        let p = self.protected();
        self.packs
            .iter()
            .filter(|(id, size)| **size > 0 && !p.contains(id))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// What protecting packs did.
#[derive(Clone, Debug, Default)]
pub struct ProtectReport {
    /// Groups written.
    pub groups_written: usize,
    /// Parity files written.
    pub files_written: usize,
    /// Bytes of parity files written.
    pub bytes_written: u64,
    /// Packs now in a new group.
    pub packs_protected: usize,
    /// Bytes of packs read back.
    pub bytes_read: u64,
    /// Old parity files deleted (replaced, or of groups left with no members).
    pub files_deleted: usize,
    /// Packs left unprotected: their bytes cannot be read or do not hash to their name.
    pub failed: Vec<(PackId, String)>,
}

/// Puts every pack that is in no parity group into one (the last group may be smaller; an
/// earlier smaller group is merged with new packs), and recomputes groups that lost members
/// to `prune` (gone from `data/` and from the index). With `verify`, also recomputes groups
/// whose parity files are missing or do not hash to their names, and deletes parity files
/// nothing can use (`repair parity`). Needs the index loaded.
pub fn protect(repo: &Repository, shape: Shape, verify: bool) -> Result<ProtectReport> {
    let mut r = ProtectReport::default();
    let layout = Layout::scan(repo)?;
    let indexed: HashSet<PackId> = repo.index().packs().iter().map(|(id, _)| *id).collect();
    let stored = |id: &PackId| layout.packs.get(id).is_some_and(|s| *s > 0);
    // Groups to replace: (group, its surviving members).
    let mut replace: Vec<(usize, Vec<PackId>)> = Vec::new();
    let mut delete_now: Vec<String> = Vec::new();
    let parity_sizes: HashMap<String, u64> = if verify {
        repo.list(FileKind::Parity)?.into_iter().collect()
    } else {
        HashMap::new()
    };
    for (gi, g) in layout.groups.iter().enumerate() {
        let ids = g.header.member_ids();
        // Gone from data/ and from the index: pruned on purpose (a lost pack stays indexed).
        let survivors: Vec<PackId> = ids
            .iter()
            .copied()
            .filter(|id| stored(id) || indexed.contains(id))
            .collect();
        if survivors.is_empty() {
            delete_now.extend(g.files.iter().flatten().cloned());
            delete_now.extend(g.duplicates.iter().cloned());
            continue;
        }
        let mut redo = survivors.len() < ids.len();
        if verify {
            redo |= g.files.iter().any(Option::is_none);
            for name in g.files.iter().flatten() {
                let size = parity_sizes.get(name).copied().unwrap_or(0);
                if group::verify_file(repo.backend().as_ref(), FileKind::Parity, name, size)
                    .is_err()
                {
                    redo = true;
                }
            }
            delete_now.extend(g.duplicates.iter().cloned());
        }
        if redo {
            replace.push((gi, survivors));
        }
    }
    let unprotected = layout.unprotected();
    let mut pool: Vec<PackId> = unprotected;
    for (_, s) in &replace {
        pool.extend(s.iter().copied().filter(|id| stored(id)));
    }
    if !pool.is_empty() {
        // Merge smaller groups with the new packs, so growth stays near P / G.
        for (gi, g) in layout.groups.iter().enumerate() {
            let ids = g.header.member_ids();
            if ids.len() < shape.data
                && !replace.iter().any(|(i, _)| *i == gi)
                && ids.iter().all(&stored)
                && g.files.iter().all(Option::is_some)
            {
                pool.extend(ids.iter().copied());
                replace.push((gi, ids));
            }
        }
    }
    pool.sort();
    pool.dedup();
    let mut pool: Vec<(PackId, u64)> = pool.into_iter().map(|id| (id, layout.packs[&id])).collect();
    // Packs of like size share a group: less padding to the longest.
    pool.sort_by_key(|(id, len)| (*len, *id));
    let mut grouped: HashSet<PackId> = HashSet::new();
    let mut rest: &[(PackId, u64)] = &pool;
    for size in shape.split(pool.len()) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let mut members: Vec<(PackId, u64)> = chunk.to_vec();
        members.sort();
        loop {
            if members.is_empty() {
                break;
            }
            match group::write_group(repo, &members, shape.parity_for(members.len()), verify)? {
                Ok(names) => {
                    r.groups_written += 1;
                    r.files_written += names.len();
                    let l = format::shard_len_for(members.iter().map(|m| m.1).max().unwrap_or(0));
                    r.bytes_written += names.len() as u64 * l;
                    r.bytes_read += members.iter().map(|m| m.1).sum::<u64>();
                    r.packs_protected += members.len();
                    grouped.extend(members.iter().map(|m| m.0));
                    break;
                }
                Err(bad) => {
                    for b in bad {
                        members.retain(|m| m.0 != b.id);
                        r.failed.push((b.id, b.why));
                    }
                }
            }
        }
    }
    // Old files go only once every surviving member of their group is in a new one.
    for (gi, survivors) in &replace {
        if survivors.iter().all(|id| grouped.contains(id)) {
            let g = &layout.groups[*gi];
            delete_now.extend(g.files.iter().flatten().cloned());
            delete_now.extend(g.duplicates.iter().cloned());
        }
    }
    if verify {
        // Files no group can use: their header is unreadable, and every group they could
        // belong to is whole (or was just rewritten).
        let all_whole = layout.groups.iter().enumerate().all(|(gi, g)| {
            g.files.iter().all(Option::is_some)
                || replace
                    .iter()
                    .any(|(i, s)| *i == gi && s.iter().all(|id| grouped.contains(id)))
        });
        if all_whole {
            delete_now.extend(layout.unreadable.iter().map(|(n, _)| n.clone()));
        }
    }
    delete_now.sort();
    delete_now.dedup();
    for name in delete_now {
        repo.backend()
            .delete(FileKind::Parity, &name)
            .map_err(backend_err(FileKind::Parity, &name))?;
        r.files_deleted += 1;
    }
    Ok(r)
}

/// Whether a damaged or missing pack can be healed, and by what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Healable {
    /// Its parity group has enough intact columns (judged file by file; sector damage spread
    /// over more files can still be healed row by row).
    Parity,
    /// Not by parity: why.
    No(String),
}

/// Judges, for each damaged pack, whether parity can heal it: its group's damaged packs plus
/// its missing or damaged parity files are at most P. `bad_parity`: parity files known to be
/// damaged (by a `--read-data` check).
pub fn assess(
    layout: &Layout,
    damaged: &HashSet<PackId>,
    bad_parity: &HashSet<String>,
) -> HashMap<PackId, Healable> {
    let mut out = HashMap::new();
    for id in damaged {
        let mut best: Option<Healable> = None;
        for g in &layout.groups {
            if !g.header.members.iter().any(|m| m.id == *id) {
                continue;
            }
            let lost_data = g
                .header
                .members
                .iter()
                .filter(|m| damaged.contains(&m.id))
                .count();
            let lost_parity = g
                .files
                .iter()
                .filter(|f| f.as_ref().is_none_or(|n| bad_parity.contains(n)))
                .count();
            let p = g.header.parity();
            if lost_data + lost_parity <= p {
                best = Some(Healable::Parity);
                break;
            }
            best = Some(Healable::No(format!(
                "its parity group has {p} parity files, and {lost_data} of its packs and {lost_parity} of its parity files are damaged or missing"
            )));
        }
        out.insert(
            *id,
            best.unwrap_or_else(|| Healable::No("it is in no parity group".into())),
        );
    }
    out
}

/// What healing packs did.
#[derive(Clone, Debug, Default)]
pub struct HealReport {
    /// Packs read and verified.
    pub packs_checked: usize,
    /// Bytes read to verify packs.
    pub bytes_checked: u64,
    /// Packs rebuilt byte-identically and stored.
    pub healed: Vec<PackId>,
    /// Bytes of the packs healed.
    pub bytes_healed: u64,
    /// Damaged or missing packs left as they are: why.
    pub unhealable: Vec<(PackId, String)>,
}

/// Verifies every stored and indexed pack (its bytes hash to its name) and rebuilds from
/// parity each one that is damaged or missing and can be rebuilt; a rebuilt pack is stored
/// (temporary name, fsync, rename) only when its bytes hash to its name. A pack that cannot be
/// rebuilt is never deleted or overwritten. Needs the index loaded.
pub fn heal(repo: &Repository) -> Result<HealReport> {
    let mut r = HealReport::default();
    let layout = Layout::scan(repo)?;
    let backend = repo.backend().as_ref();
    let mut all: BTreeMap<PackId, Option<u64>> =
        layout.packs.iter().map(|(id, s)| (*id, Some(*s))).collect();
    for (id, _) in repo.index().packs() {
        all.entry(*id).or_insert(None);
    }
    let expected: HashMap<PackId, u64> = layout
        .groups
        .iter()
        .flat_map(|g| g.header.members.iter().map(|m| (m.id, m.len)))
        .collect();
    let mut damaged: BTreeMap<PackId, String> = BTreeMap::new();
    for (id, size) in &all {
        let name = id.to_hex();
        let why = match size {
            None => Some("it is missing from data/".to_string()),
            Some(0) => Some("it is empty (zero-length)".to_string()),
            Some(s) if expected.get(id).is_some_and(|e| e != s) => Some(format!(
                "it is {s} bytes, {} when it was written (truncated or damaged)",
                expected[id]
            )),
            Some(s) => {
                r.packs_checked += 1;
                r.bytes_checked += s;
                group::verify_file(backend, FileKind::Pack, &name, *s).err()
            }
        };
        if let Some(w) = why {
            damaged.insert(*id, w);
        }
    }
    let mut done: HashSet<PackId> = HashSet::new();
    let mut reasons: HashMap<PackId, String> = HashMap::new();
    for g in &layout.groups {
        let targets: Vec<usize> = g
            .header
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| damaged.contains_key(&m.id) && !done.contains(&m.id))
            .map(|(i, _)| i)
            .collect();
        if targets.is_empty() {
            continue;
        }
        for (t, outcome) in group::rebuild(backend, &g.header, &g.files, &targets)? {
            let id = g.header.members[t].id;
            let bytes = match outcome {
                group::Rebuilt::Bytes(b) => b,
                group::Rebuilt::Unhealable(w) => {
                    reasons.entry(id).or_insert(w);
                    continue;
                }
            };
            let name = id.to_hex();
            // Not `put`: a damaged file of the same length would make it a no-op.
            backend
                .replace(FileKind::Pack, &name, &bytes)
                .map_err(backend_err(FileKind::Pack, &name))?;
            // Re-verified as stored.
            match group::verify_file(backend, FileKind::Pack, &name, bytes.len() as u64) {
                Ok(()) => {
                    r.bytes_healed += bytes.len() as u64;
                    r.healed.push(id);
                    done.insert(id);
                }
                Err(why) => {
                    return Err(Error::corrupt(
                        FileKind::Pack.path(&name),
                        format!("rebuilt from parity and written, but reading it back: {why}"),
                    ))
                }
            }
        }
    }
    // What is still damaged, with the best reason found.
    let assessed = assess(&layout, &damaged.keys().copied().collect(), &HashSet::new());
    for (id, why) in damaged {
        if done.contains(&id) {
            continue;
        }
        let reason = match (reasons.get(&id), assessed.get(&id)) {
            (Some(w), _) => format!("{why}; {w}"),
            (None, Some(Healable::No(w))) => format!("{why}; {w}"),
            (None, _) => format!("{why}; parity could not rebuild it"),
        };
        r.unhealable.push((id, reason));
    }
    Ok(r)
}

/// How many stored packs are in no parity group (for `check`'s warning).
pub fn unprotected_count(layout: &Layout) -> usize {
    layout.unprotected().len()
}

/// Verifies each parity file's bytes against its name (`check --read-data`): the names of
/// those that fail, with why.
pub fn verify_parity_files(repo: &Repository) -> Result<Vec<(String, String)>> {
    let mut bad = Vec::new();
    for (name, size) in repo.list(FileKind::Parity)? {
        if let Err(why) = group::verify_file(repo.backend().as_ref(), FileKind::Parity, &name, size)
        {
            bad.push((name, why));
        }
    }
    Ok(bad)
}

/// The hook at the end of `backup`, `prune`, `copy` and `repair`: when the config asks for
/// parity, protects the packs in no group (see [`protect`]). Never fails the command that
/// wrote the packs: its data is already committed. What went wrong becomes a warning on the
/// repository (a pack read back that does not hash to its name among them), and the next run
/// or `cairn repair parity` protects what was left. Needs the index loaded.
pub fn after_write(repo: &Repository) -> Option<ProtectReport> {
    let shape = match repo.parity_shape() {
        Ok(Some(s)) => s,
        Ok(None) => return None,
        Err(e) => {
            repo.warn(format!("parity is not maintained: {e}"));
            return None;
        }
    };
    match protect(repo, shape, false) {
        Ok(r) => {
            for (id, why) in &r.failed {
                repo.warn(format!(
                    "pack {} read back for parity: {why}; it is not protected (`cairn check --read-data` examines it)",
                    id.to_hex()
                ));
            }
            Some(r)
        }
        Err(e) => {
            repo.warn(format!(
                "the new packs are not protected by parity yet ({e}); `cairn repair parity` protects them"
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_map_to_groups_that_cost_that_share() {
        let s = |n| Shape::for_percent(n).expect("test");
        assert_eq!(
            s(10),
            Shape {
                data: 20,
                parity: 2
            }
        );
        assert_eq!(
            s(5),
            Shape {
                data: 20,
                parity: 1
            }
        );
        assert_eq!(
            s(50),
            Shape {
                data: 20,
                parity: 10
            }
        );
        assert_eq!(
            s(1),
            Shape {
                data: 100,
                parity: 1
            }
        );
        assert_eq!(
            s(3),
            Shape {
                data: 33,
                parity: 1
            }
        );
        for bad in [0, 51, 100] {
            assert!(Shape::for_percent(bad).is_err());
        }
        for (text, want) in [
            ("10%", Some(10)),
            ("off", None),
            ("OFF", None),
            ("7", Some(7)),
        ] {
            assert_eq!(parse_percent(text), Ok(want));
        }
        for bad in ["0%", "51%", "x", "-1%", "10%%", ""] {
            assert!(parse_percent(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn packs_split_into_groups_of_g_to_2g_minus_1_and_small_groups_get_scaled_parity() {
        let ten = Shape::for_percent(10).expect("test");
        assert_eq!(ten.split(0), Vec::<usize>::new());
        assert_eq!(ten.split(7), vec![7]);
        assert_eq!(ten.split(20), vec![20]);
        assert_eq!(ten.split(39), vec![39]);
        assert_eq!(ten.split(41), vec![21, 20]);
        for n in 1..500 {
            let parts = ten.split(n);
            assert_eq!(parts.iter().sum::<usize>(), n);
            assert!(parts.iter().all(|p| *p <= format::MAX_DATA));
            if n >= 20 {
                assert!(parts.iter().all(|p| (20..40).contains(p)), "{n}: {parts:?}");
            }
        }
        let one = Shape::for_percent(1).expect("test");
        assert!(one.split(199).iter().all(|p| *p <= format::MAX_DATA));
        assert_eq!(ten.parity_for(20), 2);
        assert_eq!(ten.parity_for(16), 2);
        assert_eq!(ten.parity_for(7), 1);
        assert_eq!(ten.parity_for(1), 1);
    }
}

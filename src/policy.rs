//! The `forget` retention policy: which snapshots of a group to keep. Pure: no I/O, no clock
//! (the caller passes "now").
//!
//! The rules and their evaluation follow restic's `ApplyPolicy`
//! (`internal/restic/snapshot_policy.go`, restic ≥ 0.16 plus the later "oldest" reason):
//!
//! * The group is sorted newest first. Snapshots with equal times are ordered by id (restic keeps
//!   the order it loaded them in, which is arbitrary), so the result never depends on the order
//!   of the input.
//! * Each count rule (`last`, `hourly`, `daily`, `weekly`, `monthly`, `yearly`) walks the list
//!   once, newest to oldest, remembering the bucket value of the last snapshot it kept. While its
//!   count is not used up, it keeps a snapshot whose bucket value differs from that remembered
//!   value, and uses up one count. `last` gives every snapshot a bucket of its own. The bucket of
//!   a snapshot is taken from its local time at its recorded offset (`time_ns + tz_offset_s`),
//!   as restic uses the time zone stored in the snapshot: hour `YYYYMMDDHH`, day `YYYYMMDD`,
//!   ISO 8601 week `YYYYWW` (ISO week-numbering year), month `YYYYMM`, calendar year `YYYY`.
//!   Only the previously kept value is compared, so with mixed offsets a day can come round again
//!   and be kept twice, exactly as in restic.
//! * The oldest snapshot of the group is also kept by every count rule that has counts left when
//!   it gets there (restic PR #4366); if its bucket value equals the rule's remembered value the
//!   reason reads "oldest daily snapshot" and so on (restic PR #5039).
//! * `within` keeps every snapshot strictly newer than the newest snapshot of the group minus the
//!   duration (not "now"). Snapshots from the future (at or after `now`) do not count as the
//!   newest; if there is no snapshot before `now`, `within` keeps everything (restic measures from
//!   the zero time then). Years, months and days are calendar arithmetic on the newest snapshot's
//!   local date with Go's `AddDate` normalisation (2021-03-31 minus one month is "2021-02-31",
//!   that is 2021-03-03); hours are exact.
//! * `tags` lists tag lists; a snapshot carrying every tag of one list is kept (restic
//!   `--keep-tag a,b`). Tags use up no counts.
//! * A snapshot dated more than [`FUTURE_TOLERANCE_NS`] after `now` is kept, counted by no rule,
//!   with the reason [`FUTURE_REASON`], and the rules run over the others as if it did not exist
//!   (a cairn rule, not restic's). Someone who can write snapshots (a compromised client, a
//!   repository server's append-only mode) could otherwise forge snapshots dated in the future
//!   that use up `--keep-last` and `--keep-daily` and so make `forget` remove every real one.
//! * A snapshot is kept if any rule keeps it; its reasons are listed in the order tags, within,
//!   last, hourly, daily, weekly, monthly, yearly. An empty policy keeps everything with the
//!   reason "policy is empty".
//!
//! Not implemented: restic's `--keep-within-{hourly,daily,...}` rules.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

use crate::id::SnapshotId;
use crate::snapshot::Snapshot;

const NS_PER_SEC: i128 = 1_000_000_000;
const NS_PER_HOUR: i128 = 3_600 * NS_PER_SEC;

/// How many snapshots a count rule keeps. `N(0)` turns the rule off, like restic's 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// Keep at most this many snapshots, one per distinct bucket (hour, day, ...).
    N(u32),
    /// restic's `unlimited` (and `-1` before restic 0.16): one snapshot for every bucket.
    Unlimited,
}

impl Count {
    fn is_active(self) -> bool {
        self != Count::N(0)
    }
}

impl FromStr for Count {
    type Err = String;

    /// A non-negative number, `unlimited`, or `-1` (older restic's spelling of unlimited).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "unlimited" | "-1" => Ok(Count::Unlimited),
            t => t.parse::<u32>().map(Count::N).map_err(|_| {
                format!("keep count {s:?} is not a non-negative number or \"unlimited\"")
            }),
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::N(n) => write!(f, "{n}"),
            Count::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// A `--keep-within` duration, restic style: `1y2m3d4h` (years, months, days, hours). Weeks
/// (`2w`, seven days each) are a cairn extension. All parts zero means "no within rule".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeepDuration {
    /// Calendar years (`y`), subtracted from the newest snapshot's local date.
    pub years: u32,
    /// Calendar months (`m`), subtracted with Go's `AddDate` normalisation.
    pub months: u32,
    /// Weeks (`w`), seven calendar days each.
    pub weeks: u32,
    /// Calendar days (`d`).
    pub days: u32,
    /// Exact hours (`h`), subtracted after the calendar parts.
    pub hours: u32,
}

impl KeepDuration {
    /// True when every part is zero: the duration sets no `within` rule.
    pub fn is_zero(&self) -> bool {
        *self == KeepDuration::default()
    }

    /// The instant (ns since the epoch) a snapshot must be strictly after to be "within" this
    /// duration of `newest_ns`, computed like Go's
    /// `t.AddDate(-years, -months, -days).Add(-hours)` in the newest snapshot's own offset.
    /// `None` when that instant is before anything representable: everything is within.
    pub fn threshold_ns(&self, newest_ns: i64, newest_offset_s: i32) -> Option<i128> {
        let offset_ns = i128::from(newest_offset_s) * NS_PER_SEC;
        let local = Timestamp::from_nanosecond(i128::from(newest_ns) + offset_ns).ok()?;
        let dt = TimeZone::UTC.to_datetime(local);
        // Go's time.Date normalisation: the month carries into the year, then the day
        // overflows into following or preceding months.
        let month0 = i64::from(dt.month()) - 1 - i64::from(self.months);
        let year = i64::from(dt.year()) - i64::from(self.years) + month0.div_euclid(12);
        let month = month0.rem_euclid(12) + 1;
        let first = Date::new(i16::try_from(year).ok()?, month as i8, 1).ok()?;
        let day_shift = i64::from(dt.day()) - 1 - i64::from(self.days) - 7 * i64::from(self.weeks);
        let date = first
            .checked_add(Span::new().try_days(day_shift).ok()?)
            .ok()?;
        let back = TimeZone::UTC
            .to_timestamp(DateTime::from_parts(date, dt.time()))
            .ok()?;
        Some(back.as_nanosecond() - offset_ns - i128::from(self.hours) * NS_PER_HOUR)
    }
}

impl fmt::Display for KeepDuration {
    /// restic's form: the non-zero parts, largest first (`1y2m3d4h`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.weeks, 'w'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for KeepDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration(s)
    }
}

/// Parses a `--keep-within` duration: one or more `<number><unit>` with units `y` (years),
/// `m` (months), `w` (weeks, cairn only), `d` (days), `h` (hours), e.g. `1y2m3d4h`, `30d`, `2w`.
///
/// Stricter than restic: an empty string, a negative number, or a unit given twice is an error
/// (restic accepts them, the last of a repeated unit winning).
pub fn parse_duration(s: &str) -> Result<KeepDuration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration (expected e.g. 30d, 12h or 1y2m)".to_string());
    }
    let mut d = KeepDuration::default();
    let mut seen = [false; 5];
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(if rest.starts_with('-') {
                format!("duration {s:?} is negative")
            } else {
                format!("duration {s:?}: expected a number at {rest:?}")
            });
        }
        let n: u32 = rest[..digits]
            .parse()
            .map_err(|_| format!("duration {s:?}: number {:?} is too large", &rest[..digits]))?;
        let Some(unit) = rest[digits..].chars().next() else {
            return Err(format!(
                "duration {s:?}: no unit after {n} (use y, m, w, d or h)"
            ));
        };
        let (slot, field) = match unit {
            'y' => (0, &mut d.years),
            'm' => (1, &mut d.months),
            'w' => (2, &mut d.weeks),
            'd' => (3, &mut d.days),
            'h' => (4, &mut d.hours),
            _ => {
                return Err(format!(
                    "duration {s:?}: unknown unit {unit:?} (use y, m, w, d or h)"
                ))
            }
        };
        if std::mem::replace(&mut seen[slot], true) {
            return Err(format!("duration {s:?}: unit {unit:?} given twice"));
        }
        *field = n;
        rest = &rest[digits + unit.len_utf8()..];
    }
    Ok(d)
}

/// Splits a `--keep-tag` argument into its tag list: comma-separated, whitespace trimmed around
/// each tag (restic's `splitTagList`).
pub fn parse_tag_list(s: &str) -> Vec<String> {
    s.split(',').map(|t| t.trim().to_string()).collect()
}

/// The `--keep-*` options. `None` and `Some(Count::N(0))` both turn a count rule off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeepPolicy {
    /// `--keep-last`: the newest snapshots, each in a bucket of its own.
    pub last: Option<Count>,
    /// `--keep-hourly`: the newest snapshot of each local hour (`YYYYMMDDHH`).
    pub hourly: Option<Count>,
    /// `--keep-daily`: the newest snapshot of each local day (`YYYYMMDD`).
    pub daily: Option<Count>,
    /// `--keep-weekly`: the newest snapshot of each ISO 8601 week (`YYYYWW`).
    pub weekly: Option<Count>,
    /// `--keep-monthly`: the newest snapshot of each local month (`YYYYMM`).
    pub monthly: Option<Count>,
    /// `--keep-yearly`: the newest snapshot of each local calendar year (`YYYY`).
    pub yearly: Option<Count>,
    /// Keep every snapshot within this duration of the group's newest snapshot.
    pub within: Option<KeepDuration>,
    /// Keep every snapshot that carries all tags of at least one of these lists.
    pub tags: Vec<Vec<String>>,
}

impl KeepPolicy {
    /// True if no rule is set; `apply` then keeps everything.
    pub fn is_empty(&self) -> bool {
        self.count_rules()
            .iter()
            .all(|(c, _)| !c.is_some_and(Count::is_active))
            && self.within.is_none_or(|d| d.is_zero())
            && self.tags.is_empty()
    }

    fn count_rules(&self) -> [(Option<Count>, Rule); 6] {
        [
            (self.last, Rule::Last),
            (self.hourly, Rule::Hourly),
            (self.daily, Rule::Daily),
            (self.weekly, Rule::Weekly),
            (self.monthly, Rule::Monthly),
            (self.yearly, Rule::Yearly),
        ]
    }
}

impl fmt::Display for KeepPolicy {
    /// restic's summary line, e.g. `keep 2 latest, 7 daily snapshots and all snapshots within
    /// 1y of the newest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("keep all snapshots (the policy is empty)");
        }
        let counts: Vec<String> = self
            .count_rules()
            .iter()
            .filter_map(|&(c, rule)| match c? {
                Count::N(0) => None,
                Count::N(n) => Some(format!("{n} {}", rule.adjective())),
                Count::Unlimited => Some(format!("all {}", rule.adjective())),
            })
            .collect();
        let mut parts = Vec::new();
        if !counts.is_empty() {
            parts.push(format!("{} snapshots", counts.join(", ")));
        }
        if !self.tags.is_empty() {
            let lists: Vec<String> = self.tags.iter().map(|l| tag_list_string(l)).collect();
            parts.push(format!("all snapshots with tags [{}]", lists.join(" ")));
        }
        if let Some(d) = self.within.filter(|d| !d.is_zero()) {
            parts.push(format!("all snapshots within {d} of the newest"));
        }
        write!(f, "keep {}", parts.join(" and "))
    }
}

/// `[a, b]`, restic's `TagList.String`.
fn tag_list_string(list: &[String]) -> String {
    format!("[{}]", list.join(", "))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Rule {
    /// The word in the policy summary (restic says "latest" for `--keep-last`).
    fn adjective(self) -> &'static str {
        match self {
            Rule::Last => "latest",
            Rule::Hourly => "hourly",
            Rule::Daily => "daily",
            Rule::Weekly => "weekly",
            Rule::Monthly => "monthly",
            Rule::Yearly => "yearly",
        }
    }

    /// The keep reason.
    fn reason(self) -> &'static str {
        match self {
            Rule::Last => "last snapshot",
            Rule::Hourly => "hourly snapshot",
            Rule::Daily => "daily snapshot",
            Rule::Weekly => "weekly snapshot",
            Rule::Monthly => "monthly snapshot",
            Rule::Yearly => "yearly snapshot",
        }
    }

    /// The bucket of the `nr`-th snapshot (newest first) with local time `local`.
    fn bucket(self, nr: usize, local: DateTime) -> i64 {
        let (y, m, d, h) = (
            i64::from(local.year()),
            i64::from(local.month()),
            i64::from(local.day()),
            i64::from(local.hour()),
        );
        match self {
            Rule::Last => nr as i64,
            Rule::Hourly => y * 1_000_000 + m * 10_000 + d * 100 + h,
            Rule::Daily => y * 10_000 + m * 100 + d,
            Rule::Weekly => {
                let w = local.date().iso_week_date();
                i64::from(w.year()) * 100 + i64::from(w.week())
            }
            Rule::Monthly => y * 100 + m,
            Rule::Yearly => y,
        }
    }
}

/// The local wall-clock time of a snapshot at its recorded offset.
fn local_datetime(s: &Snapshot) -> DateTime {
    let ns = i128::from(s.time_ns) + i128::from(s.tz_offset_s) * NS_PER_SEC;
    // Any i64 of nanoseconds plus any i32 of seconds lies within jiff's ±9999 years.
    let ts = Timestamp::from_nanosecond(ns).unwrap_or(Timestamp::UNIX_EPOCH);
    TimeZone::UTC.to_datetime(ts)
}

/// How far after "now" a snapshot may be dated and still count as a real, present one: clock
/// skew between machines (a client whose clock runs fast) stays well within an hour.
pub const FUTURE_TOLERANCE_NS: i64 = 3_600 * 1_000_000_000;

/// The reason given for a snapshot dated beyond [`FUTURE_TOLERANCE_NS`] after now.
pub const FUTURE_REASON: &str = "dated in the future: kept, counted by no rule";

/// The verdict on one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The snapshot file this verdict is about.
    pub id: SnapshotId,
    /// True if some rule keeps it; `forget` deletes the snapshot when false.
    pub keep: bool,
    /// Why it is kept (empty if it is not), e.g. "last snapshot", "oldest daily snapshot",
    /// "within 2d", "has tags [a, b]", "policy is empty".
    pub reasons: Vec<String>,
}

/// Applies `policy` to one group of snapshots. Returns a decision for every snapshot, newest
/// first. `now_ns` (ns since the epoch) only decides which snapshots are from the future and so
/// cannot be the newest one `within` measures from.
pub fn apply(policy: &KeepPolicy, group: &[(SnapshotId, &Snapshot)], now_ns: i64) -> Vec<Decision> {
    let mut list = group.to_vec();
    list.sort_by(|a, b| b.1.time_ns.cmp(&a.1.time_ns).then(a.0.cmp(&b.0)));

    if policy.is_empty() {
        return list
            .iter()
            .map(|(id, _)| Decision {
                id: *id,
                keep: true,
                reasons: vec!["policy is empty".to_string()],
            })
            .collect();
    }

    // Snapshots from beyond the tolerance come first in the sorted list: kept, and set aside.
    let horizon = i128::from(now_ns) + i128::from(FUTURE_TOLERANCE_NS);
    let split = list.partition_point(|(_, s)| i128::from(s.time_ns) > horizon);
    let future: Vec<Decision> = list
        .drain(..split)
        .map(|(id, _)| Decision {
            id,
            keep: true,
            reasons: vec![FUTURE_REASON.to_string()],
        })
        .collect();

    // Outer None: no within rule. Inner None: everything is within.
    let within = policy.within.filter(|d| !d.is_zero()).map(|d| {
        let newest = list.iter().find(|(_, s)| s.time_ns < now_ns);
        let threshold = newest.and_then(|(_, s)| d.threshold_ns(s.time_ns, s.tz_offset_s));
        (d, threshold)
    });

    struct Bucket {
        rule: Rule,
        /// None: unlimited.
        remaining: Option<u32>,
        last: Option<i64>,
    }
    let mut buckets: Vec<Bucket> = policy
        .count_rules()
        .iter()
        .filter_map(|&(count, rule)| {
            let remaining = match count? {
                Count::N(0) => return None,
                Count::N(n) => Some(n),
                Count::Unlimited => None,
            };
            Some(Bucket {
                rule,
                remaining,
                last: None,
            })
        })
        .collect();

    let oldest = list.len().saturating_sub(1);
    let present = list.iter().enumerate().map(|(nr, (id, s))| {
        let mut reasons = Vec::new();
        for l in &policy.tags {
            if l.iter().all(|t| s.tags.contains(t)) {
                reasons.push(format!("has tags {}", tag_list_string(l)));
            }
        }
        if let Some((d, threshold)) = within {
            if threshold.is_none_or(|t| i128::from(s.time_ns) > t) {
                reasons.push(format!("within {d}"));
            }
        }
        let local = local_datetime(s);
        for b in &mut buckets {
            if b.remaining == Some(0) {
                continue;
            }
            let val = b.rule.bucket(nr, local);
            let same = b.last == Some(val);
            if !same || nr == oldest {
                reasons.push(if same {
                    format!("oldest {}", b.rule.reason())
                } else {
                    b.rule.reason().to_string()
                });
                b.last = Some(val);
                if let Some(r) = &mut b.remaining {
                    *r -= 1;
                }
            }
        }
        Decision {
            id: *id,
            keep: !reasons.is_empty(),
            reasons,
        }
    });
    future.into_iter().chain(present).collect()
}

/// What snapshots are grouped by before the policy is applied to each group (`--group-by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBy {
    /// Snapshots of different hosts fall into different groups.
    pub host: bool,
    /// Snapshots of different path sets (order ignored) fall into different groups.
    pub paths: bool,
    /// Snapshots with different tag sets (order ignored) fall into different groups.
    pub tags: bool,
}

impl GroupBy {
    /// One group for everything.
    pub const NONE: GroupBy = GroupBy {
        host: false,
        paths: false,
        tags: false,
    };
    /// restic's default, `host,paths`.
    pub const HOST_PATHS: GroupBy = GroupBy {
        host: true,
        paths: true,
        tags: false,
    };
}

impl Default for GroupBy {
    /// `host,paths`, as in restic.
    fn default() -> Self {
        GroupBy::HOST_PATHS
    }
}

impl FromStr for GroupBy {
    type Err = String;

    /// A comma-separated list of `host`, `paths`, `tags` (singular forms accepted); empty means
    /// no grouping.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut g = GroupBy::NONE;
        for part in s.split(',') {
            match part.trim() {
                "host" | "hosts" => g.host = true,
                "path" | "paths" => g.paths = true,
                "tag" | "tags" => g.tags = true,
                "" => {}
                other => {
                    return Err(format!(
                        "unknown grouping option {other:?} (use host, paths and/or tags)"
                    ))
                }
            }
        }
        Ok(g)
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<&str> = [
            (self.host, "host"),
            (self.paths, "paths"),
            (self.tags, "tags"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect();
        f.write_str(&parts.join(","))
    }
}

/// The key of a group: the grouped-by fields, `None` for those not grouped by. Paths and tags
/// are sorted, so their order in the snapshot does not matter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    /// The snapshots' host name, if grouped by host.
    pub host: Option<String>,
    /// The snapshots' backed-up paths, sorted, if grouped by paths.
    pub paths: Option<Vec<String>>,
    /// The snapshots' tags, sorted, if grouped by tags.
    pub tags: Option<Vec<String>>,
}

impl fmt::Display for GroupKey {
    /// `host [h], paths [/a, /b], tags [t]`; empty when nothing is grouped by.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host [{h}]"));
        }
        if let Some(p) = &self.paths {
            parts.push(format!("paths {}", tag_list_string(p)));
        }
        if let Some(t) = &self.tags {
            parts.push(format!("tags {}", tag_list_string(t)));
        }
        f.write_str(&parts.join(", "))
    }
}

/// The key of the group `s` falls into under `by`.
pub fn group_key(s: &Snapshot, by: GroupBy) -> GroupKey {
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    GroupKey {
        host: by.host.then(|| s.host.clone()),
        paths: by.paths.then(|| sorted(&s.paths)),
        tags: by.tags.then(|| sorted(&s.tags)),
    }
}

/// Splits snapshots into groups; each group keeps the input order.
pub fn group<'a>(
    snaps: &[(SnapshotId, &'a Snapshot)],
    by: GroupBy,
) -> BTreeMap<GroupKey, Vec<(SnapshotId, &'a Snapshot)>> {
    let mut groups: BTreeMap<GroupKey, Vec<(SnapshotId, &'a Snapshot)>> = BTreeMap::new();
    for &(id, s) in snaps {
        groups.entry(group_key(s, by)).or_default().push((id, s));
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::SNAPSHOT_VERSION;
    use proptest::prelude::*;

    const H: i32 = 3_600;
    /// Far in the future: no snapshot counts as "from the future".
    const NOW: i64 = i64::MAX;

    /// A snapshot with the given time, offset and tags. Built through serde so that fields
    /// added to `Snapshot` with a serde default do not break these tests.
    fn snapshot(time_ns: i64, tz_offset_s: i32, tags: &[&str]) -> Snapshot {
        let tree = vec![0u8; 32];
        let s = serde_json::json!({
            "version": SNAPSHOT_VERSION,
            "time_ns": time_ns,
            "tz_offset_s": tz_offset_s,
            "host": "h",
            "user": "u",
            "uid": 0,
            "gid": 0,
            "paths": ["/data"],
            "tags": tags,
            "tree": tree,
            "parent": null,
            "mode": "incremental",
            "program_version": "test",
            "summary": {},
        });
        serde_json::from_value(s).expect("a valid snapshot")
    }

    /// Nanoseconds since the epoch of local wall-clock time `local` ("2021-01-04T12:00:00") at
    /// `offset_s` east of UTC.
    fn ns(local: &str, offset_s: i32) -> i64 {
        let dt: DateTime = local.parse().expect("test datetime");
        let utc = TimeZone::UTC.to_timestamp(dt).expect("in range");
        (utc.as_nanosecond() - i128::from(offset_s) * NS_PER_SEC) as i64
    }

    fn id(n: usize) -> SnapshotId {
        SnapshotId([n as u8; 32])
    }

    /// Snapshot `i` of `items` (local time, offset, tags) gets id `i`; returns the kept ones as
    /// (local time, reasons), newest first.
    fn run_full(
        policy: &KeepPolicy,
        items: &[(&str, i32, &[&str])],
        now_ns: i64,
    ) -> Vec<(String, Vec<String>)> {
        let snaps: Vec<Snapshot> = items
            .iter()
            .map(|(t, off, tags)| snapshot(ns(t, *off), *off, tags))
            .collect();
        let group: Vec<(SnapshotId, &Snapshot)> =
            snaps.iter().enumerate().map(|(i, s)| (id(i), s)).collect();
        let decisions = apply(policy, &group, now_ns);
        assert_eq!(decisions.len(), items.len());
        decisions
            .into_iter()
            .filter(|d| {
                assert_eq!(d.keep, !d.reasons.is_empty());
                d.keep
            })
            .map(|d| (items[d.id.0[0] as usize].0.to_string(), d.reasons))
            .collect()
    }

    /// Like `run_full` for UTC snapshots without tags.
    fn run(policy: &KeepPolicy, times: &[&str]) -> Vec<(String, Vec<String>)> {
        let items: Vec<(&str, i32, &[&str])> = times.iter().map(|t| (*t, 0, &[][..])).collect();
        run_full(policy, &items, NOW)
    }

    fn expect(pairs: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        pairs
            .iter()
            .map(|(t, r)| (t.to_string(), r.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn n(count: u32) -> Option<Count> {
        Some(Count::N(count))
    }

    fn within(s: &str) -> Option<KeepDuration> {
        Some(parse_duration(s).expect("test duration"))
    }

    #[test]
    fn keep_last_keeps_the_n_newest_snapshots_and_not_the_oldest_once_used_up() {
        let times = [
            "2021-01-01T12:00:00",
            "2021-01-05T12:00:00",
            "2021-01-03T12:00:00",
            "2021-01-02T12:00:00",
            "2021-01-04T12:00:00",
        ];
        let p = KeepPolicy {
            last: n(3),
            ..Default::default()
        };
        assert_eq!(
            run(&p, &times),
            expect(&[
                ("2021-01-05T12:00:00", &["last snapshot"]),
                ("2021-01-04T12:00:00", &["last snapshot"]),
                ("2021-01-03T12:00:00", &["last snapshot"]),
            ])
        );
    }

    #[test]
    fn keep_last_larger_than_the_group_or_unlimited_keeps_everything() {
        let times = ["2021-01-02T12:00:00", "2021-01-01T12:00:00"];
        for count in [n(5), Some(Count::Unlimited)] {
            let p = KeepPolicy {
                last: count,
                ..Default::default()
            };
            assert_eq!(
                run(&p, &times),
                expect(&[
                    ("2021-01-02T12:00:00", &["last snapshot"]),
                    ("2021-01-01T12:00:00", &["last snapshot"]),
                ])
            );
        }
    }

    #[test]
    fn keep_hourly_keeps_the_newest_snapshot_of_each_of_the_last_n_hours() {
        let times = [
            "2021-01-02T10:00:00",
            "2021-01-01T10:59:59",
            "2021-01-01T10:01:00",
            "2021-01-01T09:30:00",
            "2021-01-01T08:00:00",
        ];
        let p = KeepPolicy {
            hourly: n(3),
            ..Default::default()
        };
        // The same hour on another day is another bucket.
        assert_eq!(
            run(&p, &times),
            expect(&[
                ("2021-01-02T10:00:00", &["hourly snapshot"]),
                ("2021-01-01T10:59:59", &["hourly snapshot"]),
                ("2021-01-01T09:30:00", &["hourly snapshot"]),
            ])
        );
    }

    #[test]
    fn keep_daily_keeps_the_newest_snapshot_of_each_of_the_last_n_days() {
        let times = [
            "2021-01-05T18:00:00",
            "2021-01-05T09:00:00",
            "2021-01-04T23:59:59",
            "2021-01-04T00:00:00",
            "2021-01-02T12:00:00",
            "2021-01-01T12:00:00",
        ];
        let p = KeepPolicy {
            daily: n(3),
            ..Default::default()
        };
        assert_eq!(
            run(&p, &times),
            expect(&[
                ("2021-01-05T18:00:00", &["daily snapshot"]),
                ("2021-01-04T23:59:59", &["daily snapshot"]),
                ("2021-01-02T12:00:00", &["daily snapshot"]),
            ])
        );
    }

    #[test]
    fn a_rule_with_counts_left_also_keeps_the_oldest_snapshot_as_oldest() {
        let times = [
            "2021-01-03T12:00:00",
            "2021-01-02T18:00:00",
            "2021-01-02T06:00:00",
        ];
        let p = KeepPolicy {
            daily: n(5),
            ..Default::default()
        };
        assert_eq!(
            run(&p, &times),
            expect(&[
                ("2021-01-03T12:00:00", &["daily snapshot"]),
                ("2021-01-02T18:00:00", &["daily snapshot"]),
                ("2021-01-02T06:00:00", &["oldest daily snapshot"]),
            ])
        );
        let unlimited = KeepPolicy {
            daily: Some(Count::Unlimited),
            ..Default::default()
        };
        assert_eq!(run(&unlimited, &times), run(&p, &times));
        // With the count used up by the two days, the oldest goes.
        let p = KeepPolicy {
            daily: n(2),
            ..Default::default()
        };
        assert_eq!(
            run(&p, &times),
            expect(&[
                ("2021-01-03T12:00:00", &["daily snapshot"]),
                ("2021-01-02T18:00:00", &["daily snapshot"]),
            ])
        );
    }

    #[test]
    fn keep_weekly_uses_iso_weeks_across_the_year_boundary() {
        // 2020-12-28 (Mon) .. 2021-01-03 (Sun) is ISO week 2020-W53.
        let times = [
            "2021-01-04T12:00:00", // Mon, 2021-W01
            "2021-01-03T12:00:00", // Sun, 2020-W53
            "2020-12-31T12:00:00", // Thu, 2020-W53
            "2020-12-28T08:00:00", // Mon, 2020-W53
            "2020-12-27T12:00:00", // Sun, 2020-W52
            "2020-12-20T12:00:00", // Sun, 2020-W51
        ];
        let p = KeepPolicy {
            weekly: n(3),
            ..Default::default()
        };
        assert_eq!(
            run(&p, &times),
            expect(&[
                ("2021-01-04T12:00:00", &["weekly snapshot"]),
                ("2021-01-03T12:00:00", &["weekly snapshot"]),
                ("2020-12-27T12:00:00", &["weekly snapshot"]),
            ])
        );
        // 2019-12-30 (Mon) is in 2020-W01, 2019-12-29 (Sun) in 2019-W52.
        let times = [
            "2020-01-01T12:00:00",
            "2019-12-30T12:00:00",
            "2019-12-29T12:00:00",
            "2019-12-22T12:00:00",
        ];
        let p = KeepPolicy {
            weekly: n(2),
            ..Default::default()
        };
        assert_eq!(
            run(&p, &times),
            expect(&[
                ("2020-01-01T12:00:00", &["weekly snapshot"]),
                ("2019-12-29T12:00:00", &["weekly snapshot"]),
            ])
        );
    }

    #[test]
    fn keep_monthly_keeps_the_newest_snapshot_of_each_of_the_last_n_months() {
        let times = [
            "2021-03-01T00:00:00",
            "2021-02-28T23:59:59",
            "2021-02-01T00:00:00",
            "2021-01-31T12:00:00",
            "2020-12-15T12:00:00",
        ];
        let p = KeepPolicy {
            monthly: n(3),
            ..Default::default()
        };
        assert_eq!(
            run(&p, &times),
            expect(&[
                ("2021-03-01T00:00:00", &["monthly snapshot"]),
                ("2021-02-28T23:59:59", &["monthly snapshot"]),
                ("2021-01-31T12:00:00", &["monthly snapshot"]),
            ])
        );
    }

    #[test]
    fn keep_yearly_uses_calendar_years_not_iso_years() {
        let times = [
            "2021-01-01T00:00:00",
            "2020-12-31T23:59:59",
            "2020-06-01T12:00:00",
            "2019-12-31T12:00:00", // ISO year 2020, calendar year 2019
            "2019-12-30T12:00:00",
            "2018-05-01T12:00:00",
        ];
        let p = KeepPolicy {
            yearly: n(3),
            ..Default::default()
        };
        assert_eq!(
            run(&p, &times),
            expect(&[
                ("2021-01-01T00:00:00", &["yearly snapshot"]),
                ("2020-12-31T23:59:59", &["yearly snapshot"]),
                ("2019-12-31T12:00:00", &["yearly snapshot"]),
            ])
        );
    }

    #[test]
    fn a_policy_keeps_the_union_of_its_rules_with_every_reason_in_restic_order() {
        let items: &[(&str, i32, &[&str])] = &[
            ("2021-03-10T20:00:00", 0, &[]),       // Wed, W10
            ("2021-03-10T08:00:00", 0, &[]),       //
            ("2021-03-09T20:00:00", 0, &[]),       // Tue, W10; exactly 1d before the newest
            ("2021-03-05T20:00:00", 0, &[]),       // Fri, W09
            ("2021-02-20T20:00:00", 0, &[]),       // Sat, W07
            ("2021-02-01T20:00:00", 0, &[]),       // Mon, W05
            ("2021-01-15T20:00:00", 0, &["keep"]), // oldest
        ];
        let p = KeepPolicy {
            last: n(2),
            daily: n(3),
            weekly: n(2),
            monthly: n(2),
            within: within("1d"),
            tags: vec![vec!["keep".to_string()]],
            ..Default::default()
        };
        assert_eq!(
            run_full(&p, items, NOW),
            expect(&[
                (
                    "2021-03-10T20:00:00",
                    &[
                        "within 1d",
                        "last snapshot",
                        "daily snapshot",
                        "weekly snapshot",
                        "monthly snapshot"
                    ]
                ),
                ("2021-03-10T08:00:00", &["within 1d", "last snapshot"]),
                ("2021-03-09T20:00:00", &["daily snapshot"]),
                (
                    "2021-03-05T20:00:00",
                    &["daily snapshot", "weekly snapshot"]
                ),
                ("2021-02-20T20:00:00", &["monthly snapshot"]),
                ("2021-01-15T20:00:00", &["has tags [keep]"]),
            ])
        );
    }

    #[test]
    fn keep_within_measures_from_the_newest_snapshot_not_from_now_and_excludes_the_boundary() {
        let times = [
            "2015-05-10T12:00:00",
            "2015-05-09T13:00:00",
            "2015-05-08T12:00:00", // exactly 2d before the newest
            "2015-05-08T11:00:00",
        ];
        let p = KeepPolicy {
            within: within("2d"),
            ..Default::default()
        };
        let now = ns("2025-01-01T00:00:00", 0);
        let items: Vec<(&str, i32, &[&str])> = times.iter().map(|t| (*t, 0, &[][..])).collect();
        assert_eq!(
            run_full(&p, &items, now),
            expect(&[
                ("2015-05-10T12:00:00", &["within 2d"]),
                ("2015-05-09T13:00:00", &["within 2d"]),
            ])
        );
    }

    #[test]
    fn keep_within_combines_days_and_hours() {
        let times = [
            "2021-01-02T12:00:00",
            "2021-01-01T00:00:01",
            "2021-01-01T00:00:00",
        ];
        let p = KeepPolicy {
            within: within("1d12h"),
            ..Default::default()
        };
        assert_eq!(
            run(&p, &times),
            expect(&[
                ("2021-01-02T12:00:00", &["within 1d12h"]),
                ("2021-01-01T00:00:01", &["within 1d12h"]),
            ])
        );
        let p = KeepPolicy {
            within: within("1w"),
            ..Default::default()
        };
        assert_eq!(
            run(
                &p,
                &[
                    "2021-01-08T00:00:00",
                    "2021-01-01T00:00:01",
                    "2021-01-01T00:00:00"
                ]
            ),
            expect(&[
                ("2021-01-08T00:00:00", &["within 1w"]),
                ("2021-01-01T00:00:01", &["within 1w"]),
            ])
        );
    }

    #[test]
    fn keep_within_months_normalises_like_go_add_date() {
        // 2021-03-31 minus 1 month is "2021-02-31", which Go normalises to 2021-03-03.
        let times = [
            "2021-03-31T12:00:00",
            "2021-03-03T12:00:01",
            "2021-03-03T12:00:00",
            "2021-03-01T00:00:00",
            "2021-02-28T13:00:00",
        ];
        let p = KeepPolicy {
            within: within("1m"),
            ..Default::default()
        };
        assert_eq!(
            run(&p, &times),
            expect(&[
                ("2021-03-31T12:00:00", &["within 1m"]),
                ("2021-03-03T12:00:01", &["within 1m"]),
            ])
        );
        // 2020-02-29 minus 1 year is "2019-02-29", that is 2019-03-01.
        let times = [
            "2020-02-29T10:00:00",
            "2019-03-01T10:00:01",
            "2019-03-01T09:00:00",
            "2019-02-28T23:00:00",
        ];
        let p = KeepPolicy {
            within: within("1y"),
            ..Default::default()
        };
        assert_eq!(
            run(&p, &times),
            expect(&[
                ("2020-02-29T10:00:00", &["within 1y"]),
                ("2019-03-01T10:00:01", &["within 1y"]),
            ])
        );
    }

    #[test]
    fn keep_within_ignores_snapshots_from_the_future_when_finding_the_newest() {
        let items: &[(&str, i32, &[&str])] = &[
            ("2030-01-01T00:00:00", 0, &[]),
            ("2021-01-09T12:00:00", 0, &[]),
            ("2021-01-08T13:00:00", 0, &[]),
            ("2021-01-07T12:00:00", 0, &[]),
        ];
        let p = KeepPolicy {
            within: within("2d"),
            ..Default::default()
        };
        let now = ns("2021-01-10T00:00:00", 0);
        assert_eq!(
            run_full(&p, items, now),
            expect(&[
                ("2030-01-01T00:00:00", &[FUTURE_REASON]),
                ("2021-01-09T12:00:00", &["within 2d"]),
                ("2021-01-08T13:00:00", &["within 2d"]),
            ])
        );
        // With every snapshot in the future there is no newest: everything is within.
        let now = ns("2020-01-01T00:00:00", 0);
        assert_eq!(run_full(&p, items, now).len(), 4);
    }

    #[test]
    fn keep_tag_keeps_snapshots_carrying_every_tag_of_a_list() {
        let items: &[(&str, i32, &[&str])] = &[
            ("2021-01-04T12:00:00", 0, &["daily", "x"]),
            ("2021-01-03T12:00:00", 0, &["x"]),
            ("2021-01-02T12:00:00", 0, &["daily"]),
            ("2021-01-01T12:00:00", 0, &[]),
        ];
        let tags = |lists: &[&str]| KeepPolicy {
            tags: lists.iter().map(|l| parse_tag_list(l)).collect(),
            ..Default::default()
        };
        assert_eq!(
            run_full(&tags(&["daily"]), items, NOW),
            expect(&[
                ("2021-01-04T12:00:00", &["has tags [daily]"]),
                ("2021-01-02T12:00:00", &["has tags [daily]"]),
            ])
        );
        assert_eq!(
            run_full(&tags(&["daily, x"]), items, NOW),
            expect(&[("2021-01-04T12:00:00", &["has tags [daily, x]"])])
        );
        assert_eq!(
            run_full(&tags(&["x", "daily"]), items, NOW),
            expect(&[
                ("2021-01-04T12:00:00", &["has tags [x]", "has tags [daily]"]),
                ("2021-01-03T12:00:00", &["has tags [x]"]),
                ("2021-01-02T12:00:00", &["has tags [daily]"]),
            ])
        );
        // Tags use up no counts.
        let mut p = tags(&["x"]);
        p.last = n(1);
        assert_eq!(
            run_full(&p, items, NOW),
            expect(&[
                ("2021-01-04T12:00:00", &["has tags [x]", "last snapshot"]),
                ("2021-01-03T12:00:00", &["has tags [x]"]),
            ])
        );
    }

    #[test]
    fn an_empty_policy_is_empty_and_keeps_everything() {
        assert!(KeepPolicy::default().is_empty());
        let zeros = KeepPolicy {
            last: n(0),
            hourly: n(0),
            daily: n(0),
            weekly: n(0),
            monthly: n(0),
            yearly: n(0),
            within: Some(KeepDuration::default()),
            tags: vec![],
        };
        assert!(zeros.is_empty());
        for p in [
            KeepPolicy {
                yearly: n(1),
                ..Default::default()
            },
            KeepPolicy {
                hourly: Some(Count::Unlimited),
                ..Default::default()
            },
            KeepPolicy {
                within: within("1h"),
                ..Default::default()
            },
            KeepPolicy {
                tags: vec![vec!["a".to_string()]],
                ..Default::default()
            },
        ] {
            assert!(!p.is_empty(), "{p:?}");
        }
        assert_eq!(
            run(&zeros, &["2021-01-02T00:00:00", "2021-01-01T00:00:00"]),
            expect(&[
                ("2021-01-02T00:00:00", &["policy is empty"]),
                ("2021-01-01T00:00:00", &["policy is empty"]),
            ])
        );
        assert!(apply(&KeepPolicy::default(), &[], NOW).is_empty());
        assert!(apply(
            &KeepPolicy {
                last: n(1),
                ..Default::default()
            },
            &[],
            NOW
        )
        .is_empty());
    }

    #[test]
    fn decisions_cover_every_snapshot_newest_first() {
        let snaps: Vec<Snapshot> = [3, 1, 2]
            .iter()
            .map(|d| snapshot(ns(&format!("2021-01-0{d}T12:00:00"), 0), 0, &[]))
            .collect();
        let group: Vec<(SnapshotId, &Snapshot)> =
            snaps.iter().enumerate().map(|(i, s)| (id(i), s)).collect();
        let p = KeepPolicy {
            last: n(1),
            ..Default::default()
        };
        let d = apply(&p, &group, NOW);
        assert_eq!(
            d,
            vec![
                Decision {
                    id: id(0),
                    keep: true,
                    reasons: vec!["last snapshot".to_string()]
                },
                Decision {
                    id: id(2),
                    keep: false,
                    reasons: vec![]
                },
                Decision {
                    id: id(1),
                    keep: false,
                    reasons: vec![]
                },
            ]
        );
    }

    #[test]
    fn snapshots_at_the_same_time_are_ordered_by_id_whatever_the_input_order() {
        let snaps: Vec<Snapshot> = (0..3)
            .map(|_| snapshot(ns("2021-01-01T12:00:00", 0), 0, &[]))
            .collect();
        let forward: Vec<(SnapshotId, &Snapshot)> =
            vec![(id(3), &snaps[0]), (id(1), &snaps[1]), (id(2), &snaps[2])];
        let mut backward = forward.clone();
        backward.reverse();
        let p = KeepPolicy {
            daily: Some(Count::Unlimited),
            last: n(2),
            ..Default::default()
        };
        let d = apply(&p, &forward, NOW);
        assert_eq!(d, apply(&p, &backward, NOW));
        let got: Vec<(u8, Vec<String>)> = d.into_iter().map(|d| (d.id.0[0], d.reasons)).collect();
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                (1, strings(&["last snapshot", "daily snapshot"])),
                (2, strings(&["last snapshot"])),
                (3, strings(&["oldest daily snapshot"])),
            ]
        );
    }

    #[test]
    fn buckets_use_the_local_time_at_the_recorded_offset() {
        // All three are on 2021-06-01 in UTC; the newest is on 2021-06-02 at +02:00.
        let items: &[(&str, i32, &[&str])] = &[
            ("2021-06-02T01:30:00", 2 * H, &[]),
            ("2021-06-01T23:00:00", 2 * H, &[]),
            ("2021-06-01T10:00:00", 2 * H, &[]),
        ];
        let p = KeepPolicy {
            daily: n(2),
            ..Default::default()
        };
        assert_eq!(
            run_full(&p, items, NOW),
            expect(&[
                ("2021-06-02T01:30:00", &["daily snapshot"]),
                ("2021-06-01T23:00:00", &["daily snapshot"]),
            ])
        );
        // 2020-12-31 21:00 at -05:00 is 2021 in UTC but 2020 locally.
        let items: &[(&str, i32, &[&str])] = &[
            ("2020-12-31T21:00:00", -5 * H, &[]),
            ("2020-12-31T10:00:00", -5 * H, &[]),
            ("2019-06-01T10:00:00", -5 * H, &[]),
        ];
        let p = KeepPolicy {
            yearly: n(2),
            ..Default::default()
        };
        assert_eq!(
            run_full(&p, items, NOW),
            expect(&[
                ("2020-12-31T21:00:00", &["yearly snapshot"]),
                ("2019-06-01T10:00:00", &["yearly snapshot"]),
            ])
        );
    }

    #[test]
    fn with_mixed_offsets_a_day_that_comes_round_again_is_kept_again() {
        // Sorted by instant: P (local 01-01), Q (local 01-02), R (local 01-01 again).
        let items: &[(&str, i32, &[&str])] = &[
            ("2021-01-01T22:00:00", -12 * H, &[]), // P: 2021-01-02T10:00Z
            ("2021-01-02T09:00:00", 0, &[]),       // Q: 2021-01-02T09:00Z
            ("2021-01-01T20:00:00", -12 * H, &[]), // R: 2021-01-02T08:00Z
            ("2021-01-01T07:00:00", 0, &[]),       // S: 2021-01-01T07:00Z
        ];
        let p = KeepPolicy {
            daily: n(3),
            ..Default::default()
        };
        assert_eq!(
            run_full(&p, items, NOW),
            expect(&[
                ("2021-01-01T22:00:00", &["daily snapshot"]),
                ("2021-01-02T09:00:00", &["daily snapshot"]),
                ("2021-01-01T20:00:00", &["daily snapshot"]),
            ])
        );
    }

    #[test]
    fn keep_within_does_calendar_arithmetic_in_the_newest_snapshots_offset() {
        // The newest is 2021-04-01 01:00 at +02:00 (2021-03-31T23:00Z). One month back in its
        // own offset is 2021-03-01 01:00 at +02:00, 2021-02-28T23:00Z; done in UTC it would be
        // "2021-02-31" 23:00Z, that is 2021-03-03T23:00Z.
        let items: &[(&str, i32, &[&str])] = &[
            ("2021-04-01T01:00:00", 2 * H, &[]),
            ("2021-02-28T23:00:01", 0, &[]),
            ("2021-02-28T23:00:00", 0, &[]),
        ];
        let p = KeepPolicy {
            within: within("1m"),
            ..Default::default()
        };
        assert_eq!(
            run_full(&p, items, NOW),
            expect(&[
                ("2021-04-01T01:00:00", &["within 1m"]),
                ("2021-02-28T23:00:01", &["within 1m"]),
            ])
        );
    }

    #[test]
    fn grouping_by_host_and_paths_ignores_path_order() {
        let mk = |host: &str, paths: &[&str], tags: &[&str]| {
            let mut s = snapshot(0, 0, tags);
            s.host = host.to_string();
            s.paths = paths.iter().map(|p| p.to_string()).collect();
            s
        };
        let snaps = [
            mk("h1", &["/a", "/b"], &["x", "y"]),
            mk("h1", &["/b", "/a"], &["y", "x"]),
            mk("h1", &["/a"], &[]),
            mk("h2", &["/a", "/b"], &[]),
        ];
        let list: Vec<(SnapshotId, &Snapshot)> =
            snaps.iter().enumerate().map(|(i, s)| (id(i), s)).collect();
        let sizes = |by: GroupBy| -> Vec<(String, Vec<u8>)> {
            group(&list, by)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|(id, _)| id.0[0]).collect()))
                .collect()
        };
        let owned = |v: &[(&str, &[u8])]| -> Vec<(String, Vec<u8>)> {
            v.iter()
                .map(|(k, ids)| (k.to_string(), ids.to_vec()))
                .collect()
        };
        assert_eq!(
            sizes(GroupBy::default()),
            owned(&[
                ("host [h1], paths [/a]", &[2]),
                ("host [h1], paths [/a, /b]", &[0, 1]),
                ("host [h2], paths [/a, /b]", &[3]),
            ])
        );
        assert_eq!(
            sizes("host".parse().expect("valid")),
            owned(&[("host [h1]", &[0, 1, 2]), ("host [h2]", &[3])])
        );
        assert_eq!(
            sizes("tags".parse().expect("valid")),
            owned(&[("tags []", &[2, 3]), ("tags [x, y]", &[0, 1])])
        );
        assert_eq!(sizes(GroupBy::NONE), owned(&[("", &[0, 1, 2, 3])]));
        assert_eq!(
            group_key(&snaps[1], GroupBy::HOST_PATHS),
            GroupKey {
                host: Some("h1".to_string()),
                paths: Some(vec!["/a".to_string(), "/b".to_string()]),
                tags: None,
            }
        );
    }

    #[test]
    fn group_by_parses_restic_spellings_and_rejects_others() {
        assert_eq!("host,paths".parse::<GroupBy>(), Ok(GroupBy::HOST_PATHS));
        assert_eq!("hosts, path".parse::<GroupBy>(), Ok(GroupBy::HOST_PATHS));
        assert_eq!("".parse::<GroupBy>(), Ok(GroupBy::NONE));
        assert_eq!(
            "tag".parse::<GroupBy>(),
            Ok(GroupBy {
                tags: true,
                ..GroupBy::NONE
            })
        );
        assert!("host,user".parse::<GroupBy>().is_err());
        assert_eq!(GroupBy::HOST_PATHS.to_string(), "host,paths");
    }

    #[test]
    fn parse_duration_accepts_restic_units_and_weeks() {
        assert_eq!(
            parse_duration("1y2m3d4h"),
            Ok(KeepDuration {
                years: 1,
                months: 2,
                weeks: 0,
                days: 3,
                hours: 4
            })
        );
        assert_eq!(
            parse_duration(" 30d "),
            Ok(KeepDuration {
                days: 30,
                ..Default::default()
            })
        );
        assert_eq!(
            parse_duration("2w12h"),
            Ok(KeepDuration {
                weeks: 2,
                hours: 12,
                ..Default::default()
            })
        );
        assert_eq!(
            parse_duration("4h1y"),
            Ok(KeepDuration {
                years: 1,
                hours: 4,
                ..Default::default()
            })
        );
        for bad in [
            "",
            "5",
            "d",
            "1x",
            "1d1d",
            "-1d",
            "1d 2h",
            "99999999999d",
            "1D",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(parse_duration("0d").map(|d| d.is_zero()), Ok(true));
    }

    #[test]
    fn durations_display_in_restic_form() {
        for s in ["1y2m3d4h", "30d", "2w", "1m14d", "2w3d"] {
            assert_eq!(parse_duration(s).map(|d| d.to_string()), Ok(s.to_string()));
        }
        assert_eq!(
            parse_duration("4h1y").map(|d| d.to_string()),
            Ok("1y4h".to_string())
        );
    }

    #[test]
    fn counts_parse_numbers_and_unlimited() {
        assert_eq!("7".parse::<Count>(), Ok(Count::N(7)));
        assert_eq!("0".parse::<Count>(), Ok(Count::N(0)));
        assert_eq!("unlimited".parse::<Count>(), Ok(Count::Unlimited));
        assert_eq!("-1".parse::<Count>(), Ok(Count::Unlimited));
        for bad in ["-2", "", "x", "1.5", "all"] {
            assert!(bad.parse::<Count>().is_err(), "{bad:?} was accepted");
        }
        assert_eq!(Count::Unlimited.to_string(), "unlimited");
    }

    #[test]
    fn policy_display_matches_restics_summary() {
        let p = KeepPolicy {
            last: n(2),
            daily: n(7),
            weekly: Some(Count::Unlimited),
            monthly: n(0),
            within: within("1y2m"),
            tags: vec![parse_tag_list("a,b"), parse_tag_list("c")],
            ..Default::default()
        };
        assert_eq!(
            p.to_string(),
            "keep 2 latest, 7 daily, all weekly snapshots and all snapshots with tags \
             [[a, b] [c]] and all snapshots within 1y2m of the newest"
        );
        assert_eq!(
            KeepPolicy::default().to_string(),
            "keep all snapshots (the policy is empty)"
        );
    }

    // ---- The property test: `apply` against an independent reference ----

    /// Days since 1970-01-01 of a proleptic Gregorian date; `d` may overflow the month
    /// (H. Hinnant's algorithm).
    fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    fn civil_from_days(z: i64) -> (i64, i64, i64) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (yoe + era * 400 + i64::from(m <= 2), m, d)
    }

    const DAY_NS: i128 = 86_400 * NS_PER_SEC;

    /// (days since the epoch, ns into the day) of local time.
    fn local_day(time_ns: i64, off: i32) -> (i64, i128) {
        let local = i128::from(time_ns) + i128::from(off) * NS_PER_SEC;
        (local.div_euclid(DAY_NS) as i64, local.rem_euclid(DAY_NS))
    }

    /// (ISO year, ISO week) by the "Thursday of the same week" rule.
    fn iso_week(days: i64) -> (i64, i64) {
        let weekday_from_monday = (days + 3).rem_euclid(7); // 1970-01-01 was a Thursday
        let thursday = days - weekday_from_monday + 3;
        let (year, _, _) = civil_from_days(thursday);
        let ordinal = thursday - days_from_civil(year, 1, 1);
        (year, ordinal / 7 + 1)
    }

    fn reference_bucket(rule: Rule, nr: usize, time_ns: i64, off: i32) -> (i64, i64, i64, i64) {
        let (days, tod) = local_day(time_ns, off);
        let (y, m, d) = civil_from_days(days);
        let h = (tod / NS_PER_HOUR) as i64;
        match rule {
            Rule::Last => (nr as i64, 0, 0, 0),
            Rule::Hourly => (y, m, d, h),
            Rule::Daily => (y, m, d, 0),
            Rule::Weekly => {
                let (wy, w) = iso_week(days);
                (wy, w, 0, 0)
            }
            Rule::Monthly => (y, m, 0, 0),
            Rule::Yearly => (y, 0, 0, 0),
        }
    }

    /// Everything restic's policy keeps, computed rule by rule over the sorted list for
    /// snapshots that share one offset (so bucket values never come round again): each rule
    /// keeps the first snapshot of each of its first `count` distinct buckets, and the oldest
    /// snapshot when there are fewer buckets than `count`.
    fn reference(
        p: &KeepPolicy,
        snaps: &[(SnapshotId, Snapshot)],
        now_ns: i64,
    ) -> Vec<(SnapshotId, Vec<String>)> {
        let mut sorted: Vec<&(SnapshotId, Snapshot)> = snaps.iter().collect();
        sorted.sort_by_key(|(id, s)| (std::cmp::Reverse(s.time_ns), *id));
        let counts = [
            (p.last, Rule::Last, "last"),
            (p.hourly, Rule::Hourly, "hourly"),
            (p.daily, Rule::Daily, "daily"),
            (p.weekly, Rule::Weekly, "weekly"),
            (p.monthly, Rule::Monthly, "monthly"),
            (p.yearly, Rule::Yearly, "yearly"),
        ];
        let live = |c: Option<Count>| match c {
            None | Some(Count::N(0)) => None,
            Some(Count::N(n)) => Some(n as usize),
            Some(Count::Unlimited) => Some(usize::MAX),
        };
        let within = p.within.filter(|d| *d != KeepDuration::default());
        let empty = counts.iter().all(|(c, _, _)| live(*c).is_none())
            && within.is_none()
            && p.tags.is_empty();
        // Beyond the tolerance: kept, counted by nothing (unless the policy is empty).
        let is_future = |s: &Snapshot| s.time_ns > now_ns.saturating_add(FUTURE_TOLERANCE_NS);
        let mut future_part = Vec::new();
        if !empty {
            future_part = sorted
                .iter()
                .filter(|(_, s)| is_future(s))
                .map(|(id, _)| (*id, vec![FUTURE_REASON.to_string()]))
                .collect();
            sorted.retain(|(_, s)| !is_future(s));
        }
        let mut reasons: Vec<Vec<String>> = vec![Vec::new(); sorted.len()];
        if empty {
            for r in &mut reasons {
                r.push("policy is empty".to_string());
            }
        } else {
            for (i, (_, s)) in sorted.iter().enumerate() {
                for l in &p.tags {
                    if l.iter().all(|t| s.tags.iter().any(|x| x == t)) {
                        reasons[i].push(format!("has tags [{}]", l.join(", ")));
                    }
                }
            }
            if let Some(d) = within {
                let newest = sorted
                    .iter()
                    .filter(|(_, s)| s.time_ns < now_ns)
                    .max_by_key(|(_, s)| s.time_ns);
                let threshold = newest.map(|(_, s)| {
                    let (days, tod) = local_day(s.time_ns, s.tz_offset_s);
                    let (y, m, day) = civil_from_days(days);
                    let m0 = m - 1 - i64::from(d.months);
                    let y2 = y - i64::from(d.years) + m0.div_euclid(12);
                    let start = days_from_civil(y2, m0.rem_euclid(12) + 1, 1);
                    let back = start + day - 1 - i64::from(d.days) - 7 * i64::from(d.weeks);
                    i128::from(back) * DAY_NS + tod
                        - i128::from(s.tz_offset_s) * NS_PER_SEC
                        - i128::from(d.hours) * NS_PER_HOUR
                });
                for (i, (_, s)) in sorted.iter().enumerate() {
                    if threshold.is_none_or(|t| i128::from(s.time_ns) > t) {
                        reasons[i].push(format!("within {d}"));
                    }
                }
            }
            for (count, rule, name) in counts {
                let Some(count) = live(count) else { continue };
                let values: Vec<_> = sorted
                    .iter()
                    .enumerate()
                    .map(|(nr, (_, s))| reference_bucket(rule, nr, s.time_ns, s.tz_offset_s))
                    .collect();
                // First index of each distinct value, in order.
                let mut firsts: Vec<usize> = Vec::new();
                for (i, v) in values.iter().enumerate() {
                    if !values[..i].contains(v) {
                        firsts.push(i);
                    }
                }
                for &i in firsts.iter().take(count) {
                    reasons[i].push(format!("{name} snapshot"));
                }
                let Some(oldest) = sorted.len().checked_sub(1) else {
                    continue;
                };
                if count > firsts.len() && !firsts.contains(&oldest) {
                    reasons[oldest].push(format!("oldest {name} snapshot"));
                }
            }
        }
        future_part
            .into_iter()
            .chain(sorted.iter().map(|(id, _)| *id).zip(reasons))
            .collect()
    }

    fn count_strategy() -> impl Strategy<Value = Option<Count>> {
        prop_oneof![
            2 => Just(None),
            4 => (0u32..6).prop_map(|n| Some(Count::N(n))),
            1 => Just(Some(Count::Unlimited)),
        ]
    }

    fn duration_strategy() -> impl Strategy<Value = Option<KeepDuration>> {
        prop_oneof![
            2 => Just(None),
            3 => (0u32..2, 0u32..14, 0u32..3, 0u32..40, 0u32..50).prop_map(
                |(years, months, weeks, days, hours)| Some(KeepDuration {
                    years,
                    months,
                    weeks,
                    days,
                    hours
                })
            ),
        ]
    }

    const TAGS: [&str; 3] = ["a", "b", "c"];

    fn tag_set(bits: u8) -> Vec<String> {
        (0..3)
            .filter(|i| bits & (1 << i) != 0)
            .map(|i| TAGS[i].to_string())
            .collect()
    }

    fn policy_strategy() -> impl Strategy<Value = KeepPolicy> {
        (
            [
                count_strategy(),
                count_strategy(),
                count_strategy(),
                count_strategy(),
                count_strategy(),
                count_strategy(),
            ],
            duration_strategy(),
            prop_oneof![
                3 => Just(vec![]),
                1 => proptest::collection::vec(0u8..8, 1..3),
            ],
        )
            .prop_map(
                |([last, hourly, daily, weekly, monthly, yearly], within, tags)| KeepPolicy {
                    last,
                    hourly,
                    daily,
                    weekly,
                    monthly,
                    yearly,
                    within,
                    tags: tags.into_iter().map(tag_set).collect(),
                },
            )
    }

    /// Snapshots around the 2020/2021 year boundary (ISO week 2020-W53), spread over a span
    /// from two days to five years, some at the same instant, all at one offset.
    fn snapshots_strategy() -> impl Strategy<Value = (Vec<(SnapshotId, Snapshot)>, i64)> {
        let spans = prop_oneof![
            Just(2 * 86_400i64),
            Just(21 * 86_400),
            Just(200 * 86_400),
            Just(5 * 366 * 86_400),
        ];
        let offsets = prop_oneof![
            Just(0i32),
            Just(-12 * H),
            Just(-5 * H),
            Just(5 * H + 1_800),
            Just(14 * H),
        ];
        (spans, offsets).prop_flat_map(|(span, off)| {
            (
                proptest::collection::vec(
                    (0..span, 0u32..1_000_000_000, any::<bool>(), 0u8..8),
                    1..40,
                ),
                prop_oneof![Just(None), (0..span).prop_map(Some)],
            )
                .prop_map(move |(raw, now)| {
                    let center = 1_609_459_200i64; // 2021-01-01T00:00:00Z
                    let start = center - span / 2;
                    let mut snaps: Vec<(SnapshotId, Snapshot)> = Vec::new();
                    for (i, (secs, sub, dup, tags)) in raw.into_iter().enumerate() {
                        let time_ns = match snaps.last() {
                            Some((_, prev)) if dup => prev.time_ns,
                            _ => (start + secs) * 1_000_000_000 + i64::from(sub),
                        };
                        let tag_names = tag_set(tags);
                        let tag_refs: Vec<&str> = tag_names.iter().map(String::as_str).collect();
                        // Ids in a different order from the times.
                        let id = SnapshotId([(i as u8).wrapping_mul(37); 32]);
                        snaps.push((id, snapshot(time_ns, off, &tag_refs)));
                    }
                    let now_ns = now.map_or(NOW, |s| (start + s) * 1_000_000_000);
                    (snaps, now_ns)
                })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn apply_matches_an_independent_reference(
            (snaps, now_ns) in snapshots_strategy(),
            p in policy_strategy(),
        ) {
            let group: Vec<(SnapshotId, &Snapshot)> = snaps.iter().map(|(id, s)| (*id, s)).collect();
            let got: Vec<(SnapshotId, Vec<String>)> = apply(&p, &group, now_ns)
                .into_iter()
                .map(|d| {
                    assert_eq!(d.keep, !d.reasons.is_empty());
                    (d.id, d.reasons)
                })
                .collect();
            prop_assert_eq!(got, reference(&p, &snaps, now_ns));
        }

        /// Forged snapshots dated in the future (any number, any tags, any offsets) change no
        /// decision about the real ones, and are themselves kept.
        #[test]
        fn forged_future_snapshots_change_no_decision_about_real_ones(
            (snaps, now_ns) in snapshots_strategy(),
            p in policy_strategy(),
            forged in proptest::collection::vec((1i64..400 * 86_400, 0u8..8, any::<bool>()), 1..30),
        ) {
            let now_ns = now_ns.min(ns("2021-06-01T00:00:00", 0));
            let real: Vec<(SnapshotId, &Snapshot)> = snaps
                .iter()
                .filter(|(_, s)| s.time_ns <= now_ns + FUTURE_TOLERANCE_NS)
                .map(|(id, s)| (*id, s))
                .collect();
            let fakes: Vec<(SnapshotId, Snapshot)> = forged
                .iter()
                .enumerate()
                .map(|(i, &(ahead_s, tags, east))| {
                    let names = tag_set(tags);
                    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                    let time = now_ns + FUTURE_TOLERANCE_NS + ahead_s * 1_000_000_000;
                    // Real ids repeat one byte; these never do.
                    let mut id = [0xffu8; 32];
                    id[1] = i as u8;
                    (SnapshotId(id), snapshot(time, if east { 14 * 3600 } else { 0 }, &refs))
                })
                .collect();
            let mut all = real.clone();
            all.extend(fakes.iter().map(|(id, s)| (*id, s)));
            let with = apply(&p, &all, now_ns);
            let without = apply(&p, &real, now_ns);
            let about_real: Vec<&Decision> = with
                .iter()
                .filter(|d| real.iter().any(|(id, _)| *id == d.id))
                .collect();
            prop_assert_eq!(about_real, without.iter().collect::<Vec<_>>());
            for d in with.iter().filter(|d| fakes.iter().any(|(id, _)| *id == d.id)) {
                prop_assert!(d.keep);
                if !p.is_empty() {
                    prop_assert_eq!(&d.reasons, &vec![FUTURE_REASON.to_string()]);
                }
            }
        }

        #[test]
        fn apply_does_not_depend_on_the_input_order(
            (snaps, now_ns) in snapshots_strategy(),
            p in policy_strategy(),
            seed in any::<u64>(),
        ) {
            let group: Vec<(SnapshotId, &Snapshot)> = snaps.iter().map(|(id, s)| (*id, s)).collect();
            let mut shuffled = group.clone();
            // A deterministic Fisher-Yates from the seed.
            let mut rng = crate::testutil::Rng(seed | 1);
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, rng.below(i as u64 + 1) as usize);
            }
            prop_assert_eq!(apply(&p, &group, now_ns), apply(&p, &shuffled, now_ns));
        }
    }
}

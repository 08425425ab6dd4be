//! Times as plan reports carry them: an instant with the UTC offset it is written with (RFC 3339
//! in JSON), an instant with its age at the time of the report, the local calendar date of an
//! instant, and short spans (`26h`, `2d 4h`) for RPOs and ages. The time zone is always the
//! caller's: nothing here looks up the system's.

use jiff::civil::Date;
use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;
use serde::{Serialize, Serializer};

/// An instant (ns since the epoch) and the offset (seconds east of UTC) it is written with;
/// serialised as RFC 3339 (`2024-03-03T10:00:00+01:00`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The instant, in nanoseconds since the Unix epoch.
    pub ns: i64,
    /// The UTC offset to write it with, in seconds east of UTC.
    pub offset_s: i32,
}

impl Stamp {
    /// `ns` written with the offset `tz` has at that instant (UTC if `ns` is out of range).
    pub fn local(ns: i64, tz: &TimeZone) -> Stamp {
        let offset_s = Timestamp::from_nanosecond(i128::from(ns))
            .map(|t| tz.to_offset(t).seconds())
            .unwrap_or(0);
        Stamp { ns, offset_s }
    }

    /// RFC 3339 with the offset; an out-of-range instant is the epoch, a bad offset UTC.
    pub fn rfc3339(&self) -> String {
        let ts = Timestamp::from_nanosecond(i128::from(self.ns)).unwrap_or(Timestamp::UNIX_EPOCH);
        let off = Offset::from_seconds(self.offset_s).unwrap_or(Offset::UTC);
        ts.display_with_offset(off).to_string()
    }
}

impl Serialize for Stamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.rfc3339())
    }
}

/// A past instant and how old it was when the report was made: `{"time": …, "age_s": N}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct When {
    /// The instant, with the offset it is written with.
    pub time: Stamp,
    /// Whole seconds from `time` to the report's "now" (negative for a time in the future).
    pub age_s: i64,
}

impl When {
    /// `time` and its age at `now_ns` (nanoseconds since the Unix epoch).
    pub fn new(time: Stamp, now_ns: i64) -> When {
        When {
            time,
            age_s: age_s(time.ns, now_ns),
        }
    }
}

/// Whole seconds from `ns` to `now_ns`.
pub(crate) fn age_s(ns: i64, now_ns: i64) -> i64 {
    now_ns.saturating_sub(ns) / 1_000_000_000
}

/// The calendar date in `tz` at instant `ns`.
pub(crate) fn local_date(ns: i64, tz: &TimeZone) -> Option<Date> {
    Timestamp::from_nanosecond(i128::from(ns))
        .ok()
        .map(|t| t.to_zoned(tz.clone()).date())
}

/// `45s`, `12m`, `3h 12m`, `26h`, `2d 4h`: the two largest units, a zero second one left out.
pub fn span(secs: i64) -> String {
    let s = secs.max(0);
    let (big, small) = match s {
        0..=59 => return format!("{s}s"),
        60..=3599 => return format!("{}m", s / 60),
        3600..=172_799 => ((s / 3600, 'h'), (s % 3600 / 60, 'm')),
        _ => ((s / 86_400, 'd'), (s % 86_400 / 3600, 'h')),
    };
    if small.0 == 0 {
        format!("{}{}", big.0, big.1)
    } else {
        format!("{}{} {}{}", big.0, big.1, small.0, small.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_show_the_two_largest_units_and_drop_a_zero_second_one() {
        assert_eq!(span(-5), "0s");
        assert_eq!(span(45), "45s");
        assert_eq!(span(12 * 60 + 59), "12m");
        assert_eq!(span(3 * 3600 + 12 * 60), "3h 12m");
        assert_eq!(span(26 * 3600), "26h");
        assert_eq!(span(47 * 3600 + 59 * 60), "47h 59m");
        assert_eq!(span(2 * 86_400 + 4 * 3600 + 59), "2d 4h");
        assert_eq!(span(3 * 86_400), "3d");
    }

    #[test]
    fn a_stamp_is_written_with_the_offset_of_its_zone_at_that_instant() {
        let tz = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").expect("a POSIX zone");
        let winter = 1_704_103_200 * 1_000_000_000; // 2024-01-01T10:00:00Z
        let summer = 1_719_828_000 * 1_000_000_000; // 2024-07-01T10:00:00Z
        assert_eq!(
            Stamp::local(winter, &tz).rfc3339(),
            "2024-01-01T11:00:00+01:00"
        );
        assert_eq!(
            Stamp::local(summer, &tz).rfc3339(),
            "2024-07-01T12:00:00+02:00"
        );
        assert_eq!(
            serde_json::to_string(&When::new(
                Stamp::local(winter, &TimeZone::UTC),
                winter + 90_000_000_000
            ))
            .expect("json"),
            r#"{"time":"2024-01-01T10:00:00+00:00","age_s":90}"#
        );
    }

    #[test]
    fn the_local_date_follows_the_zone() {
        let tz = TimeZone::fixed(Offset::constant(2));
        let late = 1_704_150_000 * 1_000_000_000; // 2024-01-01T23:00:00Z
        assert_eq!(local_date(late, &tz), Some(jiff::civil::date(2024, 1, 2)));
        assert_eq!(
            local_date(late, &TimeZone::UTC),
            Some(jiff::civil::date(2024, 1, 1))
        );
    }
}

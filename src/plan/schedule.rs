//! Which days a plan runs which mode, and when it prunes: the day rules of `schedule.full` and
//! `schedule.differential` (parsed and matched against a local date), the mode of a day, and
//! the prune cadence. Calendar dates only: the caller says which day it is.

use jiff::civil::{Date, Weekday};

use super::{Day, DayRule, Plan, PruneWhen};
use crate::snapshot::BackupMode;

fn parse_weekday(s: &str) -> Option<Weekday> {
    Some(match s {
        "monday" | "mon" => Weekday::Monday,
        "tuesday" | "tue" => Weekday::Tuesday,
        "wednesday" | "wed" => Weekday::Wednesday,
        "thursday" | "thu" => Weekday::Thursday,
        "friday" | "fri" => Weekday::Friday,
        "saturday" | "sat" => Weekday::Saturday,
        "sunday" | "sun" => Weekday::Sunday,
        _ => return None,
    })
}

/// Parses a day rule list (module doc, "Day rules").
pub fn parse_days(s: &str) -> Result<DayRule, String> {
    let text = s.trim().to_ascii_lowercase();
    if text == "never" {
        return Ok(DayRule::default());
    }
    let mut days = Vec::new();
    for part in text.split(',').map(str::trim) {
        let day = parse_day(part).ok_or_else(|| {
            format!(
                "{part:?} is not a day rule (use never, daily, a weekday such as sunday, \
                 first-sunday … fourth-sunday, last-sunday, monthly:N or monthly:last)"
            )
        })?;
        days.push(day);
    }
    Ok(DayRule(days))
}

fn parse_day(s: &str) -> Option<Day> {
    if s == "always" || s == "daily" {
        return Some(Day::Every);
    }
    if let Some(w) = parse_weekday(s) {
        return Some(Day::Weekday(w));
    }
    if let Some(n) = s.strip_prefix("monthly:") {
        if n.trim() == "last" {
            return Some(Day::LastOfMonth);
        }
        let n: i8 = n.trim().parse().ok()?;
        return (1..=31).contains(&n).then_some(Day::MonthDay(n));
    }
    let (nth, wd) = s.split_once('-')?;
    let n = match nth {
        "first" | "1st" => 1,
        "second" | "2nd" => 2,
        "third" | "3rd" => 3,
        "fourth" | "4th" => 4,
        "last" => -1,
        _ => return None,
    };
    Some(Day::NthWeekday(n, parse_weekday(wd)?))
}

impl std::str::FromStr for PruneWhen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "always" => PruneWhen::Always,
            "daily" => PruneWhen::Daily,
            "weekly" => PruneWhen::Weekly,
            "monthly" => PruneWhen::Monthly,
            "never" => PruneWhen::Never,
            _ => {
                return Err(format!(
                    "{s:?} is not always, daily, weekly, monthly or never"
                ))
            }
        })
    }
}

impl PruneWhen {
    /// The cadence as the plan file writes it: `always`, `daily`, `weekly`, `monthly` or
    /// `never` (also `plan status`'s and `plan run`'s JSON).
    pub fn name(self) -> &'static str {
        match self {
            PruneWhen::Always => "always",
            PruneWhen::Daily => "daily",
            PruneWhen::Weekly => "weekly",
            PruneWhen::Monthly => "monthly",
            PruneWhen::Never => "never",
        }
    }

    /// Whether a run on `today` prunes, given the local date of the last prune (by calendar
    /// dates, so a daily timer's jitter does not push a weekly prune to the eighth day).
    pub fn is_due(self, last: Option<Date>, today: Date) -> bool {
        let Some(last) = last else {
            return self != PruneWhen::Never;
        };
        match self {
            PruneWhen::Always => true,
            PruneWhen::Never => false,
            PruneWhen::Daily => today > last,
            PruneWhen::Weekly => last
                .checked_add(jiff::Span::new().days(7))
                .is_ok_and(|due| today >= due),
            PruneWhen::Monthly => last
                .checked_add(jiff::Span::new().months(1))
                .is_ok_and(|due| today >= due),
        }
    }
}

impl Day {
    /// Whether this rule matches the local calendar date `date`.
    pub fn matches(self, date: Date) -> bool {
        match self {
            Day::Every => true,
            Day::Weekday(w) => date.weekday() == w,
            Day::NthWeekday(n, w) => date.nth_weekday_of_month(n, w).is_ok_and(|d| d == date),
            Day::MonthDay(n) => date.day() == n.min(date.days_in_month()),
            Day::LastOfMonth => date.day() == date.days_in_month(),
        }
    }
}

impl DayRule {
    /// Whether any of its rules matches the local calendar date `date` (never, if it has none).
    pub fn matches(&self, date: Date) -> bool {
        self.0.iter().any(|d| d.matches(date))
    }

    /// Whether it matches no day (`never`, the default).
    pub fn is_never(&self) -> bool {
        self.0.is_empty()
    }
}

/// The backup mode of a run of `plan` on local date `date`.
pub fn mode_for(plan: &Plan, date: Date) -> BackupMode {
    if plan.schedule.full.matches(date) {
        BackupMode::Full
    } else if plan.schedule.differential.matches(date) {
        BackupMode::Differential
    } else {
        BackupMode::Incremental
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    use crate::plan::config::tests::plan_with;

    fn schedule(full: &str, differential: &str) -> Plan {
        plan_with(&format!(
            "[plans.p.schedule]\nfull = {full:?}\ndifferential = {differential:?}\n"
        ))
        .expect("valid schedule")
    }

    #[test]
    fn first_sunday_is_full_and_other_days_incremental() {
        let p = schedule("first-sunday", "never");
        // March 2024: Sundays on the 3rd, 10th, 17th, 24th, 31st.
        assert_eq!(mode_for(&p, date(2024, 3, 3)), BackupMode::Full);
        assert_eq!(mode_for(&p, date(2024, 3, 10)), BackupMode::Incremental);
        assert_eq!(mode_for(&p, date(2024, 3, 4)), BackupMode::Incremental);
        assert_eq!(mode_for(&p, date(2024, 3, 1)), BackupMode::Incremental);
        // September 2024 begins on a Sunday.
        assert_eq!(mode_for(&p, date(2024, 9, 1)), BackupMode::Full);
        assert_eq!(mode_for(&p, date(2024, 9, 8)), BackupMode::Incremental);
    }

    #[test]
    fn full_wins_over_differential_on_the_same_day() {
        let p = schedule("first-sunday", "sunday");
        assert_eq!(mode_for(&p, date(2024, 3, 3)), BackupMode::Full);
        assert_eq!(mode_for(&p, date(2024, 3, 10)), BackupMode::Differential);
        assert_eq!(mode_for(&p, date(2024, 3, 31)), BackupMode::Differential);
        assert_eq!(mode_for(&p, date(2024, 3, 11)), BackupMode::Incremental);
    }

    #[test]
    fn every_sunday_matches_only_sundays() {
        let p = schedule("Sunday", "never");
        let start = date(2024, 1, 1); // a Monday
        let fulls: Vec<Date> = (0..14)
            .map(|i| start.checked_add(jiff::Span::new().days(i)).expect("date"))
            .filter(|d| mode_for(&p, *d) == BackupMode::Full)
            .collect();
        assert_eq!(fulls, vec![date(2024, 1, 7), date(2024, 1, 14)]);
    }

    #[test]
    fn monthly_day_is_clamped_to_short_months() {
        let p = schedule("monthly:31", "monthly:1");
        assert_eq!(mode_for(&p, date(2024, 1, 31)), BackupMode::Full);
        assert_eq!(mode_for(&p, date(2024, 2, 29)), BackupMode::Full);
        assert_eq!(mode_for(&p, date(2023, 2, 28)), BackupMode::Full);
        assert_eq!(mode_for(&p, date(2024, 4, 30)), BackupMode::Full);
        assert_eq!(mode_for(&p, date(2024, 4, 29)), BackupMode::Incremental);
        assert_eq!(mode_for(&p, date(2024, 5, 1)), BackupMode::Differential);
        let p = schedule("monthly:15", "never");
        assert_eq!(mode_for(&p, date(2024, 2, 15)), BackupMode::Full);
        assert_eq!(mode_for(&p, date(2024, 2, 29)), BackupMode::Incremental);
    }

    #[test]
    fn last_weekday_last_day_lists_and_never() {
        let p = schedule("last-friday, monthly:last", "never");
        assert_eq!(mode_for(&p, date(2024, 3, 29)), BackupMode::Full); // last Friday
        assert_eq!(mode_for(&p, date(2024, 3, 31)), BackupMode::Full); // last day
        assert_eq!(mode_for(&p, date(2024, 3, 22)), BackupMode::Incremental);
        let p = schedule("never", "never");
        assert_eq!(mode_for(&p, date(2024, 3, 3)), BackupMode::Incremental);
        let p = schedule("daily", "never");
        assert_eq!(mode_for(&p, date(2024, 3, 5)), BackupMode::Full);
        let p = schedule("fourth-wed", "never");
        assert_eq!(mode_for(&p, date(2024, 3, 27)), BackupMode::Full);
        assert_eq!(mode_for(&p, date(2024, 3, 20)), BackupMode::Incremental);
    }

    #[test]
    fn prune_is_due_by_calendar_date() {
        let d = |day| date(2024, 3, day);
        assert!(PruneWhen::Weekly.is_due(None, d(1)));
        assert!(!PruneWhen::Weekly.is_due(Some(d(1)), d(7)));
        assert!(PruneWhen::Weekly.is_due(Some(d(1)), d(8)));
        assert!(!PruneWhen::Daily.is_due(Some(d(8)), d(8)));
        assert!(PruneWhen::Daily.is_due(Some(d(7)), d(8)));
        assert!(PruneWhen::Always.is_due(Some(d(8)), d(8)));
        assert!(!PruneWhen::Never.is_due(None, d(8)));
        assert!(!PruneWhen::Monthly.is_due(Some(d(8)), date(2024, 4, 7)));
        assert!(PruneWhen::Monthly.is_due(Some(d(8)), date(2024, 4, 8)));
    }

    #[test]
    fn a_monthly_prune_after_the_31st_is_due_on_the_last_day_of_a_shorter_month() {
        let last = date(2024, 1, 31);
        assert!(!PruneWhen::Monthly.is_due(Some(last), date(2024, 2, 28)));
        assert!(PruneWhen::Monthly.is_due(Some(last), date(2024, 2, 29)));
        assert!(PruneWhen::Weekly.is_due(Some(date(2024, 2, 26)), date(2024, 3, 4)));
        assert!(!PruneWhen::Weekly.is_due(Some(date(2024, 2, 26)), date(2024, 3, 3)));
        assert!(PruneWhen::Daily.is_due(Some(date(2023, 12, 31)), date(2024, 1, 1)));
        assert!(
            !PruneWhen::Daily.is_due(Some(date(2024, 1, 2)), date(2024, 1, 1)),
            "clock set back"
        );
    }

    #[test]
    fn day_rules_ignore_case_and_spaces_and_take_short_and_numbered_forms() {
        assert_eq!(
            parse_days(" Last-FRI , 2nd-tue,monthly: last ,SUN ").expect("rules"),
            DayRule(vec![
                Day::NthWeekday(-1, Weekday::Friday),
                Day::NthWeekday(2, Weekday::Tuesday),
                Day::LastOfMonth,
                Day::Weekday(Weekday::Sunday),
            ])
        );
        assert_eq!(parse_days("NEVER").expect("never"), DayRule::default());
        for bad in [
            "",
            "never, sunday",
            "fifth-sunday",
            "monthly:0",
            "first-",
            "sundays",
            "1st",
        ] {
            assert!(parse_days(bad).is_err(), "{bad:?} is not a day rule");
        }
    }

    #[test]
    fn a_differential_schedule_alone_leaves_every_other_day_incremental() {
        let p = schedule("never", "mon,thu");
        let week: Vec<BackupMode> = (4..=10).map(|d| mode_for(&p, date(2024, 3, d))).collect();
        use BackupMode::{Differential as D, Incremental as I};
        assert_eq!(
            week,
            [D, I, I, D, I, I, I],
            "Monday 4 March to Sunday 10 March 2024"
        );
    }
}

//! `forget` with a retention policy through the real binary, checked against an independent
//! implementation of restic's rules (snapshot_policy.go) written here from scratch.

mod common;

use std::collections::BTreeSet;

use common::*;

/// Days since 1970-01-01 → (year, month, day) (H. Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// ISO 8601 (year, week) of a day: the week's Thursday decides the year.
fn iso_week(days: i64) -> (i64, i64) {
    let weekday = (days + 3).rem_euclid(7); // 1970-01-01 was a Thursday; Monday = 0
    let thursday = days - weekday + 3;
    let (y, _, _) = civil(thursday);
    (y, (thursday - days_from_civil(y, 1, 1)) / 7 + 1)
}

#[derive(Clone, Copy)]
enum Rule {
    Last,
    Daily,
    Weekly,
    Monthly,
}

fn bucket(rule: Rule, secs: i64, index: usize) -> i64 {
    let days = secs.div_euclid(86_400);
    let (y, m, d) = civil(days);
    match rule {
        Rule::Last => index as i64,
        Rule::Daily => y * 10_000 + m * 100 + d,
        Rule::Weekly => {
            let (wy, w) = iso_week(days);
            wy * 100 + w
        }
        Rule::Monthly => y * 100 + m,
    }
}

/// restic: newest first; a rule keeps a snapshot whose bucket differs from the last it kept, or
/// the oldest one, while its count lasts.
fn expected_keep(times_newest_first: &[i64], rules: &[(Rule, u32)]) -> BTreeSet<usize> {
    let mut keep = BTreeSet::new();
    for &(rule, count) in rules {
        let mut left = count;
        let mut last: Option<i64> = None;
        for (i, &t) in times_newest_first.iter().enumerate() {
            if left == 0 {
                break;
            }
            let v = bucket(rule, t, i);
            if Some(v) != last || i == times_newest_first.len() - 1 {
                keep.insert(i);
                last = Some(v);
                left -= 1;
            }
        }
    }
    keep
}

#[test]
fn forget_keeps_exactly_what_restic_rules_keep_over_forty_snapshots() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("file"), "content");
    // 40 snapshots, 29 hours apart with a wobble, from 2026-01-03 (a Saturday) for ~7 weeks,
    // including two on one day.
    let start = days_from_civil(2026, 1, 3) * 86_400 + 9 * 3600;
    let mut times: Vec<i64> = (0..40)
        .map(|i| start + i * 29 * 3600 + (i * i % 7) * 600)
        .collect();
    times[20] = times[19] + 1800;
    for &t in &times {
        let days = t.div_euclid(86_400);
        let (y, m, d) = civil(days);
        let s = t.rem_euclid(86_400);
        let when = format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
            s / 3600,
            s / 60 % 60,
            s % 60
        );
        f.backup(&[&src], &["--time", &when]);
    }
    let before = f.cmd().args(["--json", "snapshots"]).run();
    before.ok();
    let snaps = before.json();
    let mut by_time: Vec<(i64, String)> = snaps
        .as_array()
        .expect("array")
        .iter()
        .map(|s| {
            let t = s["time"].as_str().expect("time");
            // RFC 3339 in UTC: YYYY-MM-DDTHH:MM:SS+00:00
            let (y, mo, d) = (
                t[0..4].parse().expect("y"),
                t[5..7].parse().expect("m"),
                t[8..10].parse().expect("d"),
            );
            let (h, mi, se): (i64, i64, i64) = (
                t[11..13].parse().expect("h"),
                t[14..16].parse().expect("m"),
                t[17..19].parse().expect("s"),
            );
            (
                days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se,
                s["id"].as_str().expect("id").to_string(),
            )
        })
        .collect();
    assert_eq!(by_time.len(), 40);
    by_time.sort_by_key(|b| std::cmp::Reverse(b.0));
    let times_newest_first: Vec<i64> = by_time.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        times_newest_first[0],
        *times.last().expect("times"),
        "snapshot times round-trip"
    );

    let rules = [
        (Rule::Last, 3),
        (Rule::Daily, 6),
        (Rule::Weekly, 4),
        (Rule::Monthly, 3),
    ];
    let want: BTreeSet<String> = expected_keep(&times_newest_first, &rules)
        .into_iter()
        .map(|i| by_time[i].1.clone())
        .collect();
    assert!(
        want.len() > 8 && want.len() < 30,
        "a meaningful policy: keeps {}",
        want.len()
    );

    let args = [
        "forget",
        "--keep-last",
        "3",
        "--keep-daily",
        "6",
        "--keep-weekly",
        "4",
        "--keep-monthly",
        "3",
    ];
    // A dry run changes nothing but reports the same decision.
    let dry = f.cmd().arg("--json").args(args).arg("--dry-run").run();
    dry.ok();
    let removed_dry = dry.json()["removed"].as_array().expect("removed").len();
    assert_eq!(removed_dry, 40 - want.len());
    assert_eq!(
        f.cmd()
            .args(["--json", "snapshots"])
            .run()
            .json()
            .as_array()
            .expect("a")
            .len(),
        40
    );

    let run = f.cmd().args(args).run();
    run.ok();
    let text = run.stdout();
    assert!(
        text.contains("daily snapshot")
            && text.contains("weekly snapshot")
            && text.contains("last snapshot"),
        "{text}"
    );
    let after: BTreeSet<String> = f
        .cmd()
        .args(["--json", "snapshots"])
        .run()
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(after, want);
}

#[test]
fn forget_refuses_an_empty_policy() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("file"), "content");
    f.backup(&[&src], &[]);
    let r = f.cmd().args(["forget"]).run();
    r.expect(1);
    assert!(r.stderr.contains("keep"), "{}", r.stderr);
    assert_eq!(
        f.cmd()
            .args(["--json", "snapshots"])
            .run()
            .json()
            .as_array()
            .expect("a")
            .len(),
        1
    );
}

#[test]
fn forget_with_prune_reclaims_space_and_keep_tag_protects() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a"), random_bytes(1, 500_000));
    f.backup(
        &[&src],
        &["--tag", "precious", "--time", "2026-01-01 10:00:00"],
    );
    write(src.join("a"), random_bytes(2, 500_000));
    f.backup(&[&src], &["--time", "2026-01-02 10:00:00"]);
    write(src.join("a"), random_bytes(3, 500_000));
    f.backup(&[&src], &["--time", "2026-01-03 10:00:00"]);
    let before = f.repo_bytes();
    f.cmd()
        .args([
            "forget",
            "--keep-last",
            "1",
            "--keep-tag",
            "precious",
            "--prune",
        ])
        .run()
        .ok();
    let snaps = f.cmd().args(["--json", "snapshots"]).run().json();
    let arr = snaps.as_array().expect("array");
    assert_eq!(arr.len(), 2);
    assert!(arr.iter().any(|s| s["tags"][0] == "precious"));
    assert!(
        before - f.repo_bytes() >= 500_000,
        "the middle snapshot's unique data is gone"
    );
    f.cmd().args(["check", "--read-data"]).run().ok();
}

/// Snapshots forged with dates in the future (by anyone holding a key, or a server's
/// append-only client) must not use up `--keep-last` or `--keep-daily`: each policy removes
/// exactly the real snapshots it would remove without them, keeps the forged ones, and says so.
#[test]
fn forged_future_snapshots_make_forget_remove_no_real_snapshot() {
    for (policy, kept_real) in [
        (vec!["--keep-last", "3"], 3usize),
        (vec!["--keep-daily", "7"], 7),
    ] {
        let f = Fixture::new();
        let src = f.path("src");
        write(src.join("file"), "content");
        let mut real = Vec::new();
        for day in 1..=10 {
            real.push(f.backup(&[&src], &["--time", &format!("2025-03-{day:02} 12:00:00")]));
        }
        let mut forged = Vec::new();
        for (i, when) in [
            "2099-01-01 00:00:00",
            "2099-01-02 00:00:00",
            "2099-01-03 00:00:00",
            "2099-01-04 00:00:00",
            "2099-01-05 00:00:00",
            "2099-01-06 00:00:00",
            "2099-01-07 00:00:00",
            "2099-01-08 00:00:00",
            "2150-06-01 00:00:00",
            "2040-02-29 23:59:59",
        ]
        .iter()
        .enumerate()
        {
            let tag = if i % 2 == 0 { "daily" } else { "weekly" };
            forged.push(f.backup(&[&src], &["--time", when, "--tag", tag]));
        }
        let run = f.cmd().arg("--json").arg("forget").args(&policy).run();
        run.ok();
        assert!(
            run.stderr
                .contains("10 snapshots are dated more than an hour in the future"),
            "{policy:?}: {}",
            run.stderr
        );
        let left: BTreeSet<String> = f
            .cmd()
            .args(["--json", "snapshots"])
            .run()
            .json()
            .as_array()
            .expect("array")
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_string())
            .collect();
        let want: BTreeSet<String> = forged
            .iter()
            .chain(&real[real.len() - kept_real..])
            .cloned()
            .collect();
        assert_eq!(
            left, want,
            "{policy:?}: the newest {kept_real} real snapshots and every forged one"
        );
        // check names each forged snapshot (a warning: nothing is damaged).
        let check = f.cmd().arg("check").run();
        check.ok();
        for id in &forged {
            let line = format!("snapshot {} is dated", &id[..8]);
            assert!(
                check.output().contains(&line),
                "{line:?} in {}",
                check.output()
            );
        }
        assert_eq!(
            check.output().matches("in the future").count(),
            forged.len()
        );
    }
}

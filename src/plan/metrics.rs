//! Plans' health in the Prometheus text exposition format (version 0.0.4): what
//! `plan status --prometheus` prints and `plan run` writes to a plan's `metrics_file` for
//! node_exporter's textfile collector.
//!
//! Every sample is labelled `plan` and `target`. A fact that is unknown (an absent target, no
//! snapshot yet, no drill) has no sample, rather than a made-up value.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::Path;

use super::status::{PlanStatus, TargetState};

/// One metric family: name, help, and its samples (label values, value).
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Vec<(String, String, f64)>,
}

/// The metrics of `plans`, in the text format.
pub fn prometheus(plans: &[PlanStatus]) -> String {
    let mut families = [
        ("cairn_plan_target_present", "Whether the target was present and readable (1) or not (0)."),
        ("cairn_plan_last_snapshot_age_seconds", "Seconds since the plan's newest snapshot on the target."),
        ("cairn_plan_rpo_seconds", "The plan's recovery point objective, in seconds."),
        ("cairn_plan_rpo_met", "Whether the target's newest snapshot of the plan is within the RPO (1) or not (0)."),
        ("cairn_plan_last_snapshot_size_bytes", "Size of all files in the plan's newest snapshot on the target."),
        ("cairn_plan_last_full_verification_age_seconds", "Seconds since every pack of the target was last verified at least once."),
        ("cairn_plan_verification_coverage_ratio", "Share of the target's packs with a remembered verification (0 to 1)."),
        ("cairn_plan_last_drill_projected_restore_seconds", "Projected time to restore the whole snapshot, from the target's last drill."),
        ("cairn_plan_last_drill_success", "Whether the target's last drill verified every sampled file (1) or not (0)."),
        ("cairn_plan_last_run_success", "Whether the plan's last run on the target succeeded (1) or failed (0)."),
        ("cairn_plan_last_run_age_seconds", "Seconds since the plan's last run on the target ended."),
        ("cairn_plan_alarm", "Whether the plan's status raises an alarm for the target: past its RPO, check or drill cadence (1) or not (0)."),
    ]
    .map(|(name, help)| Family {
        name,
        help,
        samples: Vec::new(),
    });
    for p in plans {
        for t in &p.targets {
            let mut put = |i: usize, v: f64| {
                families[i]
                    .samples
                    .push((p.name.clone(), t.name.clone(), v));
            };
            let flag = |b: bool| if b { 1.0 } else { 0.0 };
            put(2, p.rpo.as_secs_f64());
            let h = match &t.state {
                TargetState::Read(h) => h,
                _ => {
                    put(0, 0.0);
                    // Absent: the plan-wide RPO alarm still concerns it.
                    put(11, flag(!p.rpo_met));
                    continue;
                }
            };
            put(0, 1.0);
            put(3, flag(h.rpo_met));
            if let Some(s) = &h.last_snapshot {
                put(1, s.when.age_s as f64);
                put(4, s.size as f64);
            }
            if let Some(v) = &h.verification {
                if let Some(w) = &v.last_full {
                    put(5, w.age_s as f64);
                }
                put(6, v.coverage);
            }
            if let Some(d) = &h.last_drill {
                put(7, d.projected_full_s);
                put(8, flag(d.ok));
            }
            if let Some(r) = &h.last_run {
                if let Some(ok) = r.ok {
                    put(9, flag(ok));
                }
                put(10, r.when.age_s as f64);
            }
            put(11, flag(!p.rpo_met || h.check_overdue || h.drill_overdue));
        }
    }
    let mut out = String::new();
    for f in &families {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} gauge", f.name);
        for (plan, target, v) in &f.samples {
            let _ = writeln!(
                out,
                "{}{{plan=\"{}\",target=\"{}\"}} {}",
                f.name,
                label(plan),
                label(target),
                number(*v)
            );
        }
    }
    out
}

/// A label value with `\`, `"` and newlines escaped, as the format asks.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value: integers without a fraction, `+Inf`/`-Inf`/`NaN` spelled as the format
/// spells them.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Writes `text` to `path` whole or not at all: a temporary file in the same directory,
/// flushed to disk, then renamed over `path` (a collector never reads half a file). The file
/// is readable by all (0644), as the collector runs as another user.
pub fn write_file(path: &Path, text: &str) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = dir.join(format!(
        ".{}{}",
        name.to_string_lossy(),
        crate::backend::temp_name()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_numbers_are_written_as_the_format_asks() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NAN), "NaN");
    }

    #[test]
    fn a_metrics_file_is_replaced_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cairn.prom");
        write_file(&path, "a 1\n").expect("write");
        write_file(&path, "b 2\n").expect("rewrite");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "b 2\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("cairn.prom")],
            "no leftovers"
        );
    }
}

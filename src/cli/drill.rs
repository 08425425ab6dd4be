//! `cairn drill`

use std::path::PathBuf;

use cairn::restore::drill::{drill, history, record, DrillOptions, DrillOutcome, DrillRecord};
use serde_json::json;

use super::output::outln;
use super::{output, Ctx, EXIT_FATAL, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The snapshot to drill (default: latest)
    #[arg(default_value = "latest")]
    snapshot: String,
    /// Restore this share of the files (default 10%)
    #[arg(long, value_name = "N%", conflicts_with = "full", value_parser = parse_percent)]
    sample: Option<f64>,
    /// Restore and verify everything
    #[arg(long)]
    full: bool,
    /// Scratch directory (default: a temporary directory, removed afterwards)
    #[arg(long, value_name = "DIR")]
    target: Option<PathBuf>,
    /// List past drills instead of running one
    #[arg(long)]
    history: bool,
    #[command(flatten)]
    filter: super::FilterArgs,
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not N%"))?;
    if v > 0.0 && v <= 100.0 {
        Ok(v)
    } else {
        Err(format!("{s:?}: the sample must be in (0, 100]%"))
    }
}

fn record_json(r: &DrillRecord) -> serde_json::Value {
    json!({
        "time": output::rfc3339(r.time_ns, 0),
        "host": r.host,
        "snapshot_id": r.snapshot.to_hex(),
        "sample_percent": r.sample_percent,
        "files_total": r.files_total,
        "bytes_total": r.bytes_total,
        "files_verified": r.files_verified,
        "bytes_verified": r.bytes_verified,
        "duration_s": r.duration_s,
        "throughput_bytes_per_s": r.throughput_bps,
        "projected_full_restore_s": r.projected_full_s,
        "ok": r.ok,
        "failures": r.failures,
    })
}

fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("{secs:.1} s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let repo = ctx.open_indexed()?;
    if a.history {
        let h = history(&repo)?;
        ctx.print_warnings(&repo);
        if ctx.g.json {
            outln!(
                "{}",
                serde_json::to_string_pretty(&h.iter().map(record_json).collect::<Vec<_>>())?
            )?;
        } else {
            outln!(
                "{:<20} {:<9} {:>7} {:>10} {:>12} {:>14}  result",
                "Time",
                "Snapshot",
                "Sample",
                "Verified",
                "Throughput",
                "Full restore"
            )?;
            for r in &h {
                outln!(
                    "{:<20} {:<9} {:>6}% {:>10} {:>10}/s {:>14}  {}",
                    output::local_time(r.time_ns),
                    r.snapshot.short(),
                    r.sample_percent,
                    output::size(r.bytes_verified),
                    output::size(r.throughput_bps as u64),
                    duration(r.projected_full_s),
                    if r.ok {
                        "ok".to_string()
                    } else {
                        format!("FAILED ({} files)", r.failures.len())
                    }
                )?;
            }
            if h.is_empty() {
                outln!("no drills yet: run `cairn drill`")?;
            }
        }
        return Ok(EXIT_OK);
    }
    let _lock = ctx.read_lock(&repo, "drill")?;
    let (id, snap) = repo.find_snapshot(&a.snapshot, &a.filter.filter())?;
    let (target, _scratch) = match &a.target {
        Some(t) => {
            if std::fs::read_dir(t).is_ok_and(|mut d| d.next().is_some()) {
                anyhow::bail!("drill target {} is not empty", t.display());
            }
            (t.clone(), None)
        }
        None => {
            let tmp = tempdir()?;
            (tmp.0.clone(), Some(tmp))
        }
    };
    let opts = DrillOptions {
        sample_percent: if a.full {
            100.0
        } else {
            a.sample.unwrap_or(10.0)
        },
        target,
        seed: super::now_ns() as u64,
        now_ns: super::now_ns(),
        host: super::hostname(),
    };
    let progress = super::progress::Progress::new(ctx, "restored and verified", Default::default());
    let outcome = drill(&repo, id, &snap, &opts, &progress);
    progress.finish();
    let DrillOutcome { record: r, failed } = outcome?;
    // Recovery was proven (or not) whatever happens to the record; a read-only repository
    // (a write-protected disk) cannot keep it, which is no reason to fail the drill.
    let kept = match record(&repo, &r) {
        Ok(()) => Ok(()),
        Err(e) => {
            let e = anyhow::Error::from(e).context("recording the drill in the repository");
            if super::is_read_only(&e) {
                eprintln!(
                    "note: the repository is read-only; this drill's result could not be kept in it (`drill --history` will not list it)"
                );
                Ok(())
            } else {
                Err(e)
            }
        }
    };
    ctx.print_warnings(&repo);
    if ctx.g.json {
        let mut v = record_json(&r);
        v["message_type"] = json!("summary");
        output::json_line(&v)?;
    } else {
        for (path, why) in &failed {
            eprintln!("FAILED: {}: {}", output::esc(path), output::esc(why));
        }
        if !ctx.g.quiet {
            outln!(
                "drill of snapshot {}: restored and verified {} of {} files ({} of {}) in {}",
                id.short(),
                r.files_verified,
                r.files_total,
                output::size(r.bytes_verified),
                output::size(r.bytes_total),
                duration(r.duration_s)
            )?;
            outln!(
                "restore throughput {}/s; projected time to restore the whole snapshot: {}",
                output::size(r.throughput_bps as u64),
                duration(r.projected_full_s)
            )?;
            outln!(
                "{}",
                if r.ok {
                    "recovery proven: every byte matched"
                } else {
                    "DRILL FAILED: see the files above"
                }
            )?;
        }
    }
    kept?;
    Ok(if r.ok { EXIT_OK } else { EXIT_FATAL })
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> anyhow::Result<TempDir> {
    let mut r = [0u8; 8];
    cairn::format::crypto::random_bytes(&mut r)?;
    let p = std::env::temp_dir().join(format!("cairn-drill-{}", hex::encode(r)));
    std::fs::create_dir(&p)?;
    Ok(TempDir(p))
}

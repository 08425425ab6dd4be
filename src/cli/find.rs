//! `cairn find`: which snapshots hold entries matching glob patterns.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use anyhow::{bail, Context};
use cairn::snapshot::find::{FindOptions, Finder};
use cairn::snapshot::tree::Timestamp;
use serde_json::json;

use super::{output, Ctx, FilterArgs, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Glob patterns: without `/` matched against names, with `/` against paths (`*` and `?`
    /// stay within a component, `**` crosses them; a leading `/` anchors at the root)
    #[arg(value_name = "PATTERN", required = true)]
    patterns: Vec<String>,
    /// Search only this snapshot (`latest`, an id or a prefix); repeatable. Default: every
    /// snapshot that passes --host/--tag/--path
    #[arg(long = "snapshot", short = 's', value_name = "ID")]
    snapshots: Vec<String>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Only entries modified at or before TIME ("YYYY-MM-DD", "YYYY-MM-DD HH:MM:SS" in local
    /// time, or RFC 3339)
    #[arg(long, value_name = "TIME")]
    newest: Option<String>,
    /// Only entries modified at or after TIME (same forms as --newest)
    #[arg(long, value_name = "TIME")]
    oldest: Option<String>,
    /// Match patterns regardless of case
    #[arg(short = 'i', long)]
    ignore_case: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let opts = FindOptions {
        patterns: a.patterns.clone(),
        ignore_case: a.ignore_case,
        newest: a
            .newest
            .as_deref()
            .map(|s| parse_bound("--newest", s))
            .transpose()?,
        oldest: a
            .oldest
            .as_deref()
            .map(|s| parse_bound("--oldest", s))
            .transpose()?,
    };
    let repo = ctx.open_indexed()?;
    let filter = a.filter.filter();
    let snaps = if a.snapshots.is_empty() {
        repo.snapshots()?
            .into_iter()
            .filter(|(_, s)| filter.matches(s))
            .collect::<Vec<_>>()
    } else {
        let mut picked = Vec::new();
        for sel in &a.snapshots {
            let (id, s) = repo
                .find_snapshot(sel, &filter)
                .with_context(|| format!("--snapshot {sel}"))?;
            if !picked.iter().any(|(p, _)| *p == id) {
                picked.push((id, s));
            }
        }
        picked.sort_by(|x, y| x.1.time_ns.cmp(&y.1.time_ns).then(x.0.cmp(&y.0)));
        picked
    };
    ctx.print_warnings(&repo);
    let mut finder = Finder::new(&repo, &opts, Some(ctx.cancel.clone()))?;
    let mut out = output::stdout();
    let mut json_out = Vec::new();
    let mut total = 0usize;
    let mut with_matches = 0usize;
    for (id, s) in &snaps {
        let found = finder
            .search(s.tree)
            .with_context(|| format!("searching snapshot {}", id.short()))?;
        if found.is_empty() {
            continue;
        }
        total += found.len();
        with_matches += 1;
        if ctx.g.json {
            let matches: Vec<_> = found
                .iter()
                .map(|f| {
                    let mut v = json!({
                        "path": null,
                        "type": f.kind.name(),
                        "size": f.size,
                        "mtime": output::rfc3339_parts(f.mtime.0, f.mtime.1),
                        "mode": f.mode,
                    });
                    output::json_name(&mut v, "path", f.path.as_os_str().as_bytes());
                    v
                })
                .collect();
            json_out.push(json!({
                "snapshot": id.to_hex(),
                "short_id": id.short(),
                "time": output::rfc3339(s.time_ns, s.tz_offset_s),
                "host": s.host,
                "paths": s.paths,
                "matches": matches,
            }));
            continue;
        }
        writeln!(
            out,
            "Found in snapshot {} from {} ({}):",
            id.short(),
            output::local_time(s.time_ns),
            output::esc(&s.host)
        )?;
        for f in &found {
            writeln!(
                out,
                "  {} {:>12} {}  {}",
                output::mode_string(f.kind.letter(), f.mode),
                f.size,
                output::local_time(
                    f.mtime
                        .0
                        .saturating_mul(1_000_000_000)
                        .saturating_add(f.mtime.1 as i64)
                ),
                output::esc(&f.path)
            )?;
        }
    }
    if ctx.g.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&json_out)?)?;
    } else if !ctx.g.quiet {
        eprintln!(
            "{total} matches in {with_matches} of {} snapshots searched",
            snaps.len()
        );
    }
    out.flush()?;
    Ok(EXIT_OK)
}

/// `YYYY-MM-DD` (midnight at its start), `YYYY-MM-DD HH:MM:SS` (both local time) or RFC 3339.
fn parse_bound(option: &str, s: &str) -> anyhow::Result<Timestamp> {
    let tz = jiff::tz::TimeZone::system();
    let ts = if let Ok(dt) = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", s) {
        dt.to_zoned(tz)
            .with_context(|| format!("{option} {s:?}"))?
            .timestamp()
    } else if let Ok(d) = jiff::civil::Date::strptime("%Y-%m-%d", s) {
        d.to_zoned(tz)
            .with_context(|| format!("{option} {s:?}"))?
            .timestamp()
    } else if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        ts
    } else {
        bail!("{option} {s:?} is not \"YYYY-MM-DD\", \"YYYY-MM-DD HH:MM:SS\" or RFC 3339");
    };
    let ns = ts.as_nanosecond();
    let secs = i64::try_from(ns.div_euclid(1_000_000_000))
        .with_context(|| format!("{option} {s:?} is out of range"))?;
    Ok(Timestamp(secs, ns.rem_euclid(1_000_000_000) as u32))
}

//! `cairn snapshots`

use serde_json::json;

use super::output::outln;
use super::{output, Ctx, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    filter: super::FilterArgs,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    let filter = a.filter.filter();
    let snaps: Vec<_> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| filter.matches(s))
        .collect();
    ctx.print_warnings(&repo);
    if ctx.g.json {
        let arr: Vec<_> = snaps
            .iter()
            .map(|(id, s)| {
                json!({
                    "id": id.to_hex(),
                    "short_id": id.short(),
                    "time": output::rfc3339(s.time_ns, s.tz_offset_s),
                    "host": s.host,
                    "user": s.user,
                    "paths": s.paths,
                    "tags": s.tags,
                    "mode": s.mode.name(),
                    "partial": s.partial,
                    "parent": s.parent.map(|p| p.to_hex()),
                    "original": s.original.map(|o| o.to_hex()),
                    "tree": s.tree.to_string(),
                    "summary": s.summary,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&arr)?)?;
        return Ok(EXIT_OK);
    }
    let rows: Vec<[String; 7]> = snaps
        .iter()
        .map(|(id, s)| {
            [
                id.short(),
                output::local_time(s.time_ns),
                output::esc(&s.host).into_owned(),
                s.tags
                    .iter()
                    .map(|t| output::esc(t))
                    .collect::<Vec<_>>()
                    .join(","),
                if s.partial {
                    format!("{} (partial)", s.mode.name())
                } else {
                    s.mode.name().to_string()
                },
                s.paths
                    .first()
                    .map(|p| output::esc(p).into_owned())
                    .unwrap_or_default(),
                output::size(s.summary.total_bytes_processed),
            ]
        })
        .collect();
    let header = ["ID", "Time", "Host", "Tags", "Mode", "Paths", "Size"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 7]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 6 {
                s.push_str(&format!("{c:>w$}", w = widths[i]));
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    outln!("{}", line(header))?;
    outln!("{}", "-".repeat(widths.iter().sum::<usize>() + 12))?;
    for ((_, s), r) in snaps.iter().zip(&rows) {
        outln!(
            "{}",
            line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6]])
        )?;
        for extra in s.paths.iter().skip(1) {
            let extra = output::esc(extra);
            let blank = ["", "", "", "", "", &extra, ""];
            outln!("{}", line(blank))?;
        }
    }
    outln!("{} snapshots", snaps.len())?;
    Ok(EXIT_OK)
}

//! `cairn forget`

use cairn::policy::{self, Count, GroupBy, KeepDuration, KeepPolicy};
use cairn::repo::{select_snapshot, SnapshotFilter};
use serde_json::json;

use super::output::outln;
use super::{output, prune, Ctx, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshots to remove by id (instead of, or besides, a policy)
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    /// Keep the N newest snapshots
    #[arg(long, value_name = "N")]
    keep_last: Option<Count>,
    /// Keep the newest snapshot of each of the last N hours that have one
    #[arg(long, value_name = "N")]
    keep_hourly: Option<Count>,
    /// Keep the newest snapshot of each of the last N days that have one
    #[arg(long, value_name = "N")]
    keep_daily: Option<Count>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one
    #[arg(long, value_name = "N")]
    keep_weekly: Option<Count>,
    /// Keep the newest snapshot of each of the last N months that have one
    #[arg(long, value_name = "N")]
    keep_monthly: Option<Count>,
    /// Keep the newest snapshot of each of the last N years that have one
    #[arg(long, value_name = "N")]
    keep_yearly: Option<Count>,
    /// Keep snapshots newer than DURATION (e.g. 1y2m3d4h) before the newest one
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<KeepDuration>,
    /// Keep snapshots with this tag (T1,T2: with all of them); repeatable
    #[arg(long, value_name = "T")]
    keep_tag: Vec<String>,
    /// Group snapshots by any of host, paths, tags (default host,paths)
    #[arg(long, value_name = "host,paths,tags", default_value = "host,paths")]
    group_by: GroupBy,
    #[command(flatten)]
    filter: super::FilterArgs,
    /// Only say what would be removed
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Run prune afterwards
    #[arg(long)]
    prune: bool,
    /// With --prune: repack packs with more than this percentage unused
    #[arg(long, value_name = "PERCENT", default_value_t = 5.0)]
    max_unused: f64,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    let policy = KeepPolicy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
        yearly: a.keep_yearly,
        within: a.keep_within,
        tags: a
            .keep_tag
            .iter()
            .map(|t| policy::parse_tag_list(t))
            .collect(),
    };
    if a.snapshots.is_empty() && policy.is_empty() {
        anyhow::bail!(
            "no snapshots and no keep rule given: forget would remove nothing (or everything); \
             name snapshots, or give at least one --keep-* rule"
        );
    }
    let mut repo = ctx.open()?;
    let _lock = if a.dry_run {
        None
    } else {
        Some(ctx.lock(&repo, true, "forget")?)
    };
    let all = repo.snapshots()?;
    ctx.print_warnings(&repo);
    let filter = a.filter.filter();

    let mut remove = Vec::new();
    let mut groups_json = Vec::new();
    let mut future = 0usize;
    for sel in &a.snapshots {
        let (id, _) = select_snapshot(all.clone(), sel, &SnapshotFilter::default())?;
        remove.push(id);
    }
    if !policy.is_empty() {
        let considered: Vec<_> = all
            .iter()
            .filter(|(_, s)| filter.matches(s))
            .map(|(id, s)| (*id, s))
            .collect();
        let groups = policy::group(&considered, a.group_by);
        for (key, members) in &groups {
            let decisions = policy::apply(&policy, members, super::now_ns());
            let by_id: std::collections::HashMap<_, _> =
                members.iter().map(|(id, s)| (*id, *s)).collect();
            if !ctx.g.json && !ctx.g.quiet {
                outln!("snapshots for {key}: {policy}")?;
                outln!("{:<9} {:<20} {:<9} Reasons", "ID", "Time", "Action")?;
            }
            let mut rows = Vec::new();
            for d in &decisions {
                let s = by_id[&d.id];
                if d.reasons.iter().any(|r| r == policy::FUTURE_REASON) {
                    future += 1;
                }
                if !d.keep {
                    remove.push(d.id);
                }
                rows.push(json!({
                    "id": d.id.to_hex(),
                    "short_id": d.id.short(),
                    "time": output::rfc3339(s.time_ns, s.tz_offset_s),
                    "keep": d.keep,
                    "reasons": d.reasons,
                }));
                if !ctx.g.json && !ctx.g.quiet {
                    outln!(
                        "{:<9} {:<20} {:<9} {}",
                        d.id.short(),
                        output::local_time(s.time_ns),
                        if d.keep { "keep" } else { "remove" },
                        d.reasons.join(", ")
                    )?;
                }
            }
            if !ctx.g.json && !ctx.g.quiet {
                let kept = decisions.iter().filter(|d| d.keep).count();
                outln!("{kept} kept, {} removed\n", decisions.len() - kept)?;
            }
            groups_json.push(json!({"group": key.to_string(), "snapshots": rows}));
        }
    }
    if future > 0 {
        // Said even with --quiet or --json: a forged snapshot is an attack in progress.
        eprintln!(
            "warning: {future} snapshot{} dated more than an hour in the future: kept, and counted by \
             no --keep rule (a machine whose clock is wrong, or snapshots forged to make forget \
             remove real ones; `cairn check` lists them)",
            if future == 1 { " is" } else { "s are" }
        );
    }
    remove.sort();
    remove.dedup();
    if !a.dry_run {
        for id in &remove {
            repo.remove_snapshot(id)?;
        }
    }
    if ctx.g.json {
        output::json_line(&json!({
            "dry_run": a.dry_run,
            "groups": groups_json,
            "removed": remove.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
        }))?;
    } else if !ctx.g.quiet {
        let verb = if a.dry_run { "would remove" } else { "removed" };
        outln!("{verb} {} snapshots", remove.len())?;
        for id in &remove {
            outln!("  {}", id.to_hex())?;
        }
    }
    if a.prune && !a.dry_run {
        let args = prune::Args {
            dry_run: false,
            max_unused: a.max_unused,
            force: false,
        };
        return prune::run_locked(ctx, &mut repo, &args);
    }
    Ok(EXIT_OK)
}

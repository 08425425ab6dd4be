//! Progress output: drawn in place on a terminal (bytes, rate), never an escape sequence in a
//! pipe, JSON-lines status objects with --json.

mod common;

use std::process::Command;

use common::*;

#[test]
fn a_backup_on_a_terminal_draws_bytes_and_rate_and_in_a_pipe_writes_no_escape_sequences() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("big"), random_bytes(1, 24 << 20));
    write(src.join("small"), "x");

    // In a pipe (the harness captures stderr through one): plain text only.
    let run = f.cmd().arg("backup").arg(&src).run();
    run.ok();
    assert!(
        !run.stderr.contains('\u{1b}'),
        "escape sequences in a pipe: {:?}",
        run.stderr
    );
    assert!(!run.stdout().contains('\u{1b}'));

    // `script` gives cairn a pseudo-terminal.
    let Some(script) = require(
        find_tool("script").map_err(|e| format!("the terminal half: {e} (Debian: bsdutils)")),
    ) else {
        return;
    };
    // Under a pseudo-terminal: the bar is drawn and redrawn with bytes and a rate.
    let cmd = format!(
        "{} -r {} backup --force {}",
        env!("CARGO_BIN_EXE_cairn"),
        f.repo.display(),
        src.display()
    );
    let out = Command::new(script)
        .args(["-qfec", &cmd, "/dev/null"])
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("XDG_CACHE_HOME", f.path("cache"))
        .env_remove("CAIRN_REPOSITORY")
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains('\u{1b}'),
        "a terminal gets a redrawn bar: {text}"
    );
    assert!(
        text.contains("MiB/s") || text.contains("KiB/s"),
        "a rate is shown: {text}"
    );
    assert!(
        text.contains("MiB/24.00 MiB") || text.contains("24.00 MiB/24.00 MiB"),
        "bytes of total: {text}"
    );
    assert!(
        text.contains("safe to unplug"),
        "the summary follows: {text}"
    );
}

#[test]
fn json_output_is_status_lines_then_one_summary_all_valid_json() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("big"), random_bytes(2, 24 << 20));
    let run = f.cmd().args(["--json", "backup"]).arg(&src).run();
    run.ok();
    let lines = run.json_lines();
    let summary = lines.last().expect("lines");
    assert_eq!(summary["message_type"], "summary");
    assert_eq!(summary["durable"], true);
    for l in &lines[..lines.len() - 1] {
        assert_eq!(l["message_type"], "status", "{l}");
        assert!(l["bytes_done"].is_u64() && l["total_bytes"].is_u64(), "{l}");
    }
    assert!(!run.stderr.contains('\u{1b}'));
}

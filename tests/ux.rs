//! What users meet first: help with examples, completions, man pages, key management, and JSON
//! from every command.

mod common;

use common::*;

const COMMANDS: &[&str] = &[
    "init",
    "backup",
    "snapshots",
    "ls",
    "restore",
    "diff",
    "stats",
    "prune",
    "forget",
    "check",
    "unlock",
    "key",
    "repair",
    "drill",
    "completions",
    "man",
    "plan",
    "copy",
    "find",
    "dump",
    "tag",
    "rewrite",
    "mount",
    "serve",
];

/// The commands `cairn --help` lists (without `help` itself).
fn listed_commands() -> Vec<String> {
    let run = TestCommand::bare().arg("--help").run();
    run.ok();
    run.stdout()
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A description that wraps continues on lines indented further.
        .filter(|l| !l[2..].starts_with(' '))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn every_command_has_help_with_an_example_and_there_is_a_version() {
    let mut listed = listed_commands();
    let mut known: Vec<String> = COMMANDS.iter().map(|c| c.to_string()).collect();
    listed.sort();
    known.sort();
    assert_eq!(
        listed, known,
        "COMMANDS is every command `cairn --help` lists"
    );
    for c in COMMANDS {
        let run = TestCommand::bare().args([c, "--help"]).run();
        run.ok();
        assert!(
            run.stdout().contains("Example"),
            "{c} --help has an example:\n{}",
            run.stdout()
        );
    }
    let run = TestCommand::bare().arg("--version").run();
    run.ok();
    assert!(run.stdout().starts_with("cairn "));
}

#[test]
fn completions_and_man_pages_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let run = TestCommand::bare().args(["completions", shell]).run();
        run.ok();
        let text = run.stdout();
        assert!(
            text.contains("backup") && text.contains("restore"),
            "{shell}: {text}"
        );
    }
    let dir = tempfile::tempdir().expect("tmp");
    TestCommand::bare().arg("man").arg(dir.path()).run().ok();
    let page = std::fs::read_to_string(dir.path().join("cairn.1")).expect("cairn.1");
    assert!(page.contains(".TH"), "roff: {page}");
    assert!(dir.path().join("cairn-backup.1").exists());
}

#[test]
fn keys_can_be_added_listed_changed_and_removed_but_never_the_last() {
    let f = Fixture::new();
    let src = f.path("src");
    write(src.join("a"), "a");
    f.backup(&[&src], &[]);
    let second = f.path("second-password");
    write(&second, "second password\n");
    f.cmd()
        .args(["key", "add", "--kdf-memory-mib", "8", "--new-password-file"])
        .arg(&second)
        .run()
        .ok();
    let keys = f.cmd().args(["--json", "key", "list"]).run().json();
    let keys = keys.as_array().expect("array");
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys.iter().filter(|k| k["current"] == true).count(),
        1,
        "the key in use is marked"
    );
    // The second password opens the repository.
    f.cmd_without_password()
        .env("CAIRN_PASSWORD", "second password")
        .arg("snapshots")
        .run()
        .ok();

    // Change the first password; the old one stops working, the new one works.
    let third = f.path("third-password");
    write(&third, "third password");
    f.cmd()
        .args([
            "key",
            "passwd",
            "--kdf-memory-mib",
            "8",
            "--new-password-file",
        ])
        .arg(&third)
        .run()
        .ok();
    f.cmd().arg("snapshots").run().expect(12);
    f.cmd_without_password()
        .env("CAIRN_PASSWORD", "third password")
        .arg("snapshots")
        .run()
        .ok();

    // Remove the third-password key while using the second one.
    let list = f
        .cmd_without_password()
        .env("CAIRN_PASSWORD", "second password")
        .args(["--json", "key", "list"])
        .run()
        .json();
    let other = list
        .as_array()
        .expect("array")
        .iter()
        .find(|k| k["current"] == false)
        .expect("another key")["id"]
        .as_str()
        .expect("id")
        .to_string();
    // The key in use cannot be removed...
    let current = list
        .as_array()
        .expect("a")
        .iter()
        .find(|k| k["current"] == true)
        .expect("cur")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let r = f
        .cmd_without_password()
        .env("CAIRN_PASSWORD", "second password")
        .args(["key", "remove", &current])
        .run();
    r.expect(1);
    // ...another one can.
    f.cmd_without_password()
        .env("CAIRN_PASSWORD", "second password")
        .args(["key", "remove", &other[..12]])
        .run()
        .ok();
    f.cmd_without_password()
        .env("CAIRN_PASSWORD", "third password")
        .arg("snapshots")
        .run()
        .expect(12);
    let list = f
        .cmd_without_password()
        .env("CAIRN_PASSWORD", "second password")
        .args(["--json", "key", "list"])
        .run()
        .json();
    assert_eq!(list.as_array().expect("a").len(), 1);
}

#[test]
fn every_command_prints_valid_json_with_json() {
    let f = Fixture::empty();
    let init = f
        .cmd()
        .args(["--json", "init", "--kdf-memory-mib", "8"])
        .run();
    init.ok();
    assert!(init.json()["repository_id"].is_string());
    let src = f.path("src");
    write(src.join("a"), "alpha");
    let a = f.backup(&[&src], &[]);
    write(src.join("b"), "beta");
    let b = f.backup(&[&src], &[]);
    let target = f.path("out");
    let target = target.to_str().expect("utf-8");
    // One JSON document each.
    for args in [
        vec!["snapshots"],
        vec!["ls", "latest"],
        vec!["diff", &a, &b],
        vec!["stats"],
        vec!["stats", "latest"],
        vec!["key", "list"],
        vec!["unlock"],
        vec!["drill", "--history"],
        vec!["forget", "--keep-last", "5", "--dry-run"],
        vec!["repair", "snapshots", "--dry-run"],
    ] {
        let run = f.cmd().arg("--json").args(&args).run();
        run.ok();
        let _ = run.json();
    }
    // JSON lines ending in a summary.
    for args in [
        vec!["restore", "latest", "--target", target],
        vec!["check", "--read-data"],
        vec!["prune"],
        vec!["drill", "--full"],
        vec!["repair", "index"],
    ] {
        let run = f.cmd().arg("--json").args(&args).run();
        run.ok();
        let lines = run.json_lines();
        assert!(!lines.is_empty(), "{args:?} printed nothing");
    }
}

/// `cairn ls latest | head`: the reader goes before the output ends. Every command that prints
/// must end quietly (no panic, no "Broken pipe" message) and still do its work: a backup whose
/// summary cannot be printed is saved all the same.
#[test]
fn every_command_ends_quietly_when_its_reader_has_gone() {
    let f = Fixture::new();
    let src = f.path("src");
    for i in 0..300 {
        write(
            src.join(format!("d{}/file-{i}.txt", i % 7)),
            format!("content {i}"),
        );
    }
    let a = f.backup(&[&src], &[]);
    write(src.join("new.txt"), "new");
    let b = f.backup(&[&src], &[]);
    let target = f.path("out");
    let target = target.to_str().expect("utf-8");
    let file = format!("latest:{}/d0/file-0.txt", src.display());
    let dir = format!("latest:{}", src.display());
    let cases: Vec<Vec<&str>> = vec![
        vec!["snapshots"],
        vec!["ls", "latest"],
        vec!["ls", "-l", "latest"],
        vec!["diff", &a, &b],
        vec!["find", "*.txt"],
        vec!["dump", &file],
        vec!["dump", &dir],
        vec!["dump", "--archive", "zip", &dir],
        vec!["stats"],
        vec!["key", "list"],
        vec!["check"],
        vec!["drill", "--history"],
        vec!["forget", "--keep-last", "5", "--dry-run"],
        vec!["restore", "latest", "--target", target, "--dry-run", "-v"],
        vec!["tag", "latest", "--add", "piped"],
        vec!["completions", "bash"],
    ];
    for args in &cases {
        for json in [false, true] {
            if json && matches!(args[0], "dump" | "completions") {
                continue;
            }
            let mut cmd = f.cmd();
            if json {
                cmd = cmd.arg("--json");
            }
            let run = cmd.args(args).closed_stdout().run();
            run.assert_no_panic();
            run.ok();
            assert!(
                !run.stderr.to_lowercase().contains("broken pipe"),
                "{args:?}: {}",
                run.stderr
            );
        }
    }
    // Work is done even when nobody reads its report.
    let before = f.cmd().args(["--json", "snapshots"]).run();
    let before = before.json().as_array().expect("array").len();
    for json in [false, true] {
        let mut cmd = f.cmd();
        if json {
            cmd = cmd.arg("--json");
        }
        let run = cmd.arg("backup").arg(&src).closed_stdout().run();
        run.assert_no_panic();
        run.ok();
    }
    let after = f.cmd().args(["--json", "snapshots"]).run();
    assert_eq!(after.json().as_array().expect("array").len(), before + 2);
}

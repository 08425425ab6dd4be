//! Backup plans through the real binary: `plan run` against rotating targets (one unplugged),
//! `plan status` reporting both, and a plan's keep rules forgetting its old snapshots.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// A temp dir with sources, a plan file and two target paths: `usb-a` (a repository from the
/// start) and `usb-b` (nothing there until [`Setup::plug_in_b`]).
struct Setup {
    f: Fixture,
    config: PathBuf,
    usb_b: PathBuf,
    src: PathBuf,
}

/// The password `usb-b` reads from this environment variable (`password_env`).
const B_PASSWORD_ENV: &str = "CAIRN_TEST_USB_B_PASSWORD";

impl Setup {
    fn new(plan_extra: &str) -> Setup {
        let f = Fixture::new();
        let src = f.path("src");
        write(src.join("a.txt"), b"first file\n");
        write(src.join("sub/b.bin"), random_bytes(7, 200_000));
        write(f.path("password"), format!("{PASSWORD}\n"));
        let usb_b = f.path("usb-b/cairn");
        let config = f.path("cairn.toml");
        write(
            &config,
            format!(
                r#"
[repositories.usb-a]
path = "repo"              # relative to this file
password_file = "password"

[repositories.usb-b]
path = "{b}"
password_env = "{B_PASSWORD_ENV}"

[plans.home]
sources = ["src"]
targets = ["usb-a", "usb-b"]
host = "plan-test-host"
tags = ["home"]
{plan_extra}
"#,
                b = usb_b.display(),
            ),
        );
        Setup {
            f,
            config,
            usb_b,
            src,
        }
    }

    /// `cairn --config FILE ...` with local caches inside the fixture and no global password.
    fn cmd(&self) -> TestCommand {
        TestCommand::bare()
            .arg("--config")
            .arg(&self.config)
            .env("XDG_CACHE_HOME", self.f.path("cache"))
            .env(B_PASSWORD_ENV, PASSWORD)
    }

    fn plan_run(&self) -> Run {
        self.cmd().args(["plan", "run", "home"]).run()
    }

    fn status(&self) -> Value {
        let run = self.cmd().args(["--json", "plan", "status"]).run();
        run.ok();
        run.json()
    }

    fn plug_in_b(&self) {
        TestCommand::bare()
            .arg("-r")
            .arg(&self.usb_b)
            .env("CAIRN_PASSWORD", PASSWORD)
            .args(["init", "--kdf-memory-mib", "8"])
            .run()
            .ok();
    }

    /// `snapshots --json` of a repository.
    fn snapshots(&self, repo: &Path) -> Vec<Value> {
        let run = TestCommand::bare()
            .arg("-r")
            .arg(repo)
            .env("CAIRN_PASSWORD", PASSWORD)
            .args(["--json", "snapshots"])
            .run();
        run.ok();
        run.json().as_array().unwrap().clone()
    }
}

fn target<'a>(status: &'a Value, plan: &str, name: &str) -> &'a Value {
    let p = status["plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == plan)
        .unwrap_or_else(|| panic!("plan {plan} in {status}"));
    p["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("target {name} in {p}"))
}

#[test]
fn plan_run_backs_up_to_the_present_target_and_skips_the_missing_one() {
    let s = Setup::new("check_subset = \"50%\"\n[plans.home.keep]\nlast = 10\n");
    let run = s.plan_run();
    run.ok();
    assert!(
        run.stderr.contains("target usb-b")
            && run.stderr.contains(&s.usb_b.display().to_string())
            && run.stderr.contains("not present: skipped"),
        "stderr names the missing target:\n{}",
        run.stderr
    );
    let snaps = s.snapshots(&s.f.repo);
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snaps[0]["host"], "plan-test-host");
    assert_eq!(snaps[0]["tags"], serde_json::json!(["home"]));
    assert_eq!(
        snaps[0]["paths"],
        serde_json::json!([s.src.to_string_lossy()])
    );
    assert!(!s.usb_b.exists(), "the missing target is left alone");

    let st = s.status();
    let a = target(&st, "home", "usb-a");
    assert_eq!(a["present"], true);
    assert_eq!(a["snapshots"], 1);
    assert_eq!(a["last_snapshot"]["id"], snaps[0]["id"]);
    assert!(a["last_snapshot"]["age_s"].as_i64().unwrap() < 600, "{a}");
    assert_eq!(a["rpo_met"], true);
    assert!(
        !a["last_check"].is_null(),
        "the run's check is remembered: {a}"
    );
    assert_eq!(a["last_run"]["ok"], true);
    assert!(a["last_drill"].is_null());
    assert_eq!(a["missing"], serde_json::json!([]));
    let b = target(&st, "home", "usb-b");
    assert_eq!(b["present"], false);
    assert!(
        b["last_snapshot"].is_null() && b["missing"].is_null(),
        "{b}"
    );

    // The human form says the same.
    let human = s.cmd().args(["plan", "status", "home"]).run();
    human.ok();
    let out = human.stdout();
    assert!(out.contains("usb-a") && out.contains("RPO met"), "{out}");
    assert!(
        out.contains("usb-b") && out.contains("not present"),
        "{out}"
    );

    // Plug in the second disk and run again: both get the new snapshot, at the same time.
    s.plug_in_b();
    write(s.src.join("a.txt"), b"first file, changed\n");
    s.plan_run().ok();
    assert_eq!(s.snapshots(&s.f.repo).len(), 2);
    let on_b = s.snapshots(&s.usb_b);
    assert_eq!(on_b.len(), 1);

    let st = s.status();
    let a = target(&st, "home", "usb-a");
    let b = target(&st, "home", "usb-b");
    assert_eq!(b["present"], true);
    assert_eq!(
        (a["snapshots"].clone(), b["snapshots"].clone()),
        (2.into(), 1.into())
    );
    assert_eq!(a["last_snapshot"]["time"], b["last_snapshot"]["time"]);
    assert_eq!(a["missing"], serde_json::json!([]), "usb-a lacks nothing");
    let missing = b["missing"].as_array().unwrap();
    assert_eq!(missing.len(), 1, "usb-b lacks the first snapshot: {b}");
    assert_eq!(missing[0]["on"], serde_json::json!(["usb-a"]));
    assert_eq!(missing[0]["time"], snaps[0]["time"]);
}

#[test]
fn plan_run_with_no_target_present_fails() {
    let s = Setup::new("");
    std::fs::remove_dir_all(&s.f.repo).unwrap();
    let run = s.plan_run();
    run.expect(1);
    assert!(run.stderr.contains("target usb-a") && run.stderr.contains("target usb-b"));
    assert!(
        run.stderr.contains("no target is present"),
        "{}",
        run.stderr
    );
}

#[test]
fn plan_keep_rules_forget_old_snapshots_of_this_plan_only() {
    let s = Setup::new("prune = \"always\"\n[plans.home.keep]\nlast = 2\n");
    // A snapshot of other paths in the same repository: not this plan's to forget.
    write(s.f.path("other/x"), b"someone else's\n");
    let other = s.f.backup(&[s.f.path("other")], &[]);

    let mut plan_ids = Vec::new();
    for i in 0..3 {
        write(s.src.join("a.txt"), format!("version {i}\n"));
        let run = s.cmd().args(["--json", "plan", "run", "home"]).run();
        run.ok();
        let summary = run.summary();
        assert_eq!(summary["plan"], "home");
        assert_eq!(summary["targets_present"], 1);
        let lines = run.json_lines();
        let a = lines
            .iter()
            .find(|l| l["message_type"] == "target" && l["target"] == "usb-a")
            .unwrap();
        assert_eq!(a["ok"], true, "{a}");
        assert_eq!(a["prune"]["due"], true, "prune = always: {a}");
        let b = lines
            .iter()
            .find(|l| l["message_type"] == "target" && l["target"] == "usb-b")
            .unwrap();
        assert_eq!(b["present"], false);
        plan_ids.push(a["backup"]["snapshot_id"].as_str().unwrap().to_string());
        let removed = a["forget"]["removed"].as_array().unwrap();
        assert_eq!(removed.len(), usize::from(i == 2), "run {i}: {a}");
    }
    let left: Vec<String> = s
        .snapshots(&s.f.repo)
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    assert!(left.contains(&other), "the other snapshot stays: {left:?}");
    assert!(
        !left.contains(&plan_ids[0]),
        "the oldest plan snapshot is gone"
    );
    assert!(left.contains(&plan_ids[1]) && left.contains(&plan_ids[2]));
    assert_eq!(left.len(), 3);
    // What is left is intact.
    s.f.cmd().args(["check", "--read-data"]).run().ok();
}

#[test]
fn a_bad_plan_file_is_an_error_naming_the_key() {
    let s = Setup::new("");
    write(
        &s.config,
        "[repositories.a]\npath = \"/x\"\n[plans.p]\nsources = [\"/\"]\ntargets = [\"usb-c\"]\n",
    );
    let run = s.cmd().args(["plan", "run", "p"]).run();
    run.expect(1);
    assert!(
        run.stderr.contains("plans.p.targets") && run.stderr.contains("usb-c"),
        "{}",
        run.stderr
    );
    // CAIRN_CONFIG names the file too.
    let run = TestCommand::bare()
        .env("CAIRN_CONFIG", s.f.path("nope.toml"))
        .args(["plan", "status"])
        .run();
    run.expect(1);
    assert!(run.stderr.contains("nope.toml"), "{}", run.stderr);
}

#[test]
fn an_unknown_plan_name_is_an_error_listing_the_plans() {
    let s = Setup::new("");
    let run = s.cmd().args(["plan", "run", "work"]).run();
    run.expect(1);
    assert!(
        run.stderr.contains("\"work\"") && run.stderr.contains("home"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_default_plan_file_is_under_xdg_config_home() {
    let s = Setup::new("");
    let dir = s.f.path("xdg/cairn");
    std::fs::create_dir_all(&dir).unwrap();
    // Relative paths in the file are relative to its directory, so write absolute ones here.
    let text = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("\"repo\"", &format!("{:?}", s.f.repo.display().to_string()))
        .replace(
            "\"password\"",
            &format!("{:?}", s.f.path("password").display().to_string()),
        )
        .replace("[\"src\"]", &format!("[{:?}]", s.src.display().to_string()));
    write(dir.join("cairn.toml"), text);
    let run = TestCommand::bare()
        .env("XDG_CONFIG_HOME", s.f.path("xdg"))
        .env("XDG_CACHE_HOME", s.f.path("cache"))
        .args(["--json", "plan", "status"])
        .run();
    // Nothing backed up yet: past the RPO, an alarm (exit 1), the status still printed.
    run.expect(1);
    assert_eq!(target(&run.json(), "home", "usb-a")["present"], true);
}

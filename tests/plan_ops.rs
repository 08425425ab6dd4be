//! Plans that report themselves, through the real binary: hooks around a run, a webhook and
//! healthchecks-style pings received by an HTTP server in the test, metrics read by a real
//! Prometheus text parser (Debian's python3-prometheus-client), `plan status` alarms, and
//! remote targets — S3 on Garage and SFTP on sshd, both on loopback — present or unreachable.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A temp dir with sources, a repository `repo/` (target `local`) and a plan file whose plan
/// `ops` backs up `src/` to it, with `extra` added to the plan's table (and after it).
struct Setup {
    f: Fixture,
    config: PathBuf,
    /// Read only by the remote-target test.
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    src: PathBuf,
}

impl Setup {
    fn new(extra: &str) -> Setup {
        Self::with_targets(extra, "", &["local"])
    }

    /// `repositories`: more `[repositories.NAME]` tables; `targets`: the plan's targets.
    fn with_targets(extra: &str, repositories: &str, targets: &[&str]) -> Setup {
        let f = Fixture::new();
        let src = f.path("src");
        write(src.join("a.txt"), b"first file\n");
        write(src.join("sub/b.bin"), random_bytes(11, 150_000));
        write(f.path("password"), format!("{PASSWORD}\n"));
        let config = f.path("cairn.toml");
        let targets: Vec<String> = targets.iter().map(|t| format!("{t:?}")).collect();
        write(
            &config,
            format!(
                r#"
[repositories.local]
path = "repo"
password_file = "password"
{repositories}
[plans.ops]
sources = ["src"]
targets = [{targets}]
host = "ops-host"
{extra}
"#,
                targets = targets.join(", ")
            ),
        );
        Setup { f, config, src }
    }

    fn cmd(&self) -> TestCommand {
        TestCommand::bare()
            .arg("--config")
            .arg(&self.config)
            .env("XDG_CACHE_HOME", self.f.path("cache"))
            .current_dir(self.f.tmp.path())
    }

    fn run(&self) -> Run {
        self.cmd().args(["--json", "plan", "run", "ops"]).run()
    }

    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.f.path("log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Makes the next runs fail on the target: its password file now holds a wrong one.
    fn break_password(&self) {
        write(self.f.path("password"), "not the password\n");
    }
}

/// Hooks that append a line each to `log` (in the fixture, the plan's working directory).
const HOOKS: &str = r#"
[plans.ops.hooks]
before = "echo \"before $CAIRN_PLAN [$CAIRN_TARGET] [$CAIRN_SNAPSHOT_ID] [$CAIRN_EXIT_CODE]\" >> log"
after = "echo \"after $CAIRN_PLAN [$CAIRN_TARGET] [$CAIRN_SNAPSHOT_ID] [$CAIRN_EXIT_CODE]\" >> log; cp \"$CAIRN_SUMMARY_FILE\" after-summary.json"
on_failure = "echo \"on_failure $CAIRN_PLAN [$CAIRN_EXIT_CODE]\" >> log; cp \"$CAIRN_SUMMARY_FILE\" failure-summary.json"
"#;

#[test]
fn hooks_run_in_order_and_on_failure_runs_on_a_failed_backup() {
    let s = Setup::new(HOOKS);
    let run = s.run();
    run.ok();
    let summary = run.summary();
    let id = summary["targets"][0]["backup"]["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        s.log(),
        vec![
            "before ops [local] [] []".to_string(),
            format!("after ops [local] [{id}] [0]"),
        ],
        "before, then after with the snapshot; no on_failure"
    );
    let after: Value =
        serde_json::from_slice(&std::fs::read(s.f.path("after-summary.json")).unwrap()).unwrap();
    assert_eq!(after["plan"], "ops");
    assert_eq!(after["exit_code"], 0);
    assert_eq!(after["targets"][0]["backup"]["snapshot_id"], id.as_str());
    assert_eq!(summary["hooks"][0]["hook"], "before");
    assert_eq!(summary["hooks"][1]["hook"], "after");
    assert_eq!(summary["hooks"][1]["ok"], true);

    // The target cannot be opened: the backup fails (no target backed up, no snapshot), and
    // on_failure runs after `after`.
    s.break_password();
    let run = s.run();
    run.expect(1);
    assert_eq!(
        s.log()[2..],
        [
            "before ops [local] [] []".to_string(),
            "after ops [] [] [1]".to_string(),
            "on_failure ops [1]".to_string(),
        ],
        "{:?}",
        s.log()
    );
    let failure: Value =
        serde_json::from_slice(&std::fs::read(s.f.path("failure-summary.json")).unwrap()).unwrap();
    assert_eq!(failure["exit_code"], 1);
    assert_eq!(failure["targets"][0]["ok"], false);
    assert!(
        failure["targets"][0]["error"]
            .as_str()
            .unwrap()
            .contains("local")
            || failure["targets"][0]["error"].is_string(),
        "{failure}"
    );
}

#[test]
fn a_failing_before_hook_stops_the_run_and_runs_on_failure() {
    let s = Setup::new(
        r#"
[plans.ops.hooks]
before = "echo before >> log; exit 4"
after = "echo after >> log"
on_failure = "echo \"on_failure [$CAIRN_EXIT_CODE]\" >> log"
"#,
    );
    let run = s.run();
    run.expect(1);
    assert!(
        run.stderr.contains("before hook") && run.stderr.contains("exit status 4"),
        "{}",
        run.stderr
    );
    assert_eq!(s.log(), vec!["before", "on_failure [1]"]);
    let summary = run.summary();
    assert_eq!(summary["exit_code"], 1);
    assert!(summary["error"].as_str().unwrap().contains("before hook"));
    let snaps = s.f.cmd().args(["--json", "snapshots"]).run();
    snaps.ok();
    assert_eq!(snaps.json(), serde_json::json!([]), "nothing was backed up");
}

/// One request an [`HttpServer`] received.
#[derive(Clone, Debug)]
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// An HTTP server on loopback answering 200 to everything, recording each request.
struct HttpServer {
    url: String,
    got: Arc<Mutex<Vec<Request>>>,
}

impl HttpServer {
    fn start() -> HttpServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let record = got.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                c.set_read_timeout(Some(Duration::from_secs(10))).ok();
                if let Some(r) = read_request(&mut c) {
                    record.lock().unwrap().push(r);
                }
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK");
            }
        });
        HttpServer { url, got }
    }

    fn requests(&self) -> Vec<Request> {
        self.got.lock().unwrap().clone()
    }
}

fn read_request(c: &mut std::net::TcpStream) -> Option<Request> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = c.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&data[..end]).to_string();
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        if data.len() < end + 4 + len {
            continue;
        }
        let mut first = head.lines().next()?.split(' ');
        return Some(Request {
            method: first.next()?.to_string(),
            path: first.next()?.to_string(),
            body: data[end + 4..end + 4 + len].to_vec(),
        });
    }
}

#[test]
fn a_webhook_receives_the_summary_and_healthchecks_get_start_then_success_or_fail() {
    let server = HttpServer::start();
    let s = Setup::new(&format!(
        "[plans.ops.notify]\nwebhook = \"{u}/hook\"\non_success = true\nhealthcheck = \"{u}/ping/abc\"\n",
        u = server.url
    ));
    let run = s.run();
    run.ok();
    let got = server.requests();
    let calls: Vec<(String, String)> = got
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        calls,
        [
            ("GET".to_string(), "/ping/abc/start".to_string()),
            ("POST".to_string(), "/hook".to_string()),
            ("GET".to_string(), "/ping/abc".to_string()),
        ]
    );
    let posted: Value = serde_json::from_slice(&got[1].body).unwrap();
    let summary = run.summary();
    assert_eq!(posted["plan"], "ops");
    assert_eq!(posted["exit_code"], 0);
    assert_eq!(
        posted["targets"][0]["backup"]["snapshot_id"],
        summary["targets"][0]["backup"]["snapshot_id"]
    );
    assert!(posted["targets"][0]["backup"]["snapshot_id"].is_string());
    let notes = summary["notifications"].as_array().unwrap();
    assert_eq!(notes.len(), 3);
    assert!(notes.iter().all(|n| n["ok"] == true), "{summary}");

    // A failed run: start, the summary with its exit code, then the fail ping.
    s.break_password();
    s.run().expect(1);
    let got = server.requests();
    let calls: Vec<(String, String)> = got[3..]
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        calls,
        [
            ("GET".to_string(), "/ping/abc/start".to_string()),
            ("POST".to_string(), "/hook".to_string()),
            ("GET".to_string(), "/ping/abc/fail".to_string()),
        ]
    );
    let posted: Value = serde_json::from_slice(&got[4].body).unwrap();
    assert_eq!(posted["exit_code"], 1);
    assert_eq!(posted["targets"][0]["ok"], false);
}

#[test]
fn a_webhook_without_on_success_hears_only_of_failures() {
    let server = HttpServer::start();
    let s = Setup::new(&format!(
        "[plans.ops.notify]\nwebhook = \"{}/hook\"\n",
        server.url
    ));
    s.run().ok();
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    s.break_password();
    s.run().expect(1);
    let got = server.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].method.as_str(), got[0].path.as_str()),
        ("POST", "/hook")
    );
}

#[test]
fn an_undeliverable_notification_is_reported_and_never_fails_the_backup() {
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Setup::new(&format!(
        "[plans.ops.notify]\nwebhook = \"http://127.0.0.1:{port}/hook\"\non_success = true\n\
         healthcheck = \"http://127.0.0.1:{port}/ping\"\n"
    ));
    let run = s.run();
    run.ok();
    assert!(
        run.stderr.contains("not delivered") && run.stderr.contains("/hook"),
        "{}",
        run.stderr
    );
    let summary = run.summary();
    let notes = summary["notifications"].as_array().unwrap();
    assert_eq!(notes.len(), 3, "{summary}");
    assert!(notes
        .iter()
        .all(|n| n["ok"] == false && n["error"].is_string()));
    assert!(summary["targets"][0]["backup"]["snapshot_id"].is_string());
}

/// Parses Prometheus text with the reference parser (python3-prometheus-client): each sample
/// as `name{plan,target}` → value. None after [`missing`] when the parser is not installed.
fn prometheus_parse(text: &str) -> Option<BTreeMap<(String, String, String), f64>> {
    let python = Path::new("/usr/bin/python3");
    let have = python.is_file()
        && Command::new(python)
            .args(["-c", "import prometheus_client.parser"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !have {
        missing("/usr/bin/python3 with prometheus_client is not installed (apt-get install python3-prometheus-client)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("metrics.prom");
    write(&input, text);
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    assert fam.type == "gauge", fam
    assert fam.documentation, fam
    for s in fam.samples:
        out.append([s.name, s.labels.get("plan"), s.labels.get("target"), s.value])
print(json.dumps(out))
"#;
    let out = Command::new(python)
        .args(["-c", script])
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the parser rejects the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<(String, String, String, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    Some(
        rows.into_iter()
            .map(|(n, p, t, v)| ((n, p, t), v))
            .collect(),
    )
}

fn metric(m: &BTreeMap<(String, String, String), f64>, name: &str, target: &str) -> Option<f64> {
    m.get(&(name.to_string(), "ops".to_string(), target.to_string()))
        .copied()
}

#[test]
fn metrics_after_a_run_are_read_by_a_prometheus_parser_with_the_right_values() {
    let s = Setup::with_targets(
        "rpo = \"2h\"\ncheck_subset = \"100%\"\nmetrics_file = \"textfile/cairn.prom\"\n",
        "[repositories.usb]\npath = \"usb-not-plugged-in\"\n",
        &["local", "usb"],
    );
    std::fs::create_dir_all(s.f.path("textfile")).unwrap();
    let run = s.run();
    run.ok();
    let size = 11 + 150_000;
    // A drill on the repository, for the projected restore time.
    let drill = s.f.cmd().args(["--json", "drill", "--full"]).run();
    drill.ok();
    let projected = drill.json_lines().last().unwrap()["projected_full_restore_s"]
        .as_f64()
        .unwrap();

    let status = s.cmd().args(["plan", "status", "--prometheus"]).run();
    status.ok();
    let Some(m) = prometheus_parse(&status.stdout()) else {
        return;
    };
    assert_eq!(metric(&m, "cairn_plan_rpo_seconds", "local"), Some(7200.0));
    assert_eq!(metric(&m, "cairn_plan_target_present", "local"), Some(1.0));
    assert_eq!(metric(&m, "cairn_plan_target_present", "usb"), Some(0.0));
    assert_eq!(metric(&m, "cairn_plan_rpo_met", "local"), Some(1.0));
    let age = metric(&m, "cairn_plan_last_snapshot_age_seconds", "local").unwrap();
    assert!((0.0..600.0).contains(&age), "{age}");
    assert_eq!(
        metric(&m, "cairn_plan_last_snapshot_size_bytes", "local"),
        Some(size as f64)
    );
    assert_eq!(
        metric(&m, "cairn_plan_verification_coverage_ratio", "local"),
        Some(1.0),
        "the run's check read every pack"
    );
    let verified = metric(&m, "cairn_plan_last_full_verification_age_seconds", "local").unwrap();
    assert!((0.0..600.0).contains(&verified), "{verified}");
    let p = metric(
        &m,
        "cairn_plan_last_drill_projected_restore_seconds",
        "local",
    )
    .unwrap();
    assert!(
        (p - projected).abs() < 1e-9 * projected.max(1.0),
        "{p} vs {projected}"
    );
    assert_eq!(
        metric(&m, "cairn_plan_last_drill_success", "local"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "cairn_plan_last_run_success", "local"),
        Some(1.0)
    );
    assert_eq!(metric(&m, "cairn_plan_alarm", "local"), Some(0.0));
    assert_eq!(
        metric(&m, "cairn_plan_last_snapshot_age_seconds", "usb"),
        None,
        "nothing is made up for an absent target"
    );

    // The run wrote the same metrics to its textfile-collector path, whole.
    let written = std::fs::read_to_string(s.f.path("textfile/cairn.prom")).unwrap();
    let w = prometheus_parse(&written).unwrap();
    assert_eq!(
        metric(&w, "cairn_plan_last_snapshot_size_bytes", "local"),
        Some(size as f64)
    );
    assert_eq!(
        metric(&w, "cairn_plan_last_run_success", "local"),
        Some(1.0)
    );
    let leftovers: Vec<_> = std::fs::read_dir(s.f.path("textfile"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");

    // A failed run says so in the file.
    s.break_password();
    s.run().expect(1);
    let written = std::fs::read_to_string(s.f.path("textfile/cairn.prom")).unwrap();
    let w = prometheus_parse(&written).unwrap();
    assert_eq!(
        metric(&w, "cairn_plan_target_present", "local"),
        Some(0.0),
        "a repository that cannot be opened is not readable"
    );
}

#[test]
fn plan_status_exits_1_past_the_rpo_or_the_check_cadence() {
    let s = Setup::new("rpo = \"3s\"\n");
    s.run().ok();
    let st = s.cmd().args(["--json", "plan", "status"]).run();
    st.ok();
    assert_eq!(st.json()["ok"], true);
    assert_eq!(st.json()["plans"][0]["alarms"], serde_json::json!([]));
    std::thread::sleep(Duration::from_millis(3500));
    let st = s.cmd().args(["--json", "plan", "status"]).run();
    st.expect(1);
    let v = st.json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["plans"][0]["rpo_met"], false);
    assert_eq!(v["plans"][0]["targets"][0]["rpo_met"], false);
    assert!(
        v["plans"][0]["alarms"][0].as_str().unwrap().contains("RPO"),
        "{v}"
    );
    let human = s.cmd().args(["plan", "status"]).run();
    human.expect(1);
    assert!(human.stderr.contains("alarm:"), "{}", human.stderr);

    // Within the RPO, but never checked while the plan wants a check every day.
    let s = Setup::new("check_every = \"1d\"\ndrill_every = \"30d\"\n");
    s.run().ok();
    let st = s.cmd().args(["--json", "plan", "status"]).run();
    st.expect(1);
    let t = &st.json()["plans"][0]["targets"][0];
    assert_eq!(t["rpo_met"], true);
    assert_eq!(t["check_overdue"], true);
    assert_eq!(t["drill_overdue"], true);
    // A check and a drill later, all is well.
    s.f.cmd().args(["check", "--read-data"]).run().ok();
    s.f.cmd().args(["drill"]).run().ok();
    let st = s.cmd().args(["--json", "plan", "status"]).run();
    st.ok();
    let t = &st.json()["plans"][0]["targets"][0];
    assert_eq!(
        (t["check_overdue"].clone(), t["drill_overdue"].clone()),
        (false.into(), false.into())
    );
}

#[test]
fn unreachable_remote_targets_are_skipped_and_reported_quickly() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Setup::with_targets(
        "",
        &format!(
            "[repositories.cloud]\npath = \"s3:http://127.0.0.1:{port}/bucket/cairn\"\n\
             access_key_id = \"GK1\"\nsecret_access_key = \"secret\"\nregion = \"garage\"\n\
             password_file = \"password\"\n\
             [repositories.nas]\npath = \"sftp://127.0.0.1:{port}/srv/cairn\"\n\
             password_file = \"password\"\n"
        ),
        &["cloud", "nas", "local"],
    );
    let started = Instant::now();
    let run = s.run();
    let took = started.elapsed();
    run.ok();
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(
        run.stderr.contains("target cloud") && run.stderr.contains("not present: skipped"),
        "{}",
        run.stderr
    );
    let summary = run.summary();
    let cloud = &summary["targets"][0];
    assert_eq!(cloud["target"], "cloud");
    assert_eq!(cloud["present"], false);
    assert!(
        cloud["absent"].as_str().unwrap().starts_with("unreachable"),
        "{cloud}"
    );
    let nas = &summary["targets"][1];
    assert_eq!(
        (nas["target"].as_str(), nas["present"].clone()),
        (Some("nas"), false.into())
    );
    assert!(
        nas["absent"].as_str().unwrap().starts_with("unreachable"),
        "{nas}"
    );
    assert_eq!(summary["targets"][2]["ok"], true, "the local one ran");

    let st = s.cmd().args(["--json", "plan", "status"]).run();
    st.ok();
    let t = &st.json()["plans"][0]["targets"][0];
    assert_eq!(
        (t["name"].as_str(), t["present"].clone()),
        (Some("cloud"), false.into())
    );
    assert!(
        t["absent"].as_str().unwrap().starts_with("unreachable"),
        "{t}"
    );
}

#[cfg(feature = "remote")]
#[test]
fn a_plan_backs_up_to_s3_on_garage_and_sftp_on_sshd() {
    use common::servers::{self, Garage, Sshd};
    if !servers::require_garage() || !servers::require_sshd() {
        return;
    }
    let garage = Garage::start();
    let sshd = Sshd::start();
    let s3_url = garage.url("plan");
    let sftp_url = sshd.url("plan");
    // The repositories, made as a user would.
    let tmp = tempfile::tempdir().unwrap();
    for (url, server) in [(&s3_url, "s3"), (&sftp_url, "sftp")] {
        let cmd = TestCommand::bare()
            .arg("-r")
            .arg(url)
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("XDG_CACHE_HOME", tmp.path())
            .args(["init", "--kdf-memory-mib", "8"]);
        let cmd = if server == "s3" {
            garage.apply(cmd)
        } else {
            sshd.apply(cmd)
        };
        cmd.run().ok();
    }
    // The S3 credentials come from the plan file, not the environment.
    let s = Setup::with_targets(
        "",
        &format!(
            "[repositories.s3]\npath = \"{s3_url}\"\npassword_file = \"password\"\n\
             access_key_id = \"{}\"\nsecret_access_key_env = \"PLAN_TEST_S3_SECRET\"\nregion = \"{}\"\n\
             [repositories.sftp]\npath = \"{sftp_url}\"\npassword_file = \"password\"\n",
            Garage::KEY_ID,
            Garage::REGION
        ),
        &["s3", "sftp"],
    );
    let run = sshd
        .apply(s.cmd().args(["--json", "plan", "run", "ops"]))
        .env("PLAN_TEST_S3_SECRET", Garage::SECRET)
        .run();
    run.ok();
    let summary = run.summary();
    for (i, name) in ["s3", "sftp"].iter().enumerate() {
        let t = &summary["targets"][i];
        assert_eq!(
            (t["target"].as_str(), t["ok"].clone()),
            (Some(*name), true.into()),
            "{t}"
        );
        assert!(t["backup"]["snapshot_id"].is_string());
    }
    let st = sshd
        .apply(s.cmd().args(["--json", "plan", "status"]))
        .env("PLAN_TEST_S3_SECRET", Garage::SECRET)
        .run();
    st.ok();
    for i in 0..2 {
        let t = &st.json()["plans"][0]["targets"][i];
        assert_eq!(t["snapshots"], 1, "{t}");
        assert_eq!(t["rpo_met"], true);
    }
    // What the plan stored restores byte for byte from each server.
    for (url, name) in [(&s3_url, "s3"), (&sftp_url, "sftp")] {
        let target = tmp.path().join(format!("restore-{name}"));
        let cmd = TestCommand::bare()
            .arg("-r")
            .arg(url)
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("XDG_CACHE_HOME", tmp.path())
            .args(["restore", "latest", "--target"])
            .arg(&target);
        let cmd = if name == "s3" {
            garage.apply(cmd)
        } else {
            sshd.apply(cmd)
        };
        cmd.run().ok();
        assert_same_tree(&s.src, &restored(&target, &s.src));
    }
}

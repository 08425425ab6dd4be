//! `[plans.NAME.hooks]`: shell commands run around a plan run (`sh -c COMMAND`), each told
//! about the run through its environment:
//!
//! | variable | holds |
//! |---|---|
//! | `CAIRN_PLAN` | the plan's name |
//! | `CAIRN_TARGET` | the targets backed up (space-separated, in the plan's order); for `before`, all the plan's targets |
//! | `CAIRN_SNAPSHOT_ID` | the ids of the snapshots made, one per name of `CAIRN_TARGET` (empty for `before`) |
//! | `CAIRN_EXIT_CODE` | the run's exit code (empty for `before`) |
//! | `CAIRN_SUMMARY_FILE` | a file holding the run's JSON summary (empty for `before`) |
//!
//! A hook's standard output goes to cairn's standard error, so `--json` output stays JSON; its
//! standard input is empty.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// What a hook is told about the run (module documentation).
#[derive(Clone, Debug, Default)]
pub struct HookEnv {
    /// `CAIRN_PLAN`.
    pub plan: String,
    /// `CAIRN_TARGET`, joined with spaces.
    pub targets: Vec<String>,
    /// `CAIRN_SNAPSHOT_ID`, joined with spaces.
    pub snapshot_ids: Vec<String>,
    /// `CAIRN_EXIT_CODE`; None: empty (the run has not happened yet).
    pub exit_code: Option<u8>,
    /// `CAIRN_SUMMARY_FILE`; None: empty.
    pub summary_file: Option<PathBuf>,
}

impl HookEnv {
    /// The variables, by name.
    pub fn vars(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        vec![
            ("CAIRN_PLAN", self.plan.clone().into()),
            ("CAIRN_TARGET", self.targets.join(" ").into()),
            ("CAIRN_SNAPSHOT_ID", self.snapshot_ids.join(" ").into()),
            (
                "CAIRN_EXIT_CODE",
                self.exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_default()
                    .into(),
            ),
            (
                "CAIRN_SUMMARY_FILE",
                self.summary_file
                    .as_ref()
                    .map(|p| p.as_os_str().to_os_string())
                    .unwrap_or_default(),
            ),
        ]
    }
}

/// Runs `command` with `sh -c` and `env` added to this process's environment; Ok when it
/// exits 0, else a sentence saying how it ended (`exit status 3`, `killed by signal 9`, or why
/// it could not start).
pub fn run_hook(command: &str, env: &HookEnv) -> Result<(), String> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(command).stdin(Stdio::null());
    // Its output goes where ours for people goes: standard error.
    if let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() {
        cmd.stdout(Stdio::from(fd));
    }
    for (k, v) in env.vars() {
        cmd.env(k, v);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("could not run sh -c: {e}"))?;
    if status.success() {
        return Ok(());
    }
    use std::os::unix::process::ExitStatusExt;
    Err(match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => status.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_sees_the_runs_variables_and_its_exit_status_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let env = HookEnv {
            plan: "home".into(),
            targets: vec!["a".into(), "b".into()],
            snapshot_ids: vec!["1111".into(), "2222".into()],
            exit_code: Some(3),
            summary_file: Some(dir.path().join("summary.json")),
        };
        let cmd = format!(
            "printf '%s|%s|%s|%s|%s' \"$CAIRN_PLAN\" \"$CAIRN_TARGET\" \"$CAIRN_SNAPSHOT_ID\" \
             \"$CAIRN_EXIT_CODE\" \"$CAIRN_SUMMARY_FILE\" > '{}'",
            out.display()
        );
        run_hook(&cmd, &env).expect("hook runs");
        assert_eq!(
            std::fs::read_to_string(&out).expect("written"),
            format!(
                "home|a b|1111 2222|3|{}",
                dir.path().join("summary.json").display()
            )
        );
        assert_eq!(
            run_hook("exit 7", &HookEnv::default()),
            Err("exit status 7".into())
        );
        assert_eq!(
            run_hook("kill -9 $$", &HookEnv::default()),
            Err("killed by signal 9".into())
        );
    }
}

//! A [`PlanHost`] for the plan's unit tests: each target is an in-memory repository, "present"
//! when its directory holds a `config` file (as [`RepoDef::is_present`] asks), the clock is
//! set by the test, and every event and warning is recorded as a line of text.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::host::{Opener, PlanEvent, PlanHost};
use super::report::PruneStep;
use super::{parse, PlanConfig, RepoDef};
use crate::backend::MemBackend;
use crate::backup::{BackupOptions, BackupOutcome, NoProgress};
use crate::error::{Error, ErrorKind};
use crate::lock::RepoLock;
use crate::repo::Repository;

pub(crate) const PASSWORD: &[u8] = b"plan test";

/// The fake host's error: the library's, or one of its own (a password that cannot be read).
#[derive(Debug)]
pub(crate) enum FakeError {
    Lib(Error),
    Host(String),
}

impl From<Error> for FakeError {
    fn from(e: Error) -> Self {
        FakeError::Lib(e)
    }
}

impl std::fmt::Display for FakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FakeError::Lib(e) => write!(f, "{e}"),
            FakeError::Host(m) => f.write_str(m),
        }
    }
}

pub(crate) struct FakeHost {
    /// Each target's repository, by target name.
    pub repos: BTreeMap<String, Arc<MemBackend>>,
    /// Targets whose password cannot be had.
    pub no_password: BTreeSet<String>,
    /// Where repositories' local state lives (one directory per repository id).
    pub state: PathBuf,
    pub now_ns: i64,
    pub events: Vec<String>,
    pub warnings: Vec<String>,
}

impl FakeHost {
    pub fn new(state: &Path, now_ns: i64) -> FakeHost {
        FakeHost {
            repos: BTreeMap::new(),
            no_password: BTreeSet::new(),
            state: state.to_path_buf(),
            now_ns,
            events: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// A fresh repository for target `name`, present at `dir` (its `config` file is written).
    pub fn add_present(&mut self, name: &str, dir: &Path) -> Arc<MemBackend> {
        std::fs::create_dir_all(dir).expect("target dir");
        std::fs::write(dir.join("config"), b"present").expect("config marker");
        let (backend, _) = crate::testutil::mem_repo(PASSWORD);
        self.repos.insert(name.to_string(), backend.clone());
        backend
    }

    /// A repository of this target, opened afresh (as a new process would).
    pub fn reopen(&self, name: &str) -> Repository {
        Repository::open(self.repos[name].clone(), PASSWORD).expect("open")
    }
}

impl Opener for FakeHost {
    type Error = FakeError;

    fn open(&mut self, target: &RepoDef) -> Result<Repository, FakeError> {
        if self.no_password.contains(&target.name) {
            return Err(FakeError::Host(format!(
                "no password for repository {}",
                target.name
            )));
        }
        let backend = self
            .repos
            .get(&target.name)
            .ok_or_else(|| FakeError::Host(format!("no repository for target {}", target.name)))?;
        Ok(Repository::open(backend.clone(), PASSWORD)?)
    }

    fn state_dir(&self, repo: &Repository) -> Option<PathBuf> {
        Some(self.state.join(repo.id().to_hex()))
    }

    fn now_ns(&self) -> i64 {
        self.now_ns
    }

    fn warning(&mut self, message: &str) {
        self.warnings.push(message.to_string());
    }
}

impl PlanHost for FakeHost {
    fn is_interrupted(&self, e: &FakeError) -> bool {
        matches!(e, FakeError::Lib(e) if e.kind() == ErrorKind::Interrupted)
    }

    fn lock(
        &mut self,
        repo: &Repository,
        exclusive: bool,
        command: &str,
    ) -> Result<RepoLock, FakeError> {
        Ok(RepoLock::acquire(repo, exclusive, command, "test-host")?)
    }

    fn backup(
        &mut self,
        repo: &mut Repository,
        opts: &BackupOptions,
    ) -> crate::Result<BackupOutcome> {
        crate::backup::backup(repo, opts, &NoProgress)
    }

    fn event(&mut self, event: PlanEvent<'_>) {
        let line = match event {
            PlanEvent::Started { mode, .. } => format!("started {}", mode.name()),
            PlanEvent::TargetStarted(r) => format!("target {}", r.name),
            PlanEvent::Backup(b) => format!("backup {}", b.mode.name()),
            PlanEvent::Forget(f) => format!("forget {} removed", f.removed.len()),
            PlanEvent::Prune(PruneStep::Ran { .. }) => "prune".to_string(),
            PlanEvent::Prune(PruneStep::NotDue { .. }) => "prune not due".to_string(),
            PlanEvent::NoKeepRules => "no keep rules".to_string(),
            PlanEvent::Check(c) => format!("check ok={}", c.ok),
            PlanEvent::Scrub(s) => format!(
                "scrub found={} parity={} sibling={} ok={}",
                s.found.len(),
                s.healed_by_parity,
                s.healed_from_sibling,
                s.ok()
            ),
            PlanEvent::TargetDone(t) => format!("done {} ok={:?}", t.target, t.ok),
        };
        self.events.push(line);
    }
}

/// A plan file with targets `a`, `b` and `c` below `root` (each at `root/NAME`) and one plan
/// `p` backing up `source` to `targets`, plus `extra` lines in the plan's table.
pub(crate) fn config(root: &Path, source: &Path, targets: &[&str], extra: &str) -> PlanConfig {
    let mut text = String::new();
    for t in ["a", "b", "c"] {
        text.push_str(&format!(
            "[repositories.{t}]\npath = {:?}\n",
            root.join(t).display().to_string()
        ));
    }
    text.push_str(&format!(
        "[plans.p]\nsources = [{:?}]\ntargets = {targets:?}\nhost = \"plan-host\"\n{extra}\n",
        source.display().to_string()
    ));
    parse(&text).expect("test plan file")
}

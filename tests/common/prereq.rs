//! What a test needs from the machine: system tools, root, a tmpfs, `user.*` extended
//! attributes. The one rule ([`missing`]): a test whose prerequisite is missing skips on a
//! developer's machine (it says `skipping: …`), and fails under `CI=true` (or `CI=1`), where
//! `.ci/run` installs every tool and runs as root, so that a green CI means every test ran.

use std::fmt::Display;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether this environment promises every tool and privilege the tests need: `CI=true` or
/// `CI=1` (`.ci/run` sets it and installs them).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Prerequisites to treat as missing although they are there (a comma-separated list of tool
/// names, or `root`): `CAIRN_TEST_MISSING=sshd,script CI=true cargo test` shows that CI fails
/// where a laptop skips. Read by this process only; [`TestCommand`] clears `CAIRN_*` for cairn.
fn pretend_missing(name: &str) -> bool {
    std::env::var("CAIRN_TEST_MISSING").is_ok_and(|v| v.split(',').any(|n| n.trim() == name))
}

/// The one way a test gives up for want of a tool, a privilege or a capability of this
/// machine: under CI ([`in_ci`]) the test fails, naming what is missing; elsewhere it says
/// `skipping: {why}` on stderr and the caller returns (or leaves out the part that needs it).
#[track_caller]
pub fn missing(why: impl Display) {
    if in_ci() {
        let ci = std::env::var("CI").unwrap_or_default();
        panic!("CI={ci}, so this test may not skip, but: {why}");
    }
    eprintln!("skipping: {why}");
}

/// The value of a set-up step, or None after [`missing`] with why it failed.
#[track_caller]
pub fn require<T, E: Display>(setup: Result<T, E>) -> Option<T> {
    match setup {
        Ok(v) => Some(v),
        Err(why) => {
            missing(why);
            None
        }
    }
}

/// A program by name: on `PATH`, or in the sbin directories a non-login root shell may lack.
pub fn find_tool(name: &str) -> Result<PathBuf, String> {
    find_tool_in(name, &[])
}

/// Like [`find_tool`], looking in `extra` directories too.
pub fn find_tool_in(name: &str, extra: &[PathBuf]) -> Result<PathBuf, String> {
    let not_installed = format!("`{name}` is not installed");
    if pretend_missing(name) {
        return Err(format!("{not_installed} (CAIRN_TEST_MISSING)"));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .chain(extra.iter().cloned())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(not_installed)
}

/// The path of tool `name`, or None after [`missing`]; `package` says where it comes from
/// (and so what `.ci/run` installs).
#[track_caller]
pub fn require_tool(name: &str, package: &str) -> Option<PathBuf> {
    require(find_tool(name).map_err(|e| format!("{e} (Debian: {package})")))
}

/// Ok when this process runs as root, which `why` needs.
pub fn check_root(why: &str) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 && !pretend_missing("root") {
        Ok(())
    } else {
        Err(format!("not root ({why})"))
    }
}

/// Whether this process runs as root, which `why` needs; false after [`missing`].
#[track_caller]
pub fn require_root(why: &str) -> bool {
    require(check_root(why)).is_some()
}

/// Sets extended attribute `name` on `path`; false after [`missing`] where the file system
/// refuses `user.*` attributes (tmpfs before Linux 6.6): the caller leaves out its xattr checks.
#[track_caller]
pub fn user_xattrs(path: &Path, name: &str, value: &[u8]) -> bool {
    require(xattr::set(path, name, value).map_err(|e| {
        format!(
            "the file system of {} refuses user.* extended attributes ({e}); the xattr checks \
             are left out",
            path.display()
        )
    }))
    .is_some()
}

/// A tmpfs mounted at a directory, unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs with `options` (`size=4m`...) at `dir`, made if missing. None where that
    /// is impossible (not root): skipped on a laptop, a failure under CI (see [`missing`]).
    #[track_caller]
    pub fn mount(dir: &Path, options: &str) -> Option<Tmpfs> {
        require(Self::try_mount(dir, options).map_err(|e| format!("cannot mount a tmpfs: {e}")))
    }

    fn try_mount(dir: &Path, options: &str) -> Result<Tmpfs, String> {
        check_root("mounting needs it")?;
        let mount = find_tool("mount")?;
        fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let out = Command::new(mount)
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

//! `cairn mount`: serve the snapshots read-only through FUSE until unmounted.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use cairn::mount::{Mount, MountOptions};

use super::{Ctx, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// An empty directory to mount the snapshots on
    #[arg(value_name = "MOUNTPOINT")]
    mountpoint: PathBuf,
    #[command(flatten)]
    filter: super::FilterArgs,
}

/// How often the watcher looks whether Ctrl-C or SIGTERM arrived.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<u8> {
    // Everything that can be checked before asking for a password is.
    if let Some(why) = cairn::mount::fuse_problem() {
        return Err(anyhow!(why));
    }
    if !in_path("fusermount3") {
        return Err(anyhow!(
            "fusermount3 is not installed (Debian/Ubuntu: apt-get install fuse3); `cairn mount` mounts through it"
        ));
    }
    if let Some(why) = cairn::mount::mountpoint_problem(&a.mountpoint) {
        return Err(anyhow!(why));
    }
    let mut repo = ctx.open()?;
    let lock = ctx.read_lock(&repo, "mount")?;
    repo.load_index().context("loading the index")?;
    ctx.print_warnings(&repo);
    let opts = MountOptions {
        filter: a.filter.filter(),
        ..MountOptions::default()
    };
    let mut mount = Mount::new(repo, &a.mountpoint, opts)?;
    if !ctx.g.quiet {
        eprintln!(
            "mounted the snapshots at {}; unmount with `fusermount3 -u {}` or Ctrl-C",
            super::output::esc(&a.mountpoint),
            super::output::esc(&a.mountpoint)
        );
    }
    // Ctrl-C and SIGTERM set ctx.cancel (src/cli/mod.rs): the watcher unmounts, which ends
    // the session loop below.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (done, cancel) = (done.clone(), ctx.cancel.clone());
        let mut unmounter = mount.unmounter();
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if cancel.load(Ordering::SeqCst) {
                    if let Err(e) = unmounter.unmount() {
                        eprintln!("cairn: {e}");
                    }
                    return;
                }
                std::thread::sleep(SIGNAL_POLL);
            }
        })
    };
    let served = mount.run();
    done.store(true, Ordering::SeqCst);
    drop(mount);
    let _ = watcher.join();
    drop(lock);
    served?;
    if !ctx.g.quiet {
        eprintln!("unmounted {}", super::output::esc(&a.mountpoint));
    }
    Ok(EXIT_OK)
}

/// Whether an executable of this name is in `PATH`.
fn in_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(name)).any(|p| {
        std::fs::metadata(&p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

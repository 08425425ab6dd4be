#!/usr/bin/env python3
"""Small-files benchmark of cairn against restic (issue 19): many one-blob files.

Python 3.11, standard library only (GNU time for the measurements, installed with apt if missing).

For each tree size (default 150,000 and 600,000 files) a deterministic tree is generated once and
cached under the work directory: files of 1-8 KiB (a random share of 25-75% random bytes, the rest
text from a fixed word pool, so compression has something to do), 1000 files per directory. Every
file is below cairn's minimum chunk size (128 KiB) and so is exactly one data blob; the repository's
blob count grows with the file count, which is what issue 19's memory goal is about.

Then, with the page cache warm (every file read once), from a fresh repository per tool and size:

  init -> first backup -> unchanged re-backup (the second snapshot) -> restore latest (then the
  restored tree is checked, untimed: file count, total bytes and the content of 1000 sampled files)
  -> check (structure only, no data read) -> forget --keep-last 1 --prune

Steps are interleaved: step k of cairn, then step k of restic, so slow drift on a shared machine
(other processes, thermal state) hits both tools alike. Every command runs under
`/usr/bin/time -f '%M %e %U %S'` (peak RSS KiB, wall s, user s, sys s); the load average is
sampled before each step and reported, since this machine is shared.

Nothing is deleted while tools are measured: restored trees and repositories are moved to
WORK/trash and deleted at the end (deleting hundreds of thousands of files right before a restore
slows the restore's file creation on ext4). If the disk is too small for that, they are deleted as
soon as they are done with and the report says so.

Cost: on this 2-core machine the measured steps take ~8 minutes at the default sizes, generating
the trees once ~1.5 minutes, and deleting the ~1.5 million restored files at the end ~20 minutes
(ext4 mounted with `discard`: every unlink waits for its discard); `--keep` skips that deletion
and leaves them in WORK/trash, which the next run empties before it measures anything.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import GiB, MiB, first_line, human, tail  # noqa: E402

PROJECT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-smallfiles-password"
TIME_BIN = "/usr/bin/time"
TIME_FORMAT = "%M %e %U %S"
# Bump when the generator changes, so a cached tree of the old shape is regenerated.
TREE_VERSION = 1
FILES_PER_DIR = 1000

STEPS = [
    ("init", "init"),
    ("backup1", "first backup"),
    ("backup2", "unchanged re-backup"),
    ("restore", "restore latest"),
    ("check", "check (structure)"),
    ("prune", "forget --keep-last 1 --prune"),
]
STEP_NAMES = dict(STEPS)

CURRENT_CHILD = None  # process group of the running command, ended with us on SIGINT/SIGTERM


def log(*args):
    print("[bench-smallfiles]", *args, file=sys.stderr, flush=True)


def on_signal(signum, _frame):
    if CURRENT_CHILD is not None:
        try:
            os.killpg(CURRENT_CHILD, signal.SIGKILL)
        except ProcessLookupError:
            pass
    raise SystemExit(128 + signum)


# --------------------------------------------------------------------------------------------
# The trees


def word_pool() -> bytes:
    """About 1 MiB of deterministic text: the compressible part of every file."""
    rng = random.Random(0x7E47)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10)))
             for _ in range(2000)]
    out = bytearray()
    while len(out) < MiB:
        line = b" ".join(rng.choice(words) for _ in range(rng.randint(4, 14)))
        out += line + b".\n"
    return bytes(out)


def tree_spec(files: int) -> dict:
    return {"version": TREE_VERSION, "files": files, "per_dir": FILES_PER_DIR,
            "sizes": "1024..8192 B", "random_share": "25..75%"}


def rel_path(i: int) -> str:
    return f"d{i // FILES_PER_DIR:04d}/f{i:07d}.dat"


def file_content(rng: random.Random, pool: bytes, i: int) -> bytes:
    n = rng.randint(1024, 8192)
    header = f"file {i}\n".encode()  # makes every file distinct even if the rest repeated
    rand = rng.randbytes(int(n * rng.uniform(0.25, 0.75)))
    rest = n - len(header) - len(rand)
    off = rng.randrange(0, len(pool) - 8192)
    return header + rand + pool[off:off + rest]


def ensure_tree(work: Path, files: int) -> tuple[Path, dict]:
    """WORK/tree-N, generated once; WORK/tree-N.json records what it holds. A tree is generated
    under a temporary name and renamed into place, so an interrupted generation is never
    mistaken for a finished one."""
    tree = work / f"tree-{files}"
    spec = tree_spec(files)
    spec_path = work / f"tree-{files}.json"
    if tree.is_dir() and spec_path.exists():
        info = json.loads(spec_path.read_text())
        if info.get("spec") == spec:
            log(f"reusing {tree}")
            return tree, info
    for p in (tree, spec_path, work / f"tree-{files}.tmp"):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    tmp = work / f"tree-{files}.tmp"
    log(f"generating {files} files in {tree}")
    t0 = time.perf_counter()
    rng = random.Random(0x5A11F11E ^ files)
    pool = word_pool()
    total = 0
    for i in range(files):
        if i % FILES_PER_DIR == 0:
            (tmp / rel_path(i)).parent.mkdir(parents=True)
        data = file_content(rng, pool, i)
        with open(tmp / rel_path(i), "wb") as f:
            f.write(data)
        total += len(data)
    os.sync()
    tmp.rename(tree)
    info = {"spec": spec, "bytes": total, "generated_s": round(time.perf_counter() - t0, 1)}
    spec_path.write_text(json.dumps(info, indent=1))
    log(f"  {files} files, {human(total)} in {info['generated_s']} s")
    return tree, info


def warm(tree: Path):
    """Reads every file once, so the page cache holds the tree (and its inodes and dentries)."""
    for dirpath, _dirs, files in os.walk(tree):
        for f in files:
            with open(os.path.join(dirpath, f), "rb", buffering=0) as fh:
                fh.read()


def scan(root: Path) -> tuple[int, int]:
    count = total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            count += 1
            total += os.lstat(os.path.join(dirpath, f)).st_size
    return count, total


def verify_restore(target: Path, tree: Path, info: dict) -> tuple[bool, str]:
    """File count and total bytes of the restored tree, and the content of 1000 sampled files."""
    root = None
    for cand in (target / str(tree).lstrip("/"), target / tree.name, target):
        if (cand / "d0000").is_dir():
            root = cand
            break
    if root is None:
        return False, "restored tree not found under the target"
    files = info["spec"]["files"]
    count, total = scan(root)
    if (count, total) != (files, info["bytes"]):
        return False, f"{count} files, {total} bytes; expected {files}, {info['bytes']}"
    rng = random.Random(files)
    for i in rng.sample(range(files), min(1000, files)):
        if (root / rel_path(i)).read_bytes() != (tree / rel_path(i)).read_bytes():
            return False, f"{rel_path(i)} differs"
    return True, f"{count} files, {total} bytes, 1000 sampled files identical"


# --------------------------------------------------------------------------------------------
# Tools


class Tool:
    name = "?"

    def __init__(self, binary: str):
        self.bin = binary

    def env(self, ctx) -> dict:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CAIRN_", "RESTIC_"))}
        env["XDG_CACHE_HOME"] = str(ctx["cache"])
        env["XDG_CONFIG_HOME"] = str(ctx["config"])
        return env

    def version(self) -> str:
        raise NotImplementedError

    def command(self, step, ctx) -> list:
        raise NotImplementedError


class Cairn(Tool):
    name = "cairn"
    notes = "defaults (compression auto, 16 MiB packs, threads = all cores)"

    def __init__(self, binary: str, label: str | None):
        super().__init__(binary)
        self.label = label

    def env(self, ctx):
        env = super().env(ctx)
        env["CAIRN_PASSWORD"] = PASSWORD
        env["CAIRN_REPOSITORY"] = str(ctx["repo"])
        return env

    def version(self):
        v = first_line([self.bin, "--version"])
        return f"{v} ({self.label})" if self.label else v

    def command(self, step, ctx):
        b = self.bin
        return {
            "init": [b, "init"],
            "backup1": [b, "backup", "--no-progress", str(ctx["tree"])],
            "backup2": [b, "backup", "--no-progress", str(ctx["tree"])],
            "restore": [b, "restore", "--no-progress", "latest", "--target", str(ctx["target"])],
            "check": [b, "check", "--no-progress"],
            "prune": [b, "forget", "--keep-last", "1", "--prune"],
        }[step]


class Restic(Tool):
    name = "restic"
    notes = "defaults (repository v2, compression auto); cache in RESTIC_CACHE_DIR"

    def env(self, ctx):
        env = super().env(ctx)
        env["RESTIC_PASSWORD"] = PASSWORD
        env["RESTIC_REPOSITORY"] = str(ctx["repo"])
        env["RESTIC_CACHE_DIR"] = str(ctx["cache"] / "restic")
        return env

    def version(self):
        return first_line([self.bin, "version"])

    def command(self, step, ctx):
        b = self.bin
        return {
            "init": [b, "init"],
            "backup1": [b, "backup", str(ctx["tree"])],
            "backup2": [b, "backup", str(ctx["tree"])],
            "restore": [b, "restore", "latest", "--target", str(ctx["target"])],
            "check": [b, "check"],
            "prune": [b, "forget", "--keep-last", "1", "--prune"],
        }[step]


def run_timed(argv, env, log_path: Path, timeout: float) -> dict:
    """Runs argv under GNU time; returns wall, cpu (user + sys), rss_kib and rc.

    GNU time (a ~2 MiB process) starts the command, so its peak RSS is the tool's own: the
    ru_maxrss this Python process would see from wait4 counts its own resident set at fork."""
    rusage = log_path.with_suffix(".time")
    full = [TIME_BIN, "-q", "-f", TIME_FORMAT, "-o", str(rusage), *argv]
    global CURRENT_CHILD
    with open(log_path, "ab") as out:
        out.write(f"$ {shlex.join(argv)}\n".encode())
        out.flush()
        p = subprocess.Popen(full, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        CURRENT_CHILD = p.pid
        timed_out = []

        def kill():
            timed_out.append(True)
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            rc = p.wait()
        finally:
            timer.cancel()
            CURRENT_CHILD = None
    res = {"rc": rc}
    try:
        m, e, u, s = rusage.read_text().split()[-4:]
        res.update(rss_kib=int(m), wall=float(e), cpu=float(u) + float(s))
    except (OSError, ValueError) as err:
        res["error"] = f"no measurement from GNU time ({err})"
    if timed_out:
        res["error"] = f"timed out after {timeout} s"
    elif rc != 0:
        res["error"] = f"exit code {rc}:\n{tail(log_path, 15)}"
    return res


def dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


# --------------------------------------------------------------------------------------------
# Report


def machine_info(work: Path) -> dict:
    model, mem = "?", "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    fs = "?"
    try:
        fs = " ".join(subprocess.run(["findmnt", "-n", "-o", "FSTYPE,OPTIONS", "-T", str(work)],
                                     capture_output=True, text=True).stdout.split())
    except OSError:
        pass
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": model, "ram": mem,
            "kernel": platform.release(), "fs": fs}


def fmt_load(load) -> str:
    return " / ".join(f"{x:.2f}" for x in load)


def ratio(a, b) -> str:
    return f"{a / b:.2f}" if b else "—"


def render(results, tools, sizes, trees, args, machine, started, finished, deferred) -> str:
    lines = [f"# Small files: cairn against restic ({started:%Y-%m-%d})\n"]
    lines.append(f"`{shlex.join(sys.argv)}` (in {PROJECT}), started {started:%Y-%m-%d %H:%M} "
                 f"UTC, finished {finished:%H:%M} UTC.\n")
    lines.append(f"- machine: {machine['nproc']} cores ({machine['cpu']}), {machine['ram']} RAM, "
                 f"Linux {machine['kernel']}, work dir on {machine['fs']}")
    for t in tools:
        lines.append(f"- {t.name}: {t.version_text} (`{t.bin}`); {t.notes}")
    lines.append(f"- load average (1 / 5 / 15 min) at the start {fmt_load(args.load_start)}, at "
                 f"the end {fmt_load(os.getloadavg())}; the 1-minute figure before each step is in "
                 f"the table. The machine is shared: other processes (compilers) ran at the same "
                 f"time.")
    for n in sizes:
        info = trees[n]
        lines.append(f"- tree of {n} files: {info['bytes'] / MiB:.0f} MiB, "
                     f"{info['spec']['per_dir']} files per directory, 1-8 KiB each (25-75% "
                     f"random bytes, the rest text), one data blob per file")
    lines.append("- page cache warm (every file read before the first step); each command under "
                 f"`{TIME_BIN} -f '{TIME_FORMAT}'`; CPU = user + sys; a fresh repository per "
                 "tool and size; steps interleaved (each step of cairn, then of restic); one run.")
    lines.append("- " + ("restored trees and repositories kept until the end (no mass deletion "
                         "between measured steps)." if deferred else
                         "restored trees and repositories deleted when done with (not enough "
                         "disk to keep them to the end)."))
    lines.append("")

    lines.append("## Measurements\n")
    lines.append("| tool | files | step | wall s | CPU s | peak RSS MiB | repo MiB | load 1 min |")
    lines.append("|---|---:|---|---:|---:|---:|---:|---:|")
    for n in sizes:
        for step, label in STEPS:
            for t in tools:
                r = results.get((t.name, n, step))
                if r is None or "wall" not in r:
                    lines.append(f"| {t.name} | {n} | {label} | — | — | — | — | — |")
                    continue
                lines.append(f"| {t.name} | {n} | {label} | {r['wall']:.2f} | {r['cpu']:.2f} | "
                             f"{r['rss_kib'] / 1024:.1f} | {r['repo_bytes'] / MiB:.1f} | "
                             f"{r['load']:.2f} |")
    lines.append("")

    names = [t.name for t in tools]
    if names == ["cairn", "restic"]:
        lines.append("## Ratios cairn / restic\n")
        lines.append("Below 1: cairn is faster, uses less CPU or less memory.\n")
        lines.append("| files | step | wall | CPU | peak RSS | repo size after |")
        lines.append("|---:|---|---:|---:|---:|---:|")
        for n in sizes:
            for step, label in STEPS:
                a, b = results.get(("cairn", n, step)), results.get(("restic", n, step))
                if not a or not b or "wall" not in a or "wall" not in b:
                    lines.append(f"| {n} | {label} | — | — | — | — |")
                    continue
                lines.append(f"| {n} | {label} | {ratio(a['wall'], b['wall'])} | "
                             f"{ratio(a['cpu'], b['cpu'])} | "
                             f"{ratio(a['rss_kib'], b['rss_kib'])} | "
                             f"{ratio(a['repo_bytes'], b['repo_bytes'])} |")
        lines.append("")

    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        lines.append(f"## Peak RSS growth per added file ({lo} → {hi} files)\n")
        lines.append("Each file is one data blob, so this is issue 19's growth per stored blob "
                     "(its goal: at most 4 bytes, 16 for prune), allocator noise included.\n")
        lines.append("| step | " + " | ".join(f"{t} bytes/file" for t in names) + " |")
        lines.append("|---|" + "---:|" * len(names))
        for step, label in STEPS:
            if step == "init":
                continue
            cells = []
            for t in names:
                a, b = results.get((t, lo, step)), results.get((t, hi, step))
                if a and b and "rss_kib" in a and "rss_kib" in b:
                    cells.append(f"{(b['rss_kib'] - a['rss_kib']) * 1024 / (hi - lo):.0f}")
                else:
                    cells.append("—")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")

    lines.append("## Restore verification and errors\n")
    for n in sizes:
        for t in tools:
            v = results.get((t.name, n, "verify"))
            text = "not reached" if v is None else ("OK: " if v[0] else "FAILED: ") + v[1]
            lines.append(f"- {t.name}, {n} files: {text}")
    errors = [(k, r["error"]) for k, r in results.items()
              if isinstance(r, dict) and r.get("error")]
    for (tool, n, step), e in errors:
        lines.append(f"\n{tool}, {n} files, {STEP_NAMES[step]}:\n```\n{e.strip()}\n```")
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def apt_install(pkg: str) -> bool:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
    r = subprocess.run(["apt-get", "install", "-y", "-qq", pkg], env=env, capture_output=True,
                       text=True)
    if r.returncode != 0:
        log(f"apt-get install {pkg} failed:\n{r.stderr[-2000:]}")
    return r.returncode == 0


def move_to_trash(work: Path, path: Path, deferred: bool):
    if not path.exists():
        return
    if deferred:
        trash = work / "trash"
        trash.mkdir(exist_ok=True)
        path.rename(trash / f"{path.name}-{time.monotonic_ns()}")
    else:
        shutil.rmtree(path)


def main() -> int:
    ap = argparse.ArgumentParser(
        description="Small-files benchmark (one blob per file) of cairn against restic.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--bin", default=str(PROJECT / "target" / "release" / "cairn"),
                    help="cairn binary")
    ap.add_argument("--restic", default="/usr/bin/restic", help="restic binary")
    ap.add_argument("--sizes", default="150000,600000", help="file counts, comma-separated")
    ap.add_argument("--tools", default="cairn,restic", help="subset of cairn,restic")
    ap.add_argument("--work", default="/var/tmp/cairn-small", help="work directory (trees cached)")
    ap.add_argument("--out", help="Markdown report (default "
                                  "scripts/results/YYYY-MM-DD-smallfiles.md)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per command")
    ap.add_argument("--label", help="what the cairn binary was built from (e.g. a git "
                                    "revision), for the report")
    ap.add_argument("--generate-only", action="store_true",
                    help="generate (or check) the cached trees and stop")
    ap.add_argument("--keep", action="store_true",
                    help="keep the repositories and restored trees (in WORK/trash)")
    args = ap.parse_args()
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        ap.error("--sizes takes file counts such as 150000,600000")
    if not sizes or min(sizes) < FILES_PER_DIR:
        ap.error(f"each size must be at least {FILES_PER_DIR} files")
    wanted = args.tools.split(",")
    if set(wanted) - {"cairn", "restic"}:
        ap.error("--tools takes cairn and/or restic")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = datetime.datetime.now(datetime.timezone.utc)
    args.load_start = os.getloadavg()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    machine = machine_info(work)
    trees = {n: ensure_tree(work, n) for n in sizes}
    if args.generate_only:
        return 0
    if not os.path.exists(TIME_BIN) and not apt_install("time"):
        log(f"{TIME_BIN} (GNU time) is needed")
        return 1
    tools = [{"cairn": lambda: Cairn(str(Path(args.bin).resolve()), args.label),
              "restic": lambda: Restic(args.restic)}[w]() for w in wanted]
    for t in tools:
        if not os.access(t.bin, os.X_OK):
            log(f"{t.name}: {t.bin} is not an executable")
            return 1
        t.version_text = t.version()
    log("tools: " + ", ".join(f"{t.name} {t.version_text}" for t in tools))

    # A restore per tool and size (the tree's size on disk: du counts whole blocks) plus
    # repositories (under half the tree), all kept to the end if there is room.
    need = sum(n * 6 * 1024 * len(tools) + trees[n][1]["bytes"] // 2 * len(tools) for n in sizes)
    free = shutil.disk_usage(work).free
    deferred = free > need + 4 * GiB
    if not deferred:
        log(f"{human(free)} free < {human(need)} + 4 GiB: deleting as we go")
    # Leftovers of an interrupted run: repositories and restores under WORK/runs.
    for p in (work / "runs", work / "trash"):
        if p.exists():
            shutil.rmtree(p)

    out = Path(args.out) if args.out else \
        PROJECT / "scripts" / "results" / f"{started:%Y-%m-%d}-smallfiles.md"
    results: dict = {}
    for n in sizes:
        tree, info = trees[n]
        log(f"warming the page cache with {tree}")
        warm(tree)
        ctxs = {}
        for t in tools:
            base = work / "runs" / f"{t.name}-{n}"
            ctx = {"tree": tree, "repo": base / "repo", "target": base / "restore",
                   "cache": base / "cache", "config": base / "config", "log": base / "log"}
            for k in ("cache", "config", "log"):
                ctx[k].mkdir(parents=True)
            ctxs[t.name] = ctx
        failed = set()
        for step, label in STEPS:
            for t in tools:
                if t.name in failed:
                    continue
                ctx = ctxs[t.name]
                os.sync()  # the previous step's writeback does not land in this one's time
                load = os.getloadavg()[0]
                log(f"{t.name} {n}: {label} (load {load:.2f})")
                r = run_timed(t.command(step, ctx), t.env(ctx), ctx["log"] / f"{step}.log",
                              args.timeout)
                r["load"] = load
                r["repo_bytes"] = dir_bytes(ctx["repo"])
                results[(t.name, n, step)] = r
                if "wall" in r:
                    log(f"  {r['wall']:.2f} s, CPU {r['cpu']:.2f} s, "
                        f"{r['rss_kib'] / 1024:.1f} MiB")
                if r.get("error"):
                    log(f"  failed: {r['error']}")
                    failed.add(t.name)
                    continue
                if step == "restore":
                    v = verify_restore(ctx["target"], tree, info)
                    results[(t.name, n, "verify")] = v
                    log(f"  restore verification: {v[1]}")
                    move_to_trash(work, ctx["target"], deferred)
        for t in tools:
            move_to_trash(work, work / "runs" / f"{t.name}-{n}", deferred)
        report = render(results, tools, sizes, {k: v[1] for k, v in trees.items()}, args,
                        machine, started, datetime.datetime.now(datetime.timezone.utc), deferred)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report + "\n")
    (work / "results.json").write_text(json.dumps(
        [{"tool": k[0], "files": k[1], "step": k[2], "result": v} for k, v in results.items()],
        indent=1, default=str))
    if not args.keep:
        log("deleting the trash (restored trees, repositories)")
        shutil.rmtree(work / "trash", ignore_errors=True)
        shutil.rmtree(work / "runs", ignore_errors=True)
    print(report)
    log(f"report written to {out}")
    ok = all(not (isinstance(v, dict) and v.get("error")) for v in results.values())
    ok = ok and all(v[0] for k, v in results.items() if k[2] == "verify")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())

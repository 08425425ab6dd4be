#!/usr/bin/env python3
"""Side-by-side benchmark of cairn against restic, borg (and optionally rustic, bupstash).

Python 3.11, standard library only. See `--help` for what is measured and why.

Per tool and run, on one deterministic corpus with a warm page cache:

  init -> first backup -> unchanged re-backup -> (mutate ~2% of the small files and a few regions
  of the large file, including a 1 KiB insertion near its start) -> backup after mutation ->
  restore of the latest snapshot (then every restored byte is compared with the corpus, untimed)
  -> (the corpus is put back as it was) -> forget + prune keeping the last snapshot -> check with
  a full data read.

Each step's wall time, CPU time (user + sys of the child and its waited-for descendants, from
wait4), peak RSS (ru_maxrss from wait4; the max over the commands of a step) and the repository's
apparent size afterwards (like `du -sb`) are recorded; with --runs N the median of the N runs is
reported. Runs are interleaved (run 1 of every tool, then run 2 of every tool, ...) so slow drift
on a shared machine hits every tool alike.

Mutations: the small files chosen are saved under WORK/pristine before being changed in place and
copied back (content and mtime) afterwards; the large file's mutated version is built once as
WORK/mutated/disk.img and swapped in and out with two renames. A marker file records an applied
mutation, so an interrupted run is repaired at the next start (SIGINT/SIGTERM also end the running
command and put the corpus back).

Nothing is deleted while tools are measured (see Trash): restored trees, repositories and caches
are moved to WORK/trash and deleted at the end.

Cost: the default 2.4 GB corpus with 3 runs of cairn, restic and borg takes ~10 minutes on a
quiet 2-core machine (about 2 of them deleting the trash); generating the corpus once, ~2 more.
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
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    GiB, MiB, StepFailed, compare, find_restored_root, first_line, human, list_files, manifest, tail, warm)


def verify(target: Path, corpus: Path, expected: dict) -> tuple[bool, str]:
    root = find_restored_root(target, corpus, "disk.img", "small")
    if root is None:
        return False, "restored tree not found under the target"
    return compare(root, expected)


PROJECT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-peers-password"
CORPUS_VERSION = 2

# Default corpus: 2300 MiB (2.41 GB) = 1 GiB disk image + ~300 MiB media + ~977 MiB small files
# (the whole toolchain tree: ~52,000 files). --size scales all three by the same factor.
DEFAULT_SIZE = 2300 * MiB
FRACTION_LARGE = 1024 / 2300
FRACTION_MEDIA = 299 / 2300

STEPS = [
    ("init", "init"),
    ("backup1", "first backup"),
    ("backup2", "unchanged re-backup"),
    ("backup3", "backup after 2% mutation"),
    ("restore", "restore latest"),
    ("prune", "forget + prune (keep last 1)"),
    ("check", "check, full data read"),
]
# Run by cairn-parity only (`--cairn-parity`), after the check: one data pack deleted, then healed.
EXTRA_STEPS = [("heal", "repair packs after deleting one data pack")]
STEP_NAMES = dict(STEPS + EXTRA_STEPS)


def log(*args):
    print("[bench-peers]", *args, file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    for suffix, m in (("K", 1 << 10), ("M", MiB), ("G", GiB), ("T", 1 << 40)):
        if t.endswith(suffix):
            t, mult = t[:-1], m
            break
    return int(float(t) * mult)


# --------------------------------------------------------------------------------------------
# Running and measuring commands


TIME_BIN = "/usr/bin/time"  # GNU time: see run_measured
CURRENT_CHILD = None  # the running command's process group, ended with us on SIGTERM/SIGINT


def on_signal(signum, _frame):
    if CURRENT_CHILD is not None:
        try:
            os.killpg(CURRENT_CHILD, signal.SIGKILL)
        except ProcessLookupError:
            pass
    raise SystemExit(128 + signum)  # `finally` blocks put the corpus back as it was


def run_measured(argv, env, cwd, out_path, err_path, timeout, stdout_devnull=False):
    """Runs one command; returns dict(wall, cpu, rss_kib, rc). stdout/stderr go to files.

    Peak RSS: Linux's ru_maxrss of a child counts the memory of the process it was forked from
    (the parent's resident set at fork, kept as the pre-exec high-water mark), which for this
    script is a sizeable Python process. So when GNU time is there the command is started by it
    (a ~2 MiB process) and its %M is used; otherwise the wait4 figure is used and the report says
    so. CPU time is user + sys from wait4 either way (the tool and everything it waited for)."""
    rusage_file = str(err_path) + ".rusage"
    use_time = os.path.exists(TIME_BIN)
    full = [TIME_BIN, "-q", "-f", "%M", "-o", rusage_file, *argv] if use_time else list(argv)
    with open(err_path, "ab") as err, open(
        os.devnull if stdout_devnull else out_path, "ab"
    ) as out:
        start = time.perf_counter()
        try:
            p = subprocess.Popen(
                full, env=env, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as e:
            return {"wall": 0.0, "cpu": 0.0, "rss_kib": 0, "rc": 127, "error": str(e)}
        timed_out = []

        def kill():
            timed_out.append(True)
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        global CURRENT_CHILD
        CURRENT_CHILD = p.pid
        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            while True:
                try:
                    _, status, ru = os.wait4(p.pid, 0)
                    break
                except InterruptedError:
                    continue
        finally:
            timer.cancel()
            CURRENT_CHILD = None
        wall = time.perf_counter() - start
        p.returncode = os.waitstatus_to_exitcode(status)
    rss = ru.ru_maxrss
    if use_time:
        try:
            rss = int(Path(rusage_file).read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            pass
    res = {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss_kib": rss, "rc": p.returncode}
    if use_time and p.returncode == 127 and "No such file" in tail(Path(err_path), 2):
        res["error"] = "command not found"
    if timed_out:
        res["error"] = f"timed out after {timeout} s"
    return res


def repo_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def sync():
    os.sync()


# --------------------------------------------------------------------------------------------
# Corpus


def sysroot() -> Path:
    return Path(subprocess.run(["rustc", "--print", "sysroot"], check=True, capture_output=True,
                               text=True).stdout.strip())


def small_sources():
    """(label, directory) in the order files are taken; later ones only if the first run out."""
    sr = sysroot()
    srcs = [("rustlib", sr / "lib" / "rustlib"), ("doc", sr / "share" / "doc"),
            ("usr-share-doc", Path("/usr/share/doc")),
            ("usr-lib-python", Path(f"/usr/lib/python3.{sys.version_info.minor}")),
            ("usr-share", Path("/usr/share"))]
    return [(label, d) for label, d in srcs if d.is_dir()]


def corpus_spec(size: int):
    budget_large = int(size * FRACTION_LARGE) // 4096 * 4096
    budget_media = int(size * FRACTION_MEDIA)
    budget_small = size - budget_large - budget_media
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "version": CORPUS_VERSION,
        "size": size,
        "small_budget": budget_small,
        "large_bytes": budget_large,
        "media_budget": budget_media,
        "rustc": rustc,
    }


def make_small(corpus: Path, budget: int):
    """Copies real files up to `budget` bytes: the toolchain's lib/rustlib and share/doc as one
    pool (other trees only if the budget is larger than it). A smaller budget takes a
    deterministic random sample of that pool's files (each with probability budget/total), so
    the mix of file sizes and the file count scale with the budget."""
    dest_root = corpus / "small"
    srcs = small_sources()
    pools = [srcs[:2], *[[s] for s in srcs[2:]]]
    rng = random.Random(0x5A11)
    taken = count = 0
    per_source = {}
    for pool in pools:
        if taken >= budget * 0.99:  # later pools only fill what an exhausted pool left
            break
        files = [(label, src, rel, sz) for label, src in pool for rel, sz in list_files(src)]
        total = sum(f[3] for f in files)
        remaining = budget - taken
        if total <= remaining:
            chosen = files
        else:
            frac = remaining / total
            chosen, got, picked = [], 0, set()
            for i, f in enumerate(files):
                if rng.random() < frac and got + f[3] <= remaining:
                    chosen.append(f)
                    picked.add(i)
                    got += f[3]
            for i, f in enumerate(files):  # top up to the budget with files not yet taken
                if got >= remaining * 0.995:
                    break
                if i not in picked and got + f[3] <= remaining:
                    chosen.append(f)
                    got += f[3]
        for label, src, rel, sz in chosen:
            dst = dest_root / label / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copyfile(src / rel, dst)
            except OSError as e:
                log(f"skipping {src / rel}: {e}")
                continue
            taken += sz
            count += 1
            ps = per_source.setdefault(label, {"label": label, "source": str(src), "files": 0,
                                               "bytes": 0})
            ps["files"] += 1
            ps["bytes"] += sz
    return {"files": count, "bytes": taken, "sources": list(per_source.values())}


def text_pool(corpus: Path, want=8 * MiB) -> bytes:
    """Real text (html/markdown/source from the small files) for the disk image's text blocks."""
    buf = bytearray()
    for rel, _ in list_files(corpus / "small"):
        if rel.endswith((".html", ".md", ".rs", ".txt", ".toml", ".js", ".css")):
            buf += (corpus / "small" / rel).read_bytes()[: 256 * 1024]
            if len(buf) >= want:
                break
    if len(buf) < MiB:  # no text found: generated log lines
        buf += b"".join(f"Nov 24 02:55:{i % 60:02d} host kernel: [{i}.{i * 7 % 1000:03d}] eth0: "
                        f"link up, 1000 Mbps, full duplex, seq={i}\n".encode()
                        for i in range(200000))
    return bytes(buf)


def make_large(path: Path, size: int, pool: bytes):
    """A disk-image-like file: 4 KiB-aligned blocks of zeros, of real text and of random bytes."""
    rng = random.Random(0xD15C)
    zeros = bytes(4 * MiB)
    written = 0
    with open(path, "wb") as f:
        while written < size:
            kind = rng.choices(("zeros", "text", "random"), weights=(2, 3, 3))[0]
            n = min(rng.randrange(64 * 1024, 16 * MiB) // 4096 * 4096 + 4096, size - written)
            left = n
            while left:
                k = min(left, 4 * MiB)
                if kind == "zeros":
                    f.write(zeros[:k])
                elif kind == "random":
                    f.write(rng.randbytes(k))
                else:
                    off = rng.randrange(0, len(pool))
                    chunk = (pool[off:] + pool)[:k]
                    while len(chunk) < k:
                        chunk += pool
                    f.write(chunk[:k])
                left -= k
            written += n


def make_media(corpus: Path, budget: int):
    rng = random.Random(0x3ED1A)
    d = corpus / "media"
    d.mkdir(parents=True, exist_ok=True)
    i, left = 0, budget
    while left > 0:
        n = min(rng.randrange(2_000_000, 20_000_001), left)
        with open(d / f"clip-{i:03d}.mp4", "wb") as f:
            k = n
            while k:
                step = min(k, 4 * MiB)
                f.write(rng.randbytes(step))
                k -= step
        left -= n
        i += 1
    return i


CORPUS_DELETED_AT = None  # when an old corpus was deleted (see Trash)


def ensure_corpus(work: Path, size: int):
    corpus = work / "corpus"
    spec = corpus_spec(size)
    spec_path = work / "corpus.json"
    if spec_path.exists() and corpus.is_dir():
        old = json.loads(spec_path.read_text())
        if old.get("spec") == spec:
            log(f"reusing corpus {corpus}")
            return corpus, old
    log(f"generating corpus of {human(size)} in {corpus}")
    global CORPUS_DELETED_AT
    if corpus.exists():
        CORPUS_DELETED_AT = time.monotonic()
    for p in (corpus, work / "mutated", work / "pristine", work / "manifest-mutated.json",
              work / "mutation-applied", spec_path):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    corpus.mkdir(parents=True)
    t0 = time.perf_counter()
    small = make_small(corpus, spec["small_budget"])
    log(f"  small files: {small['files']} files, {human(small['bytes'])}")
    make_large(corpus / "disk.img", spec["large_bytes"], text_pool(corpus))
    log(f"  disk image: {human(spec['large_bytes'])}")
    media = make_media(corpus, spec["media_budget"])
    log(f"  media: {media} files, {human(spec['media_budget'])}")
    info = {"spec": spec, "small": small, "media_files": media,
            "generated_s": round(time.perf_counter() - t0, 1)}
    spec_path.write_text(json.dumps(info, indent=1))
    return corpus, info


# --------------------------------------------------------------------------------------------
# Mutation (applied after the unchanged re-backup, undone after the restore is verified)


def mutation_plan(corpus: Path):
    small = list_files(corpus / "small")
    rng = random.Random(0x2FC)
    k = max(1, round(len(small) * 0.02))
    picks = sorted(rng.sample(range(len(small)), k))
    ops = []
    for i in picks:
        rel, size = small[i]
        n = rng.randrange(1024, 8 * 1024 + 1)
        data = rng.randbytes(n)
        if rng.random() < 0.5 or size <= n:
            ops.append({"path": "small/" + rel, "op": "append", "data": data})
        else:
            ops.append({"path": "small/" + rel, "op": "overwrite",
                        "offset": rng.randrange(0, size - n), "data": data})
    large = (corpus / "disk.img").stat().st_size
    # Final-file coordinates: the insertion first, then overwrites further on.
    large_ops = {
        "insert_at": min(MiB + 4321, large // 3),
        "insert": rng.randbytes(1024),
        "overwrites": [(int(large * f) + 1024, rng.randbytes(8 * 1024)) for f in (0.3, 0.6, 0.9)],
    }
    return ops, large_ops


def describe_plan(ops, large_ops, corpus: Path):
    n_small = len(list_files(corpus / "small"))
    appended = sum(1 for o in ops if o["op"] == "append")
    return (f"{len(ops)} of {n_small} small files ({100 * len(ops) / max(1, n_small):.1f}%): "
            f"{appended} with 1-8 KiB appended, {len(ops) - appended} with 1-8 KiB overwritten "
            f"in place; disk.img: 1 KiB inserted at offset {large_ops['insert_at']} and 8 KiB "
            f"overwritten at 30%, 60% and 90%")


def build_mutated_large(work: Path, corpus: Path, large_ops):
    dst = work / "mutated" / "disk.img"
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".tmp")
    src = corpus / "disk.img"
    at = large_ops["insert_at"]
    with open(src, "rb") as fi, open(tmp, "wb") as fo:
        fo.write(fi.read(at))
        fo.write(large_ops["insert"])
        shutil.copyfileobj(fi, fo, 4 * MiB)
    with open(tmp, "r+b") as fo:
        for off, data in large_ops["overwrites"]:
            fo.seek(off)
            fo.write(data)
    tmp.rename(dst)


def apply_mutation(work: Path, corpus: Path, ops):
    marker = work / "mutation-applied"
    pristine = work / "pristine"
    for o in ops:
        src = corpus / o["path"]
        save = pristine / o["path"]
        save.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, save)
    marker.write_text("applied\n")
    for o in ops:
        p = corpus / o["path"]
        if o["op"] == "append":
            with open(p, "ab") as f:
                f.write(o["data"])
        else:
            with open(p, "r+b") as f:
                f.seek(o["offset"])
                f.write(o["data"])
    os.rename(corpus / "disk.img", pristine / "disk.img")
    os.rename(work / "mutated" / "disk.img", corpus / "disk.img")


def undo_mutation(work: Path, corpus: Path):
    marker = work / "mutation-applied"
    if not marker.exists():
        return
    pristine = work / "pristine"
    if (pristine / "disk.img").exists():
        os.rename(corpus / "disk.img", work / "mutated" / "disk.img")
        os.rename(pristine / "disk.img", corpus / "disk.img")
    for dirpath, _dirs, files in os.walk(pristine):
        for f in files:
            src = Path(dirpath) / f
            rel = src.relative_to(pristine)
            shutil.copy2(src, corpus / rel)  # rewrites in place: same inode, nothing deleted
    # The pristine copies stay (overwritten in place next time): see Trash for why nothing the
    # benchmark makes is deleted while it runs.
    marker.unlink()


# --------------------------------------------------------------------------------------------
# Hash walks (verification) and warming the cache


# --------------------------------------------------------------------------------------------
# Tools


class Tool:
    name = "?"
    ok_codes = (0,)
    notes = ""

    def __init__(self, binary: str):
        self.bin = binary

    def env(self, ctx) -> dict:
        env = dict(os.environ)
        for k in list(env):
            if k.startswith(("CAIRN_", "RESTIC_", "BORG_", "RUSTIC_", "BUPSTASH_")):
                del env[k]
        env["XDG_CACHE_HOME"] = str(ctx["cache"])
        env["XDG_CONFIG_HOME"] = str(ctx["config"])
        return env

    def version(self) -> str:
        return "?"

    def commands(self, step, ctx):
        """A list of (argv, options) run in sequence for `step`."""
        raise NotImplementedError


class Cairn(Tool):
    name = "cairn"
    notes = "defaults (compression auto, 16 MiB packs, threads = all cores); cache in XDG_CACHE_HOME"
    # Extra `init` options (`--cairn-parity` measures the default against `--parity off`).
    init_args: tuple = ()

    def env(self, ctx):
        env = super().env(ctx)
        env["CAIRN_PASSWORD"] = PASSWORD
        env["CAIRN_REPOSITORY"] = str(ctx["repo"])
        return env

    def version(self):
        v = first_line([self.bin, "--version"])
        rev = subprocess.run(["git", "-C", str(PROJECT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(PROJECT), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True).stdout
        return f"{v} (git {rev}{', uncommitted changes' if dirty.strip() else ''})"

    def commands(self, step, ctx):
        b = self.bin
        return {
            "init": [[b, "init", *self.init_args]],
            "backup1": [[b, "backup", "--json", "--no-progress", str(ctx["corpus"])]],
            "backup2": [[b, "backup", "--json", "--no-progress", str(ctx["corpus"])]],
            "backup3": [[b, "backup", "--json", "--no-progress", str(ctx["corpus"])]],
            "restore": [[b, "restore", "--no-progress", "latest", "--target", str(ctx["target"])]],
            "prune": [[b, "forget", "--keep-last", "1", "--prune"]],
            "check": [[b, "check", "--read-data", "--no-progress"]],
        }[step]


class CairnBefore(Cairn):
    """An earlier cairn binary measured beside the current one (`--cairn-before BIN`), so a
    change's effect is a ratio from one run on one machine, not two runs hours apart."""
    name = "cairn-before"

    def __init__(self, binary: str, label: str | None):
        super().__init__(binary)
        self.label = label

    def version(self):
        v = first_line([self.bin, "--version"])
        return f"{v} ({self.label})" if self.label else v


class CairnParity(Cairn):
    """The current cairn binary with parity (`--cairn-parity N`), interleaved with cairn without
    it, so parity's cost (time, growth) is a ratio from one run; it also heals a deleted pack."""
    name = "cairn-parity"

    def __init__(self, binary: str, percent: int):
        super().__init__(binary)
        self.percent = percent
        self.notes = f"as cairn, with `init --parity {percent}%`"

    def commands(self, step, ctx):
        b = self.bin
        if step == "init":
            return [[b, "init", "--parity", f"{self.percent}%"]]
        if step == "heal":
            return [[b, "repair", "packs", "--json", "--no-progress"]]
        return super().commands(step, ctx)

    def damage(self, ctx) -> int:
        """Deletes the largest data pack; returns its size (the bytes the heal must rebuild)."""
        packs = sorted((p.stat().st_size, p) for p in (ctx["repo"] / "data").glob("*/*")
                       if p.is_file())
        size, victim = packs[-1]
        victim.unlink()
        return size


class Restic(Tool):
    name = "restic"
    notes = "defaults (repo v2, compression auto); cache in RESTIC_CACHE_DIR under the work dir"

    def env(self, ctx):
        env = super().env(ctx)
        env["RESTIC_PASSWORD"] = PASSWORD
        env["RESTIC_REPOSITORY"] = str(ctx["repo"])
        env["RESTIC_CACHE_DIR"] = str(ctx["cache"] / "restic")
        return env

    def version(self):
        return first_line([self.bin, "version"])

    def commands(self, step, ctx):
        b = self.bin
        return {
            "init": [[b, "init"]],
            "backup1": [[b, "backup", str(ctx["corpus"])]],
            "backup2": [[b, "backup", str(ctx["corpus"])]],
            "backup3": [[b, "backup", str(ctx["corpus"])]],
            "restore": [[b, "restore", "latest", "--target", str(ctx["target"])]],
            "prune": [[b, "forget", "--keep-last", "1", "--prune"]],
            "check": [[b, "check", "--read-data"]],
        }[step]


class Borg(Tool):
    name = "borg"
    ok_codes = (0, 1)  # 1 = finished with warnings
    notes = ("repokey encryption, default lz4 compression; forget + prune = `borg prune` + "
             "`borg compact`; check = `borg check --verify-data`")

    def env(self, ctx):
        env = super().env(ctx)
        env["BORG_PASSPHRASE"] = PASSWORD
        env["BORG_REPO"] = str(ctx["repo"])
        env["BORG_BASE_DIR"] = str(ctx["cache"] / "borg-base")
        env["BORG_RELOCATED_REPO_ACCESS_IS_OK"] = "yes"
        env["BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK"] = "yes"
        return env

    def version(self):
        return first_line([self.bin, "--version"])

    def commands(self, step, ctx):
        b = self.bin
        return {
            "init": [[b, "init", "--encryption=repokey"]],
            "backup1": [[b, "create", "::b1", str(ctx["corpus"])]],
            "backup2": [[b, "create", "::b2", str(ctx["corpus"])]],
            "backup3": [[b, "create", "::b3", str(ctx["corpus"])]],
            "restore": [([b, "extract", "::b3"], {"cwd": ctx["target"]})],
            "prune": [[b, "prune", "--keep-last", "1"], [b, "compact"]],
            "check": [[b, "check", "--verify-data"]],
        }[step]


class Rustic(Tool):
    name = "rustic"
    notes = "defaults; cache dir under the work dir"

    def env(self, ctx):
        env = super().env(ctx)
        env["RUSTIC_PASSWORD"] = PASSWORD
        env["RUSTIC_REPOSITORY"] = str(ctx["repo"])
        env["RUSTIC_CACHE_DIR"] = str(ctx["cache"] / "rustic")
        return env

    def version(self):
        return first_line([self.bin, "--version"])

    def commands(self, step, ctx):
        b = self.bin
        return {
            "init": [[b, "init"]],
            "backup1": [[b, "backup", str(ctx["corpus"])]],
            "backup2": [[b, "backup", str(ctx["corpus"])]],
            "backup3": [[b, "backup", str(ctx["corpus"])]],
            "restore": [[b, "restore", "latest", str(ctx["target"])]],
            "prune": [[b, "forget", "--keep-last", "1", "--prune"]],
            "check": [[b, "check", "--read-data"]],
        }[step]


class Bupstash(Tool):
    name = "bupstash"
    notes = ("key file, send log under the work dir (its documented incremental mode); "
             "forget + prune = `bupstash rm` of the older puts + `bupstash gc`; bupstash has no "
             "check command, so `check` = `bupstash get` of the kept snapshot to /dev/null "
             "(decrypts and verifies every byte it references)")

    def env(self, ctx):
        env = super().env(ctx)
        env["BUPSTASH_REPOSITORY"] = str(ctx["repo"])
        env["BUPSTASH_KEY"] = str(ctx["cache"] / "bupstash.key")
        env["BUPSTASH_QUERY_CACHE"] = str(ctx["cache"] / "bupstash.qcache")
        return env

    def version(self):
        return first_line([self.bin, "version"])

    def commands(self, step, ctx):
        b = self.bin
        key = str(ctx["cache"] / "bupstash.key")
        sendlog = str(ctx["cache"] / "bupstash.sendlog")

        def put(tag):
            return [b, "put", "--send-log", sendlog, f"bench={tag}", str(ctx["corpus"])]

        return {
            "init": [[b, "init"], [b, "new-key", "-o", key]],
            "backup1": [put("b1")],
            "backup2": [put("b2")],
            "backup3": [put("b3")],
            "restore": [[b, "restore", "--into", str(ctx["target"]), "bench=b3"]],
            "prune": [[b, "rm", "--allow-many", "bench=b1", "or", "bench=b2"], [b, "gc"]],
            "check": [([b, "get", "bench=b3"], {"stdout_devnull": True})],
        }[step]


TOOL_CLASSES = {c.name: c for c in (Cairn, Restic, Borg, Rustic, Bupstash)}


# --------------------------------------------------------------------------------------------
# Installing peers


_apt_updated = False


def apt_install(*pkgs):
    global _apt_updated
    if os.geteuid() != 0:
        log(f"not root: cannot apt-get install {' '.join(pkgs)}")
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _apt_updated:
        r = subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            log(f"apt-get update failed:\n{r.stderr}")
        _apt_updated = True
    r = subprocess.run(["apt-get", "install", "-y", "-qq", *pkgs], env=env, capture_output=True,
                       text=True)
    if r.returncode != 0:
        log(f"apt-get install {' '.join(pkgs)} failed:\n{r.stderr[-3000:]}")
        return False
    return True


def cargo_install(work: Path, crate: str, extra, binary: str):
    root = work / "tools"
    exe = root / "bin" / binary
    if exe.exists():
        return str(exe)
    log(f"building {crate} with cargo install (this takes many minutes)")
    env = dict(os.environ, CARGO_TARGET_DIR=str(root / f"target-{crate}"))
    r = subprocess.run(["cargo", "install", crate, "--locked", "--root", str(root), *extra],
                       env=env, capture_output=True, text=True)
    if r.returncode != 0 or not exe.exists():
        log(f"cargo install {crate} failed:\n{r.stderr[-3000:]}")
        return None
    return str(exe)


def find_binary(work: Path, name: str):
    local = work / "tools" / "bin" / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def prepare_tools(args, work: Path):
    wanted = args.tools.split(",") if args.tools else None
    tools = []
    # cairn: always rebuilt (another session may be changing it), then copied so a concurrent
    # rebuild cannot swap the binary under a running benchmark.
    if wanted is None or "cairn" in wanted:
        # Absolute: the tools run with the work directory as their current directory.
        binary = str(Path(args.cairn).resolve()) if args.cairn else None
        if binary is None:
            if not args.no_build:
                log("cargo build --release (waits for cargo's lock if another build runs)")
                r = subprocess.run(["cargo", "build", "--release"], cwd=PROJECT)
                built_ok = r.returncode == 0
                if not built_ok:
                    log("cargo build --release failed: cairn is skipped (a stale binary is never "
                        "measured; --no-build or --cairn BIN to measure one anyway)")
            else:
                built_ok = True
            built = PROJECT / "target" / "release" / "cairn"
            if built_ok and built.exists():
                (work / "bin").mkdir(parents=True, exist_ok=True)
                shutil.copy2(built, work / "bin" / "cairn")
                binary = str(work / "bin" / "cairn")
        if binary:
            tools.append(Cairn(binary))
        if args.cairn_before:
            # Copied too: the path may be rebuilt while the benchmark runs.
            (work / "bin").mkdir(parents=True, exist_ok=True)
            shutil.copy2(args.cairn_before, work / "bin" / "cairn-before")
            tools.append(CairnBefore(str(work / "bin" / "cairn-before"), args.cairn_before_label))
        if binary and args.cairn_parity is not None:
            # The baseline without parity (a local repository's default has parity).
            for t in tools:
                if type(t) is Cairn:
                    t.init_args = ("--parity", "off")
                    t.notes += "; `init --parity off` (the baseline of cairn-parity)"
            tools.append(CairnParity(binary, args.cairn_parity))
    for name, pkg in (("restic", "restic"), ("borg", "borgbackup")):
        if wanted is not None and name not in wanted:
            continue
        if shutil.which(name) is None and not args.no_install:
            apt_install(pkg)
        if shutil.which(name):
            tools.append(TOOL_CLASSES[name](shutil.which(name)))
        else:
            log(f"{name} is not installed; skipped")
    if args.with_rustic:
        cargo_install(work, "rustic-rs", ["--no-default-features"], "rustic")
    if args.with_bupstash:
        if shutil.which("pkg-config") is None or not Path("/usr/include/sodium.h").exists():
            apt_install("libsodium-dev", "pkg-config")
        cargo_install(work, "bupstash", [], "bupstash")
    for name in ("rustic", "bupstash"):
        if wanted is not None and name not in wanted:
            continue
        exe = find_binary(work, name)
        if exe:
            tools.append(TOOL_CLASSES[name](exe))
        elif wanted is not None:
            log(f"{name} requested but not built (use --with-{name}); skipped")
    return tools


# --------------------------------------------------------------------------------------------
# One run of one tool


class Trash:
    """Where the benchmark's own deletions go while it runs.

    On ext4 without a journal (this machine's root filesystem, for one) the inode allocator skips
    inodes deleted less than 60 s ago (360 s while their inode table block is dirty), scanning
    past every one of them for each new file: creating 28,000 files right after deleting 28,000
    costs seconds of kernel time (`recently_deleted` in `__ext4_new_inode`), and the restore that
    follows another tool's deleted restore is measured slow. So restored trees, repositories and
    caches are renamed into WORK/trash and deleted once, at the end. If the disk is too small
    for that, they are deleted at once (then synced), and a restore waits until --settle seconds
    have passed since the last deletion."""

    def __init__(self, work: Path, defer: bool, settle: float):
        self.dir = work / "trash"
        self.defer = defer
        self.settle = settle
        self.last_delete = None
        self.n = 0

    def discard(self, p: Path):
        if not (p.exists() or p.is_symlink()):
            return
        if self.defer:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.n += 1
            os.rename(p, self.dir / f"{self.n:04d}-{p.name}")
        else:
            rm_rf(p)
            sync()
            self.last_delete = time.monotonic()

    def before_restore(self):
        if self.last_delete is not None and self.settle > 0:
            wait = self.settle - (time.monotonic() - self.last_delete)
            if wait > 0:
                log(f"waiting {wait:.0f} s after the last deletion before restoring "
                    f"(see --settle)")
                time.sleep(wait)

    def empty(self):
        if self.dir.exists():
            rm_rf(self.dir)
            sync()
            self.last_delete = time.monotonic()


def rm_rf(p: Path):
    if p.is_dir() and not p.is_symlink():
        # rm(1) is several times faster than shutil.rmtree on 500,000 files
        if subprocess.run(["rm", "-rf", "--one-file-system", "--", str(p)]).returncode != 0:
            shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()


RESTORE_FS_NOTE = {
    "same": "restores too.",
    "fresh": "each restore to a new ext4 (no journal) on a loop device with direct I/O, made "
             "just before it and thrown away after its verification (`--restore-fs fresh`).",
}


class FreshFs:
    """--restore-fs fresh: each restore goes to an ext4 made just before it (without a journal,
    like this machine's root filesystem) on a loop device with direct I/O, and the filesystem is
    thrown away once the restored tree is verified.

    Why: the root filesystem ages while benchmarks run (hundreds of thousands of files created
    and deleted), and the cost of creating files there varies run to run with the state of the
    inode allocator and of the guest's free memory; on this VM identical cairn restores took
    3.4-7 s. A fresh filesystem gives every tool the same starting point in every run."""

    def __init__(self, work: Path):
        self.img = work / "restore-fs.img"
        self.mnt = work / "restore-fs"
        self.dev = None

    def make(self, size: int):
        self.drop()
        with open(self.img, "wb") as f:
            f.truncate(size)
        self.dev = subprocess.run(["losetup", "--direct-io=on", "-f", "--show", str(self.img)],
                                  check=True, capture_output=True, text=True).stdout.strip()
        subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", self.dev], check=True)
        self.mnt.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", self.dev, str(self.mnt)], check=True)

    def drop(self):
        if os.path.ismount(self.mnt):
            subprocess.run(["umount", str(self.mnt)], check=True)
        if self.img.exists():  # this run's device, and any an interrupted run left behind
            left = subprocess.run(["losetup", "-j", str(self.img), "-n", "-O", "NAME"],
                                  capture_output=True, text=True).stdout.split()
            for dev in left:
                subprocess.run(["losetup", "-d", dev], check=False)
        self.dev = None
        if self.img.exists():
            self.img.unlink()


def run_tool(tool: Tool, run: int, work: Path, corpus: Path, ops, expected_fn, args,
             trash: Trash, fresh: FreshFs | None = None):
    ctx = {
        "repo": work / "repos" / tool.name,
        "cache": work / "cache" / tool.name,
        "config": work / "cache" / tool.name / "config",
        "target": work / "restore" / tool.name,
        "corpus": corpus,
    }
    logdir = work / "logs" / f"run{run}" / tool.name
    for p in (ctx["repo"], ctx["cache"], ctx["target"]):
        trash.discard(p)
    rm_rf(logdir)
    ctx["repo"].parent.mkdir(parents=True, exist_ok=True)
    ctx["config"].mkdir(parents=True, exist_ok=True)
    logdir.mkdir(parents=True, exist_ok=True)
    env = tool.env(ctx)
    result = {"tool": tool.name, "run": run, "steps": {}, "error": None, "verify": None}

    def step(name):
        sync()
        total = {"wall": 0.0, "cpu": 0.0, "rss_kib": 0}
        for i, cmd in enumerate(tool.commands(name, ctx)):
            argv, opts = cmd if isinstance(cmd, tuple) else (cmd, {})
            out, err = logdir / f"{name}.{i}.out", logdir / f"{name}.{i}.err"
            r = run_measured(argv, env, str(opts.get("cwd", work)), out, err, args.timeout,
                             stdout_devnull=opts.get("stdout_devnull", False))
            total["wall"] += r["wall"]
            total["cpu"] += r["cpu"]
            total["rss_kib"] = max(total["rss_kib"], r["rss_kib"])
            if r["rc"] not in tool.ok_codes or "error" in r:
                raise StepFailed(
                    f"{tool.name} {STEP_NAMES[name]} (run {run}): `{shlex.join(argv)}` exited "
                    f"{r['rc']}{' — ' + r['error'] if 'error' in r else ''}\n"
                    f"stderr (last lines, {err}):\n{tail(err)}")
            if r["rc"] != 0:
                result.setdefault("warnings", []).append(
                    f"{STEP_NAMES[name]}: exit {r['rc']}: {tail(err, 3)}")
        total["repo_bytes"] = repo_bytes(ctx["repo"])
        result["steps"][name] = total
        log(f"run {run} {tool.name:8} {STEP_NAMES[name]:30} wall {total['wall']:7.2f} s  "
            f"cpu {total['cpu']:7.2f} s  rss {total['rss_kib'] / 1024:7.1f} MiB  "
            f"repo {total['repo_bytes'] / 1e6:8.1f} MB")

    try:
        warm(corpus)
        step("init")
        step("backup1")
        step("backup2")
        apply_mutation(work, corpus, ops)
        try:
            warm(corpus / "disk.img")  # the swapped-in mutated image
            step("backup3")
            if fresh:
                fresh.make(int(sum(f.stat().st_size for f in corpus.rglob("*") if f.is_file())
                               * 1.5) + 2 * GiB)
                ctx["target"] = fresh.mnt / tool.name
            else:
                trash.before_restore()
            ctx["target"].mkdir(parents=True, exist_ok=True)
            step("restore")
            ok, msg = verify(ctx["target"], corpus, expected_fn())
            result["verify"] = (ok, msg)
            log(f"run {run} {tool.name:8} verification: {'OK' if ok else 'FAILED'}: {msg}")
        finally:
            if fresh:
                fresh.drop()
                ctx["target"] = work / "restore" / tool.name
            else:
                trash.discard(ctx["target"])
            undo_mutation(work, corpus)
        step("prune")
        step("check")
        if isinstance(tool, CairnParity):
            result["heal_bytes"] = tool.damage(ctx)
            step("heal")
    except StepFailed as e:
        result["error"] = str(e)
        log(f"FAILED: {e}")
    except Exception as e:  # keep going with the next tool whatever happened
        result["error"] = f"{tool.name} (run {run}): {type(e).__name__}: {e}"
        log(f"FAILED: {result['error']}")
    finally:
        undo_mutation(work, corpus)
        if not args.keep:
            trash.discard(ctx["repo"])
            trash.discard(ctx["cache"])
    # cairn's own account of what each backup read and added (informative)
    if tool.name == "cairn":
        summaries = {}
        for name in ("backup1", "backup2", "backup3"):
            try:
                lines = (logdir / f"{name}.0.out").read_text().splitlines()
                s = json.loads([ln for ln in lines if '"summary"' in ln][-1])
                summaries[name] = {k: s.get(k) for k in ("bytes_read", "data_added",
                                                           "data_added_stored", "files_new",
                                                           "files_changed", "files_unmodified")}
            except (OSError, IndexError, ValueError):
                pass
        result["cairn_summaries"] = summaries
    return result


# --------------------------------------------------------------------------------------------
# Report


def machine_info():
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": model, "ram": mem,
            "kernel": platform.release(), "load_start": os.getloadavg()}


def median_steps(results, tool):
    """{step: {metric: median}, plus 'n' = successful runs of that step}."""
    out = {}
    for step in STEP_NAMES:
        vals = [r["steps"][step] for r in results if r["tool"] == tool and step in r["steps"]]
        if not vals:
            continue
        out[step] = {m: statistics.median(v[m] for v in vals)
                     for m in ("wall", "cpu", "rss_kib", "repo_bytes")}
        out[step]["n"] = len(vals)
    return out


def fmt_ratio(x):
    return "—" if x is None else f"{x:.2f}"


def render(results, tools, info, args, machine, corpus_info, plan_text, started, finished):
    runs = args.runs
    lines = []
    day = started.strftime("%Y-%m-%d")
    lines.append(f"# cairn vs peers — {day}\n")
    lines.append(f"Command: `{shlex.join([sys.argv[0], *sys.argv[1:]])}` "
                 f"(from `{PROJECT}`), {started:%H:%M}–{finished:%H:%M} UTC.\n")
    lines.append(
        f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['ram']} RAM, Linux "
        f"{machine['kernel']}; load average at start {machine['load_start'][0]:.2f}, at end "
        f"{os.getloadavg()[0]:.2f}. The machine is shared with other work (another session may "
        f"build or test at the same time), so single numbers can be noisy; runs are "
        f"interleaved across tools.\n")
    spec = corpus_info["spec"]
    small = corpus_info["small"]
    src = ", ".join(f"{s['label']} {s['files']} files / {human(s['bytes'])}"
                    for s in small["sources"])
    lines.append("## Corpus\n")
    lines.append(
        f"{human(spec['size'])} ({spec['size'] / 1e9:.2f} GB), deterministic "
        f"(toolchain: {spec['rustc']}):\n\n"
        f"- small real files: {small['files']} files, {human(small['bytes'])} copied from the "
        f"Rust toolchain's `lib/rustlib` and `share/doc` and, past those, from `/usr/share/doc` "
        f"and Python's library ({src}); a deterministic random sample of the files when the "
        f"budget is smaller than the trees;\n"
        f"- `disk.img`: {human(spec['large_bytes'])}, 4 KiB-aligned blocks (64 KiB–16 MiB) of "
        f"zeros, real text and random bytes;\n"
        f"- media: {corpus_info['media_files']} files of 2–20 MB of random bytes, "
        f"{human(spec['media_budget'])}.\n\n"
        f"Mutation before the third backup: {plan_text}. Page cache warm (corpus read before "
        f"each tool's run). Repositories and caches on the same disk as the corpus; "
        f"{RESTORE_FS_NOTE[args.restore_fs]}\n")
    lines.append("## Tools\n")
    for t in tools:
        lines.append(f"- **{t.name}** {t.version_text} — {t.notes}")
    lines.append("")
    lines.append(
        f"Each tool runs the scenario {runs} time(s) from a fresh repository; the tables give "
        f"the median of the runs. wall = elapsed seconds; CPU = user + sys seconds of the tool's "
        f"processes (wait4); peak RSS = max resident set of the step's commands "
        f"({'GNU time %M' if os.path.exists(TIME_BIN) else 'ru_maxrss from wait4, which includes this Python process at fork: a floor of tens of MiB'}); repo = the "
        f"repository's apparent size after the step (`du -sb`, 10^6 bytes). Restore time "
        f"excludes the verification of every restored byte (BLAKE2b walk against the corpus). "
        f"{args.deletion_note}\n")

    med = {t.name: median_steps(results, t.name) for t in tools}
    lines.append("## Results (median)\n")
    lines.append("| tool | scenario | wall s | CPU s | peak RSS MiB | repo MB |")
    lines.append("|---|---|---:|---:|---:|---:|")
    for t in tools:
        for step, label in STEPS:
            m = med[t.name].get(step)
            if m is None:
                lines.append(f"| {t.name} | {label} | not run (see errors) | | | |")
                continue
            n = "" if m["n"] == runs else f" ({m['n']}/{runs} runs)"
            lines.append(f"| {t.name} | {label}{n} | {m['wall']:.2f} | {m['cpu']:.2f} | "
                         f"{m['rss_kib'] / 1024:.1f} | {m['repo_bytes'] / 1e6:.1f} |")
    lines.append("")

    if med.get("cairn") and med.get("cairn-before"):
        lines.append("## cairn before → after\n")
        lines.append("after ÷ before for each figure (below 1: the current tree is faster or "
                     "smaller); both binaries ran interleaved in the same run.\n")
        lines.append("| scenario | wall before s | wall after s | wall ratio | CPU ratio | "
                     "RSS ratio | repo ratio |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        a, b = med["cairn"], med["cairn-before"]
        for step, label in STEPS:
            x, y = a.get(step), b.get(step)
            if x is None or y is None:
                lines.append(f"| {label} | — | — | — | — | — | — |")
                continue

            def ratio(k):
                return fmt_ratio(x[k] / y[k] if y[k] else None)
            lines.append(f"| {label} | {y['wall']:.2f} | {x['wall']:.2f} | {ratio('wall')} | "
                         f"{ratio('cpu')} | {ratio('rss_kib')} | {ratio('repo_bytes')} |")
        lines.append("")

    if med.get("cairn") and med.get("cairn-parity"):
        pct = next(t.percent for t in tools if isinstance(t, CairnParity))
        lines.append(f"## cairn with parity ({pct}%) ÷ cairn without\n")
        lines.append(f"Goals (issue 18): backup time within 10% (ratio ≤ 1.10), repository growth "
                     f"within the parity percentage plus 1% (ratio ≤ {1 + (pct + 1) / 100:.2f}).\n")
        lines.append("| scenario | wall without s | wall with s | wall ratio | CPU ratio | "
                     "repo ratio |")
        lines.append("|---|---:|---:|---:|---:|---:|")
        a, b = med["cairn-parity"], med["cairn"]
        for step, label in STEPS:
            x, y = a.get(step), b.get(step)
            if x is None or y is None:
                lines.append(f"| {label} | — | — | — | — | — |")
                continue

            def pratio(k):
                return fmt_ratio(x[k] / y[k] if y[k] else None)
            lines.append(f"| {label} | {y['wall']:.2f} | {x['wall']:.2f} | {pratio('wall')} | "
                         f"{pratio('cpu')} | {pratio('repo_bytes')} |")
        heal = a.get("heal")
        healed = [r["heal_bytes"] for r in results
                  if r["tool"] == "cairn-parity" and "heal_bytes" in r and "heal" in r["steps"]]
        if heal and healed:
            size = statistics.median(healed)
            lines.append(f"\nHealing one deleted data pack ({size / 1e6:.1f} MB) with "
                         f"`repair packs`: {heal['wall']:.2f} s, "
                         f"{size / 1e6 / heal['wall']:.1f} MB/s of rebuilt pack.")
        lines.append("")

    if "restic" in med and med["restic"]:
        lines.append("## Ratios to restic\n")
        lines.append("× faster = restic wall / tool wall (above 1: faster than restic); "
                     "RSS and repo = tool / restic (below 1: smaller than restic).\n")
        lines.append("| tool | scenario | × faster | RSS ÷ restic | repo ÷ restic |")
        lines.append("|---|---|---:|---:|---:|")
        r = med["restic"]
        for t in tools:
            if t.name == "restic":
                continue
            for step, label in STEPS:
                m, b = med[t.name].get(step), r.get(step)
                if m is None or b is None:
                    lines.append(f"| {t.name} | {label} | — | — | — |")
                    continue
                fast = b["wall"] / m["wall"] if m["wall"] > 0 else None
                rss = m["rss_kib"] / b["rss_kib"] if b["rss_kib"] else None
                repo = m["repo_bytes"] / b["repo_bytes"] if b["repo_bytes"] else None
                lines.append(f"| {t.name} | {label} | {fmt_ratio(fast)} | {fmt_ratio(rss)} | "
                             f"{fmt_ratio(repo)} |")
        lines.append("")

    lines.append("## Summary in the shape of issue 7's table\n")
    lines.append("| tool | first backup | unchanged re-backup | after 2% mutation | restore | "
                 "peak RSS backup / restore | repo after 1st backup | added by mutation |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for t in tools:
        m = med[t.name]

        def w(s):
            return f"{m[s]['wall']:.2f} s" if s in m else "—"

        rss_b = max((m[s]["rss_kib"] for s in ("backup1", "backup2", "backup3") if s in m),
                    default=None)
        rss_r = m["restore"]["rss_kib"] if "restore" in m else None
        rss = (f"{rss_b / 1024:.0f} / {rss_r / 1024:.0f} MiB"
               if rss_b is not None and rss_r is not None else "—")
        repo1 = f"{m['backup1']['repo_bytes'] / 1e6:.0f} MB" if "backup1" in m else "—"
        added = "—"
        deltas = [r["steps"]["backup3"]["repo_bytes"] - r["steps"]["backup2"]["repo_bytes"]
                  for r in results if r["tool"] == t.name and "backup3" in r["steps"]]
        if deltas:
            added = f"{statistics.median(deltas) / 1e6:.1f} MB"
        lines.append(f"| {t.name} | {w('backup1')} | {w('backup2')} | {w('backup3')} | "
                     f"{w('restore')} | {rss} | {repo1} | {added} |")
    total = spec["size"]
    lines.append("")
    thr = []
    for t in tools:
        m = med[t.name]
        if "backup1" in m and "restore" in m:
            thr.append(f"{t.name} {total / 1e6 / m['backup1']['wall']:.0f} / "
                       f"{total / 1e6 / m['restore']['wall']:.0f}")
    if thr:
        lines.append("Throughput, first backup / restore, MB/s: " + "; ".join(thr) + ".\n")

    lines.append("## Verification and errors\n")
    for r in results:
        v = r["verify"]
        vtxt = "not reached" if v is None else ("OK: " if v[0] else "FAILED: ") + v[1]
        lines.append(f"- run {r['run']} {r['tool']}: restore verification {vtxt}"
                     + (f"; warnings: {r['warnings']}" if r.get("warnings") else ""))
    errors = [r["error"] for r in results if r["error"]]
    if errors:
        lines.append("")
        for e in errors:
            lines.append("```\n" + e.strip() + "\n```")
    lines.append("")
    cs = [r for r in results if r.get("cairn_summaries")]
    if cs:
        lines.append("cairn's own backup summaries (`--json`), run 1:\n")
        for name, s in cs[0]["cairn_summaries"].items():
            lines.append(f"- {STEP_NAMES[name]}: " + ", ".join(f"{k} {v}" for k, v in s.items()))
        lines.append("")

    if runs > 1:
        lines.append("<details><summary>Every run</summary>\n")
        lines.append("| run | tool | scenario | wall s | CPU s | peak RSS MiB | repo MB |")
        lines.append("|---|---|---|---:|---:|---:|---:|")
        for r in results:
            for step, label in STEPS:
                s = r["steps"].get(step)
                if s:
                    lines.append(f"| {r['run']} | {r['tool']} | {label} | {s['wall']:.2f} | "
                                 f"{s['cpu']:.2f} | {s['rss_kib'] / 1024:.1f} | "
                                 f"{s['repo_bytes'] / 1e6:.1f} |")
        lines.append("\n</details>\n")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(
        description="Benchmark cairn against restic, borg (and rustic, bupstash) side by side.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--size", default=f"{DEFAULT_SIZE // MiB}M",
                    help="corpus size (K/M/G = binary units); the three kinds scale together")
    ap.add_argument("--runs", type=int, default=3, help="runs per tool; the median is reported")
    ap.add_argument("--tools", help="comma-separated subset of cairn,restic,borg,rustic,bupstash "
                                    "(default: cairn, restic, borg, and rustic/bupstash if built)")
    ap.add_argument("--work", default="/var/tmp/cairn-peers", help="work directory")
    ap.add_argument("--keep", action="store_true", help="keep the repositories and caches")
    ap.add_argument("--with-rustic", action="store_true",
                    help="build rustic (cargo install rustic-rs) into WORK/tools if missing")
    ap.add_argument("--with-bupstash", action="store_true",
                    help="build bupstash (cargo install bupstash) into WORK/tools if missing")
    ap.add_argument("--no-install", action="store_true", help="never apt-get install anything")
    ap.add_argument("--no-build", action="store_true",
                    help="use target/release/cairn as it is (no cargo build)")
    ap.add_argument("--cairn", help="use this cairn binary instead of building one")
    ap.add_argument("--cairn-before", metavar="BIN",
                    help="also measure this earlier cairn binary as `cairn-before`, interleaved "
                         "with the current one, and report after/before ratios")
    ap.add_argument("--cairn-before-label", metavar="TEXT",
                    help="what --cairn-before was built from (e.g. a git revision), for the report")
    ap.add_argument("--cairn-parity", type=int, metavar="PERCENT",
                    help="also measure cairn with `init --parity PERCENT%%`, interleaved with "
                         "cairn without parity, report the ratios, and time healing a deleted pack")
    ap.add_argument("--timeout", type=float, default=7200, help="seconds per command")
    ap.add_argument("--no-trash", action="store_true",
                    help="delete restores, repositories and caches as soon as they are done with "
                         "(then each restore waits for --settle) instead of at the end")
    ap.add_argument("--settle", type=float, default=62,
                    help="when the disk is too small to keep every restore until the end: "
                         "seconds between deleting files and the next restore (ext4 without a "
                         "journal scans recently deleted inodes on every file creation)")
    ap.add_argument("--restore-fs", choices=["same", "fresh"], default="same",
                    help="same: restore to WORK/restore, on the disk of the corpus and the "
                         "repositories; fresh: to a new ext4 on a loop device made for each "
                         "restore, the same for every tool (needs root)")
    ap.add_argument("--out", help="Markdown report path "
                                  "(default scripts/results/YYYY-MM-DD-peers.md)")
    args = ap.parse_args()
    if args.restore_fs == "fresh" and os.geteuid() != 0:
        ap.error("--restore-fs fresh makes and mounts filesystems: run as root")
    if args.tools:
        bad = set(args.tools.split(",")) - set(TOOL_CLASSES)
        if bad:
            ap.error(f"unknown tools: {', '.join(sorted(bad))}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = datetime.datetime.now(datetime.timezone.utc)
    machine = machine_info()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    size = parse_size(args.size)

    if not os.path.exists(TIME_BIN) and not args.no_install:
        apt_install("time")
    tools = prepare_tools(args, work)
    if not tools:
        log("no tool to run")
        return 1
    for t in tools:
        t.version_text = t.version()
    log("tools: " + ", ".join(f"{t.name} {t.version_text} ({t.bin})" for t in tools))

    corpus, corpus_info = ensure_corpus(work, size)
    undo_mutation(work, corpus)  # an interrupted earlier run
    ops, large_ops = mutation_plan(corpus)
    plan_text = describe_plan(ops, large_ops, corpus)
    build_mutated_large(work, corpus, large_ops)
    log(plan_text)

    expected_cache = {}

    def expected():
        if "m" not in expected_cache:
            mpath = work / "manifest-mutated.json"
            if mpath.exists():
                expected_cache["m"] = json.loads(mpath.read_text())
            else:
                log("hashing the mutated corpus once (reference for restore verification)")
                apply_mutation(work, corpus, ops)
                try:
                    expected_cache["m"] = manifest(corpus)
                finally:
                    undo_mutation(work, corpus)
                mpath.with_suffix(".tmp").write_text(json.dumps(expected_cache["m"]))
                mpath.with_suffix(".tmp").rename(mpath)
        return expected_cache["m"]

    expected()  # before any timing, with the corpus as it was

    out = Path(args.out) if args.out else PROJECT / "scripts" / "results" / \
        f"{started:%Y-%m-%d}-peers.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    # Deferred deletion needs room for every restore and repository of the whole benchmark.
    need = int(size * 1.6 * len(tools) * args.runs)  # a restore (1.0) and a repository (<0.6)
    if args.restore_fs == "fresh":  # one restore at a time, on its own filesystem image
        need = int(size * 0.6 * len(tools) * args.runs + size * 1.5)
    free = shutil.disk_usage(work).free
    trash = Trash(work, defer=free > need + 4 * GiB and not args.no_trash, settle=args.settle)
    if not trash.defer and not args.no_trash:
        log(f"{human(free)} free < {human(need)}: deleting as we go, with --settle "
            f"{args.settle} s before each restore")
    args.deletion_note = (
        "Nothing is deleted while the benchmark runs (restores, repositories and caches go to a "
        "trash emptied at the end): on ext4 without a journal, creating many files within 60 s "
        "of deleting many makes the kernel's inode allocator scan every recently deleted inode, "
        "which slowed restores after another tool's deleted restore by up to 4x."
        if trash.defer else
        f"Restores, repositories and caches are deleted when done with, and each restore waits "
        f"until {args.settle:.0f} s have passed since the last deletion (ext4 without a journal "
        f"makes file creation slow right after many deletions).")
    trash.last_delete = CORPUS_DELETED_AT
    trash.empty()  # leftovers of an earlier, interrupted run
    trash.before_restore()
    results = []
    fresh = FreshFs(work) if args.restore_fs == "fresh" else None
    for run in range(1, args.runs + 1):
        for tool in tools:
            results.append(run_tool(tool, run, work, corpus, ops, expected, args, trash,
                                    fresh))
            (work / "results.json").write_text(json.dumps(results, indent=1, default=str))
        report = render(results, tools, corpus_info, args, machine, corpus_info, plan_text,
                        started, datetime.datetime.now(datetime.timezone.utc))
        out.write_text(report + "\n")
    log("deleting the trash (restored trees, repositories, caches)")
    trash.empty()
    print(report)
    log(f"report written to {out}; raw numbers in {work / 'results.json'}")
    return 0 if all(r["error"] is None and r["verify"] and r["verify"][0]
                    for r in results) else 2


if __name__ == "__main__":
    sys.exit(main())

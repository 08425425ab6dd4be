#!/usr/bin/env python3
"""Scale benchmark (issue 19): peak memory and time of each command against repositories of
1, 10 and 50 million blobs, the growth per added blob, and a projection to 1 billion.

usage: bench-scale.py [--sizes 1M,10M,50M] [--work /var/tmp/cairn-scale] [--bin target/release/cairn]
                      [--gen-bin target/release/examples/gen-repo] [--label NAME] [--threads T]
                      [--prune-on auto|copy|in-place]

For each size N:
  1. a repository of N data blobs is generated with the gen-repo example (scripts/gen_repo.rs),
     once: it is kept under WORK/<N>/repo and reused by later runs (delete it to regenerate);
  2. a small real source (2,000 files, ~50 MB, scripts/gen-tree.py) is backed up into it with an
     empty local cache: that first command is timed separately (it builds whatever cache the
     binary keeps), then the same source is backed up again (the no-change backup);
  3. each command runs under /usr/bin/time -f '%M %e %U %S': backup (no-change), restore (the
     small snapshot), check (structure), copy (the small snapshot into a new repository), diff
     (the two small snapshots), find (a name pattern, every snapshot), mount (mount, ls, read a
     file, unmount; skipped when FUSE is unavailable) and, last, forget --keep-last 1 --prune on
     a copy of the repository (its cache copied too), which is deleted afterwards; without room
     for a copy (or with --prune-on in-place), on the repository itself, generated again after.
The report goes to scripts/results/2026-12-06-scale-LABEL.md, rewritten after each size.
Build the two programs first:
  cargo build --release --bin cairn --example gen-repo
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "scale benchmark password"
MiB = 1 << 20
GOAL_BASE = 200 * MiB
GOAL_PER_BLOB = 4
GOAL_PER_BLOB_PRUNE = 16
GEN_BYTES_PER_BLOB = 250
COMMANDS = ["backup", "restore", "check", "copy", "diff", "find", "mount", "prune"]


def parse_size(s: str) -> int:
    s = s.strip().upper()
    mult = {"K": 1_000, "M": 1_000_000, "G": 1_000_000_000}.get(s[-1:], 1)
    return int(float(s[:-1] if mult > 1 else s) * mult)


def label_n(n: int) -> str:
    for unit, m in (("G", 1_000_000_000), ("M", 1_000_000), ("K", 1_000)):
        if n >= m and n % m == 0:
            return f"{n // m}{unit}"
    return str(n)


def need_time() -> str:
    if os.path.exists("/usr/bin/time"):
        return "/usr/bin/time"
    print("bench-scale: GNU time (/usr/bin/time) is missing; installing the Debian package `time`",
          file=sys.stderr)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "time"], check=False)
    if not os.path.exists("/usr/bin/time"):
        sys.exit("bench-scale: /usr/bin/time is required: install it with `apt-get install time`")
    return "/usr/bin/time"


class Runner:
    def __init__(self, args, log: Path):
        self.args = args
        self.log = log
        self.time = need_time()

    def env(self, cache: Path) -> dict:
        e = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
        e.update({"CAIRN_PASSWORD": PASSWORD, "CAIRN_TO_PASSWORD": PASSWORD,
                  "XDG_CACHE_HOME": str(cache), "TZ": "UTC"})
        return e

    def timed(self, argv, env, stdout=None, check=True) -> dict:
        """Runs argv under GNU time; returns rss (KiB), wall, cpu (s) and stdout."""
        tfile = self.log.with_suffix(".time")
        full = [self.time, "-f", "%M %e %U %S", "-o", str(tfile)] + [str(a) for a in argv]
        with open(self.log, "a") as log:
            log.write(f"\n$ {shlex.join(full)}\n")
            log.flush()
            r = subprocess.run(full, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
            log.write(r.stdout[-4000:])
        if check and r.returncode != 0:
            raise SystemExit(f"bench-scale: {shlex.join(map(str, argv))} failed "
                             f"(exit {r.returncode}); see {self.log}")
        rss, wall, user, sys_ = tfile.read_text().strip().splitlines()[-1].split()
        return {"rss_kib": int(rss), "wall": float(wall), "cpu": float(user) + float(sys_),
                "stdout": r.stdout, "code": r.returncode}

    def cairn(self, repo: Path, cache: Path, *args, **kw) -> dict:
        return self.timed([self.args.bin, "--no-progress", "-r", repo, *args], self.env(cache),
                          **kw)


def last_json(stdout: str) -> dict:
    lines = [l for l in stdout.splitlines() if l.strip().startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def fuse_usable() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if not shutil.which("fusermount3"):
        return "no fusermount3 (Debian package fuse3)"
    return None


def generate(r: Runner, n: int, d: Path, threads: int) -> dict:
    repo, done = d / "repo", d / "gen.json"
    if done.exists() and repo.exists():
        return json.loads(done.read_text())
    shutil.rmtree(repo, ignore_errors=True)
    d.mkdir(parents=True, exist_ok=True)
    # About 215 bytes a blob (sealed blob, index entry, its place in a tree), and room to spare.
    need, free = GEN_BYTES_PER_BLOB * n + (1 << 30), shutil.disk_usage(d).free
    if free < need:
        raise SystemExit(f"bench-scale: generating {label_n(n)} blobs needs about "
                         f"{need / (1 << 30):.1f} GiB, and {d} has {free / (1 << 30):.1f} GiB free")
    argv = [r.args.gen_bin, "--repo", repo, "--blobs", n, "--threads", threads]
    res = r.timed(argv, r.env(d / "gen-cache"))
    info = {"blobs": n, "wall": res["wall"], "cpu": res["cpu"], "rss_kib": res["rss_kib"],
            "command": shlex.join(map(str, argv)), "output": res["stdout"].strip(),
            "repo_bytes": du(repo)}
    done.write_text(json.dumps(info, indent=1))
    return info


def du(p: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(p):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def small_source(work: Path) -> Path:
    src, done = work / "small-src", work / "small-src.done"
    if not done.exists():
        shutil.rmtree(src, ignore_errors=True)
        subprocess.run([sys.executable, str(ROOT / "scripts/gen-tree.py"), str(src), "2000",
                        str(50 * MiB)], check=True)
        done.write_text("")
    return src


def mount_run(r: Runner, repo: Path, cache: Path, d: Path, snap: str) -> dict:
    mp = d / "mnt"
    subprocess.run(["fusermount3", "-u", "-q", str(mp)], check=False, stderr=subprocess.DEVNULL)
    shutil.rmtree(mp, ignore_errors=True)
    mp.mkdir()
    tfile = r.log.with_suffix(".mount-time")
    argv = [r.time, "-f", "%M %e %U %S", "-o", str(tfile), r.args.bin, "--no-progress", "-r",
            str(repo), "mount", str(mp)]
    with open(r.log, "a") as log:
        log.write(f"\n$ {shlex.join(argv)}\n")
        log.flush()
        p = subprocess.Popen(argv, env=r.env(cache), stdout=log, stderr=log)
    try:
        snapdir = mp / "ids" / snap[:8]
        deadline = time.time() + 600
        while not snapdir.exists():
            if p.poll() is not None or time.time() > deadline:
                raise SystemExit(f"bench-scale: mount did not come up; see {r.log}")
            time.sleep(0.05)
        # ls one directory, read one file of the small snapshot.
        first = None
        for dirpath, dirs, files in os.walk(snapdir):
            dirs.sort()
            if files:
                os.listdir(dirpath)
                first = os.path.join(dirpath, sorted(files)[0])
                break
        if first:
            with open(first, "rb") as f:
                while f.read(1 << 20):
                    pass
    finally:
        subprocess.run(["fusermount3", "-u", str(mp)], check=False)
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.terminate()
            p.wait()
    rss, wall, user, sys_ = tfile.read_text().strip().splitlines()[-1].split()
    return {"rss_kib": int(rss), "wall": float(wall), "cpu": float(user) + float(sys_)}


def bench_size(r: Runner, n: int, work: Path, label: str, src: Path) -> dict:
    d = work / label_n(n)
    gen = generate(r, n, d, r.args.threads)
    repo = d / "repo"
    cache = d / f"cache-{label}"
    shutil.rmtree(cache, ignore_errors=True)
    out = {"n": n, "gen": gen, "results": {}, "notes": []}

    first = r.cairn(repo, cache, "--json", "backup", src)
    out["first"] = first
    snap1 = last_json(first["stdout"]).get("snapshot_id", "")
    res = r.cairn(repo, cache, "--json", "backup", src)
    snap2 = last_json(res["stdout"]).get("snapshot_id", "")
    out["results"]["backup"] = res

    target = d / "restore-target"
    shutil.rmtree(target, ignore_errors=True)
    out["results"]["restore"] = r.cairn(repo, cache, "restore", snap2, "--target", target)
    shutil.rmtree(target, ignore_errors=True)

    out["results"]["check"] = r.cairn(repo, cache, "check")

    dest = d / "copy-dest"
    shutil.rmtree(dest, ignore_errors=True)
    subprocess.run([r.args.bin, "--no-progress", "-r", str(dest), "init"], env=r.env(cache),
                   check=True, stdout=subprocess.DEVNULL)
    out["results"]["copy"] = r.cairn(repo, cache, "copy", "--to", dest, snap2)
    shutil.rmtree(dest, ignore_errors=True)

    out["results"]["diff"] = r.cairn(repo, cache, "diff", snap1, snap2)
    out["results"]["find"] = r.cairn(repo, cache, "find", "f00042*")

    why = fuse_usable()
    if why:
        out["notes"].append(f"mount skipped: {why}")
    else:
        out["results"]["mount"] = mount_run(r, repo, cache, d, snap2)

    # Last: prune changes the repository, so it runs on a copy (the cache copied with it).
    need = du(repo) + du(cache)
    free = shutil.disk_usage(d).free
    fcopy, fcache = d / "forget-repo", d / f"forget-cache-{label}"
    for p in (fcopy, fcache):
        shutil.rmtree(p, ignore_errors=True)
    if args_copy(r.args, free, need):
        subprocess.run(["cp", "-a", "--reflink=auto", str(repo), str(fcopy)], check=True)
        if cache.exists():
            subprocess.run(["cp", "-a", "--reflink=auto", str(cache), str(fcache)], check=True)
        out["results"]["prune"] = r.cairn(fcopy, fcache, "forget", "--keep-last", "1", "--prune")
        shutil.rmtree(fcopy, ignore_errors=True)
        shutil.rmtree(fcache, ignore_errors=True)
    else:
        # No room for a copy: prune the repository itself, then generate it again for the next
        # run (the generation's own figures are kept from the first time).
        out["notes"].append("forget --prune ran on the generated repository itself "
                            f"({free / (1 << 30):.1f} GiB free, --prune-on {r.args.prune_on}); "
                            "the repository was generated again afterwards")
        out["results"]["prune"] = r.cairn(repo, cache, "forget", "--keep-last", "1", "--prune")
        (d / "gen.json").unlink(missing_ok=True)
        shutil.rmtree(repo, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        generate(r, n, d, r.args.threads)
    return out


def args_copy(args, free: int, need: int) -> bool:
    """Whether prune runs on a copy: `--prune-on copy|in-place`, or (auto) when it fits."""
    if args.prune_on == "auto":
        return free > need + 4 * (1 << 30)
    return args.prune_on == "copy"


def mib(kib: int) -> float:
    return kib / 1024


def report(args, runs: list, path: Path, argv: list):
    ver = subprocess.run([args.bin, "--version"], capture_output=True, text=True).stdout.strip()
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    lines = [
        f"# Scale benchmark: {args.label}", "",
        f"Command: `{shlex.join(argv)}`", "",
        f"Binary: `{args.bin}` ({ver}); scripts at {rev}; {os.cpu_count()} cores, "
        f"{mem:.1f} GiB RAM, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load "
        f"average {' '.join(f'{x:.1f}' for x in os.getloadavg())} when the report was written "
        "(other work on the machine inflates wall times more than CPU times).", "",
        "N is the number of generated data blobs (files of 100 chunks, directories of 100 "
        "files, 5 snapshots; scripts/gen_repo.rs); the small source (2,000 files, ~50 MB) adds "
        "a few thousand more. RSS is GNU time's maximum resident set size.", "",
        "## Generation", "",
        "| N | wall s | CPU s | peak RSS MiB | repository GiB |", "|---|---|---|---|---|",
    ]
    for run in runs:
        g = run["gen"]
        lines.append(f"| {label_n(run['n'])} | {g['wall']:.1f} | {g['cpu']:.1f} | "
                     f"{mib(g['rss_kib']):.0f} | {g['repo_bytes'] / (1 << 30):.2f} |")
    lines += ["", "## First command after generation (cache build)", "",
              "The first backup of the small source into the generated repository, with an empty "
              "local cache.", "", "| N | peak RSS MiB | wall s | CPU s |", "|---|---|---|---|"]
    for run in runs:
        f = run["first"]
        lines.append(f"| {label_n(run['n'])} | {mib(f['rss_kib']):.0f} | {f['wall']:.2f} | "
                     f"{f['cpu']:.2f} |")
    lines += ["", "## Commands", "", "| command | N | peak RSS MiB | wall s | CPU s |",
              "|---|---|---|---|---|"]
    for c in COMMANDS:
        for run in runs:
            x = run["results"].get(c)
            if x:
                lines.append(f"| {c} | {label_n(run['n'])} | {mib(x['rss_kib']):.0f} | "
                             f"{x['wall']:.2f} | {x['cpu']:.2f} |")
    notes = [f"{label_n(run['n'])}: {n}" for run in runs for n in run["notes"]]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]

    lines += ["", "## Growth per added blob and projection", "",
              "Growth: (RSS2 − RSS1) / (N2 − N1) in bytes per blob between consecutive sizes. "
              "Projection to 1 billion blobs: RSS at the largest N plus the last growth times the "
              "blobs still to add. Goal (issue 19): at most 200 MiB + 4 B/blob (prune: + 16 "
              "B/blob), and growth at most 4 (16) B/blob.", ""]
    if len(runs) < 2:
        lines.append("(one size only: no growth)")
    else:
        pairs = list(zip(runs, runs[1:]))
        head = " | ".join(f"B/blob {label_n(a['n'])}→{label_n(b['n'])}" for a, b in pairs)
        lines += [f"| command | {head} | projected RSS at 1 G blobs | goal at 1 G | growth ok |",
                  "|---|" + "---|" * len(pairs) + "---|---|---|"]
        for c in COMMANDS:
            if not all(c in run["results"] for run in runs):
                continue
            per = 16 if c == "prune" else 4
            growths = []
            for a, b in pairs:
                ra, rb = a["results"][c]["rss_kib"] * 1024, b["results"][c]["rss_kib"] * 1024
                growths.append((rb - ra) / (b["n"] - a["n"]))
            last = runs[-1]
            proj = last["results"][c]["rss_kib"] * 1024 + growths[-1] * (10**9 - last["n"])
            goal = GOAL_BASE + per * 10**9
            ok = "yes" if all(g <= per for g in growths) else "**no**"
            cells = " | ".join(f"{g:.1f}" for g in growths)
            lines.append(f"| {c} | {cells} | {proj / (1 << 30):.2f} GiB | "
                         f"{goal / (1 << 30):.2f} GiB | {ok} |")
    lines += ["", "## Goal check at each size", "",
              "| command | N | peak RSS MiB | limit MiB (200 MiB + 4 or 16 B/blob) | within |",
              "|---|---|---|---|---|"]
    for c in COMMANDS:
        for run in runs:
            x = run["results"].get(c)
            if not x:
                continue
            per = GOAL_PER_BLOB_PRUNE if c == "prune" else GOAL_PER_BLOB
            limit = (GOAL_BASE + per * run["n"]) / MiB
            ok = "yes" if mib(x["rss_kib"]) <= limit else "**no**"
            lines.append(f"| {c} | {label_n(run['n'])} | {mib(x['rss_kib']):.0f} | "
                         f"{limit:.0f} | {ok} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1M,10M,50M")
    ap.add_argument("--work", default="/var/tmp/cairn-scale", type=Path)
    ap.add_argument("--bin", default=str(ROOT / "target/release/cairn"))
    ap.add_argument("--gen-bin", default=str(ROOT / "target/release/examples/gen-repo"))
    ap.add_argument("--label", default="run")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--prune-on", choices=["auto", "copy", "in-place"], default="auto",
                    help="run forget --prune on a copy of the repository, or on it and then "
                         "generate it again (auto: a copy when the disk has room for one)")
    args = ap.parse_args()
    args.bin = str(Path(args.bin).resolve())
    for p, what in ((args.bin, "cairn binary"), (args.gen_bin, "gen-repo example")):
        if not os.access(p, os.X_OK):
            sys.exit(f"bench-scale: the {what} {p} is missing; build it with "
                     "`cargo build --release --bin cairn --example gen-repo`")
    sizes = sorted(parse_size(s) for s in args.sizes.split(","))
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / f"bench-{args.label}.log"
    r = Runner(args, log)
    src = small_source(args.work)
    out = ROOT / "scripts/results" / f"2026-12-06-scale-{args.label}.md"
    argv = [sys.argv[0]] + sys.argv[1:]
    runs = []
    for n in sizes:
        print(f"bench-scale: N = {label_n(n)}", file=sys.stderr)
        runs.append(bench_size(r, n, args.work, args.label, src))
        report(args, runs, out, argv)
        print(f"bench-scale: {out} written ({label_n(n)} done)", file=sys.stderr)


if __name__ == "__main__":
    main()

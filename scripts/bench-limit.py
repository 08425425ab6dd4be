#!/usr/bin/env python3
"""Measures the rate cairn achieves under --limit-upload and --limit-download on a local
repository, over a few seconds of steady transfer, and prints its ratio to the setting.

Upload: a backup of incompressible data; its rate is the bytes it writes (`wchar` of
/proc/PID/io, which counts direct I/O too: a backup writes nothing but the repository).
Download: a restore of that snapshot; its rate is the bytes it reads (`rchar`: a restore reads
nothing but the repository). Both are sampled every 0.1 s; the first second of transfer (one
burst, the index) and the last half second are left out of the window. Printed: the rate over
that window and its ratio to the setting, and the lowest and highest ratio over any 2 s in it.

Stdlib only. e.g.
  scripts/bench-limit.py                                  # 4096 KiB/s, ~8 s each way
  scripts/bench-limit.py --cairn target/release/cairn --limit 10240 --seconds 6
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1 << 20
PASSWORD = "bench-limit"


def io_counter(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k == field:
                    return int(v)
    except OSError:
        return None
    return None


def sampled(argv: list[str], field: str, env: dict) -> list[tuple[float, int]]:
    """Runs argv, sampling its /proc io counter `field`; fails if it exits non-zero."""
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    start = time.monotonic()
    samples = []
    while p.poll() is None:
        n = io_counter(p.pid, field)
        if n is not None:
            samples.append((time.monotonic() - start, n))
        time.sleep(0.1)
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if p.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({p.returncode}):\n{err}")
    return samples


def steady_rate(samples: list[tuple[float, int]]) -> tuple[float, float, float, float]:
    """Bytes per second over the steady window, the window's length in seconds, and the lowest
    and highest rate over any 2 s within it."""
    moving = [s for s in samples if s[1] > samples[0][1] + MiB // 4]
    if len(moving) < 2:
        sys.exit("too few samples: make --seconds larger")
    t0 = moving[0][0] + 1.0
    last_change = max(t for (t, n) in samples if n < samples[-1][1]) if samples else 0
    t1 = last_change - 0.5
    window = [s for s in samples if t0 <= s[0] <= t1]
    if len(window) < 2:
        sys.exit("the steady window is too short: make --seconds larger")
    (ta, na), (tb, nb) = window[0], window[-1]
    spans = []
    for i, (t, n) in enumerate(window):
        later = [s for s in window[i:] if s[0] - t >= 2.0]
        if later:
            t2, n2 = later[0]
            spans.append((n2 - n) / (t2 - t))
    low, high = (min(spans), max(spans)) if spans else (float("nan"), float("nan"))
    return (nb - na) / (tb - ta), tb - ta, low, high


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = Path(__file__).resolve().parent.parent
    default = os.environ.get("CARGO_TARGET_DIR", str(root / "target")) + "/debug/cairn"
    ap.add_argument("--cairn", default=default, help=f"the binary (default {default})")
    ap.add_argument("--limit", type=int, default=4096, help="KiB/s for both directions (default 4096)")
    ap.add_argument("--seconds", type=float, default=8, help="transfer time at the limit (default 8)")
    ap.add_argument("--workdir", help="where to put data and repository (default: a temp dir)")
    a = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="bench-limit-", dir=a.workdir)
    work = Path(tmp.name)
    env = dict(os.environ, CAIRN_PASSWORD=PASSWORD, XDG_CACHE_HOME=str(work / "cache"))
    repo, src, target = work / "repo", work / "src", work / "target"
    src.mkdir()
    size = int(a.limit * 1024 * (a.seconds + 1.5))
    with open(src / "data", "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MiB)
            f.write(os.urandom(n))
            left -= n
    base = [a.cairn, "-r", str(repo)]
    subprocess.run(base + ["init", "--kdf-memory-mib", "8"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    limit = a.limit * 1024
    print(f"cairn: {a.cairn}")
    print(f"limit: {a.limit} KiB/s, {size / MiB:.1f} MiB of incompressible data")
    rows = []
    up = sampled(base + ["--limit-upload", str(a.limit), "backup", str(src)], "wchar", env)
    rows.append(("upload (backup)", *steady_rate(up), up[-1][0]))
    down = sampled(base + ["--limit-download", str(a.limit), "restore", "latest", "--target", str(target)],
                   "rchar", env)
    rows.append(("download (restore)", *steady_rate(down), down[-1][0]))
    print(f"{'direction':<20} {'window s':>9} {'KiB/s':>10} {'ratio':>7} {'2 s low':>8} {'2 s high':>9} {'total s':>8}")
    worst = 0.0
    for name, rate, window, low, high, total in rows:
        ratio = rate / limit
        worst = max(worst, abs(ratio - 1))
        print(f"{name:<20} {window:>9.1f} {rate / 1024:>10.0f} {ratio:>7.3f} {low / limit:>8.3f} "
              f"{high / limit:>9.3f} {total:>8.1f}")
    print(f"within 10% of the limit: {'yes' if worst <= 0.10 else 'NO'}")
    sys.exit(0 if worst <= 0.10 else 1)


if __name__ == "__main__":
    main()

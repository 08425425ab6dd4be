"""Helpers shared by the benchmark scripts (bench-peers.py, bench-s3.py): stdlib only."""
from __future__ import annotations

import hashlib
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30


class StepFailed(Exception):
    pass


def human(n: float) -> str:
    for unit, m in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= m:
            return f"{n / m:.2f} {unit}"
    return f"{int(n)} B"


def tail(path: Path, n=25) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def first_line(argv) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError) as e:
        return f"unknown ({e})"


def list_files(root: Path):
    """Regular readable files under root, sorted, as (relpath, size); symlinks skipped."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            p = os.path.join(dirpath, f)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if not (st.st_mode & 0o170000 == 0o100000):
                continue
            if not os.access(p, os.R_OK):
                continue
            out.append((os.path.relpath(p, root), st.st_size))
    return out


def hash_file(path: str) -> str:
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb", buffering=0) as f:
        while b := f.read(4 * MiB):
            h.update(b)
    return h.hexdigest()


def manifest(root: Path) -> dict:
    """relpath → BLAKE2b of every file under root (hashed on up to 4 threads)."""
    files = [rel for rel, _ in list_files(root)]
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as ex:
        hashes = list(ex.map(lambda r: hash_file(os.path.join(root, r)), files, chunksize=64))
    return dict(zip(files, hashes))


def warm(root: Path):
    """Reads every file once, so the page cache holds the corpus."""
    for rel, _ in list_files(root):
        with open(root / rel, "rb", buffering=0) as f:
            while f.read(8 * MiB):
                pass


def find_restored_root(target: Path, corpus: Path, marker_file: str, marker_dir: str):
    """Where under `target` a restore put the corpus: the directory holding both markers."""
    for cand in (target / str(corpus).lstrip("/"), target / corpus.name, target):
        if (cand / marker_file).is_file() and (cand / marker_dir).is_dir():
            return cand
    for dirpath, dirnames, filenames in os.walk(target):
        if marker_file in filenames and marker_dir in dirnames:
            return Path(dirpath)
    return None


def compare(root: Path, expected: dict) -> tuple[bool, str]:
    """Compares the files under root with a manifest: every file present and identical."""
    got = manifest(root)
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    differ = sorted(r for r in expected.keys() & got.keys() if expected[r] != got[r])
    if missing or extra or differ:
        return False, (f"{len(missing)} missing, {len(differ)} differ, {len(extra)} extra "
                       f"(e.g. {(missing + differ + extra)[:3]})")
    return True, f"all {len(got)} files identical"

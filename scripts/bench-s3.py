#!/usr/bin/env python3
"""cairn vs restic against an S3 repository: a single-node Garage on loopback.

Python 3.11, standard library only. See `--help`.

Starts Garage (the `garage` binary: PATH or ~/.cargo/bin) in a temporary directory on free
loopback ports, with one bucket and one key, and generates a deterministic corpus there. Then,
per tool and run (runs interleaved: run 1 of every tool, then run 2, ...), each into a fresh
prefix of the bucket (s3:http://127.0.0.1:PORT/bench/<tool>-<run>) with a fresh local cache:

  init -> first backup -> unchanged re-backup -> restore of the latest snapshot into an empty
  directory (then every restored byte is compared with the corpus, untimed; any difference fails
  the run loudly) -> check with a full data read.

Each step's wall time, CPU time (user + sys of the tool process and its waited-for children,
from wait4), peak RSS (GNU time's %M when /usr/bin/time exists, else wait4's ru_maxrss — which
on Linux also counts the Python parent's resident set at fork) and the CPU time Garage used
meanwhile (/proc/<pid>/stat) are recorded; the report gives the median of --runs runs. The page
cache is warm: the corpus is read before each tool's run. After the re-backup the repository's
size is taken by listing its prefix (S3 ListObjectsV2, signed with SigV4 here) and from the
tool's own stats (`cairn stats --json`, `restic stats --mode raw-data --json`), untimed.

Garage runs on the same machine and competes for CPU with the tool measured; the report says so.

Cost: the default 1 GiB corpus, 3 runs of cairn, restic and cairn --connections 8 takes roughly
15-25 minutes on a 2-core machine and needs ~2 GiB of disk per tool-run under --tmp-dir.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import http.client
import itertools
import json
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    GiB, MiB, StepFailed, compare, find_restored_root, first_line, human, list_files, manifest, tail, warm)


def verify(target: Path, corpus: Path, expected: dict) -> tuple[bool, str]:
    root = find_restored_root(target, corpus, "large.bin", "text")
    if root is None:
        return False, f"restored tree (large.bin + text/) not found under {target}"
    return compare(root, expected)


PROJECT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-s3-password"
KEY_ID = "GK0123456789abcdef01234567"
SECRET = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
REGION = "garage"
BUCKET = "bench"
TIME_BIN = "/usr/bin/time"

STEPS = [
    ("init", "init"),
    ("backup1", "first backup"),
    ("backup2", "unchanged re-backup"),
    ("restore", "restore latest"),
    ("check", "check, full data read"),
]
STEP_NAMES = dict(STEPS)


def log(*args):
    print("[bench-s3]", *args, file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    for suffix, m in (("K", 1 << 10), ("M", MiB), ("G", GiB), ("T", 1 << 40)):
        if t.endswith(suffix):
            t, mult = t[:-1], m
            break
    try:
        n = int(float(t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 600M, 1G)")
    if n < 10 * MiB:
        raise argparse.ArgumentTypeError("--size must be at least 10M")
    return n


class BenchError(Exception):
    """A failure that ends the benchmark with a message (no traceback)."""


# --------------------------------------------------------------------------------------------
# Running and measuring commands

CURRENT_CHILD = None  # process group of the running measured command


def on_signal(signum, _frame):
    if CURRENT_CHILD is not None:
        try:
            os.killpg(CURRENT_CHILD, signal.SIGKILL)
        except ProcessLookupError:
            pass
    raise SystemExit(128 + signum)  # `finally` stops Garage and removes the temp dir


def run_measured(argv, env, cwd, out_path: Path, err_path: Path, timeout: float) -> dict:
    """Runs one command; returns dict(wall, cpu, rss_kib, rc[, error]).

    CPU = user + sys from wait4 (the process and every descendant it waited for). Peak RSS from
    GNU time's %M when available: wait4's ru_maxrss of a child forked from this (large) Python
    process includes the parent's resident set at fork."""
    rusage_file = str(err_path) + ".rusage"
    use_time = os.path.exists(TIME_BIN)
    full = [TIME_BIN, "-q", "-f", "%M", "-o", rusage_file, *argv] if use_time else list(argv)
    global CURRENT_CHILD
    with open(err_path, "ab") as err, open(out_path, "ab") as out:
        start = time.perf_counter()
        try:
            p = subprocess.Popen(full, env=env, cwd=cwd, stdout=out, stderr=err,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            return {"wall": 0.0, "cpu": 0.0, "rss_kib": 0, "rc": 127, "error": str(e)}
        timed_out = []

        def kill():
            timed_out.append(True)
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

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
    if timed_out:
        res["error"] = f"timed out after {timeout:.0f} s"
    return res


# --------------------------------------------------------------------------------------------
# S3: listing a prefix (ListObjectsV2, AWS Signature V4) to measure a repository's size


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def s3_list_prefix(port: int, bucket: str, prefix: str) -> tuple[int, int]:
    """(object count, total bytes) of the objects whose key starts with `prefix`."""
    host = f"127.0.0.1:{port}"
    count = total = 0
    token = None
    empty_hash = hashlib.sha256(b"").hexdigest()
    while True:
        q = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
        if token:
            q["continuation-token"] = token
        qs = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                      for k, v in sorted(q.items()))
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        uri = "/" + urllib.parse.quote(bucket, safe="-_.~")
        headers = {"host": host, "x-amz-content-sha256": empty_hash, "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canonical = "\n".join(["GET", uri, qs,
                               "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
                               signed, empty_hash])
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        k = _sign(("AWS4" + SECRET).encode(), day)
        k = _sign(_sign(_sign(k, REGION), "s3"), "aws4_request")
        sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={KEY_ID}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={sig}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("GET", f"{uri}?{qs}", headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise BenchError(f"S3 list {prefix!r}: HTTP {resp.status}: {body[:500]!r}")
        root = ET.fromstring(body)
        ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
        for c in root.iter(f"{ns}Contents"):
            count += 1
            total += int(c.findtext(f"{ns}Size", "0"))
        if root.findtext(f"{ns}IsTruncated", "false").lower() != "true":
            return count, total
        token = root.findtext(f"{ns}NextContinuationToken")
        if not token:
            return count, total


# --------------------------------------------------------------------------------------------
# Garage


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def find_garage(explicit: str | None) -> str:
    for cand in (explicit, shutil.which("garage"), str(Path.home() / ".cargo/bin/garage")):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise BenchError("garage not found (PATH, ~/.cargo/bin); pass --garage BIN")


class Garage:
    def __init__(self, binary: str, root: Path):
        self.bin = binary
        self.root = root
        self.cfg = root / "garage.toml"
        self.proc = None
        self.s3_port = self.rpc_port = self.admin_port = 0
        self.log_path = root / "garage.log"

    def start(self):
        self.root.mkdir(parents=True, exist_ok=True)
        self.rpc_port, self.s3_port, self.admin_port = free_ports(3)
        self.cfg.write_text(
            f'metadata_dir = "{self.root}/meta"\n'
            f'data_dir = "{self.root}/data"\n'
            'db_engine = "sqlite"\n'
            "replication_factor = 1\n"
            f'rpc_bind_addr = "127.0.0.1:{self.rpc_port}"\n'
            f'rpc_public_addr = "127.0.0.1:{self.rpc_port}"\n'
            f'rpc_secret = "{os.urandom(32).hex()}"\n'
            "[s3_api]\n"
            f's3_region = "{REGION}"\n'
            f'api_bind_addr = "127.0.0.1:{self.s3_port}"\n'
            'root_domain = ".s3.garage.localhost"\n'
            "[admin]\n"
            f'api_bind_addr = "127.0.0.1:{self.admin_port}"\n'
        )
        # Warnings only: at info level Garage logs every request, which costs CPU here.
        env = dict(os.environ, RUST_LOG=os.environ.get("BENCH_GARAGE_LOG", "garage=warn,warn"))
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen([self.bin, "-c", str(self.cfg), "server"], env=env,
                                         stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"garage server exited with {self.proc.returncode}:\n"
                                 f"{tail(self.log_path)}")
            try:
                socket.create_connection(("127.0.0.1", self.s3_port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError(f"garage S3 port {self.s3_port} not open after 60 s:\n"
                                     f"{tail(self.log_path)}")
                time.sleep(0.2)
        node = self.cli("node", "id", "-q").strip().split("@")[0]
        self.cli("layout", "assign", "-z", "dc1", "-c", "10G", node)
        self.cli("layout", "apply", "--version", "1")
        self.cli("bucket", "create", BUCKET)
        self.cli("key", "import", "--yes", "-n", "bench", KEY_ID, SECRET)
        self.cli("bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "bench")
        # The S3 API answers once the layout has reached it: wait for an authorized listing.
        deadline = time.monotonic() + 30
        while True:
            try:
                s3_list_prefix(self.s3_port, BUCKET, "none/")
                break
            except (BenchError, OSError) as e:
                if time.monotonic() > deadline:
                    raise BenchError(f"garage S3 API not ready after 30 s: {e}")
                time.sleep(0.5)
        log(f"garage up: S3 on 127.0.0.1:{self.s3_port} (pid {self.proc.pid}, dir {self.root})")

    def cli(self, *args, retry_for=30.0) -> str:
        deadline = time.monotonic() + retry_for
        while True:
            r = subprocess.run([self.bin, "-c", str(self.cfg), *args], capture_output=True,
                               text=True, stdin=subprocess.DEVNULL,
                               env=dict(os.environ, RUST_LOG="warn"))
            if r.returncode == 0:
                return r.stdout
            if time.monotonic() > deadline:
                raise BenchError(f"`garage {' '.join(args)}` failed (exit {r.returncode}):\n"
                                 f"{(r.stderr or r.stdout).strip()[-2000:]}")
            time.sleep(0.5)

    def cpu_seconds(self) -> float:
        """user + sys CPU seconds Garage has used so far (0 if unreadable)."""
        if self.proc is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        log("garage stopped")

    def version(self) -> str:
        return first_line([self.bin, "--version"])


# --------------------------------------------------------------------------------------------
# Corpus: ~40% small/medium text files, ~40% one large file, ~20% random (incompressible) files

WORDS_SEED = 0x5E3C


def text_lines(rng: random.Random, n_lines=40_000) -> list[str]:
    """A pool of log- and prose-like lines built from a Zipf-weighted made-up vocabulary."""
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    lw = list(itertools.accumulate(26 - i for i in range(26)))
    vocab = ["".join(rng.choices(letters, cum_weights=lw, k=rng.randint(2, 11)))
             for _ in range(6000)]
    cum = list(itertools.accumulate(1.0 / (i + 1) for i in range(len(vocab))))
    levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
    lines = []
    for i in range(n_lines):
        words = " ".join(rng.choices(vocab, cum_weights=cum, k=rng.randint(4, 16)))
        if i % 3 == 0:
            lines.append(f"{rng.choice(levels)} [{rng.choice(vocab[:40])}] {words} "
                         f"id={rng.randrange(1 << 32):08x} took={rng.randrange(5000)}ms")
        else:
            lines.append(words.capitalize() + ".")
    return lines


def text_body(rng: random.Random, lines: list[str], size: int, start: int) -> bytes:
    out, n, i = [], 0, start
    while n < size:
        ln = f"{i:08d} {rng.choice(lines)}\n"
        out.append(ln)
        n += len(ln)
        i += 1
    return "".join(out).encode()[:size]


def generate_corpus(root: Path, size: int, seed: int = 20261124) -> dict:
    rng = random.Random(seed)
    text_budget = int(size * 0.4)
    large_size = int(size * 0.4) // 4096 * 4096
    rand_budget = size - text_budget - large_size
    lines = text_lines(random.Random(WORDS_SEED))
    t0 = time.perf_counter()

    # small/medium text files: log-uniform sizes 256 B - 1 MiB (mean ~126 KiB)
    n_text = text_bytes = 0
    line_no = 0
    while text_bytes < text_budget:
        n = min(int(2 ** rng.uniform(8, 20)), text_budget - text_bytes)
        d = root / "text" / f"g{n_text // 1000:02d}" / f"d{n_text // 100:03d}"
        if n_text % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        body = text_body(rng, lines, n, line_no)
        line_no += n // 60
        ext = (".log", ".txt", ".md", ".csv")[n_text % 4]
        (d / f"f{n_text:05d}{ext}").write_bytes(body)
        n_text += 1
        text_bytes += n

    # one large file: segments (256 KiB - 4 MiB) of fresh random bytes, repeats of earlier
    # random segments (dedupable), text and zeros
    recent: list[bytes] = []
    kinds = {"random": 0, "repeat": 0, "text": 0, "zeros": 0}
    written = 0
    with open(root / "large.bin", "wb") as f:
        while written < large_size:
            n = min(rng.randrange(256 * 1024, 4 * MiB) // 4096 * 4096 + 4096,
                    large_size - written)
            kind = rng.choices(("random", "repeat", "text", "zeros"), (6, 2, 1, 1))[0]
            if kind == "repeat" and not recent:
                kind = "random"
            if kind == "random":
                seg = rng.randbytes(n)
                recent.append(seg)
                if len(recent) > 16:
                    recent.pop(0)
            elif kind == "repeat":
                src = rng.choice(recent)
                seg = (src * (1 + n // len(src)))[:n]
            elif kind == "text":
                seg = text_body(rng, lines, n, line_no)
                line_no += n // 60
            else:
                seg = bytes(n)
            f.write(seg)
            kinds[kind] += n
            written += n

    # incompressible random files: 1 - 16 MiB
    n_rand = rand_bytes = 0
    (root / "random").mkdir(parents=True, exist_ok=True)
    while rand_bytes < rand_budget:
        n = min(rng.randrange(MiB, 16 * MiB), rand_budget - rand_bytes)
        with open(root / "random" / f"blob{n_rand:03d}.bin", "wb") as f:
            left = n
            while left:
                k = min(left, 4 * MiB)
                f.write(rng.randbytes(k))
                left -= k
        n_rand += 1
        rand_bytes += n
    return {
        "size": size,
        "files": n_text + 1 + n_rand,
        "text_files": n_text, "text_bytes": text_bytes,
        "large_bytes": large_size, "large_kinds": kinds,
        "random_files": n_rand, "random_bytes": rand_bytes,
        "generated_s": round(time.perf_counter() - t0, 1),
    }


# --------------------------------------------------------------------------------------------
# Hashing, verification, warming the cache


# --------------------------------------------------------------------------------------------
# Tools


def base_env(cache: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CAIRN_", "RESTIC_", "AWS_"))}
    env.update(AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION=REGION,
               XDG_CACHE_HOME=str(cache))
    return env


class Cairn:
    def __init__(self, binary: str, connections: int | None, name: str | None = None):
        self.bin = binary
        self.connections = connections
        self.name = name or ("cairn" if connections is None else f"cairn-c{connections}")
        self.prefix = self.name
        self.label = ("cairn (default --connections 4)" if connections is None
                      else f"cairn --connections {connections}")
        if name:
            self.label = f"{name} (the --cairn-before build)"

    def env(self, cache: Path) -> dict:
        return dict(base_env(cache), CAIRN_PASSWORD=PASSWORD)

    def argv(self, url, *args):
        g = [self.bin, "-r", url, "--no-progress"]
        if self.connections is not None:
            g += ["--connections", str(self.connections)]
        return g + list(args)

    def commands(self, step, url, corpus: Path, target: Path):
        return {
            "init": self.argv(url, "init"),
            "backup1": self.argv(url, "backup", str(corpus)),
            "backup2": self.argv(url, "backup", str(corpus)),
            "restore": self.argv(url, "restore", "latest", "--target", str(target)),
            "check": self.argv(url, "check", "--read-data"),
        }[step]

    def stats_cmd(self, url):
        return self.argv(url, "--json", "stats")

    @staticmethod
    def parse_stats(out: str):
        for line in reversed(out.splitlines()):
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if "unique_stored_size" in d:
                return d["unique_stored_size"], d.get("unique_size")
        return None


class Restic:
    name = "restic"
    prefix = "restic"
    label = "restic (defaults: s3.connections=5, compression auto)"

    def __init__(self, binary: str):
        self.bin = binary

    def env(self, cache: Path) -> dict:
        return dict(base_env(cache), RESTIC_PASSWORD=PASSWORD,
                    RESTIC_CACHE_DIR=str(cache / "restic"))

    def commands(self, step, url, corpus: Path, target: Path):
        b = [self.bin, "-r", url, "--quiet"]
        return {
            "init": b + ["init"],
            "backup1": b + ["backup", str(corpus)],
            "backup2": b + ["backup", str(corpus)],
            "restore": b + ["restore", "latest", "--target", str(target)],
            "check": b + ["check", "--read-data"],
        }[step]

    def stats_cmd(self, url):
        return [self.bin, "-r", url, "--quiet", "stats", "--mode", "raw-data", "--json"]

    @staticmethod
    def parse_stats(out: str):
        for line in reversed(out.splitlines()):
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if "total_size" in d:
                return d["total_size"], d.get("total_uncompressed_size")
        return None


# --------------------------------------------------------------------------------------------
# One run of one tool


def run_tool(tool, run: int, work: Path, corpus: Path, expected: dict, garage: Garage, args):
    prefix = f"{tool.prefix}-{run}"
    url = f"s3:http://127.0.0.1:{garage.s3_port}/{BUCKET}/{prefix}"
    cache = work / "cache" / prefix
    target = work / "restore" / prefix
    logdir = work / "logs" / prefix
    for p in (cache, logdir):
        p.mkdir(parents=True, exist_ok=True)
    env = tool.env(cache)
    res = {"tool": tool.name, "run": run, "url": url, "steps": {}, "error": None,
           "verify": None}
    log(f"run {run} {tool.name}: {url}")

    def step(name):
        if not garage.alive():
            raise StepFailed(f"garage is not running (log: {garage.log_path}):\n"
                             f"{tail(garage.log_path)}")
        argv = tool.commands(name, url, corpus, target)
        os.sync()
        g0 = garage.cpu_seconds()
        out, err = logdir / f"{name}.out", logdir / f"{name}.err"
        r = run_measured(argv, env, str(work), out, err, args.timeout)
        r["garage_cpu"] = garage.cpu_seconds() - g0
        if r["rc"] != 0 or "error" in r:
            raise StepFailed(
                f"{tool.name} {STEP_NAMES[name]} (run {run}): `{shlex.join(argv)}` exited "
                f"{r['rc']}{' — ' + r['error'] if 'error' in r else ''}\n"
                f"stderr (last lines, {err}):\n{tail(err)}")
        res["steps"][name] = r
        mbps = args.corpus_bytes / 1e6 / r["wall"] if name != "init" and r["wall"] else 0
        log(f"run {run} {tool.name:9} {STEP_NAMES[name]:22} wall {r['wall']:7.2f} s  "
            f"cpu {r['cpu']:7.2f} s  rss {r['rss_kib'] / 1024:7.1f} MiB  "
            f"{mbps:7.1f} MB/s  garage cpu {r['garage_cpu']:6.2f} s")

    try:
        warm(corpus)
        step("init")
        step("backup1")
        step("backup2")
        # repository size (untimed): the prefix's objects, and the tool's own stored-blob count
        try:
            res["s3_objects"], res["s3_bytes"] = s3_list_prefix(garage.s3_port, BUCKET,
                                                                prefix + "/")
        except (BenchError, OSError) as e:
            log(f"listing {prefix}/ failed: {e}")
        r = subprocess.run(tool.stats_cmd(url), env=env, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=args.timeout)
        st = tool.parse_stats(r.stdout) if r.returncode == 0 else None
        if st:
            res["stored"], res["stored_raw"] = st
        else:
            log(f"{tool.name} stats gave nothing usable (exit {r.returncode}): "
                f"{r.stderr.strip()[-500:]}")
        target.mkdir(parents=True, exist_ok=True)
        step("restore")
        ok, msg = verify(target, corpus, expected)
        res["verify"] = (ok, msg)
        if not ok:
            raise StepFailed(f"!!! RESTORE VERIFICATION FAILED: {tool.name} run {run}: {msg}")
        log(f"run {run} {tool.name:9} restore verified: {msg}")
        step("check")
    except StepFailed as e:
        res["error"] = str(e)
        log(f"FAILED: {e}")
    except (BenchError, OSError, subprocess.SubprocessError) as e:
        res["error"] = f"{tool.name} (run {run}): {type(e).__name__}: {e}"
        log(f"FAILED: {res['error']}")
    return res


# --------------------------------------------------------------------------------------------
# Report


def machine_info() -> dict:
    model, mem = "?", 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return {"nproc": nproc or str(os.cpu_count()), "model": model, "mem": mem,
            "kernel": platform.release(), "load_start": os.getloadavg()}


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def median_step(results, tool, step, key):
    return med([r["steps"][step][key] for r in results
                if r["tool"] == tool and step in r["steps"]])


def f2(x, nd=2):
    return "—" if x is None else f"{x:.{nd}f}"


def render(results, tools, info) -> str:
    args, m, c = info["args"], info["machine"], info["corpus"]
    size_mb = c["actual_bytes"] / 1e6
    names = [t.name for t in tools]
    lines = []
    w = lines.append
    w(f"# cairn vs restic on S3 (Garage on loopback) — {info['date']}")
    w("")
    w(f"Command: `{info['command']}` (from `{PROJECT}`), {info['started']}–{info['finished']} "
      f"UTC ({info['duration_min']:.1f} min in all).")
    w("")
    w(f"Machine: {m['nproc']} CPUs ({m['model']}), {m['mem'] / GiB:.1f} GiB RAM, Linux "
      f"{m['kernel']}; load average at start {m['load_start'][0]:.2f}, at end "
      f"{info['load_end']:.2f}. The machine may be shared with other work, so single numbers "
      f"can be noisy; runs are interleaved across tools.")
    w("")
    w(f"**Garage runs on the same {m['nproc']}-core machine and competes for CPU with the tool "
      "being measured** (its CPU time during each step is in the `Garage CPU s` column). "
      "Loopback has no network latency or bandwidth limit, so these numbers show per-request "
      "and CPU overheads, not what a real remote S3 service would give.")
    w("")
    w("## Versions and setup")
    w("")
    for t in tools:
        w(f"- **{t.name}**: {info['versions'][t.name]} — {t.label}")
    w(f"- **Garage**: {info['versions']['garage']} — single node, `db_engine = \"sqlite\"`, "
      "`replication_factor = 1`, metadata and data in the temp dir on the same disk as the "
      "corpus, `RUST_LOG=garage=warn,warn` (no per-request log lines)")
    w("")
    w(f"Repositories: `s3:http://127.0.0.1:PORT/{BUCKET}/<tool>-<run>` (path-style), a fresh "
      "prefix and a fresh local cache for every run; credentials in AWS_ACCESS_KEY_ID / "
      "AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION=garage. cairn runs with `--no-progress`, "
      "restic with `--quiet`.")
    w("")
    w("## Corpus")
    w("")
    lk = c["large_kinds"]
    w(f"{human(c['actual_bytes'])} ({size_mb:.0f} MB), {c['files']} files, deterministic "
      f"(generated in {c['generated_s']} s), in a temp dir under `{args.tmp_dir}`:")
    w("")
    w(f"- {c['text_files']} text files (log-uniform 256 B–1 MiB; log and prose lines from a "
      f"made-up vocabulary, numbered; ~2.8x with zlib -6): {human(c['text_bytes'])};")
    w(f"- `large.bin`, {human(c['large_bytes'])}: 256 KiB–4 MiB segments of fresh random bytes "
      f"({human(lk['random'])}), repeats of recent random segments ({human(lk['repeat'])}, "
      f"dedupable), text ({human(lk['text'])}) and zeros ({human(lk['zeros'])});")
    w(f"- {c['random_files']} random files of 1–16 MiB (incompressible): "
      f"{human(c['random_bytes'])}.")
    w("")
    w("## Method")
    w("")
    w(f"Per tool and run: init → first backup → unchanged re-backup → restore of `latest` into "
      f"an empty directory → `check --read-data`. {args.runs} run(s) per tool, interleaved "
      "(run 1 of every tool, then run 2, ...); tables give the median. The page cache is warm "
      "(the corpus is read before each tool's run and fits in RAM), `sync` runs "
      "before each step. wall = elapsed s; CPU = user + sys s of the tool (wait4, children "
      "included); peak RSS = GNU time %M of the tool process; MB/s = corpus size (10^6 bytes) "
      "÷ wall for every step (for the re-backup: corpus scanned per second; for check: corpus "
      "verified per second, though the repository, not the corpus, is read); Garage CPU = "
      "user + sys s Garage used during the step (/proc); ÷ restic = restic wall ÷ tool wall "
      "(above 1: faster than restic). Restore time excludes the verification: every restored "
      "file is hashed (BLAKE2b) and compared with the corpus afterwards, and any missing, "
      "extra or different file fails the run.")
    w("")
    ver = [r for r in results if r["verify"] is not None]
    bad = [r for r in ver if not r["verify"][0]]
    if bad:
        w("**RESTORE VERIFICATION FAILED:** " + "; ".join(
            f"{r['tool']} run {r['run']}: {r['verify'][1]}" for r in bad))
    else:
        w(f"Restore verification: {len(ver)} of {len(results)} runs verified, every one "
          f"byte-identical to the corpus ({c['files']} files).")
    w("")
    w("## Results (median)")
    for step, label in STEPS:
        w("")
        w(f"### {label}")
        w("")
        w("| tool | wall s | CPU s | peak RSS MiB | MB/s | Garage CPU s | ÷ restic |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        rw = median_step(results, "restic", step, "wall")
        for n in names:
            wall = median_step(results, n, step, "wall")
            if wall is None:
                w(f"| {n} | failed | | | | | |")
                continue
            cpu = median_step(results, n, step, "cpu")
            rss = median_step(results, n, step, "rss_kib")
            gc = median_step(results, n, step, "garage_cpu")
            mbps = "—" if step == "init" else f"{size_mb / wall:.1f}"
            ratio = "" if n == "restic" or rw is None else f"{rw / wall:.2f}"
            w(f"| {n} | {wall:.2f} | {cpu:.2f} | {rss / 1024:.1f} | {mbps} | {gc:.2f} | "
              f"{ratio} |")
    w("")
    w("## Repository size after the two backups (median)")
    w("")
    w("S3 = objects under the run's prefix (ListObjectsV2); stored blobs = the tool's own "
      "count of stored (compressed, encrypted) blob bytes: `cairn stats --json` "
      "`unique_stored_size`, `restic stats --mode raw-data --json` `total_size`.")
    w("")
    w("| tool | objects | S3 MB | stored blobs MB | plaintext of blobs MB | ÷ corpus |")
    w("|---|---:|---:|---:|---:|---:|")
    for n in names:
        rs = [r for r in results if r["tool"] == n]
        objs = med([r.get("s3_objects") for r in rs])
        sb = med([r.get("s3_bytes") for r in rs])
        st = med([r.get("stored") for r in rs])
        raw = med([r.get("stored_raw") for r in rs])
        w(f"| {n} | {f2(objs, 0)} | {f2(sb and sb / 1e6, 1)} | {f2(st and st / 1e6, 1)} | "
          f"{f2(raw and raw / 1e6, 1)} | {f2(sb and sb / c['actual_bytes'], 3)} |")
    w("")
    w("## Every run (wall s)")
    w("")
    w("| tool | " + " | ".join(label for _, label in STEPS) + " |")
    w("|---|" + "---:|" * len(STEPS))
    for n in names:
        cells = []
        for step, _ in STEPS:
            vals = [r["steps"][step]["wall"] for r in results
                    if r["tool"] == n and step in r["steps"]]
            cells.append(" / ".join(f"{v:.2f}" for v in vals) or "—")
        w(f"| {n} | " + " | ".join(cells) + " |")
    errors = [r for r in results if r["error"]]
    if errors:
        w("")
        w("## Failures")
        w("")
        for r in errors:
            w("```")
            w(r["error"].strip())
            w("```")
    w("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(
        description="Benchmark cairn against restic on an S3 repository served by a "
                    "single-node Garage on loopback (started and stopped by this script).",
        epilog="e.g. scripts/bench-s3.sh --size 600M --runs 1 --out /tmp/s3.md")
    ap.add_argument("--size", type=parse_size, default=GiB,
                    help="corpus size, e.g. 600M, 1G (default 1G)")
    ap.add_argument("--runs", type=int, default=3, help="runs per tool; median reported "
                    "(default 3)")
    ap.add_argument("--tools", default="cairn,restic,cairn-c8",
                    help="comma-separated among cairn, restic, cairn-c8 (= cairn --connections "
                         "8), cairn-before (see --cairn-before) (default: the first three)")
    ap.add_argument("--out", type=Path, default=None,
                    help="Markdown report path (default scripts/results/<today>-s3.md)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp dir (corpus, Garage data, restores, logs)")
    ap.add_argument("--tmp-dir", default="/tmp", help="parent of the temp dir (default /tmp)")
    ap.add_argument("--cairn", default=str(PROJECT / "target" / "release" / "cairn"),
                    help="cairn binary (default target/release/cairn; it is copied first, so "
                         "a rebuild cannot swap it mid-run)")
    ap.add_argument("--cairn-before", default=None,
                    help="a second cairn binary (a build before a change), measured as the tool "
                         "cairn-before in the same run; copied first like --cairn")
    ap.add_argument("--restic", default=shutil.which("restic"), help="restic binary")
    ap.add_argument("--garage", default=None, help="garage binary (default: PATH or "
                    "~/.cargo/bin/garage)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per command "
                    "(default 3600)")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
    for t in wanted:
        if t not in ("cairn", "restic", "cairn-c8", "cairn-before"):
            ap.error(f"unknown tool {t!r} in --tools")
    today = datetime.date.today().isoformat()
    out = args.out or PROJECT / "scripts" / "results" / f"{today}-s3.md"

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    if any(t.startswith("cairn") for t in wanted) and not os.access(args.cairn, os.X_OK):
        raise BenchError(f"cairn binary not found or not executable: {args.cairn} "
                         "(cargo build --release, or --cairn BIN)")
    if "cairn-before" in wanted and not (args.cairn_before and os.access(args.cairn_before, os.X_OK)):
        raise BenchError("--tools cairn-before needs --cairn-before BIN")
    if "restic" in wanted and not (args.restic and os.access(args.restic, os.X_OK)):
        raise BenchError("restic not found (apt-get install restic, or --restic BIN)")
    garage_bin = find_garage(args.garage)

    n_tool_runs = len(wanted) * args.runs
    need = args.size * (2 + 2 * n_tool_runs)  # corpus + per run: repository + restore
    free = shutil.disk_usage(args.tmp_dir).free
    if free < need:
        raise BenchError(f"{args.tmp_dir} has {human(free)} free; this needs about {human(need)}"
                         " (smaller --size or fewer --runs)")

    work = Path(tempfile.mkdtemp(prefix="bench-s3-", dir=args.tmp_dir))
    log(f"work dir {work}")
    started = datetime.datetime.now(datetime.timezone.utc)
    machine = machine_info()
    garage = Garage(garage_bin, work / "garage")
    results = []
    try:
        (work / "bin").mkdir()
        tools = []
        versions = {}
        if any(t.startswith("cairn") for t in wanted):
            cairn_bin = work / "bin" / "cairn"
            shutil.copy2(args.cairn, cairn_bin)
            rev = subprocess.run(["git", "-C", str(PROJECT), "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(PROJECT), "status", "--porcelain",
                                    "--untracked-files=no"], capture_output=True,
                                   text=True).stdout.strip()
            cv = (f"{first_line([str(cairn_bin), '--version'])} (release build, git {rev}"
                  f"{', uncommitted changes in the tree' if dirty else ''})")
        for t in wanted:
            if t == "cairn":
                tools.append(Cairn(str(cairn_bin), None))
                versions[t] = cv
            elif t == "cairn-c8":
                tools.append(Cairn(str(cairn_bin), 8))
                versions[t] = cv
            elif t == "cairn-before":
                before_bin = work / "bin" / "cairn-before"
                shutil.copy2(args.cairn_before, before_bin)
                tools.append(Cairn(str(before_bin), None, name="cairn-before"))
                versions[t] = f"{first_line([str(before_bin), '--version'])} ({args.cairn_before})"
            else:
                tools.append(Restic(args.restic))
                versions[t] = first_line([args.restic, "version"])
        versions["garage"] = garage.version()

        corpus = work / "corpus"
        log(f"generating a {human(args.size)} corpus in {corpus}")
        cinfo = generate_corpus(corpus, args.size)
        files = list_files(corpus)
        cinfo["actual_bytes"] = sum(s for _, s in files)
        args.corpus_bytes = cinfo["actual_bytes"]
        log(f"corpus: {cinfo['files']} files, {human(cinfo['actual_bytes'])} "
            f"({cinfo['generated_s']} s)")
        expected = manifest(corpus)

        garage.start()
        for run in range(1, args.runs + 1):
            for tool in tools:
                results.append(run_tool(tool, run, work, corpus, expected, garage, args))
    finally:
        garage.stop()
        if args.keep:
            log(f"kept {work}")
        else:
            log(f"removing {work}")
            shutil.rmtree(work, ignore_errors=True)

    finished = datetime.datetime.now(datetime.timezone.utc)
    argv = sys.argv[1:]
    info = {
        "args": args, "machine": machine, "corpus": cinfo, "versions": versions,
        "date": started.date().isoformat(),
        "command": shlex.join(["scripts/bench-s3.sh", *argv]),
        "started": started.strftime("%H:%M"), "finished": finished.strftime("%H:%M"),
        "duration_min": (finished - started).total_seconds() / 60,
        "load_end": os.getloadavg()[0],
    }
    report = render(results, tools, info)
    print(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    log(f"report written to {out}")
    failed = [r for r in results if r["error"]]
    if failed:
        log(f"{len(failed)} run(s) failed (see the report's Failures section)")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(2)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)

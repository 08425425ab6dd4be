#!/usr/bin/env bash
# Read throughput through `cairn mount` against `restic mount` on the same data in the same run
# (issue 17 "Speed"): a sequential read of one 1 GiB file, and `cat` of 10,000 small files,
# through each mount (a fresh mount for each, so the kernel's page cache of the mount is
# cold); plus `cairn restore` of the same 1 GiB file. Prints a Markdown table and the ratios
# (goal: cairn mount >= 3x restic mount, and within 2x of cairn restore). RUNS (default 3)
# interleaved runs; the table shows medians, each run's figures go to stderr.
# usage: scripts/bench-mount.sh [CAIRN_BINARY] [WORKDIR]
#   without CAIRN_BINARY, builds a release binary; installs restic with apt-get if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ge 1 ] && [ -n "$1" ]; then
    bin="$(realpath "$1")"
else
    cargo build --release --quiet
    bin="$PWD/target/release/cairn"
fi
work="${2:-$(mktemp -d /var/tmp/cairn-bench-mount.XXXXXX)}"
mkdir -p "$work"
if ! command -v restic >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic >/dev/null
fi
command -v fusermount3 >/dev/null || { echo "error: fusermount3 is missing (apt-get install fuse3)" >&2; exit 1; }

data="$work/data"
if [ ! -d "$data" ]; then
    mkdir -p "$data/small"
    head -c 1073741824 /dev/urandom > "$data/big.bin"
    python3 - "$data/small" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(17)
for i in range(10000):
    d = os.path.join(root, f"d{i // 500:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
        f.write(rng.randbytes(rng.randint(512, 16384)))
PY
fi

export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench
rm -rf "$work/cairn-repo" "$work/restic-repo" "$work/mnt" "$work/restore"
"$bin" -r "$work/cairn-repo" init --quiet
"$bin" -r "$work/cairn-repo" backup "$data" --quiet --no-progress >/dev/null
restic -r "$work/restic-repo" init --quiet
restic -r "$work/restic-repo" backup "$data" --quiet
mkdir -p "$work/mnt"
sync

ms() { date +%s%N; }
pid=""
cleanup() {
    if mountpoint -q "$work/mnt"; then fusermount3 -u -z "$work/mnt" || true; fi
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

# mount TOOL: starts TOOL's mount in the background and waits for the latest snapshot.
mount_tool() {
    case "$1" in
        cairn) "$bin" -r "$work/cairn-repo" mount "$work/mnt" --quiet & ;;
        restic) restic -r "$work/restic-repo" mount "$work/mnt" --no-lock >/dev/null 2>&1 & ;;
    esac
    pid=$!
    for _ in $(seq 1 600); do
        [ -e "$work/mnt/snapshots/latest$data/big.bin" ] && return 0
        sleep 0.1
    done
    echo "error: $1 mount did not come up" >&2
    exit 1
}
unmount_tool() {
    fusermount3 -u "$work/mnt"
    wait "$pid" || true
    pid=""
}
# timed CMD...: milliseconds CMD takes.
timed() {
    local start end
    start=$(ms)
    "$@" >/dev/null
    end=$(ms)
    echo $(( (end - start) / 1000000 ))
}
cat_small() { find "$1" -type f -print0 | sort -z | xargs -0 cat; }

# median N...: the middle value (the machine is shared: single runs vary by up to 2x).
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
runs="${RUNS:-3}"
declare -A big small
big_cairn=() big_restic=() small_cairn=() small_restic=() restores=()
# Interleaved, so that a slow spell of the machine hits both tools alike.
for _ in $(seq 1 "$runs"); do
    for tool in cairn restic; do
        mount_tool "$tool"
        t=$(timed cat "$work/mnt/snapshots/latest$data/big.bin")
        unmount_tool
        mount_tool "$tool"
        u=$(timed cat_small "$work/mnt/snapshots/latest$data/small")
        unmount_tool
        if [ "$tool" = cairn ]; then big_cairn+=("$t"); small_cairn+=("$u"); else big_restic+=("$t"); small_restic+=("$u"); fi
    done
    restores+=("$(timed "$bin" -r "$work/cairn-repo" restore "latest:$data/big.bin" --target "$work/restore" --quiet --no-progress)")
    rm -rf "$work/restore"
done
echo "runs (ms): cairn big ${big_cairn[*]}; restic big ${big_restic[*]}; cairn small ${small_cairn[*]}; restic small ${small_restic[*]}; restore ${restores[*]}" >&2
big[cairn]=$(median "${big_cairn[@]}"); big[restic]=$(median "${big_restic[@]}")
small[cairn]=$(median "${small_cairn[@]}"); small[restic]=$(median "${small_restic[@]}")
restore_ms=$(median "${restores[@]}")

python3 - "${big[cairn]}" "${big[restic]}" "${small[cairn]}" "${small[restic]}" "$restore_ms" \
    "$(restic version | head -1)" "$("$bin" --version)" "$(nproc)" "$runs" <<'PY'
import sys
bc, br, sc, sr, rc = (float(x) / 1000 for x in sys.argv[1:6])
restic_v, cairn_v, cores, runs = sys.argv[6:10]
gib = 1024.0
print(f"{cairn_v} vs {restic_v}, {cores} cores, repositories on local disk (warm page cache), fresh mount per read, median of {runs} interleaved runs")
print()
print("| read | cairn s | restic s | cairn MiB/s | restic MiB/s | restic / cairn |")
print("|---|---|---|---|---|---|")
print(f"| 1 GiB file, sequential `cat` | {bc:.2f} | {br:.2f} | {gib / bc:.0f} | {gib / br:.0f} | {br / bc:.2f}x |")
print(f"| 10,000 small files, `cat` | {sc:.2f} | {sr:.2f} | | | {sr / sc:.2f}x |")
print(f"| `cairn restore` of the 1 GiB file | {rc:.2f} | | {gib / rc:.0f} | | |")
print()
print(f"cairn mount / restic mount throughput: {br / bc:.2f}x (1 GiB file), {sr / sc:.2f}x (small files); goal >= 3x")
print(f"cairn mount time / cairn restore time (1 GiB file): {bc / rc:.2f} (goal <= 2)")
PY

#!/usr/bin/env bash
# Backs up a generated tree of >= 50,000 files / >= 1 GiB, then backs it up again unchanged.
# Reports both wall times, their ratio and what the re-backup read (target: < 10%, 0 bytes).
# usage: scripts/bench-rebackup.sh [WORKDIR] [FILES] [BYTES]
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d /var/tmp/cairn-bench.XXXXXX)}"
files="${2:-50000}"
bytes="${3:-1073741824}"
cargo build --release --quiet
bin="$PWD/target/release/cairn"
mkdir -p "$work"
if [ ! -d "$work/tree" ]; then
    python3 scripts/gen-tree.py "$work/tree" "$files" "$bytes"
fi
rm -rf "$work/repo"
export CAIRN_PASSWORD=bench
"$bin" -r "$work/repo" init --quiet
sync
run() {
    local start end
    start=$(date +%s%N)
    "$bin" -r "$work/repo" backup "$work/tree" --json --no-progress | tail -1 > "$work/$1.json"
    end=$(date +%s%N)
    echo $(( (end - start) / 1000000 ))
}
first=$(run first)
second=$(run second)
python3 - "$work" "$first" "$second" <<'PY'
import json, sys
work, t1, t2 = sys.argv[1], float(sys.argv[2]) / 1000, float(sys.argv[3]) / 1000
a = json.load(open(f"{work}/first.json"))
b = json.load(open(f"{work}/second.json"))
print(f"| run | wall s | files | bytes read | unmodified | added |")
print(f"|---|---|---|---|---|---|")
for name, t, s in (("first backup", t1, a), ("unchanged re-backup", t2, b)):
    print(f"| {name} | {t:.2f} | {s['total_files']} | {s['bytes_read']} | {s['files_unmodified']} | {s['data_added']} |")
print(f"\nre-backup / first = {t2 / t1:.3f} (target < 0.10); re-backup read {b['bytes_read']} bytes (target 0)")
PY

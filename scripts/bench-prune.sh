#!/usr/bin/env bash
# Prune on a repository of >= 200,000 blobs: two snapshots of 100,000 distinct small files each
# (one chunk per file), forget one, prune. Reports wall time and peak RSS of each step.
# usage: scripts/bench-prune.sh [WORKDIR] [FILES_PER_SNAPSHOT]
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d /var/tmp/cairn-prune.XXXXXX)}"
files="${2:-100000}"
cargo build --release --quiet
bin="$PWD/target/release/cairn"
mkdir -p "$work"
for half in a b; do
    if [ ! -d "$work/$half" ]; then
        python3 scripts/gen-tree.py "$work/$half" "$files" $((files * 2048)) "$half"
    fi
done
rm -rf "$work/repo"
export CAIRN_PASSWORD=bench
# A small KDF so that Argon2's 64 MiB does not mask the peak RSS of the steps measured.
"$bin" -r "$work/repo" init --quiet --kdf-memory-mib 8
measure() {
    local label="$1"; shift
    /usr/bin/time -f "%e %M" -o "$work/time.txt" "$bin" -r "$work/repo" "$@" --quiet > /dev/null
    read -r secs kib < "$work/time.txt"
    printf '| %s | %s | %s |\n' "$label" "$secs" "$((kib / 1024))"
}
echo "| step | wall s | peak RSS MiB |"
echo "|---|---|---|"
measure "backup a ($files files)" backup "$work/a" --tag a
measure "backup b ($files files)" backup "$work/b" --tag b
blobs=$("$bin" -r "$work/repo" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["unique_blobs"])')
measure "check" check
first=$("$bin" -r "$work/repo" snapshots --json --tag a | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
measure "forget a" forget "$first"
measure "prune" prune
measure "check after prune" check
echo
echo "blobs before prune: $blobs; repository after: $(du -sh "$work/repo" | cut -f1)"

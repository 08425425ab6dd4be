#!/usr/bin/env bash
# cairn vs restic, borg (and rustic, bupstash with --with-rustic / --with-bupstash) side by side.
# Thin wrapper: all logic is in bench-peers.py (Python 3.11, stdlib only); see --help.
# e.g. scripts/bench-peers.sh                      # 2.4 GB corpus, 3 runs, report in scripts/results/
#      scripts/bench-peers.sh --size 600M --runs 1 --tools cairn,restic
set -euo pipefail
exec python3 "$(dirname "$0")/bench-peers.py" "$@"

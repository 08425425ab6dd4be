#!/usr/bin/env bash
# cairn vs restic on an S3 repository: a single-node Garage on loopback, started by the script.
# Thin wrapper: all logic is in bench-s3.py (Python 3.11, stdlib only); see --help.
# e.g. scripts/bench-s3.sh                      # 1 GiB corpus, 3 runs, report in scripts/results/
#      scripts/bench-s3.sh --size 600M --runs 1 --tools cairn,restic --out /tmp/s3.md
set -euo pipefail
exec python3 "$(dirname "$0")/bench-s3.py" "$@"

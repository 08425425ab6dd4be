#!/usr/bin/env bash
# Measures dedup against index size for several chunker parameter sets (repo-format.md §5.1).
# Usage: scripts/chunker-params.sh [DIR] [MAX_BYTES]
# Default corpus: the installed Rust toolchain (real libraries, docs and binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-$(rustc --print sysroot)}"
cargo run --quiet --release --example chunker_params -- "$dir" "${2:-1073741824}"

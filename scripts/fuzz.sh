#!/usr/bin/env bash
# Fuzz targets for every parser of repository bytes (fuzz/targets.rs), on the stable toolchain.
#
#   scripts/fuzz.sh                    build every target, replay the seed corpus once
#   scripts/fuzz.sh build              build only
#   scripts/fuzz.sh replay             replay only (after a build)
#   scripts/fuzz.sh run SECONDS [T..]  build, replay, then fuzz each target (or those named)
#                                      for SECONDS; findings land in fuzz/artifacts/<target>/
#
# Builds with cargo fuzz (installed from crates.io if missing, version pinned) with coverage
# instrumentation (-Cpasses=sancov-module: stable) and debug assertions, but no sanitizer:
# -Zsanitizer needs a nightly compiler, which this project does not use. Safe Rust needs none to
# catch panics and integer overflow; runaway allocation is caught by the capped global allocator
# in fuzz/targets.rs (libFuzzer's -malloc_limit_mb works only with a sanitizer's malloc hooks)
# and by -rss_limit_mb. FUZZ_SANITIZER=address asks for ASan anyway through RUSTC_BOOTSTRAP=1
# (the stable toolchain ships the runtime): a local experiment, never for CI. The stable
# `cargo test` runs the same targets without libFuzzer (tests/fuzz_replay.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-all}
secs=${2:-60}
shift $(( $# > 2 ? 2 : $# )) || true
sanitizer=${FUZZ_SANITIZER:-none}
triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=fuzz/target/$triple/release

# One list of targets: the [[bin]] names in fuzz/Cargo.toml.
mapfile -t all_targets < <(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^cairn-fuzz$')
targets=("${all_targets[@]}")
if [ "$mode" = run ] && [ $# -gt 0 ]; then targets=("$@"); fi

fuzz_flags=(--sanitizer "$sanitizer" --debug-assertions)
env_bootstrap=()
if [ "$sanitizer" != none ]; then env_bootstrap=(env RUSTC_BOOTSTRAP=1); fi

install() {
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "installing cargo-fuzz ${CARGO_FUZZ_VERSION:=0.13.2} from crates.io" >&2
        cargo install cargo-fuzz --locked --quiet --version "$CARGO_FUZZ_VERSION"
    fi
}

# fuzz/Cargo.lock is the root Cargo.lock plus libfuzzer-sys: the targets are built against the
# same dependency versions as cairn itself. When a dependency of the root changes, refresh it
# from the root's (cargo keeps every pin it can and adds what is missing).
sync_lock() {
    if ! cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null 2>&1; then
        echo "fuzz/Cargo.lock is stale: refreshing it from Cargo.lock (commit the result)" >&2
        cp Cargo.lock fuzz/Cargo.lock
        cargo metadata --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null
    fi
}

build() {
    install
    sync_lock
    local t0=$SECONDS
    (cd fuzz && "${env_bootstrap[@]}" cargo fuzz build "${fuzz_flags[@]}")
    echo "fuzz targets built in $((SECONDS - t0)) s" >&2
}

replay() {
    local t failed=0
    for t in "${all_targets[@]}"; do
        # With -runs=0 libFuzzer runs every file of the corpus directory once, then exits;
        # a panic makes it exit non-zero and print the input.
        if ! "$bin_dir/$t" -runs=0 "fuzz/corpus-seed/$t" >"fuzz/target/replay-$t.log" 2>&1; then
            echo "replay of fuzz/corpus-seed/$t FAILED:" >&2
            tail -40 "fuzz/target/replay-$t.log" >&2
            failed=1
        else
            echo "replayed fuzz/corpus-seed/$t ($(ls "fuzz/corpus-seed/$t" | wc -l) inputs): ok" >&2
        fi
    done
    return $failed
}

run() {
    local t failed=0
    for t in "${targets[@]}"; do
        mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
        echo "fuzzing $t for $secs s" >&2
        # The binary directly (`cargo fuzz run` would rebuild first): new inputs go to
        # fuzz/corpus/<t>, a crashing input to fuzz/artifacts/<t>/, and the run stops there.
        if ! "$bin_dir/$t" "fuzz/corpus/$t" "fuzz/corpus-seed/$t" \
            -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -dict=fuzz/msgpack.dict \
            -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 \
            >"fuzz/target/run-$t.log" 2>&1; then
            echo "fuzzing $t found a crash: see fuzz/target/run-$t.log and fuzz/artifacts/$t/" >&2
            grep -E "panicked|ERROR|SUMMARY|Test unit written" "fuzz/target/run-$t.log" >&2 || true
            failed=1
        fi
        grep -E "stat::number_of_executed_units|stat::peak_rss_mb|cov:" "fuzz/target/run-$t.log" \
            | tail -3 >&2 || true
    done
    return $failed
}

case "$mode" in
    build) build ;;
    replay) replay ;;
    all) build && replay ;;
    run) build && replay && run ;;
    *) echo "usage: $0 [build|replay|run SECONDS [TARGET...]]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer) briefly, each from its committed seed
# corpus (fuzz/corpus/<target>/): the CSV and Parquet readers of the drift engine, Go-style
# durations and cron schedules, simulator scenarios, and ModelDeployment specs through
# `mlrollout check` and the reconciler's validation.
#
#   bash tests/fuzz.sh                  # every target, MLROLLOUT_FUZZ_SECONDS (20) s each
#   bash tests/fuzz.sh csv spec         # some targets
#   MLROLLOUT_FUZZ_SECONDS=600 bash tests/fuzz.sh parquet
#
# Needs only a stable Rust toolchain: cargo-fuzz (pinned below) is installed with
# `cargo install --locked` into ~/.cache/mlrollout/cargo-fuzz-<version> when absent, and the
# nightly-only flags cargo-fuzz passes to rustc (coverage instrumentation, -Zsanitizer) are
# accepted by stable rustc with RUSTC_BOOTSTRAP=1. The targets build in
# ~/.cache/mlrollout/fuzz-target (kept between clones and runs). Inputs the fuzzer finds go
# to a temporary directory, never into the repository; a crash stops nothing else, fails the script, and leaves its input in that directory, whose
# path is printed (`cargo fuzz run <target> <input>` replays it; see CONTRIBUTING.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS=(csv parquet duration scenario spec)
seconds="${MLROLLOUT_FUZZ_SECONDS:-20}"
# address: AddressSanitizer (the library has no unsafe code of its own, its dependencies do);
# none: faster builds and runs.
sanitizer="${MLROLLOUT_FUZZ_SANITIZER:-address}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=("${ALL_TARGETS[@]}")
fi

root="${XDG_CACHE_HOME:-$HOME/.cache}/mlrollout/cargo-fuzz-$CARGO_FUZZ_VERSION"
if ! [ -x "$root/bin/cargo-fuzz" ]; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION into $root"
    install_target="$(mktemp -d)"
    CARGO_TARGET_DIR="$install_target" cargo install cargo-fuzz \
        --version "$CARGO_FUZZ_VERSION" --locked --root "$root" --quiet
    rm -rf "$install_target"
fi
export PATH="$root/bin:$PATH"
export RUSTC_BOOTSTRAP=1
# The fuzz build has its own flags: never share the main target directory.
unset CARGO_TARGET_DIR
# Outside the work tree, so that it survives between clones and CI runs on this machine (the
# instrumented build of the library and its dependencies is the stage's big cost).
fuzz_target_dir="${XDG_CACHE_HOME:-$HOME/.cache}/mlrollout/fuzz-target"
fuzz_args=(--sanitizer "$sanitizer" --target-dir "$fuzz_target_dir")

cd fuzz
work="$(mktemp -d "${TMPDIR:-/tmp}/mlrollout-fuzz.XXXXXX")"
echo "building the fuzz targets (sanitizer: $sanitizer)"
build=()
if [ $# -gt 0 ]; then
    build=("${targets[@]}")
else
    build=("") # every target at once
fi
for target in "${build[@]}"; do
    if ! cargo fuzz build "${fuzz_args[@]}" ${target:+"$target"} >"$work/build.log" 2>&1; then
        cat "$work/build.log" >&2
        echo "tests/fuzz.sh: building the fuzz targets failed" >&2
        exit 1
    fi
done

failed=()
for target in "${targets[@]}"; do
    mkdir -p "$work/$target/new" "$work/$target/artifacts"
    log="$work/$target/log"
    started=$SECONDS
    # The first corpus directory receives new inputs; the committed one is only read.
    if cargo fuzz run "${fuzz_args[@]}" "$target" "$work/$target/new" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
        -artifact_prefix="$work/$target/artifacts/" >"$log" 2>&1; then
        runs="$(grep -o 'Done [0-9]* runs' "$log" | tail -1 || true)"
        echo "    fuzz $target: ok (${runs:-no summary}, $((SECONDS - started))s)"
    else
        echo "    fuzz $target: FAILED after $((SECONDS - started))s; log: $log" >&2
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -5 >&2 || true
        for input in "$work/$target/artifacts/"*; do
            [ -e "$input" ] && echo "    crashing input: $input" >&2
        done
        failed+=("$target")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "tests/fuzz.sh: crashes in: ${failed[*]} (inputs and logs kept in $work)" >&2
    exit 1
fi
rm -rf "$work"

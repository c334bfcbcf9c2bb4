#!/usr/bin/env bash
# End-to-end drift benchmark (NOT part of the test suite):
#   mlrollout drift  vs  the seed pipeline (bench/seed_baseline.py)  vs  Evidently 0.7
#   (bench/evidently_baseline.py), on reference + current datasets of N rows x (10 numeric +
#   2 categorical) as Parquet and CSV, wall clock and peak RSS (/usr/bin/time), medians over
#   repetitions; then the compute-only floor per feature at 1M vs 1M (criterion: KS+PSI vs one
#   sort of the current sample).
#
#   bash bench/drift_compare.sh
#
# Knobs (environment): SIZES="100000 1000000"  FORMATS="parquet csv"  REPS=5
#   REPS_EVIDENTLY=3  CRITERION=1  MLROLLOUT_BIN=path (skip the release build)
#   BENCH_MANIFEST=path/to/Cargo.toml (crate to build and bench; default this repo)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MANIFEST="${BENCH_MANIFEST:-$ROOT/Cargo.toml}"
TARGET="${CARGO_TARGET_DIR:-$(dirname "$MANIFEST")/target}"
VENV="$ROOT/target/bench-venv"
DATA="${BENCH_DATA:-$ROOT/target/bench-data}"
SIZES="${SIZES:-100000 1000000}"
FORMATS="${FORMATS:-parquet csv}"
REPS="${REPS:-5}"
REPS_EVIDENTLY="${REPS_EVIDENTLY:-3}"
CRITERION="${CRITERION:-1}"

say() { printf '\n== %s\n' "$*" >&2; }
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

if [ ! -x /usr/bin/time ]; then
  say "installing Debian's time"
  apt-get update -qq && apt-get install -y -qq time >/dev/null
fi

if ! "$VENV/bin/python" -c 'import numpy, scipy, pyarrow, pandas, evidently' 2>/dev/null; then
  say "creating $VENV (numpy, scipy, pyarrow, evidently 0.7, pandas<3)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check numpy scipy pyarrow 'evidently==0.7.*' 'pandas<3'
fi
PY="$VENV/bin/python"

say "generating datasets in $DATA"
mkdir -p "$DATA"
# shellcheck disable=SC2086
"$PY" bench/generate.py "$DATA" $SIZES >&2

if [ -n "${MLROLLOUT_BIN:-}" ]; then
  BIN="$MLROLLOUT_BIN"
else
  say "building mlrollout (release)"
  cargo build -j1 --release --manifest-path "$MANIFEST" --bin mlrollout >&2
  BIN="$TARGET/release/mlrollout"
fi

RESULTS="$DATA/results.tsv"
: > "$RESULTS"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

# measure CASE TOOL REP CMD... : wall seconds, peak RSS (KiB) and CPU seconds (user + system)
# into $RESULTS
measure() {
  local case="$1" tool="$2" rep="$3"; shift 3
  /usr/bin/time -f '%e %M %U %S' -o "$OUT/time" "$@" > "$OUT/stdout" 2> "$OUT/stderr" || {
    echo "FAILED: $*" >&2; cat "$OUT/stderr" >&2; return 1; }
  read -r secs rss usr sys < "$OUT/time"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "$tool" "$rep" "$secs" "$rss" \
    "$(awk -v u="$usr" -v s="$sys" 'BEGIN { print u + s }')" >> "$RESULTS"
  if [ "$rep" = 1 ]; then
    case "$tool" in
      mlrollout) "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print("   mlrollout drifted:", [f["name"] for f in r["features"] if f["drifted"]])' "$OUT/stdout" >&2 ;;
      *) "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print("   %s drifted:" % sys.argv[2], r["drifted"], " in-process read %.2fs compute %.2fs import %.2fs" % (r["read_s"], r["compute_s"], r["import_s"]))' "$OUT/stdout" "$tool" >&2 ;;
    esac
  fi
}

for n in $SIZES; do
  for fmt in $FORMATS; do
    ref="$DATA/ref_$n.$fmt"; cur="$DATA/cur_$n.$fmt"; case="$n $fmt"
    say "$case: mlrollout x$REPS, seed x$REPS, evidently x$REPS_EVIDENTLY"
    for rep in $(seq 1 "$REPS"); do
      measure "$case" mlrollout "$rep" "$BIN" drift --reference "$ref" --current "$cur" --output json
    done
    "$BIN" drift --reference "$ref" --current "$cur" --output json --timing 2>&1 >/dev/null | sed 's/^/   /' >&2
    for rep in $(seq 1 "$REPS"); do
      measure "$case" seed "$rep" "$PY" bench/seed_baseline.py "$ref" "$cur"
    done
    for rep in $(seq 1 "$REPS_EVIDENTLY"); do
      measure "$case" evidently "$rep" "$PY" bench/evidently_baseline.py "$ref" "$cur"
    done
  done
done

CRIT="$OUT/criterion.txt"
: > "$CRIT"
if [ "$CRITERION" = 1 ]; then
  say "compute only, per feature, 1M vs 1M (criterion)"
  cargo bench -j1 --manifest-path "$MANIFEST" --bench drift -- '/1000000' > "$CRIT" 2>&1 || {
    echo "criterion failed" >&2; tail -20 "$CRIT" >&2; }
fi

say "summary"
echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM;" \
  "load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)."
echo "Repetitions: mlrollout and seed $REPS, Evidently $REPS_EVIDENTLY."
echo
"$PY" - "$RESULTS" "$CRIT" <<'PY'
import re, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
cases = []
data = {}
for case, tool, rep, secs, rss, cpu in rows:
    if case not in cases:
        cases.append(case)
    data.setdefault((case, tool), []).append((float(secs), int(rss), float(cpu)))
def med(case, tool, i):
    v = [x[i] for x in data.get((case, tool), [])]
    return statistics.median(v) if v else float("nan")
print("Wall clock (median), end to end (process start to exit, interpreter start-up and imports included):")
print()
print("| rows | format | mlrollout s | seed s | Evidently s | seed / mlrollout | Evidently / mlrollout | peak RSS MB mlrollout / seed / Evidently |")
print("|---:|---|---:|---:|---:|---:|---:|---|")
for case in cases:
    n, fmt = case.split()
    m, s, e = (med(case, t, 0) for t in ("mlrollout", "seed", "evidently"))
    rm, rs, re_ = (med(case, t, 1) / 1024 for t in ("mlrollout", "seed", "evidently"))
    print(f"| {int(n):,} | {fmt} | {m:.2f} | {s:.2f} | {e:.2f} | {s/m:.1f}x | {e/m:.1f}x | {rm:.0f} / {rs:.0f} / {re_:.0f} |")
print()
print("CPU time (user + system, median):")
print()
print("| rows | format | mlrollout s | seed s | Evidently s | seed / mlrollout | Evidently / mlrollout |")
print("|---:|---|---:|---:|---:|---:|---:|")
for case in cases:
    n, fmt = case.split()
    m, s, e = (med(case, t, 2) for t in ("mlrollout", "seed", "evidently"))
    print(f"| {int(n):,} | {fmt} | {m:.2f} | {s:.2f} | {e:.2f} | {s/m:.1f}x | {e/m:.1f}x |")
text = open(sys.argv[2]).read()
unit = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}
times = {}
for name, val, u in re.findall(r"(drift/\w+/\d+)\s+time:\s+\[\S+ \S+ (\S+) (\S+)", text):
    times[name] = float(val) * unit.get(u, float("nan"))
if times:
    print()
    print("compute only, one feature, 1M vs 1M rows (criterion median):")
    print()
    print("| statistic | ms | vs one sort |")
    print("|---|---:|---:|")
    floor = times.get("drift/sort/1000000")
    for k in ("sort", "ks", "psi", "ks_psi", "chi2"):
        t = times.get(f"drift/{k}/1000000")
        if t is not None:
            ratio = f"{t/floor:.2f}x" if floor else "-"
            print(f"| {k} | {t:.2f} | {ratio} |")
PY

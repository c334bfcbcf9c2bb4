#!/usr/bin/env bash
# Drift on data larger than memory (NOT part of the test suite): reference and current of
# ROWS rows x (10 numeric + 2 categorical) — 50M by default, about 2.5 GB of Parquet and
# 7 GB of CSV per side, generated into $BENCH_DATA (target/bench-data-large) and never
# committed — checked by `mlrollout drift --memory-limit $LIMIT`: wall clock and peak RSS
# (/usr/bin/time), and the features whose KS came from sketches with the largest bound; then
# the reference profiled once (`mlrollout drift profile`) and the check run from the profile.
#
#   bash bench/drift_large.sh              # ROWS=50000000 LIMIT=1GiB FORMATS="parquet csv"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROWS="${ROWS:-50000000}"
LIMIT="${LIMIT:-1GiB}"
FORMATS="${FORMATS:-parquet csv}"
DATA="${BENCH_DATA:-$ROOT/target/bench-data-large}"
VENV="$ROOT/target/bench-venv"

if [ ! -x /usr/bin/time ]; then
  apt-get update -qq && apt-get install -y -qq time >/dev/null
fi
if ! "$VENV/bin/python" -c 'import numpy, pyarrow' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check numpy pyarrow
fi
# shellcheck disable=SC2086
"$VENV/bin/python" bench/generate_large.py "$DATA" "$ROWS" $FORMATS >&2
if [ -n "${MLROLLOUT_BIN:-}" ]; then
  BIN="$MLROLLOUT_BIN"
else
  cargo build -j1 --release --bin mlrollout >&2
  BIN="$ROOT/target/release/mlrollout"
fi

echo "| rows | format | memory limit | wall s | peak RSS MiB | KS from sketches (largest bound) | drifted |"
echo "|---:|---|---|---:|---:|---|---|"
for fmt in $FORMATS; do
  out="$(mktemp)"
  /usr/bin/time -f '%e %M' -o "$out.time" "$BIN" drift --output json --memory-limit "$LIMIT" \
    --max-bytes 1TiB --reference "$DATA/ref_$ROWS.$fmt" --current "$DATA/cur_$ROWS.$fmt" > "$out"
  read -r secs kib < "$out.time"
  "$VENV/bin/python" - "$out" "$ROWS" "$fmt" "$LIMIT" "$secs" "$kib" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rows, fmt, limit, secs, kib = sys.argv[2:]
bounds = [f["statistic_error_bound"] for f in r["features"] if f.get("statistic_error_bound")]
sk = f"{len(bounds)} (±{max(bounds):.4f})" if bounds else "none"
drifted = ", ".join(f["name"] for f in r["features"] if f["drifted"])
print(f"| {int(rows):,} | {fmt} | {limit} | {float(secs):.1f} | {int(kib) / 1024:.0f} | {sk} | {drifted} |")
PY
  rm -f "$out" "$out.time"
done

# profile reuse: one pass over the reference, once; then checks read the profile
fmt="${FORMATS%% *}"
profile="$DATA/ref_$ROWS.$fmt.profile.json"
/usr/bin/time -f '%e %M' -o "$DATA/profile.time" "$BIN" drift profile --memory-limit "$LIMIT" \
  --max-bytes 1TiB --reference "$DATA/ref_$ROWS.$fmt" --out "$profile" 2>/dev/null
read -r psecs pkib < "$DATA/profile.time"
/usr/bin/time -f '%e %M' -o "$DATA/check.time" "$BIN" drift --output json --memory-limit "$LIMIT" \
  --max-bytes 1TiB --reference "$profile" --current "$DATA/cur_$ROWS.$fmt" > /dev/null
read -r csecs ckib < "$DATA/check.time"
rows="$("$VENV/bin/python" -c "print(f'{$ROWS:,}')")"
printf '| %s | %s | %s | profile once: %.1f | %s | profile of %s bytes | |\n' \
  "$rows" "$fmt" "$LIMIT" "$psecs" "$((pkib / 1024))" "$(stat -c %s "$profile")"
printf '| %s | %s | %s | check from the profile: %.1f | %s | | |\n' \
  "$rows" "$fmt" "$LIMIT" "$csecs" "$((ckib / 1024))"
rm -f "$DATA/profile.time" "$DATA/check.time"

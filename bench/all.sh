#!/usr/bin/env bash
# Every number of the README's Performance section, in one run:
#   drift end to end vs the seed's Python and Evidently, compute floor (criterion),
#   operator scale (1,000 ModelDeployments), rollback reaction (real Prometheus).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tests/harness/install.sh >/dev/null          # Prometheus + the test venv
# shellcheck disable=SC1091
. target/harness.env
cargo build --release
MLROLLOUT_BIN="$PWD/target/release/mlrollout" bash bench/drift_compare.sh
cargo bench --bench operator_scale
cargo bench --bench rollback_reaction

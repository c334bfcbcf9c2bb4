#!/usr/bin/env bash
# Every number of the README's Performance section, in one run:
#   drift end to end vs the seed's Python and Evidently, compute floor (criterion),
#   operator scale (ModelDeployments on the real control plane), rollback reaction (real
#   Prometheus, real control plane), the data-plane proxy's overhead (nginx direct vs through
#   `mlrollout proxy` at 2,000 req/s from vegeta).
# The two cluster benches share one control plane from tests/harness/cluster.sh, started here
# and stopped on exit; set MLROLLOUT_TEST_CLUSTER to use a running one instead. Give the
# benches the machine: a cluster shared with a running test suite slows both.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tests/harness/install.sh >/dev/null          # Prometheus + the test venv
# shellcheck disable=SC1091
. target/harness.env
cargo build --release
MLROLLOUT_BIN="$PWD/target/release/mlrollout" bash bench/drift_compare.sh
MLROLLOUT_BIN="$PWD/target/release/mlrollout" bash bench/drift_large.sh
MLROLLOUT_BIN="$PWD/target/release/mlrollout" bash bench/proxy_overhead.sh
bash bench/judge_simulation.sh
if [ -z "${MLROLLOUT_TEST_CLUSTER:-}" ]; then
    cluster_dir="$PWD/target/bench-cluster"
    trap 'bash tests/harness/cluster.sh down --dir "$cluster_dir" 2>/dev/null || true' EXIT
    bash tests/harness/cluster.sh up --control-plane-only --dir "$cluster_dir" --watch-pid $$ >/dev/null
    export MLROLLOUT_TEST_CLUSTER="$cluster_dir"
fi
MLROLLOUT_SCALE_N="${MLROLLOUT_SCALE_N:-1000}" cargo bench --bench operator_scale
cargo bench --bench rollback_reaction

#!/usr/bin/env bash
# The whole mlrollout test suite, from a clean clone on a fresh machine:
# installs what the tests need (Python venv with MLflow & scipy, Debian's Prometheus and
# Chromium), builds
# the real Kubernetes control plane from pinned Go modules (cached under ~/.cache/mlrollout)
# and starts one for the whole suite, checks formatting and lints, then runs every test
# target (unit, real API server, real MLflow, real Prometheus) with the `harness` feature on,
# so that none is left out (Cargo.toml [features]), then runs the fuzz targets briefly.
# Each stage prints its cost.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

stage_started=$SECONDS
stage() {
    if [ -n "${stage_name:-}" ]; then
        echo "    (${stage_name}: $(( SECONDS - stage_started ))s)"
    fi
    stage_name="$1"
    stage_started=$SECONDS
    echo "==> $1"
}

stage "installing test dependencies (tests/harness/install.sh)"
bash tests/harness/install.sh >/dev/null
# shellcheck disable=SC1091
. target/harness.env

stage "building and starting the control plane (tests/harness/cluster.sh)"
cluster_dir="$PWD/target/test-cluster"
trap 'bash tests/harness/cluster.sh down --dir "$cluster_dir" 2>/dev/null || true' EXIT
bash tests/harness/cluster.sh up --control-plane-only --dir "$cluster_dir" --watch-pid $$ >/dev/null
export MLROLLOUT_TEST_CLUSTER="$cluster_dir"

stage "cargo fmt --check"
cargo fmt --check

# --all-features: the tests behind the `harness` feature are linted too.
stage "cargo clippy --all-targets --all-features -- -D warnings"
cargo clippy --all-targets --all-features --quiet -- -D warnings

stage "cargo test --all-targets --features harness"
cargo test --all-targets --features harness --no-fail-fast

# Each cargo-fuzz target (fuzz/) for a short while from its committed corpus; installs
# cargo-fuzz under ~/.cache/mlrollout when missing, builds with stable rustc.
stage "fuzz targets, 20 s each (tests/fuzz.sh)"
MLROLLOUT_FUZZ_SECONDS=20 bash tests/fuzz.sh
stage "done"
echo "    total: ${SECONDS}s"

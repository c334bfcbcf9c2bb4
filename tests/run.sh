#!/usr/bin/env bash
# The whole mlrollout test suite, from a clean clone on a fresh machine:
# installs what the tests need (Python venv with MLflow & scipy, Debian's Prometheus),
# checks formatting and lints, then runs every test target (unit, in-memory API,
# real MLflow, real Prometheus; the real-cluster e2e suite is compiled and runs only
# when MLROLLOUT_E2E_KUBECONFIG is set).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "==> installing test dependencies (tests/harness/install.sh)"
bash tests/harness/install.sh >/dev/null
# shellcheck disable=SC1091
. target/harness.env

echo "==> cargo fmt --check"
cargo fmt --check

echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

echo "==> cargo test --all-targets"
cargo test --all-targets

#!/usr/bin/env bash
# Install the external systems the mlrollout integration tests run for real:
#   - a Python venv with MLflow 3.x and the ML stack (tests/harness/requirements.txt)
#   - Prometheus (Debian package)
#   - Chromium and a font (Debian packages), for screenshots of the drift report
#   - umoci and crun (Debian packages): tests/image.rs builds the operator image without a
#     Docker engine (tests/harness/image.sh) and runs it
#   - s3s-fs, an S3-compatible server (crates.io, tests/harness/s3server/build.sh; cached
#     under ~/.cache/mlrollout): tests/object_storage.rs and the s3:// CLI tests
#
# Idempotent: pip runs only when requirements.txt changed (hash stamp in the
# venv); apt runs only when `prometheus`, `chromium`, `umoci` or `crun` is not on PATH.
#
# Output: progress goes to stderr; stdout carries only `export` lines, and the
# same lines are written to <repo>/target/harness.env. Either of these works:
#   eval "$(bash tests/harness/install.sh)"
#   bash tests/harness/install.sh && . target/harness.env
#
# Env:
#   MLROLLOUT_PYENV   venv location (default: <repo>/target/pyenv)
#   PYTHON            interpreter used to create the venv (default: python3)
set -euo pipefail

log() { printf 'install.sh: %s\n' "$*" >&2; }

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$script_dir/../.." && pwd)"
req="$script_dir/requirements.txt"
pyenv="${MLROLLOUT_PYENV:-$repo/target/pyenv}"
python_bin="${PYTHON:-python3}"

# One install at a time (parallel test binaries or a person's `cluster.sh up` may all ask).
mkdir -p "$repo/target"
exec 9>"$repo/target/.install.lock"
flock 9

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "need root (or sudo) to run: $*"
        return 1
    fi
}

apt_updated=0
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        as_root apt-get update >&2
        apt_updated=1
    fi
    log "apt-get install $*"
    as_root apt-get install -y --no-install-recommends "$@" >&2
}

# ---------------------------------------------------------------- Python venv
if [ ! -x "$pyenv/bin/python" ]; then
    log "creating venv at $pyenv"
    mkdir -p "$(dirname "$pyenv")"
    if ! "$python_bin" -m venv "$pyenv" >&2; then
        # Debian's own python3 needs python3-venv for ensurepip.
        log "venv creation failed; installing python3-venv and retrying"
        rm -rf "$pyenv"
        apt_install python3-venv
        "$python_bin" -m venv "$pyenv" >&2
    fi
fi

want_hash="$( (cat "$req"; "$pyenv/bin/python" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
stamp="$pyenv/.mlrollout-requirements.sha256"
have_hash="$(cat "$stamp" 2>/dev/null || true)"
if [ "$want_hash" != "$have_hash" ]; then
    log "pip install -r $req (takes a few minutes the first time)"
    start=$(date +%s)
    "$pyenv/bin/python" -m pip install --disable-pip-version-check --quiet --upgrade pip >&2
    "$pyenv/bin/python" -m pip install --disable-pip-version-check -r "$req" >&2
    printf '%s\n' "$want_hash" >"$stamp"
    log "pip done in $(( $(date +%s) - start ))s"
else
    log "python deps up to date ($pyenv)"
fi

if [ ! -x "$pyenv/bin/mlflow" ]; then
    log "error: $pyenv/bin/mlflow missing after install"
    exit 1
fi

# ----------------------------------------------------------------- Prometheus
if ! command -v prometheus >/dev/null 2>&1; then
    # The Debian package tries to start a service; a policy-rc.d may block
    # that (fine: tests start their own instance on a free port).
    apt_install prometheus
fi
prom_bin="$(command -v prometheus || true)"
if [ -z "$prom_bin" ]; then
    log "error: prometheus not on PATH after install"
    exit 1
fi

# ------------------------------------------------------------------- Chromium
# Headless, for tests/drift_report.rs (screenshots of `mlrollout drift --output html`); the
# DejaVu fonts give the page's text the same metrics on every machine.
if ! command -v chromium >/dev/null 2>&1; then
    apt_install chromium fonts-dejavu-core
fi
chromium_bin="$(command -v chromium || true)"
if [ -z "$chromium_bin" ]; then
    log "error: chromium not on PATH after install"
    exit 1
fi

# -------------------------------------------------------------------- umoci, crun
# The operator image without Docker: umoci builds an OCI image layout and unpacks it into a
# runtime bundle; crun runs it (tests/harness/image.sh, tests/harness/crun.sh, tests/image.rs).
missing=()
for tool in umoci crun; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
fi
for tool in umoci crun; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        log "error: $tool not on PATH after install"
        exit 1
    fi
done

# ---------------------------------------------------------------------- s3s-fs
# A real S3-compatible server for the object-storage tests, built from crates.io (about
# 3.5 minutes cold on 2 cores, then cached outside the work tree).
s3_server_bin="$(bash "$script_dir/s3server/build.sh")"
if [ ! -x "$s3_server_bin" ]; then
    log "error: s3s-fs missing after tests/harness/s3server/build.sh"
    exit 1
fi

# ------------------------------------------------------------------- env file
env_file="$repo/target/harness.env"
mkdir -p "$(dirname "$env_file")"
exports="$(cat <<ENV
export MLROLLOUT_PYENV='$pyenv'
export MLROLLOUT_PYTHON='$pyenv/bin/python'
export MLROLLOUT_MLFLOW_BIN='$pyenv/bin/mlflow'
export MLROLLOUT_PROMETHEUS_BIN='$prom_bin'
export MLROLLOUT_CHROMIUM_BIN='$chromium_bin'
export MLROLLOUT_S3_SERVER_BIN='$s3_server_bin'
ENV
)"
printf '%s\n' "$exports" >"$env_file"
log "wrote $env_file"
printf '%s\n' "$exports"

#!/usr/bin/env bash
# Build statuscheck (kstatus and Argo CD health.lua, as GitOps tools judge an object) from the
# Go modules pinned in this folder's go.mod/go.sum (sigs.k8s.io/cli-utils, gopher-lua).
#
# The binary is cached outside the work tree, keyed by the hash of go.mod, go.sum, main.go and
# this script, so a second run costs nothing:
#   ${MLROLLOUT_CACHE:-~/.cache/mlrollout}/statuscheck/<key>/statuscheck
# Prints the binary's path on stdout; progress goes to stderr. Module downloads go to the
# default GOMODCACHE.
set -euo pipefail

log() { printf 'statuscheck/build.sh: %s\n' "$*" >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" "$here/build.sh" | sha256sum | cut -c1-16)"
dir="${MLROLLOUT_CACHE:-$HOME/.cache/mlrollout}/statuscheck/$key"
bin="$dir/statuscheck"

if [ -x "$bin" ]; then
    log "cached: $bin"
    printf '%s\n' "$bin"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    log "error: go not found on PATH (statuscheck is built from Go modules)"
    exit 1
fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
mkdir -p "$dir"
start=$(date +%s)
# Concurrent builds (parallel test binaries) each write their own file; the rename is atomic.
tmp="$bin.tmp.$$"
(cd "$here" && go build -trimpath -ldflags "-s -w" -o "$tmp" .) >&2
mv "$tmp" "$bin"
log "built in $(( $(date +%s) - start ))s: $bin"
printf '%s\n' "$bin"

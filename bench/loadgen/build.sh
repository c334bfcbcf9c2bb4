#!/usr/bin/env bash
# Build vegeta (constant-rate HTTP load generator) from the module pinned in this folder's
# go.mod/go.sum, cached outside the work tree keyed by their hash:
#   ${MLROLLOUT_CACHE:-~/.cache/mlrollout}/vegeta/<key>/vegeta
# Prints the binary's path on stdout; progress goes to stderr.
set -euo pipefail

log() { printf 'loadgen/build.sh: %s\n' "$*" >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-16)"
dir="${MLROLLOUT_CACHE:-$HOME/.cache/mlrollout}/vegeta/$key"
bin="$dir/vegeta"
if [ -x "$bin" ]; then
    printf '%s\n' "$bin"
    exit 0
fi
command -v go >/dev/null 2>&1 || { log "error: go not found on PATH"; exit 1; }
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
mkdir -p "$dir"
start=$(date +%s)
tmp="$bin.tmp.$$"
(cd "$here" && go build -trimpath -ldflags "-s -w" -o "$tmp" github.com/tsenart/vegeta/v12) >&2
mv "$tmp" "$bin"
log "built in $(( $(date +%s) - start ))s: $bin"
printf '%s\n' "$bin"

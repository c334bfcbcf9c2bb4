#!/usr/bin/env bash
# Build the S3-compatible server the object-storage tests run against: s3s-fs (crates.io), a
# real HTTP server speaking the S3 protocol (SigV4 authentication with one access key, buckets
# as directories of a root folder), pinned to one version and built with the Cargo.lock it
# was published with (`cargo install --locked`), so every machine builds the same thing.
#
# The binary is cached outside the work tree, keyed by the version and the hash of this
# script, so a second run costs nothing:
#   ${MLROLLOUT_CACHE:-~/.cache/mlrollout}/s3s-fs/<version>-<key>/bin/s3s-fs
# Prints the binary's path on stdout; progress goes to stderr. Crate downloads go to the
# default CARGO_HOME; the build directory is a temporary one (never the project's target/).
set -euo pipefail

log() { printf 's3server/build.sh: %s\n' "$*" >&2; }

version="0.14.1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
key="$(sha256sum "$here/build.sh" | cut -c1-16)"
dir="${MLROLLOUT_CACHE:-$HOME/.cache/mlrollout}/s3s-fs/$version-$key"
bin="$dir/bin/s3s-fs"

if [ -x "$bin" ]; then
    log "cached: $bin"
    printf '%s\n' "$bin"
    exit 0
fi
if ! command -v cargo >/dev/null 2>&1; then
    log "error: cargo not found on PATH (s3s-fs is built from crates.io)"
    exit 1
fi

mkdir -p "$(dirname "$dir")"
# One build at a time (parallel test binaries may all ask); the second finds the cache.
exec 8>"$dir.lock"
flock 8
if [ -x "$bin" ]; then
    log "cached: $bin"
    printf '%s\n' "$bin"
    exit 0
fi

start=$(date +%s)
tmp="$(mktemp -d "$dir.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
log "cargo install s3s-fs $version (about 3 minutes on 2 cores the first time)"
# CARGO_TARGET_DIR and RUSTFLAGS of the caller (a test run, coverage) are not this build's.
env -u CARGO_TARGET_DIR -u RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS \
    cargo install s3s-fs --version "=$version" --features binary --locked --quiet \
    --root "$tmp/root" --target-dir "$tmp/target" >&2
"$tmp/root/bin/s3s-fs" --version >&2
rm -rf "$dir"
mkdir -p "$dir/bin"
mv "$tmp/root/bin/s3s-fs" "$bin"
log "built in $(( $(date +%s) - start ))s: $bin"
printf '%s\n' "$bin"

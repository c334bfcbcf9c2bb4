#!/usr/bin/env bash
# Build the real Kubernetes control plane the integration tests run on, from the Go modules
# pinned in this folder's go.mod/go.sum: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and kubectl (and kwok from ./kwok, when it builds).
#
# Binaries are cached outside the work tree, keyed by the pinned versions and the hash of
# go.mod/go.sum, so a second run (or a second clone on the same machine) costs nothing:
#   ${MLROLLOUT_CACHE:-~/.cache/mlrollout}/controlplane/<key>/bin
# Prints the bin directory on stdout; progress goes to stderr.
set -euo pipefail

log() { printf 'controlplane/build.sh: %s\n' "$*" >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
k8s_version="$(sed -n 's#^\tk8s.io/kubernetes v\([0-9.]*\).*$#\1#p' "$here/go.mod")"
key="k8s-${k8s_version}-$(cat "$here/go.mod" "$here/go.sum" "$here/kwok/go.mod" "$here/kwok/go.sum" "$here/build.sh" | sha256sum | cut -c1-12)"
cache="${MLROLLOUT_CACHE:-$HOME/.cache/mlrollout}/controlplane/$key"
bin="$cache/bin"
needed=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)

have_all() {
    local b
    for b in "${needed[@]}"; do [ -x "$bin/$b" ] || return 1; done
}

if have_all; then
    log "cached: $bin"
    printf '%s\n' "$bin"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    log "error: go not found on PATH (the harness builds Kubernetes from Go modules)"
    exit 1
fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
mkdir -p "$bin.partial"
minor="${k8s_version#1.}"; minor="${minor%%.*}"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v${k8s_version} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor} -X k8s.io/component-base/version.gitTreeState=clean"
# The binaries are statically linked and built one after another: on 2 cores the Go
# compiler already uses both, and parallel links would only add memory pressure.
start=$(date +%s)
cd "$here"
for tool in go.etcd.io/etcd/server/v3:etcd \
            k8s.io/kubernetes/cmd/kube-apiserver:kube-apiserver \
            k8s.io/kubernetes/cmd/kube-controller-manager:kube-controller-manager \
            k8s.io/kubernetes/cmd/kube-scheduler:kube-scheduler \
            k8s.io/kubernetes/cmd/kubectl:kubectl; do
    pkg="${tool%%:*}"; name="${tool##*:}"
    if [ -x "$bin.partial/$name" ]; then continue; fi
    log "go build $pkg ($(( $(date +%s) - start ))s so far)"
    go build -trimpath -ldflags "$ldflags" -o "$bin.partial/$name.tmp" "$pkg" >&2
    mv "$bin.partial/$name.tmp" "$bin.partial/$name"
done

# kwok lets Deployments get ready Pods and Jobs complete through the real controllers. Its own
# module (it pins client libraries of its own); optional: the harness works without it.
if [ ! -x "$bin.partial/kwok" ]; then
    log "go build sigs.k8s.io/kwok/cmd/kwok ($(( $(date +%s) - start ))s so far)"
    if (cd "$here/kwok" && go build -trimpath -ldflags "-s -w" -o "$bin.partial/kwok.tmp" sigs.k8s.io/kwok/cmd/kwok >&2); then
        mv "$bin.partial/kwok.tmp" "$bin.partial/kwok"
    else
        log "warning: kwok did not build; tests set Pod/Job status themselves"
    fi
fi

rm -rf "$bin"
mv "$bin.partial" "$bin"
log "built in $(( $(date +%s) - start ))s: $bin"
printf '%s\n' "$bin"

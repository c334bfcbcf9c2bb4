#!/usr/bin/env bash
# `crun ARGS...`, also on hosts with hybrid cgroups (cgroup v1 controllers plus a cgroup2
# hierarchy at /sys/fs/cgroup/unified that has controllers of its own), such as the machines the
# tests run on here. crun refuses every container there: "cgroups in hybrid mode not supported,
# drop all controllers from cgroupv2". This runs crun in a private mount namespace without
# /sys/fs/cgroup/unified, where crun sees plain cgroup v1 and puts the container in v1 cgroups;
# the host's mounts are untouched. Elsewhere it is plain `crun`.
#
#   bash tests/harness/crun.sh run --bundle BUNDLE NAME
#   bash tests/harness/crun.sh kill NAME KILL; bash tests/harness/crun.sh delete --force NAME
set -euo pipefail

command -v crun >/dev/null 2>&1 || {
    echo "crun.sh: crun is not on PATH (bash tests/harness/install.sh installs it)" >&2
    exit 127
}

unified=/sys/fs/cgroup/unified
if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = tmpfs ] \
    && [ "$(stat -fc %T "$unified" 2>/dev/null)" = cgroup2fs ] \
    && [ -n "$(cat "$unified/cgroup.controllers" 2>/dev/null)" ]; then
    exec unshare --mount --propagation private -- \
        sh -c 'umount "$0" && exec crun "$@"' "$unified" "$@"
fi
exec crun "$@"

#!/usr/bin/env bash
# The operator image without a Docker engine: an OCI image layout built with umoci (no daemon,
# no registry, no base image pulled) from an mlrollout binary built here.
#
#   bash tests/harness/image.sh BINARY OUT_DIR
#
# OUT_DIR becomes an OCI image layout (`oci-layout`, `index.json`, `blobs/`) holding one image
# tagged with the binary's version (`mlrollout --version` → `0.1.0`). Its one layer is a base
# made here, not pulled:
#   /usr/local/bin/mlrollout            the binary (root-owned, 0555)
#   the shared libraries `ldd BINARY` lists, and the loader, at the paths the binary asks for
#   /etc/passwd, /etc/group             root and nonroot (65532), as distroless has them
#   /etc/nsswitch.conf                  `hosts: files dns` for glibc's resolver
#   /etc/ssl/certs/ca-certificates.crt  the host's CA bundle (rustls reads the system roots)
#   /home/nonroot                       0700, owned by 65532 (HOME of nonroot)
#   /tmp                                1777, empty
# No shell, no package manager. Config: user 65532:65532, entrypoint /usr/local/bin/mlrollout,
# cmd `run`, port 8080/tcp, OCI labels with the version.
#
# Run it without Docker: `umoci unpack --image OUT_DIR:VERSION BUNDLE` gives an OCI runtime
# bundle (rootfs + config.json) that `crun run --bundle BUNDLE NAME` starts (tests/image.rs).
# Copy it to a registry with `skopeo copy oci:OUT_DIR:VERSION docker://...`.
#
# Needs umoci (Debian package; tests/harness/install.sh installs it) and ldd. Run as root, so
# that the layer's files are owned by root (umoci records the owners it sees).
set -euo pipefail

log() { printf 'image.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$#" -eq 2 ] || die "usage: image.sh BINARY OUT_DIR"
binary="$1"
out="$2"
[ -x "$binary" ] || die "$binary is not an executable file"
command -v umoci >/dev/null 2>&1 || die "umoci is not on PATH (bash tests/harness/install.sh installs it)"
command -v ldd >/dev/null 2>&1 || die "ldd is not on PATH"
[ "$(id -u)" -eq 0 ] || die "run as root: the layer must hold root-owned files (umoci records the owners it sees)"

# `mlrollout 0.1.0` → `0.1.0`
version="$("$binary" --version | awk 'NR == 1 { print $2 }')"
[[ "$version" =~ ^[0-9A-Za-z._+-]+$ ]] || die "cannot read a version from \`$binary --version\`"

ca_bundle=/etc/ssl/certs/ca-certificates.crt
[ -s "$ca_bundle" ] || die "$ca_bundle is missing (Debian package ca-certificates)"

tag="$version"
image="$out:$tag"
rm -rf -- "$out"
umoci init --layout "$out"
umoci new --image "$image"

# The layer is made with `umoci unpack` (an empty bundle) + `umoci repack`: umoci 0.4.7's
# `insert` writes a layer whose tar stream GNU tar rejects ("Unexpected EOF in archive").
staging="$(mktemp -d "${TMPDIR:-/tmp}/mlrollout-image.XXXXXX")"
trap 'rm -rf -- "$staging"' EXIT
bundle="$staging/bundle"
umoci unpack --image "$image" "$bundle" >/dev/null
rootfs="$bundle/rootfs"
mkdir -p "$rootfs"/{usr/local/bin,etc/ssl/certs,home,tmp}

install -m 0555 "$binary" "$rootfs/usr/local/bin/mlrollout"

# The shared libraries and the loader, each at the path the binary resolves it to; symlinks are
# followed so the file itself is copied under the name that is asked for.
#   libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)      a library
#   /lib64/ld-linux-x86-64.so.2 (0x...)                       the loader
#   linux-vdso.so.1 (0x...)                                   the kernel's, no file
ldd_out="$(ldd "$binary")" || die "ldd $binary failed: $ldd_out"
libs=()
while read -r line; do
    case "$line" in
        *"=> not found"*) die "ldd: $line" ;;
        *"=> /"*) lib="${line#*=> }"; libs+=("${lib%% (*}") ;;
        /*) libs+=("${line%% (*}") ;;
    esac
done <<<"$ldd_out"
for lib in "${libs[@]}"; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
    chmod 0755 "$rootfs$lib"
done
log "libraries: ${libs[*]:-none (static binary)}"

cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
EOF
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
install -m 0444 "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/etc/nsswitch.conf"
chmod 1777 "$rootfs/tmp"
chown -R 0:0 "$rootfs"
chmod 0755 "$rootfs"
install -d -m 0700 -o 65532 -g 65532 "$rootfs/home/nonroot"

umoci repack --image "$image" --history.created_by "tests/harness/image.sh" "$bundle"
umoci config --image "$image" \
    --config.user 65532:65532 \
    --config.entrypoint /usr/local/bin/mlrollout \
    --config.cmd run \
    --config.exposedports 8080/tcp \
    --config.workingdir / \
    --config.env PATH=/usr/local/bin \
    --config.label org.opencontainers.image.title=mlrollout \
    --config.label "org.opencontainers.image.version=$version" \
    --config.label "org.opencontainers.image.description=Kubernetes operator that keeps machine-learning models healthy after they ship" \
    --config.label org.opencontainers.image.licenses=Apache-2.0 \
    --history.created_by "umoci config (tests/harness/image.sh)"
umoci gc --layout "$out"
log "built $image ($(du -sh "$out" | cut -f1))"
printf '%s\n' "$tag"

#!/usr/bin/env bash
# Build the mindmesh node image from local files only: no base image is pulled (none can be,
# without a registry). The image is `FROM scratch` (deploy/Dockerfile) plus a root file system
# staged here: the given binary, the shared libraries it links (as `ldd` lists them, with the
# dynamic loader), /etc/passwd and /etc/group for the unprivileged user the node runs as,
# /etc/nsswitch.conf so glibc resolves names through /etc/hosts and DNS, the host's CA
# certificates (the node's HTTP clients need roots to start), an empty /tmp and
# /data (the node's data dir). The demo personas are the node's own binary
# (`mindmesh demo-persona`), so nothing else is needed.
#
# usage: deploy/build-image.sh BINARY [TAG]     (TAG default: mindmesh:local)
# A release build makes a smaller image: cargo build --release && deploy/build-image.sh target/release/mindmesh
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 || $1 == -h || $1 == --help ]]; then
    echo "usage: $0 BINARY [TAG]" >&2
    exit 2
fi
binary=$1
tag=${2:-mindmesh:local}
here=$(cd "$(dirname "$0")" && pwd)
# the node's user and group inside the image (no name clash with a host user matters: the
# image has only these)
uid=10001

[[ -x $binary ]] || { echo "$binary: not an executable" >&2; exit 1; }
command -v ldd >/dev/null || { echo "ldd is required to find the binary's libraries" >&2; exit 1; }
command -v docker >/dev/null || { echo "docker is required" >&2; exit 1; }

stage=$(mktemp -d "${TMPDIR:-/tmp}/mindmesh-image.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/rootfs
# owned/ is copied with the node user's ownership (deploy/Dockerfile): /data itself must be
# its, so a named volume mounted there starts writable by the node
mkdir -p "$root/etc" "$root/tmp" "$root/etc/mindmesh" "$stage/owned/data"
chmod 1777 "$root/tmp"
chmod 0755 "$stage/owned/data"

cp "$binary" "$root/mindmesh"
chmod 0755 "$root/mindmesh"

# Every library at the path the loader will look for it: `ldd` prints `name => /path (addr)`
# for libraries and `/path (addr)` for the loader itself; the vDSO has no file.
# A static binary (a musl build) has none: ldd says so and fails.
if linked=$(ldd "$binary" 2>&1); then
    if grep -q "not found" <<<"$linked"; then
        echo "$binary links a library that is not installed:" >&2
        echo "$linked" >&2
        exit 1
    fi
    libs=$(awk '
        $2 == "=>" && $3 ~ /^\// { print $3; next }
        $1 ~ /^\// { print $1 }
    ' <<<"$linked")
elif grep -q -e "not a dynamic executable" -e "statically linked" <<<"$linked"; then
    libs=""
else
    echo "ldd cannot read $binary: $linked" >&2
    exit 1
fi
for lib in $libs; do
    mkdir -p "$root$(dirname "$lib")"
    # -L: the file itself, not a symlink pointing at a path the image does not have
    cp -L "$lib" "$root$lib"
done
if [[ -z $libs ]]; then
    echo "note: $binary links no shared library (static): only the binary is copied"
fi

cat > "$root/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/sbin/nologin
mindmesh:x:$uid:$uid:mindmesh node:/data:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<GROUP
root:x:0:
mindmesh:x:$uid:
nogroup:x:65534:
GROUP
# glibc's files and dns sources are built into libc.so.6 since 2.34: nothing else to copy
printf 'hosts: files dns\npasswd: files\ngroup: files\n' > "$root/etc/nsswitch.conf"

# The node's HTTP clients (health probes, forwarding, the LLM analyst) use rustls with the
# system's roots and refuse to start without any: take the host's bundle.
ca_bundle=""
for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
    if [[ -f $f ]]; then ca_bundle=$f; break; fi
done
[[ -n $ca_bundle ]] || { echo "no CA certificate bundle on this host (install ca-certificates)" >&2; exit 1; }
mkdir -p "$root/etc/ssl/certs"
cp -L "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"

cp "$here/Dockerfile" "$stage/Dockerfile"
echo "building $tag from $binary ($(du -sh "$root" | cut -f1) staged: binary and $(wc -w <<< "$libs") libraries)"
docker build --quiet --label "io.mindmesh.image=node" -t "$tag" "$stage" >/dev/null
echo "built $tag"

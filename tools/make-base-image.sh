#!/usr/bin/env bash
# Make a local Python base image (Debian bookworm + the distribution's python3 and
# python3-venv) with debootstrap, and import it into containers-storage, where
# buildah and podman find it. It stands in for python:3.11-slim-bookworm on machines
# that reach no container registry: the image tests build every service on it.
# (`podman import` would do as well; this needs buildah only.)
#
# Usage: tools/make-base-image.sh            prints the image reference, e.g.
#        localhost/booking-base:bookworm-py3-1a2b3c4d5e6f
# The tag carries a hash of this script, so a second run reuses the image and an
# edit here makes a new one. Needs root, debootstrap and buildah.
# DEBIAN_MIRROR overrides the mirror (default http://deb.debian.org/debian).
set -euo pipefail

NAME="${BASE_IMAGE_NAME:-localhost/booking-base}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
HASH="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)"
IMAGE="${NAME}:${SUITE}-py3-${HASH}"

exists() { buildah inspect --type image "$IMAGE" >/dev/null 2>&1; }

# One builder at a time: a second caller waits, then finds the image made.
exec 9>"/var/tmp/booking-base-${HASH}.lock"
flock 9
if exists; then
    echo "$IMAGE"
    exit 0
fi

work="$(mktemp -d /var/tmp/booking-base.XXXXXX)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"

echo "making $IMAGE with debootstrap ($MIRROR)" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

# The same apt sources as Debian's own images, so Dockerfiles can apt-get install.
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: ${MIRROR}
Suites: ${SUITE} ${SUITE}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: ${SUITE}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES

# Slim it the way Debian's slim images are: no package lists, caches, docs or man pages.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/*
find "$root/usr/lib/python3" "$root/usr/lib/python3.11" -name __pycache__ -prune -exec rm -rf {} + 2>/dev/null || true

# Import the tree as a one-layer image (what `podman import` does, with buildah alone).
tar --numeric-owner --xattrs -C "$root" -cf "$work/rootfs.tar" .
ctr="$(buildah from --quiet scratch)"
trap 'buildah rm "$ctr" >/dev/null 2>&1; rm -rf "$work"' EXIT
buildah add --quiet "$ctr" "$work/rootfs.tar" / >/dev/null
buildah config --env LANG=C.UTF-8 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd '["python3"]' --created-by "tools/make-base-image.sh ($SUITE, $MIRROR)" "$ctr"
buildah commit --quiet --rm "$ctr" "$IMAGE" >/dev/null
trap 'rm -rf "$work"' EXIT
exists
echo "$IMAGE"

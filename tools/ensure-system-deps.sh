#!/usr/bin/env bash
# Make sure this machine has the system packages the platform needs, before anything else runs.
#
#   tools/ensure-system-deps.sh up     what `make up` needs: Pango, HarfBuzz's subsetter and a font
#                                      (WeasyPrint renders the invoices), python3-venv, make
#   tools/ensure-system-deps.sh test   all of that, plus what `make test` needs: buildah and
#                                      debootstrap (image tests), promtool (package prometheus:
#                                      PromQL and alert tests), chromium (web page tests)
#
# Why a script and not a README line: a test run that dies after ten minutes because promtool
# is missing is worse than one that stops at once. So each need is checked (a command on PATH,
# a shared library known to ldconfig, or a file), and then
#   - nothing missing: exit 0, silently;
#   - missing and root: one `apt-get update`, then `apt-get install` of only the missing packages;
#   - missing and not root: print the one command to run and exit 1, before any test starts.
# This is the only list of system packages: .ci/run calls this script too.
set -euo pipefail

group=${1:-test}
case $group in up|test) ;; *) echo "usage: $0 [up|test]" >&2; exit 64 ;; esac

if [ "$(uname -s)" != Linux ]; then
    echo "This platform runs on Linux only (the local runner uses Linux process controls;" \
         "WeasyPrint, buildah and debootstrap come from Debian packages). Found: $(uname -s)." >&2
    exit 1
fi

PYTHON=${PYTHON:-python3}

# kind|what|Debian package. kind: cmd (on PATH), lib (ldconfig -p), file (exists),
# py (a module the Python that bootstraps uv must have).
needs_up=(
    "cmd|make|make"
    "py|ensurepip|python3-venv"
    "lib|libpango-1.0.so.0|libpango-1.0-0"
    "lib|libpangoft2-1.0.so.0|libpangoft2-1.0-0"
    "lib|libharfbuzz-subset.so.0|libharfbuzz-subset0"
    "file|/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf|fonts-dejavu-core"
)
needs_test=(
    "cmd|buildah|buildah"
    "cmd|debootstrap|debootstrap"
    "cmd|promtool|prometheus"
    "cmd|chromium|chromium"
)
needs=("${needs_up[@]}")
[ "$group" = test ] && needs+=("${needs_test[@]}")

ldcache=$( (ldconfig -p || /sbin/ldconfig -p) 2>/dev/null || true)

present() {  # kind what
    case $1 in
        cmd) command -v "$2" >/dev/null 2>&1 || [ -x "/usr/sbin/$2" ] || [ -x "/sbin/$2" ] ;;
        lib) awk -v lib="$2" '$1 == lib {found = 1} END {exit !found}' <<<"$ldcache" ;;
        file) [ -e "$2" ] ;;
        py) "$PYTHON" -c "import $2" >/dev/null 2>&1 ;;
    esac
}

missing_packages() {
    local need kind what pkg
    for need in "${needs[@]}"; do
        IFS='|' read -r kind what pkg <<<"$need"
        present "$kind" "$what" || echo "$pkg"
    done
}

if ! command -v "$PYTHON" >/dev/null 2>&1 \
        || ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "Python 3.11 or newer is needed as \`$PYTHON\` (set PYTHON=/path/to/python3.11 to choose one)." >&2
    exit 1
fi

mapfile -t missing < <(missing_packages)
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "Missing system packages (Debian names): ${missing[*]}." >&2
    echo "There is no apt-get here: install their equivalents with your package manager, then run again." >&2
    exit 1
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "Missing system packages: ${missing[*]}. Install them, then run again:" >&2
    echo "sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}"
    exit 1
fi

echo "Installing missing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

ldcache=$( (ldconfig -p || /sbin/ldconfig -p) 2>/dev/null || true)
mapfile -t still < <(missing_packages)
if [ ${#still[@]} -ne 0 ]; then
    echo "Still missing after apt-get install: ${still[*]}" >&2
    exit 1
fi

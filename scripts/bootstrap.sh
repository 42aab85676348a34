#!/usr/bin/env bash
# Installs what FlashSale needs on a fresh Debian machine; does nothing when it is all there.
#   system packages (apt, as root or through sudo) and the test tools (pip, into ./.venv).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(redis-server redis-tools libhiredis-dev libmongoc-dev libjemalloc-dev pkg-config haproxy faketime curl podman prometheus wrk chromium chromium-driver stunnel4 nodejs)

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi

missing=()
for package in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# nodejs runs the MongoDB init script under a simulated replica set (scripts/mongo_init_check.py).
# Debian starts a system-wide redis on 6379 where systemd runs; FlashSale never uses it (tests and
# `make run` start their own servers on other ports), so it is left alone.

# Test tools in a project-local virtual environment, reinstalled only when the list changes.
PYTHON=${PYTHON:-python3}
stamp=.venv/.requirements.sha256
wanted=$(sha256sum scripts/requirements-test.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "bootstrap: installing test tools into .venv"
  "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
  echo "$wanted" > "$stamp"
fi

command -v swift >/dev/null || { echo "bootstrap: swift is not on PATH (expected /opt/swift/usr/bin)" >&2; exit 1; }
echo "bootstrap: ready ($(swift --version 2>/dev/null | head -1); redis $(redis-server --version | awk '{print $3}'))"

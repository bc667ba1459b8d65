#!/usr/bin/env bash
# Headless Chromium from Debian's packages, for the analytics report's browser test and
# screenshot (tests/analytics_report_test.py, make analytics). Idempotent: nothing is
# done when `chromium` is on PATH. Needs root (or sudo) and the apt repositories.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "error: installing chromium needs root or sudo (apt-get install chromium)" >&2; exit 1; }
  SUDO=sudo
fi
echo "Installing chromium (Debian package) for the analytics report's browser test..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium >/dev/null

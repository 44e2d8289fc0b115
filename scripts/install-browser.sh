#!/usr/bin/env bash
# Install the browser tests/test_browser.py drives: Debian's chromium (Playwright's own browser download needs
# network access to its CDN, which CI and this testbed do not have). Idempotent and quiet: does nothing when
# /usr/bin/chromium is already there. The Python side (playwright) comes with `pip install -e '.[test]'`.
set -euo pipefail

CHROMIUM="${HARNESS_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-browser.sh: no $CHROMIUM and no apt-get; install chromium with your package manager and set HARNESS_CHROMIUM to its path" >&2
  exit 2
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null

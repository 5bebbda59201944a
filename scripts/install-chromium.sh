#!/usr/bin/env bash
# Debian's Chromium, which the web chat's browser tests drive (tests/browser). `make test`
# runs this when /usr/bin/chromium is missing; it needs root (or sudo) for apt-get.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  run() { "$@"; }
elif command -v sudo >/dev/null; then
  run() { sudo "$@"; }
else
  echo "Chromium is missing: install Debian's package 'chromium' (apt-get install chromium) as root." >&2
  exit 1
fi
run apt-get update -qq
DEBIAN_FRONTEND=noninteractive run apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version

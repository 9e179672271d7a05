#!/bin/sh
# Debian's chromium for the browser tests (tests/browser): installed with apt when
# /usr/bin/chromium is missing. Playwright never downloads a browser of its own here
# (`playwright install` is not used); the tests point it at this binary instead.
# Exit 0 when /usr/bin/chromium is there afterwards; 1 with the reason on stderr otherwise.
set -u
CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "chromium is not installed and this user is not root (apt-get install chromium needs root)" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium is not installed and there is no apt-get to install it" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Try the package lists already on the machine first; refresh them only if that fails.
apt-get install -y -q chromium >&2 || { apt-get update -q >&2 && apt-get install -y -q chromium >&2; }
if [ ! -x "$CHROMIUM" ]; then
    echo "apt-get could not install chromium (no network to Debian's mirrors?)" >&2
    exit 1
fi

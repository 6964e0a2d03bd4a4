#!/usr/bin/env bash
# The Debian tools some tests drive for real, installed when missing (as root, or with sudo):
#   wrk        the load generator of `python -m bench` and its smoke test
#   prometheus real Prometheus + promtool: scrape tests, `promtool check metrics`, alert rules
#   chromium   the drawing page's browser tests (Playwright's Python package drives it)
#   curl       the README's examples, run as pasted (tests/docs)
# Without root and sudo it only says what is missing: those tests then skip locally and fail
# under CI=true, so a green CI never hides a skipped check.
set -euo pipefail
missing=()
for tool in wrk prometheus chromium curl; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "test tools missing: ${missing[*]} (apt-get install -y ${missing[*]}); their tests will skip" >&2
    exit 0
fi
echo "installing test tools: ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# The Debian tools and fonts some tests (and training) use for real, installed when missing
# (as root, or with sudo):
#   wrk        the load generator of `python -m bench` and its smoke test
#   prometheus real Prometheus + promtool: scrape tests, `promtool check metrics`, alert rules
#   chromium   the drawing page's browser tests (Playwright's Python package drives it)
#   curl       the README's examples, run as pasted (tests/docs)
#   fonts      DejaVu, Liberation, Croscore, Roboto, Open Sans, Lato and Cantarell: training
#              renders printed digits and non-digits (letters, symbols) from them; FreeFont and
#              URW base-35: the held-out non-digits and printed digits of the accuracy tests,
#              in fonts training never saw
# `--fonts` installs only the fonts (`make train`). Without root and sudo it only says what is
# missing: those tests then skip locally and fail under CI=true, so a green CI never hides a
# skipped check.
set -euo pipefail
FONT_PACKAGES=(fonts-dejavu-core fonts-dejavu-extra fonts-liberation fonts-croscore
    fonts-roboto-unhinted fonts-open-sans fonts-lato fonts-cantarell fonts-freefont-ttf
    fonts-urw-base35)
missing=()
if [ "${1:-}" != "--fonts" ]; then
    for tool in wrk prometheus chromium curl; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
fi
for package in "${FONT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "missing: ${missing[*]} (apt-get install -y ${missing[*]}); tests that need them will skip" >&2
    [ -z "${CI:-}" ] || { echo "CI: cannot install them without root or sudo" >&2; exit 1; }
    exit 0
fi
echo "installing: ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# Install everything the tests need (Debian's chromium for the browser test, the package with its
# dev extra, CPU torch, every version from the lock constraints.txt) and run the test suite: both layers, the unit tests and the integration
# tests, one layer after the other (plain `pytest` runs only the unit tests). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the browser test will be skipped" >&2
fi
# constraints.txt is the lock of every package (scripts/lock.sh refreshes it); DIP_CONSTRAINTS: another
python3 -m pip install -q --disable-pip-version-check -c "${DIP_CONSTRAINTS:-constraints.txt}" -e ".[dev]"
# exit code 5 = no test selected (e.g. a file of unit tests only, given as an argument)
python3 -m pytest "$@" || [ $? -eq 5 ]                       # the unit layer, one worker per core
python3 -m pytest -m integration -n 0 "$@" || [ $? -eq 5 ]   # the integration layer, one test at a time

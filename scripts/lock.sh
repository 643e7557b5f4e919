#!/usr/bin/env bash
# Refresh constraints.txt, the lock of every package the README's two commands install (the `dev`
# extra included): install the newest versions pyproject.toml allows (torch stays on the CPU build
# of the pinned release) into a new virtual environment, run both test layers there, and only if
# they pass write what was installed to constraints.txt. Review `git diff constraints.txt`, commit.
#
#   bash scripts/lock.sh           refresh the lock (about 15 minutes on a 2-core machine)
#   bash scripts/lock.sh --check   the same install and tests, constraints.txt left as it is:
#                                  what the next refresh would break
# Extra arguments after the option go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
write=1
if [ "${1:-}" = "--check" ]; then write=0; shift; fi
torch_pin="$(grep -E '^torch==' constraints.txt)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
# shellcheck disable=SC1091
source "$work/venv/bin/activate"
echo "$torch_pin" > "$work/torch.txt"
python3 -m pip install -q --disable-pip-version-check -c "$work/torch.txt" -e ".[dev]"
DIP_LOCK_REFRESH=1 DIP_CONSTRAINTS="$work/torch.txt" bash scripts/test.sh "$@"
if [ "$write" = 1 ]; then
  {
    echo "# The lock: every package that \`pip install -c constraints.txt -e .\` and scripts/test.sh install"
    echo "# (the dev extra included), at the versions the tests passed on (Linux x86-64, Python 3.11)."
    echo "# Made by scripts/lock.sh on $(date -u +%Y-%m-%d); pyproject.toml keeps the ranges a library user needs."
    echo "# torch is the CPU build; on a GPU machine leave its line out (README)."
    python3 -m pip freeze --all --exclude-editable --disable-pip-version-check | grep -v "^pip==" | sed -E 's/^(torch==[^+]+)\+cpu$/\1/' | sort -f
  } > constraints.txt
  python3 -m pytest -q -n 0 tests/test_lock.py   # the new lock holds every package, at the versions just tested
  echo "constraints.txt refreshed: $(grep -vc '^#' constraints.txt) packages; review git diff constraints.txt and commit"
fi

"""The lock (constraints.txt) covers every package the project installs, direct and transitive."""

from __future__ import annotations

import re
import os
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

LOCK = Path(__file__).resolve().parents[1] / "constraints.txt"


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def locked() -> dict[str, str]:
    """``{normalised name: version}`` of every ``name==version`` line of the lock."""
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_name(name)] = version.strip()
    return pins


def requirements(dist: str, extras: tuple[str, ...] = ()) -> set[str]:
    """Every distribution ``dist`` needs with ``extras``, transitively, markers evaluated here."""
    seen: set[str] = set()
    todo = [(dist, extras)]
    while todo:
        name, wanted = todo.pop()
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            active = any(req.marker.evaluate({"extra": e}) for e in wanted or ("",)) if req.marker else True
            key = _name(req.name)
            if active and key not in seen:
                seen.add(key)
                todo.append((req.name, tuple(req.extras)))
    return seen


def test_every_dependency_is_locked_at_the_installed_version() -> None:
    """Direct and transitive, the dev extra included: a package that floats is a failure here, and
    so is an environment whose versions are not the lock's (install with -c constraints.txt).
    Skipped while scripts/lock.sh tests the newest versions, before it writes the new lock (which it
    then checks with this test)."""
    if os.environ.get("DIP_LOCK_REFRESH"):
        pytest.skip("scripts/lock.sh is testing the newest versions; the lock is written and checked after")
    pins = locked()
    needed = requirements("dip-repro", ("dev",))
    assert {"torch", "dvc", "pyyaml", "streamlit", "pytest"} <= needed  # the walk is not vacuous
    missing = sorted(needed - pins.keys())
    assert not missing, f"constraints.txt lacks {missing}; refresh it with scripts/lock.sh"
    differ = {n: (metadata.version(n), pins[n]) for n in needed if metadata.version(n).split("+")[0] != pins[n]}
    assert not differ, f"installed ≠ locked (installed, locked): {differ}; install with -c constraints.txt"

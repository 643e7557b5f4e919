"""No `-S key=value` in README, docs or the dashboard names a key that params.yaml lacks.

Every ``-S``/``--set-param`` the documentation or a dashboard page suggests is applied to a copy of
params.yaml the way ``dvc exp run`` applies it (DVC's own ``apply_overrides``: Hydra's override
grammar on the file in struct mode, so an unknown key such as the old ``net.downsample`` fails as
it does for the user), and the result is checked with :func:`pipeline.settings.check_params`."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from pipeline.settings import load_params

REPO = Path(__file__).resolve().parents[1]
# -S VALUE or --set-param VALUE: 'quoted', "quoted" or up to the next space, backtick or line end
SET = re.compile(r"""(?:(?<=\s)|(?<=^)|(?<=`))(?:-S|--set-param)[ =](?:'([^']*)'|"([^"]*)"|([^\s`'"\\)]+))""", re.M)


def sources() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "dashboard").rglob("*.py"))]


def suggested() -> list[tuple[str, str]]:
    """``(where, override)`` for every ``-S`` in the sources (``where`` = ``file:line``)."""
    out = []
    for path in sources():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for m in SET.finditer(line):
                out.append((f"{path.relative_to(REPO)}:{n}", next(g for g in m.groups() if g is not None)))
    return out


def test_the_sources_suggest_overrides() -> None:
    found = {o for _, o in suggested()}
    assert "profiles.quick.net.downsample=max" in found and "seeds=[0,1,2]" in found, sorted(found)
    assert any(where.startswith("dashboard/") for where, _ in suggested())


def test_the_pattern_reads_quoted_and_plain_overrides() -> None:
    line = "`dvc exp run -S a.b=1 -S 'c=[0,1]' --set-param \"d=x y\" --set-param=e=2`"
    assert [m.group(0) for m in SET.finditer(line)][0] == "-S a.b=1"
    assert [next(g for g in m.groups() if g is not None) for m in SET.finditer(line)] == ["a.b=1", "c=[0,1]", "d=x y", "e=2"]


def distinct() -> list[tuple[str, str]]:
    """:func:`suggested`, each override once (with every place that suggests it)."""
    places: dict[str, list[str]] = {}
    for where, override in suggested():
        places.setdefault(override, []).append(where)
    return [(", ".join(w), o) for o, w in places.items()]


@pytest.mark.parametrize(("where", "override"), distinct(), ids=lambda v: v[:60])
def test_every_suggested_override_names_a_key_of_params_yaml(where: str, override: str, tmp_path: Path) -> None:
    from dvc.utils.hydra import apply_overrides

    override = override.removeprefix("params.yaml:")
    key, _, value = override.partition("=")
    if "$" in value:  # a shell variable (a loop over values): the key must exist; keep its value
        override = f"{key}={_current(key)}"
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    try:
        apply_overrides(params, [override])
    except Exception as err:  # noqa: BLE001 - DVC's InvalidArgumentError wraps Hydra's "Key 'net' is not in struct"
        pytest.fail(f"{where}: `-S {override}`: dvc exp run would stop: {err} ({err.__cause__})")
    try:
        load_params(params)
    except ValueError as err:
        pytest.fail(f"{where}: `-S {override}` gives a params.yaml that fails its check: {err}")


def _current(key: str) -> str:
    import json

    node = load_params(REPO / "params.yaml")
    for part in key.split("."):
        assert isinstance(node, dict) and part in node, f"params.yaml has no key {key!r}"
        node = node[part]
    return json.dumps(node)


def test_an_unknown_key_fails(tmp_path: Path) -> None:
    """The stale suggestion `-S net.downsample=max` (the settings moved under profiles.<p>.net)."""
    from dvc.utils.hydra import apply_overrides

    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    with pytest.raises(Exception):
        apply_overrides(params, ["net.downsample=max"])
    apply_overrides(params, ["profiles.quick.net.downsample=lanczos9"])  # the key exists: Hydra sets it, the schema refuses it
    with pytest.raises(ValueError, match="downsample"):
        load_params(params)

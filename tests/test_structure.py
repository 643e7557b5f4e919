"""The shape of the code (issue 12): no import cycles, DVC stages depend on the code they run,
the code hash covers the code that shapes a fit. Read with ``ast``, nothing is imported."""

from __future__ import annotations

import ast
import shlex
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dip", "pipeline")


@lru_cache(maxsize=1)
def module_files() -> dict[str, Path]:
    """``{dotted name: file}`` of every module of :data:`PACKAGES` (a package is its __init__)."""
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if path.name == "__init__.py" else parts)] = path
    return out


def _is_type_checking(node: ast.stmt) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): imports there never run."""
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports_in(nodes: list[ast.stmt]) -> set[str]:
    """Project modules imported anywhere in ``nodes`` (function bodies included), except under
    ``if TYPE_CHECKING:``; ``from pkg import mod`` counts as ``pkg.mod`` where that is a module."""
    known = module_files()
    found: set[str] = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import of {node.module!r}: use the absolute name"
            subs = {f"{node.module}.{a.name}" for a in node.names} & known.keys()
            found |= subs
            if node.module in known and len(subs) < len(node.names):  # a name defined in the module itself
                found.add(node.module)
        stack.extend(ast.iter_child_nodes(node))  # type: ignore[arg-type]
    return found


@lru_cache(maxsize=None)
def tree(module: str) -> ast.Module:
    return ast.parse(module_files()[module].read_text(), filename=str(module_files()[module]))


def import_graph() -> dict[str, set[str]]:
    """``{module: project modules it imports}``: module level and function-local alike."""
    return {name: _imports_in(tree(name).body) - {name} for name in module_files()}


def closure(start: set[str], graph: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph[name])
    return seen


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path ``[a, b, …, a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle() -> None:
    assert find_cycle(import_graph()) is None, "import cycle: " + " → ".join(find_cycle(import_graph()) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_function_local_and_type_checking_imports() -> None:
    code = ast.parse("import typing\nif typing.TYPE_CHECKING:\n    import pipeline.stages.run\n"
                     "def f():\n    from pipeline.execution import engines\n    from dip.io import save_json\n")
    assert _imports_in(code.body) == {"pipeline.execution.engines", "dip.io"}


def command_modules(command: str) -> set[str]:
    """Project modules a ``dip <command>`` runs: pipeline/cli.py, and what its module level, its
    ``main`` and the sub-command's function import (transitively; the other sub-commands' imports
    do not run)."""
    cli = tree("pipeline.cli")
    wanted = {"main"}
    for node in cli.body:
        if isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute) and deco.func.attr == "command":
                    name = deco.args[0].value if deco.args else node.name  # type: ignore[attr-defined]
                    if name == command:
                        wanted.add(node.name)
    assert len(wanted) == 2, f"`dip {command}` is not a sub-command of pipeline/cli.py"
    top = [n for n in cli.body if not isinstance(n, ast.FunctionDef)]
    funcs = [n for n in cli.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    return {"pipeline.cli"} | closure(_imports_in(top) | _imports_in(funcs), import_graph())  # type: ignore[arg-type]


def stages() -> dict[str, dict]:
    """dvc.yaml's stages (a ``foreach`` stage by its ``do`` block)."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in spec.items()}


# An always_changed stage (resolve) runs every time: its deps do not matter.
@pytest.mark.parametrize("stage", sorted(name for name, spec in stages().items() if not spec.get("always_changed")))
def test_each_stage_depends_on_the_code_it_runs(stage: str) -> None:
    spec = stages()[stage]
    argv = shlex.split(spec["cmd"])
    assert argv[0] == "dip", f"stage {stage} does not run a `dip` command"
    deps = [ROOT / d for d in spec.get("deps", [])]
    used = command_modules(argv[1])
    missing = sorted(str(module_files()[m].relative_to(ROOT)) for m in used
                     if not any(module_files()[m] == d or module_files()[m].is_relative_to(d) for d in deps))
    assert not missing, f"dvc.yaml stage {stage!r} runs code it does not list in deps: {missing}"


@pytest.mark.parametrize("stage", sorted(name for name, spec in stages().items() if not spec.get("always_changed")))
def test_no_stage_lists_pipeline_code_it_does_not_run(stage: str) -> None:
    """A stale code dep re-runs the stage for nothing (dip/ is listed whole: every command checks params)."""
    spec = stages()[stage]
    used = {str(module_files()[m].relative_to(ROOT)) for m in command_modules(shlex.split(spec["cmd"])[1])}
    stale = sorted(d for d in spec.get("deps", []) if d.startswith("pipeline/") and d.endswith(".py") and d not in used)
    assert not stale, f"dvc.yaml stage {stage!r} lists code its command does not import: {stale}"


# Stage commands whose whole body is one entry point of their module (issue 12): cli.py only parses
# options, calls `<module>.stage` and prints.
ENTRY_POINTS = {"profile": "pipeline.profiles", "fetch": "pipeline.stages.fetch", "corrupt": "pipeline.stages.corrupt", "run": "pipeline.stages.run",
                "evaluate": "pipeline.stages.evaluate"}


@pytest.mark.parametrize("command", sorted(ENTRY_POINTS))
def test_a_stage_command_calls_only_its_module_entry_point(command: str) -> None:
    funcs = [n for n in tree("pipeline.cli").body if isinstance(n, ast.FunctionDef)
             and any(isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "command"
                     and (d.args[0].value if d.args else n.name) == command for d in n.decorator_list)]  # type: ignore[attr-defined]
    assert len(funcs) == 1, f"`dip {command}` is not a sub-command of pipeline/cli.py"
    imported = [(node.module, [a.name for a in node.names]) for node in ast.walk(funcs[0]) if isinstance(node, ast.ImportFrom)]
    assert imported == [(ENTRY_POINTS[command], ["stage"])], f"`dip {command}` should import only {ENTRY_POINTS[command]}.stage, not {imported}"
    assert any(isinstance(n, ast.FunctionDef) and n.name == "stage" for n in tree(ENTRY_POINTS[command]).body)


def test_the_code_hash_covers_the_code_of_a_fit() -> None:
    from pipeline.execution.job import CODE_FILES

    hashed = {m for m, path in module_files().items() if m.split(".")[0] == "dip" or str(path.relative_to(ROOT)) in CODE_FILES}
    assert "pipeline.execution.job" in hashed and "pipeline.execution.fits" in hashed
    assert closure({"pipeline.execution.job"}, import_graph()) <= hashed, "pipeline.execution.job imports code that its CODE_FILES leave out"


def test_engines_follow_the_protocol_and_never_import_the_stage() -> None:
    from pipeline.execution.engines import DaskEngine, Engine, EngineConfig, LocalEngine

    assert isinstance(LocalEngine(), Engine)
    pytest.importorskip("distributed")
    assert isinstance(DaskEngine(EngineConfig(kind="dask"), "cpu"), Engine)
    graph = import_graph()
    assert "pipeline.stages.run" not in closure({"pipeline.execution.engines"}, graph) | closure({"pipeline.execution.job"}, graph)


# The dashboard reads files; of the project it may import only these (docs/ARCHITECTURE.md):
# the output layout, the report's aggregation, experiment ids, and dip.metrics to score a crop.
DASHBOARD_MAY_IMPORT = {"pipeline.layout", "pipeline.outputs.report", "pipeline.profiles", "dip.metrics"}


def dashboard_imports() -> dict[str, set[str]]:
    """``{dashboard file: project modules it imports}`` (function-local included)."""
    out = {}
    for path in sorted((ROOT / "dashboard").rglob("*.py")):
        out[str(path.relative_to(ROOT))] = _imports_in(ast.parse(path.read_text()).body)
    return out


def test_the_dashboard_imports_only_the_layout_the_report_and_the_ids() -> None:
    for path, used in dashboard_imports().items():
        assert used <= DASHBOARD_MAY_IMPORT, f"{path} imports {sorted(used - DASHBOARD_MAY_IMPORT)}"
    assert "pipeline.stages.run" not in closure(DASHBOARD_MAY_IMPORT, import_graph())  # never a fit


def test_the_dashboards_readers_load_without_torch() -> None:
    import os
    import subprocess
    import sys

    code = ("import sys\nimport dashboard.load, dashboard.tables, dashboard.imaging, dashboard.dvc_exp\n"
            "print(sorted(m for m in ('torch', 'dip', 'pipeline.execution.job') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert out.strip() == "[]", out

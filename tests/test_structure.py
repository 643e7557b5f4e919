"""The shape of the code: no import cycle (every import, function-level and ``TYPE_CHECKING`` ones
included), DVC stages depend on exactly the code they run, the settings load without torch and
the stages that prepare or score images never load the fitting loop, the code hash covers the code
that shapes a fit. Read with ``ast``; only the torch checks import anything (in a subprocess)."""

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


def _imports_in(nodes: list[ast.stmt], type_checking: bool = False) -> set[str]:
    """Project modules imported anywhere in ``nodes`` (function bodies included); under ``if
    TYPE_CHECKING:`` only if ``type_checking`` (those never run). ``from pkg import mod`` counts as
    ``pkg.mod`` where that is a module, ``from pkg import name`` as ``pkg`` and, where ``pkg``
    re-exports ``name`` (eagerly or lazily, :func:`reexports`), as the module defining it."""
    known = module_files()
    found: set[str] = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node) and not type_checking:
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
                exports = reexports(node.module)
                found |= {exports[a.name] for a in node.names if a.name in exports}
        stack.extend(ast.iter_child_nodes(node))  # type: ignore[arg-type]
    return found


@lru_cache(maxsize=None)
def reexports(package: str) -> dict[str, str]:
    """``{name: defining module}`` of what a package's ``__init__`` imports from its modules
    (``dip/__init__.py`` loads them on first use, declared under ``TYPE_CHECKING``)."""
    path = module_files()[package]
    if path.name != "__init__.py":
        return {}
    out = {}
    for node in ast.walk(tree(package)):
        if isinstance(node, ast.ImportFrom) and node.module in module_files() and node.module != package:
            out.update({a.asname or a.name: node.module for a in node.names})
    return out


@lru_cache(maxsize=None)
def tree(module: str) -> ast.Module:
    return ast.parse(module_files()[module].read_text(), filename=str(module_files()[module]))


def import_graph() -> dict[str, set[str]]:
    """``{module: project modules it imports}``: every import, module level, function-local and
    ``TYPE_CHECKING`` alike (for cycles: a type-only cycle is still two modules that need each other)."""
    return {name: _imports_in(tree(name).body, type_checking=True) - {name} for name in module_files()}


def parents(module: str) -> set[str]:
    """The packages whose ``__init__`` runs before ``module`` does (``dip`` for ``dip.io``)."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))} & module_files().keys()


def runtime_graph() -> dict[str, set[str]]:
    """``{module: project modules that may run when it is imported or its functions called}``:
    imports outside ``TYPE_CHECKING`` (function-local included: a superset of what runs) and the
    parent packages of each."""
    graph = {name: _imports_in(tree(name).body) - {name} for name in module_files()}
    return {name: deps | set().union(*(parents(d) for d in deps | {name})) - {name} for name, deps in graph.items()}


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
    assert _imports_in(code.body, type_checking=True) == {"pipeline.execution.engines", "dip.io", "pipeline.stages.run"}
    assert _imports_in(ast.parse("from dip import Fitter, NetConfig\n").body) == {"dip", "dip.fit", "dip.config"}  # lazy exports
    assert runtime_graph()["dip.config"] == {"dip"} and "dip.fit" not in runtime_graph()["dip"]


def test_a_type_checking_cycle_is_a_cycle() -> None:
    graph = import_graph()
    assert all(_imports_in(tree(m).body) - {m} <= graph[m] for m in graph)  # the cycle graph holds every runtime import
    code = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pipeline.stages.run import plan\n")
    assert find_cycle({**graph, "pipeline.settings": graph["pipeline.settings"] | _imports_in(code.body, type_checking=True)})


# The layers of the code, lowest first: a module imports only from its own layer or lower ones
# (docs/ARCHITECTURE.md). dip/ is the method and knows nothing of the pipeline; the bottom of
# pipeline/ reads the settings, names the files and reads and writes them safely (the report's
# tables are built from those files alone, and the dashboard imports only this layer); then the
# images, the fits (execution), the DVC stages, what is made of finished stages (outputs: the
# bundle, the publishing run, the README block), and the command line on top.
LAYERS = (
    ("dip",),
    ("pipeline", "pipeline.settings", "pipeline.files", "pipeline.layout", "pipeline.report"),
    ("pipeline.images",),
    ("pipeline.execution",),
    ("pipeline.stages",),
    ("pipeline.outputs",),
    ("pipeline.cli",),
)


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of ``module`` (its longest matching name or package)."""
    best = max(((len(name), i) for i, names in enumerate(LAYERS) for name in names
                if module == name or (module.startswith(name + ".") and name != "pipeline")), default=None)
    assert best is not None, f"{module} is in no layer of LAYERS: add it"
    return best[1]


def upward_imports(module: str, code: ast.Module, where: str) -> list[str]:
    """``file:line`` of every import in ``code`` (of ``module``) of a higher layer than its own:
    module level, function level and under ``TYPE_CHECKING`` alike."""
    own = layer_of(module)
    found = []
    for node in ast.walk(code):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for target in sorted(_imports_in([node], type_checking=True) - {module}):
                if layer_of(target) > own:
                    found.append(f"{where}:{node.lineno} {module} imports {target} (layer {own} imports layer {layer_of(target)})")
    return found


def test_every_module_imports_only_its_layer_and_lower_ones() -> None:
    offending = [line for module, path in module_files().items()
                 for line in upward_imports(module, tree(module), str(path.relative_to(ROOT)))]
    assert not offending, "imports against the order of LAYERS:\n" + "\n".join(offending)


def test_the_layer_check_finds_upward_imports_in_functions_and_type_checking() -> None:
    code = ast.parse("from typing import TYPE_CHECKING\nimport pipeline.files\nif TYPE_CHECKING:\n    from pipeline.stages.run import plan\n"
                     "def f():\n    from pipeline.outputs import publish_run\n    from dip.fit import Fitter\n")
    found = upward_imports("pipeline.execution.fits", code, "x.py")
    assert [line.split(" ")[0] for line in found] == ["x.py:4", "x.py:6"], found
    assert layer_of("pipeline.execution.job") == 3 and layer_of("pipeline.report") == 1 and layer_of("dip.fit") == 0


def command_modules(command: str) -> set[str]:
    """Project modules a ``dip <command>`` may run: pipeline/cli.py, and what its module level, its
    ``main`` and the sub-command's function import, with their packages (transitively, by
    :func:`runtime_graph`; the other sub-commands' imports do not run)."""
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
    return {"pipeline.cli"} | closure(parents("pipeline.cli") | _imports_in(top) | _imports_in(funcs), runtime_graph())  # type: ignore[arg-type]


def stages() -> dict[str, dict]:
    """dvc.yaml's stages (a ``foreach`` stage by its ``do`` block)."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in spec.items()}


def code_deps(stage: str) -> tuple[list[str], list[str]]:
    """``(listed, run)``: the code files of ``stage``'s ``deps`` in dvc.yaml (a folder counts as
    its modules) and the files of the modules its ``dip`` command may run."""
    spec = stages()[stage]
    argv = shlex.split(spec["cmd"])
    assert argv[0] == "dip", f"stage {stage} does not run a `dip` command"
    files = {m: str(path.relative_to(ROOT)) for m, path in module_files().items()}
    listed = sorted(f for f in files.values() if any(f == d or f.startswith(d.rstrip("/") + "/") for d in spec.get("deps", [])))
    return listed, sorted(files[m] for m in command_modules(argv[1]))


# An always_changed stage (resolve) runs every time: its deps do not matter.
CACHED_STAGES = sorted(name for name, spec in stages().items() if not spec.get("always_changed"))


@pytest.mark.parametrize("stage", CACHED_STAGES)
def test_each_stage_lists_exactly_the_code_it_runs(stage: str) -> None:
    """A missing code dep keeps a stale output; a stale one re-runs the stage for nothing."""
    listed, run = code_deps(stage)
    assert not set(run) - set(listed), f"dvc.yaml stage {stage!r} runs code it does not list in deps: {sorted(set(run) - set(listed))}"
    assert not set(listed) - set(run), f"dvc.yaml stage {stage!r} lists code its command does not run: {sorted(set(listed) - set(run))}"
    assert all(d.endswith(".py") or not d.startswith(("dip", "pipeline/")) for d in stages()[stage].get("deps", [])), \
        f"dvc.yaml stage {stage!r} lists a code folder: list its modules"


# What fits: the engines, the job and its output folder, and the loop of dip/ (not the network
# or the operators, which corrupt uses to make its observations).
FITTING = {"pipeline.execution.engines", "pipeline.execution.job", "pipeline.execution.fits", "dip.fit", "dip.iteration",
           "dip.graphs", "dip.group", "dip.adam", "dip.early_stopping", "dip.callbacks"}


@pytest.mark.parametrize("stage", ["fetch", "corrupt", "baselines", "evaluate"])
def test_the_stages_around_the_fits_do_not_depend_on_the_engines_or_the_loop(stage: str) -> None:
    """Editing the Dask engine or the fitting loop must not re-run image fetching, corruption,
    the baselines or the evaluation."""
    listed, run = code_deps(stage)
    fitting = sorted(str(module_files()[m].relative_to(ROOT)) for m in FITTING)
    assert not set(listed) & set(fitting), f"dvc.yaml stage {stage!r} depends on {sorted(set(listed) & set(fitting))}"
    assert "pipeline/settings.py" in run and "dip/config.py" in run  # the check is not vacuous: params are read


def test_the_fit_stage_depends_on_the_loop() -> None:
    assert {"pipeline/execution/engines.py", "dip/fit.py", "dip/iteration.py", "pipeline/settings.py"} <= set(code_deps("fit")[0])


def _loaded_after(code: str) -> list[str]:
    """The project's and torch's modules loaded by running ``code`` in a fresh interpreter."""
    import os
    import subprocess
    import sys

    script = code + "\nimport sys\nprint(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'dip', 'pipeline')))"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    return eval(out.strip().splitlines()[-1])  # noqa: S307 - our own print of a list of names


def test_the_settings_load_and_build_a_fits_settings_without_torch() -> None:
    loaded = _loaded_after("from pipeline.settings import active_profile, job_settings, load_params\n"
                           "p = load_params('params.yaml')\nprof = active_profile(p, {'profile': 'paper'})\n"
                           "job_settings(prof.experiment('fig8_library'), prof, 0, 'cpu')")
    assert loaded == ["dip", "dip.config", "pipeline", "pipeline.settings"], loaded


@pytest.mark.integration  # a fresh interpreter that loads scikit-image and pandas: seconds
def test_the_settings_only_stages_load_no_torch() -> None:
    """fetch, evaluate and baselines read and write files and numbers: importing them (and running
    their CLI entry) loads no torch, whose import is most of a reused stage's cost."""
    loaded = set(_loaded_after("import pipeline.stages.fetch, pipeline.stages.evaluate, pipeline.stages.baselines, pipeline.files, pipeline.cli, "
                               "pipeline.stages.run"))
    assert "pipeline.stages.evaluate" in loaded and "torch" not in loaded, sorted(m for m in loaded if m.startswith("torch"))[:3]


@pytest.mark.integration  # a fresh interpreter that loads torch, scikit-image and pandas: seconds
def test_the_stage_modules_around_the_fits_do_not_load_the_loop() -> None:
    """At run time too (the lazy names of ``dip``'s ``__init__`` included)."""
    loaded = set(_loaded_after("import pipeline.stages.fetch, pipeline.stages.corrupt, pipeline.stages.baselines, pipeline.stages.evaluate"))
    assert "torch" in loaded and not loaded & FITTING, sorted(loaded & FITTING)


# Stage commands whose whole body is one entry point of their module: cli.py only parses options,
# calls `<module>.stage` and prints.
ENTRY_POINTS = {"profile": "pipeline.stages.resolve", "fetch": "pipeline.stages.fetch", "corrupt": "pipeline.stages.corrupt",
                "run": "pipeline.stages.run", "baselines": "pipeline.stages.baselines", "evaluate": "pipeline.stages.evaluate"}


@pytest.mark.parametrize("command", sorted(ENTRY_POINTS))
def test_a_stage_command_calls_only_its_module_entry_point(command: str) -> None:
    funcs = [n for n in tree("pipeline.cli").body if isinstance(n, ast.FunctionDef)
             and any(isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "command"
                     and (d.args[0].value if d.args else n.name) == command for d in n.decorator_list)]  # type: ignore[attr-defined]
    assert len(funcs) == 1, f"`dip {command}` is not a sub-command of pipeline/cli.py"
    imported = [(node.module, [a.name for a in node.names]) for node in ast.walk(funcs[0]) if isinstance(node, ast.ImportFrom)]
    assert imported == [(ENTRY_POINTS[command], ["stage"])], f"`dip {command}` should import only {ENTRY_POINTS[command]}.stage, not {imported}"
    assert any(isinstance(n, ast.FunctionDef) and n.name == "stage" for n in tree(ENTRY_POINTS[command]).body)


def test_every_stage_module_is_a_stage() -> None:
    """pipeline/stages/ holds the stages of dvc.yaml, each with its entry point, and nothing else."""
    modules = {m for m in module_files() if m.startswith("pipeline.stages.")}
    assert modules == set(ENTRY_POINTS.values())
    commands = {shlex.split(spec["cmd"])[1] for spec in stages().values()}
    assert commands == set(ENTRY_POINTS), commands ^ set(ENTRY_POINTS)


def test_the_code_hash_covers_the_code_of_a_fit() -> None:
    from pipeline.execution.keys import CODE_FILES

    hashed = {m for m, path in module_files().items() if m.split(".")[0] == "dip" or str(path.relative_to(ROOT)) in CODE_FILES}
    assert "pipeline.execution.job" in hashed and "pipeline.execution.fits" in hashed
    direct = {name: _imports_in(tree(name).body) - {name} for name in module_files()}  # packages' empty __init__ aside
    assert closure({"pipeline.execution.job"}, direct) <= hashed, "pipeline.execution.job imports code that its CODE_FILES leave out"


def test_engines_follow_the_protocol_and_never_import_the_stage() -> None:
    from pipeline.execution.engines import DaskEngine, Engine, LocalEngine
    from pipeline.settings import EngineConfig

    assert isinstance(LocalEngine(), Engine)
    import distributed  # noqa: F401 - the dev extra: missing is a failure
    assert isinstance(DaskEngine(EngineConfig(kind="dask"), "cpu"), Engine)
    graph = import_graph()
    assert "pipeline.stages.run" not in closure({"pipeline.execution.engines"}, graph) | closure({"pipeline.execution.job"}, graph)


# The dashboard reads files; of the project it may import only these (docs/ARCHITECTURE.md):
# the output layout, the report's aggregation, experiment ids, the file-safety module (torch-free),
# and dip.metrics to score a crop.
DASHBOARD_MAY_IMPORT = {"pipeline.layout", "pipeline.report", "pipeline.settings", "pipeline.files", "dip.metrics"}


def dashboard_imports() -> dict[str, set[str]]:
    """``{dashboard file: project modules it imports}`` (function-local included)."""
    out = {}
    for path in sorted((ROOT / "dashboard").rglob("*.py")):
        out[str(path.relative_to(ROOT))] = _imports_in(ast.parse(path.read_text()).body)
    return out


def test_the_dashboard_imports_only_the_layout_the_report_and_the_ids() -> None:
    for path, used in dashboard_imports().items():
        assert used <= DASHBOARD_MAY_IMPORT, f"{path} imports {sorted(used - DASHBOARD_MAY_IMPORT)}"
    assert not closure(DASHBOARD_MAY_IMPORT, runtime_graph()) & (FITTING | {"pipeline.stages.run"})  # never a fit


def test_the_dashboards_readers_load_without_torch() -> None:
    loaded = _loaded_after("import dashboard.load, dashboard.tables, dashboard.imaging, dashboard.dvc_exp")
    assert "torch" not in loaded and not set(loaded) & FITTING, loaded

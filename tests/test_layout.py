"""docs/LAYOUT.md is the contract between pipeline, report and dashboard: the columns, paths and
folder types it documents are those of :mod:`pipeline.layout`, which every stage, the publishing
code and the dashboard use, and no other module spells a file name of the layout (the files
themselves: tests/test_pipeline_repro.py and tests/test_dashboard.py on the smoke run)."""

from __future__ import annotations

from pathlib import Path

from conftest import ROOT, layout_doc


def test_the_documented_columns_are_the_layout_modules() -> None:
    from pipeline import layout

    doc = layout_doc()
    assert doc["columns"]["per_image.csv"] == list(layout.PER_IMAGE_FIELDS)
    assert doc["columns"]["curves.csv"] == list(layout.CURVE_FIELDS)
    assert doc["columns"]["report.csv"] == list(layout.REPORT_FIELDS)


def _header(path: Path) -> list[str]:
    return path.read_text().splitlines()[0].split(",")


def test_the_files_written_have_the_layout_modules_columns(smoke_outputs: Path) -> None:
    """What the evaluate stage and the fits wrote (the smoke profile) has the columns that
    pipeline/layout.py and docs/LAYOUT.md name, in that order, and the dashboard's report table too."""
    from dashboard.load import report
    from pipeline import layout
    from pipeline.execution.fits import RUN_CURVE_FIELDS

    metrics = smoke_outputs / layout.METRICS
    assert _header(metrics / layout.PER_IMAGE_CSV) == list(layout.PER_IMAGE_FIELDS)
    assert _header(metrics / layout.CURVES_CSV) == list(layout.CURVE_FIELDS)
    assert _header(metrics / layout.REPORT_CSV) == list(layout.REPORT_FIELDS)
    assert list(report(smoke_outputs).columns)[: len(layout.REPORT_FIELDS)] == list(layout.REPORT_FIELDS)
    curves = {tuple(_header(p)) for p in (smoke_outputs / layout.RESULTS).glob("*/*/seed_*/curve.csv")}
    assert curves and all(list(c) == [f for f in RUN_CURVE_FIELDS if f in c] for c in curves)  # a subset, in order
    assert max(curves, key=len) == tuple(layout_doc()["curve"]) == RUN_CURVE_FIELDS  # with a ground truth and averaging


def test_the_documented_paths_are_the_layout_modules() -> None:
    from pipeline import layout

    paths = layout_doc()["paths"]
    for name in (layout.PER_IMAGE_CSV, layout.CURVES_CSV, layout.REPORT_CSV, layout.REPORT_MD, layout.SUMMARY_JSON):
        assert f"{layout.METRICS}/{name}" in paths, name
    assert f"{layout.RESULTS}/<exp>/<image>/{layout.SEED_PREFIX}<s>/" in paths
    assert f"{layout.BASELINES}/<exp>/<image>/<method>.png" in paths
    assert f"{layout.CORRUPTED}/<exp>/<image>/" in paths
    assert layout.Tree(Path(".")).run("e", "i", 3).path.as_posix() == "results/e/i/seed_3"
    assert layout.seed_of(Path("results/e/i/seed_3")) == 3 and layout.seed_of(Path("x/seed_a")) is None


def test_protocol_and_psnr_from_loss() -> None:
    from pipeline.layout import protocol, psnr_from_loss

    assert protocol("sr", 4) == ("sr", 4) and protocol("sr", 8.0) == ("sr", 8)
    assert protocol("denoise", 4) == ("rgb", 0) and protocol("inpaint") == ("rgb", 0)
    assert psnr_from_loss(0.01) == 20.0 and psnr_from_loss(0.0) == 120.0


def test_the_layout_block_is_parsed() -> None:
    paths = layout_doc()["paths"]
    assert {"data/corrupted/<exp>/<image>/mask.png", "results/<exp>/<image>/seed_<s>/final.png?",
            "results/<exp>/<image>/seed_<s>/snapshots/iter_NNNNN.png", "metrics/report.csv"} <= paths.keys()
    assert layout_doc()["run_json"][:3] == ["task", "net", "fit"]


# --- the folder types: every file name in one module ---------------------------------------------------
# The file names of docs/LAYOUT.md: a fit's folder, a case, the experiment and baseline records, the
# metrics, a bundle's manifest and a part's record, each owned by pipeline/layout.py; data/profile.json
# and the .dip-output marker have their own owner (docs/LAYOUT.md, "In code").
FILE_NAMES = ("run.json", "restored.png", "final.png", "curve.csv", "restored.jpg", "meta.json", "ground_truth.png",
              "observation.npy", "observation.png", "mask.png", "input.npy", "input.png", "experiment.json",
              "baselines.json", "manifest.json", "part.json", "per_image.csv", "curves.csv", "report.csv", "report.md",
              "summary.json")
PREFIXES = ("iter_", "seed_")  # snapshots/iter_NNNNN.png, results/<exp>/<image>/seed_<s>/
FOLDERS = ("snapshots",)
OWNERS = {"profile.json": "pipeline/settings.py", ".dip-output": "pipeline/files.py"}


def spellings(source: str, names: tuple[str, ...] = FILE_NAMES + tuple(OWNERS)) -> list[tuple[int, str]]:
    """``(line, text)`` of every string constant of ``source`` (f-string parts and regular
    expressions included, docstrings not) that spells a layout path: one of ``names`` as the whole
    string or after a ``/`` (``"run.json"``, ``f"{d}/run.json"``, ``"*/seed_*/run.json"``,
    ``r"results/.../run\\.json"``), a name of :data:`PREFIXES` as a pattern or format's start
    (``"iter_*.png"``, ``f"seed_{s}"``), ``snapshots/``, or ``"snapshots"`` joined with ``/``
    (``tmp / "snapshots"``). A sentence that mentions a file (``"its run.json"``) is no path."""
    import ast
    import re

    pattern = re.compile(rf"(?:^|/)(?:{'|'.join(map(re.escape, names))})(?![\w.-])"
                         rf"|(?:^|/)(?:{'|'.join(PREFIXES)})(?=$|[*{{(\[\\\d])|(?:^|/)(?:{'|'.join(FOLDERS)})/")
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            found += [(side.lineno, side.col_offset, side.value) for side in (node.left, node.right)
                      if isinstance(side, ast.Constant) and side.value in FOLDERS]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if pattern.search(node.value.replace("\\.", ".")):
                found.append((node.lineno, node.col_offset, node.value))
    return [(line, text) for line, _, text in sorted(found)]


def test_the_spelling_finder_finds_a_path_and_no_sentence() -> None:
    found = [text for _, text in spellings(
        '"""A docstring may say run.json."""\n'
        'a = out / "run.json"\nb = f"{out}/curve.csv"\nc = sorted(d.glob("*/seed_*/run.json"))\n'
        'd = tmp / "snapshots"\ne = f"iter_{i:05d}.png"\nf = re.compile(r"seed_(?P<s>\\d+)/restored\\.png")\n'
        'g = f"{root}/data/profile.json: no profile"\nh = ("meta.json", "mask.png")\ni = ".dip-output"\n'
        'ok = {"snapshots": [0, 10]}\nok2 = "its run.json, curve.csv and snapshots"\nok3 = f"{stem}_mask.png"\n'
        'j = "snapshots/iter_NNNNN.png in a message"\n'
        'def f():\n    """Writes ``restored.png``."""\n')]
    assert found == ["run.json", "/curve.csv", "*/seed_*/run.json", "snapshots", "iter_", "seed_(?P<s>\\d+)/restored\\.png",
                     "/data/profile.json: no profile", "meta.json", "mask.png", ".dip-output", "snapshots/iter_NNNNN.png in a message"], found


def test_no_module_but_the_layout_spells_a_file_name() -> None:
    """Every module of dip/, pipeline/, dashboard/ and benchmarks/ names a file of the layout through
    pipeline/layout.py (its types and constants), never by a string of its own: a renamed file
    changes in one place. ``profile.json`` and ``.dip-output`` are spelled by their owners only."""
    from pipeline import layout

    values = {v for k, v in vars(layout).items() if k.isupper() and isinstance(v, str)}
    assert set(FILE_NAMES) | set(FOLDERS) <= values and {layout.SNAPSHOT_PREFIX, layout.SEED_PREFIX} == set(PREFIXES)
    offenders = []
    for package in ("dip", "pipeline", "dashboard", "benchmarks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "pipeline/layout.py":
                continue
            names = FILE_NAMES + tuple(n for n, owner in OWNERS.items() if owner != rel)
            offenders += [f"{rel}:{line}: {text!r}" for line, text in spellings(path.read_text(), names)]
    assert not offenders, "file names of the layout spelled outside pipeline/layout.py:\n" + "\n".join(offenders)


def test_the_check_fails_on_a_module_that_spells_a_name() -> None:
    """The check above is not vacuous: a real module with one path spelled by hand fails it."""
    source = (ROOT / "pipeline" / "execution" / "fits.py").read_text()
    assert not spellings(source)
    assert spellings(source.replace("save_json(out.run_json, record)", 'save_json(tmp / "run.json", record)')) != []
    assert spellings((ROOT / "pipeline" / "layout.py").read_text())  # the one module that spells them


def test_the_folder_types_build_the_documented_paths() -> None:
    """The paths that the types build under a results root are those of docs/LAYOUT.md."""
    from pathlib import PurePosixPath

    from pipeline import layout

    documented = {p.rstrip("?") for p in layout_doc()["paths"]}
    tree = layout.Tree(PurePosixPath())
    case, run = tree.case("<exp>", "<image>"), tree.run("<exp>", "<image>", "<s>")
    built = [tree.corrupted_of("<exp>").record, tree.results_of("<exp>").record, case.path, case.meta, case.ground_truth,
             case.observation_npy, case.observation_png, case.mask, case.input_npy, case.input_png, run.run_json,
             run.restored, run.final, run.curve, tree.baselines_of("<exp>").png("<image>", "<method>"), tree.baselines_of("<exp>").summary,
             *(tree.metric(name) for name in layout.METRICS_FILES)]
    missing = [str(p) for p in built if str(p) not in documented and f"{p}/" not in documented]
    assert not missing, missing
    assert str(run.snapshot(7)).replace("00007", "NNNNN") in documented
    assert tree.fit(layout.fit_id("e", "i", 3)) == tree.run("e", "i", 3) == layout.RunDir(PurePosixPath("results/e/i/seed_3"))
    assert layout.seed_of(PurePosixPath("results/e/i/seed_3")) == 3 and layout.seed_of("x/seed_a") is None
    assert layout.snapshot_iteration(run.snapshot(120).name) == 120 and layout.snapshot_iteration("iter_x.png") is None
    text = (ROOT / "docs" / "LAYOUT.md").read_text()
    for name in (layout.BUNDLE_MANIFEST, layout.PART_JSON, layout.PREVIEW, layout.BASELINES_JSON):
        assert f"`{name}`" in text or f"/{name}" in text, name


def test_docs_layout_names_each_types_paths() -> None:
    """docs/LAYOUT.md's "In code" table names every type of pipeline/layout.py with the paths it
    gives, and each one it names exists."""
    import re

    from pipeline import layout

    text = (ROOT / "docs" / "LAYOUT.md").read_text().split("## In code", 1)[1]
    rows = {m[1]: set(re.findall(r"`\.(\w+)", m[2])) for m in re.finditer(r"^\| [^|]+ \| `(\w+)` \| (.+) \|$", text, re.M)}
    assert rows.keys() == {"Tree", "ExperimentDir", "CaseDir", "RunDir", "BaselinesDir"}, rows.keys()
    for name, attrs in rows.items():
        cls = getattr(layout, name)
        assert all(hasattr(cls, a) for a in attrs), (name, [a for a in attrs if not hasattr(cls, a)])
        paths = {a for a, v in vars(cls).items() if isinstance(v, property) and a != "records"}
        assert paths <= attrs, (name, sorted(paths - attrs))


def test_the_experiment_records_are_what_the_stages_write(smoke_outputs: Path) -> None:
    """One function builds each experiment.json: the smoke run's files are exactly its records."""
    import json

    from pipeline import layout

    tree = layout.Tree(smoke_outputs)
    for record in sorted(tree.corrupted.glob(f"*/{layout.EXPERIMENT_JSON}")):
        info = json.loads(record.read_text())
        corruption = {k: v for k, v in info.items() if k not in ("experiment", "task", "profile", "active", "images", "seed")}
        assert info == layout.corrupted_experiment(info["experiment"], info["task"], corruption, info["profile"], info["active"],
                                                   info["images"], info["seed"])
        done = json.loads(tree.results_of(record.parent.name).record.read_text())
        runs = layout.find_runs(tree.results, [record.parent.name])
        assert done == layout.results_experiment(record.parent.name, info["profile"], info["active"],
                                                 [r.image for r in runs], [r.seed for r in runs])
        assert sorted(done["images"]) == sorted(info["images"])


def test_evaluate_and_the_dashboard_read_the_runs_alike(smoke_outputs: Path) -> None:
    """per_image.csv's DIP rows are what the shared reader makes of the run.json files, and the
    dashboard's rows of the runs (before `dip evaluate`) are the same rows."""
    import pandas as pd

    from dashboard import load
    from pipeline import layout

    tree = layout.Tree(smoke_outputs)
    written = pd.read_csv(tree.metric(layout.PER_IMAGE_CSV))
    dip_rows = written[written["seed"].notna()].reset_index(drop=True)
    runs = layout.find_runs(tree.results)
    rows, curves = layout.collect(tree.results, list(dict.fromkeys(r.experiment for r in runs)), {})
    assert len(rows) == len(dip_rows) > 0 and len(curves) == len(pd.read_csv(tree.metric(layout.CURVES_CSV)))
    assert {layout.fit_id(e, i, s) for e, i, s in zip(dip_rows["experiment"], dip_rows["image"], dip_rows["seed"].astype(int))} <= {r.id for r in runs}
    mine = load.run_rows(smoke_outputs)
    key = ["experiment", "image", "method", "seed"]
    merged = dip_rows.merge(mine, on=key, suffixes=("", "_dashboard"))
    assert len(merged) == len(dip_rows) == len(mine)
    for col in ("psnr", "ssim", "seconds"):
        assert (merged[col] - merged[f"{col}_dashboard"]).abs().max() < 1e-9, col

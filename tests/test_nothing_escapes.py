"""Issue 27, "nothing lost, nothing escapes" (part 3): hostile inputs to the CLI, the Restore
worker, the dashboard and bundles are refused with one line, never followed outside, never shown as
live Markdown."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dip.metrics import to_uint8
from pipeline.cli import app

runner = CliRunner()
FAST = ["--iterations", "2", "--preset", "quick", "--device", "cpu", "--log-every", "1", "--snapshots", ""]


def _one_line_error(result, needle: str) -> None:
    assert result.exit_code != 0
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert needle in lines[0], lines[0]


@pytest.fixture
def img(tmp_path: Path, camera64: np.ndarray) -> Path:
    folder = tmp_path / "img"
    folder.mkdir()
    Image.fromarray(to_uint8(camera64)).save(folder / "c.png")
    Image.fromarray(to_uint8(camera64)).save(folder / "d.png")
    return folder


# --- 1. --status never replaces an input or a file that is not dip's own status -------------------

@pytest.mark.parametrize("status, needle", [("c.json", "would overwrite the input"), ("d.png", "must end in .json"),
                                            ("e.json", "is not a status file of dip")])
def test_status_never_replaces_an_input_or_a_users_file(tmp_path: Path, img: Path, status: str, needle: str) -> None:
    (img / "e.json").write_text('{"mine": 1}')
    (img / "e.png").write_bytes(b"mine")
    before = {p.name: p.read_bytes() for p in img.iterdir()}
    result = runner.invoke(app, ["restore", str(img / "c.png"), "--out", str(tmp_path / "r3"), "--status", str(img / status), *FAST])
    _one_line_error(result, needle)
    assert {p.name: p.read_bytes() for p in img.iterdir()} == before
    assert not (tmp_path / "r3").exists()


def test_status_image_of_a_users_png_is_refused(tmp_path: Path, img: Path) -> None:
    """d.png is not an input here, but it is the user's: --status img/d.json would replace it."""
    result = runner.invoke(app, ["restore", str(img / "c.png"), "--out", str(tmp_path / "r3"), "--status", str(img / "d.json"), *FAST])
    _one_line_error(result, "is not a status file of dip")


def test_status_replaces_its_own_earlier_output(tmp_path: Path, img: Path) -> None:
    status = tmp_path / "s" / "progress.json"
    for out in ("r1", "r2"):  # the second run replaces the first run's status and image
        result = runner.invoke(app, ["restore", str(img / "c.png"), "--out", str(tmp_path / out), "--status", str(status), *FAST])
        assert result.exit_code == 0, result.output
    assert status.is_file() and status.with_suffix(".png").is_file()


# --- 2. the Restore worker trusts no job.json field ------------------------------------------------

def _job(user_runs: Path, **fields):
    from dashboard import jobs

    request = {"kind": "restore", "name": "photo", "source": "photo.png", "task": "denoise", "factor": 4, "preset": "smoke",
               "params": None, "input": "input.png", "mask": None, "gt": None, "iterations": 2, "log_every": 1,
               "snapshots": [0, 2], "speed_key": "k", **fields}
    return jobs.submit(user_runs, request, {"input.png": b"\x89PNG not really"})


@pytest.mark.parametrize("fields, needle", [
    ({"name": "../../escaped"}, "not a plain folder name"), ({"name": "/tmp/abs"}, "not a plain folder name"),
    ({"input": "../../../../img/b64.png"}, "not an upload of this job"), ({"input": "/etc/passwd"}, "not an upload of this job"),
    ({"gt": "../gt.png"}, "not an upload of this job"), ({"iterations": "many"}, "iterations and log_every"),
    ({"task": "sr", "factor": 1000}, "factor must be"),
])
def test_a_hostile_job_json_is_refused_before_anything_runs(tmp_path: Path, fields: dict, needle: str, monkeypatch) -> None:
    from dashboard import jobs, worker

    user_runs = tmp_path / "root" / "user-runs"
    job = _job(user_runs, **fields)
    monkeypatch.setattr(worker.subprocess, "Popen", lambda *a, **k: pytest.fail("a fit was started"))
    with pytest.raises(ValueError, match=needle):
        worker.run_job(user_runs, job, [])
    (job.path / "out").mkdir()  # as if a fit had ended: finish refuses too, nothing moves out of user-runs/
    with pytest.raises(ValueError, match=needle):
        worker.finish(user_runs, job)
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["user-runs"]
    assert [p.name for p in user_runs.iterdir()] == [jobs.QUEUE]


def test_an_upload_that_is_a_link_is_refused(tmp_path: Path) -> None:
    from dashboard import jobs

    user_runs = tmp_path / "user-runs"
    job = _job(user_runs)
    (job.path / "input.png").unlink()
    (job.path / "input.png").symlink_to("/etc/passwd")
    with pytest.raises(ValueError, match="not a regular file"):
        jobs.check_request(job)
    jobs.check_request(_job(user_runs, iterations=3))  # an honest job passes


# --- 3, 14. the Restore page reads its images one safe way, wherever the user-runs folder is ------

def _png(path: Path, value: int = 7) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)
    return path.read_bytes()


def _user_run(user_runs: Path, name: str = "photo-20260101-000000", **meta) -> Path:
    import json

    run = user_runs / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"task": "denoise", "preset": "smoke", "device": "cpu", "iterations_run": 4, "wall_seconds": 1.0}))
    (run / "meta.json").write_text(json.dumps({"task": "denoise", "source": "photo.png", **meta}))
    return run


@pytest.fixture
def page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A results root whose worker lock this test holds (the page starts no worker); returns a page opener."""
    import fcntl
    import os

    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from dashboard import jobs

    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("DIP_RESULTS", str(root))
    monkeypatch.delenv("DIP_USER_RUNS", raising=False)

    def open_page(user_runs: Path, name: str = "restore") -> "AppTest":
        queue = jobs.queue_dir(user_runs)
        queue.mkdir(parents=True, exist_ok=True)
        fd = os.open(queue / jobs.LOCK, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py"), default_timeout=60).run()
        at.switch_page(f"views/{name}.py").run()
        os.close(fd)
        assert not at.exception, [e.message for e in at.exception]
        return at

    return root, open_page


def _texts(at) -> str:
    kinds = ("markdown", "caption", "info", "warning", "error", "success", "subheader", "title")
    return "\n".join(str(e.value) for kind in kinds for e in getattr(at, kind))


def test_a_restored_png_linked_outside_is_neither_shown_nor_downloadable(tmp_path: Path, page) -> None:
    root, open_page = page
    run = _user_run(root / "user-runs")
    _png(tmp_path / "secret" / "outside.png", 200)
    (run / "restored.png").symlink_to(tmp_path / "secret" / "outside.png")
    at = open_page(root / "user-runs")
    assert "Your restorations (1)" in [s.value for s in at.subheader]
    assert any("outside the results folder" in w.value for w in at.warning)
    assert not at.get("download_button")


def test_user_runs_elsewhere_are_shown_and_downloadable(tmp_path: Path, page, monkeypatch: pytest.MonkeyPatch) -> None:
    root, open_page = page
    elsewhere = tmp_path / "mine" / "user-runs"
    monkeypatch.setenv("DIP_USER_RUNS", str(elsewhere))
    run = _user_run(elsewhere)
    data = _png(run / "restored.png")
    at = open_page(elsewhere)
    assert not any("outside the results folder" in w.value for w in at.warning), _texts(at)
    (button,) = at.get("download_button")
    assert button.proto.label == "Download restored.png"
    assert len(data) > 0


# --- 4. strings the dashboard did not write are shown as text, never as live Markdown -------------

SHOWN = {"markdown", "caption", "write", "warning", "error", "info", "success", "subheader", "title", "header", "toast", "expander"}
RENDERED = {"md_text", "md_code", "md_document"}  # dashboard/ui.py: the one renderer
RENDERED_SUFFIX = "_rendered"  # a variable or function whose value is rendered text (each is checked where it is set)
NUMBERS = {"len", "int", "float", "round", "duration"}  # numbers, or a duration made of numbers (restore.duration)


def _safe(node) -> bool:
    """Whether an expression shown as Markdown is built only of literals, named constants, formatted
    numbers and the renderer's output."""
    import ast

    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.JoinedStr):
        return all(_safe(v) for v in node.values)
    if isinstance(node, ast.FormattedValue):
        return node.format_spec is not None or _safe(node.value)
    if isinstance(node, (ast.Name, ast.Attribute)):  # a module constant (NO_TRUTH, layout.REPORT_MD), or rendered text
        name = node.id if isinstance(node, ast.Name) else node.attr
        return name.isupper() or name.endswith(RENDERED_SUFFIX)
    if isinstance(node, ast.BinOp):
        return _safe(node.left) and _safe(node.right)
    if isinstance(node, ast.IfExp):
        return _safe(node.body) and _safe(node.orelse)
    if isinstance(node, ast.BoolOp):
        return all(_safe(v) for v in node.values)
    if isinstance(node, (ast.GeneratorExp, ast.ListComp)):
        return _safe(node.elt)
    if isinstance(node, (ast.List, ast.Tuple)):
        return all(_safe(e) for e in node.elts)
    if isinstance(node, ast.Call):
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name == "join" and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Constant):
            return all(_safe(a) for a in node.args)
        return name in RENDERED or name in NUMBERS or name.endswith(RENDERED_SUFFIX)
    return False


def test_no_dashboard_module_shows_an_unrendered_string() -> None:
    import ast

    bad = []
    for path in sorted((Path(__file__).resolve().parents[1] / "dashboard").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SHOWN and node.args
                    and not (isinstance(node.func.value, ast.Name) and node.func.value.id in ("os", "sys")) and not _safe(node.args[0])):
                bad.append(f"{path.name}:{node.lineno}: {ast.unparse(node)[:120]}")
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id.endswith(RENDERED_SUFFIX) for t in node.targets) \
                    and not _safe(node.value):
                bad.append(f"{path.name}:{node.lineno}: {ast.unparse(node)[:120]}")
            elif isinstance(node, ast.FunctionDef) and node.name.endswith(RENDERED_SUFFIX):
                bad.extend(f"{path.name}:{r.lineno}: {ast.unparse(r)[:120]}" for r in ast.walk(node)
                           if isinstance(r, ast.Return) and not (r.value is not None and _safe(r.value)))
    assert not bad, "shown without dashboard.ui.md_text / md_code / md_document:\n" + "\n".join(bad)


def test_the_renderer_leaves_no_link_image_or_directive() -> None:
    from dashboard import ui

    hostile = "x ![a](https://evil.example/x.png) [l](http://e) <img src=x onerror=y> :red[x] www.evil.example $x$\n# h"
    text = ui.md_text(hostile)
    assert not re.search(r"[\[\]<>@\n]|://|www\.", re.sub(r"\\.", "", text))  # every character of a link, image or HTML escaped
    assert ui.md_code("a`b") == "``a`b``" and ui.md_code("x\ny") == "`x y`"
    doc = ui.md_document("| m | v |\n|---|---|\n| ![i](http://e/i.png) | `[k](x)` www.e.com <b> |\n[r]: http://e/r.png")
    assert "| m | v |" in doc and "`[k](x)`" in doc  # tables and code stay as they are
    plain = re.sub(r"\\.", "", doc.replace("`[k](x)`", ""))  # what is left unescaped outside code
    assert not re.search(r"[\[\]<>]|www\.|://", plain), plain


HOSTILE = "![x](https://evil.example/p.png) [link](https://evil.example/) :red[y]"


def _live(texts: str) -> bool:
    """Whether Markdown source would render a link or image (an unescaped ``](`` or ``<http``)."""
    plain = re.sub(r"\\.", "", texts)
    return "](" in plain or "<http" in plain or ":red[" in plain


def test_hostile_fields_show_as_text_on_the_restore_page(tmp_path: Path, page) -> None:
    import json

    from dashboard import jobs, worker

    root, open_page = page
    user_runs = root / "user-runs"
    run = _user_run(user_runs, source=HOSTILE)
    (run / "run.json").write_text(json.dumps({"task": "denoise", "preset": HOSTILE, "device": HOSTILE, "iterations_run": 4}))
    _png(run / "restored.png")
    job = _job(user_runs, source=HOSTILE)
    worker.mark(job, "failed", finished=1.0, message=HOSTILE)
    queued = _job(user_runs, source=HOSTILE + " 2")
    assert jobs.load(queued.path).phase == "queued"
    at = open_page(user_runs)
    shown = _texts(at)
    assert "evil.example" in shown and not _live(shown), shown


def test_report_md_links_and_images_are_not_live(tmp_path: Path, page) -> None:
    root, open_page = page
    (root / "metrics").mkdir()
    (root / "metrics" / "report.md").write_text(f"# Report\n\n| a | b |\n|---|---|\n| {HOSTILE} | 1 |\n\n<img src=https://evil.example/i.png>\n")
    at = open_page(root / "user-runs", "overview")
    shown = _texts(at)
    assert "evil.example" in shown and not _live(shown), shown


# --- 8. every float setting has a finite range that means something -------------------------------

@pytest.mark.parametrize("key, value, needle", [
    ("reg_noise_std", float("inf"), "a finite number"), ("backtrack_drop_db", float("nan"), "a finite number"),
    ("lr", float("inf"), "a finite number"), ("lr", 1e300, "lr (the learning rate) must be a finite number in (0, 1]"),
    ("backtrack_drop_db", -5, "backtrack_drop_db must be a finite number in (0, 100]"),
    ("reg_noise_std", 50, "reg_noise_std must be a finite number in [0, 1]"), ("tv_weight", 1e9, "tv_weight"),
])
def test_a_float_setting_that_cannot_be_meant_is_refused(tmp_path: Path, key: str, value: float, needle: str) -> None:
    import yaml

    from pipeline.settings import load_params

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["profiles"]["quick"]["fit"]["denoise"][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ValueError, match=re.escape(needle)):
        load_params(path)


def test_restore_refuses_an_infinite_setting_before_fitting(tmp_path: Path, img: Path) -> None:
    import yaml

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["profiles"]["quick"]["fit"]["denoise"]["reg_noise_std"] = float("inf")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    result = runner.invoke(app, ["restore", str(img / "c.png"), "--out", str(tmp_path / "r"), "--params", str(path), *FAST])
    _one_line_error(result, "reg_noise_std")
    assert not (tmp_path / "r").exists()


def test_fit_and_net_configs_check_their_ranges() -> None:
    from dip.config import FitConfig, NetConfig

    for bad in ({"lr": 1e300}, {"backtrack_drop_db": -5.0}, {"exp_weight": float("nan")}, {"input_noise_scale": float("inf")}):
        with pytest.raises(ValueError, match="must be a finite number"):
            FitConfig.from_dict(bad)
    with pytest.raises(ValueError, match="leaky_slope"):
        NetConfig.from_dict({"leaky_slope": float("inf")})
    FitConfig.from_dict({"lr": 0.01, "reg_noise_std": 1 / 30, "backtrack_drop_db": 5.0, "exp_weight": 0.99})


# --- 13. the Restore queue has a cap ---------------------------------------------------------------

def test_the_queue_is_capped_with_a_clear_message(tmp_path: Path) -> None:
    from dashboard import jobs

    user_runs = tmp_path / "user-runs"
    for i in range(jobs.MAX_PENDING):
        _job(user_runs, iterations=i + 1)
    with pytest.raises(jobs.QueueFull, match=f"at most {jobs.MAX_PENDING}.*wait for some to finish"):
        _job(user_runs, iterations=999)
    assert len(jobs.pending(user_runs)) == jobs.MAX_PENDING
    assert _job(user_runs, iterations=1).id == jobs.pending(user_runs)[0].id  # the same job again is still the one queued


# --- 11. an upload's size is read from its header before it is decoded ----------------------------

def test_a_huge_upload_is_refused_from_its_header(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from PIL import Image as PILImage
    from PIL import ImageFile

    from dashboard import uploads

    buf = io.BytesIO()
    PILImage.new("I;16", (3000, 3000)).save(buf, format="PNG")  # 9 M pixels, 16-bit, a few KB
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded"))
    with pytest.raises(uploads.UploadError, match="3000x3000 = 9,000,000 pixels, more than the limit.*nothing was decoded"):
        uploads.decode("big.png", buf.getvalue())


# --- 15. one lock per output folder, one image or several ------------------------------------------

def test_one_image_and_several_into_one_output_take_one_lock(tmp_path: Path, img: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.execution import batch
    from pipeline.files import output_lock

    out = tmp_path / "O"
    with output_lock(out):  # what `dip restore a.png --out O` holds while it fits
        result = runner.invoke(app, ["restore", str(img / "c.png"), str(img / "d.png"), "--out", str(out), *FAST])
        _one_line_error(result, "is being written by another dip process")
    assert not out.exists()
    inner: list = []  # and the other way round: while several images are fitted into O, one image into O is refused
    monkeypatch.setattr(batch, "_restore", lambda *a, **k: inner.append(
        runner.invoke(app, ["restore", str(img / "c.png"), "--out", str(out), "--force", *FAST])))
    assert runner.invoke(app, ["restore", str(img / "c.png"), str(img / "d.png"), "--out", str(out), *FAST]).exit_code == 0
    _one_line_error(inner[0], "is being written by another dip process")


# --- 12. a network too large to be meant is refused before it is built -----------------------------

@pytest.mark.parametrize("net", [{"width": 10_000_000}, {"input_depth": 10_000_000}, {"kernel_down": 10_001},
                                 {"arch": "resnet", "resnet_channels": 100_000}])
def test_a_network_too_large_is_refused_before_it_is_built(tmp_path: Path, img: Path, net: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import yaml

    from dip import network

    monkeypatch.setattr(network.SkipNet, "__init__", lambda *a, **k: pytest.fail("built"))
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["profiles"]["quick"]["net"].update(net)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    start = time.monotonic()
    result = runner.invoke(app, ["restore", str(img / "c.png"), "--out", str(tmp_path / "r"), "--params", str(path), *FAST])
    _one_line_error(result, "lower width, input_depth or the kernel sizes")
    assert time.monotonic() - start < 10 and not (tmp_path / "r").exists()


def test_the_size_estimate_is_the_networks_own() -> None:
    from dip.config import NetConfig, network_size
    from dip.network import SkipNet, count_parameters

    for net in ({}, {"levels": 3, "width": 16, "skip": 2}, {"kernel_down": 5, "input_depth": 3}):
        cfg = NetConfig.from_dict(net)
        weights, _ = network_size(cfg)
        assert 0.95 < weights / count_parameters(SkipNet(cfg, 3)) <= 1.0  # biases and norms aside


def test_a_deeply_nested_run_json_is_one_warning_on_the_restore_page(tmp_path: Path, page) -> None:
    root, open_page = page
    run = _user_run(root / "user-runs")
    (run / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    _png(run / "restored.png")
    at = open_page(root / "user-runs")
    assert not at.exception and "Traceback" not in _texts(at) and "could not be shown" not in _texts(at)

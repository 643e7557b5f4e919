"""The publishing run (``dip publish-run``): fit keys, priority, budget, resume from a bundle, parts.

The runs here use the smoke profile's scikit-image images (no mirror, no network), a few of its
experiments, in this process, and a fake clock (one second per reading) so that where a budget
cuts a run does not depend on how busy the machine is.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import dip
from dip.config import NetConfig
from pipeline.files import save_array, save_image, save_json
from pipeline.cli import app
from pipeline.outputs import publish_run
from pipeline.execution.keys import EXECUTION_FIELDS, Fit, fit_key
from pipeline.execution.budget import Costs
from pipeline.outputs.publish_run import Planned, load_choice, ordered, ordered_images, plan, published_keys, run
from pipeline.images.manifest import load_manifest, sha256_bytes
from pipeline.outputs.part_writer import KEPT, PART_FORMAT, FinishedFit, PartWriter, fit_files
from pipeline.settings import FitSettings, Profile, job_settings, load_params

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ["inpaint_p50", "denoise_s25"]  # smoke images from scikit-image: no mirror needed


class FakeClock:
    """Every reading is one second later than the one before."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def smoke_params(tmp_path: Path, seeds: list[int] = [0], experiments: list[str] = EXPERIMENTS) -> Path:
    """params.yaml with the smoke profile cut to ``experiments`` and 10 iterations per fit."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["seeds"] = seeds
    p["engine"]["threads"] = 1
    p["profiles"]["smoke"]["experiments"] = experiments
    for fit in p["profiles"]["smoke"]["fit"].values():
        fit.update(iterations=10, snapshots=[0, 10])
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


def go(tmp_path: Path, name: str, budget: float, params: Path, work: Path, **options: Any) -> tuple[dict[str, Any], list[dict[str, Any]], Path]:
    """One smoke publishing run with the fake clock: (summary, log lines, out folder)."""
    out = tmp_path / name
    summary = run(params_path=params, out=out, budget=budget, profile_name="smoke", work=work, manifest=ROOT / "data" / "manifest.yaml",
                  margin=0, clock=FakeClock(), commit="0" * 40, **options)
    lines = [json.loads(line) for line in (out / publish_run.LOG).read_text().splitlines()]
    return summary, lines, out


def decisions(lines: list[dict[str, Any]]) -> dict[str, str]:
    """The last decision of each fit in a log."""
    out: dict[str, str] = {}
    for line in lines:
        if "fit" in line and line["event"] not in ("part full", "too large"):
            out[line["fit"]] = line["event"]
    return out


def read_parts(out: Path, into: Path) -> list[Path]:
    folders = []
    for tarball in sorted(out.glob("part-*.tar.gz")):
        with tarfile.open(tarball) as tar:
            members = tar.getmembers()
            assert all(m.isfile() and not m.name.startswith("/") and ".." not in m.name.split("/") for m in members)
            tar.extractall(into, filter="data")
        folders.append(into / tarball.name.removesuffix(".tar.gz"))
    return folders


def manifest_of(parts: list[Path]) -> dict[str, Any]:
    """A minimal bundle manifest holding the parts' fits (what the bundle's merge records)."""
    fits = {}
    for part in parts:
        fits.update({k: {"fit_key": v["fit_key"]} for k, v in json.loads((part / "part.json").read_text())["fits"].items()})
    return {"format": "dip-results-bundle/1", "fits": fits}


# --- the fit key ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def inpaint_settings() -> FitSettings:
    """The smoke profile's job settings of inpaint_p50, seed 0, on the CPU."""
    params = load_params(ROOT / "params.yaml")
    prof = Profile("smoke", params["profiles"]["smoke"], params["figures"])
    return job_settings(prof.experiment("inpaint_p50"), prof, 0, "cpu")


@pytest.fixture
def case(tmp_path: Path, camera64: np.ndarray, inpaint_settings: FitSettings) -> tuple[Path, FitSettings]:
    """A corrupted inpainting case folder and its job settings."""
    folder = tmp_path / "case"
    save_image(folder / "ground_truth.png", camera64)
    save_image(folder / "mask.png", (camera64 > 0.5).astype(np.float32))
    save_array(folder / "observation.npy", camera64 * (camera64 > 0.5))
    save_json(folder / "meta.json", {"experiment": "inpaint_p50", "task": "inpaint", "image": "camera", "set": "embedded", "drop": 0.5,
                                     "seed": 11, "base_seed": 0, "size": [64, 64], "profile": "smoke"})
    return folder, inpaint_settings


def test_fit_key_ignores_execution_options_and_the_device(case: tuple[Path, FitSettings]) -> None:
    folder, settings = case
    key = fit_key(folder, settings)
    assert {"graph", "compile", "channels_last", "check_every"} <= set(EXECUTION_FIELDS)
    changed = dataclasses.replace(settings, device="cuda:3").with_fit(graph=True, compile=True, channels_last=True, check_every=7)
    assert fit_key(folder, changed) == key


@pytest.mark.parametrize("where,field,value", [
    ("fit", "lr", 0.02), ("fit", "iterations", 21), ("fit", "precision", "bf16"), ("fit", "reg_noise_std", 0.0),
    ("net", "input_depth", 16), ("net", "upsample", "nearest"), ("fit", "seed", 1), (None, "log_every", 10), (None, "snapshots", (0,)),
    (None, "profile", "quick"),
])
def test_fit_key_changes_with_every_setting_of_the_numbers(case: tuple[Path, FitSettings], where: str | None, field: str, value: Any) -> None:
    folder, settings = case
    if where == "fit":
        changed = settings.with_fit(**{field: value})
    elif where == "net":
        changed = dataclasses.replace(settings, net=NetConfig.from_dict({**settings.net.to_dict(), field: value}))
    else:
        changed = dataclasses.replace(settings, **{field: value})
    assert fit_key(folder, changed) != fit_key(folder, settings)


def test_fit_key_follows_the_inputs_identity_not_their_float_bytes(case: tuple[Path, FitSettings]) -> None:
    folder, settings = case
    key = fit_key(folder, settings)
    obs = np.load(folder / "observation.npy")
    save_array(folder / "observation.npy", np.nextafter(obs, 1).astype(np.float32))  # a rounding-level difference
    from PIL import Image

    with Image.open(folder / "ground_truth.png") as im:  # the same pixels, compressed otherwise
        im.save(folder / "ground_truth.png", compress_level=0)
    assert fit_key(folder, settings) == key
    meta = json.loads((folder / "meta.json").read_text())
    save_json(folder / "meta.json", {**meta, "seed": 12})  # another corruption seed
    assert fit_key(folder, settings) != key
    save_json(folder / "meta.json", meta)
    save_image(folder / "mask.png", np.ones((64, 64), np.float32))  # another mask
    assert fit_key(folder, settings) != key


def test_fit_key_holds_dip_numerics(case: tuple[Path, FitSettings], monkeypatch: pytest.MonkeyPatch) -> None:
    folder, settings = case
    key = fit_key(folder, settings)
    monkeypatch.setattr(dip, "NUMERICS", dip.NUMERICS + 1)
    assert fit_key(folder, settings) != key


def test_the_choice_changes_speed_never_the_key(tmp_path: Path, case: tuple[Path, FitSettings]) -> None:
    folder, settings = case
    path = tmp_path / "choice.json"
    path.write_text(json.dumps({"fit": {"graph": False, "check_every": 50, "lr": 1.0, "precision": "bf16"}, "group": "4",
                                "many": {"mode": "streams", "n": 4}, "measured": {}}))
    fit, group, notes = load_choice(path)
    assert fit == {"graph": False, "check_every": 50, "many": "streams"} and group == "4"
    assert any("fit.lr ignored" in n for n in notes) and any("fit.precision ignored" in n for n in notes)
    assert fit_key(folder, settings.with_fit(**fit)) == fit_key(folder, settings)
    for bad in ("[1, 2]", "not json", json.dumps({"group": "many"}), json.dumps({"fit": {"check_every": 0}}), json.dumps({"fit": [1]}),
                json.dumps({"fit": {"check_every": "often"}})):
        path.write_text(bad)
        with pytest.raises(ValueError):
            load_choice(path)


def test_published_keys(tmp_path: Path) -> None:
    assert published_keys(None) == {} and published_keys(tmp_path / "not-yet") == {}
    bundle = tmp_path / "b"
    save_json(bundle / "manifest.json", {"format": "dip-results-bundle/1"})  # a bundle from before per-fit entries
    assert published_keys(bundle) == {}
    save_json(bundle / "manifest.json", {"fits": {"inpaint_p50/man/seed_0": {"fit_key": "k1", "commit": "c"}, "x/y/seed_0": {}}})
    assert published_keys(bundle) == {"inpaint_p50/man/seed_0": "k1"}
    save_json(bundle / "manifest.json", {"fits": ["inpaint_p50/man/seed_0"]})
    with pytest.raises(ValueError, match="'fits' is not a mapping"):
        published_keys(bundle)
    (bundle / "manifest.json").write_text("{")
    with pytest.raises(ValueError, match="not a JSON file"):
        published_keys(bundle)


# --- the plan: priority order -----------------------------------------------------------------------

def fake_corrupted(root: Path, prof: Profile) -> None:
    """A corrupted tree of ``prof`` with the manifest's image names and tiny cases (for planning only)."""
    manifest = load_manifest(ROOT / "data" / "manifest.yaml")
    for exp in prof.experiments:
        entries = manifest.select([exp.image] if exp.is_figure else prof.image_specs(exp.task))
        save_json(root / exp.id / "experiment.json", {"experiment": exp.id, "task": exp.task, "images": [e.name for e in entries]})
        for e in entries:
            case = root / exp.id / e.name
            save_json(case / "meta.json", {"experiment": exp.id, "task": exp.task, "image": e.name, "set": e.set, "size": [64, 64]})
            save_array(case / "observation.npy", np.zeros((64, 64), np.float32))
            save_image(case / "observation.png", np.zeros((64, 64), np.float32))


def test_the_paper_profile_is_planned_table1_first_one_seed_first(tmp_path: Path) -> None:
    params = load_params(ROOT / "params.yaml")
    prof = Profile("paper", params["profiles"]["paper"], params["figures"])
    fake_corrupted(tmp_path, prof)
    jobs = plan(prof, tmp_path, tmp_path / "results", [0, 1], "cpu", {})
    ids = [j.id for j in jobs]
    assert ids[:2] == ["inpaint_p50/peppers/seed_0", "inpaint_p50/man/seed_0"]
    experiments = list(dict.fromkeys(j.exp for j in jobs))
    figures = [e for e in params["profiles"]["paper"]["experiments"] if e in params["figures"]]
    assert experiments == ["inpaint_p50", "sr_x4", "denoise_s25", "denoise_s8.5", "sr_x8", *figures]
    assert [j.fit.seed for j in jobs] == sorted(j.fit.seed for j in jobs), "a second seed before every experiment had its first"
    assert len(jobs) == 2 * (11 + 19 + 9 + 9 + 19 + len(figures))
    sr = [j.fit.image for j in jobs if j.exp == "sr_x4" and j.fit.seed == 0]
    assert len(sr) == 19  # Set5 + Set14
    carried = {j.id.rsplit("/", 1)[0] for j in jobs if j.snapshots}
    assert carried == {"inpaint_p50/peppers", "inpaint_p50/man"} | {f"{f}/{j.fit.image}" for f in figures for j in jobs if j.exp == f}
    assert len({j.key for j in jobs}) == len(jobs)


def test_priority_helpers() -> None:
    assert ordered(["fig7_text", "sr_x8", "denoise_s8.5", "inpaint_p50", "other", "sr_x4", "denoise_s25"]) == \
        ["inpaint_p50", "sr_x4", "denoise_s25", "denoise_s8.5", "sr_x8", "fig7_text", "other"]
    assert ordered_images("inpaint_p50", ["barbara", "man", "boat", "peppers"]) == ["peppers", "man", "barbara", "boat"]
    assert ordered_images("sr_x4", ["b", "a"]) == ["b", "a"]


def test_a_fit_of_a_known_shape_that_would_not_fit_is_not_started() -> None:
    fit = Planned(Fit(Path("c"), Path("o"), None, 1, "i"), "e/i/seed_1", "e", 1, "k", "shape", "family", 1000, 300, False)
    costs = Costs()
    assert costs.estimate(fit, 1) is None and costs.lower_bound(fit, 1) == 0.0
    costs.record(fit, 1, rate=0.01, overhead=2.0)
    costs.pack_s = 0.5
    assert costs.estimate(fit, 1) == pytest.approx(2.0 + 300 * 0.01 + 0.5)
    other = Planned(Fit(Path("c"), Path("o2"), None, 0, "j"), "e/j/seed_0", "e", 0, "k2", "shape2", "family", 4000, 300, False)
    assert costs.estimate(other, 1) is None and costs.lower_bound(other, 1) == pytest.approx(0.5 * 0.01 / 1000 * 4000 * 300)


# --- runs cut by their budget, resumed from the bundle -------------------------------------------------
# Two experiments × seeds 0 and 1 = four fits: inpaint s0, denoise s0 (each the probe of its shape),
# inpaint s1, denoise s1 (shapes known: decided before they start).

@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One uncut smoke run; its log gives the fake second at which each decision fell. The
    inpainting image counts as a gallery image (its snapshots travel)."""
    tmp = tmp_path_factory.mktemp("calibrate")
    params = smoke_params(tmp, seeds=[0, 1])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(publish_run, "GALLERY", {"inpaint_p50": ("camera",)})
        summary, lines, out = go(tmp, "out", 10_000, params, tmp / "work")
    return {"params": params, "summary": summary, "lines": lines, "out": out, "tmp": tmp}


def started(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [x for x in lines if x["event"] == "started"]


def test_an_uncut_run_fits_everything_once_in_priority_order(calibrated: dict[str, Any]) -> None:
    summary, lines = calibrated["summary"], calibrated["lines"]
    assert summary["decisions"] == {"finished": 4}
    assert [x["fit"] for x in started(lines)] == ["inpaint_p50/camera/seed_0", "denoise_s25/astronaut/seed_0",
                                                  "inpaint_p50/camera/seed_1", "denoise_s25/astronaut/seed_1"]
    assert [x["probe"] for x in started(lines)] == [True, True, False, False]  # seed 1 has the shapes seed 0 measured
    assert all(x["estimate_s"] > 0 for x in started(lines)[2:])
    assert lines[-1]["event"] == "end" and len(lines[-1]["costs"]) == 2


def test_a_cut_run_then_a_second_one_refits_nothing_the_first_published(tmp_path: Path, calibrated: dict[str, Any]) -> None:
    params, lines = calibrated["params"], calibrated["lines"]
    known = started(lines)[2]  # inpaint seed 1: its estimate is known before it starts
    budget = 10_000 - known["left_s"] + known["estimate_s"] / 2  # then half of what it needs is left
    summary, cut, out = go(tmp_path, "cut", budget, params, tmp_path / "work1")
    first = ["inpaint_p50/camera/seed_0", "denoise_s25/astronaut/seed_0"]
    assert decisions(cut) == {**{f: "finished" for f in first}, "inpaint_p50/camera/seed_1": "not started", "denoise_s25/astronaut/seed_1": "not started"}
    refused = [x for x in cut if x["event"] == "not started"]
    assert all(x["needs_s"] > x["left_s"] and re.search(r"needs [\d.]+ s, [\d.]+ s left", x["note"]) for x in refused)
    assert not (tmp_path / "work1" / "results" / "inpaint_p50/camera/seed_1").exists()

    parts = read_parts(out, tmp_path / "parts1")
    assert set(manifest_of(parts)["fits"]) == set(first)
    bundle = tmp_path / "bundle"
    save_json(bundle / "manifest.json", manifest_of(parts))
    summary2, resumed, out2 = go(tmp_path, "second", 10_000, params, tmp_path / "work2", bundle=bundle)
    assert decisions(resumed) == {**{f: "skipped" for f in first}, "inpaint_p50/camera/seed_1": "finished", "denoise_s25/astronaut/seed_1": "finished"}
    assert [x["fit"] for x in started(resumed)] == ["inpaint_p50/camera/seed_1", "denoise_s25/astronaut/seed_1"]
    parts2 = read_parts(out2, tmp_path / "parts2")
    assert {k: v["fit_key"] for k, v in manifest_of(parts + parts2)["fits"].items()} == \
        {x["fit"]: x["fit_key"] for x in lines if x["event"] == "finished"}  # the uncut run's fits, with the same keys

    # once more on the second work folder: what it finished is returned from there, nothing is fitted
    summary3, again, out3 = go(tmp_path, "third", 10_000, params, tmp_path / "work2", bundle=bundle)
    assert not started(again) and summary3["decisions"] == {"skipped": 2, "reused": 2}
    assert set(manifest_of(read_parts(out3, tmp_path / "parts3"))["fits"]) == set(manifest_of(parts2)["fits"])


def test_a_probe_that_would_not_finish_is_stopped_and_writes_nothing(tmp_path: Path, calibrated: dict[str, Any]) -> None:
    second = started(calibrated["lines"])[1]  # denoise seed 0, the first fit of its shape
    summary, lines, out = go(tmp_path, "out", 10_000 - second["left_s"] + 3, calibrated["params"], tmp_path / "work")
    stopped = [x for x in lines if x["event"] == "stopped"]
    assert [x["fit"] for x in stopped] == [second["fit"]] and "nothing written" in stopped[0]["note"]
    assert stopped[0]["needs_s"] > stopped[0]["left_s"]
    assert not (tmp_path / "work" / "results" / second["fit"] / "run.json").exists()
    assert decisions(lines)["inpaint_p50/camera/seed_0"] == "finished"
    assert set(manifest_of(read_parts(out, tmp_path / "parts"))["fits"]) == {"inpaint_p50/camera/seed_0"}


def test_a_run_killed_mid_fit_keeps_every_finished_fit_in_its_parts(tmp_path: Path, calibrated: dict[str, Any]) -> None:
    second = started(calibrated["lines"])[1]
    kill_at = 10_000 - second["left_s"] + 3  # a few fake seconds into the second fit

    class Killer(FakeClock):
        def __call__(self) -> float:
            if super().__call__() == kill_at:
                raise KeyboardInterrupt  # what SIGTERM (the time limit's `timeout`) becomes in `dip`
            return self.t

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run(params_path=calibrated["params"], out=out, budget=10_000, profile_name="smoke", work=tmp_path / "work",
            manifest=ROOT / "data" / "manifest.yaml", margin=0, clock=Killer())
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("part-")) == [publish_run.LOG]  # no temporary file left
    lines = [json.loads(line) for line in (out / publish_run.LOG).read_text().splitlines()]
    assert [x["event"] for x in lines[-2:]] == ["interrupted", "end"] and lines[-2]["running"] == [second["fit"]]
    assert lines[-1]["decisions"] == {"finished": 1, "interrupted": 1, "not started": 2}
    assert set(manifest_of(read_parts(out, tmp_path / "parts"))["fits"]) == {"inpaint_p50/camera/seed_0"}


def test_the_part_is_self_describing(tmp_path: Path, calibrated: dict[str, Any]) -> None:
    [folder] = read_parts(calibrated["out"], tmp_path)
    info = json.loads((folder / "part.json").read_text())
    assert info["format"] == PART_FORMAT and info["commit"] == "0" * 40 and info["profile"] == "smoke"
    assert info["params_sha256"] == sha256_bytes(calibrated["params"].read_bytes())
    assert set(info["machine"]) >= {"device", "device_name", "torch", "cuda", "hostname"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["created"])
    assert info["experiments"] == {"inpaint_p50": {"task": "inpaint", "images": ["camera"]}, "denoise_s25": {"task": "denoise", "images": ["astronaut"]}}
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"part.json"}
    assert set(info["files"]) == on_disk
    assert all(sha256_bytes((folder / rel).read_bytes()) == digest for rel, digest in info["files"].items())
    work = calibrated["tmp"] / "work"
    assert len(info["fits"]) == 4
    for fit_id, entry in info["fits"].items():
        exp, image, seed = fit_id.split("/")
        run_json = json.loads((folder / "results" / fit_id / "run.json").read_text())
        assert entry["fit_key"] == run_json["fit_key"] and entry["iterations"] == run_json["iterations_run"]
        assert entry["wall_seconds"] == run_json["wall_seconds"] and "cuda" in run_json["versions"]
        assert entry["inputs"] == {p.name: sha256_bytes(p.read_bytes()) for p in (work / "data/corrupted" / exp / image).iterdir()
                                   if p.is_file() and p.name != ".dip-output"}
        assert {"run.json", "curve.csv", "restored.png"} <= {p.name for p in (folder / "results" / fit_id).iterdir()}
        assert (folder / "results" / fit_id / "snapshots").exists() == (exp == "inpaint_p50")  # the gallery's only
        assert (folder / "data/corrupted" / exp / image / "ground_truth.png").is_file()
        assert (folder / "data/corrupted" / exp / "experiment.json").is_file()
    assert sorted(p.name for p in (folder / "results/inpaint_p50/camera/seed_0/snapshots").iterdir()) == ["iter_00000.png", "iter_00010.png"]
    assert (folder / "data/profile.json").is_file()


def test_same_shape_fits_of_an_experiment_run_together_when_the_choice_groups_them(tmp_path: Path) -> None:
    params = smoke_params(tmp_path, experiments=["inpaint_p50"])
    p = yaml.safe_load(params.read_text())
    p["profiles"]["smoke"]["images"]["inpaint"] = ["embedded/camera", "embedded/moon"]  # both 48×48 gray
    params.write_text(yaml.safe_dump(p, sort_keys=False))
    (tmp_path / "choice.json").write_text(json.dumps({"fit": {"check_every": 5}, "group": "2"}))
    summary, lines, out = go(tmp_path, "out", 10_000, params, tmp_path / "work", choice=tmp_path / "choice.json")
    assert [(x["fit"], x["group"]) for x in started(lines)] == [("inpaint_p50/camera/seed_0", 2), ("inpaint_p50/moon/seed_0", 2)]
    assert summary["decisions"] == {"finished": 2}
    runs = [json.loads((tmp_path / "work/results/inpaint_p50" / i / "seed_0/run.json").read_text()) for i in ("camera", "moon")]
    assert [r["group_size"] for r in runs] == [2, 2] and all(r["fit"]["check_every"] == 5 for r in runs)


def sized_fit(root: Path, image: str, size: int = 10_000) -> FinishedFit:
    """A finished fit whose files have known sizes: three small ones, four PNG-sized ones."""
    rng = np.random.default_rng(len(image))
    case, run_dir = root / "data/corrupted/e" / image, root / "results/e" / image / "seed_0"
    for path, n in ((case / "meta.json", 100), (case / "ground_truth.png", size), (case / "observation.npy", size), (run_dir / "run.json", 100),
                    (run_dir / "curve.csv", 100), (run_dir / "restored.png", size), (run_dir / "final.png", size),
                    (run_dir / "snapshots/iter_00000.png", size)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.bytes(n))
    return FinishedFit(f"e/{image}/seed_0", "e", image, "k" + image, 1.0, 10, case, run_dir, snapshots=True)


def test_parts_split_at_their_size_limit(tmp_path: Path) -> None:
    fits = [sized_fit(tmp_path / "work", name) for name in "abc"]
    (tmp_path / "profile.json").write_text("{}")
    common = {"data/profile.json": tmp_path / "profile.json"}
    probe = PartWriter(tmp_path, "x", {}, common, 0)
    cost = {kept: probe._cost(None, fit_files(fits[0], kept)) for kept in KEPT}
    writer = PartWriter(tmp_path / "out", "part-x", {"profile": "smoke"}, common, limit=probe.base + cost["all"] + cost["essentials"] + 100, max_parts=2)
    placed = [writer.add(f) for f in fits]
    assert [(p["part"], p["kept"]) for p in placed] == [("part-x-1.tar.gz", "all"), ("part-x-2.tar.gz", "all"), ("part-x-1.tar.gz", "essentials")]
    assert all(t.stat().st_size <= writer.limit for t in (tmp_path / "out").iterdir())
    one, two = read_parts(tmp_path / "out", tmp_path / "parts")
    assert sorted(json.loads((one / "part.json").read_text())["fits"]) == ["e/a/seed_0", "e/c/seed_0"]
    assert sorted(p.name for p in (one / "results/e/c/seed_0").iterdir()) == ["curve.csv", "restored.png", "run.json"]
    assert (one / "data/corrupted/e/c/ground_truth.png").is_file() and (one / "data/corrupted/e/c/meta.json").is_file()
    assert (one / "results/e/a/seed_0/snapshots/iter_00000.png").is_file() and (one / "results/e/a/seed_0/final.png").is_file()
    assert (two / "data/profile.json").is_file()
    assert PartWriter(tmp_path / "out2", "part-z", {}, common, limit=probe.base + cost["essentials"] - 1).add(fits[0])["part"] is None
    assert not (tmp_path / "out2").exists() or not any((tmp_path / "out2").iterdir())


# --- the command ------------------------------------------------------------------------------------

def test_the_command_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["publish-run", "--budget", "0", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and result.output.count("error:") == 1 and "--budget" in result.output
    (tmp_path / "c.json").write_text("nope")
    result = runner.invoke(app, ["publish-run", "--budget", "60", "--out", str(tmp_path / "o"), "--choice", str(tmp_path / "c.json")])
    assert result.exit_code == 2 and "error: --choice" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()  # nothing written


@pytest.mark.integration
def test_gpu_run_script_dry_run_on_the_cpu(tmp_path: Path) -> None:
    """benchmarks/gpu_run.sh as the device runs it, on the smoke profile with a small budget (its
    images come with the package: the mirror is carried only where there is one)."""
    from conftest import copy_project, mirror_dir

    project = copy_project(tmp_path / "project")
    if mirror_dir() is not None:
        shutil.copytree(mirror_dir(), project / ".gpu-images")
    out = tmp_path / "OUT"
    import os
    import sys

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", "OUT": str(out), "DIP_GPU_PROFILE": "smoke",
           "DIP_GPU_BUDGET": "90", "DIP_MIRROR": "", "PYTHONPATH": "", "DIP_GPU_CHOICE": str(tmp_path / "gone.json")}
    proc = subprocess.run(["bash", "benchmarks/gpu_run.sh"], cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "warning: no choice file at" in proc.stdout  # a fresh machine without the first call's file: still runs
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and "env.txt" in files and publish_run.LOG in files
    assert any(f.startswith("part-") and f.endswith(".tar.gz") for f in files)
    log = [json.loads(line) for line in (out / publish_run.LOG).read_text().splitlines()]
    assert log[-1]["event"] == "end" and log[-1]["decisions"].get("finished", 0) >= 1


def test_gpu_run_script_without_images_for_the_paper_profile_stops_with_one_line(tmp_path: Path) -> None:
    """The paper profile's images must be carried: without them the script stops before any step."""
    import os
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", "OUT": str(tmp_path / "OUT"),
           "DIP_GPU_PROFILE": "paper", "DIP_MIRROR": str(tmp_path / "nothing-here"), "DIP_GPU_BUDGET": "60"}
    proc = subprocess.run(["bash", "benchmarks/gpu_run.sh"], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1 and "no images folder" in lines[0] and "carry it" in lines[0]
    assert sorted(p.name for p in (tmp_path / "OUT").iterdir()) == ["env.txt"]

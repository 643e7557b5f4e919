"""One fit's settings as one object (:class:`pipeline.settings.FitSettings`): its JSON form is, byte
for byte, the dictionary that ``job_settings`` returned before the type, so that every ``fit_key``
(recorded in the bundles of results-published/) and every ``settings_hash`` stays what it was."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import dip
from conftest import tiny_profile
from dip.config import EXECUTION_FIELDS, FitConfig, NetConfig
from pipeline.execution.keys import IDENTITY_FILES, case_key, code_hash, files_hash, fit_key, pixels_sha256, settings_hash
from pipeline.images.manifest import ImageEntry
from pipeline.layout import CaseDir
from pipeline.settings import Experiment, FitSettings, Profile, job_settings, load_params
from pipeline.stages.corrupt import write_case

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")


# --- the reference: the dictionary path as it was before FitSettings (copied, not imported) ---------

def old_job_settings(exp: Experiment, profile: Profile, seed: int, device: str) -> dict[str, Any]:
    fit, snapshots = profile.fit(exp)
    net_cfg = NetConfig.from_dict(profile.net(exp)).to_dict()  # validated, every field explicit
    fit_cfg = FitConfig.from_dict({**fit, "seed": seed})
    return {"net": net_cfg, "fit": fit_cfg.__dict__.copy(), "seed": seed, "device": device,
            "log_every": profile.log_every, "snapshots": snapshots, "profile": profile.name}


def old_settings_hash(case_dir: Path, settings: dict[str, Any]) -> str:
    blob = json.dumps({"settings": settings, "inputs": files_hash(case_dir), "code": code_hash()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def old_fit_key(case_dir: Path, settings: dict[str, Any]) -> str:
    drop = set(EXECUTION_FIELDS)
    numbers = {
        "fit": {k: v for k, v in settings["fit"].items() if k not in drop},
        "net": {k: v for k, v in settings["net"].items() if k not in drop},
        **{k: settings.get(k) for k in ("seed", "log_every", "snapshots", "profile")},
    }
    case = CaseDir(case_dir)
    names = [n for n in IDENTITY_FILES if (case_dir / n).is_file()]
    if not case.ground_truth.is_file():
        names.append(case.observation_png.name)
    inputs = {"meta": json.loads(case.meta.read_text()), "pixels": {n: pixels_sha256(case_dir / n) for n in names}}
    blob = json.dumps({"numbers": numbers, "inputs": inputs, "numerics": dip.NUMERICS}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def profile(name: str) -> Profile:
    return Profile(name, PARAMS["profiles"][name], dict(PARAMS.get("figures") or {}))


@pytest.fixture
def cases(tmp_path: Path, tiny_images: tuple[Path, list[ImageEntry]]) -> dict[str, Path]:
    """A case of `dip corrupt` per task (24×20 crops; a figure's settings are hashed with its task's case)."""
    root, entries = tiny_images
    out = {}
    for exp_id in ("denoise_s25", "inpaint_p50", "sr_x4"):
        exp = Profile("t", tiny_profile()).experiment(exp_id) if exp_id != "sr_x4" else Experiment("sr_x4", "sr", factor=4)
        write_case(tmp_path / exp_id, exp, entries[0], root, Profile("t", tiny_profile()), 0)
        out[exp.task] = tmp_path / exp_id
    return out


@pytest.mark.parametrize("name", ["smoke", "quick"])
def test_the_hashes_are_those_of_the_dictionary_settings(name: str, cases: dict[str, Path]) -> None:
    prof = profile(name)
    assert prof.experiments
    for exp in prof.experiments:
        case = cases[exp.task]
        for seed, device in ((0, "cpu"), (3, "cuda:0")):
            old, new = old_job_settings(exp, prof, seed, device), job_settings(exp, prof, seed, device)
            assert json.dumps(new.to_json(), sort_keys=True) == json.dumps(old, sort_keys=True), exp.id
            assert fit_key(case, new) == old_fit_key(case, old), exp.id
            assert settings_hash(case, new) == old_settings_hash(case, old), exp.id
            assert case_key(case, new) == case_key(case, SimpleNamespace(to_json=lambda old=old: old)), exp.id  # type: ignore[arg-type]


def test_the_json_form_pinned_by_value() -> None:
    """The quick profile's inpaint_p50 settings, seed 0: their JSON form hashed to this before FitSettings."""
    settings = job_settings(profile("quick").experiment("inpaint_p50"), profile("quick"), 0, "cpu")
    digest = hashlib.sha256(json.dumps(settings.to_json(), sort_keys=True).encode()).hexdigest()
    assert digest == PINNED_QUICK_INPAINT


def test_json_round_trip_and_checks() -> None:
    prof = profile("smoke")
    for exp in prof.experiments:
        s = job_settings(exp, prof, 2, "cpu")
        assert s.seed == s.fit.seed == 2 and isinstance(s.snapshots, tuple)
        assert FitSettings.from_json(json.loads(json.dumps(s.to_json()))) == s
    with pytest.raises(ValueError, match="differs from fit.seed"):
        FitSettings.from_json({**s.to_json(), "seed": 5})
    with pytest.raises(ValueError, match="check_every"):
        s.with_fit(check_every=0)
    with pytest.raises(ValueError, match="unknown fitting setting"):
        s.with_fit(speed=2)
    assert s.with_fit(graph=True).fit.graph is True and s.fit.graph is None  # a new object; this one unchanged
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.device = "cuda"  # type: ignore[misc]


#: computed with the dictionary path of the commit before FitSettings (5256ae5)
PINNED_QUICK_INPAINT = "60d09b9eed5d732ae1e5f74bec975f2b61e3cbf0b944df97622fc3fff3c73d0f"

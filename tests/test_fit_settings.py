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

from conftest import tiny_profile
from dip.config import FitConfig, NetConfig
from pipeline.execution.keys import case_key, fit_key, settings_hash
from pipeline.images.manifest import ImageEntry
from pipeline.settings import Experiment, FitSettings, Profile, job_settings, load_params
from pipeline.stages.corrupt import write_case

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")


# --- the reference: the settings dictionary as job_settings built it before FitSettings (copied, not imported)

def old_job_settings(exp: Experiment, profile: Profile, seed: int, device: str) -> dict[str, Any]:
    fit, snapshots = profile.fit(exp)
    net_cfg = NetConfig.from_dict(profile.net(exp)).to_dict()  # validated, every field explicit
    fit_cfg = FitConfig.from_dict({**fit, "seed": seed})
    return {"net": net_cfg, "fit": fit_cfg.__dict__.copy(), "seed": seed, "device": device,
            "log_every": profile.log_every, "snapshots": snapshots, "profile": profile.name}


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
            as_before = SimpleNamespace(to_json=lambda old=old: old)  # the hashes read the settings' JSON form only
            for hashed in (fit_key, settings_hash, case_key):
                assert hashed(case, new) == hashed(case, as_before), (hashed.__name__, exp.id)  # type: ignore[arg-type]


def test_the_committed_bundles_fit_keys_are_what_this_code_computes() -> None:
    """Every fit of results-published/quick-cpu whose case files the bundle holds whole (denoising and
    super-resolution: ground truth and meta.json; an inpainting case's mask is not kept) gets the
    ``fit_key`` its run.json recorded when it ran, from this checkout's settings and hashing."""
    bundle, prof = ROOT / "results-published" / "quick-cpu", profile("quick")
    checked = 0
    for run_json in sorted((bundle / "results").glob("*/*/seed_*/run.json")):
        run, (exp_id, image) = json.loads(run_json.read_text()), run_json.parts[-4:-2]
        case = bundle / "data" / "corrupted" / exp_id / image
        if prof.experiment(exp_id).task == "inpaint":
            continue
        assert fit_key(case, job_settings(prof.experiment(exp_id), prof, run["seed"], run["device"])) == run["fit_key"], run_json
        checked += 1
    assert checked == 12


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

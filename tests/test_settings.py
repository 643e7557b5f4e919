"""One source of fitting settings: `dip restore --preset` builds exactly the configs the pipeline's
fit stage builds from params.yaml's profiles, from any working directory."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dip.fit import FitConfig
from dip.metrics import to_uint8
from dip.network import NetConfig
from pipeline.cli import app
from pipeline.settings import PACKAGE_PARAMS, Profile, active_profile, job_settings, load_params, user_experiment

ROOT = Path(__file__).resolve().parents[1]
CASES = {"denoise": ("denoise_s25", []), "inpaint": ("inpaint_p50", []), "sr_x4": ("sr_x4", ["--factor", "4"]), "sr_x8": ("sr_x8", ["--factor", "8"])}


class Captured(ValueError):
    """Raised by the stand-in for pipeline.execution.fits.prepare: the configs are built, no fit runs."""


def stage_configs(profile: str, exp_id: str, seed: int) -> tuple[NetConfig, FitConfig]:
    """What the fit stage (`dip run`) builds: params.yaml of the repository, the profile's
    resolution, pipeline.settings.job_settings."""
    params = load_params(ROOT / "params.yaml")
    prof = active_profile(params, {"profile": profile})
    settings = job_settings(prof.experiment(exp_id), prof, seed, "cpu")
    return settings.net, settings.fit


def test_the_package_params_are_the_repository_params() -> None:
    """pipeline/params.yaml is a link to the repository's params.yaml (a wheel gets a copy via
    pyproject's package-data), so the presets are the pipeline's profiles, not a second table."""
    assert PACKAGE_PARAMS.resolve() == (ROOT / "params.yaml").resolve()
    assert PACKAGE_PARAMS.read_bytes() == (ROOT / "params.yaml").read_bytes()


@pytest.mark.parametrize("profile", ["paper", "quick"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_restore_preset_builds_the_stage_configs(profile: str, case: str, tmp_path: Path, camera64: np.ndarray,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.execution.fits

    seen: dict[str, object] = {}

    def capture(operator, observation, out_dir, net_cfg, fit_cfg, **options):  # noqa: ANN001, ANN003
        seen["net"], seen["fit"] = net_cfg, fit_cfg
        raise Captured("configs captured")

    monkeypatch.setattr(pipeline.execution.fits, "prepare", capture)
    image, mask = tmp_path / "in.png", tmp_path / "mask.png"
    Image.fromarray(to_uint8(camera64)).save(image)
    Image.fromarray(((np.random.default_rng(0).random(camera64.shape) > 0.5) * 255).astype(np.uint8)).save(mask)
    task = case.split("_")[0]
    exp_id, extra = CASES[case]
    monkeypatch.chdir(tmp_path)  # outside the repository: the table shipped with the package is read
    args = ["restore", str(image), "--task", task, "--preset", profile, "--device", "cpu", "--seed", "3", "--out", str(tmp_path / "out"), *extra]
    result = CliRunner().invoke(app, args + (["--mask", str(mask)] if task == "inpaint" else []))
    assert "configs captured" in result.output, result.output
    net_cfg, fit_cfg = stage_configs(profile, exp_id, seed=3)
    assert dataclasses.asdict(seen["net"]) == dataclasses.asdict(net_cfg)  # type: ignore[call-overload]
    assert dataclasses.asdict(seen["fit"]) == dataclasses.asdict(fit_cfg)  # type: ignore[call-overload]


def test_other_sr_factors_use_the_nearest_settings_unless_the_profile_has_them() -> None:
    prof = Profile("p", {"fit": {"sr_x4": {"iterations": 4}, "sr_x8": {"iterations": 8}, "sr_x2": {"iterations": 2}}})
    assert [user_experiment(prof, "sr", f).id for f in (2, 3, 4, 5, 8, 16)] == ["sr_x2", "sr_x4", "sr_x4", "sr_x8", "sr_x8", "sr_x8"]
    assert user_experiment(prof, "denoise").fit_key == "denoise"


def test_a_params_file_can_be_given_and_unknown_presets_are_one_line(tmp_path: Path) -> None:
    text = (ROOT / "params.yaml").read_text().replace("width: 32, skip: 4", "width: 16, skip: 4")
    (tmp_path / "params.yaml").write_text(text)
    result = CliRunner().invoke(app, ["net", "--preset", "quick", "--json", "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 0 and '"n_d": 16' in result.output, result.output
    result = CliRunner().invoke(app, ["net", "--preset", "nope"])
    assert result.exit_code == 2 and result.output.startswith("error: unknown preset 'nope'"), result.output


def test_the_settings_know_the_tasks_of_the_operators() -> None:
    """pipeline.settings checks task names without loading torch: they are dip.operators' tasks."""
    from dip.operators import TASKS as OPERATOR_TASKS
    from pipeline.settings import TASKS

    assert TASKS == tuple(OPERATOR_TASKS)

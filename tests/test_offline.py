"""A fresh clone's tests need nothing but the package registries: the smoke profile (every code path
of the pipeline, figures included) runs on images that scikit-image ships, while the quick and
paper profiles keep the real images."""

from __future__ import annotations

from pathlib import Path

from pipeline.images.manifest import load_manifest
from pipeline.settings import active_profile, load_params
from pipeline.stages.fetch import FetchOptions, fetch_all

ROOT = Path(__file__).resolve().parents[1]


def specs(profile: str) -> list[str]:
    prof = active_profile(load_params(ROOT / "params.yaml"), {"profile": profile})
    return list(dict.fromkeys(s for e in prof.experiments for s in prof.specs(e)))


def test_the_smoke_profile_fetches_without_network_or_mirror(tmp_path: Path) -> None:
    smoke = specs("smoke")
    assert any(e.is_figure for e in active_profile(load_params(ROOT / "params.yaml"), {"profile": "smoke"}).experiments)
    sources = fetch_all(load_manifest(ROOT / "data" / "manifest.yaml"), smoke, tmp_path, FetchOptions(mirror=None, allow_network=False))
    assert len(sources) == len(smoke) and set(sources.values()) == {"skimage"}


def test_the_paper_profile_keeps_the_authors_images() -> None:
    paper = specs("paper")
    for figure_image in ("dip_demo/inpainting_kate", "dip_demo/inpainting_kate_mask", "dip_demo/denoising_snail",
                         "dip_demo/flash_no_flash_cave01_00_flash", "dip_demo/sr_zebra_crop"):
        assert figure_image in paper
    assert not [s for s in specs("smoke") if s.startswith("dip_demo")]


def test_a_profile_may_only_replace_figures_that_exist(tmp_path: Path) -> None:
    import pytest
    import yaml

    from pipeline.settings import Profile

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["profiles"]["smoke"]["figures"]["fig99"] = {"image": "embedded/camera"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ValueError, match="profiles.smoke.figures: fig99 not defined in figures:"):
        load_params(tmp_path / "params.yaml")
    prof = Profile("p", {"figures": {"fig7_text": {"image": "embedded/camera"}}},
                   {"fig7_text": {"task": "inpaint", "image": "dip_demo/inpainting_kate", "mask": "dip_demo/inpainting_kate_mask"}})
    assert prof.experiment("fig7_text").image == "embedded/camera" and prof.experiment("fig7_text").mask == "dip_demo/inpainting_kate_mask"

"""``dip corrupt``: synthesise the observations of each experiment, deterministically from a seed.

For every image of an active experiment it writes ``data/corrupted/<exp>/<image>/``:
``ground_truth.png`` (the clean image as evaluated: resized to the profile's ``max_side`` and,
for super-resolution, cropped to a multiple of the factor), ``observation.npy`` /
``observation.png``, ``mask.png`` (inpainting) and ``meta.json``. Each experiment folder also
gets ``experiment.json`` (profile, active or not, its images), so that every experiment of
``params.yaml`` has an output even when the profile does not run it.

The random stream of an image is seeded from ``(seed, experiment, set, image)``, so one image's
corruption does not depend on which other images are processed.

Figure experiments (``figures:`` in params.yaml) also come from here: a given ``mask`` (resized
with the image, nearest neighbour), a Bernoulli ``drop`` (e.g. 98 % missing), a real photograph
as its own observation (``ground_truth: false``: no ``ground_truth.png`` is written, nothing
is added), and ``input.npy`` / ``input.png``, the image the network takes as its input code
(the flash photograph of flash/no-flash).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pipeline.files import atomic_directory, inside, load_image, save_array, save_image, save_json
from dip.io import to_numpy, to_tensor
from dip.metrics import to_uint8
from dip.operators import Denoising, Inpainting, SuperResolution
from pipeline import layout
from pipeline.images.manifest import ImageEntry, load_manifest
from pipeline.settings import Experiment, Profile, active_profile, load_params, read_resolution


def image_seed(seed: int, exp_id: str, entry: ImageEntry) -> int:
    """A 63-bit seed that depends only on the base seed, the experiment and the image."""
    digest = hashlib.sha256(f"{seed}/{exp_id}/{entry.set}/{entry.name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def prepare_ground_truth(image: np.ndarray, max_side: int, factor: int | None) -> np.ndarray:
    """Downscale (antialiased Lanczos on 8 bits) so the longer side is at most ``max_side``
    (0 = keep), then crop bottom/right to a multiple of ``factor``."""
    if max_side and max(image.shape[:2]) > max_side:
        h, w = image.shape[:2]
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = np.asarray(Image.fromarray(to_uint8(image)).resize(size, Image.Resampling.LANCZOS)).astype(np.float32) / 255.0
    if factor:
        image = SuperResolution.crop_to_factor(image, factor)
    return image


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A binary (H, W) mask at ``size`` (H, W), nearest neighbour, 1 = known pixel."""
    if tuple(mask.shape[:2]) != tuple(size):
        mask = np.asarray(Image.fromarray((mask > 0.5).astype(np.uint8) * 255).resize((size[1], size[0]), Image.Resampling.NEAREST)) / 255.0
    return (mask > 0.5).astype(np.float32)


def corrupt_image(exp: Experiment, truth: np.ndarray, seed: int, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``{"observation": float32 array[, "mask": float32 (H, W)]}`` for one clean image; a given
    ``mask`` replaces the random one; a denoising case without σ is a real photograph, kept as is."""
    gen = torch.Generator().manual_seed(seed)
    if exp.task == "inpaint" and mask is not None:
        mask = resize_mask(mask, truth.shape[:2])
        obs = truth * (mask[..., None] if truth.ndim == 3 else mask)
        return {"observation": obs.astype(np.float32), "mask": mask}
    if exp.task == "denoise" and not exp.sigma:
        return {"observation": truth.astype(np.float32)}
    if exp.task == "denoise":
        obs = to_numpy(Denoising.corrupt(to_tensor(truth), float(exp.sigma), gen))
        return {"observation": obs.astype(np.float32)}
    if exp.task == "inpaint":
        mask = Inpainting.random_mask(truth.shape[:2], float(exp.drop), gen).numpy()
        obs = truth * (mask[..., None] if truth.ndim == 3 else mask)
        return {"observation": obs.astype(np.float32), "mask": mask.astype(np.float32)}
    low = SuperResolution.corrupt(to_uint8(truth), int(exp.factor))  # type: ignore[arg-type]
    return {"observation": low.astype(np.float32) / 255.0}


def write_case(out_dir: Path, exp: Experiment, entry: ImageEntry, images_dir: Path, profile: Profile, base_seed: int) -> dict[str, Any]:
    """Write one ``data/corrupted/<exp>/<image>/`` atomically; returns its ``meta.json``."""
    source = images_dir / entry.set / f"{entry.name}.png"
    truth = prepare_ground_truth(load_image(source), profile.max_side, exp.factor)
    seed = image_seed(base_seed, exp.id, entry)
    mask = load_image(images_dir / f"{exp.mask}.png", mode="gray") if exp.mask else None
    case = corrupt_image(exp, truth, seed, mask)
    if exp.input:
        case["input"] = prepare_ground_truth(load_image(images_dir / f"{exp.input}.png"), profile.max_side, exp.factor)
        if case["input"].shape != truth.shape:
            raise ValueError(f"experiment {exp.id}: input image {exp.input} is {case['input'].shape} but the image is {truth.shape}")
    meta: dict[str, Any] = {
        "experiment": exp.id, "task": exp.task, "image": entry.name, "set": entry.set, **exp.corruption(),
        "seed": seed, "base_seed": base_seed, "size": list(truth.shape[:2]), "profile": profile.name,
    }
    with atomic_directory(out_dir, overwrite=True) as tmp:
        out = layout.CaseDir(tmp)
        if exp.ground_truth:
            save_image(out.ground_truth, truth)
        save_array(out.observation_npy, case["observation"])
        save_image(out.observation_png, case["observation"])
        if "mask" in case:
            save_image(out.mask, case["mask"])
        if "input" in case:
            save_array(out.input_npy, case["input"])
            save_image(out.input_png, case["input"])
        save_json(out.meta, meta)
    return meta


def corrupt_all(experiment_ids: list[str], profile: Profile, manifest_images: dict[str, list[ImageEntry]], images_dir: Path, out_root: Path, seed: int) -> dict[str, int]:
    """Rebuild ``out_root`` for every experiment id; returns ``{experiment: number of images}``.
    ``manifest_images`` maps a task (or a figure's id) to its images.

    Every id is checked before anything is written; the new root replaces the old one (only an
    earlier output of this stage, never a user's folder) once it is complete.
    """
    plan: list[tuple[Experiment, bool, list[ImageEntry]]] = []
    for exp_id in experiment_ids:
        exp = profile.experiment(exp_id)
        active = profile.is_active(exp_id)
        entries = manifest_images.get(exp.id if exp.is_figure else exp.task, []) if active else []
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment {exp_id}: two images share a name in {profile.specs(exp)}; image names must be unique per task")
        plan.append((exp, active, entries))
    counts: dict[str, int] = {}
    with atomic_directory(out_root, overwrite=True) as tmp:
        for exp, active, entries in plan:
            for entry in entries:
                write_case(inside(tmp, tmp / exp.id / entry.name), exp, entry, images_dir, profile, seed)
            save_json(layout.ExperimentDir(tmp / exp.id).record, layout.corrupted_experiment(
                exp.id, exp.task, exp.corruption(), profile.name, active, [e.name for e in entries], seed))
            counts[exp.id] = len(entries)
    return counts


def stage(params_path: Path, profile_file: Path, manifest_path: Path, images_dir: Path, out_root: Path) -> tuple[str, dict[str, int]]:
    """The ``corrupt`` stage (``dip corrupt``): every experiment of params.yaml on the resolved
    profile's images (per task; a figure's own image), seeded by ``corrupt.seed``. Returns the
    profile's name and ``{experiment: number of images}``."""
    p = load_params(params_path)
    prof = active_profile(p, read_resolution(profile_file))
    m = load_manifest(manifest_path)
    by_task = {e.id if e.is_figure else e.task: m.select([e.image] if e.is_figure else prof.image_specs(e.task)) for e in prof.experiments}
    seed = int((p.get("corrupt") or {}).get("seed", 0))
    return prof.name, corrupt_all([str(e) for e in p["experiments"]], prof, by_task, images_dir, out_root, seed)

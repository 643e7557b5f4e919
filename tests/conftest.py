"""Shared fixtures: tiny images and narrow networks so that the suite runs on a 2-core CPU."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

ROOT = Path(__file__).resolve().parents[1]


def mirror_dir() -> Path | None:
    """The offline image mirror (``$DIP_MIRROR`` or ``../shared/images``), if present."""
    env = os.environ.get("DIP_MIRROR")
    for candidate in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "images"]:
        if (candidate / "MANIFEST.tsv").is_file():
            return candidate
    return None


@pytest.fixture
def camera64() -> np.ndarray:
    """scikit-image's cameraman, 64×64 float32 in [0, 1]."""
    from skimage import data, transform

    return transform.resize(data.camera(), (64, 64), anti_aliasing=True).astype(np.float32)


@pytest.fixture
def astronaut64() -> np.ndarray:
    """scikit-image's astronaut, 64×64×3 float32 in [0, 1]."""
    from skimage import data, transform

    return transform.resize(data.astronaut(), (64, 64), anti_aliasing=True).astype(np.float32)

"""Tensors ↔ arrays: images as float32 NumPy arrays in [0, 1] (H, W) or (H, W, C), and as the
(1, C, H, W) tensors the network fits. Reading and writing files is :mod:`pipeline.files`'s."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, C) array → (1, C, H, W) float32 tensor."""
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[..., None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) or (C, H, W) tensor → (H, W) or (H, W, C) float32 array on the CPU."""
    t = tensor.detach().float().cpu()
    if t.dim() == 4:
        t = t[0]
    arr = t.numpy().transpose(1, 2, 0)
    return arr[..., 0] if arr.shape[-1] == 1 else arr

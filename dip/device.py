"""Device choice: CUDA, then Apple's MPS, then the CPU, unless the caller names one."""

from __future__ import annotations

import torch


def pick_device(preference: str = "auto") -> torch.device:
    """``auto`` → ``cuda`` if available, else ``mps``, else ``cpu``; a named device must exist here
    (``ValueError`` otherwise)."""
    if preference in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preference)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {preference!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but CUDA is not available; use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {preference!r} does not exist: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
        return device
    backend = torch.backends.mps if device.type == "mps" else getattr(torch, device.type, None)  # mps, xpu, …
    if not callable(getattr(backend, "is_available", None)) or not backend.is_available():  # type: ignore[union-attr]
        raise ValueError(f"device {preference!r} is not available on this machine; use --device cpu (or auto)")
    return device

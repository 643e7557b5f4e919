"""CPU threads for torch: OpenMP's wait policy and the thread count of a fit (issue 11, item 9).

torch's CPU kernels run on OpenMP (libgomp in the Linux wheels), whose threads by default
*spin* between parallel regions. Spinning threads on a CPU shared with another busy process
steal its time slices and wait for each other: a fit there runs several times slower than with
one thread. ``OMP_WAIT_POLICY=PASSIVE`` makes waiting threads sleep instead; libgomp reads it
once, when it is loaded, so :func:`prepare_openmp` must run before ``import torch``.
``benchmarks/threads.py`` measures the options (docs/threads.md).
"""

from __future__ import annotations

import os

WAIT_POLICY = "OMP_WAIT_POLICY"


def prepare_openmp() -> None:
    """Let OpenMP threads sleep rather than spin while they wait (``OMP_WAIT_POLICY=PASSIVE``),
    unless the environment already chose a policy. No effect once torch is imported; the
    environment is inherited by child processes (Dask LocalCluster workers)."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")


def set_torch_threads(threads: int) -> int:
    """``torch.set_num_threads(threads)`` for ``threads > 0``; 0 keeps torch's default (one per
    usable core). Returns the thread count torch uses."""
    import torch

    if threads < 0:
        raise ValueError(f"engine.threads must be ≥ 0, got {threads}")
    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()

"""Replay one iteration as a CUDA graph: capture once, launch once per iteration.

A DIP iteration on a GPU is hundreds of small kernels whose launch costs more CPU time than the
GPU spends computing them. :class:`Replayer` runs the iteration ``warmup`` times eagerly on a side
stream (cuDNN picks its algorithms, autograd and the allocator settle), then captures it into a
``torch.cuda.CUDAGraph`` with every perturbation generator registered (so each replay draws new
noise) and replays the graph from then on. Every iteration — warm-up ones included — is a real
iteration of the fit. If the capture fails, it says so in one line on stderr and goes on eagerly
(``DIP_DEBUG=1`` prints the whole traceback).
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Callable, Sequence

import torch


class Replayer:
    """Call to run one iteration: eagerly, or (CUDA, ``enabled``) from a captured graph."""

    def __init__(self, fn: Callable[[], None], device: torch.device, enabled: bool,
                 generators: Sequence[torch.Generator] = (), warmup: int = 3) -> None:
        self.fn, self.device, self.generators, self.warmup = fn, device, list(generators), warmup
        self.enabled = enabled and device.type == "cuda"
        self.graph: torch.cuda.CUDAGraph | None = None
        self.calls = 0

    @property
    def mode(self) -> str:
        """``graph`` once captured, ``eager`` otherwise (for run records)."""
        return "graph" if self.graph is not None else "eager"

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
            return
        if not self.enabled:
            self.fn()
            return
        self.calls += 1
        if self.calls <= self.warmup:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self.fn()
            torch.cuda.current_stream(self.device).wait_stream(side)
            return
        graph = torch.cuda.CUDAGraph()
        try:
            for gen in self.generators:
                graph.register_generator_state(gen)
            with torch.cuda.graph(graph):
                self.fn()
        except Exception as err:  # noqa: BLE001 - any capture failure falls back to eager
            if os.environ.get("DIP_DEBUG"):
                traceback.print_exc()
            print(f"warning: CUDA graph capture failed ({err.__class__.__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                  "fitting eagerly", file=sys.stderr)
            self.enabled = False
            torch.cuda.synchronize(self.device)
            self.fn()
            return
        self.graph = graph
        graph.replay()

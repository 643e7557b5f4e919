"""How an iteration is launched: eagerly, replayed as a CUDA graph, or several graphs on several streams.

A DIP iteration on a GPU is hundreds of small kernels whose launch costs more CPU time than the
GPU spends computing them. :class:`Replayer` runs the iteration ``warmup`` times eagerly on a side
stream (cuDNN picks its algorithms, autograd and the allocator settle), then captures it into a
``torch.cuda.CUDAGraph`` with every perturbation generator registered (so each replay draws new
noise) and replays the graph from then on. Every iteration — warm-up ones included — is a real
iteration of the fit. If the capture fails, it says so in one line on stderr and goes on eagerly
(``DIP_DEBUG=1`` prints the whole traceback). A compiled forward pass (``FitConfig.compile``) is
compiled during the first warm-up iteration, so the graph captures the compiled kernels.

:class:`OnStreams` runs several single-fit iterations, each with its own :class:`Replayer`, on
its own CUDA stream: the GPU overlaps the small kernels of N fits that alone would leave most of
it idle. Streams wait for the host's stream only after the host may have written (callbacks,
a fit stopped), and the host's stream waits for them only before the host reads
(:meth:`OnStreams.join`); between those points the fits run unordered with respect to each other.
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


class OnStreams:
    """Call to run one iteration of each fit, fit ``i`` by ``replayers[i]`` on stream ``i`` (CUDA);
    elsewhere one after another. Call :meth:`join` before the host reads any fit's buffers."""

    def __init__(self, replayers: Sequence[Replayer], device: torch.device) -> None:
        self.replayers, self.device = list(replayers), device
        several = device.type == "cuda" and len(self.replayers) > 1  # one fit runs on the caller's stream
        self.streams = [torch.cuda.Stream(device) for _ in self.replayers] if several else []
        self.joined = True  # the host may have written since the streams last waited for it
        self.stopped: set[int] = set()

    @property
    def mode(self) -> str:
        modes = {r.mode for r in self.replayers}
        return modes.pop() if len(modes) == 1 else "mixed"

    def stop(self, i: int) -> None:
        """Launch fit ``i`` no more (it has finished)."""
        self.stopped.add(i)

    def __call__(self) -> None:
        if not self.streams:
            for i, replay in enumerate(self.replayers):
                if i not in self.stopped:
                    replay()
            return
        host = torch.cuda.current_stream(self.device)
        for i, (stream, replay) in enumerate(zip(self.streams, self.replayers)):
            if i in self.stopped:
                continue
            if self.joined:
                stream.wait_stream(host)
            with torch.cuda.stream(stream):
                replay()
        self.joined = False

    def join(self) -> None:
        """Make the host's stream wait for every fit's last iteration (no host synchronisation)."""
        if self.streams and not self.joined:
            host = torch.cuda.current_stream(self.device)
            for stream in self.streams:
                host.wait_stream(stream)
        self.joined = True

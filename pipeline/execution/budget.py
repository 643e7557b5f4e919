"""What fits cost, measured as a publishing run goes (:mod:`pipeline.outputs.publish_run`), and
the guard that stops a fit whose end would pass the budget.

A fit's cost is ``overhead + iterations × rate`` (:class:`Cost`): ``rate`` the seconds per
iteration between its curve points, ``overhead`` the rest (building the network, cuDNN's
autotuning, capturing the CUDA graph, the final output, writing its folder). Both are measured per
*shape* (sizes, task, network and loop settings) and group size; the first fit of a shape is its
own probe, watched by a :class:`Guard`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

LOWER_BOUND = 0.5  # a shape not yet measured costs at least this × the per-pixel rate of its family
PROBE_ITERATIONS = 200  # the most iterations a new shape runs before its projection is trusted

Clock = Callable[[], float]


class Priced(Protocol):
    """What the costs need of a planned fit (:class:`pipeline.outputs.publish_run.Planned`)."""

    id: str
    shape: str  # what its cost per iteration depends on: sizes, task, network and loop settings
    family: str  # the same without the sizes
    pixels: int  # of the network's canvas
    iterations: int


@dataclass
class Cost:
    rate: float  # seconds per iteration
    overhead: float  # seconds per fit besides its iterations: build, warm-up, capture, final output, writing
    first: str  # the fit that measured it


@dataclass
class Costs:
    """What fits cost in this run, measured as it goes (keys: shape or family, and group size)."""

    known: dict[tuple[str, int], Cost] = field(default_factory=dict)
    per_pixel: dict[tuple[str, int], float] = field(default_factory=dict)  # fastest seconds per iteration and canvas pixel
    write_s: float = 0.0  # slowest writing of a fit's folder
    pack_s: float = 0.0  # slowest rewriting of a part

    def estimate(self, fit: Priced, n: int) -> float | None:
        """Seconds the fit (in a group of ``n``) takes, its part included; ``None`` if its shape is new."""
        cost = self.known.get((fit.shape, n))
        return None if cost is None else cost.overhead + fit.iterations * cost.rate + self.pack_s

    def lower_bound(self, fit: Priced, n: int) -> float:
        """At least this many seconds for a shape not measured yet: ½ × the per-pixel rate of its
        family (same network and loop, other sizes), and no less than the cheapest overhead seen."""
        rate = self.per_pixel.get((fit.family, n))
        bound = 0.0 if rate is None else LOWER_BOUND * rate * fit.pixels * fit.iterations
        return max(bound, min((c.overhead for c in self.known.values()), default=0.0))

    def record(self, fit: Priced, n: int, rate: float, overhead: float) -> None:
        self.known[(fit.shape, n)] = Cost(rate, max(overhead, 0.0), fit.id)
        per_pixel = rate / fit.pixels
        self.per_pixel[(fit.family, n)] = min(per_pixel, self.per_pixel.get((fit.family, n), math.inf))


class OutOfTime(Exception):
    """Raised by :class:`Guard` inside the loop: the fit would not end within the budget."""

    def __init__(self, needed: float, left: float, rate: float | None) -> None:
        super().__init__(f"needs {needed:.1f} s more, {left:.1f} s left")
        self.needed, self.left, self.rate = needed, left, rate


class Guard:
    """A fit's callback at each curve point: records when the device got there and stops the fit
    (:class:`OutOfTime`; nothing is written) once its projected end passes ``deadline``. Before
    ``probe`` iterations only a deadline already passed stops it."""

    def __init__(self, iterations: int, clock: Clock, deadline: float, reserve: Callable[[], float], probe: int) -> None:
        self.iterations, self.clock, self.deadline, self.reserve, self.probe = iterations, clock, deadline, reserve, probe
        self.marks: list[tuple[int, float]] = []

    def rate(self) -> float | None:
        """Seconds per iteration from the second curve point on (the first holds the warm-up)."""
        if len(self.marks) < 2:
            return None
        (i0, t0), (i1, t1) = self.marks[1 if len(self.marks) >= 3 else 0], self.marks[-1]
        return (t1 - t0) / (i1 - i0) if i1 > i0 else None

    def __call__(self, step: Any) -> None:
        float(step.loss)  # wait for the device: the time is when the iteration really ended
        now = self.clock()
        self.marks.append((int(step.iteration), now))
        i = int(step.iteration)
        if i >= self.iterations:  # the final point: the fit is done, let it write
            return
        rate = self.rate()
        if now >= self.deadline:
            raise OutOfTime((self.iterations - i) * (rate or 0.0) + self.reserve(), self.deadline - now, rate)
        if rate is None or i - self.marks[0][0] < self.probe:
            return
        needed = (self.iterations - i) * rate + self.reserve()
        if now + needed > self.deadline:
            raise OutOfTime(needed, self.deadline - now, rate)

"""Iterations per second of the full fitting step at the paper's network (5 levels, 128/128/4).

Three loops per case, in the same run: ``dip`` (the library's Fitter: forward, loss, backward,
Adam, output averaging, a PSNR curve recorder at the CLI's interval), ``plain`` (an authors'-style
reference loop with scikit-image PSNR on host copies every iteration) and ``bare`` (the least a
fit must do, to measure the Fitter's loop overhead). A "round" fits a fresh network for a few
iterations including its construction and, for ``dip``/``bare``, the final output.

Run: ``pytest benchmarks -m benchmark --benchmark-enable -p no:cacheprovider``
(``DIP_BENCH_SCALE=3`` multiplies the iterations and rounds; results/<machine>.json is rewritten).
"""

from __future__ import annotations

import os

import pytest
import torch

from _common import images, run_bare, run_dip, run_plain, timed
from conftest import record

pytestmark = pytest.mark.benchmark

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
SCALE = int(os.environ.get("DIP_BENCH_SCALE", "1"))
# case: (size, channels, iterations per round, rounds) — minimal on a 2-core CPU, where one
# iteration at 512² takes many seconds; more on CUDA.
CASES = {
    "gray128": (128, 1, 3, 2),
    "gray256": (256, 1, 2, 1),
    "gray512": (512, 1, 1, 1),
    "rgb512": (512, 3, 1, 1),
}
if CUDA:
    CASES = {k: (s, c, 25, 3) for k, (s, c, _, _) in CASES.items()}


@pytest.fixture(scope="session", autouse=True)
def warm_up() -> None:
    """One short fit so that lazy initialisation is not charged to the first case."""
    clean, y = images(64, 1)
    run_bare(y, 2, DEVICE)


@pytest.mark.parametrize("variant", ["bare", "dip", "plain"])
@pytest.mark.parametrize("case", list(CASES))
def test_fitting_step(benchmark, case: str, variant: str) -> None:
    size, channels, iterations, rounds = CASES[case]
    iterations, rounds = iterations * SCALE, rounds * SCALE
    clean, y = images(size, channels)
    fn = {
        "dip": lambda: run_dip(y, clean, iterations, DEVICE),
        "plain": lambda: run_plain(y, clean, iterations, DEVICE),
        "bare": lambda: run_bare(y, iterations, DEVICE),
    }[variant]
    result: dict = {}

    def measured() -> None:
        times, peak = timed(fn, rounds)
        result.update(times=times, peak=peak)

    benchmark.pedantic(measured, rounds=1, iterations=1)
    entry = record(case, variant, iterations, result["times"], result["peak"])
    benchmark.extra_info.update(entry)

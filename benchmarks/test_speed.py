"""Iterations per second of the steady-state fitting step at the paper's network (5 levels,
128/128/4, the denoising settings with output averaging).

Three loops per case, in the same run, all timed the same way and interleaved iteration by
iteration (``_common.interleaved``: the Fitter's per-iteration callback runs one iteration of each
other loop), so that the shared VM's slow drifts hit every variant alike; the first ``warmup``
iterations are discarded, then ``timed`` iterations measured; iterations/s = 1 / median
per-iteration time. Network construction and the final no-grad forward pass are outside every
timed span. Peak memory comes from a separate short fit of each variant.

* ``dip`` — the library's ``Fitter``: forward, loss, backward, multi-tensor Adam, output
  averaging, the CLI's PSNR curve recorder at its interval (100) and the stamping callback at
  every iteration;
* ``plain`` — an authors'-style reference loop: eager fp32, batch one, the paper's network,
  default Adam, and scikit-image PSNR against the observation and the ground truth (and the
  averaged output) on host copies at every iteration, as the authors' notebook loop does;
* ``bare`` — forward / loss / backward / Adam / averaging only, to measure the Fitter's overhead.

Run: ``flock /tmp/dip-heavy.lock pytest benchmarks -m benchmark --benchmark-enable -n 0 -p no:cacheprovider``
(``DIP_BENCH_SCALE=3`` multiplies the timed iterations; results/<machine>.json is rewritten).
The pytest-benchmark time of each test is the whole fit (construction included); the figures
that matter are in its ``extra_info`` and in the JSON.
"""

from __future__ import annotations

import os

import pytest
import torch

from _common import Stamps, images, interleaved, measure, run_bare, run_dip, run_plain
from conftest import record

pytestmark = pytest.mark.benchmark

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
SCALE = int(os.environ.get("DIP_BENCH_SCALE", "1"))
# case: (size, channels, warm-up iterations, timed iterations) — sized for ≈ 10 min on a 2-core
# CPU, where one iteration at 512² takes ≈ 10 s; more on CUDA.
CASES = {
    "gray128": (128, 1, 3, 20),
    "gray256": (256, 1, 2, 8),
    "gray512": (512, 1, 1, 3),
    "rgb512": (512, 3, 1, 3),
}
if CUDA:
    CASES = {k: (s, c, 10, 50) for k, (s, c, _, _) in CASES.items()}
if os.environ.get("DIP_BENCH_CASES"):  # e.g. DIP_BENCH_CASES=gray128 for a quick check
    CASES = {k: CASES[k] for k in os.environ["DIP_BENCH_CASES"].split(",")}


@pytest.fixture(scope="session", autouse=True)
def warm_up() -> None:
    """One short fit so that lazy initialisation is not charged to the first case."""
    clean, y = images(64, 1)
    run_bare(y, Stamps(DEVICE, 0, 2), DEVICE)


@pytest.mark.parametrize("case", list(CASES))
def test_fitting_step(benchmark, case: str) -> None:
    size, channels, warmup, timed = CASES[case]
    timed *= SCALE
    clean, y = images(size, channels)
    result: dict = {}

    def measured() -> None:
        result.update(interleaved(y, clean, warmup, timed, DEVICE))

    benchmark.pedantic(measured, rounds=1, iterations=1)
    # Peak memory: one short fit per variant on its own (2 iterations; the peak is reached in
    # the first backward pass), construction and, for dip, the final output included.
    for variant in ("dip", "plain", "bare"):
        stamps = Stamps(DEVICE, 0, 1)
        fn = {
            "dip": lambda: run_dip(y, clean, stamps, DEVICE),
            "plain": lambda: run_plain(y, clean, stamps, DEVICE),
            "bare": lambda: run_bare(y, stamps, DEVICE),
        }[variant]
        _, peak = measure(fn, stamps, DEVICE)
        entry = record(case, variant, warmup, result[variant], peak)
        benchmark.extra_info[variant] = entry

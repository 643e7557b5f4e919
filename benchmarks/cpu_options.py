"""CPU cost of the execution options: the library's own iteration with each option, interleaved.

``flock /tmp/dip-heavy.lock python benchmarks/cpu_options.py --json benchmarks/results/cpu-options-<machine>.json``

For each variant — ``nchw_bias`` (the network as the authors' code runs it), ``nchw_nobias``
(``drop_inert_bias``), ``cl_bias`` (``channels_last``), ``cl_nobias`` — a
:class:`dip.iteration.Iteration` is built exactly as :func:`dip.fit.run_fits` builds a lone fit's
(the paper's network, 5 levels 128/128/4, denoising settings with output averaging, at
``--size``² gray), and the variants' iterations are called in turn, the order
rotating each round, each timed on its own: slow drifts of a shared machine hit every variant
alike. After ``--warmup`` rounds, ``--timed`` rounds are kept; the figures are the median and the
fastest (least disturbed) seconds per iteration and their ratios to ``nchw_bias``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import EXP_WEIGHT, LR, PAPER_NET, SIGMA_P, images, machine_name  # noqa: E402

from dip import Denoising, FitConfig, Fitter, NetConfig  # noqa: E402
from dip.group import Lone  # noqa: E402
from dip.iteration import Iteration  # noqa: E402

#: the network as the authors' code runs it (NCHW, every bias) first: the others are compared with it
VARIANTS = {"nchw_bias": dict(channels_last=False, drop_inert_bias=False), "nchw_nobias": dict(channels_last=False, drop_inert_bias=True),
            "cl_bias": dict(channels_last=True, drop_inert_bias=False), "cl_nobias": dict(channels_last=True, drop_inert_bias=True)}


def iteration(y: torch.Tensor, opts: dict) -> Iteration:
    """A lone fit's iteration with ``opts``, built as run_fits builds it (eager, CPU)."""
    cfg = FitConfig(lr=LR, reg_noise_std=SIGMA_P, exp_weight=EXP_WEIGHT, **opts)
    f = Fitter(NetConfig.from_dict(PAPER_NET), Denoising(), y, cfg, device="cpu")
    net, z = f.build()
    return Iteration(Lone(net), Lone(net), z, [f.operator], [f.observation], [cfg.seed], cfg, f.image_size, f.dtype)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--timed", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    _, y = images(args.size, 1)
    steps = {name: iteration(y, opts) for name, opts in VARIANTS.items()}
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    load = os.getloadavg()
    for k in range(args.warmup + args.timed):
        for name in names[k % len(names):] + names[: k % len(names)]:
            t0 = time.perf_counter()
            steps[name]()
            if k >= args.warmup:
                times[name].append(time.perf_counter() - t0)
    median = {name: statistics.median(t) for name, t in times.items()}
    fastest = {name: min(t) for name, t in times.items()}
    result = {
        "machine": machine_name(), "device": f"{platform.machine()}, {os.cpu_count()} cores", "torch": torch.__version__,
        "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "load_average_at_start": load, "load_average_at_end": os.getloadavg(),
        "command": f"python benchmarks/cpu_options.py --size {args.size} --warmup {args.warmup} --timed {args.timed}",
        "case": f"gray{args.size}", "seconds_per_iteration_median": {n: round(m, 4) for n, m in median.items()},
        "ratio_to_nchw_bias": {n: round(m / median[names[0]], 3) for n, m in median.items()},
        "seconds_per_iteration_min": {n: round(m, 4) for n, m in fastest.items()},
        "ratio_to_nchw_bias_min": {n: round(m / fastest[names[0]], 3) for n, m in fastest.items()},
        "seconds_per_iteration_all": {n: [round(t, 4) for t in ts] for n, ts in times.items()},
    }
    for name in names:
        print(f"{name:10s} median {median[name]:.4f} s/it ×{median[name] / median[names[0]]:.3f}   "
              f"fastest {fastest[name]:.4f} s/it ×{fastest[name] / fastest[names[0]]:.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

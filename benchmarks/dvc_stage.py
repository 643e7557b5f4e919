"""What DVC itself costs per stage, with and without ruamel.yaml's C parser (ruamel.yaml.clib).

DVC parses ``dvc.yaml`` and ``dvc.lock`` several times around every stage it runs and rewrites
the lock after it. ruamel.yaml 0.19 no longer installs its C parser; without it those parses run
in pure Python. This times, in one run and alternating, ``dvc status`` and
``dvc repro -f -s STAGE`` (one stage forced to run again: a ``dip run`` that finds its fit done)
in a workspace where ``dvc repro`` has run, once with the C parser and once with it hidden.

    python benchmarks/dvc_stage.py WORKSPACE [--stage fit@denoise_s25] [--repeat 3]

Prints the median seconds of each; docs/pipeline.md quotes them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# dvc's own entry point, with ruamel.yaml's C extension importable or hidden
RUN = "import sys\n{hide}from dvc.cli import main\nsys.exit(main(sys.argv[1:]))"
HIDE = "sys.modules['_ruamel_yaml'] = None  # ruamel.yaml falls back to its pure-Python parser\n"


def seconds(workspace: Path, args: list[str], c_parser: bool) -> float:
    """Wall seconds of ``dvc ARGS`` in ``workspace``."""
    code = RUN.format(hide="" if c_parser else HIDE)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=workspace, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"error: `dvc {' '.join(args)}` failed in {workspace} (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workspace", type=Path, help="a DVC workspace in which `dvc repro` has run")
    parser.add_argument("--stage", default="fit@denoise_s25")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not (args.workspace / "dvc.lock").is_file():
        print(f"error: {args.workspace} holds no dvc.lock; give a workspace in which `dvc repro` has run", file=sys.stderr)
        return 2
    try:
        import _ruamel_yaml  # noqa: F401
    except ImportError:
        print("error: ruamel.yaml.clib is not installed here; install it to compare", file=sys.stderr)
        return 2
    lines = (subprocess.run(["wc", "-l", "dvc.lock"], cwd=args.workspace, capture_output=True, text=True).stdout.split() or ["?"])[0]
    print(f"{args.workspace}: dvc.lock of {lines} lines")
    for what in (["status"], ["repro", "-f", "-s", args.stage]):
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeat):
            for c_parser in (True, False):
                times[c_parser].append(seconds(args.workspace, what, c_parser))
        print(f"dvc {' '.join(what)}: {statistics.median(times[True]):.2f} s with the C parser, "
              f"{statistics.median(times[False]):.2f} s without (median of {args.repeat})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

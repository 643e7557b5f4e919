"""Deep Image Prior (Ulyanov, Vedaldi, Lempitsky, CVPR 2018) as a small library.

>>> from dip import NetConfig, FitConfig, Inpainting, fit

The names below are loaded on first use (PEP 562), so that ``import dip.config`` — the settings,
without torch — does not load the network and the fitting loop.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dip.config import FitConfig, NetConfig
    from dip.fit import FitResult, Fitter, Step, fit, fit_many
    from dip.models import build_model
    from dip.network import SkipNet, count_parameters
    from dip.operators import Denoising, Inpainting, Operator, SuperResolution, make_operator

__version__ = "0.1.0"
# Bump whenever a code change alters the numbers of a fit (tests/test_numerics.py pins them): it
# enters every fit key (pipeline.execution.keys.fit_key), so published fits are refitted only then.
NUMERICS = 1
_HOME = {
    "FitConfig": "dip.config", "NetConfig": "dip.config",
    "FitResult": "dip.fit", "Fitter": "dip.fit", "Step": "dip.fit", "fit": "dip.fit", "fit_many": "dip.fit",
    "build_model": "dip.models", "SkipNet": "dip.network", "count_parameters": "dip.network",
    "Denoising": "dip.operators", "Inpainting": "dip.operators", "Operator": "dip.operators",
    "SuperResolution": "dip.operators", "make_operator": "dip.operators",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    """``dip.Fitter`` etc.: import the module that defines ``name`` when it is first asked for."""
    if name not in _HOME:
        raise AttributeError(f"module 'dip' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))


class _Package(types.ModuleType):
    """``dip.fit`` is the function :func:`dip.fit.fit`, as with an eager ``from dip.fit import fit``:
    importing the submodule ``dip.fit`` does not rebind the name (the module is ``sys.modules["dip.fit"]``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if not (name in _HOME and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

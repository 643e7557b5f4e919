"""Deep Image Prior (Ulyanov, Vedaldi, Lempitsky, CVPR 2018) as a small library.

>>> from dip import NetConfig, FitConfig, Inpainting, fit
"""

from dip.fit import FitConfig, FitResult, Fitter, Step, fit, fit_many
from dip.models import build_model
from dip.network import NetConfig, SkipNet, count_parameters
from dip.operators import Denoising, Inpainting, Operator, SuperResolution, make_operator

__version__ = "0.1.0"
# Bump whenever a code change alters the numbers of a fit (tests/test_numerics.py pins them): it
# enters every fit key (pipeline.execution.job.fit_key), so published fits are refitted only then.
NUMERICS = 1
__all__ = [
    "Denoising",
    "FitConfig",
    "FitResult",
    "Fitter",
    "Inpainting",
    "NetConfig",
    "Operator",
    "SkipNet",
    "Step",
    "SuperResolution",
    "build_model",
    "count_parameters",
    "fit",
    "fit_many",
    "make_operator",
]

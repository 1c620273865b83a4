"""ampkit: precision-controlled PyTorch training.

The public API for a user's own loop::

    from ampkit import Precision, PrecisionOptimizer, add_precision_args, fp32

and, for a script that ``ampkit compare -- python train.py ...`` studies, ``ampkit.log`` and
``ampkit.study_seed`` (see :mod:`ampkit.script_log`).

See README.md for a complete example, ``ampkit --help`` for the command line.
"""

from .optim import PrecisionOptimizer, StepOutcome
from .precision import (
    CANONICAL,
    MODES,
    ModuleFilter,
    Precision,
    PrecisionError,
    PrecisionWarning,
    canonical_mode,
    fp32,
    fp32_custom_bwd,
    fp32_custom_fwd,
    fp32_region,
)
from .precision.args import add_precision_args, rewrite_legacy_flags
from .script_log import log, study_seed

__version__ = "0.1.0"

__all__ = [
    "CANONICAL",
    "MODES",
    "ModuleFilter",
    "Precision",
    "PrecisionError",
    "PrecisionOptimizer",
    "PrecisionWarning",
    "StepOutcome",
    "__version__",
    "add_precision_args",
    "canonical_mode",
    "fp32",
    "fp32_custom_bwd",
    "fp32_custom_fwd",
    "fp32_region",
    "log",
    "rewrite_legacy_flags",
    "study_seed",
]

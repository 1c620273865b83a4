"""The precision switch: vocabulary, parsing, device fit and the ``Precision`` value object."""

from .aliases import ALIASES, PrecisionError, canonical_mode, valid_spellings
from .env_mode import from_env
from .keep_fp32 import NORM_TYPES, ModuleFilter, fp32, fp32_custom_bwd, fp32_custom_fwd, fp32_region
from .modes import CANONICAL, DTYPES, INITIAL_LOSS_SCALE, MODES, ModeSpec, dtype_name
from .policy import Precision, PrecisionWarning
from .resolve import PrecisionRequest, resolve

__all__ = [
    "ALIASES",
    "CANONICAL",
    "DTYPES",
    "INITIAL_LOSS_SCALE",
    "MODES",
    "NORM_TYPES",
    "ModeSpec",
    "ModuleFilter",
    "Precision",
    "PrecisionError",
    "PrecisionRequest",
    "PrecisionWarning",
    "canonical_mode",
    "dtype_name",
    "fp32",
    "fp32_custom_bwd",
    "fp32_custom_fwd",
    "fp32_region",
    "from_env",
    "resolve",
    "valid_spellings",
]

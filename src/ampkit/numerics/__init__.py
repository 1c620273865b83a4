"""Numerics: find and fix what goes wrong in low precision.

Non-finite localisation (:mod:`.localize`), fp16 range analysis (:mod:`.ranges`, :mod:`.advice`),
drift A/B against fp32 (:mod:`.drift`, :mod:`.analysis`), telemetry that proves a mode works
(:mod:`.telemetry`) and the ``--on-nonfinite`` policy with its fallback chain (:mod:`.fallback`).
"""

from .advice import RangeAdvice, advise
from .analysis import AnalysisReport, analyze
from .drift import DriftStep, lockstep, weight_drift
from .fallback import POLICIES, NumericsGuard, next_mode, switch_precision
from .localize import AnomalyHooks, NonFiniteError, NonFiniteEvent, localize_step
from .ranges import FP16_MAX, FP16_NORMAL, FP16_TINY, RangeRecorder
from .telemetry import DtypeFlopCounter, low_precision_flop_share, step_telemetry

__all__ = [
    "FP16_MAX",
    "FP16_NORMAL",
    "FP16_TINY",
    "POLICIES",
    "AnalysisReport",
    "AnomalyHooks",
    "DriftStep",
    "DtypeFlopCounter",
    "NonFiniteError",
    "NonFiniteEvent",
    "NumericsGuard",
    "RangeAdvice",
    "RangeRecorder",
    "advise",
    "analyze",
    "localize_step",
    "lockstep",
    "low_precision_flop_share",
    "next_mode",
    "step_telemetry",
    "switch_precision",
    "weight_drift",
]

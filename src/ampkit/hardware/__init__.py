"""Device facts: what this machine supports, measured, and what to use."""

from .capabilities import DeviceCaps, device_capabilities
from .memory import MemoryAdvice, memory_advice
from .recommend import Recommendation, decision_tree, recommend
from .report import SCHEMA, doctor_report
from .support import FORMATS, Support, support_matrix
from .throughput import PROBE_DTYPES, DtypeThroughput, MatmulPoint, Throughput, measure_matmul

__all__ = [
    "FORMATS",
    "PROBE_DTYPES",
    "SCHEMA",
    "DeviceCaps",
    "DtypeThroughput",
    "MatmulPoint",
    "MemoryAdvice",
    "Recommendation",
    "Support",
    "Throughput",
    "decision_tree",
    "device_capabilities",
    "doctor_report",
    "measure_matmul",
    "memory_advice",
    "recommend",
    "support_matrix",
]

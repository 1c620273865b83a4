"""Bridges to other training frameworks: what they call each ampkit precision."""

from .export import FRAMEWORK_ALIASES, FRAMEWORKS, device_type, export, exporter
from .exporters import DEVICES, EXPORTERS, Export, Exporter, Row, Tf32
from .merge import Merged, merge, merge_into
from .render import FORMATS, render, to_yaml

__all__ = [
    "DEVICES",
    "EXPORTERS",
    "FORMATS",
    "FRAMEWORKS",
    "FRAMEWORK_ALIASES",
    "Export",
    "Exporter",
    "Merged",
    "Row",
    "Tf32",
    "device_type",
    "export",
    "exporter",
    "merge",
    "merge_into",
    "render",
    "to_yaml",
]

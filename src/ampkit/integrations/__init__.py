"""Bridges to other training frameworks: what they call each ampkit precision."""

from .export import FRAMEWORK_ALIASES, FRAMEWORKS, export, exporter
from .exporters import EXPORTERS, Export, Exporter, Row
from .render import FORMATS, render, to_yaml

__all__ = [
    "EXPORTERS",
    "FORMATS",
    "FRAMEWORKS",
    "FRAMEWORK_ALIASES",
    "Export",
    "Exporter",
    "Row",
    "export",
    "exporter",
    "render",
    "to_yaml",
]

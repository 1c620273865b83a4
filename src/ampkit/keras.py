"""``import ampkit.keras``: ampkit precisions applied to Keras 3 (see :mod:`ampkit.integrations.keras`).

Imported only when used; without Keras installed the import is one ImportError line naming the
extra (``pip install 'ampkit[keras]'``).
"""

from .integrations.keras import (
    GROWTH_STEPS,
    NORM_LAYERS,
    POLICIES,
    KerasPrecision,
    keras_policy,
    precision,
)

__all__ = ["GROWTH_STEPS", "NORM_LAYERS", "POLICIES", "KerasPrecision", "keras_policy", "precision"]

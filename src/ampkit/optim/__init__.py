"""``PrecisionOptimizer``: loss scaling, accumulation, unscale -> clip -> step -> update, and the outcome.

- :mod:`.wrapper`: :class:`PrecisionOptimizer` itself;
- :mod:`.delegation`: its ``torch.optim.Optimizer`` face (groups, state, hooks, schedulers built on it);
- :mod:`.checkpoint`: ``state_dict`` / ``load_state_dict`` (a plain torch optimizer state too);
- :mod:`.rewrap`: rebinding it to a rebuilt optimizer, switching its precision;
- :mod:`.outcome`: :class:`StepOutcome` and the reasons a step is not applied;
- :mod:`.rebind`: carrying a scheduler over to a rebuilt optimizer;
- :mod:`.scaler_state`: the GradScaler record the wrapper reads;
- :mod:`.settings` / :mod:`.guards`: what it wraps and accepts; :mod:`.several`: several optimizers;
- :mod:`.half_eps`: a float16-safe ``eps``; :mod:`.weights`: naming inf/NaN already in the weights.
"""

from .finite import grads_finite
from .outcome import (
    NO_GRADIENTS,
    NONFINITE_GRADIENTS,
    NONFINITE_WEIGHTS,
    SCALER_SKIPPED,
    StepOutcome,
    is_finite,
)
from .wrapper import PrecisionOptimizer

__all__ = [
    "NONFINITE_GRADIENTS",
    "NONFINITE_WEIGHTS",
    "NO_GRADIENTS",
    "SCALER_SKIPPED",
    "PrecisionOptimizer",
    "StepOutcome",
    "grads_finite",
    "is_finite",
]

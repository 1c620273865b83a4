"""What the trackers share: the ``--log`` vocabulary, the package check, scalar names and the live hook.

Tag names are the same in TensorBoard and MLflow: ``train/*`` per optimizer step, ``memory/*`` and
``energy/*`` sampled at each step where measured, ``eval/*`` at each evaluation, ``final/*`` (the
held-out evaluation after the last step, as in ``metrics.json`` / ``results.json``) and
``summary/*`` (a study arm's figures). Nothing is estimated: a value that was not measured is not
logged.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

from ...errors import UsageError

log = logging.getLogger("ampkit")

#: Tracker name -> (module imported to check it, pip extra that installs it).
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "mlflow": ("mlflow", "mlflow"),
}


def parse_log(text: str | None) -> tuple[str, ...]:
    """``"tensorboard,mlflow"`` -> ``("tensorboard", "mlflow")``; :class:`UsageError` for bad names."""
    if text is None:
        return ()
    valid = f"valid: {', '.join(TRACKERS)} (comma-separated, e.g. --log tensorboard,mlflow)"
    names = [n.strip().lower() for n in text.split(",")]
    if not any(names):
        raise UsageError(f"--log {text!r}: names no tracker; {valid}")
    if "" in names:
        raise UsageError(f"--log {text}: empty name in the list; {valid}")
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise UsageError(f"--log {text}: unknown tracker {unknown[0]!r}; {valid}")
    return tuple(dict.fromkeys(names))


def require(names: Iterable[str], command: str = "train") -> None:
    """Import each tracker's package now (before any work); one line naming the extra if one is missing."""
    for name in names:
        module, extra = TRACKERS[name]
        try:
            importlib.import_module(module)
        except ImportError:
            raise UsageError(
                f"--log {name} needs the {module} package: pip install 'ampkit[{extra}]'"
            ) from None


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (bools and None give None)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str | int | float | bool]:
    """A nested config as flat ``a.b`` keys with scalar values (None and lists as text)."""
    out: dict[str, str | int | float | bool] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_params(value, f"{name}."))
        elif isinstance(value, (str, int, float, bool)):
            out[name] = value
        else:
            out[name] = "None" if value is None else str(value)
    return out


def eval_scalars(metrics: Mapping[str, Any], group: str) -> dict[str, float]:
    """``{"loss": .., "accuracy": ..}`` -> ``{"eval/loss": .., "eval/accuracy": ..}`` (finite values)."""
    return {f"{group}/{k}": v for k, v in ((k, finite(x)) for k, x in metrics.items()) if v is not None}


def figure_scalars(figures: Mapping[str, Any]) -> dict[str, float]:
    """A study arm's figures (``{"value", "unit", "method"}``) that were measured, as ``summary/*``."""
    out = {}
    for key, fig in figures.items():
        value = finite(fig.get("value")) if isinstance(fig, Mapping) else None
        if value is not None:
            out[f"summary/{key}"] = value
    return out


def step_scalars(
    loss: float | None,
    time_s: float | None,
    *,
    lr: float | None = None,
    loss_scale: float | None = None,
    grad_norm: float | None = None,
    skipped: int | None = None,
    items: int | None = None,
) -> dict[str, float]:
    """One optimizer step's ``train/*`` scalars (values that are None or not finite are left out)."""
    values = {
        "train/loss": loss,
        "train/step_time_s": time_s,
        "train/lr": lr,
        "train/loss_scale": loss_scale,
        "train/grad_norm": grad_norm,
        "train/skipped_steps": skipped,
        "train/throughput": items / time_s if items and time_s else None,
    }
    return {k: v for k, v in ((k, finite(x)) for k, x in values.items()) if v is not None}

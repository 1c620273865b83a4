"""The type and range of every :class:`~ampkit.engine.config.TrainConfig` field, checked where a
config comes from a file (a checkpoint's ``config``, a launcher's config file): a hand-edited
``batch_size = 0`` or ``seed = 2**80`` is one line naming the field, never a traceback steps later.

The rules are the command line's (``--batch-size`` a whole number >= 1, ``--seed`` in 0..2**63-1,
``--lr`` a finite number > 0, ...), stated here, below the command line, so that the engine can
apply them to what it reads. A machine's own limits (``--threads`` up to its CPU count) are not
a file's concern: a checkpoint written elsewhere keeps its value, within a hard bound.
"""

from __future__ import annotations

import math
import os
from typing import Any

#: The most optimizer steps a run may have (``--steps``; a checkpoint's ``step`` too).
MAX_STEPS = 10**9
#: The most passes over a training set (``--epochs``).
MAX_EPOCHS = 10**6
#: Seeds torch and NumPy both take.
MAX_SEED = 2**63 - 1
#: A bound on ``threads`` / ``nproc`` read from a file (more than any machine has).
MAX_COUNT = 65536
#: A bound on ``batch_size`` / ``accumulate``: the command line sets none (a batch too large for
#: the machine fails as out of memory, in one line); this one keeps sizes within 64-bit arithmetic.
MAX_COUNT_LARGE = 2**40
#: Devices ampkit runs on.
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")
SIZES = ("default", "small", "gpu")
BOOLS = (
    "resume", "resume_any", "fp8_emulate", "compile", "detect_anomaly", "flop_share", "track_grad_norm",
    "progress",
)  # fmt: skip


class ConfigError(ValueError):
    """A field of a config read from a file has the wrong type or is out of range.

    ``str(err)`` is ``"<field> is <value>; valid: <what is valid>"``.
    """

    def __init__(self, field: str, value: Any, valid: str, *, said: str | None = None) -> None:
        self.field, self.value, self.valid = field, value, valid
        super().__init__(f"{field} is {said or shown(value)}; valid: {valid}")


def shown(value: Any) -> str:
    """``value`` for a message, as the file holds it (``'abc'``, ``8.0``, ``nan``), long values cut."""
    text = str(value) if is_int(value) or isinstance(value, bool) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float that is not a ``bool``."""
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _whole(field: str, value: Any, low: int, high: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not is_int(value) or not low <= value <= high:
        raise ConfigError(
            field, value, f"a whole number in {low}..{high:_}" + (" or null" if optional else "")
        )


def _real(field: str, value: Any, low: float, *, above: bool, high: float = math.inf, optional: bool) -> None:
    if value is None and optional:
        return
    if not is_number(value) or value < low or (above and value == low) or value > high:
        bound = f"{'>' if above else '>='} {low:g}" + (f" and <= {high:_g}" if high < math.inf else "")
        raise ConfigError(field, value, f"a finite number {bound}" + (" or null" if optional else ""))


def _choice(field: str, value: Any, choices: tuple[str, ...], optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(field, value, ", ".join(choices) + (" or null" if optional else ""))


def _text(field: str, value: Any, valid: str) -> None:
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        raise ConfigError(field, value, valid)


def _keep_fp32(value: Any) -> None:
    if value is None:
        return
    from ..precision import ModuleFilter, PrecisionError

    valid = "null, or type names or re:PATTERN, comma-separated (e.g. LayerNorm,re:^head)"
    if not isinstance(value, str):
        raise ConfigError("keep_fp32", value, valid)
    try:
        ModuleFilter.parse(value)  # "" (nothing kept) is what a run without the flag records
    except PrecisionError as err:
        raise ConfigError("keep_fp32", value, valid, said=f"{shown(value)} ({err})") from None


def _precision(value: Any) -> None:
    from ..precision import MODES, PrecisionError, canonical_mode

    try:
        known = isinstance(value, str) and bool(canonical_mode(value))
    except PrecisionError:
        known = False
    if not known:
        raise ConfigError("precision", value, "a precision mode (" + ", ".join(MODES) + ")")


def _device(value: Any) -> None:
    import torch

    try:
        known = isinstance(value, str) and torch.device(value).type in DEVICE_TYPES
    except (RuntimeError, ValueError, TypeError):
        known = False
    if not known:
        raise ConfigError("device", value, "cpu, cuda, cuda:N, mps, xpu, xpu:N")


def _compile_backend(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.replace("_", "").isalnum():
        raise ConfigError("compile_backend", value, "null or a torch.compile backend name such as inductor")
    import torch._dynamo

    backends = torch._dynamo.list_backends(exclude_tags=())
    if value not in backends:
        raise ConfigError("compile_backend", value, "null or one of " + ", ".join(sorted(backends)))


def check_field(field: str, value: Any) -> None:
    """``value`` fits TrainConfig ``field`` (type, then range or choices), else :class:`ConfigError`."""
    from ..numerics.fallback import POLICIES
    from ..optim_bf16 import UPDATE_METHODS
    from .distributed import STRATEGIES

    if field in BOOLS:
        if not isinstance(value, bool):
            raise ConfigError(field, value, "true or false")
    elif field == "task":
        _text(field, value, valid="a task name (digits, tinygpt, ct or module:factory)")
    elif field == "precision":
        _precision(value)
    elif field == "keep_fp32":
        _keep_fp32(value)
    elif field == "device":
        _device(value)
    elif field == "steps":
        _whole(field, value, 1, MAX_STEPS, optional=True)
    elif field == "epochs":
        _real(field, value, 0, above=True, high=MAX_EPOCHS, optional=True)
    elif field in ("batch_size", "accumulate", "fallback_after"):
        _whole(field, value, 1, MAX_COUNT_LARGE)
    elif field in ("threads", "nproc"):
        _whole(field, value, 1, MAX_COUNT, optional=field == "threads")
    elif field in ("checkpoint_every", "eval_every"):
        _whole(field, value, 0, MAX_STEPS)
    elif field == "seed":
        _whole(field, value, 0, MAX_SEED)
    elif field in ("lr", "clip_grad_norm", "clip_grad_value"):
        _real(field, value, 0, above=True, optional=True)
    elif field in ("weight_decay", "fallback_scale_floor"):
        _real(field, value, 0, above=False, optional=False)
    elif field == "size":
        _choice(field, value, SIZES)
    elif field == "out":
        if value is not None and not isinstance(value, str | os.PathLike):
            raise ConfigError(field, value, "null or a folder path")
    elif field == "compile_backend":
        _compile_backend(value)
    elif field in ("bf16_update", "strategy", "on_nonfinite"):
        choices = {"bf16_update": UPDATE_METHODS, "strategy": STRATEGIES, "on_nonfinite": POLICIES}[field]
        _choice(field, value, tuple(choices))


def check_config_dict(data: Any, names: set[str]) -> None:
    """``data`` is a dict of known fields (``names``), each of the right type and in range."""
    if not isinstance(data, dict):
        raise ConfigError("config", data, "a dict of TrainConfig fields")
    unknown = sorted(str(key) for key in set(data) - names)
    if unknown:
        fields = ", ".join(sorted(names))
        raise ConfigError(unknown[0], None, f"the TrainConfig fields ({fields})", said="an unknown field")
    for field, value in data.items():
        check_field(field, value)

"""Types and ranges of a study's values, checked in the parent before any arm starts.

A study file is typed by hand, so every value is checked against what it means: the
:class:`~ampkit.study.config.Experiment` fields (``steps`` a whole number, ``precisions`` a
string or a list of strings, ``overrides`` a table, ...) and each override against its
:class:`~ampkit.engine.TrainConfig` field (type, range or choices). Each check raises
:class:`~ampkit.errors.UsageError` with one line naming the value and what is valid.
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Mapping
from typing import Any

from ..engine import TrainConfig
from ..engine.distributed import STRATEGIES
from ..errors import UsageError
from ..numerics.fallback import POLICIES
from ..optim_bf16 import UPDATE_METHODS

#: TrainConfig fields with a fixed set of values.
CHOICES: dict[str, tuple[str, ...]] = {
    "size": ("default", "small", "gpu"),
    "bf16_update": UPDATE_METHODS,
    "strategy": STRATEGIES,
    "on_nonfinite": POLICIES,
}
#: Numeric TrainConfig fields: (lowest allowed value, whether the lowest itself is allowed).
BOUNDS: dict[str, tuple[float, bool]] = {
    "batch_size": (1, True),
    "accumulate": (1, True),
    "threads": (1, True),
    "fallback_after": (1, True),
    "eval_every": (0, True),
    "checkpoint_every": (0, True),
    "weight_decay": (0, True),
    "fallback_scale_floor": (0, True),
    "lr": (0, False),
    "clip_grad_norm": (0, False),
    "clip_grad_value": (0, False),
}
#: The most optimizer steps a run may ask for (``steps`` here, ``--steps`` on a command line).
MAX_STEPS = 10**9


def max_threads() -> int:
    """The most CPU threads a run may ask for: this machine's logical CPUs (``os.cpu_count()``)."""
    import os

    return os.cpu_count() or 1


#: An experiment's name becomes a folder under ``--out`` (matched whole: ``$`` would let "abc\n" in).
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")

_HINTS = typing.get_type_hints(TrainConfig)


def kind_of(value: Any) -> str:
    """A TOML-ish name for ``value``'s type, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def is_int(value: Any) -> bool:
    """An integer that is not a boolean (TOML ``true`` is not a step count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float (not a boolean)."""
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _allowed(field: str) -> tuple[type, bool]:
    """(base type, None allowed) of a TrainConfig field."""
    hint = _HINTS[field]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return (args[0] if args else hint), type(None) in typing.get_args(hint)


def check_override(field: str, value: Any, where: str) -> None:
    """``value`` fits TrainConfig field ``field`` (its type, then its range or choices)."""
    base, optional = _allowed(field)
    if value is None and optional:
        return
    what = f"{where}: {field} = {value!r}"
    if base is bool:
        if not isinstance(value, bool):
            raise UsageError(f"{what} is {kind_of(value)}; valid: true or false")
        return
    if base is int and not is_int(value):
        raise UsageError(f"{what} is {kind_of(value)}; valid: a whole number")
    if base is float and not is_number(value):
        raise UsageError(f"{what} is {kind_of(value)}; valid: a finite number")
    if base is str and not isinstance(value, str):
        raise UsageError(f"{what} is {kind_of(value)}; valid: a string")
    if field in CHOICES and value not in CHOICES[field]:
        raise UsageError(f"{what}: unknown; valid: {', '.join(CHOICES[field])}")
    if field in BOUNDS:
        low, inclusive = BOUNDS[field]
        if value < low or (value == low and not inclusive):
            raise UsageError(f"{what}: out of range; valid: {'>=' if inclusive else '>'} {low:g}")
    if field == "threads" and value > max_threads():
        raise UsageError(
            f"{what}: more than the {max_threads()} CPU(s) of this machine; valid: 1..{max_threads()}"
        )
    if field == "keep_fp32":
        from ..precision import ModuleFilter, PrecisionError

        try:
            chosen = ModuleFilter.parse(value)
        except PrecisionError as err:
            raise UsageError(f"{where}: keep_fp32: {err}; valid: type names or re:PATTERN") from None
        if not chosen:
            raise UsageError(f'{what}: an empty selection; valid: type names or re:PATTERN, e.g. "LayerNorm"')
    if field == "compile_backend":
        import torch._dynamo

        backends = torch._dynamo.list_backends(exclude_tags=())
        if value not in backends:
            raise UsageError(f"{what}: unknown torch.compile backend; valid: {', '.join(sorted(backends))}")
    if field == "device":
        import torch

        try:
            known = torch.device(value).type in ("cpu", "cuda", "mps", "xpu")
        except (RuntimeError, ValueError):
            known = False
        if not known:
            raise UsageError(f"{what}: unknown device; valid: cpu, cuda, cuda:N, mps, xpu, xpu:N")


def check_overrides(overrides: Any, where: str, allowed: tuple[str, ...]) -> None:
    """``overrides`` is a table of allowed TrainConfig fields, each of the right type and range."""
    if not isinstance(overrides, Mapping):
        raise UsageError(
            f"{where}: overrides = {overrides!r} is {kind_of(overrides)}; "
            "valid: a table such as { batch_size = 32, lr = 0.003 }"
        )
    bad = sorted(set(overrides) - set(allowed))
    if bad:
        raise UsageError(f"{where}: overrides {bad} not allowed; valid: {', '.join(allowed)}")
    for key, value in overrides.items():
        check_override(key, value, f"{where}: overrides")


def _list_of(value: Any, ok: Any, what: str) -> str | None:
    """Why ``value`` is not a list whose items pass ``ok`` (None when it is)."""
    if not isinstance(value, list):
        return f"is {kind_of(value)}"
    bad = [v for v in value if not ok(v)]
    return f"holds {bad[0]!r} ({kind_of(bad[0])}), not {what}" if bad else None


def _field_problem(key: str, value: Any) -> str | None:
    """Why a study file's ``key = value`` has the wrong type (None when the type is right)."""
    if key == "task":
        return None if isinstance(value, str) and value.strip() else f"is {kind_of(value)}"
    if key == "precisions":
        return (
            None if isinstance(value, str) else _list_of(value, lambda p: isinstance(p, str), "a mode name")
        )
    if key == "seeds":
        return None if is_int(value) else _list_of(value, is_int, "a whole number")
    if key in ("steps", "warmup_steps", "gpus"):
        return None if is_int(value) else f"is {kind_of(value)}"
    if key == "target_metric":
        return None if is_number(value) else f"is {kind_of(value)}"
    if key in ("overrides", "env"):
        if not isinstance(value, Mapping):
            return f"is {kind_of(value)}"
        bad = [v for v in value.values() if key == "env" and not (isinstance(v, str) or is_int(v))]
        return f"holds {bad[0]!r} ({kind_of(bad[0])}), not a string" if bad else None
    if key == "command":
        return _list_of(value, lambda a: isinstance(a, str), "a string") if value != [] else "is empty"
    if key == "parse":
        return (
            None
            if isinstance(value, str)
            else _list_of(value, lambda p: isinstance(p, str), "a regex string")
        )
    if key == "compile":  # --compile off|on|both (a study file may also write true/false)
        return None if isinstance(value, bool) or value in ("off", "on", "both") else f"is {kind_of(value)}"
    if key in ("metric", "amp_flags"):
        if isinstance(value, str):
            return None if value.strip() else "is empty"
        return f"is {kind_of(value)}"
    return None


#: What each experiment field takes, for messages.
FIELD_VALID = {
    "task": 'a task name such as "digits" or "my_module:make_task"',
    "precisions": 'a list of modes such as ["fp32", "bf16-mixed"], or "auto"',
    "seeds": "a list of whole numbers such as [0, 1, 2]",
    "steps": "a whole number >= 1",
    "warmup_steps": "a whole number >= 0",
    "gpus": "a whole number >= 1",
    "target_metric": "a finite number such as 0.98",
    "overrides": "a table such as { batch_size = 32 }",
    "command": 'a list of arguments such as ["python", "train.py", "--epochs", "1"]',
    "env": 'a table of strings such as { OMP_NUM_THREADS = "1", DATA = "{out}/data" }',
    "parse": "a regex with named groups, or a list of them, such as 'loss (?P<loss>\\S+)'",
    "metric": 'a logged value\'s name, optionally with :max or :min, such as "acc" or "val_loss:min"',
    "amp_flags": 'a string of flags such as "--amp --amp_dtype {amp_dtype}"',
    "compile": '"off", "on" (every arm under torch.compile) or "both" (eager and compiled arms)',
}


def check_fields(values: Mapping[str, Any], where: str) -> None:
    """Types of an experiment's own fields as written in a study file (before they are parsed)."""
    for key, valid in FIELD_VALID.items():
        if key in values:
            problem = _field_problem(key, values[key])
            if problem is not None:
                raise UsageError(f"{where}: {key} = {values[key]!r} {problem}; valid: {valid}")


def check_seeds(seeds: tuple[int, ...], where: str) -> None:
    """Seeds are distinct whole numbers in ``[0, 2**63)`` (what torch and numpy both accept)."""
    for seed in seeds:
        if not is_int(seed) or not 0 <= seed < 2**63:
            raise UsageError(f"{where}: seed {seed!r}; valid: whole numbers from 0 to 2**63-1")
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise UsageError(f"{where}: seeds {list(seeds)} repeat {twice}; valid: distinct seeds such as 0,1,2")


def check_name(name: Any, where: str) -> None:
    """An experiment name is a plain folder name (it becomes ``--out``/NAME)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name in (".", ".."):
        raise UsageError(
            f"{where}: experiment name {name!r}; valid: letters, digits, '_', '-' and '.', "
            "not starting with '.' or '-' (it names a folder)"
        )

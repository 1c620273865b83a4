"""The RNG and loss-scaler state inside a checkpoint, checked against what Python, NumPy and torch accept.

``rng_ranks`` (every rank's generator states, from a multi-process run) and ``scaler``
(``GradScaler.state_dict()``, at the top of the checkpoint and inside ``optimizer``) are restored
only steps into a resumed run, on some ranks, or never (``evaluate``), so a hand-edited value
would pass silently or fail late. They are checked with the other fields (:mod:`.ckpt_fields`):
a bad value is one line ``<file>: <field> is <value>; valid: ...`` before anything is built.
Each generator state is set on a throwaway generator (``random.Random``, NumPy's
``RandomState``, ``torch.Generator``), so "valid" is what :func:`~.checkpoint.restore_rng` restores.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from .config_check import is_int, is_number, shown

#: The scale is a float32 tensor in ``GradScaler``; its growth tracker an int32 one.
FLOAT32_MAX = float(torch.finfo(torch.float32).max)
INT32_MAX = 2**31 - 1
#: What ``GradScaler.state_dict()`` holds, and what is valid for each (``GradScaler`` asserts the factors).
SCALER_KEYS = ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")
SCALER_VALID = f"null, {{}} (no loss scaling) or GradScaler.state_dict()'s {', '.join(SCALER_KEYS)}"
PER_RANK = "a dict of python, numpy, torch (and cuda) generator states, as capture_rng() saves"
NUMPY = "NumPy's legacy MT19937 state: 624 keys in 0..2**32-1, pos in 0..624, has_gauss 0 or 1, a float"

#: A reason a value is refused: ``(field, the value as said, what is valid)``.
Problem = tuple[str, str, str]


def numpy_state(saved: Any) -> tuple[Any, ...]:
    """The ``np.random.set_state`` tuple of a checkpoint's NumPy state (dict form, or older tuple)."""
    if isinstance(saved, dict):  # this version's plain form
        keys = saved["keys"]
        keys = keys.cpu().numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
        return (
            saved["name"],
            keys.astype(np.uint32),
            saved["pos"],
            saved["has_gauss"],
            saved["cached_gaussian"],
        )
    return tuple(saved)  # older checkpoints: np.random.get_state()'s tuple


def described(value: Any) -> str:
    """``value`` for a message; a tensor by dtype and shape (its bytes say nothing)."""
    if isinstance(value, torch.Tensor | np.ndarray):
        dtype, kind = str(value.dtype).removeprefix("torch."), type(value).__name__.lower()
        return f"{'an' if dtype.startswith('int') else 'a'} {dtype} {kind} of shape {list(value.shape)}"
    text = shown(value)
    if isinstance(value, dict | list | tuple) and text.endswith("..."):  # a long state: its size says more
        return f"a {type(value).__name__} of {len(value)} entries"
    return text


def _python(value: Any) -> str | None:
    try:
        version, internal, gauss = value
        if gauss is not None and not isinstance(gauss, float):
            return "gauss_next is not null or a float"
        random.Random().setstate((version, tuple(internal), gauss))
    except (TypeError, ValueError, OverflowError) as err:
        return str(err) or type(err).__name__
    return None


def _numpy(value: Any) -> str | None:
    try:
        name, keys, pos, has_gauss, cached = numpy_state(value)
        wide = np.asarray(value["keys"] if isinstance(value, dict) else keys)
        if wide.shape != (624,) or wide.dtype.kind not in "iu" or wide.min() < 0 or wide.max() >= 2**32:
            return "its keys are not 624 whole numbers in 0..2**32-1"
        if not (is_int(pos) and 0 <= pos <= 624 and has_gauss in (0, 1) and is_number(cached)):
            return f"pos {shown(pos)}, has_gauss {shown(has_gauss)}, cached_gaussian {shown(cached)}"
        np.random.RandomState().set_state((name, keys, pos, has_gauss, cached))
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as err:
        return str(err) or type(err).__name__
    return None


def _generator(value: Any, device: str) -> str | None:
    if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8 or value.dim() != 1:
        return "not a 1-D uint8 tensor"
    if device == "cuda" and not torch.cuda.is_available():
        return None  # its size is CUDA's to check: this machine cannot
    try:
        torch.Generator(device).set_state(value.cpu())
    except (RuntimeError, TypeError, ValueError) as err:
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    return None


def rng_problem(state: Any, field: str) -> Problem | None:
    """Why ``state`` (one rank's :func:`~.checkpoint.capture_rng` dict) cannot be restored, or None."""
    if not isinstance(state, dict) or not {"python", "numpy", "torch"} <= set(state):
        return field, described(state), PER_RANK
    torch_size = torch.get_rng_state().numel()
    checks = [
        ("python", _python, "random.getstate()'s (version, 625 whole numbers, null or a float)"),
        ("numpy", _numpy, NUMPY),
        (
            "torch",
            lambda v: _generator(v, "cpu"),
            f"torch.get_rng_state()'s uint8 tensor of {torch_size} bytes",
        ),
    ]
    for name, check, valid in checks:
        why = check(state[name])
        if why is not None:
            return f"{field}.{name}", f"{described(state[name])} ({why})", valid
    cuda = state.get("cuda")
    if cuda is not None:
        if not isinstance(cuda, list | tuple):
            return (
                f"{field}.cuda",
                described(cuda),
                "a list of torch.cuda.get_rng_state_all()'s uint8 tensors",
            )
        for i, value in enumerate(cuda):
            why = _generator(value, "cuda")
            if why is not None:
                return (
                    f"{field}.cuda[{i}]",
                    f"{described(value)} ({why})",
                    "torch.cuda.get_rng_state()'s uint8 tensor",
                )
    return None


def rng_ranks_problem(ranks: Any) -> Problem | None:
    """``rng_ranks``: null (one process) or a non-empty list of per-rank RNG states."""
    if ranks is None:
        return None
    if not isinstance(ranks, list | tuple) or not ranks:
        return "rng_ranks", described(ranks), f"null or a list with one entry per rank, each {PER_RANK}"
    for i, state in enumerate(ranks):
        found = rng_problem(state, f"rng_ranks[{i}]")
        if found is not None:
            return found
    return None


def scaler_problem(scaler: Any, field: str) -> Problem | None:
    """A ``GradScaler.state_dict()`` (``{}`` or None: no loss scaling), as ``load_state_dict`` needs it."""
    if scaler is None or (isinstance(scaler, dict) and not scaler):
        return None
    if not isinstance(scaler, dict):
        return field, described(scaler), SCALER_VALID
    missing = [key for key in SCALER_KEYS if key not in scaler]
    if missing:
        return f"{field}.{missing[0]}", "missing", SCALER_VALID
    scale, growth, backoff = scaler["scale"], scaler["growth_factor"], scaler["backoff_factor"]
    interval, tracker = scaler["growth_interval"], scaler["_growth_tracker"]
    if not (is_number(scale) and 0 < scale <= FLOAT32_MAX):
        return f"{field}.scale", shown(scale), f"a finite number > 0 and <= {FLOAT32_MAX:.6g} (float32)"
    if not (is_number(growth) and growth > 1):
        return f"{field}.growth_factor", shown(growth), "a finite number > 1"
    if not (is_number(backoff) and 0 < backoff < 1):
        return f"{field}.backoff_factor", shown(backoff), "a number > 0 and < 1"
    if not (is_int(interval) and 1 <= interval <= INT32_MAX):
        return f"{field}.growth_interval", shown(interval), f"a whole number in 1..{INT32_MAX:_}"
    if not (is_int(tracker) and 0 <= tracker < interval):
        return (
            f"{field}._growth_tracker",
            shown(tracker),
            f"a whole number in 0..growth_interval-1 ({interval - 1:_})",
        )
    return None

"""Which precisions and seeds a study runs, as the user gives them: flags, study-file values, ``USE_AMP``.

:func:`parse_precisions` and :func:`parse_seeds` turn ``--precisions``/``--seeds`` text or a
study file's lists into canonical, distinct values (a :class:`~ampkit.errors.UsageError` naming
``where`` otherwise); :func:`precisions_from_env` reads the ablation script's ``USE_AMP=1``.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import UsageError
from ..precision import PrecisionError, canonical_mode, from_env
from .validate import check_seeds, is_int


def precisions_from_env(
    environ: Mapping[str, str] | None = None, *, bf16_in_hardware: bool, device_type: str = "cpu"
) -> tuple[str, ...] | None:
    """``USE_AMP=1`` means "fp32 vs the AMP mode": ``("fp32", <mode from USE_AMP/AMP_DTYPE>)``; else None.

    ``USE_AMP=1`` alone picks the mode for ``device_type`` (bf16-mixed on a CPU; on a GPU,
    bf16-mixed where it has bf16, else fp16-mixed).
    """
    mode = from_env(environ, device_type=device_type, bf16_in_hardware=bf16_in_hardware)
    return ("fp32", mode) if mode else None


def parse_precisions(text: str | list[str] | None, where: str = "--precisions") -> tuple[str, ...] | None:
    """``"auto"``/None -> None; ``"fp32,bf16"`` or a list -> canonical names."""
    if text is None:
        return None
    if not isinstance(text, str | list | tuple) or not all(isinstance(p, str) for p in text):
        raise UsageError(f"{where}: precisions {text!r}; valid: mode names such as fp32,bf16-mixed or auto")
    items = [p.strip() for p in (text.split(",") if isinstance(text, str) else text) if str(p).strip()]
    if items == ["auto"]:
        return None
    if not items:
        raise UsageError(
            f"{where}: no precisions in {text!r}; valid: mode names such as fp32,bf16-mixed or auto"
        )
    try:
        return tuple(dict.fromkeys(canonical_mode(p) for p in items))
    except PrecisionError as err:
        raise UsageError(f"{where}: {err} (or 'auto')") from None


def parse_seeds(text: str | int | list[int], where: str = "--seeds") -> tuple[int, ...]:
    """``"0,1,2"``, ``[0, 1, 2]`` or ``0`` -> a tuple of distinct seeds in ``[0, 2**63)``."""
    if isinstance(text, bool) or not isinstance(text, str | int | list | tuple):
        raise UsageError(f"{where}: seeds {text!r}; valid: whole numbers such as 0,1,2")
    if isinstance(text, int):
        text = [text]
    if isinstance(text, str):
        try:
            seeds = tuple(int(s) for s in text.split(",") if s.strip())
        except ValueError:
            raise UsageError(f"{where} {text!r}: not whole numbers; valid: seeds such as 0,1,2") from None
    else:
        if not all(is_int(s) for s in text):
            raise UsageError(f"{where}: seeds {list(text)!r}; valid: whole numbers such as [0, 1, 2]")
        seeds = tuple(text)
    if not seeds:
        raise UsageError(f"{where}: no seeds in {text!r}; valid: whole numbers such as 0,1,2")
    check_seeds(seeds, where)
    return seeds

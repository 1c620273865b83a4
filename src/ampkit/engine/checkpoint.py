"""Checkpoints: written atomically, read without running code.

A checkpoint is tensors and plain data only (dicts, lists, tuples, str, int, float, bool, None):
RNG states included (NumPy's as a tensor of its key words), so :func:`load_checkpoint` reads it
with ``torch.load(weights_only=True)``. A file that would need any other global to unpickle is
refused, as is a damaged or foreign file, with one line naming the file and what is wrong
(:class:`~ampkit.errors.UsageError`). Checkpoints from ampkit versions that saved NumPy's state
as an ``ndarray`` still load: the NumPy globals a numeric array needs (``ndarray``, ``dtype`` and
its numeric classes, ``_reconstruct``) are allowed for the duration of each load, nothing else.
"""

from __future__ import annotations

import errno
import pickle
import random
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UsageError
from ..fsutil import write_with
from .ckpt_fields import check_fields
from .ckpt_file import VALID, opened_checkpoint
from .ckpt_state import numpy_state
from .runfolder import writing

#: Keys (and their types) every checkpoint written by ``ampkit train`` holds.
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "model": dict,
    "optimizer": dict,
    "precision": str,
    "task": str,
    "step": int,
    "rng": dict,
    "config": dict,
    "result": dict,
}


def _legacy_numpy_globals() -> list[Any]:
    """What an ``ndarray`` of numbers needs to unpickle (older checkpoints' NumPy RNG state)."""
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy.(_)core.multiarray._reconstruct
    names = ("numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct")
    dtype_types = [type(np.dtype(t)) for t in (np.uint32, np.int64, np.float64)]
    return [np.ndarray, np.dtype, *dtype_types, *((reconstruct, name) for name in names)]


def capture_rng() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states, as tensors and plain data."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (also reads the older NumPy tuple form)."""
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    np.random.set_state(numpy_state(state["numpy"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` through :func:`ampkit.fsutil.write_with`: temp file, fsync, rename over ``path``.

    A failed write (full disk) raises :class:`OSError` naming ``path``; the old file stays intact.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing(path):
        try:
            write_with(path, lambda handle: torch.save(obj, handle))
        except RuntimeError as err:  # torch's zip writer hides a failed write behind its own error
            fault = _os_error_in(err)
            if fault is None:
                raise
            raise fault from err


def _os_error_in(err: BaseException) -> OSError | None:
    """The :class:`OSError` that ``err`` was raised while handling, if any."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _refused(path: Path, err: pickle.UnpicklingError) -> UsageError:
    text = str(err)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        what = f"it references {found.group(1)}"
    else:
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n|$)", text)
        what = f"unreadable pickle data ({detail.group(1) if detail else 'not a torch file'})"
    return UsageError(
        f"{path}: not an ampkit checkpoint or it needs code to load (refused: weights_only); {what}, "
        f"but only tensors and plain data are loaded; {VALID}"
    )


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu", *, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` of the file :func:`~.ckpt_file.opened_checkpoint` opened
    and checked (a FIFO, device, compressed or oversized archive is refused before torch reads it);
    any file that is not a readable torch file raises :class:`UsageError` (one line). Real read faults
    (EIO) stay :class:`OSError`. ``mmap``: map the tensors' bytes instead of reading them (zip files)."""
    path = Path(path)
    with opened_checkpoint(path) as found:
        source = found.mmap_name if mmap and found.mmap_name else found.handle
        try:
            with (
                warnings.catch_warnings(),
                torch.serialization.safe_globals(_legacy_numpy_globals()),
            ):
                warnings.simplefilter("ignore")  # torch's notes on pickle protocols of foreign files
                return torch.load(
                    source, map_location=map_location, weights_only=True, mmap=source is not found.handle
                )
        except pickle.UnpicklingError as err:
            raise _refused(path, err) from None
        except PermissionError:
            raise UsageError(f"{path}: cannot read: permission denied") from None
        except OSError as err:
            if err.errno in (errno.EIO, errno.ENOMEM, errno.ENXIO):
                raise OSError(err.errno, err.strerror, str(path)) from err
            raise UsageError(
                f"{path}: damaged or truncated checkpoint ({err.strerror or err}); {VALID}"
            ) from None
        except EOFError:
            raise UsageError(
                f"{path}: damaged or truncated checkpoint (the data ends early); {VALID}"
            ) from None
        except (KeyError, IndexError, ValueError, TypeError, AttributeError, zipfile.BadZipFile):
            raise UsageError(
                f"{path}: not a torch checkpoint (neither a torch zip archive nor a pickle); {VALID}"
            ) from None
        except RuntimeError as err:
            reason = str(err).split(". ")[0].splitlines()[0][:120] if str(err) else type(err).__name__
            raise UsageError(f"{path}: damaged or truncated checkpoint ({reason}); {VALID}") from None


def _type_name(value: Any) -> str:
    return "a Tensor" if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"


def check_checkpoint(state: Any, path: Path) -> dict[str, Any]:
    """``state`` if it has the keys and types of an ampkit checkpoint, else :class:`UsageError`."""
    expected = ", ".join(REQUIRED)
    if not isinstance(state, dict):
        raise UsageError(
            f"{path}: not an ampkit checkpoint: it holds {_type_name(state)}, not a dict of {expected}; {VALID}"
        )
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise UsageError(f"{path}: not an ampkit checkpoint: a dict without {', '.join(missing)}; {VALID}")
    for key, kind in REQUIRED.items():
        if not isinstance(state[key], kind) or (isinstance(state[key], bool) and kind is int):
            want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise UsageError(
                f"{path}: not an ampkit checkpoint: {key!r} is {_type_name(state[key])}, not a {want}"
            )
    check_fields(state, path)  # config, step, precision, keep_fp32, optimizer hyperparameters
    return state


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read an ampkit checkpoint safely (``weights_only=True``) and check its layout.

    Raises :class:`UsageError` (one line naming ``path``) for a missing, empty, truncated,
    garbage or foreign file, and for one that needs code to unpickle (nothing of it runs).
    """
    return check_checkpoint(read_checkpoint(Path(path), map_location), Path(path))


def load_weights(module: torch.nn.Module, weights: dict[str, Any], path: Path) -> None:
    """``module.load_state_dict(weights)``; a mismatch is a :class:`UsageError` naming ``path``."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        detail = " ".join(str(err).split())[:200] or type(err).__name__
        raise UsageError(f"{path}: its weights do not fit the model of its task ({detail})") from None

"""``ampkit train --out``: an earlier run's files are kept unless asked, and a stopped run says what it kept.

A run folder that holds ``last.pt`` (or ``metrics.json``) from an earlier run is refused before
any work unless ``--resume`` continues that run or ``--overwrite`` replaces it, so a rerun of the
same command never silently overwrites a longer run. After Ctrl-C or SIGTERM, :func:`stop_hint`
names the checkpoint this run left (its step) and how to continue from it.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

from ..errors import UsageError
from ..fsutil import open_regular

CHECKPOINT = "last.pt"
METRICS = "metrics.json"
#: What --checkpoint-every does, for a run stopped before it wrote a checkpoint.
_KEEP = "--checkpoint-every N keeps one every N steps"


def _stamp(path: Path) -> tuple[int, int] | None:
    """``(inode, mtime)`` of ``path``, or None when there is no file (an atomic rewrite changes both)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns


def _held(out: Path) -> bool:
    """Whether a live run holds ``out``'s lock (probed without creating or changing the lock file)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: runs are not locked
        return False
    from ..engine.runlock import LOCK_NAME

    try:  # non-blocking, regular files only: a FIFO there must not hang the check (the lock refuses it)
        fd, _ = open_regular(out / LOCK_NAME)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops the shared lock at once
    return False


def _inspect(path: Path) -> tuple[str | None, str]:
    """``(description, why not)``: ``("step 40 of 40, precision bf16-mixed", "")``, or ``(None, reason)``
    when the file does not read as an ampkit checkpoint. Only the metadata is read: the file is opened
    and checked as every checkpoint is (a FIFO, device or zip bomb refused before torch reads it),
    then its tensors are memory-mapped, not loaded."""
    from ..engine.checkpoint import read_checkpoint

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = read_checkpoint(path, "cpu", mmap=True)
    except UsageError as err:  # damaged, foreign, refused: still the user's file
        return None, str(err).removeprefix(f"{path}: ").split("; valid:")[0]
    except Exception as err:  # an unreadable file (EIO) is still the user's file
        return None, str(err) or type(err).__name__
    step = state.get("step") if isinstance(state, dict) else None
    if not isinstance(step, int) or isinstance(step, bool):
        return None, "not an ampkit checkpoint (no step)"
    config = state.get("config")
    config = config if isinstance(config, dict) else {}
    steps, epochs = config.get("steps"), config.get("epochs")
    if isinstance(steps, int) and not isinstance(steps, bool):
        where = f"step {step} of {steps}"
    elif epochs is not None:
        where = f"step {step}, --epochs {epochs}"
    else:
        where = f"step {step}"
    precision = state.get("precision")
    return where + (f", precision {precision}" if isinstance(precision, str) else ""), ""


def describe_checkpoint(path: Path) -> str | None:
    """``step 40 of 40, precision bf16-mixed``; None when the file does not read as an ampkit checkpoint."""
    return _inspect(path)[0]


def check_earlier_run(args: argparse.Namespace) -> None:
    """Refuse ``--out`` holding an earlier run's files unless ``--resume`` or ``--overwrite`` says what
    to do with them; remember the checkpoint as found (for :func:`stop_hint`). Reads only."""
    out = Path(args.out)
    resume = bool(args.resume or args.resume_any)
    ckpt, metrics = out / CHECKPOINT, out / METRICS
    args.checkpoint_found = _stamp(ckpt)
    if args.overwrite and resume:
        flag = "--resume-any" if args.resume_any else "--resume"
        raise UsageError(
            f"--overwrite with {flag}: one continues the run in --out, the other replaces it; "
            "valid: one of them"
        )
    if resume or args.overwrite or _held(out):  # a live holder: the run lock refuses it, naming the holder
        return
    if ckpt.exists() or ckpt.is_symlink():
        found, why = _inspect(ckpt)
        if found is None:
            raise UsageError(
                f"--out {out} holds a {CHECKPOINT} that does not read as an ampkit checkpoint: pass "
                f"--overwrite to replace it, or choose another --out ({why[:160]})"
            )
        raise UsageError(
            f"--out {out} holds a checkpoint of an earlier run ({found}): pass "
            "--resume to continue it, --overwrite to replace it, or choose another --out"
        )
    if metrics.exists() or metrics.is_symlink():
        raise UsageError(
            f"--out {out} holds {METRICS} of an earlier run: pass --overwrite to replace it, "
            "or choose another --out"
        )


def stop_hint(args: argparse.Namespace) -> str | None:
    """After Ctrl-C or SIGTERM: the checkpoint this run kept and how to continue, or that there is none."""
    if getattr(args, "out", None) is None or not hasattr(args, "checkpoint_found"):
        return None  # stopped before the flags were checked: nothing ran
    ckpt = Path(args.out) / CHECKPOINT
    now = _stamp(ckpt)
    if now is None:
        return f"no checkpoint was written ({_KEEP})"
    resumed = bool(args.resume or args.resume_any)
    if now == args.checkpoint_found and not resumed:
        return f"{ckpt} still holds the earlier run: this run wrote no checkpoint ({_KEEP})"
    found = describe_checkpoint(ckpt)
    return f"{ckpt} ({found or 'unreadable'}) kept: rerun with --resume to continue"

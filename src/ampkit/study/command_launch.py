"""A command arm's program line: checked before any arm, and put under torchrun for ``--gpus N``.

``--gpus N`` (N > 1) starts ``python SCRIPT ARGS`` / ``python -m MODULE ARGS`` as
``python -m torch.distributed.run --standalone --nproc_per_node N SCRIPT ARGS`` (``-m MODULE``
kept). A command that already is a launcher (``torchrun``, ``python -m torch.distributed.run``,
``accelerate launch``, ``deepspeed``) runs as it is: the study only sets its environment. Any
other program (``bash tools/dist_train.sh``) also runs as it is, with ``GPUS=N`` in its
environment, the seeds' ablation-script convention.

A bare ``python`` / ``python3`` means the interpreter running ampkit (``sys.executable``), as
torchrun and ``accelerate launch`` do: ``.venv/bin/ampkit compare -- python train.py`` runs the
script with the venv's torch even when the venv is not activated. Name a path to use another one.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError

#: Modules that are torch's launcher when run with ``python -m``.
TORCH_RUN = ("torch.distributed.run", "torch.distributed.launch")
_PYTHON = re.compile(r"python(\d+(\.\d+)*)?")  # matched whole: "python3\n" is no python


def is_python(program: str) -> bool:
    """``python``, ``python3``, ``python3.11`` or a path to one of them."""
    return bool(_PYTHON.fullmatch(Path(program).name))


def launcher(command: Sequence[str]) -> str | None:
    """The launcher a command already runs under (its name), or None."""
    name = Path(command[0]).name
    if name in ("torchrun", "deepspeed"):
        return name
    if name == "accelerate" and len(command) > 1 and command[1] == "launch":
        return "accelerate launch"
    if is_python(command[0]):
        rest = [a for a in command[1:] if a != "-u"]
        if len(rest) > 1 and rest[0] == "-m" and rest[1] in TORCH_RUN:
            return f"python -m {rest[1]}"
    return None


def _python_target(command: Sequence[str], where: str) -> list[str]:
    """What follows ``python``: ``[SCRIPT, ARGS...]`` or ``["-m", MODULE, ARGS...]`` (``-u`` dropped:
    arms run with ``PYTHONUNBUFFERED=1``)."""
    rest = list(command[1:])
    while rest and rest[0] == "-u":
        rest.pop(0)
    if not rest:
        raise UsageError(
            f"{where}: {command[0]} with no script; valid: python SCRIPT ARGS or python -m MODULE"
        )
    if rest[0] == "-m":
        if len(rest) < 2:
            raise UsageError(f"{where}: python -m without a module; valid: python -m MODULE ARGS")
        return rest
    if rest[0].startswith("-"):
        raise UsageError(
            f"{where}: python option {rest[0]} before the script; valid: python SCRIPT ARGS or "
            "python -m MODULE ARGS (the option would not reach torchrun's workers)"
        )
    return rest


def this_python(command: Sequence[str]) -> list[str]:
    """``command`` with a bare ``python``/``python3`` replaced by the interpreter running ampkit."""
    if command and command[0] in ("python", "python3") and sys.executable:
        return [sys.executable, *command[1:]]
    return list(command)


def wrap(command: Sequence[str], gpus: int, where: str = "--gpus") -> tuple[list[str], str]:
    """``(argv, how)``: the command under torchrun for ``gpus`` > 1 where it is a Python program."""
    command = this_python(command)
    if gpus <= 1:
        return list(command), "1 process"
    found = launcher(command)
    if found:
        return list(command), f"already under {found}: the study sets only its environment (GPUS={gpus})"
    if not is_python(command[0]):
        return list(command), f"not a Python program: run as it is with GPUS={gpus} in its environment"
    target = _python_target(command, where)
    argv = [command[0], "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", *target]
    return argv, f"{gpus} processes under torchrun (python -m torch.distributed.run --standalone)"


def check_program(command: Sequence[str], where: str, gpus: int) -> None:
    """The program is found, a Python script exists, and ``--gpus`` can launch it (before any arm)."""
    program = command[0]
    if not program.strip():
        raise UsageError(f"{where}: an empty program name; valid: a program such as python")
    if shutil.which(program) is None:  # with a folder in it, only that path is checked
        raise UsageError(
            f"{where}: program {program!r} not found"
            + ("" if os.sep in program else " on PATH")
            + " (or not executable); valid: a program on PATH or the path of an executable file"
        )
    if is_python(program) and not launcher(command):
        rest = [a for a in command[1:] if a != "-u"]
        script = rest[0] if rest else ""
        if script and not script.startswith("-") and "{" not in script and not Path(script).is_file():
            raise UsageError(f"{where}: python script {script!r} not found; valid: an existing .py file")
    if gpus > 1:
        wrap(command, gpus, f"{where}: --gpus {gpus}")

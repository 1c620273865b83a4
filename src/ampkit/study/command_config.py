"""Checks of a command experiment (``-- COMMAND`` or ``command = [...]``), all before any arm starts.

Types and values (:func:`validate_command`, called by ``Experiment.validate``) and what the
machine must have (:func:`check_runnable`: the program, the script, a ``--gpus`` launch, the
devices). Each raises :class:`~ampkit.errors.UsageError` with one line; a study-file value is
named as written there (``parse = ...``), a flag as typed (``--parse ...``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .arm_output import compile_patterns
from .command_figures import parse_metric
from .command_launch import check_program
from .placeholders import STUDY_VARS, check_command
from .validate import is_int, kind_of

if TYPE_CHECKING:
    from .config import Experiment

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # matched whole (fullmatch): no trailing newline
#: Experiment fields that only a task experiment uses.
TASK_ONLY = ("target_metric",)


def _names(exp: Experiment) -> tuple[str, str]:
    """``(prefix, style)``: the flags' study names flags, a study file's experiment its keys."""
    return ("", "flag") if exp.name == "compare" else (f"experiment {exp.name!r}: ", "toml")


def _label(style: str, key: str) -> str:
    flags = {"command": "COMMAND", "parse": "--parse", "metric": "--metric", "amp_flags": "--amp-flags"}
    return flags.get(key, key) if style == "flag" else key


def _check_env(exp: Experiment, prefix: str) -> None:
    if not isinstance(exp.env, Mapping):
        raise UsageError(
            f'{prefix}env is {kind_of(exp.env)}; valid: a table such as {{ OMP_NUM_THREADS = "1" }}'
        )
    for key, value in exp.env.items():
        if not isinstance(key, str) or not ENV_NAME.fullmatch(key):
            raise UsageError(f"{prefix}env {key!r}: not a variable name; valid: letters, digits and '_'")
        if key in STUDY_VARS or (key == "GPUS" and exp.gpus > 1):
            raise UsageError(
                f"{prefix}env {key}: set by the study in every arm; valid: other variables "
                f"(the study sets {', '.join(STUDY_VARS)} and, with gpus > 1, GPUS)"
            )
        if not isinstance(value, str):
            raise UsageError(
                f"{prefix}env {key} = {value!r} is {kind_of(value)}; valid: a string or a whole number"
            )


def _check_nul(exp: Experiment, prefix: str, style: str) -> None:
    """No argument, environment value or ``amp_flags`` holds a NUL byte (no process can take one)."""
    texts = [(_label(style, "command"), a) for a in exp.command or ()]
    texts += [(f"env {k}", v) for k, v in exp.env.items()]
    texts += [(_label(style, "amp_flags"), exp.amp_flags)] if isinstance(exp.amp_flags, str) else []
    for label, text in texts:
        if "\x00" in text:
            raise UsageError(
                f"{prefix}{label} {text!r}: holds a NUL byte; valid: text without NUL bytes "
                "(no program argument or environment value can hold one)"
            )


def validate_command(exp: Experiment) -> None:
    """Types and values of a command experiment's fields (no file or program is looked at)."""
    prefix, style = _names(exp)
    command = exp.command
    if isinstance(command, str) or not isinstance(command, list | tuple) or not command:
        raise UsageError(
            f"{prefix}{_label(style, 'command')} = {command!r}; valid: a list of arguments such as "
            '["python", "train.py", "--epochs", "1"]'
        )
    bad = [a for a in command if not isinstance(a, str)]
    if bad:
        raise UsageError(f"{prefix}command holds {bad[0]!r} ({kind_of(bad[0])}); valid: strings only")
    exp.command = tuple(command)
    _check_env(exp, prefix)
    _check_nul(exp, prefix, style)
    parse = (exp.parse,) if isinstance(exp.parse, str) else exp.parse
    if not isinstance(parse, list | tuple) or not all(isinstance(p, str) for p in parse):
        raise UsageError(f"{prefix}parse = {exp.parse!r}; valid: a regex string or a list of them")
    exp.parse = tuple(parse)
    compile_patterns(list(exp.parse), f"{prefix}{_label(style, 'parse')} ")
    metric_valid = "a logged value's name, optionally with :max or :min, e.g. acc or val_loss:min"
    if exp.metric is not None and (
        not isinstance(exp.metric, str) or not parse_metric(exp.metric)[0].strip()
    ):
        raise UsageError(f"{prefix}{_label(style, 'metric')} {exp.metric!r}; valid: {metric_valid}")
    if isinstance(exp.metric, str) and exp.metric.count(":") > 1:  # "acc:max:min": name "acc:max"?
        raise UsageError(
            f"{prefix}{_label(style, 'metric')} {exp.metric!r}: more than one ':'; valid: {metric_valid}"
        )
    if exp.metric is not None and parse_metric(exp.metric)[1] is None and ":" in exp.metric:
        how = exp.metric.rpartition(":")[2]
        raise UsageError(
            f"{prefix}{_label(style, 'metric')} {exp.metric!r}: unknown direction {how!r}; valid: {metric_valid}"
        )
    if exp.amp_flags is not None and not isinstance(exp.amp_flags, str):
        raise UsageError(f'{prefix}amp_flags = {exp.amp_flags!r}; valid: a string such as "--amp"')
    check_command(
        exp.command, exp.env, exp.amp_flags, prefix, (_label(style, "command"), _label(style, "amp_flags"))
    )
    extra = sorted(set(exp.overrides) - {"device"})
    if extra:
        raise UsageError(
            f"{prefix}{', '.join(extra)}: task settings, not used by a command; valid: the script's own flags "
            "in the command (only device applies, for the precisions this device runs)"
        )
    if exp.target_metric is not None:
        raise UsageError(f"{prefix}target_metric applies to task studies; valid: none with a command")


def validate_task_fields(exp: Experiment) -> None:
    """A task experiment sets none of the command-only fields."""
    prefix, style = _names(exp)
    for key, empty in (("parse", ()), ("metric", None), ("amp_flags", None), ("env", {})):
        value = getattr(exp, key)
        if value != empty and value is not None and value != ():
            raise UsageError(
                f"{prefix}{_label(style, key)} applies to command studies; valid: a COMMAND after -- "
                "(or command = [...] in the study file) with it"
            )


def check_runnable(exp: Experiment) -> None:
    """The program exists, a Python script exists, ``--gpus`` can launch it, the devices are there."""
    assert exp.command is not None
    prefix, style = _names(exp)
    check_program(
        exp.command, f"{prefix}{_label(style, 'command')} {shlex.join(exp.command)[:80]!r}".strip(), exp.gpus
    )
    device = exp.overrides.get("device")
    if exp.gpus > 1 and device:
        from ..engine.distributed import check_devices

        try:
            check_devices(exp.gpus, device)
        except UsageError as err:
            raise UsageError(f"{prefix}--gpus {exp.gpus}: {err}") from None


#: Fields only a command experiment uses; [defaults] may hold them for its command experiments.
_COMMAND_ONLY = ("command", "env", "parse", "metric", "amp_flags")
#: Fields only a task experiment uses; [defaults] may hold them for its task experiments.
_TASK_ONLY = ("task", "steps", "target_metric")


def command_or_task(values: dict[str, Any], table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Keep the fields of what the experiment is: a command (``command`` in its table, or in
    ``[defaults]`` without a ``task`` of its own) or a task. Its own table may not mix the two."""
    is_command = "command" in table or ("command" in values and "task" not in table)
    _mine, other = (_COMMAND_ONLY, _TASK_ONLY) if is_command else (_TASK_ONLY, _COMMAND_ONLY)
    mixed = sorted(k for k in other if k in table)
    if mixed:
        what = "command" if is_command else "task"
        raise UsageError(
            f"{where}: {', '.join(mixed)} with a {what} experiment; valid: "
            + ("command, env, parse, metric, amp_flags" if is_command else "task, steps, target_metric")
            + f" ({'the script takes its own settings in its command' if is_command else 'or a command = [...]'})"
        )
    out = {k: v for k, v in values.items() if k not in other}
    if is_command:
        out["overrides"] = {
            k: v for k, v in out["overrides"].items() if k == "device" or k in table.get("overrides", {})
        }
        out["command"] = tuple(out["command"]) if isinstance(out["command"], list) else out["command"]
        env = out.get("env", {})
        if isinstance(env, Mapping):  # TOML whole numbers are fine as values: OMP_NUM_THREADS = 1
            out["env"] = {k: str(v) if is_int(v) else v for k, v in env.items()}
        if isinstance(out.get("parse"), list):
            out["parse"] = tuple(out["parse"])
    return out

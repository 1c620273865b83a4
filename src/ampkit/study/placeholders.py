"""How a command arm tells the script its precision: placeholders in its arguments, and its environment.

A command study runs the user's COMMAND once per (precision, seed). Three channels carry the
arm's precision, all at once, so any script finds its way:

- the environment ``AMPKIT_PRECISION``/``AMPKIT_SEED``/``AMPKIT_OUT``/``AMPKIT_LOG_FILE``, which
  ``Precision.from_env()``/``from_args()`` and ``ampkit.log`` honour;
- the seed-001 convention ``USE_AMP=0|1`` with ``AMP_DTYPE=fp16|bf16`` (``USE_AMP=1`` only for
  bf16-mixed and fp16-mixed, the modes that spelling can say; ``AMP_DTYPE`` is unset otherwise);
- placeholders in the command's own arguments (and in an experiment's ``env`` values):
  ``{precision}``, ``{amp_dtype}``, ``{seed}``, ``{out}`` and ``{amp_flags}``, an argument of its
  own that expands to nothing for non-mixed modes and to the script's switch flags for mixed ones.
  Literal braces are written ``{{`` and ``}}``. A format spec (``{seed:03d}``) may pad to at most
  :data:`MAX_WIDTH` characters (a width or precision is checked before anything is formatted,
  so ``{seed:>2000000000}`` is refused, not allocated) and holds no placeholder of its own.
"""

from __future__ import annotations

import re
import shlex
import string
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import UsageError

#: Placeholders a command may use, in the order messages list them.
NAMES = ("precision", "amp_dtype", "seed", "out", "amp_flags")
#: ``{amp_flags}`` of a mixed mode unless ``--amp-flags`` says otherwise (the seeds' train.py flags).
DEFAULT_AMP_FLAGS = "--mixed_precision --amp_dtype {amp_dtype}"
#: Modes the seed-001 spelling can say: mode -> AMP_DTYPE (None: ``USE_AMP=0``).
USE_AMP_MODES: dict[str, str | None] = {"fp32": None, "bf16-mixed": "bf16", "fp16-mixed": "fp16"}
#: File (inside the arm's folder) that ``ampkit.log`` appends JSON lines to.
LOG_NAME = "ampkit_log.jsonl"
#: Variables the study sets in every arm; an experiment's ``env`` may not set them.
STUDY_VARS = (
    "AMPKIT_PRECISION",
    "AMPKIT_SEED",
    "AMPKIT_OUT",
    "AMPKIT_LOG_FILE",
    "USE_AMP",
    "AMP_DTYPE",
)
#: The widest a placeholder's format spec may pad or the most digits it may show (``{seed:>1000}``).
MAX_WIDTH = 1000
_NUMBERS = re.compile(r"\d+")
_VALID = ", ".join(f"{{{n}}}" for n in NAMES) + " (literal braces: {{ and }})"
_SAMPLE = {"precision": "bf16-mixed", "amp_dtype": "bf16", "seed": 0, "out": "arms/x"}


def fields(text: str, where: str) -> list[str]:
    """Placeholder names in ``text``; raises :class:`UsageError` on a malformed or unknown one."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as err:  # "Single '}' encountered", "expected '}' before end of string"
        raise UsageError(f"{where}: {text!r}: {err}; valid: {_VALID}") from None
    names = [name for _, name, _, _ in parts if name is not None]
    for name in names:
        if name not in NAMES:
            raise UsageError(f"{where}: unknown placeholder {{{name}}} in {text!r}; valid: {_VALID}")
    for _, field, spec, _ in parts:
        _check_spec(field, spec or "", text, where)
    return names


def _check_spec(name: str | None, spec: str, text: str, where: str) -> None:
    """A format spec without nested placeholders, its width and precision at most :data:`MAX_WIDTH`."""
    if "{" in spec or "}" in spec:
        raise UsageError(
            f"{where}: {{{name}:{spec}}} in {text!r}: a placeholder inside a format spec; "
            f"valid: a literal spec such as {{seed:03d}}"
        )
    # every run of digits: a one-digit fill character is small anyway, so this bounds width and precision
    for digits in _NUMBERS.findall(spec):
        number = digits.lstrip("0")
        if len(number) > len(str(MAX_WIDTH)) or int(number or 0) > MAX_WIDTH:
            shown = number if len(number) <= 12 else number[:12] + "..."
            raise UsageError(
                f"{where}: width or precision {shown} in {{{name}:...}} of {text[:60]!r}; "
                f"valid: at most {MAX_WIDTH}, e.g. {{{name}:>10}}"
            )


def check_template(text: str, where: str, *, whole_amp_flags: bool = True) -> None:
    """``text`` is a valid argument template (``{amp_flags}`` only as an argument of its own)."""
    names = fields(text, where)
    if "amp_flags" in names and (not whole_amp_flags or text != "{amp_flags}"):
        raise UsageError(
            f"{where}: {{amp_flags}} inside {text!r}; valid: {{amp_flags}} as an argument of its own "
            "(it expands to zero or more arguments)"
        )
    try:
        text.format(**_SAMPLE, amp_flags="")
    except (ValueError, TypeError, KeyError, IndexError) as err:  # a bad format spec: {seed:q}
        raise UsageError(f"{where}: {text!r}: {err}; valid: {_VALID}") from None


def check_command(
    command: Sequence[str],
    env: Mapping[str, str],
    amp_flags: str | None,
    where: str,
    labels: tuple[str, str] = ("COMMAND", "--amp-flags"),
) -> None:
    """Every argument, ``env`` value and the ``--amp-flags`` text are valid templates; ``where``
    prefixes each message, ``labels`` name the command and the amp flags as the user wrote them."""
    for arg in command:
        check_template(arg, f"{where}{labels[0]}")
    for key, value in env.items():
        check_template(value, f"{where}env {key}", whole_amp_flags=False)
    if amp_flags is not None:
        try:
            words = shlex.split(amp_flags)
        except ValueError as err:
            raise UsageError(
                f"{where}{labels[1]} {amp_flags!r}: {err}; valid: flags such as '--amp'"
            ) from None
        for word in words:
            check_template(word, f"{where}{labels[1]}", whole_amp_flags=False)


def amp_dtype(mode: str) -> str:
    """``bf16``/``fp16`` for bf16-mixed/fp16-mixed; empty for every other mode."""
    return USE_AMP_MODES.get(mode) or ""


def values(mode: str, seed: int, out: Path) -> dict[str, str | int]:
    """The placeholder values of one arm (``{amp_flags}`` aside); the seed stays a number (``{seed:03d}``)."""
    return {"precision": mode, "amp_dtype": amp_dtype(mode), "seed": seed, "out": str(out)}


def expand(command: Sequence[str], mode: str, seed: int, out: Path, amp_flags: str | None) -> list[str]:
    """The arm's argv: placeholders filled, ``{amp_flags}`` replaced by zero or more arguments."""
    vals = values(mode, seed, out)
    flags = [w.format(**vals) for w in shlex.split(amp_flags or DEFAULT_AMP_FLAGS)] if amp_dtype(mode) else []
    argv: list[str] = []
    for arg in command:
        argv.extend(flags if arg == "{amp_flags}" else [arg.format(**vals)])
    return argv


def arm_env(
    mode: str, seed: int, out: Path, env: Mapping[str, str], gpus: int
) -> tuple[dict[str, str], dict[str, str | None]]:
    """The arm's own variables: ``(set, unset)`` where ``unset`` names those removed (value None)."""
    vals = values(mode, seed, out)
    dtype = amp_dtype(mode)
    own: dict[str, str | None] = {
        "AMPKIT_PRECISION": mode,
        "AMPKIT_SEED": str(seed),
        "AMPKIT_OUT": str(out),
        "AMPKIT_LOG_FILE": str(out / LOG_NAME),
        "USE_AMP": "1" if dtype else "0",
        "AMP_DTYPE": dtype or None,  # a parent's AMP_DTYPE must not reach an fp32 arm
    }
    if gpus > 1:  # the seeds' ablation script reads GPUS=N; otherwise the caller's GPUS passes through
        own["GPUS"] = str(gpus)
    for key, value in env.items():
        own[key] = value.format(**vals)
    return {k: v for k, v in own.items() if v is not None}, {k: v for k, v in own.items() if v is None}


def uses_precision(command: Sequence[str], env: Mapping[str, str]) -> bool:
    """Whether the command names the mode itself (``{precision}`` in an argument or an env value)."""
    texts = [*command, *env.values()]
    return any("precision" in fields(text, "") for text in texts)

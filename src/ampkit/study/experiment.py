"""What a precision study runs: :class:`Experiment`, one task under several precisions and seeds.

The fields have the defaults a study file's tables and the command-line flags start from (see
:mod:`.config` for the study file and its precedence); :meth:`Experiment.validate` refuses values
that cannot make a fair study, and :meth:`Experiment.train_config` gives each arm's TrainConfig.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..engine import TrainConfig
from ..errors import UsageError
from ..precision import PrecisionError, canonical_mode
from .validate import MAX_STEPS, check_name, check_overrides, check_seeds, is_int, is_number, kind_of

#: TrainConfig fields an experiment sets itself; overrides may not touch them.
RESERVED = frozenset(
    {"task", "precision", "seed", "steps", "epochs", "out", "resume", "progress", "nproc", "compile"}
)
#: ``compile`` values of an experiment; an arm compiled with torch.compile is labelled ``MODE+compile``.
COMPILE_CHOICES = ("off", "on", "both")
COMPILE_SUFFIX = "+compile"
#: TrainConfig fields ``overrides`` may set.
OVERRIDABLE = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in RESERVED)


@dataclass
class Experiment:
    """One named comparison: the same task, seed, data order and hyper-parameters under several precisions."""

    name: str = "compare"
    """Name of the experiment (the TOML table name; the sub-folder of ``--out`` in a multi-experiment study)."""
    task: str = "digits"
    """Built-in task (digits, tinygpt, ct) or ``module:factory``."""
    precisions: tuple[str, ...] | None = None
    """Canonical modes to compare, or None for ``auto`` (every mode this device runs in hardware)."""
    seeds: tuple[int, ...] = (0,)
    """One arm process per (precision, seed); figures are mean ± std over seeds."""
    steps: int = 170
    """Optimizer steps per arm in total (the same meaning as ``ampkit train --steps``)."""
    warmup_steps: int = 20
    """The first steps of each arm, excluded from time, memory, energy and throughput figures."""
    target_metric: float | None = None
    """Report steps, time and energy to first reach this eval metric (needs periodic evaluation)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """TrainConfig fields shared by every arm (batch_size, lr, size, device, threads, eval_every, ...)."""
    gpus: int = 1
    """Processes per arm (torchrun-style ranks, one per GPU; on CPU, gloo processes) sharing each batch."""
    compile: str = "off"
    """torch.compile: ``off``, ``on`` (every arm compiled, labelled ``MODE+compile``) or ``both``
    (each mode eager and compiled, side by side); compile time is reported apart from step time."""
    command: tuple[str, ...] | None = None
    """A user's own command run once per arm instead of ``task`` (``ampkit compare -- COMMAND``)."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment of a command's arms (values may hold placeholders such as ``{out}``)."""
    parse: tuple[str, ...] = ()
    """Regexes with named groups applied to each line of a command's stdout/stderr."""
    metric: str | None = None
    """A command's accuracy-like value, ``NAME[:max|:min]`` (default: accuracy/acc when logged)."""
    amp_flags: str | None = None
    """What ``{amp_flags}`` expands to in mixed-mode arms (default ``--mixed_precision --amp_dtype {amp_dtype}``)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`UsageError` for values that cannot make a fair study (types, ranges, names)."""
        from .command_config import validate_command, validate_task_fields

        check_name(self.name, f"experiment {self.name!r}")
        where = "compare" if self.name == "compare" else f"experiment {self.name!r}"  # the flags' study
        if self.command is not None:
            validate_command(self)
        else:
            validate_task_fields(self)
        if not isinstance(self.task, str) or not self.task.strip():
            raise UsageError(f"{where}: task {self.task!r}; valid: digits, tinygpt, ct or module:factory")
        for key in ("steps", "warmup_steps", "gpus"):
            value = getattr(self, key)
            if not is_int(value):
                raise UsageError(f"{where}: {key} = {value!r} is {kind_of(value)}; valid: a whole number")
        if self.target_metric is not None and not is_number(self.target_metric):
            raise UsageError(
                f"{where}: target_metric = {self.target_metric!r}; valid: a finite number such as 0.98"
            )
        if self.precisions is not None:
            if isinstance(self.precisions, str) or not all(isinstance(p, str) for p in self.precisions):
                raise UsageError(f"{where}: precisions {self.precisions!r}; valid: a list of mode names")
            try:
                self.precisions = tuple(dict.fromkeys(canonical_mode(p) for p in self.precisions))
            except PrecisionError as err:
                raise UsageError(f"{where}: {err}") from None
            if not self.precisions:
                raise UsageError(f"{where}: no precisions; give some or 'auto'")
        self.seeds = tuple(self.seeds)
        if not self.seeds:
            raise UsageError(f"{where}: no seeds; give at least one, e.g. 0")
        check_seeds(self.seeds, where)
        if self.steps < 1 or not 0 <= self.warmup_steps < self.steps:
            raise UsageError(
                f"{where}: steps={self.steps}, warmup_steps={self.warmup_steps}; "
                "valid: steps >= 1 and 0 <= warmup_steps < steps"
            )
        if self.steps > MAX_STEPS:
            raise UsageError(
                f"{where}: steps = {self.steps}: too many; valid: a whole number in 1..{MAX_STEPS:_}"
            )
        check_overrides(self.overrides, where, OVERRIDABLE)
        if self.gpus < 1:
            raise UsageError(f"{where}: gpus={self.gpus}; valid: a whole number >= 1")
        if isinstance(self.compile, bool):  # a study file's compile = true/false
            self.compile = "on" if self.compile else "off"
        if self.compile not in COMPILE_CHOICES:
            raise UsageError(f"{where}: compile = {self.compile!r}; valid: {', '.join(COMPILE_CHOICES)}")
        if self.command is not None and self.compile != "off":
            raise UsageError(
                f"{where}: compile = {self.compile!r} applies to task studies; valid with a COMMAND: "
                "off (compile inside the script)"
            )

    @property
    def eval_every(self) -> int:
        """Evaluation period: the override, else 1/10 of the run when a target metric is set, else 0."""
        if "eval_every" in self.overrides:
            return int(self.overrides["eval_every"])
        return max(1, self.steps // 10) if self.target_metric is not None else 0

    def train_config(self, mode: str, seed: int) -> TrainConfig:
        """The arm's TrainConfig: identical across arms except for the precision (and, for an arm
        labelled ``MODE+compile``, torch.compile)."""
        values = {**self.overrides, "eval_every": self.eval_every}
        precision, compiled, _ = mode.partition(COMPILE_SUFFIX)
        return TrainConfig(
            task=self.task,
            precision=precision,
            compile=bool(compiled),
            seed=seed,
            steps=self.steps,
            out=None,
            progress=False,
            nproc=self.gpus,
            **values,
        )

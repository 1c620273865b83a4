"""What a precision study runs: :class:`Experiment` (one task, several precisions, seeds) and TOML studies.

A study file names experiments, as the seeds' ablation script does
(``USE_AMP=1 bash tools/run_ablation_experiments.sh loss_weight``)::

    [defaults]                 # optional: fields every experiment starts from
    task = "digits"
    steps = 170

    [experiments.baseline]
    precisions = ["fp32", "bf16-mixed"]
    seeds = [0, 1, 2]
    overrides = { batch_size = 128, lr = 3e-3 }   # TrainConfig fields

Precedence: command-line flags > the experiment's table > ``[defaults]`` > the defaults below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from ..engine import TrainConfig
from ..errors import UsageError
from ..precision import PrecisionError, canonical_mode, from_env
from .command_config import command_or_task
from .validate import (
    MAX_STEPS,
    check_fields,
    check_name,
    check_overrides,
    check_seeds,
    is_int,
    is_number,
    kind_of,
)

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


_FIELDS = {f.name for f in dataclasses.fields(Experiment)} - {"name"}


def _experiment(
    name: str,
    table: Any,
    base: Mapping[str, Any],
    where: str,
    default_precisions: tuple[str, ...] | None,
) -> Experiment:
    check_name(name, where)
    if not isinstance(table, Mapping):
        raise UsageError(
            f"{where}: is {kind_of(table)} ({table!r}); valid: a table such as [experiments.{name}] "
            'with task = "digits", precisions = ["fp32", "bf16-mixed"]'
        )
    unknown = sorted(set(table) - _FIELDS)
    if unknown:
        raise UsageError(f"{where}: unknown keys {unknown}; valid: {', '.join(sorted(_FIELDS))}")
    check_fields(table, where)
    check_overrides(table.get("overrides", {}), where, OVERRIDABLE)
    values = {**base, **table}
    values["overrides"] = {**base.get("overrides", {}), **table.get("overrides", {})}
    if isinstance(base.get("env"), Mapping) and isinstance(table.get("env"), Mapping):
        values["env"] = {**base["env"], **table["env"]}
    values = command_or_task(values, table, where)
    if "precisions" in values:
        values["precisions"] = parse_precisions(values["precisions"], where)
    else:
        values["precisions"] = default_precisions
    if "seeds" in values:
        values["seeds"] = parse_seeds(values["seeds"], where)
    return Experiment(name=name, **values)


def load_study(path: Path, *, default_precisions: tuple[str, ...] | None = None) -> dict[str, Experiment]:
    """Experiments of a study TOML file, by name, in file order.

    ``default_precisions`` (e.g. from ``USE_AMP=1``) applies to experiments whose table and
    ``[defaults]`` name no precisions; None leaves them on ``auto``.
    """
    from .config_file import parse, read_text

    valid = "valid: a UTF-8 TOML study file"
    try:
        data = parse(read_text(path, "--config", valid), tomllib.loads, "--config", path, valid)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"--config {path}: {err}; {valid}") from None
    extra = sorted(set(data) - {"defaults", "experiments"})
    if extra:
        raise UsageError(f"--config {path}: unknown tables {extra}; valid: [defaults], [experiments.NAME]")
    base = data.get("defaults", {})
    if not isinstance(base, Mapping):
        raise UsageError(f"--config {path}: defaults is {kind_of(base)}; valid: a [defaults] table")
    unknown = sorted(set(base) - _FIELDS)
    if unknown:
        raise UsageError(
            f"--config {path} [defaults]: unknown keys {unknown}; valid: {', '.join(sorted(_FIELDS))}"
        )
    check_fields(base, f"--config {path} [defaults]")
    check_overrides(base.get("overrides", {}), f"--config {path} [defaults]", OVERRIDABLE)
    experiments = data.get("experiments", {})
    if not isinstance(experiments, Mapping):
        raise UsageError(
            f"--config {path}: experiments is {kind_of(experiments)}; valid: [experiments.NAME] tables"
        )
    if not experiments:
        raise UsageError(f"--config {path}: no [experiments.NAME] tables")
    return {
        name: _experiment(name, table, base, f"--config {path} [experiments.{name}]", default_precisions)
        for name, table in experiments.items()
    }

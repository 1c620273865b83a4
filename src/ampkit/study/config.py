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

#: TrainConfig fields an experiment sets itself; overrides may not touch them.
RESERVED = frozenset({"task", "precision", "seed", "steps", "epochs", "out", "resume", "progress", "nproc"})
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

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`UsageError` for values that cannot make a fair study."""
        if self.precisions is not None:
            try:
                self.precisions = tuple(dict.fromkeys(canonical_mode(p) for p in self.precisions))
            except PrecisionError as err:
                raise UsageError(f"experiment {self.name!r}: {err}") from None
            if not self.precisions:
                raise UsageError(f"experiment {self.name!r}: no precisions; give some or 'auto'")
        if not self.seeds:
            raise UsageError(f"experiment {self.name!r}: no seeds; give at least one, e.g. 0")
        if self.steps < 1 or not 0 <= self.warmup_steps < self.steps:
            raise UsageError(
                f"experiment {self.name!r}: steps={self.steps}, warmup_steps={self.warmup_steps}; "
                "need steps >= 1 and 0 <= warmup_steps < steps"
            )
        bad = sorted(set(self.overrides) - set(OVERRIDABLE))
        if bad:
            raise UsageError(
                f"experiment {self.name!r}: overrides {bad} not allowed; valid: {', '.join(OVERRIDABLE)}"
            )
        if self.gpus < 1:
            raise UsageError(f"experiment {self.name!r}: gpus={self.gpus}; must be >= 1")

    @property
    def eval_every(self) -> int:
        """Evaluation period: the override, else 1/10 of the run when a target metric is set, else 0."""
        if "eval_every" in self.overrides:
            return int(self.overrides["eval_every"])
        return max(1, self.steps // 10) if self.target_metric is not None else 0

    def train_config(self, mode: str, seed: int) -> TrainConfig:
        """The arm's TrainConfig: identical across arms except for the precision."""
        values = {**self.overrides, "eval_every": self.eval_every}
        return TrainConfig(
            task=self.task,
            precision=mode,
            seed=seed,
            steps=self.steps,
            out=None,
            progress=False,
            nproc=self.gpus,
            **values,
        )


def precisions_from_env(
    environ: Mapping[str, str] | None = None, *, bf16_in_hardware: bool
) -> tuple[str, ...] | None:
    """``USE_AMP=1`` means "fp32 vs the AMP mode": ``("fp32", <mode from USE_AMP/AMP_DTYPE>)``; else None."""
    mode = from_env(environ, bf16_in_hardware=bf16_in_hardware)
    return ("fp32", mode) if mode else None


def parse_precisions(text: str | list[str] | None) -> tuple[str, ...] | None:
    """``"auto"``/None -> None; ``"fp32,bf16"`` or a list -> canonical names."""
    if text is None:
        return None
    items = [p.strip() for p in (text.split(",") if isinstance(text, str) else text) if str(p).strip()]
    if items == ["auto"]:
        return None
    try:
        return tuple(dict.fromkeys(canonical_mode(p) for p in items))
    except PrecisionError as err:
        raise UsageError(f"--precisions: {err} (or 'auto')") from None


def parse_seeds(text: str | list[int]) -> tuple[int, ...]:
    """``"0,1,2"`` or ``[0, 1, 2]`` -> ``(0, 1, 2)``."""
    try:
        items = text.split(",") if isinstance(text, str) else text
        return tuple(int(s) for s in items if str(s).strip())
    except ValueError:
        raise UsageError(f"--seeds {text!r}: expected integers like 0,1,2") from None


_FIELDS = {f.name for f in dataclasses.fields(Experiment)} - {"name"}


def _experiment(
    name: str,
    table: Mapping[str, Any],
    base: Mapping[str, Any],
    where: str,
    default_precisions: tuple[str, ...] | None,
) -> Experiment:
    unknown = sorted(set(table) - _FIELDS)
    if unknown:
        raise UsageError(f"{where}: unknown keys {unknown}; valid: {', '.join(sorted(_FIELDS))}")
    values = {**base, **table}
    values["overrides"] = {**base.get("overrides", {}), **table.get("overrides", {})}
    if "precisions" in values:
        values["precisions"] = parse_precisions(values["precisions"])
    else:
        values["precisions"] = default_precisions
    if "seeds" in values:
        values["seeds"] = parse_seeds(values["seeds"])
    return Experiment(name=name, **values)


def load_study(path: Path, *, default_precisions: tuple[str, ...] | None = None) -> dict[str, Experiment]:
    """Experiments of a study TOML file, by name, in file order.

    ``default_precisions`` (e.g. from ``USE_AMP=1``) applies to experiments whose table and
    ``[defaults]`` name no precisions; None leaves them on ``auto``.
    """
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise UsageError(f"--config {path}: {err}") from None
    extra = sorted(set(data) - {"defaults", "experiments"})
    if extra:
        raise UsageError(f"--config {path}: unknown tables {extra}; valid: [defaults], [experiments.NAME]")
    base = data.get("defaults", {})
    unknown = sorted(set(base) - _FIELDS)
    if unknown:
        raise UsageError(
            f"--config {path} [defaults]: unknown keys {unknown}; valid: {', '.join(sorted(_FIELDS))}"
        )
    experiments = data.get("experiments", {})
    if not experiments:
        raise UsageError(f"--config {path}: no [experiments.NAME] tables")
    return {
        name: _experiment(name, table, base, f"--config {path} [experiments.{name}]", default_precisions)
        for name, table in experiments.items()
    }

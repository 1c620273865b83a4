"""Study files: the named :class:`Experiment` tables of a TOML study (``--config study.toml``).

A study file names experiments, as the seeds' ablation script does
(``USE_AMP=1 bash tools/run_ablation_experiments.sh loss_weight``)::

    [defaults]                 # optional: fields every experiment starts from
    task = "digits"
    steps = 170

    [experiments.baseline]
    precisions = ["fp32", "bf16-mixed"]
    seeds = [0, 1, 2]
    overrides = { batch_size = 128, lr = 3e-3 }   # TrainConfig fields

Precedence: command-line flags > the experiment's table > ``[defaults]`` > the defaults of
:class:`~ampkit.study.experiment.Experiment`.

This module reads study files (:func:`load_study`); it also re-exports :class:`Experiment` and
its constants (from :mod:`.experiment`) and the precision/seed parsers (from :mod:`.selection`),
which are imported from here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomllib

from ..errors import UsageError
from .command_config import command_or_task
from .experiment import COMPILE_CHOICES as COMPILE_CHOICES
from .experiment import COMPILE_SUFFIX as COMPILE_SUFFIX
from .experiment import OVERRIDABLE as OVERRIDABLE
from .experiment import RESERVED as RESERVED
from .experiment import Experiment as Experiment
from .selection import parse_precisions as parse_precisions
from .selection import parse_seeds as parse_seeds
from .selection import precisions_from_env as precisions_from_env
from .validate import check_fields, check_name, check_overrides, kind_of

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

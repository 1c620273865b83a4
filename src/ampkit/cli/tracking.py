"""``--log tensorboard,mlflow`` and ``--mlflow-uri``: the tracker flags of ``train`` and ``compare``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .parser import add_flag


def add_log_args(parser: argparse.ArgumentParser, where: str) -> None:
    """Add ``--log`` and ``--mlflow-uri``; ``where`` names the default folder in the help."""
    add_flag(
        parser,
        "log",
        default=None,
        metavar="TRACKERS",
        help=f"also log to these experiment trackers, comma-separated: tensorboard (event files in "
        f"{where}/tensorboard), mlflow (a run in {where}/mlruns); each an extra: "
        "pip install 'ampkit[tensorboard,mlflow]' (docs/trackers.md)",
    )
    add_flag(
        parser,
        "mlflow-uri",
        default=None,
        metavar="URI",
        help=f"with --log mlflow: the tracking store (a folder, file:PATH, sqlite:///PATH, http://HOST); "
        f"default file:{where}/mlruns",
    )


def check_log_args(args: argparse.Namespace, out: Path) -> tuple[str, ...]:
    """The trackers asked for, each checked (name, package, store folder) before any work starts."""
    from ..errors import UsageError
    from ..integrations.trackers import parse_log, require
    from ..integrations.trackers.mlflow import local_store
    from .checks import check_out_dir

    names = parse_log(args.log)
    uri = args.mlflow_uri
    if uri is not None:
        if "mlflow" not in names:
            raise UsageError(f"--mlflow-uri {uri}: needs --log mlflow; valid: --log mlflow --mlflow-uri URI")
        if not uri.strip():
            raise UsageError(
                "--mlflow-uri '': empty; valid: a folder, file:PATH, sqlite:///PATH or http://HOST"
            )
        folder = local_store(uri)
        if folder is not None:
            check_out_dir(folder, "--mlflow-uri")
    elif "mlflow" in names:
        check_out_dir(out / "mlruns", "--out")
    require(names)
    return names


def train_tracked(config: Any, names: tuple[str, ...], mlflow_uri: str | None) -> tuple[Any, list[str]]:
    """``train(config)`` with a live hook per tracker (rank 0 only); returns the result and one line
    per tracker saying where it wrote. A run that raises leaves its MLflow run FAILED."""
    from ..engine import train
    from ..engine.distributed import world_from_env
    from ..integrations.trackers import MLflowHook, TensorBoardHook, resolve_uri

    out = Path(config.out)
    hooks: list[Any] = []
    if world_from_env()[0] == 0:
        if "tensorboard" in names:
            hooks.append(TensorBoardHook(out / "tensorboard", replace=not config.resume))
        if "mlflow" in names:
            hooks.append(MLflowHook(resolve_uri(mlflow_uri, out), out.resolve().name, config.precision))
    try:
        result = train(config, hooks=hooks)
    finally:
        for hook in hooks:
            hook.close()  # no-op after on_train_end; else marks the run failed
    lines = []
    for hook in hooks:
        if isinstance(hook, TensorBoardHook) and hook.run is not None:
            lines.append(f"tensorboard: {hook.log_dir}")
        elif isinstance(hook, MLflowHook) and hook.run is not None:
            run = hook.run
            lines.append(f"mlflow: {run.uri} experiment {run.experiment!r} run {run.run_id}")
    return result, lines


def study_trackers(names: tuple[str, ...], args: argparse.Namespace, name: str, exp: Any, out: Path) -> Any:
    """The :class:`StudyTrackers` of one experiment of ``ampkit compare`` (None without ``--log``).

    TensorBoard runs go to ``out/tensorboard``; MLflow runs to one store for the whole command
    (``--mlflow-uri``, default ``<--out>/mlruns``), in an experiment named after ``--out`` (and,
    with ``--config``, the experiment).
    """
    if not names:
        return None
    from ..integrations.trackers import StudyTrackers

    study = args.out.resolve().name
    experiment = study if args.config is None else f"{study}/{name}"
    uri = args.mlflow_uri if args.mlflow_uri is not None else str(args.out / "mlruns")
    return StudyTrackers(names, out, exp, experiment=experiment, mlflow_uri=uri)

"""``ampkit train --nproc N``: start N worker processes, watch them, and end the job cleanly.

:func:`run_distributed` is the library entry (``ampkit compare --gpus N`` arms use it): it writes
the :class:`TrainConfig` to a file, starts ``python -P -m ampkit.engine.launch CONFIG`` once per
rank with torchrun's environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT`` on a free port) and reads rank 0's ``metrics.json`` back.

Failure handling is torchrun's: the workers are polled every 0.1 s (torchrun's default
``--monitor-interval``); when one exits non-zero or is killed, the others get SIGTERM, then
SIGKILL after a grace period, and :class:`LaunchError` names the rank and how it ended. An
overall ``timeout_s`` ends a job that runs too long the same way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..fsutil import read_regular
from ..pychild import python_module
from .config import TrainConfig
from .distributed import BACKENDS, check_devices, check_split
from .records import RunResult
from .resume import held_for_launch

log = logging.getLogger("ampkit")

#: Seconds between checks on the workers (torchrun's default monitor interval).
POLL_S = 0.1
#: Seconds the remaining workers get between SIGTERM and SIGKILL.
GRACE_S = 5.0


class LaunchError(RuntimeError):
    """A multi-process job failed: a rank died or exited non-zero, or the job timed out."""


def free_port() -> int:
    """A TCP port that was free a moment ago (rank 0's store binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_env(rank: int, nproc: int, port: int) -> dict[str, str]:
    """The environment of worker ``rank``: the parent's plus torchrun's variables."""
    return {
        **os.environ,
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(nproc),
        "LOCAL_WORLD_SIZE": str(nproc),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


def _how_it_ended(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def stop_processes(procs: Sequence[subprocess.Popen[Any]], grace_s: float) -> None:
    """SIGTERM every live worker, then SIGKILL whatever is left after ``grace_s``."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def launch(
    command: Sequence[str],
    nproc: int,
    *,
    timeout_s: float | None = None,
    poll_s: float = POLL_S,
    grace_s: float = GRACE_S,
) -> None:
    """Run ``command`` as ranks 0..nproc-1 and wait for all; raises :class:`LaunchError` on a failure."""
    if nproc < 1:
        raise UsageError(f"--nproc {nproc}: must be >= 1")
    port = free_port()
    procs = [subprocess.Popen(list(command), env=worker_env(rank, nproc, port)) for rank in range(nproc)]
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while True:
            codes = [proc.poll() for proc in procs]
            failed = [f"rank {rank} {_how_it_ended(code)}" for rank, code in enumerate(codes) if code]
            if failed:
                raise LaunchError(f"{'; '.join(failed)}: stopped the other ranks")
            if all(code == 0 for code in codes):
                return
            if deadline is not None and time.monotonic() > deadline:
                raise LaunchError(f"the job ran past its {timeout_s:g} s timeout: stopped all ranks")
            time.sleep(poll_s)
    finally:
        stop_processes(procs, grace_s)


def launch_line(config: TrainConfig) -> str:
    """What is about to run: ``ampkit: launching 2 processes (strategy ddp, backend gloo)``."""
    import torch

    backend = BACKENDS.get(torch.device(config.device).type, "gloo")
    return f"ampkit: launching {config.nproc} processes (strategy {config.strategy}, backend {backend})"


def run_distributed(config: TrainConfig, *, timeout_s: float | None = None) -> RunResult:
    """Train ``config`` on ``config.nproc`` processes (``config.strategy``); returns rank 0's result.

    Hooks cannot cross process boundaries: read ``result.history`` instead. Without ``config.out``
    the run folder is a temporary directory, removed afterwards.
    """
    check_split(config.nproc, config.strategy, config.batch_size)
    check_devices(config.nproc, config.device)
    with tempfile.TemporaryDirectory(prefix="ampkit-launch-") as tmp:
        out = Path(config.out) if config.out is not None else Path(tmp) / "run"
        with held_for_launch(dataclasses.replace(config, out=out)) as conf:  # lock, resume check
            check_split(conf.nproc, conf.strategy, conf.batch_size)  # --resume-any: the checkpoint's batch
            path = Path(tmp) / "config.json"
            path.write_text(json.dumps(conf.to_dict()))
            log.info(launch_line(conf))  # after every check: a refused run prints only its error
            launch(worker_command(path), config.nproc, timeout_s=timeout_s)
        from .loop import METRICS_NAME

        return RunResult.from_dict(json.loads(read_regular(out / METRICS_NAME)))  # never a FIFO's wait


def worker_command(config_path: Path) -> list[str]:
    """One rank's command line: this module on ``config_path``, nothing imported from the current folder."""
    return [*python_module("ampkit.engine.launch"), str(config_path)]


def worker_main(argv: Sequence[str]) -> int:
    """One rank: train the config in ``argv[0]``; a usage error is one line and exit code 2."""
    from ..precision import PrecisionError
    from .loop import train

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    config = TrainConfig.from_dict(json.loads(Path(argv[0]).read_text()))
    try:
        train(config)
    except (UsageError, PrecisionError) as err:
        print(f"ampkit train: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    code = worker_main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # The run is over and its files are written: skip interpreter teardown, where gloo's worker
    # threads can still release tensors after Python is gone and abort the rank (SIGABRT,
    # "terminate called without an active exception") although it trained correctly.
    os._exit(code)

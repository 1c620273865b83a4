"""Start an arm's process(es), stream rank 0's steps, collect and merge the results.

A single-process arm is one interpreter running :mod:`ampkit.study.arm` on ``SPEC.json``. A multi-process arm
(``--gpus N``) starts that command once per rank with torchrun's environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``, from
:func:`ampkit.engine.launch.worker_env`); the engine's distributed session joins them.
As torchrun does, when one rank fails the others are stopped. Rank 0's record is the arm's;
energy is summed and memory maximised over ranks, each with its method saying so. Each rank
runs in its own process group and dies with the parent (:mod:`.children`); a failure record
keeps the last lines of the failing rank's stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .children import arm_command, how_it_ended, start_arm, stderr_tail, stop_arms

StepCallback = Callable[[dict[str, Any]], None]
#: Seconds a stopped arm gets between SIGTERM and SIGKILL.
GRACE_S = 3.0


def _failure(result_path: Path, log_path: Path, code: int) -> dict[str, Any]:
    """The arm's own failure record, or the last line of its stderr when it died before writing one.

    Either way the record keeps the last lines of the arm's stderr (``stderr_tail``).
    """
    tail = stderr_tail(log_path)
    if result_path.exists():
        try:
            data: dict[str, Any] = json.loads(result_path.read_text())
        except ValueError:
            data = {}
        if data.get("status") == "failed":
            return {**data, "exit_code": code, "stderr_tail": tail}
    how = how_it_ended(code)
    last = tail[-1].strip() if tail else "no output"
    return {
        "status": "failed",
        "reason": f"arm process {how}: {last}",
        "exit_code": code,
        "stderr_tail": tail,
    }


def _pump(stream: Any, log: Any, on_step: StepCallback | None) -> None:
    """Forward the arm's ``{"step", "total", "loss"}`` lines; anything else goes to its log."""
    for line in stream:
        try:
            step = json.loads(line)
        except ValueError:
            step = None
        if isinstance(step, dict) and "step" in step:
            if on_step is not None:
                on_step(step)
        else:
            log.write(line)  # stray prints from a user's task go to the log, not the terminal


def open_logs(paths: list[Path]) -> list[IO[str]]:
    """Each arm log created or emptied by :func:`~ampkit.fsutil.create_regular`: a FIFO, symlink or
    other special file put in its place (after the study's up-front check) raises ``OSError``
    naming it, at once; the logs already opened are closed then."""
    from ..fsutil import create_regular

    files: list[IO[str]] = []
    try:
        for path in paths:
            files.append(create_regular(path))
    except BaseException:
        for f in files:
            f.close()
        raise
    return files


def log_refused(err: OSError) -> dict[str, Any]:
    """The failure record of an arm whose log could not be opened (no process was started)."""
    return {
        "status": "failed",
        "reason": f"cannot open its log {err.filename}: {err.strerror or err}; "
        "valid: a regular file or nothing there (remove it)",
        "pid": None,
        "exit_code": None,
        "stderr_tail": [],
    }


#: A launcher's variables; a single-process arm must not inherit them from a parent run under torchrun.
_LAUNCH_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _single_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _LAUNCH_VARS}


def run_arm_process(
    spec: dict[str, Any],
    folder: Path,
    label: str,
    on_step: StepCallback | None = None,
    nproc: int = 1,
    on_start: Callable[[list[int]], None] | None = None,
) -> dict[str, Any]:
    """Run one arm (``nproc`` ranks), streaming rank 0's steps to ``on_step``; return its merged record.

    The ranks run in their own process groups and die with this process; on any exception here
    (Ctrl-C included) they are stopped and reaped before it propagates.
    """
    from ..engine.launch import free_port, worker_env
    from ..fsutil import write_atomic

    spec_path = folder / f"{label}.spec.json"
    result_tpl = str(folder / (f"{label}.json" if nproc == 1 else f"{label}.rank{{rank}}.json"))
    paths = [Path(result_tpl.replace("{rank}", str(r))) for r in range(nproc)]
    logs = [folder / (f"{label}.log" if nproc == 1 else f"{label}.rank{r}.log") for r in range(nproc)]
    for path in paths:
        path.unlink(missing_ok=True)
    write_atomic(spec_path, json.dumps({**spec, "result_path": result_tpl}, indent=1))
    port = free_port() if nproc > 1 else 0
    try:
        files = open_logs(logs)  # closed in finally, after the processes end
    except OSError as err:
        return log_refused(err)
    procs: list[subprocess.Popen[str]] = []
    pumps: list[threading.Thread] = []
    try:
        for r in range(nproc):
            env = worker_env(r, nproc, port) if nproc > 1 else _single_env()
            procs.append(start_arm(arm_command(spec_path), env, files[r]))
            pump = threading.Thread(
                target=_pump, args=(procs[-1].stdout, files[r], on_step if r == 0 else None), daemon=True
            )
            pump.start()
            pumps.append(pump)
        if on_start is not None:
            on_start([p.pid for p in procs])
        while any(p.poll() is None for p in procs):
            if any(p.poll() for p in procs):  # a rank failed: the others would wait in a collective forever
                break
            time.sleep(0.1)
    finally:
        stop_arms(procs, grace_s=GRACE_S)
        for t in pumps:
            t.join(timeout=5)
        for f in files:
            f.close()
    codes = [p.returncode for p in procs]
    failed = [r for r, c in enumerate(codes) if c]
    if failed:
        r = failed[0]
        record = _failure(paths[r], logs[r], codes[r])
        record["pid"] = record.get("pid") or procs[r].pid
        record["log"] = str(logs[r].relative_to(folder.parent))
        if nproc > 1:
            record["reason"] = f"rank {r}: {record['reason']}"
            record["rank_pids"] = [p.pid for p in procs]
        return record
    records = [json.loads(p.read_text()) for p in paths]
    return records[0] if nproc == 1 else merge_ranks(records)


def merge_ranks(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Rank 0's record with energy summed and memory maximised over all ranks; every pid kept."""
    out = dict(records[0])
    out["figures"] = dict(out["figures"])
    out["rank_pids"] = [r["pid"] for r in records]
    n = len(records)
    reductions = (
        (("energy_j", "energy_per_item_j"), sum, "sum"),
        (
            ("peak_mem_allocated_bytes", "peak_mem_reserved_bytes", "peak_rss_bytes", "peak_rss_added_bytes"),
            max,
            "max",
        ),
    )
    for keys, reduce, word in reductions:
        for key in keys:
            figs = [r["figures"].get(key) for r in records]
            if all(f and f.get("value") is not None for f in figs):
                out["figures"][key] = {
                    **figs[0],
                    "value": reduce(f["value"] for f in figs),  # type: ignore[index]
                    "method": f"{word} over {n} ranks of: {figs[0]['method']}",  # type: ignore[index]
                }
    return out

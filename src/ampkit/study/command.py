"""A command arm: the user's own COMMAND run once for one (precision, seed), measured from outside.

The command starts through :data:`WRAP`, a few lines of Python that lead the arm's own session
(process group), arm the parent-death signal, run the command as their one child and wait for it
with ``wait4`` (its exit status and peak RSS), so that the arm never outlives the study: when
the study dies or stops the arm, the wrapper takes the whole group down (SIGTERM, then SIGKILL).
While it runs the study streams the command's stdout and stderr into ``arms/<label>.log`` and
scans every line (``--parse``, proof line), reads its ``ampkit.log`` file as it grows, and polls
``/proc`` (tree RSS) and NVML (GPU memory, energy) every :data:`POLL_S` seconds.
"""

from __future__ import annotations

import json
import os
import shlex
import threading
import time
from pathlib import Path
from typing import IO, Any

from rich.progress import Progress

from ..pychild import python_code
from ..termtext import visible
from . import children
from .arm_output import LogTail, OutputScanner, compile_patterns
from .arms import ArmPlan
from .children import die_with_parent, stop_arms
from .command_launch import wrap
from .command_record import build_record
from .config import Experiment
from .placeholders import LOG_NAME, arm_env, expand
from .processes import _LAUNCH_VARS, GRACE_S, log_refused, open_logs
from .tree_meter import GpuMeter, TreeMeter

#: Seconds between two samples of the tree's memory (and of NVML, every second sample).
POLL_S = 0.05

WRAP = (
    die_with_parent("SIGTERM", forget=True)
    + f"""\
import json, time
report, argv, child = sys.argv[1], sys.argv[2:], 0
def stop(signum, frame):  # the study stops this arm, or died: the whole group goes
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGTERM)
    end = time.monotonic() + {GRACE_S}
    while child and time.monotonic() < end:
        try:
            if os.waitpid(child, os.WNOHANG)[0]:
                break
        except ChildProcessError:
            break
        time.sleep(0.05)
    os.killpg(0, signal.SIGKILL)
signal.signal(signal.SIGTERM, stop)
child = os.fork()
if child == 0:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        os.execvp(argv[0], argv)
    except OSError as err:
        sys.stderr.write("ampkit compare: cannot run " + argv[0] + ": " + str(err) + "\\n")
        os._exit(127)
_, status, usage = os.wait4(child, 0)
with open(report + ".tmp", "w") as f:
    json.dump({{"pid": child, "maxrss_kib": usage.ru_maxrss}}, f)
os.replace(report + ".tmp", report)
if os.WIFSIGNALED(status):  # die the way the command died, so the study reads the same status
    sig = os.WTERMSIG(status)
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the command's core (if any) is its own
    except (ImportError, OSError, ValueError):
        pass
    if sig not in (signal.SIGKILL, signal.SIGSTOP):  # those two cannot be caught, nor their action set
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
    os.kill(os.getpid(), sig)
    time.sleep(1)  # a signal whose default is to be ignored lands here: exit as a shell reports it
    os._exit(128 + sig)
os._exit(os.waitstatus_to_exitcode(status))
"""
)


def wrapper_command(report: Path, argv: list[str]) -> list[str]:
    """:data:`WRAP` running ``argv``: the wrapper imports nothing from the current folder (``-P``),
    and the command it execs sees ``sys.path`` as it would when the user ran it by hand."""
    return [*python_code(WRAP), str(report), *argv]


def _pump(stream: IO[bytes], name: str, log: IO[str], lock: threading.Lock, scanner: OutputScanner) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace")
        with lock:
            log.write(line if line.endswith("\n") else line + "\n")
            log.flush()
        scanner.feed(line, name, time.time())


def _environment(own: dict[str, str], unset: dict[str, str | None]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in _LAUNCH_VARS and k not in unset}
    return {**base, **own}


def _progress_value(tail: LogTail, scanner: OutputScanner) -> tuple[int | None, float] | None:
    for rec in reversed(tail.records):
        if "loss" in rec["values"]:
            return rec["step"], rec["values"]["loss"]
    return scanner.latest_loss()


def run_command_arm(
    exp: Experiment, plan: ArmPlan, seed: int, label: str, folder: Path, progress: Progress, pids: list[int]
) -> dict[str, Any]:
    """Run one command arm to its end (or until Ctrl-C, which stops its whole group and propagates)."""
    assert exp.command is not None
    say = progress.console
    arm_dir = (folder / label).resolve()
    arm_dir.mkdir(parents=True, exist_ok=True)
    (arm_dir / LOG_NAME).unlink(missing_ok=True)  # a previous study's events must not be read as this arm's
    report = folder / f"{label}.wait.json"
    report.unlink(missing_ok=True)
    argv, how = wrap(expand(exp.command, plan.mode, seed, arm_dir, exp.amp_flags), exp.gpus)
    own, unset = arm_env(plan.mode, seed, arm_dir, exp.env, exp.gpus)
    for warning in plan.warnings:
        say.print(f"{label}: warning: {warning}", markup=False, highlight=False)
    scanner = OutputScanner(compile_patterns(exp.parse, "--parse "))
    tail = LogTail(arm_dir / LOG_NAME)
    gpu = GpuMeter.open()
    log_path = folder / f"{label}.log"
    try:
        log = open_logs([log_path])[0]  # a FIFO or symlink put there: this arm fails, nothing hangs
    except OSError as err:
        record = log_refused(err)
        say.print(
            visible(f"{label}: failed: {record['reason']}"), markup=False, highlight=False, soft_wrap=True
        )
        return record
    current = progress.add_task(f"  {label}", total=None, loss="")
    started = time.time()
    lock = threading.Lock()
    with log:
        proc = children.start_command(wrapper_command(report, argv), _environment(own, unset))
        pids.append(proc.pid)
        tree = TreeMeter(proc.pid, exclude=(proc.pid,))
        pumps = [threading.Thread(target=_pump, args=(s, n, log, lock, scanner), daemon=True)
                 for s, n in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))]  # fmt: skip
        for pump in pumps:
            pump.start()
        say.print(
            f"{label}: {how}, wrapper pid {proc.pid}: {shlex.join(argv)}", markup=False, highlight=False
        )
        try:
            polls = 0
            while proc.poll() is None:
                seen = tree.poll()
                if isinstance(gpu, GpuMeter) and polls % 2 == 0:
                    gpu.poll(seen, time.time())
                tail.read()
                latest = _progress_value(tail, scanner)
                if latest is not None:
                    step, loss = latest
                    progress.update(current, completed=step or 0, loss=f"loss {loss:.4f}")
                polls += 1
                time.sleep(POLL_S)
        finally:
            stop_arms([proc], grace_s=GRACE_S)
            for pump in pumps:
                pump.join(timeout=5)
    ended = time.time()
    if isinstance(gpu, GpuMeter):
        gpu.poll([], ended)  # a last energy sample closes the window
    tail.read(final=True)
    waited = _read_report(report)
    record = build_record(
        exp, plan.mode, seed, argv=argv, env=own, tree=tree, gpu=gpu, tail=tail, scanner=scanner,
        code=proc.returncode, waited=waited, started=started, ended=ended, poll_s=POLL_S,
    )  # fmt: skip
    record["log"] = str(log_path.relative_to(folder.parent))
    record["launch"] = how
    record["wrapper_pid"] = proc.pid
    steps = [s for s, _ in record["step_log"]]
    progress.update(
        current,
        completed=steps[-1] if steps else 0,
        loss=record["status"] if record["status"] != "measured" else f"{ended - started:.1f} s",
    )
    return record


def _read_report(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    path.unlink(missing_ok=True)
    return data if isinstance(data, dict) else {}

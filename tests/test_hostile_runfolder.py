"""Hostile run folders and checkpoints: special files, zip bombs and hand-edited values.

* A FIFO, device, socket, folder or symbolic link in ``last.pt``'s or ``.ampkit.lock``'s place:
  ``train``, ``train --resume`` and ``evaluate`` refuse it in one line naming the path, exit 2,
  at once (nothing blocks on a FIFO) and without touching it (a lock symlinked to another file
  never truncates that file).
* A checkpoint whose zip entries are compressed (a 100 KB file inflating to 64 MiB) or claim more
  bytes than the file holds is refused from its zip directory: ``torch.load`` is never called.
* A hand-edited value in a checkpoint (``config.batch_size = 0``, ``seed = 2**80``, ``step = -3``,
  an optimizer ``lr = "abc"``) is one line ``<file>: <field> is <value>; valid: ...`` for
  ``evaluate`` and ``train --resume-any``, before anything is built.

Special files live beside the test's folder (``{tmp}-x``): the rows' snapshot reads every file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import stat
import struct
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_cases import Case, params, run_case, train_small_run

_SOURCE: dict[str, Path] = {}


@pytest.fixture(scope="module", autouse=True)
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real run folder: digits, size small, seed 0, batch 8, 2 fp32 steps."""
    out = tmp_path_factory.mktemp("source") / "run"
    train_small_run(out)
    _SOURCE["run"] = out
    yield out
    _SOURCE.clear()


def run_flags(out: str) -> list[str]:
    return ["train", "--no-progress", "--size", "small", "--steps", "2", "--batch-size", "8", "--out", out]


# -- special files in a run folder (M2) -------------------------------------------------------------
def _socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


MAKERS: dict[str, Callable[[Path], None]] = {
    "fifo": os.mkfifo,
    "dev-zero": lambda p: p.symlink_to("/dev/zero"),
    "socket": _socket,
    "folder": lambda p: p.mkdir(),
    "dangling-link": lambda p: p.symlink_to("/nonexistent/ampkit-x"),
    "link-loop": lambda p: p.symlink_to(p.name),
}


def special(name: str, kind: str, *, with_run: bool) -> Callable[[Path], None]:
    """``{tmp}-x/run`` (a copy of the trained run, or an empty folder) with ``name`` made a ``kind``."""

    def setup(tmp: Path) -> None:
        run = Path(f"{tmp}-x/run")
        if with_run:
            shutil.copytree(_SOURCE["run"], run)
            (run / name).unlink(missing_ok=True)
        else:
            run.mkdir(parents=True)
        if kind == "victim-link":  # a lock symlinked to a file of the user's: never truncated
            (tmp / "victim.txt").write_text("the user's file\n")
            (run / name).symlink_to(tmp / "victim.txt")
        else:
            MAKERS[kind](run / name)

    return setup


CKPT_REASON = {
    "fifo": "not a regular file (a FIFO, device or socket)",
    "dev-zero": "not a regular file (a FIFO, device or socket)",
    "socket": "not a regular file (a FIFO, device or socket)",
    "folder": "is a folder, not a checkpoint file",
    "dangling-link": "no such file",
    "link-loop": "a symbolic link that loops",
}
LOCK_REASON = {
    "fifo": "a FIFO, device or socket",
    "dev-zero": "a symbolic link",
    "socket": "a device or socket",
    "folder": "a folder",
    "dangling-link": "a symbolic link",
    "link-loop": "a symbolic link",
    "victim-link": "a symbolic link",
}
OUT = "{tmp}-x/run"
SPECIAL_CASES = [
    *(
        Case(f"train-last-pt-{kind}", run_flags(OUT), setup=special("last.pt", kind, with_run=False),
             needle=f"/run holds a last.pt that does not read as an ampkit checkpoint: pass --overwrite to "
                    f"replace it, or choose another --out ({CKPT_REASON[kind]})")
        for kind in CKPT_REASON
    ),
    *(
        Case(f"resume-last-pt-{kind}", [*run_flags(OUT), "--resume"], setup=special("last.pt", kind, with_run=True),
             needle=f"-x/run/last.pt: {CKPT_REASON[kind]}; valid: a last.pt written by ampkit train")
        for kind in CKPT_REASON
    ),
    *(
        Case(f"evaluate-last-pt-{kind}", ["evaluate", OUT], setup=special("last.pt", kind, with_run=True),
             needle="-x/run/last.pt (last.pt is not a file)")
        for kind in ("fifo", "dev-zero", "socket")
    ),
    *(
        Case(f"{'resume' if flag else 'train'}-lock-{kind}", [*run_flags(OUT), *([flag] if flag else [])],
             setup=special(".ampkit.lock", kind, with_run=bool(flag)),
             needle=f"-x/run/.ampkit.lock: {LOCK_REASON[kind]}, not ampkit's lock file; valid: a regular file")
        for kind in LOCK_REASON
        for flag in ("", "--resume")
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", params(SPECIAL_CASES))
def test_a_special_file_in_the_run_folder_is_refused_in_one_line(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_case(case, tmp_path, capsys, monkeypatch)
    run = Path(f"{tmp_path}-x/run")
    name = ".ampkit.lock" if "-lock-" in case.id else "last.pt"
    kind = case.id.split(f"-{'lock' if name == '.ampkit.lock' else 'last-pt'}-")[1]
    mode = os.lstat(run / name).st_mode
    assert not stat.S_ISREG(mode), f"{case.id}: the {kind} was replaced by a regular file"
    assert sorted(p.name for p in run.iterdir() if p.name not in (name, "last.pt", "metrics.json")) == []


# -- zip bombs (M3) ---------------------------------------------------------------------------------
def rezipped(method: int, extra: int = 0, lie: bool = False) -> Callable[[Path], None]:
    """The trained run, its ``last.pt`` rewritten with ``method`` (and ``extra`` zero bytes in one more
    tensor); ``lie``: stored, with the first central-directory entry claiming 2 GiB."""

    def setup(tmp: Path) -> None:
        shutil.copytree(_SOURCE["run"], tmp / "run")
        ckpt = tmp / "run" / "last.pt"
        if extra:
            state = torch.load(ckpt, weights_only=True)
            state["model"]["bomb"] = torch.zeros(extra, dtype=torch.uint8)
            torch.save(state, ckpt)
        data = ckpt.read_bytes()
        with zipfile.ZipFile(ckpt, "w", method) as out, zipfile.ZipFile(_bytes_file(tmp, data)) as src:
            for info in src.infolist():
                out.writestr(info.filename, src.read(info), compress_type=method)
        if lie:
            raw = bytearray(ckpt.read_bytes())
            at = raw.index(b"PK\x01\x02")
            raw[at + 24 : at + 28] = struct.pack("<I", 2**31)  # the uncompressed size
            ckpt.write_bytes(bytes(raw))

    return setup


def _bytes_file(tmp: Path, data: bytes) -> Path:
    (tmp.parent / f"{tmp.name}.orig.pt").write_bytes(data)
    return tmp.parent / f"{tmp.name}.orig.pt"


BOMB = 64 << 20
ZIP_ROWS = [
    ("deflated", rezipped(zipfile.ZIP_DEFLATED), "zip entry 'archive/data.pkl' is compressed (deflate)"),
    (
        "bomb-64mib",
        rezipped(zipfile.ZIP_DEFLATED, extra=BOMB),
        "is compressed (deflate), and torch.save stores",
    ),
    ("lzma", rezipped(zipfile.ZIP_LZMA), "is compressed (lzma)"),
    ("sizes-lie", rezipped(zipfile.ZIP_STORED, lie=True), "its zip entries claim 2_14"),
]
ZIP_CASES = [
    Case(f"{mode}-{name}", argv, setup=setup, needle=needle)
    for name, setup, needle in ZIP_ROWS
    for mode, argv in (
        ("evaluate", ["evaluate", "{tmp}/run"]),
        ("resume", [*run_flags("{tmp}/run"), "--resume"]),
        ("train", run_flags("{tmp}/run")),  # the plain "holds an earlier run" refusal reads it too
    )
]


@pytest.mark.parametrize("case", params(ZIP_CASES))
def test_a_zip_bomb_is_refused_before_torch_reads_it(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert case.setup is not None
    case.setup(tmp_path)  # (it loads and saves a checkpoint itself)
    loads: list[Any] = []
    real_load = torch.load

    def load(*args: Any, **kwargs: Any) -> Any:
        loads.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    run_case(dataclasses.replace(case, setup=None), tmp_path, capsys, monkeypatch)
    assert loads == [], f"{case.id}: torch.load ran on the refused file"
    if "bomb" in case.id:  # the file is small; what it would inflate to is not
        assert (tmp_path / "run" / "last.pt").stat().st_size < BOMB // 100


# -- hand-edited values (M4) ------------------------------------------------------------------------
def edited(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        shutil.copytree(_SOURCE["run"], tmp / "run")
        state = torch.load(tmp / "run" / "last.pt", weights_only=True)
        edit(state)
        torch.save(state, tmp / "run" / "last.pt")

    return setup


def cfg(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda state: state["config"].update(values)


def top(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda state: state.update(values)


def group(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda state: state["optimizer"]["optimizer"]["param_groups"][0].update(values)


def scaler(**values: Any) -> dict[str, Any]:
    """An enabled ``GradScaler``'s state with ``values`` edited in."""
    return {**torch.amp.GradScaler("cpu").state_dict(), **values}


def inner_scaler(value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda state: state["optimizer"].update(scaler=value)


def ranks(*edits: dict[str, Any] | Any) -> Callable[[dict[str, Any]], None]:
    """``rng_ranks`` of one entry per edit: the run's RNG state with a dict's keys replaced, or the value."""
    return lambda state: state.update(
        rng_ranks=[{**state["rng"], **e} if isinstance(e, dict) else e for e in edits]
    )


SCALE = "valid: a finite number > 0 and <= 3.40282e+38 (float32)"
SCALER_ROWS = [
    ("scaler-scale-string", top(scaler=scaler(scale="abc")), f"scaler.scale is 'abc'; {SCALE}"),
    ("scaler-scale-negative", top(scaler=scaler(scale=-1.0)), f"scaler.scale is -1.0; {SCALE}"),
    ("scaler-scale-zero", top(scaler=scaler(scale=0)), f"scaler.scale is 0; {SCALE}"),
    ("scaler-scale-nan", top(scaler=scaler(scale=float("nan"))), f"scaler.scale is nan; {SCALE}"),
    ("scaler-scale-inf", top(scaler=scaler(scale=float("inf"))), f"scaler.scale is inf; {SCALE}"),
    ("scaler-scale-beyond-float32", top(scaler=scaler(scale=1e300)), f"scaler.scale is 1e+300; {SCALE}"),
    (
        "scaler-growth-tracker-negative",
        top(scaler=scaler(_growth_tracker=-1)),
        "scaler._growth_tracker is -1; valid: a whole number in 0..growth_interval-1 (1_999)",
    ),
    (
        "scaler-growth-tracker-past-interval",
        top(scaler=scaler(_growth_tracker=2000)),
        "scaler._growth_tracker is 2000; valid: a whole number in 0..growth_interval-1",
    ),
    ("scaler-growth-factor-one", top(scaler=scaler(growth_factor=1.0)), "scaler.growth_factor is 1.0; valid: a finite number > 1"),
    ("scaler-backoff-zero", top(scaler=scaler(backoff_factor=0.0)), "scaler.backoff_factor is 0.0; valid: a number > 0 and < 1"),
    ("scaler-interval-float", top(scaler=scaler(growth_interval=2.5)), "scaler.growth_interval is 2.5; valid: a whole number in 1..2_147_483_647"),
    ("scaler-interval-bool", top(scaler=scaler(growth_interval=True)), "scaler.growth_interval is True; valid: a whole number"),
    ("scaler-keys-missing", top(scaler={"scale": "big"}), "scaler.growth_factor is missing; valid: null, {} (no loss scaling) or GradScaler"),
    ("scaler-not-a-dict", top(scaler="zz"), "scaler is 'zz'; valid: null, {} (no loss scaling)"),
    ("optimizer-scaler-scale-negative", inner_scaler(scaler(scale=-4.0)), f"optimizer.scaler.scale is -4.0; {SCALE}"),
    ("optimizer-scaler-list", inner_scaler([1, 2]), "optimizer.scaler is [1, 2]; valid: null, {}"),
]  # fmt: skip
TORCH_STATE = f"valid: torch.get_rng_state()'s uint8 tensor of {torch.get_rng_state().numel()} bytes"
RNG_RANKS_ROWS = [
    ("rng-ranks-string", top(rng_ranks="zz"), "rng_ranks is 'zz'; valid: null or a list with one entry per rank"),
    ("rng-ranks-empty", top(rng_ranks=[]), "rng_ranks is []; valid: null or a list"),
    ("rng-ranks-entry-int", ranks(5), "rng_ranks[0] is 5; valid: a dict of python, numpy, torch (and cuda)"),
    ("rng-ranks-entry-no-torch", lambda s: s.update(rng_ranks=[{"python": 1, "numpy": 2}]), "rng_ranks[0] is {'python': 1, 'numpy': 2}; valid: a dict"),
    (
        "rng-ranks-torch-short",
        ranks({"torch": torch.zeros(3, dtype=torch.uint8)}),
        f"rng_ranks[0].torch is a uint8 tensor of shape [3] (Expected a CPUGeneratorImplState of size 5056 but found the input RNG state size to be 3); {TORCH_STATE}",
    ),
    ("rng-ranks-torch-int64", ranks({"torch": torch.zeros(5056, dtype=torch.int64)}), f"rng_ranks[0].torch is an int64 tensor of shape [5056] (not a 1-D uint8 tensor); {TORCH_STATE}"),
    ("rng-ranks-torch-invalid", ranks({"torch": torch.zeros(5056, dtype=torch.uint8)}), "rng_ranks[0].torch is a uint8 tensor of shape [5056] (Invalid mt19937 state)"),
    ("rng-ranks-torch-list", ranks({"torch": [0] * 5056}), "rng_ranks[0].torch is a list of 5056 entries (not a 1-D uint8 tensor)"),
    ("rng-ranks-python-short", ranks({"python": (1, 2)}), "rng_ranks[0].python is (1, 2) (not enough values to unpack"),
    ("rng-ranks-python-state-size", ranks({"python": (3, (1, 2), None)}), "rng_ranks[0].python is (3, (1, 2), None) (state vector is the wrong size); valid: random.getstate()"),
    ("rng-ranks-python-gauss", lambda s: ranks({"python": (*s["rng"]["python"][:2], "x")})(s), "rng_ranks[0].python is a tuple of 3 entries (gauss_next is not null or a float); valid: random.getstate()'s"),
    ("rng-ranks-numpy-pos", lambda s: ranks({"numpy": {**s["rng"]["numpy"], "pos": 999999}})(s), "rng_ranks[0].numpy is a dict of 5 entries (pos 999999, has_gauss 0, cached_gaussian 0.0); valid: NumPy's"),
    ("rng-ranks-numpy-keys", lambda s: ranks({"numpy": {**s["rng"]["numpy"], "keys": torch.zeros(2, dtype=torch.int64)}})(s), "(its keys are not 624 whole numbers in 0..2**32-1); valid: NumPy's legacy MT19937"),
    ("rng-ranks-numpy-name", lambda s: ranks({"numpy": {**s["rng"]["numpy"], "name": "PCG64"}})(s), "set_state can only be used with legacy MT19937 state instances"),
    ("rng-ranks-second-rank", ranks({}, {"torch": torch.zeros(1, dtype=torch.uint8)}), "rng_ranks[1].torch is a uint8 tensor of shape [1]"),
    ("rng-ranks-cuda-string", ranks({"cuda": "x"}), "rng_ranks[0].cuda is 'x'; valid: a list of torch.cuda.get_rng_state_all()'s uint8 tensors"),
    ("rng-ranks-cuda-float", ranks({"cuda": [torch.zeros(16)]}), "rng_ranks[0].cuda[0] is a float32 tensor of shape [16] (not a 1-D uint8 tensor)"),
]  # fmt: skip


WHOLE = "valid: a whole number in 1..1_099_511_627_776"
VALUES = [
    ("batch-size-zero", cfg(batch_size=0), f"config.batch_size is 0; {WHOLE}"),
    ("batch-size-negative", cfg(batch_size=-5), f"config.batch_size is -5; {WHOLE}"),
    ("batch-size-huge", cfg(batch_size=2**64), f"config.batch_size is 18446744073709551616; {WHOLE}"),
    ("batch-size-float", cfg(batch_size=8.0), f"config.batch_size is 8.0; {WHOLE}"),
    ("batch-size-bool", cfg(batch_size=True), f"config.batch_size is True; {WHOLE}"),
    ("accumulate-zero", cfg(accumulate=0), f"config.accumulate is 0; {WHOLE}"),
    (
        "seed-huge",
        cfg(seed=2**80),
        "config.seed is 1208925819614629174706176; valid: a whole number in 0..9_223",
    ),
    (
        "seed-negative",
        cfg(seed=-1),
        "config.seed is -1; valid: a whole number in 0..9_223_372_036_854_775_807",
    ),
    ("steps-float", cfg(steps=3.5), "config.steps is 3.5; valid: a whole number in 1..1_000_000_000 or null"),
    ("steps-huge", cfg(steps=10**30), "config.steps is 1000000000000000000000000000000; valid: a whole"),
    (
        "epochs-negative",
        cfg(steps=None, epochs=-1.0),
        "config.epochs is -1.0; valid: a finite number > 0 and",
    ),
    ("lr-nan", cfg(lr=float("nan")), "config.lr is nan; valid: a finite number > 0 or null"),
    ("lr-string", cfg(lr="abc"), "config.lr is 'abc'; valid: a finite number > 0 or null"),
    (
        "weight-decay-negative",
        cfg(weight_decay=-0.1),
        "config.weight_decay is -0.1; valid: a finite number >= 0",
    ),
    (
        "clip-inf",
        cfg(clip_grad_norm=float("inf")),
        "config.clip_grad_norm is inf; valid: a finite number > 0",
    ),
    (
        "threads-huge",
        cfg(threads=100000),
        "config.threads is 100000; valid: a whole number in 1..65_536 or null",
    ),
    ("nproc-zero", cfg(nproc=0), "config.nproc is 0; valid: a whole number in 1..65_536"),
    ("checkpoint-every-negative", cfg(checkpoint_every=-1), "config.checkpoint_every is -1; valid: a whole"),
    ("fallback-after-zero", cfg(fallback_after=0), f"config.fallback_after is 0; {WHOLE}"),
    ("size-unknown", cfg(size="huge"), "config.size is 'huge'; valid: default, small, gpu"),
    ("task-bool", cfg(task=True), "config.task is True; valid: a task name"),
    (
        "precision-unknown",
        cfg(precision="fp7"),
        "config.precision is 'fp7'; valid: a precision mode (fp64, fp32",
    ),
    ("device-unknown", cfg(device="quantum"), "config.device is 'quantum'; valid: cpu, cuda, cuda:N"),
    ("bf16-update-unknown", cfg(bf16_update="magic"), "config.bf16_update is 'magic'; valid: plain, kahan"),
    ("strategy-unknown", cfg(strategy="zero3"), "config.strategy is 'zero3'; valid: ddp, fsdp"),
    (
        "on-nonfinite-unknown",
        cfg(on_nonfinite="pray"),
        "config.on_nonfinite is 'pray'; valid: skip, fallback",
    ),
    (
        "compile-backend-code",
        cfg(compile_backend="os:system"),
        "config.compile_backend is 'os:system'; valid: null",
    ),
    ("flop-share-string", cfg(flop_share="yes"), "config.flop_share is 'yes'; valid: true or false"),
    ("out-number", cfg(out=5), "config.out is 5; valid: null or a folder path"),
    (
        "keep-fp32-number",
        cfg(keep_fp32=12),
        "config.keep_fp32 is 12; valid: null, or type names or re:PATTERN",
    ),
    ("step-negative", top(step=-3), "/run/last.pt: step is -3; valid: a whole number in 0..1_000_000_000"),
    (
        "step-huge",
        top(step=10**18),
        "/run/last.pt: step is 1000000000000000000; valid: a whole number in 0..",
    ),
    (
        "precision-top-unknown",
        top(precision="fp7"),
        "/run/last.pt: precision is 'fp7'; valid: fp64, fp32, tf32",
    ),
    ("keep-fp32-top-number", top(keep_fp32=12), "/run/last.pt: keep_fp32 is 12; valid: null, or type names"),
    ("keep-fp32-top-regex", top(keep_fp32="re:("), "/run/last.pt: keep_fp32 is 're:(' (bad keep-fp32 regex"),
    (
        "optimizer-lr-string",
        group(lr="abc"),
        "optimizer param_groups[0].lr is 'abc'; valid: a finite number >= 0",
    ),
    (
        "optimizer-lr-nan",
        group(lr=float("nan")),
        "optimizer param_groups[0].lr is nan; valid: a finite number",
    ),
    (
        "optimizer-eps-negative",
        group(eps=-1.0),
        "optimizer param_groups[0].eps is -1.0; valid: a finite number",
    ),
    (
        "optimizer-betas",
        group(betas=(2.0, 0.999)),
        "param_groups[0].betas is (2.0, 0.999); valid: two finite",
    ),
    *SCALER_ROWS,
    *RNG_RANKS_ROWS,
]
VALUE_CASES = [
    Case(f"{mode}-{name}", argv, setup=edited(edit), needle=needle)
    for name, edit, needle in VALUES
    for mode, argv in (("evaluate", ["evaluate", "{tmp}/run"]), ("resume-any", [*run_flags("{tmp}/run"), "--resume-any"]))
]  # fmt: skip


@pytest.mark.parametrize("case", params(VALUE_CASES))
def test_a_hand_edited_checkpoint_value_is_one_line(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    err = run_case(case, tmp_path, capsys, monkeypatch)
    assert f"{tmp_path}/run/last.pt: " in err


@pytest.mark.parametrize(
    "edit",
    [cfg(threads=4096), cfg(device="cuda:7"), top(keep_fp32=""), cfg(nproc=64)],
    ids=["threads-of-a-bigger-machine", "device-of-another-machine", "keep-fp32-empty", "nproc-64"],
)
def test_values_from_another_machine_still_evaluate(
    edit: Callable[[dict[str, Any]], None], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """In range but not this machine's: the checkpoint is still the user's to evaluate."""
    from ampkit.cli import main

    edited(edit)(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(tmp_path / "run"), "--device", "cpu"]) == 0
    assert '"accuracy"' in capsys.readouterr().out


def legacy_numpy(state: dict[str, Any]) -> None:
    """Two ranks, the second with NumPy's state as older versions saved it (``np.random.get_state()``)."""
    import numpy as np

    ranks({}, {"numpy": np.random.get_state()})(state)


@pytest.mark.parametrize(
    "edit",
    [
        top(scaler=scaler()),
        inner_scaler(scaler(scale=1.0, _growth_tracker=1999)),
        top(scaler=None),
        ranks({}, {}),
        legacy_numpy,
        ranks({"cuda": [torch.zeros(16, dtype=torch.uint8)]}),
    ],
    ids=["scaler-of-an-fp16-run", "optimizer-scaler-edges", "scaler-null", "rng-ranks-of-two-ranks",
         "rng-ranks-legacy-numpy", "rng-ranks-with-cuda"],
)  # fmt: skip
def test_a_valid_scaler_or_rng_ranks_still_evaluates_and_resumes(
    edit: Callable[[dict[str, Any]], None], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """What a real run saves (an enabled scaler, one RNG state per rank) is not refused by the checks."""
    from ampkit.cli import main

    edited(edit)(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(tmp_path / "run"), "--device", "cpu"]) == 0
    assert '"accuracy"' in capsys.readouterr().out
    assert main([*run_flags(str(tmp_path / "run")), "--steps", "3", "--resume"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["resumed_from"] == 2 and len(metrics["history"]) == 3

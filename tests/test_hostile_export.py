"""``ampkit export`` on bad input: devices, ``--out``, ``--merge-into`` (one line, exit 2, nothing written).

The framework/precision/format rows live in tests/test_hostile_cli.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_cases import Case, params, run_case


def _write(name: str, text: str | bytes) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        (tmp / name).write_bytes(text if isinstance(text, bytes) else text.encode())

    return setup


EXPORT = ["export", "--to", "accelerate", "--precision", "fp16"]
MERGE = ["export", "--to", "deepspeed", "--precision", "bf16", "--merge-into"]
EMPTY = _write("ds.json", "{}")

CASES = [
    # --device: the labels exist for cuda and cpu only
    Case("device-mps", [*EXPORT, "--device", "mps"], needle="--device mps: no export labels for it; valid: cuda, cpu"),
    Case("device-empty", [*EXPORT, "--device", ""], needle="--device '': no export labels"),
    Case("device-cpu-index", [*EXPORT, "--device", "cpu:0"], needle="--device cpu:0"),
    Case("device-cuda-garbage", [*EXPORT, "--device", "cuda:x"], needle="--device cuda:x"),
    Case(
        "config-only-none-on-cpu",
        ["export", "--to", "mmengine", "--precision", "bf16", "--device", "cpu", "--config-only"],
        needle="no equivalent of ampkit's bf16-mixed on a CPU; it has: fp32, tf32 on cpu",
    ),
    Case(
        "config-only-none-anywhere",
        ["export", "--to", "transformers", "--precision", "bf16-true", "--config-only"],
        needle="Transformers has no equivalent of ampkit's bf16-true; it has: fp32, tf32, bf16-mixed, fp16-mixed",
    ),
    # --out
    Case("out-is-folder", [*EXPORT, "--out", "{tmp}"], needle="--out"),
    Case("out-under-a-file", [*EXPORT, "--out", "f.txt/x.yaml"], needle="f.txt is a file", setup=_write("f.txt", "")),
    # --merge-into
    Case("merge-missing-file", [*MERGE, "{tmp}/nope.json"], needle="no such file; valid: an existing DeepSpeed JSON"),
    Case("merge-folder", [*MERGE, "{tmp}"], needle="is a folder"),
    Case("merge-not-json", [*MERGE, "ds.json"], needle="not JSON (Expecting", setup=_write("ds.json", '{"fp16": ')),
    Case("merge-not-utf8", [*MERGE, "ds.json"], needle="not UTF-8 text", setup=_write("ds.json", b"\xff\xfe{")),
    Case("merge-json-list", [*MERGE, "ds.json"], needle="ds.json is a JSON list", setup=_write("ds.json", "[1]")),
    Case(
        "merge-contradiction-in-place",
        [*MERGE, "ds.json", "--out", "ds.json"],
        needle="ds.json has fp16.enabled=true; the export asks bf16-mixed: remove one",
        setup=_write("ds.json", '{"fp16": {"enabled": true}}'),
    ),
    Case(
        "merge-stage-0",
        ["export", "--to", "ds", "--precision", "bf16-true", "--merge-into", "ds.json"],
        needle="zero_optimization.stage=0; the export asks bf16-true, which needs ZeRO stage 1-3",
        setup=_write("ds.json", '{"zero_optimization": {"stage": 0}}'),
    ),
    Case(
        "merge-not-deepspeed",
        ["export", "--to", "accelerate", "--precision", "bf16", "--merge-into", "ds.json"],
        needle="only DeepSpeed configs are merged",
        setup=EMPTY,
    ),
    Case(
        "merge-no-equivalent",
        ["export", "--to", "ds", "--precision", "fp16-true", "--merge-into", "ds.json"],
        needle="nothing to merge; valid: fp32, tf32, bf16-mixed, fp16-mixed, bf16-true",
        setup=EMPTY,
    ),
    Case("merge-out-is-folder", [*MERGE, "ds.json", "--out", "{tmp}"], needle="--out", setup=EMPTY),
    Case("merge-bad-device", [*MERGE, "ds.json", "--device", "tpu"], needle="--device tpu", setup=EMPTY),
]  # fmt: skip


def _outside(name: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    """A setup making ``{tmp}-x/<name>`` beside the test's folder (a FIFO inside it would block the
    row's snapshot, which reads every file)."""

    def setup(tmp: Path) -> None:
        Path(f"{tmp}-x").mkdir(exist_ok=True)
        make(Path(f"{tmp}-x") / name)

    return setup


def _sparse_17_mib(path: Path) -> None:
    with path.open("wb") as handle:
        handle.truncate(17 << 20)


CASES += [
    # R7: a --merge-into that never ends, blocks, or is too big: refused before a byte is read
    Case("merge-dev-zero", [*MERGE, "/dev/zero"],
         needle="--merge-into /dev/zero: not a regular file (a device, FIFO or socket); valid: an existing DeepSpeed JSON"),
    Case("merge-fifo", [*MERGE, "{tmp}-x/ds.json"], setup=_outside("ds.json", lambda p: os.mkfifo(p)),
         needle="/ds.json: not a regular file"),
    Case("merge-over-16-mib", [*MERGE, "{tmp}-x/ds.json"], setup=_outside("ds.json", _sparse_17_mib),
         needle="17,825,792 bytes, more than 16 MiB; valid: an existing DeepSpeed JSON config file"),
    Case("merge-symlink-loop", [*MERGE, "{tmp}-x/ds.json"], setup=_outside("ds.json", lambda p: p.symlink_to(p)),
         needle="/ds.json: Too many levels of symbolic links; valid"),
    # R8: nesting that would overflow the parser or the merge
    Case("merge-nested-100000", [*MERGE, "ds.json"], setup=_write("ds.json", "[" * 100000 + "]" * 100000),
         needle="--merge-into ds.json: nested more than 64 levels deep; valid: an existing DeepSpeed JSON config file"),
    Case("merge-nested-65", [*MERGE, "ds.json"], setup=_write("ds.json", '{"a": ' + "[" * 64 + "]" * 64 + "}"),
         needle="nested more than 64 levels deep"),
    # R6, R10, NUL: paths no file can have
    Case("merge-empty-path", [*MERGE, ""], needle="argument --merge-into/--merge_into: '' is an empty path; valid: a non-empty path"),
    Case("merge-nul", [*MERGE, "ds\x00.json"], needle="argument --merge-into/--merge_into: 'ds\\x00.json' holds a NUL byte"),
    Case("out-nul", [*EXPORT, "--out", "a\x00.yaml"], needle="argument --out: 'a\\x00.yaml' holds a NUL byte"),
    Case("out-empty", [*EXPORT, "--out", ""], needle="argument --out: '' is an empty path"),
    Case("out-dangling-symlink", [*EXPORT, "--out", "{tmp}-x/cfg.yaml"],
         setup=_outside("cfg.yaml", lambda p: p.symlink_to(p.parent / "gone" / "cfg.yaml")),
         needle="/cfg.yaml: is a symlink to a missing target"),
]  # fmt: skip


@pytest.mark.parametrize("case", params(CASES))
def test_export_refuses_in_one_line(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_case(case, tmp_path, capsys, monkeypatch)

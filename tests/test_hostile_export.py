"""``ampkit export`` on bad input: devices, ``--out``, ``--merge-into`` (one line, exit 2, nothing written).

The framework/precision/format rows live in tests/test_hostile_cli.py.
"""

from __future__ import annotations

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


@pytest.mark.parametrize("case", params(CASES))
def test_export_refuses_in_one_line(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_case(case, tmp_path, capsys, monkeypatch)

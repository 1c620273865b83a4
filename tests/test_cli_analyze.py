"""``ampkit analyze``: the range table, the loss-scale advice, the drift table, JSON out."""

from __future__ import annotations

import json

from ampkit.cli import main

ARGS = [
    "analyze",
    "--task",
    "test_numerics_ranges:tiny_grad_task",
    "--precision",
    "bf16-mixed",
    "--steps",
    "3",
    "--batch-size",
    "16",
    "--device",
    "cpu",
    "--no-progress",
]


def test_json_names_the_underflowing_layer_and_a_loss_scale(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "report.json"
    assert main([*ARGS, "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["ranges"]["flagged"] == ["tiny"]
    assert printed["ranges"]["recommendation"] == "fp16-mixed"
    scale = printed["ranges"]["loss_scale"]
    lo, hi = printed["ranges"]["scale_range"]
    assert lo <= scale <= hi and scale > 1
    assert [row["step"] for row in printed["drift"]] == [1, 2, 3]
    assert printed["flop_share"]["mode"] == "bf16-mixed"


def test_tables_show_layers_advice_and_drift(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(ARGS) == 0
    text = capsys.readouterr().out
    assert "fp16 ranges of tinygrad" in text
    tiny_row = next(line for line in text.splitlines() if "│ tiny " in line)
    assert "grad-underflow" in tiny_row
    assert "recommendation: fp16-mixed with loss scale" in text
    assert "drift of bf16-mixed against fp32" in text
    assert "100.0% of matmul/conv FLOPs in low precision" in text


def test_bad_steps_is_one_line_exit_2(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([*ARGS, "--steps", "0"]) == 2
    assert capsys.readouterr().err.strip() == "ampkit analyze: error: --steps 0: must be >= 1"

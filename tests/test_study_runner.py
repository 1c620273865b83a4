"""`ampkit compare` end to end: one process per arm, true fp32, every output written, failures reported.

Arms are real subprocesses (~4 s each for the torch import): the module runs three in all.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch
from rich.console import Console

from ampkit.cli import main
from ampkit.study import write_outputs
from ampkit.study.energy import NoEnergyCounter, open_counter
from ampkit.study.meters import ArmMeters
from ampkit.study.report import headers, print_table

OUTPUTS = ("results.json", "results.csv", "report.md", "loss_curves.png", "step_time.png", "peak_memory.png",
           "energy.png", "metric_delta.png")  # fmt: skip


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("study")
    argv = ["compare", "--task", "digits", "--size", "small", "--batch-size", "16", "--precisions", "fp32,bf16-true",
            "--steps", "6", "--warmup-steps", "2", "--out", str(out), "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    return out


def test_each_arm_ran_in_its_own_process_and_fp32_was_true_fp32(study_dir) -> None:  # type: ignore[no-untyped-def]
    study = json.loads((study_dir / "results.json").read_text())
    runs = [r for arm in study["arms"] for r in arm["runs"]]
    assert [r["mode"] for r in runs] == ["fp32", "bf16-true"] and all(r["status"] == "measured" for r in runs)
    pids = [r["pid"] for r in runs]
    assert len(set(pids)) == len(pids) and os.getpid() not in pids and study["parent_pid"] == os.getpid()
    assert all(r["parent_pid"] == os.getpid() for r in runs)
    assert [o["pid"] for o in study["arm_order"]] == pids
    fp32 = next(r for r in runs if r["mode"] == "fp32")
    assert fp32["flags"]["cuda_matmul_allow_tf32"] is False and fp32["flags"]["cudnn_allow_tf32"] is False
    assert fp32["flags"]["float32_matmul_precision"] == "highest"
    # bf16-true: bf16 is the default dtype only inside the model's forward, the loop's stays float32
    assert next(r for r in runs if r["mode"] == "bf16-true")["flags"]["default_dtype"] == "float32"
    assert len(fp32["loss_curve"]) == 6 and fp32["threads"] >= 1
    hw = study["machine"]["hardware"]
    assert (
        hw["device_type"] == "cpu"
        and "cpu_flags" in hw
        and study["machine"]["software"]["torch"] == torch.__version__
    )


def test_every_output_exists_and_skipped_modes_are_listed(study_dir) -> None:  # type: ignore[no-untyped-def]
    for name in OUTPUTS:
        assert (study_dir / name).stat().st_size > 0, name
    study = json.loads((study_dir / "results.json").read_text())
    assert [a["mode"] for a in study["arms"]] == ["fp32", "bf16-true"]
    summary = study["arms"][1]["summary"]
    assert summary["speedup"]["value"] > 0 and "fp32 median step time" in summary["speedup"]["method"]
    assert summary["metric"]["method"].startswith("eval accuracy")
    rows = list(csv.DictReader((study_dir / "results.csv").open()))
    assert [r["precision"] for r in rows] == ["fp32", "bf16-true"] and float(
        rows[0]["step_time_median_s"]
    ) > 0
    md = (study_dir / "report.md").read_text()
    assert "## How each figure was measured" in md and "![loss_curves](loss_curves.png)" in md


def _no_energy(study: dict) -> dict:  # type: ignore[type-arg]
    """The study as a machine without counters records it (what this dev machine does by itself)."""
    figs = ArmMeters(0, 1, NoEnergyCounter("no counter on this test machine")).energy_figures(items=1)
    for arm in study["arms"]:
        for run in arm["runs"]:
            run["figures"].update(figs)
    return study


def test_energy_reads_unavailable_in_table_json_csv_and_md(study_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    study = _no_energy(json.loads((study_dir / "results.json").read_text()))
    write_outputs(study, tmp_path)
    console = Console(record=True, width=300)
    print_table(study, console)
    table = [ln for ln in console.export_text().splitlines() if ln.startswith("│")]
    cols = headers(study)
    for col in ("energy J", "energy mJ/sample"):
        i = cols.index(col)
        assert [ln.split("│")[i + 1].strip() for ln in table] == ["unavailable"] * 2
    data = json.loads((tmp_path / "results.json").read_text())
    for arm in data["arms"]:
        assert arm["summary"]["energy_j"]["value"] is None
        assert arm["summary"]["energy_j"]["unavailable"] == "no counter on this test machine"
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert {r["energy_j"] for r in rows} == {r["energy_per_item_j"] for r in rows} == {"unavailable"}
    md_rows = [ln.split(" | ") for ln in (tmp_path / "report.md").read_text().splitlines() if ln.startswith("| fp32")
               or ln.startswith("| bf16-true")]  # fmt: skip
    assert {r[cols.index("energy J")] for r in md_rows} == {"unavailable"}
    assert (
        "**energy** (J): unavailable: no counter on this test machine" in (tmp_path / "report.md").read_text()
    )
    if isinstance(open_counter(torch.device("cpu")), NoEnergyCounter):  # this machine: no RAPL at all
        real = json.loads((study_dir / "results.json").read_text())
        assert all(a["summary"]["energy_j"]["value"] is None for a in real["arms"])


def test_a_task_that_cannot_run_is_refused_before_any_arm(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "study"
    argv = ["compare", "--task", "ampkit.tasks.digits:no_such_factory", "--precisions", "fp32", "--steps", "3",
            "--warmup-steps", "1", "--out", str(out), "--device", "cpu"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'no_such_factory'" in err
    assert not out.exists()  # no study folder, no arms folder, no arm process


def test_gpus_n_runs_each_arm_as_n_ranks_of_the_distributed_engine(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    argv = ["compare", "--size", "small", "--batch-size", "16", "--precisions", "fp32", "--gpus", "2", "--steps", "4",
            "--warmup-steps", "1", "--out", str(tmp_path), "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    study = json.loads((tmp_path / "results.json").read_text())
    run = study["arms"][0]["runs"][0]
    said = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("fp32-seed0: ")]
    pids = ", ".join(map(str, run["rank_pids"]))
    assert said == [
        f"fp32-seed0: 2 processes (ddp ranks over gloo on cpu, batch 16 split 8 per rank), pids {pids}"
    ]
    assert run["status"] == "measured" and run["nproc"] == 2 and run["rank"] == 0
    assert len(set(run["rank_pids"])) == 2 and os.getpid() not in run["rank_pids"]
    assert run["figures"]["peak_rss_bytes"]["method"].startswith("max over 2 ranks")
    assert study["settings"]["gpus"] == 2


def test_gpus_that_do_not_split_the_batch_are_one_line_exit_2(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["compare", "--gpus", "3", "--device", "cpu", "--out", "/nonexistent/never"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--gpus 3" in err and "split evenly" in err

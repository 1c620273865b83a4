"""The loaders' ``label=`` on labels of every JSON kind: ``y`` or a ShardError naming shard and sample.

Each row converts two tiny samples whose sidecar JSON holds the row's labels (``None``: no
sidecar, so no label), then reads both with ``IndexedShards`` and ``StreamingShards``. Before,
a missing label was a bare ``KeyError``, a string/list/dict or ``2**70`` a raw ``ValueError`` or
``TypeError``, and ``1e308`` silently became ``inf`` in float32. Now a bad label is a damaged
sample: ``on_error="raise"`` raises :class:`ShardError` naming shard, sample and value,
``on_error="skip"`` leaves that sample out; a label no sample of the batch has is the caller's
mistake (:class:`UsageError`). The last rows run ``ampkit train --task ct`` on a cached ct folder
converted without labels (``AMPKIT_CACHE``): one line, exit 2, instead of a traceback.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cli_cases import Case, params, run_case

from ampkit.data import IndexedShards, ShardError, StreamingShards
from ampkit.data.convert import ConvertOptions, convert
from ampkit.data.sources import discover
from ampkit.errors import UsageError

MISSING = pytest.param  # any object that is no JSON value: "this sample has no sidecar"


def shards(tmp: Path, labels: list[Any], volumes: tuple[int, ...] = (8,)) -> Path:
    """Convert one sample per label (its sidecar ``{"label": value}``; :data:`MISSING`: no sidecar)."""
    src = tmp / "src"
    src.mkdir()
    for i, label in enumerate(labels):
        np.save(src / f"s{i}.npy", np.arange(np.prod(volumes), dtype=np.float32).reshape(volumes) + i)
        if label is not MISSING:
            (src / f"s{i}.json").write_text(json.dumps({"label": label}))
    out = tmp / "out"
    convert(discover([str(src)]), ConvertOptions(out=out))
    return out


def read(out: Path, loader: str, on_error: str, label: str = "label") -> dict[str, Any]:
    if loader == "indexed":
        return IndexedShards(out, label=label, on_error=on_error).get_batch([0, 1])
    stream = StreamingShards(out, batch_size=2, label=label, on_error=on_error, shuffle="none")
    return next(iter(stream.loader(num_workers=0)))


# (id, labels of samples 0 and 1, the bad sample (None: both fine), fragment of the reason, y of good ones)
ROWS = [
    ("ints", [3, 4], None, "", [3, 4]),
    ("floats", [0.5, 2.0], None, "", [0.5, 2.0]),
    ("bools-are-ints", [True, 0], None, "", [1, 0]),
    ("int64-edges", [2**63 - 1, -(2**63)], None, "", [2**63 - 1, -(2**63)]),
    ("float32-max", [3.4028234e38, 1.0], None, "", [3.4028234e38, 1.0]),
    ("missing-in-one", [1, MISSING], 1, "no label 'label' in its meta", [1]),
    ("string", [1, "dog"], 1, "'dog' is a string", [1]),
    ("list", [[1, 2], 2], 0, "[1, 2] is a list", [2]),
    ("dict", [1, {"a": 1}], 1, "{'a': 1} is an object", [1]),
    ("json-null", [1, None], 1, "None is null", [1]),
    ("int-beyond-int64", [2**70, 1], 0, "1180591620717411303424: beyond int64", [1]),
    ("int-below-int64", [1, -(2**63) - 1], 1, "beyond int64", [1]),
    ("float-beyond-float32", [1.5, 1e308], 1, "1e+308: beyond float32", [1.5]),
    ("float-nan", [float("nan"), 1.5], 0, "nan: not a finite number", [1.5]),
    ("float-inf", [1.5, float("-inf")], 1, "-inf: not a finite number", [1.5]),
]


@pytest.mark.parametrize("loader", ["indexed", "stream"])
@pytest.mark.parametrize(("labels", "bad", "reason", "y"), [pytest.param(*r[1:], id=r[0]) for r in ROWS])
def test_label_values(
    tmp_path: Path, loader: str, labels: list[Any], bad: int | None, reason: str, y: list[Any]
) -> None:
    out = shards(tmp_path, labels)
    if bad is None:
        got = read(out, loader, "raise")["y"]
        assert got.tolist() == pytest.approx(y) if got.is_floating_point() else got.tolist() == y
        assert got.dtype == (torch.float32 if any(isinstance(v, float) for v in y) else torch.int64)
        return
    with pytest.raises(ShardError) as err:
        read(out, loader, "raise")
    assert err.value.shard == "shard-000000.tar" and err.value.key == f"{bad:09d}", err.value
    assert reason in str(err.value), err.value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = read(out, loader, "skip")
    assert batch["key"] == [f"{1 - bad:09d}"] and batch["skipped"] == [f"{bad:09d}"]
    assert batch["y"].tolist() == pytest.approx(y) and len(batch["x"]) == 1


@pytest.mark.parametrize("loader", ["indexed", "stream"])
@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_label_no_sample_has_is_usage_error(tmp_path: Path, loader: str, on_error: str) -> None:
    out = shards(tmp_path, [1, 2])
    with pytest.raises(UsageError, match=r"label='lable': no sample of this batch has it .*holds 'label'"):
        read(out, loader, on_error, label="lable")


def ct_cache_without_labels(tmp: Path) -> None:
    """``{tmp}/cache/<ct small folder>`` converted from 10 small volumes without sidecars."""
    src = tmp / "ctsrc"
    src.mkdir()
    for i in range(10):
        np.save(src / f"v{i:03d}.npy", np.zeros((16, 16, 16), np.float32))
    convert(discover([str(src)]), ConvertOptions(out=tmp / "cache" / "ct-phantoms-80x16-fp16-v1"))


TRAIN = ["train", "--task", "ct", "--size", "small", "--device", "cpu", "--steps", "2", "--batch-size", "4",
         "--out", "{tmp}/run", "--no-progress"]  # fmt: skip
CASES = [
    Case("ct-cache-without-labels", TRAIN, setup=ct_cache_without_labels, env={"AMPKIT_CACHE": "cache"},
         needle="label='label': no sample of this batch has it"),
]  # fmt: skip


@pytest.mark.parametrize("case", params(CASES))
def test_train_on_unlabelled_cache(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Refused when the task is built: the error line is all that is printed (no precision line,
    which ``ampkit`` logs once training starts, before it) and no run folder is created."""
    with caplog.at_level(logging.INFO):
        err = run_case(case, tmp_path, capsys, monkeypatch)
    assert err.splitlines() == [err.strip()] and err.startswith("ampkit train: error: label='label'"), err
    assert [r.getMessage() for r in caplog.records] == []
    assert not (tmp_path / "run").exists()

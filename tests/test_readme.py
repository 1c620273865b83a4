"""The README's user-loop example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def test_readme_user_loop_runs(capsys) -> None:  # type: ignore[no-untyped-def]
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "PrecisionOptimizer" in b)
    namespace: dict[str, object] = {}
    exec(compile(example, str(README), "exec"), namespace)
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0] == "ampkit: precision=bf16-mixed autocast=cpu/bfloat16 grad_scaler=off tf32=off params=float32"
    )
    assert len(out) == 1 + 10  # 20 micro-batches, accumulate=2 -> 10 optimizer steps
    assert out[-1].startswith("10 True ")
    assert namespace["pred"].shape == (4,)  # type: ignore[union-attr]
    assert namespace["sched"].last_epoch == 10  # type: ignore[union-attr]


def test_readme_shard_reading_example_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ampkit.cli import main
    from ampkit.data.phantoms import write_phantom_dataset

    write_phantom_dataset(tmp_path / "data", n=6, shape=(8, 8, 8))
    assert (
        main(
            ["convert", str(tmp_path / "data"), "--out", str(tmp_path / "shards"), "--samples-per-shard", "3"]
        )
        == 0
    )
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "StreamingShards" in b).replace(
        '"shards/"', repr(str(tmp_path / "shards"))
    )
    namespace: dict[str, object] = {}
    exec(compile(example, str(README), "exec"), namespace)
    x, y = namespace["x"], namespace["y"]
    assert x.dtype.is_floating_point and str(x.dtype) == "torch.float32"  # type: ignore[union-attr]
    assert x.shape[1:] == (1, 8, 8, 8) and y.shape[0] == x.shape[0]  # type: ignore[union-attr]
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0  # type: ignore[union-attr]

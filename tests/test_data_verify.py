"""verify-shards: a flipped byte names the shard (and the key when it hits sample data); clean dirs pass."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ampkit.cli import main
from ampkit.data.convert import ConvertOptions, convert
from ampkit.data.format import load_manifest
from ampkit.data.sources import discover
from ampkit.data.verify import verify_shards


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("verify")
    for i in range(4):
        np.save(root / f"v{i}.npy", np.random.default_rng(i).normal(size=(8, 8)).astype(np.float32))
    convert(discover([str(root)]), ConvertOptions(out=root / "out", samples_per_shard=2))
    return root / "out"


def _copy_flipped(clean: Path, tmp_path: Path, shard: int, where: str) -> tuple[Path, str, str]:
    out = tmp_path / "out"
    shutil.copytree(clean, out)
    entry = load_manifest(out)["shards"][shard]
    position = {"bin": entry["samples"][1]["bin"][0] + 5, "header": 100}[
        where
    ]  # 100: inside the first header
    path = out / entry["name"]
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))
    return out, entry["name"], entry["samples"][1]["key"]


def test_clean_dir_passes(clean: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify_shards(clean).ok
    assert main(["verify-shards", str(clean), "--quiet"]) == 0
    assert "ok: 2 shards, 4 samples" in capsys.readouterr().out


def test_flipped_byte_in_sample_data_names_shard_and_key(
    clean: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, shard, key = _copy_flipped(clean, tmp_path, shard=1, where="bin")
    assert main(["verify-shards", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert (
        f"BAD {shard} key {key}: sample bytes differ from the xxh3" in err
        and f"BAD {shard}: sha256 differs" in err
    )
    assert "shard-000000.tar" not in err


def test_shards_with_per_sample_sha256_are_checked_with_it(clean: Path, tmp_path: Path) -> None:
    # shards written before CRC-32C carry sha256(bin + json) per sample; both kinds stay verifiable
    import hashlib

    from ampkit.data.format import read_member

    out, shard, key = _copy_flipped(clean, tmp_path, shard=1, where="bin")
    manifest = json.loads((out / "manifest.json").read_text())
    for s in manifest["shards"]:
        with open(clean / s["name"], "rb") as fh:  # checksums of the undamaged bytes
            for e in s["samples"]:
                e["sha256"] = hashlib.sha256(
                    read_member(fh, e["bin"]) + read_member(fh, e["json"])
                ).hexdigest()
                del e["xxh3"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    problems = [str(p) for p in verify_shards(out).problems]
    assert f"{shard} key {key}: sample bytes differ from the sha256 recorded in the manifest" in problems
    assert len(problems) == 2 and problems[1].startswith(f"{shard}: sha256 differs")


@pytest.mark.parametrize("kind", ["xxh3", "none"])
def test_a_sample_without_a_checksum_of_its_own_is_not_called_intact(
    clean: Path, tmp_path: Path, kind: str
) -> None:
    """A ``null`` checksum (or none) records nothing: a changed shard cannot clear such a sample."""
    out, shard, key = _copy_flipped(clean, tmp_path, shard=1, where="bin")
    manifest = json.loads((out / "manifest.json").read_text())
    for e in manifest["shards"][1]["samples"]:
        if kind == "none":
            del e["xxh3"]
        else:
            e["xxh3"] = None
    (out / "manifest.json").write_text(json.dumps(manifest))
    report = verify_shards(out)
    problems = [str(p) for p in report.problems]
    assert (
        f"{shard} key {key}: no checksum of its own, and the shard's sha256 differs: cannot be cleared"
        in problems
    )
    assert not any("all samples intact" in p for p in problems) and report.failed == 2 and report.samples == 2


def test_a_fifo_in_a_shards_place_is_named_not_waited_on(clean: Path, tmp_path: Path) -> None:
    import os

    out = tmp_path / "out"
    shutil.copytree(clean, out)
    (out / "shard-000001.tar").unlink()
    os.mkfifo(out / "shard-000001.tar")
    problems = [str(p) for p in verify_shards(out).problems]
    assert problems == ["shard-000001.tar: not a regular file (a folder, FIFO, device or broken link)"]


def test_flipped_byte_in_tar_header_names_shard(clean: Path, tmp_path: Path) -> None:
    out, shard, _ = _copy_flipped(clean, tmp_path, shard=0, where="header")
    report = verify_shards(out)
    assert not report.ok and {p.shard for p in report.problems} == {shard}
    assert any("sha256 differs" in str(p) for p in report.problems)


def test_missing_shard_and_bad_folder(
    clean: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    shutil.copytree(clean, out)
    (out / "shard-000001.tar").unlink()
    assert [str(p) for p in verify_shards(out).problems] == ["shard-000001.tar: missing"]
    assert main(["verify-shards", str(tmp_path / "nope")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_inspect_tables_and_json(clean: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(clean), "--shards"]) == 0
    text = capsys.readouterr().out
    assert "float16" in text and "shard-000001.tar" in text and "ratio vs float32" in text
    out = tmp_path / "out"
    shutil.copytree(clean, out)
    (out / "manifest.json").unlink()  # inspect rebuilds it from the shards' index members
    assert main(["inspect", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["total_samples"] == 4 and summary["shards"] == 2
    assert summary["dtype_counts"] == {"float16": 4} and summary["per_dtype"]["float16"]["count"] == 4
    assert summary["worst_error"]["max_abs"] == max(json.loads(m)["error"]["max_abs"] for m in _jsons(clean))


def _jsons(directory: Path) -> list[bytes]:
    import tarfile

    out = []
    for path in sorted(directory.glob("shard-*.tar")):
        with tarfile.open(path) as tf:
            out += [tf.extractfile(m).read() for m in tf.getmembers() if m.name.endswith(".json")]  # type: ignore[union-attr]
    return out

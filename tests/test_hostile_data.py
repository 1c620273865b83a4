"""``convert``, ``inspect`` and ``verify-shards`` on bad input: one line, the right exit code, nothing changed.

Rows (tests/cli_cases.py) build tiny arrays or a 4-sample shard folder in their setup and run the
command in-process. ``convert`` refuses every bad flag, input file and output folder before it
writes, and a sample refused mid-run (NaN, overflow, tolerance) leaves ``--out`` as it was found:
exit 2, no file under the test's folder changed. ``inspect`` refuses anything it cannot
summarise (exit 2). ``verify-shards`` reports damage inside a shard folder as findings (exit 1,
one stderr line per problem) and refuses a path that is no shard folder at all (exit 2).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_cases import Case, params, run_case

from ampkit.cli import main
from ampkit.data import shardwriter
from ampkit.data.convert import ConvertOptions, convert
from ampkit.data.format import file_sha256, load_manifest, shard_paths
from ampkit.data.shardwriter import ShardWriter
from ampkit.data.sources import discover

Setup = Callable[[Path], None]
CONVERT = ["convert", "--out", "{tmp}/out", "--quiet"]


def both(*setups: Setup) -> Setup:
    def setup(tmp: Path) -> None:
        for s in setups:
            s(tmp)

    return setup


def npy(name: str, array: Any) -> Setup:
    """Saves ``array`` as ``{tmp}/src/<name>`` (``.npy`` or, for a dict, ``.npz``)."""

    def setup(tmp: Path) -> None:
        (tmp / "src").mkdir(exist_ok=True)
        if isinstance(array, dict):
            np.savez(tmp / "src" / name, **array)
        else:
            np.save(tmp / "src" / name, array)

    return setup


def raw(name: str, data: bytes | str) -> Setup:
    """Writes ``{tmp}/<name>`` with ``data`` (folders created)."""

    def setup(tmp: Path) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    return setup


def truncated(name: str, array: Any, keep: float) -> Setup:
    """``npy(name, array)`` cut to ``keep`` of its bytes."""

    def setup(tmp: Path) -> None:
        npy(name, array)(tmp)
        path = tmp / "src" / name
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])

    return setup


def huge_header(tmp: Path) -> None:
    """A ``.npy`` whose header promises 10**12 float32 values; 16 bytes follow."""
    (tmp / "src").mkdir(exist_ok=True)
    with open(tmp / "src" / "huge.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
        fh.write(b"\0" * 16)


def src_ok(tmp: Path) -> None:
    npy("a.npy", np.arange(16, dtype=np.float32).reshape(4, 4) / 3)(tmp)


def dataset(tmp: Path, where: str = "ds") -> None:
    """A valid shard folder ``{tmp}/<where>``: 4 samples of 4x4 float32, 2 per shard, from ``{tmp}/dsrc``."""
    src = tmp / "dsrc"
    src.mkdir(exist_ok=True)
    for i in range(4):
        np.save(src / f"v{i}.npy", np.random.default_rng(i).normal(size=(4, 4)).astype(np.float32))
    convert(discover([str(src)]), ConvertOptions(out=tmp / where, samples_per_shard=2))


def damaged(change: Callable[[Path], None]) -> Setup:
    """``dataset`` then ``change({tmp}/ds)``."""

    def setup(tmp: Path) -> None:
        dataset(tmp)
        change(tmp / "ds")

    return setup


def manifest_edit(change: Callable[[dict[str, Any]], Any]) -> Setup:
    """``dataset`` with its manifest.json replaced by ``change(manifest)`` (or edited in place)."""

    def edit(ds: Path) -> None:
        m = json.loads((ds / "manifest.json").read_text())
        new = change(m)
        (ds / "manifest.json").write_text(json.dumps(m if new is None else new))

    return damaged(edit)


def cut(name: str, size: int) -> Callable[[Path], None]:
    def change(ds: Path) -> None:
        data = (ds / name).read_bytes()
        (ds / name).write_bytes(data[:size])

    return change


def flip(ds: Path) -> None:
    """One flipped byte in the data of shard 1's first sample."""
    entry = load_manifest(ds)["shards"][1]["samples"][0]
    path = ds / "shard-000001.tar"
    data = bytearray(path.read_bytes())
    data[entry["bin"][0] + 3] ^= 0x10
    path.write_bytes(bytes(data))


def forged_sample(
    meta_change: Callable[[dict[str, Any]], None],
    bin_bytes0: bytes | None = None,
    raw: Callable[[bytes], bytes] | None = None,
) -> Setup:
    """``dataset`` whose shard 0 is rewritten with sample 0's JSON changed (and its data replaced by
    ``bin_bytes0`` when given, its JSON text by ``raw(text)``), checksums and manifest updated to
    match: only the content is wrong."""

    def change(ds: Path) -> None:
        from ampkit.data.format import read_index, read_sample

        path = ds / "shard-000000.tar"
        entries = read_index(path)["samples"]
        samples = [read_sample(path, e) for e in entries]
        meta_change(samples[0][1])
        if bin_bytes0 is not None:
            samples[0] = (bin_bytes0, samples[0][1])
        writer = ShardWriter(ds, 0)
        for i, (e, (bin_bytes, meta)) in enumerate(zip(entries, samples)):
            text = json.dumps(meta).encode()
            writer.add(e["key"], bin_bytes, raw(text) if raw is not None and i == 0 else text)
        writer.close()
        m = json.loads((ds / "manifest.json").read_text())
        m["shards"][0].update(samples=writer.samples, sha256=file_sha256(path), bytes=path.stat().st_size)
        (ds / "manifest.json").write_text(json.dumps(m))

    return damaged(change)


def beside(change: Callable[[Path], None]) -> Setup:
    """``dataset`` made in ``{tmp}-x`` (beside the test's folder: a FIFO or a link to a device inside
    it would stall the row's snapshot, which reads every file), then ``change({tmp}-x/ds)``."""

    def setup(tmp: Path) -> None:
        where = Path(f"{tmp}-x")
        where.mkdir(exist_ok=True)
        dataset(where)
        change(where / "ds")

    return setup


def fifo(name: str) -> Callable[[Path], None]:
    """``<folder>/<name>`` replaced by a FIFO (nobody ever writes to it: a blocking open would hang)."""

    def change(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).unlink(missing_ok=True)
        os.mkfifo(folder / name)

    return change


def dev_zero(name: str) -> Callable[[Path], None]:
    """``<folder>/<name>`` replaced by a link to ``/dev/zero`` (endless zeros: an unbounded read eats all memory)."""

    def change(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).unlink(missing_ok=True)
        (folder / name).symlink_to("/dev/zero")

    return change


def listed_fifo(ds: Path) -> None:
    """A FIFO ``shard-000002.tar`` listed in the manifest as an empty shard (0 bytes: the size check passes)."""
    os.mkfifo(ds / "shard-000002.tar")
    m = json.loads((ds / "manifest.json").read_text())
    m["shards"].append(
        {"name": "shard-000002.tar", "sha256": "0" * 64, "bytes": 0, "count": 0, "samples": []}
    )
    (ds / "manifest.json").write_text(json.dumps(m))


def padded_manifest(ds: Path) -> None:
    """A valid manifest.json followed by 2 MiB of spaces: more than the shards beside it can need."""
    with open(ds / "manifest.json", "a") as fh:
        fh.write(" " * (2 << 20))


def manifest_key_twice(ds: Path) -> None:
    text = (ds / "manifest.json").read_text()
    (ds / "manifest.json").write_text(text.replace("{", '{"format": "ampkit-shards/1", ', 1))


_HELD: list[int] = []
"""Lock files held by row setups (closed after each row)."""


def lock_held(tmp: Path) -> None:
    """``{tmp}/out/.convert.lock`` held as a running convert (pid 4242) holds it."""
    import fcntl

    (tmp / "out").mkdir(exist_ok=True)
    fd = os.open(tmp / "out" / ".convert.lock", os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b'{"pid": 4242}')
    # a lock on another open file description: it conflicts with convert's in this process too
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _HELD.append(fd)


def in_x(make: Callable[[Path], None], *names: str) -> Setup:
    """``src_ok``, then ``make({tmp}-x/<names...>)`` for a folder beside the test's."""

    def setup(tmp: Path) -> None:
        src_ok(tmp)
        make(Path(f"{tmp}-x").joinpath(*names))

    return setup


def settings_file(text: str) -> Setup:
    return both(src_ok, raw("out/.convert.json", text))


def sidecar(text: str) -> Setup:
    return both(src_ok, raw("src/a.json", text))


def _error(max_abs: Any) -> Callable[[dict[str, Any]], None]:
    return _set("error", {"max_abs": max_abs, "max_rel": 0.0})


def _bf16_near_max(meta: dict[str, Any]) -> None:
    """Sample 0 as bfloat16 values of 3e38 with offset 3e38: each decodes to 6e38, beyond float32."""
    meta.update(dtype="bfloat16", offset=3e38)


_BF16_3E38 = (np.full(16, 3e38, np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()


def _list_no_shards(m: dict[str, Any]) -> None:
    m["shards"] = []


def nan_second(tmp: Path) -> None:
    npy("a.npy", np.ones((4, 4), np.float32))(tmp)
    npy("b.npy", np.array([[1.0, np.nan], [2.0, 3.0]], np.float32))(tmp)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(meta: dict[str, Any]) -> None:
        meta[key] = value

    return change


SRC = "{tmp}/src"
A = "{tmp}/src/a.npy"
U = "{tmp}/src/u.npy"

CONVERT_FLAGS = [
    Case("max-abs-error-nan", [*CONVERT, A, "--max-abs-error", "nan"], needle="--max-abs-error nan", setup=src_ok),
    Case("max-abs-error-inf", [*CONVERT, A, "--max-abs-error", "inf"], needle="finite", setup=src_ok),
    Case("max-abs-error-negative", [*CONVERT, A, "--max-abs-error", "-1"], needle=">= 0", setup=src_ok),
    Case("max-rel-error-nan", [*CONVERT, A, "--max-rel-error", "nan"], needle="--max-rel-error", setup=src_ok),
    Case("max-rel-error-negative", [*CONVERT, A, "--max-rel-error", "-0.5"], needle=">= 0", setup=src_ok),
    Case("max-abs-error-text", [*CONVERT, A, "--max-abs-error", "big"], needle="invalid float", setup=src_ok),
    Case("samples-per-shard-0", [*CONVERT, A, "--samples-per-shard", "0"], needle=">= 1", setup=src_ok),
    Case("samples-per-shard-negative", [*CONVERT, A, "--samples-per-shard", "-3"], needle=">= 1", setup=src_ok),
    Case("samples-per-shard-text", [*CONVERT, A, "--samples-per-shard", "many"], needle="invalid int", setup=src_ok),
    Case("workers-0", [*CONVERT, A, "--workers", "0"], needle="--workers 0", setup=src_ok),
    Case("workers-negative", [*CONVERT, A, "--workers", "-2"], needle="--workers -2", setup=src_ok),
    Case("workers-beyond-the-cpus", [*CONVERT, A, "--workers", "100000"], needle="--workers 100000: more than",
         setup=src_ok),
    Case("shard-size-0", [*CONVERT, A, "--shard-size", "0"], needle="--shard-size 0", setup=src_ok),
    Case("shard-size-fraction", [*CONVERT, A, "--shard-size", "0.2"], needle="less than one byte", setup=src_ok),
    Case("shard-size-negative", [*CONVERT, A, "--shard-size=-1M"], needle="bad --shard-size", setup=src_ok),
    Case("shard-size-text", [*CONVERT, A, "--shard-size", "lots"], needle="valid: a number of bytes", setup=src_ok),
    Case("offset-nan", [*CONVERT, A, "--offset", "nan"], needle="finite number or auto", setup=src_ok),
    Case("offset-inf", [*CONVERT, A, "--offset=-inf"], needle="finite number or auto", setup=src_ok),
    Case("offset-text", [*CONVERT, A, "--offset", "middle"], needle="valid: a finite number or auto", setup=src_ok),
    Case("offset-not-float32", [*CONVERT, A, "--offset", "0.1"], needle="float32", setup=src_ok),
    Case("dtype-unknown", [*CONVERT, A, "--dtype", "fp8"], needle="invalid choice", setup=src_ok),
    Case("on-nonfinite-unknown", [*CONVERT, A, "--on-nonfinite", "drop"], needle="invalid choice", setup=src_ok),
    Case("out-is-a-file", ["convert", A, "--out", "{tmp}/taken", "--quiet"], needle="is a file",
         setup=both(src_ok, raw("taken", "x"))),
    Case("out-under-a-file", ["convert", A, "--out", "{tmp}/taken/sub", "--quiet"], needle="is a file",
         setup=both(src_ok, raw("taken", "x"))),
]  # fmt: skip

CONVERT_INPUTS = [
    Case("missing-path", [*CONVERT, "{tmp}/nope.npy"], needle="no such file"),
    Case("empty-folder", [*CONVERT, SRC], needle="holds no .npz or .npy", setup=lambda t: (t / "src").mkdir()),
    Case("folder-without-arrays", [*CONVERT, SRC], needle="holds no .npz", setup=raw("src/notes.txt", "hi")),
    Case("not-an-array-file", [*CONVERT, "{tmp}/src/notes.txt"], needle="not a .npz or .npy", setup=raw("src/notes.txt", "hi")),
    Case("npy-not-numpy", [*CONVERT, "{tmp}/src/x.npy"], needle="not a readable .npy", setup=raw("src/x.npy", "hello world")),
    Case("npy-empty-file", [*CONVERT, "{tmp}/src/x.npy"], needle="not a readable .npy", setup=raw("src/x.npy", b"")),
    Case("npy-object", [*CONVERT, "{tmp}/src/o.npy"], needle="dtype object",
         setup=npy("o.npy", np.array([1, "a", None], dtype=object))),
    Case("npy-truncated", [*CONVERT, "{tmp}/src/t.npy"], needle="truncated",
         setup=truncated("t.npy", np.ones((16, 16), np.float32), 0.6)),
    Case("npy-truncated-header", [*CONVERT, "{tmp}/src/t.npy"], needle="not a readable .npy",
         setup=truncated("t.npy", np.ones((16, 16), np.float32), 0.05)),
    Case("npy-huge-header", [*CONVERT, "{tmp}/src/huge.npy"], needle="promises 4000000000000 data bytes", setup=huge_header),
    Case("npy-complex", [*CONVERT, "{tmp}/src/c.npy"], needle="complex64", setup=npy("c.npy", np.ones(4, np.complex64))),
    Case("npy-bool", [*CONVERT, "{tmp}/src/b.npy"], needle="dtype bool", setup=npy("b.npy", np.ones(4, bool))),
    Case("npy-strings", [*CONVERT, "{tmp}/src/s.npy"], needle="<U3", setup=npy("s.npy", np.array(["abc", "de"]))),
    Case("npy-structured", [*CONVERT, "{tmp}/src/r.npy"], needle="cannot be stored",
         setup=npy("r.npy", np.zeros(3, dtype=[("a", "f4"), ("b", "i4")]))),
    Case("npy-datetime", [*CONVERT, "{tmp}/src/d.npy"], needle="datetime64",
         setup=npy("d.npy", np.array(["2024-01-01"], dtype="datetime64[D]"))),
    Case("npy-0d", [*CONVERT, "{tmp}/src/z.npy"], needle="0-d array", setup=npy("z.npy", np.float32(3.0))),
    Case("npy-empty-array", [*CONVERT, "{tmp}/src/e.npy"], needle="empty array", setup=npy("e.npy", np.zeros((0,), np.float32))),
    Case("npy-empty-axis", [*CONVERT, "{tmp}/src/e.npy"], needle="shape [3, 0]", setup=npy("e.npy", np.zeros((3, 0), np.float32))),
    Case("npz-truncated", [*CONVERT, "{tmp}/src/t.npz"], needle="not a readable .npz",
         setup=truncated("t.npz", {"volume": np.ones((16, 16), np.float32)}, 0.5)),
    Case("npz-not-a-zip", [*CONVERT, "{tmp}/src/x.npz"], needle="not a readable .npz", setup=raw("src/x.npz", "PK garbage")),
    Case("npz-object-array", [*CONVERT, "{tmp}/src/o.npz"], needle="dtype object",
         setup=npy("o.npz", {"volume": np.array([[1, "a"]], dtype=object)})),
    Case("npz-only-scalars", [*CONVERT, "{tmp}/src/s.npz"], needle="no array with at least one dimension",
         setup=npy("s.npz", {"slope": np.float32(1)})),
    Case("npz-no-arrays", [*CONVERT, "{tmp}/src/n.npz"], needle="members: none", setup=npy("n.npz", {})),
    Case("npz-array-key-missing", [*CONVERT, "{tmp}/src/a.npz", "--array-key", "volume"], needle="arrays: image",
         setup=npy("a.npz", {"image": np.ones((2, 2), np.float32)})),
    Case("npz-array-key-scalar", [*CONVERT, "{tmp}/src/a.npz", "--array-key", "slope"], needle="0-d array",
         setup=npy("a.npz", {"image": np.ones((2, 2), np.float32), "slope": np.float32(1)})),
    Case("npz-object-metadata", [*CONVERT, "{tmp}/src/m.npz"], needle="metadata member 'info'",
         setup=npy("m.npz", {"volume": np.ones((2, 2), np.float32), "info": np.array({"a": 1}, dtype=object)})),
    Case("npz-bytes-metadata", [*CONVERT, "{tmp}/src/m.npz"], needle="metadata member 'uid'",
         setup=npy("m.npz", {"volume": np.ones((2, 2), np.float32), "uid": np.array(b"1.2.3")})),
    Case("npz-string-slope", [*CONVERT, "{tmp}/src/m.npz"], needle="slope has dtype <U3",
         setup=npy("m.npz", {"volume": np.ones((2, 2), np.float32), "slope": np.array("two")})),
    Case("npz-nan-intercept", [*CONVERT, "{tmp}/src/m.npz"], needle="intercept is nan",
         setup=npy("m.npz", {"volume": np.ones((2, 2), np.float32), "intercept": np.float32("nan")})),
    Case("sidecar-invalid-json", [*CONVERT, A], needle="a.json: not valid JSON", setup=sidecar("{slope: 1")),
    Case("sidecar-a-list", [*CONVERT, A], needle="a JSON list, not an object", setup=sidecar("[1, 2]")),
    Case("sidecar-string-slope", [*CONVERT, A], needle="slope is 'abc'", setup=sidecar('{"slope": "abc"}')),
    Case("sidecar-null-intercept", [*CONVERT, A], needle="RescaleIntercept is None",
         setup=sidecar('{"RescaleIntercept": null}')),
    Case("sidecar-bool-slope", [*CONVERT, A], needle="slope is True", setup=sidecar('{"slope": true}')),
    Case("sidecar-nan-slope", [*CONVERT, A], needle="slope is nan", setup=sidecar('{"slope": NaN}')),
    Case("sidecar-deep-nesting", [*CONVERT, A], needle="nested too deeply", setup=sidecar("[" * 100_000)),
    Case("sidecar-over-1-mib", [*CONVERT, A], needle="a.json: more than 1 MiB of metadata",
         setup=sidecar('{"note": "' + "x" * (1 << 20) + '"}')),
    Case("sidecar-not-utf8", [*CONVERT, A], needle="not valid JSON", setup=both(src_ok, raw("src/a.json", b"\xff\xfe{"))),
    Case("sidecar-slope-beyond-float32", [*CONVERT, A], needle="slope is 1e+300, beyond the float32 range",
         setup=sidecar('{"slope": 1e300}')),
    Case("sidecar-key-twice", [*CONVERT, A], needle="a.json: key 'slope' appears twice", setup=sidecar('{"slope": 1, "slope": 2}')),
    Case("npz-intercept-beyond-float32", [*CONVERT, "{tmp}/src/m.npz"], needle="intercept is -1e+39, beyond the float32 range",
         setup=npy("m.npz", {"volume": np.ones((2, 2), np.float32), "intercept": np.float64(-1e39)})),
    Case("source-named-twice", [*CONVERT, A, A], needle="src/a.npy: given twice; valid: each source once", setup=src_ok),
    Case("source-in-its-folder-and-by-name", [*CONVERT, SRC, A], needle="a.npy: given twice", setup=src_ok),
    Case("source-linked-twice", [*CONVERT, SRC], needle="src/b.npy: the same file as", setup=both(
         src_ok, lambda t: (t / "src" / "b.npy").symlink_to(t / "src" / "a.npy"))),
    Case("source-a-fifo", [*CONVERT, "{tmp}-x/f.npy"], needle="not a .npz or .npy file", setup=in_x(fifo("f.npy"))),
]  # fmt: skip

CONVERT_OUT = [
    Case("settings-corrupt", [*CONVERT, A], needle=".convert.json: not valid JSON", setup=settings_file("{garbage")),
    Case("settings-a-list", [*CONVERT, A], needle="not a convert settings file", setup=settings_file("[]")),
    Case("settings-a-folder", [*CONVERT, A], needle="cannot read", setup=both(src_ok, lambda t: (t / "out/.convert.json").mkdir(parents=True))),
    # special files in --out: refused from fstat on a non-blocking descriptor, never waited on or read (H2)
    Case("settings-a-fifo", ["convert", A, "--out", "{tmp}-x/out", "--quiet"], needle=".convert.json: not a regular file",
         setup=in_x(fifo(".convert.json"), "out")),
    Case("settings-dev-zero", ["convert", A, "--out", "{tmp}-x/out", "--quiet"], needle=".convert.json: not a regular file",
         setup=in_x(dev_zero(".convert.json"), "out")),
    Case("settings-over-its-cap", [*CONVERT, A], needle="more than the 65,568 a settings file of 1 shards needs",
         setup=settings_file('{"codec": {}, "pad": "' + "x" * 70_000 + '"}')),
    Case("settings-key-twice", [*CONVERT, A], needle=".convert.json: key 'codec' appears twice",
         setup=settings_file('{"codec": {}, "codec": {}}')),
    # one convert per --out (H3): the second is refused before anything there is read, cleaned or written
    Case("out-being-written", [*CONVERT, A], setup=both(src_ok, lock_held),
         needle="out is being written by another convert (pid 4242); valid: wait for it, or another --out"),
    Case("lock-file-a-fifo", ["convert", A, "--out", "{tmp}-x/out", "--quiet"], needle=".convert.lock: not a regular file",
         setup=in_x(fifo(".convert.lock"), "out")),
    Case("out-holds-another-conversion", ["convert", A, "--out", "{tmp}/ds", "--quiet"], needle="different conversion",
         setup=both(src_ok, dataset)),
    Case("out-other-settings", ["convert", "{tmp}/dsrc", "--out", "{tmp}/ds", "--samples-per-shard", "2", "--dtype", "bf16", "--quiet"],
         needle="other settings (dtype)", setup=dataset),
    Case("out-garbage-shard", [*CONVERT, A], needle="unreadable shard from an earlier run",
         setup=both(src_ok, raw("out/shard-000000.tar", "not a tar"))),
    Case("out-shard-beyond-plan", ["convert", "{tmp}/dsrc", "--out", "{tmp}/ds", "--samples-per-shard", "2", "--quiet"],
         needle="beyond the 2 shards", setup=damaged(lambda ds: shutil.copy(ds / "shard-000001.tar", ds / "shard-000007.tar"))),
    Case("nan-refused-mid-run", ["convert", SRC, "--out", "{tmp}/new/deeper/out", "--samples-per-shard", "1", "--quiet"],
         needle="--on-nonfinite keep", setup=nan_second),
    Case("nan-refused-existing-out", ["convert", SRC, "--out", "{tmp}/out", "--samples-per-shard", "1", "--quiet"],
         needle="1 NaN/Inf values", setup=both(nan_second, lambda t: (t / "out").mkdir())),
    Case("overflow-refused", [*CONVERT, SRC, "--dtype", "fp16"], needle="beyond the float16 range",
         setup=both(src_ok, npy("b.npy", np.array([1.0, 1e6], np.float32)))),
    Case("tolerance-refused", [*CONVERT, A, "--max-abs-error", "0", "--max-rel-error", "0"],
         needle="no 2-byte dtype within tolerance", setup=src_ok),
    Case("int16-non-integer", [*CONVERT, A, "--dtype", "int16"], needle="int16 needs integer values", setup=src_ok),
    # 64-bit integers beyond ±2**53 have no exact float64: refused, never stored shifted (R4)
    Case("uint64-near-2**63", [*CONVERT, U], needle="uint64 values in [9223372036854775808, 9223372036854775811] go beyond ±2**53",
         setup=npy("u.npy", np.array([2**63, 2**63 + 1, 2**63 + 2, 2**63 + 3], np.uint64))),
    Case("uint64-max", [*CONVERT, U, "--dtype", "bf16"], needle="valid: integer values within ±2**53",
         setup=npy("u.npy", np.array([0, 2**64 - 1], np.uint64))),
    Case("int64-2**53+1", [*CONVERT, U], needle="int64 values in [9007199254740992, 9007199254740993]",
         setup=npy("u.npy", np.array([2**53, 2**53 + 1], np.int64))),
    Case("int64-below-minus-2**53", [*CONVERT, U, "--dtype", "int16", "--offset", "auto"], needle="go beyond ±2**53",
         setup=npy("u.npy", np.array([-(2**53) - 1, -(2**53)], np.int64))),
    Case("int64-beyond-in-a-later-sample", ["convert", SRC, "--out", "{tmp}/out", "--samples-per-shard", "1", "--quiet"],
         needle="sample 000000001", setup=both(src_ok, npy("u.npy", np.array([1, 2**62], np.int64)))),
    # the tolerances pick the dtype of --dtype auto: with a fixed dtype they would limit nothing
    Case("max-abs-error-with-fixed-dtype", [*CONVERT, A, "--dtype", "fp16", "--max-abs-error", "0.5"],
         needle="--max-abs-error 0.5 with --dtype fp16", setup=src_ok),
    Case("max-rel-error-with-fixed-dtype", [*CONVERT, A, "--dtype", "bf16", "--max-rel-error", "0.01"],
         needle="valid: --dtype auto with --max-rel-error, or --dtype bf16 without it", setup=src_ok),
]  # fmt: skip

VERIFY = ["verify-shards", "{tmp}/ds", "--quiet"]
NO_SHARDS = [
    ("missing-folder", None, "no such folder"),
    ("a-file", raw("ds", "x"), "a file, not a folder"),
    ("empty-folder", lambda t: (t / "ds").mkdir(), "no shards in"),
    ("garbage-folder", both(raw("ds/a.txt", "hello"), raw("ds/b.bin", os.urandom(300))), "no shards in"),
    ("garbage-manifest-only", raw("ds/manifest.json", os.urandom(200)), "not a shard folder"),
    ("manifest-without-shards-only", raw("ds/manifest.json", '{"format": "ampkit-shards/1"}'), "shards is NoneType"),
    ("foreign-manifest-only", raw("ds/manifest.json", '{"format": "other/2", "shards": []}'), "expected 'ampkit-shards/1'"),
    ("manifest-listing-none", raw("ds/manifest.json", '{"format": "ampkit-shards/1", "shards": []}'), "lists none"),
    ("deep-manifest-only", raw("ds/manifest.json", "[" * 100_000), "nested too deeply"),
    ("unfinished-shard-only", raw("ds/.shard-000000.tar.tmp", b"\0" * 1024), "no shards in"),
]  # fmt: skip
NO_SHARD_CASES = [
    Case(f"{cmd}-{name}", [cmd, "{tmp}/ds"], needle=needle, setup=setup)
    for cmd in ("verify-shards", "inspect")
    for name, setup, needle in NO_SHARDS
]


def _drop_shards(m: dict[str, Any]) -> None:
    del m["shards"]


def _samples_str(m: dict[str, Any]) -> None:
    m["shards"][0]["samples"] = "x"


def _samples_ints(m: dict[str, Any]) -> None:
    m["shards"][1]["samples"] = [1, 2]


def _huge_bin(m: dict[str, Any]) -> None:
    m["shards"][0]["samples"][0]["bin"] = [0, 10**15]


def _huge_json(m: dict[str, Any]) -> None:
    m["shards"][0]["samples"][1]["json"] = [10**12, 10**12]


def _negative_span(m: dict[str, Any]) -> None:
    m["shards"][0]["samples"][0]["bin"] = [-512, 32]


def _traversal(m: dict[str, Any]) -> None:
    m["shards"][0]["name"] = "../../etc/passwd"


def _count_lies(m: dict[str, Any]) -> None:
    m["shards"][0]["count"] = 10**9


DAMAGED = [  # (name, setup, problems verify-shards reports, needle; inspect refuses with exit 2)
    ("manifest-without-shards", manifest_edit(_drop_shards), 1, "manifest.json: shards is NoneType"),
    ("samples-a-string", manifest_edit(_samples_str), 1, "shards[0].samples is str"),
    ("samples-ints", manifest_edit(_samples_ints), 1, "shards[1].samples[0] is int"),
    ("negative-span", manifest_edit(_negative_span), 1, "not a non-negative integer"),
    ("path-traversal", manifest_edit(_traversal), 1, "not a shard-NNNNNN.tar name"),
    ("count-lies", manifest_edit(_count_lies), 1, "but 2 samples are listed"),
    ("manifest-a-list", manifest_edit(lambda m: [m]), 1, "manifest.json: format None"),
    ("manifest-deep", damaged(lambda ds: (ds / "manifest.json").write_text("[" * 100_000)), 1, "nested too deeply"),
    ("huge-bin-span", manifest_edit(_huge_bin), 2, "ends past the end of the file"),
    ("huge-json-span", manifest_edit(_huge_json), 2, "ends past the end of the file"),
    ("truncated-tar-padding", damaged(cut("shard-000001.tar", 5120)), 2, "10240"),
    ("truncated-tar-index", damaged(cut("shard-000001.tar", 4700)), 3, "tar structure unreadable"),
    ("truncated-tar-in-samples", damaged(cut("shard-000001.tar", 1500)), 5, "truncated"),
    ("empty-shard", damaged(cut("shard-000000.tar", 0)), 5, "0 bytes"),
    ("shard-missing", damaged(lambda ds: (ds / "shard-000001.tar").unlink()), 1, "missing"),
    ("flipped-byte", damaged(flip), 2, "sha256"),
    ("no-manifest-truncated", damaged(lambda ds: (cut("shard-000000.tar", 3000)(ds), (ds / "manifest.json").unlink())), 2,
     "index unreadable"),
    ("sample-huge-shape", forged_sample(_set("shape", [10**9, 10**9])), 1, "holds more than 2**48 values"),
    ("sample-shape-text", forged_sample(_set("shape", "abc")), 1, "shape is str"),
    ("sample-dtype-unknown", forged_sample(_set("dtype", "float8")), 1, "float8"),
    # per-sample metadata: one check (schema.checked_sample) for inspect and verify-shards (R12)
    ("sample-offset-beyond-float32", forged_sample(_set("offset", 1e308)), 1, "offset is 1e+308, beyond the float32 range"),
    ("sample-error-a-string", forged_sample(_set("error", "x")), 1, "error is str, not an object"),
    ("sample-error-negative", forged_sample(_error(-1.0)), 1, "error.max_abs is -1.0, not an error"),
    ("sample-error-null", forged_sample(_error(None)), 1, "error.max_abs is None"),
    ("sample-source-dtype-object", forged_sample(_set("source_dtype", "object")), 1, "'object', not a numeric dtype"),
    ("sample-choice-missing", forged_sample(lambda m: m.pop("choice")), 1, "choice is NoneType"),
    ("sample-key-other", forged_sample(_set("key", "999999999")), 1, "names key '999999999'"),
    ("sample-key-traversal", forged_sample(_set("key", "../../x")), 1, "names key '../../x'"),
    ("sample-range-null", forged_sample(_set("range", None)), 1, "range is None, not [min, max]"),
    ("sample-range-reversed", forged_sample(_set("range", [5.0, 1.0])), 1, "min above max"),
    ("sample-range-nan", forged_sample(_set("range", [float("nan"), 1.0])), 1, "range[0] is nan"),
    ("manifest-lists-none-beside-shards", manifest_edit(_list_no_shards), 2, "not listed"),
    ("manifest-over-its-cap", damaged(padded_manifest), 1, "bytes, more than the 1,0"),
    ("manifest-key-twice", damaged(manifest_key_twice), 1, "manifest.json: key 'format' appears twice"),
    ("sample-slope-beyond-float32", forged_sample(_set("slope", 1e300)), 1, "slope is 1e+300, beyond the float32 range"),
    ("sample-intercept-beyond-float32", forged_sample(_set("intercept", -1e39)), 1, "intercept is -1e+39, beyond"),
    ("sample-dim-beyond-2**48", forged_sample(_set("shape", [0, 10**30])), 1, "shape[1] is 1000000000000000000000000000000, more than 2**48"),
    ("sample-dtype-twice", forged_sample(lambda m: None, raw=lambda t: t[:-1] + b', "dtype": "int16"}'), 1,
     "key 'dtype' appears twice in one object"),
    ("sample-nonfinite-negative", forged_sample(_set("nonfinite", -3)), 1, "nonfinite is -3"),
    ("shard-not-in-manifest", damaged(lambda ds: shutil.copy(ds / "shard-000001.tar", ds / "shard-000002.tar")), 1,
     "not listed"),
]  # fmt: skip

VERIFY_FINDINGS = [
    Case(f"verify-shards-{name}", VERIFY, code=1, needle=needle, setup=setup, lines=n) for name, setup, n, needle in DAMAGED
] + [
    Case("verify-shards-no-manifest", VERIFY, code=1, needle="manifest.json: missing",
         setup=damaged(lambda ds: (ds / "manifest.json").unlink())),
    Case("verify-shards-manifest-a-folder", VERIFY, code=1, needle="manifest.json: a folder, not a file",
         setup=damaged(lambda ds: ((ds / "manifest.json").unlink(), (ds / "manifest.json").mkdir()))),
    Case("verify-shards-unlisted-shard", VERIFY, code=1, needle="not listed",
         setup=damaged(lambda ds: shutil.copy(ds / "shard-000001.tar", ds / "shard-000002.tar"))),
    Case("verify-shards-unfinished-shard", VERIFY, code=1, needle="interrupted convert",
         setup=damaged(lambda ds: (ds / ".shard-000002.tar.tmp").write_bytes(b"\0" * 100))),
    # valid metadata, data that decodes beyond float32: one finding, no numpy warning line
    Case("verify-shards-decodes-to-inf", VERIFY, code=1, needle="decodes to Inf: stored values + offset 3e+38",
         setup=forged_sample(_bf16_near_max, _BF16_3E38)),
]  # fmt: skip

SPECIAL = [  # (name, change of {tmp}-x/ds, needle): a FIFO or device where a file is read (H2)
    ("manifest-a-fifo", fifo("manifest.json"), "manifest.json: not a regular file"),
    ("manifest-dev-zero", dev_zero("manifest.json"), "manifest.json: not a regular file"),
    ("listed-shard-a-fifo", listed_fifo, "shard-000002.tar: not a regular file"),
]
SPECIAL_FILES = [
    Case(f"{cmd}-{name}", [cmd, "{tmp}-x/ds"], code=code, needle=needle, setup=beside(change))
    for cmd, code in (("inspect", 2), ("verify-shards", 1))
    for name, change, needle in SPECIAL
]

INSPECT_REFUSALS = [
    Case(f"inspect-{name}", ["inspect", "{tmp}/ds"], needle="verify-shards", setup=setup)
    for name, setup, _, _ in DAMAGED
    if name not in ("flipped-byte",)  # a flipped data byte leaves the metadata readable: inspect summarises
]


@pytest.mark.parametrize(
    "case",
    params(
        CONVERT_FLAGS
        + CONVERT_INPUTS
        + CONVERT_OUT
        + NO_SHARD_CASES
        + VERIFY_FINDINGS
        + INSPECT_REFUSALS
        + SPECIAL_FILES
    ),
)
def test_hostile_data(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        err = run_case(case, tmp_path, capsys, monkeypatch)
    finally:
        while _HELD:
            os.close(_HELD.pop())
    if case.argv[0] in ("inspect", "verify-shards"):  # no stray numpy line ("overflow encountered in cast")
        assert "warning" not in err.lower(), err
    if case.code == 2:
        assert err.startswith(f"ampkit {case.argv[0]}: error: "), err


def test_row_count() -> None:
    rows = CONVERT_FLAGS + CONVERT_INPUTS + CONVERT_OUT + NO_SHARD_CASES + VERIFY_FINDINGS + INSPECT_REFUSALS
    rows += SPECIAL_FILES
    assert len(rows) >= 50 and len({r.id for r in rows}) == len(rows)


# --- a refused convert leaves --out as it found it; the advised fix is then accepted ---------------


def _nan_sources(src: Path) -> None:
    src.mkdir()
    np.save(src / "a.npy", np.ones((4, 4), np.float32))
    np.save(src / "b.npy", np.array([[1.0, np.nan], [2.0, 3.0]], np.float32))
    np.save(src / "c.npy", np.full((3, 3), 7.5, np.float32))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_refused_convert_leaves_out_as_found_then_the_advised_fix_is_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    _nan_sources(tmp_path / "src")
    out = tmp_path / "new" / "out"
    argv = [
        "convert",
        str(tmp_path / "src"),
        "--out",
        str(out),
        "--samples-per-shard",
        "1",
        "--workers",
        workers,
        "--quiet",
    ]
    assert main(argv) == 2  # shard 0 (a.npy) was complete when b.npy was refused: it is removed again
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "b.npy): 1 NaN/Inf values" in err[0] and "--on-nonfinite keep" in err[0]
    assert not (tmp_path / "new").exists()  # no folder, no .convert.json, no shard, no temporary
    out.mkdir(parents=True)
    assert main(argv) == 2
    assert list(out.iterdir()) == []  # an existing folder stays, empty
    capsys.readouterr()
    assert main([*argv, "--on-nonfinite", "keep"]) == 0  # the fix the message advised, not "other settings"
    assert "converted 3 samples into 3 shards" in capsys.readouterr().out
    assert load_manifest(out)["total_samples"] == 3 and main(["verify-shards", str(out), "--quiet"]) == 0


def test_refused_resume_keeps_the_earlier_runs_shards_and_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    _nan_sources(src)
    (src / "b.npy").unlink()
    np.save(src / "b.npy", np.zeros((2, 2), np.float32))
    argv = ["convert", str(src), "--out", str(out), "--samples-per-shard", "1", "--quiet"]
    original = ShardWriter.add

    def interrupted(self: ShardWriter, *args: Any) -> None:
        if self.name == "shard-000001.tar":
            raise KeyboardInterrupt
        original(self, *args)

    monkeypatch.setattr(ShardWriter, "add", interrupted)
    assert main(argv) == 130  # an interrupted run: shard 0 complete, the resume state kept
    monkeypatch.setattr(ShardWriter, "add", original)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"shard-000000.tar", ".convert.json"}
    np.save(src / "b.npy", np.array([np.inf, 1.0], np.float32))  # the rest of the data turns bad
    capsys.readouterr()
    assert main(argv) == 2
    assert "--on-nonfinite keep" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# --- a full disk: one line, exit 1, no temporary, earlier shards kept, the same command resumes ---


class _FullDisk:
    """A file whose writes fail with ENOSPC once ``room`` bytes are written (a partial write first)."""

    def __init__(self, real: Any, room: int) -> None:
        self.real, self.room = real, room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            self.real.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return int(self.real.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class _OsWithFullDisk:
    """``os`` whose ``fsync`` fails with ENOSPC from call ``fail_at`` on (counting from 0)."""

    def __init__(self, fail_at: int) -> None:
        self.calls, self.fail_at = 0, fail_at

    def fsync(self, fd: int) -> None:
        self.calls += 1
        if self.calls > self.fail_at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.fsync(fd)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


@pytest.fixture
def six_sources(tmp_path: Path) -> tuple[list[str], Path]:
    """Six small arrays, converted 2 per shard into ``ref`` (3 shards): the uninterrupted reference."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        np.save(src / f"v{i}.npy", np.random.default_rng(i).normal(size=(8, 8)).astype(np.float32))
    args = ["convert", str(src), "--samples-per-shard", "2", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "ref")]) == 0
    return args, tmp_path / "ref"


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_disk_full_during_convert_keeps_complete_shards_and_resumes_identically(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    six_sources: tuple[list[str], Path],
    where: str,
) -> None:
    args, ref = six_sources
    out = tmp_path / "out"
    if where == "write":  # the third shard's writes fail part-way
        original = ShardWriter.__init__

        def full_disk(self: ShardWriter, directory: Path, number: int) -> None:
            original(self, directory, number)
            if number == 2:
                self._tar.fileobj = _FullDisk(self._fh, 700)

        monkeypatch.setattr(ShardWriter, "__init__", full_disk)
    else:  # the third shard's fsync fails (shards 0 and 1 are fsynced first)
        monkeypatch.setattr(shardwriter, "os", _OsWithFullDisk(fail_at=2))
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "rerun the same command" in err[0], err
    assert sorted(p.name for p in out.iterdir()) == [".convert.json", "shard-000000.tar", "shard-000001.tar"]
    for name in ("shard-000000.tar", "shard-000001.tar"):
        assert (out / name).read_bytes() == (ref / name).read_bytes()
    monkeypatch.undo()  # space freed: the same command resumes to the uninterrupted result
    assert main([*args, "--out", str(out)]) == 0
    assert "wrote 1, kept 2 from an earlier run" in capsys.readouterr().out
    assert load_manifest(out) == load_manifest(ref)
    assert [p.read_bytes() for p in shard_paths(out)] == [p.read_bytes() for p in shard_paths(ref)]


def test_disk_full_writing_the_manifest_keeps_the_old_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, six_sources: tuple[list[str], Path]
) -> None:
    from ampkit import fsutil

    args, ref = six_sources
    old = (ref / "manifest.json").read_text().replace('"total_samples": 6', '"total_samples": 6 ')
    (ref / "manifest.json").write_text(old)  # differs from what a rerun writes, by one space
    monkeypatch.setattr(fsutil, "os", _OsWithFullDisk(fail_at=0))
    capsys.readouterr()
    assert main([*args, "--out", str(ref)]) == 1  # every shard kept; only the manifest is rewritten
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert (ref / "manifest.json").read_text() == old
    assert not [p.name for p in ref.iterdir() if p.name.endswith(".tmp")]


def test_verify_shards_help_documents_its_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["verify-shards", "--help"])
    text = capsys.readouterr().out
    assert "1  DIR is a shard folder and something in it is damaged" in text
    assert "2  there is nothing to verify" in text


# --- integer sources: exact when claimed, honest figures otherwise (R4) --------------------------


def _convert_one(tmp: Path, array: np.ndarray, *flags: str) -> tuple[np.ndarray, dict[str, Any]]:
    """``ampkit convert`` of one array (in-process); ``(decoded float32 values, sample JSON)``."""
    from ampkit.data.format import decode_array, read_index, read_sample

    np.save(tmp / "x.npy", array)
    assert main(["convert", str(tmp / "x.npy"), "--out", str(tmp / "out"), "--quiet", *flags]) == 0
    shard = tmp / "out" / "shard-000000.tar"
    bin_bytes, meta = read_sample(shard, read_index(shard)["samples"][0])
    return decode_array(bin_bytes, meta), meta


def _true_max_abs(decoded: np.ndarray, array: np.ndarray) -> int:
    """max |decoded - source| in exact integers (decoded float32 values are integers here)."""
    return max(abs(int(d) - int(v)) for d, v in zip(decoded.reshape(-1).tolist(), array.reshape(-1).tolist()))


@pytest.mark.parametrize(
    "array",
    [
        np.array([16_000_000, 16_060_000, 16_030_001, 16_000_007], np.int64),  # int16 + offset, < 2**24
        np.array([-(2**31), -(2**31) + 256 * 255, -(2**31) + 512], np.int64),  # float32 values
        np.array([0, 1, 4096, 65535], np.uint64),
        np.array([-1024, 3071, 7], np.int64),
    ],
    ids=["int64-near-2**24", "int64-near-minus-2**31", "uint64-16-bit-span", "int64-hu"],
)
def test_int64_in_range_is_exact_and_round_trips_bit_for_bit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], array: np.ndarray
) -> None:
    decoded, meta = _convert_one(tmp_path, array)
    assert meta["dtype"] == "int16" and "int16 is exact" in meta["choice"]["reason"], meta
    assert meta["error"]["max_abs"] == 0.0 and _true_max_abs(decoded, array) == 0
    assert np.array_equal(decoded.astype(np.int64), array.astype(np.int64))
    assert float(np.float32(meta["offset"])) == meta["offset"], "the offset is not float32-exact"


@pytest.mark.parametrize(
    ("array", "flags"),
    [
        (np.array([2**40, 2**40 + 37, 2**40 + 1], np.int64), ()),
        (np.array([2**53, 2**53 - 5], np.int64), ()),
        (np.array([2**30 + 1, 2**30 + 1001, 2**30 + 77], np.int64), ("--dtype", "int16", "--offset", "auto")),
        (np.array([2.0**63, 2.0**63 + 2048], np.float64), ()),
    ],
    ids=["int64-2**40-auto", "int64-2**53-auto", "int64-2**30-int16-offset-auto", "float64-2**63-auto"],
)
def test_large_integers_are_never_claimed_exact_when_a_reader_gets_other_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], array: np.ndarray, flags: tuple[str, ...]
) -> None:
    """Values a float32 decode cannot hold: no "exact" claim, and the recorded error is the true one."""
    decoded, meta = _convert_one(tmp_path, array, *flags)
    true = _true_max_abs(decoded, array)
    assert true > 0, "the test data should not be float32-exact"
    assert "exact" not in meta["choice"]["reason"], meta["choice"]
    assert meta["error"]["max_abs"] == true
    assert float(np.float32(meta["offset"])) == meta["offset"], "the offset is not float32-exact"


def test_max_abs_error_is_honoured_by_dtype_auto(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Values in [700, 790) with fractions: fp16 (spacing 0.5 there) errs up to 0.25, so it is taken
    under ``--max-abs-error 0.5`` and refused under 0.01, where bf16 is chosen and the reason says why."""
    array = (700 + np.arange(64, dtype=np.float32) * 1.37).astype(np.float32)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, loose = _convert_one(tmp_path / "a", array, "--max-abs-error", "0.5")
    assert loose["dtype"] == "float16" and 0.01 < loose["error"]["max_abs"] <= 0.5, loose
    _, tight = _convert_one(tmp_path / "b", array, "--max-abs-error", "0.01")
    assert tight["dtype"] == "bfloat16" and "fp16 max abs error" in tight["choice"]["reason"], tight

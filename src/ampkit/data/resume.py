"""``convert``'s output folder: what an earlier run left there, what this run may do, and undoing a refusal.

:func:`open_out` first takes the folder's lock (:mod:`ampkit.data.outlock`: one convert per
``--out``), then decides from what is on disk alone (reading only): ``--out`` is a folder or can
become one, its complete shards belong to this conversion's plan (kept and skipped, unless their
sources changed since: :mod:`ampkit.data.stamps`; those are written again), and ``.convert.json``
records the same settings. Every file there is opened without ever blocking and read up to what a
genuine one can need (:mod:`ampkit.data.limits`). A run refused later, by a sample (NaN,
overflow, tolerance), is undone by :func:`undo`: the shards, settings file and folders it made are
removed, so the advised fix is accepted on the next run.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..fsutil import FileTooLarge, read_limited, remove_stale_temps, write_atomic
from .format import MANIFEST_NAME, TMP_RE, dumps, open_shard, read_index, read_member, sample_key, shard_paths
from .limits import settings_limit
from .outlock import OutLock
from .schema import SHARD_RE, parse_json
from .sources import Source
from .stamps import STAMPS_KEY, plan_stamps, recorded

SETTINGS_NAME = ".convert.json"
"""Hidden file in the output folder holding the settings a resumed run must match, and source stamps."""
_VALID_OUT = "a folder (created if missing)"
_VALID_SETTINGS = "remove it (it records the settings of an earlier convert) or use an empty --out"


@dataclass
class OutState:
    """What :func:`open_out` found in ``--out`` and what the run will change there."""

    out: Path
    """The output folder."""
    lock: OutLock
    """This run's hold on ``out``, released by :func:`finish`, :func:`undo` or :func:`release`."""
    done: set[int]
    """Shard numbers complete from an earlier run, their sources unchanged (kept)."""
    stale: set[int]
    """Shard numbers complete from an earlier run whose sources changed since (written again)."""
    settings: bytes
    """``.convert.json`` while the run goes on: the stale shards' stamps left out (not trusted)."""
    final: bytes
    """``.convert.json`` once every shard is written: every shard's stamp."""
    settings_before: bytes | None
    """``.convert.json`` as found (None: there was none)."""
    written: list[Path] = field(default_factory=list)
    """Shards this run completed (filled in while it runs)."""


def _missing_folders(out: Path) -> list[Path]:
    """Refuse an ``out`` that is, or lies under, a file; the folders that creating it makes, deepest first."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, not a folder; valid: {_VALID_OUT}")
    missing: list[Path] = []
    probe = out.absolute()
    while not probe.exists() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"--out {out}: {probe} is a file, not a folder; valid: {_VALID_OUT}")
    return missing


def _read_settings(out: Path, shards: int) -> tuple[bytes | None, dict[str, Any] | None]:
    """``(bytes, parsed)`` of ``DIR/.convert.json``, ``(None, None)`` when there is none; refused when
    it is no regular file, larger than a conversion of ``shards`` shards needs, or no settings file."""
    path = out / SETTINGS_NAME
    limit = settings_limit(shards)
    try:
        data = read_limited(path, limit)
        before = parse_json(data, str(path))
    except FileNotFoundError:
        return None, None
    except FileTooLarge as err:
        raise UsageError(
            f"{path}: {err.size:,} bytes, more than the {limit:,} a settings file of {shards} shards needs; "
            f"valid: {_VALID_SETTINGS}"
        ) from None
    except OSError as err:  # a FIFO or device (EINVAL) is never read
        what = err.strerror if err.errno == errno.EINVAL else f"cannot read ({err.strerror or err})"
        raise UsageError(f"{path}: {what}; valid: {_VALID_SETTINGS}") from None
    except ValueError as err:
        raise UsageError(f"{err}; valid: {_VALID_SETTINGS}") from None
    if not isinstance(before, dict) or not isinstance(before.get("codec"), dict):
        raise UsageError(f"{path}: not a convert settings file; valid: {_VALID_SETTINGS}")
    return data, before


def _check_settings(out: Path, settings: dict[str, Any], before: dict[str, Any], has_shards: bool) -> None:
    """Refuse a rerun whose settings differ from ``DIR/.convert.json`` while shards made with them remain.

    Without this, resuming with another ``--dtype`` (say) would keep shards made the old way next
    to new ones. A settings file with no complete shard to protect (a run interrupted before its
    first shard) is replaced.
    """
    if not has_shards or {k: v for k, v in before.items() if k != STAMPS_KEY} == settings:
        return
    codec = settings["codec"]
    changed = sorted(k for k in {**before["codec"], **codec} if before["codec"].get(k) != codec.get(k))
    changed += [k for k in ("shard_size", "samples_per_shard") if before.get(k) != settings[k]]
    raise UsageError(
        f"{out} was written with other settings ({', '.join(changed)}); rerun with the "
        "same options to resume, or use an empty --out"
    )


def _complete_shards(out: Path, plan: list[list[int]], sources: list[Source]) -> set[int]:
    """Numbers of the complete shards that fit the plan; raises when ``out`` holds shards of another conversion."""
    done: set[int] = set()
    for path in shard_paths(out):
        match = SHARD_RE.match(path.name)
        assert match is not None
        number = int(match.group(1))
        if number >= len(plan):
            raise UsageError(
                f"{out} holds {path.name}, beyond the {len(plan)} shards of this conversion; "
                "use an empty --out"
            )
        members = plan[number]
        try:
            index = read_index(path)
            with open_shard(path) as fh:
                first = parse_json(read_member(fh, index["samples"][0]["json"]), path.name)
        except (OSError, ValueError, IndexError) as err:
            raise UsageError(
                f"{path}: unreadable shard from an earlier run ({err}); remove it or use a new --out"
            ) from None
        keys = [e["key"] for e in index["samples"]]
        source = first.get("source") if isinstance(first, dict) else None
        if keys != [sample_key(i) for i in members] or source != sources[members[0]].path:
            raise UsageError(f"{out} holds {path.name} from a different conversion; use an empty --out")
        done.add(number)
    return done


def open_out(out: Path, plan: list[list[int]], sources: list[Source], settings: dict[str, Any]) -> OutState:
    """Take ``out``'s lock (creating the folder), then check it against this conversion (reading only).

    A refusal (another convert holds it, shards of another conversion, other settings) is a
    :class:`UsageError` and leaves ``out`` as it was found: the lock file and the folders made for
    it are removed again.
    """
    lock = OutLock(out, _missing_folders(out))
    lock.acquire()
    try:
        complete = _complete_shards(out, plan, sources)
        data, before = _read_settings(out, len(plan))
        if before is not None:
            _check_settings(out, settings, before, bool(complete))
        current = plan_stamps(sources, plan)
        kept = recorded(before, len(plan))
        stale = {n for n in complete if kept[n] != current[n]}
        during = [None if n in stale else s for n, s in enumerate(current)]
    except BaseException:
        lock.close(failed=True)
        raise
    return OutState(
        out,
        lock,
        complete - stale,
        stale,
        dumps({**settings, STAMPS_KEY: during}),
        dumps({**settings, STAMPS_KEY: current}),
        data,
    )


def begin(state: OutState) -> int:
    """Remove what a killed run left unfinished and record the settings; returns the number of
    unfinished shards removed."""
    orphans = [p for p in state.out.iterdir() if TMP_RE.match(p.name)]
    for p in orphans:
        p.unlink()
    for name in (MANIFEST_NAME, SETTINGS_NAME):
        remove_stale_temps(state.out, name)
        (state.out / f".{name}.tmp").unlink(missing_ok=True)  # the temporary name of earlier versions
    if state.settings != state.settings_before:
        write_atomic(state.out / SETTINGS_NAME, state.settings)
    return len(orphans)


def finish(state: OutState) -> None:
    """Every shard written: record every shard's source stamp, then release ``out``."""
    try:
        if state.final != state.settings:
            write_atomic(state.out / SETTINGS_NAME, state.final)
    finally:
        state.lock.close()


def release(state: OutState) -> None:
    """Release ``out`` after a failure that keeps the complete shards for a resume (full disk, interrupt)."""
    state.lock.close()


def undo(state: OutState) -> None:
    """Leave ``out`` as the refused run found it: its shards, settings and new folders removed."""
    try:
        for path in state.written:
            path.unlink(missing_ok=True)
        settings = state.out / SETTINGS_NAME
        if state.settings_before is None:
            settings.unlink(missing_ok=True)
            return
        try:
            now: bytes | None = read_limited(settings, len(state.settings_before) + len(state.final))
        except (OSError, ValueError):
            now = None
        if now != state.settings_before:
            write_atomic(settings, state.settings_before)
    finally:
        state.lock.close(failed=True)

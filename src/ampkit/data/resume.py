"""``convert``'s output folder: what an earlier run left there, what this run may do, and undoing a refusal.

Before the first write, :func:`inspect_out` decides from what is on disk alone (reading only):
``--out`` is a folder or can become one, its complete shards belong to this conversion's plan
(they are kept and skipped), and ``.convert.json`` records the same settings. A run refused
later, by a sample (NaN, overflow, tolerance), is undone by :func:`undo`: the shards, settings
file and folders it made are removed, so the advised fix is accepted on the next run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..fsutil import remove_stale_temps, write_atomic
from .format import MANIFEST_NAME, TMP_RE, dumps, read_index, read_member, sample_key, shard_paths
from .schema import SHARD_RE, parse_json
from .sources import Source

SETTINGS_NAME = ".convert.json"
"""Hidden file in the output folder holding the settings a resumed run must match."""
_VALID_OUT = "a folder (created if missing)"


@dataclass
class OutState:
    """What :func:`inspect_out` found in ``--out`` and what the run will change there."""

    out: Path
    """The output folder."""
    done: set[int]
    """Shard numbers complete from an earlier run (kept)."""
    settings: bytes | None
    """Settings to write to ``.convert.json``; None when it already holds them."""
    settings_before: bytes | None
    """``.convert.json`` as found (None: there was none)."""
    made: list[Path] = field(default_factory=list)
    """Folders ``mkdir`` creates for ``out``, deepest first."""
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


def _check_settings(out: Path, settings: dict[str, Any], has_shards: bool) -> bytes | None:
    """Refuse a rerun whose settings differ from ``DIR/.convert.json``; the bytes to write, or None.

    Without this, resuming with another ``--dtype`` (say) would keep shards made the old way next
    to new ones. A settings file with no complete shard to protect (a run interrupted before its
    first shard) is replaced; a file that is not a convert settings file is refused.
    """
    path = out / SETTINGS_NAME
    wanted = dumps(settings)
    if not path.exists():
        return wanted
    valid = "remove it (it records the settings of an earlier convert) or use an empty --out"
    try:
        before = parse_json(path.read_bytes(), str(path))
    except OSError as err:
        raise UsageError(f"{path}: cannot read ({err.strerror or err}); valid: {valid}") from None
    except ValueError as err:
        raise UsageError(f"{err}; valid: {valid}") from None
    if not isinstance(before, dict) or not isinstance(before.get("codec"), dict):
        raise UsageError(f"{path}: not a convert settings file; valid: {valid}")
    if before == json.loads(wanted):
        return None
    if not has_shards:
        return wanted
    codec = settings["codec"]
    changed = sorted(k for k in {**before["codec"], **codec} if before["codec"].get(k) != codec.get(k))
    changed += [k for k in ("shard_size", "samples_per_shard") if before.get(k) != settings[k]]
    raise UsageError(
        f"{out} was written with other settings ({', '.join(changed)}); rerun with the "
        "same options to resume, or use an empty --out"
    )


def _complete_shards(out: Path, plan: list[list[int]], sources: list[Source]) -> set[int]:
    """Shard numbers already complete; raises when ``out`` holds shards of another conversion."""
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
            with open(path, "rb") as fh:
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


def inspect_out(
    out: Path, plan: list[list[int]], sources: list[Source], settings: dict[str, Any]
) -> OutState:
    """Check ``out`` against this conversion (reads only; a refusal is a :class:`UsageError`)."""
    made = _missing_folders(out)
    done = _complete_shards(out, plan, sources) if out.is_dir() else set()
    path = out / SETTINGS_NAME
    before = path.read_bytes() if path.is_file() else None
    return OutState(out, done, _check_settings(out, settings, bool(done)), before, made)


def begin(state: OutState) -> int:
    """Create ``out``, remove what a killed run left unfinished, record the settings; returns the
    number of unfinished shards removed."""
    state.out.mkdir(parents=True, exist_ok=True)
    orphans = [p for p in state.out.iterdir() if TMP_RE.match(p.name)]
    for p in orphans:
        p.unlink()
    for name in (MANIFEST_NAME, SETTINGS_NAME):
        remove_stale_temps(state.out, name)
        (state.out / f".{name}.tmp").unlink(missing_ok=True)  # the temporary name of earlier versions
    if state.settings is not None:
        write_atomic(state.out / SETTINGS_NAME, state.settings)
    return len(orphans)


def undo(state: OutState) -> None:
    """Leave ``out`` as the refused run found it: its shards, settings and new folders removed."""
    for path in state.written:
        path.unlink(missing_ok=True)
    settings = state.out / SETTINGS_NAME
    if state.settings_before is None:
        settings.unlink(missing_ok=True)
    elif settings.is_file() and settings.read_bytes() != state.settings_before:
        write_atomic(settings, state.settings_before)
    for folder in state.made:  # deepest first; a folder someone else filled meanwhile stays
        try:
            folder.rmdir()
        except OSError:
            break

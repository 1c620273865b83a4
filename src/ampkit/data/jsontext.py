"""Parsing JSON that comes from a shard folder, a sidecar or ``--out``: every failure a named ValueError.

``json.loads`` keeps the last of two equal keys in one object without a word, so a sample JSON
naming ``"dtype"`` twice could be checked on one value and decoded with the other (float16 data
read as int16, say). :func:`parse_json` refuses such an object, names the key, and turns every
other failure (bad UTF-8, bad syntax, absurd nesting) into a ``ValueError`` naming the file.
"""

from __future__ import annotations

import json
from typing import Any


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(f"key {key!r} appears twice in one object")
            seen.add(key)
    return found


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)
"""Built once: ``json.loads(..., object_pairs_hook=...)`` would build a decoder on every call."""


def parse_json(data: bytes | str, what: str) -> Any:
    """``json.loads`` whose every failure (bad UTF-8, bad syntax, a key given twice in one object,
    absurd nesting) is a ValueError naming ``what``."""
    try:
        if isinstance(data, str):
            if data.startswith("\ufeff"):  # as json.loads: a BOM in text is an error, in bytes it is skipped
                raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
            text = data
        else:
            text = data.decode(json.detect_encoding(data), "surrogatepass")
        return _DECODER.decode(text)
    except RecursionError:
        raise ValueError(f"{what}: JSON nested too deeply") from None
    except _DuplicateKey as err:
        raise ValueError(f"{what}: {err}") from None
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{what}: not valid JSON ({err})") from None

"""Print an :class:`~ampkit.integrations.exporters.Export` as text, JSON or YAML.

YAML is written by a small emitter instead of PyYAML, which is not an ampkit dependency. Every
string is double-quoted: YAML 1.1 readers (PyYAML, hence ``accelerate``) read a bare ``no`` as
``False``, which would turn Accelerate's ``mixed_precision: no`` into a boolean.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .exporters import Export

FORMATS: tuple[str, ...] = ("text", "json", "yaml")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")  # matched whole: a key ending in "\n" is quoted
#: Words YAML 1.1 reads as booleans or null, so they are quoted even as keys.
_YAML11_WORDS = {"y", "yes", "n", "no", "true", "false", "on", "off", "null"}


def _scalar(value: Any) -> str:
    """One YAML scalar; JSON's spelling is valid YAML for all of these."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return json.dumps(value)
    raise TypeError(f"cannot write {type(value).__name__} as a YAML scalar")


def to_yaml(data: Any, indent: int = 0) -> str:
    """Block-style YAML for nested dicts and lists of scalars/dicts (what exports contain)."""
    pad = " " * indent
    if isinstance(data, dict):
        if not data:
            return pad + "{}\n"
        out = []
        for key, value in data.items():
            plain = _PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML11_WORDS
            name = key if plain else json.dumps(key)
            if isinstance(value, (dict, list)) and value:
                out.append(f"{pad}{name}:\n{to_yaml(value, indent + 2)}")
            else:
                out.append(f"{pad}{name}: {to_yaml(value).strip()}\n")
        return "".join(out)
    if isinstance(data, list):
        if not data:
            return pad + "[]\n"
        out = []
        for item in data:
            body = to_yaml(item, indent + 2)
            out.append(f"{pad}- {body.lstrip()}")
        return "".join(out)
    if isinstance(data, str) and "\n" in data:
        lines = "".join(f"{pad}  {line}\n" for line in data.splitlines())
        return f"{pad}|-\n{lines}"
    return pad + _scalar(data) + "\n"


#: Frameworks whose config is JSON (DeepSpeed's ds_config.json, HfArgumentParser.parse_json_file,
#: a serialized Keras policy); the others read YAML.
JSON_CONFIGS = ("deepspeed", "transformers", "keras")


def _config_text(result: Export) -> str:
    """The config payload in the format the framework reads (see :data:`JSON_CONFIGS`)."""
    if result.framework in JSON_CONFIGS:
        return json.dumps(result.config, indent=2) + "\n"
    return to_yaml(result.config)


def render(result: Export, fmt: str = "text", *, config_only: bool = False) -> str:
    """``result`` as ``text`` (snippets plus notes), ``json`` or ``yaml`` (the whole record).

    With ``config_only`` just the config payload, so it can be redirected into a file.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    if config_only:
        if fmt == "json":
            return json.dumps(result.config, indent=2) + "\n"
        return to_yaml(result.config) if fmt == "yaml" else _config_text(result)
    if fmt == "json":
        return json.dumps(result.to_dict(), indent=2) + "\n"
    if fmt == "yaml":
        return to_yaml(result.to_dict())
    head = f"ampkit precision {result.precision} -> {result.framework} on {result.device}: {result.equivalence}\n"
    parts = [head]
    if result.config is not None:
        parts += [f"\n# {result.config_kind}\n", _config_text(result)]
    if result.code:
        parts += ["\n# Python\n", result.code + "\n"]
    if result.tf32 is not None and result.tf32.field is None:
        parts += [f"\n# or, instead of the TF32 lines, launch with: {result.tf32.env_line()}\n"]
    if result.notes:
        parts += ["\nnotes:\n", *(f"  - {note}\n" for note in result.notes)]
    return "".join(parts)

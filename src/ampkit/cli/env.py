"""Environment variables ampkit reads, checked before any work like the flags are.

Each garbage value is one :class:`~ampkit.errors.UsageError` line naming the variable and what
is valid (exit 2), instead of a ``ValueError`` traceback in every rank later on:

- ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (torchrun's; :func:`ampkit.engine.distributed.world_from_env`),
- ``AMPKIT_DIST_TIMEOUT`` (process-group timeout; :func:`ampkit.engine.distributed.timeout_s`),
- ``AMPKIT_CACHE`` (the ct task's data cache; :func:`check_cache`, for the ct task only),
- ``AMPKIT_CONVERT_SAMPLE_DELAY`` (``ampkit convert``'s test hook; checked by ``convert``).

``USE_AMP``/``AMP_DTYPE``/``AMPKIT_PRECISION`` are checked where the precision is resolved.
"""

from __future__ import annotations

import os
from pathlib import Path


def check_env() -> None:
    """The launcher variables and ``AMPKIT_DIST_TIMEOUT`` hold valid values (or are unset)."""
    from ..engine.distributed import timeout_s, world_from_env

    world_from_env()
    timeout_s()


def check_cache() -> None:
    """``$AMPKIT_CACHE``, when set, is a folder the ct task can create its data set in."""
    from ..tasks.ct import CACHE_ENV
    from .checks import check_out_dir

    text = os.environ.get(CACHE_ENV)
    if text:  # unset or empty: ~/.cache/ampkit
        check_out_dir(Path(text), CACHE_ENV)

"""``warn``: ampkit's warnings, attributed to the user's line rather than ampkit's own.

``warnings.warn(..., stacklevel=2)`` names the caller of the function that warns, which is
often another ampkit function (``Precision.from_args`` -> ``Precision.__init__``). Python 3.11
has no ``skip_file_prefixes``, so :func:`warn` counts the frames up to the first one outside
the ampkit package and passes that as ``stacklevel``: the warning's ``filename``/``lineno``
are then the user's script, which is also what ``python -W error`` and warning filters match.
"""

from __future__ import annotations

import os
import sys
import warnings
from types import FrameType

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _inside_ampkit(frame: FrameType) -> bool:
    return os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR)


def _importlib_internal(frame: FrameType) -> bool:
    # warnings.warn skips these frames itself when it walks up the stack: do not count them.
    name = frame.f_code.co_filename
    return "importlib" in name and "_bootstrap" in name


def user_stacklevel(skip_files: tuple[str, ...] = ()) -> int:
    """The ``stacklevel`` that makes a ``warnings.warn`` in the *caller* of this function name the
    first frame outside ampkit (1 = that caller itself, when it is already outside); frames of
    ``skip_files`` (e.g. ``argparse.__file__`` for a warning from an argparse action) are passed too."""
    frame = sys._getframe(1)  # the function that will call warnings.warn
    level = 1
    while frame.f_back is not None and (_inside_ampkit(frame) or frame.f_code.co_filename in skip_files):
        frame = frame.f_back
        if not _importlib_internal(frame):
            level += 1
    return level


def warn(message: str, category: type[Warning] = UserWarning, *, skip_files: tuple[str, ...] = ()) -> None:
    """``warnings.warn(message, category)`` pointing at the first frame outside the ampkit package
    (and outside ``skip_files``)."""
    warnings.warn(message, category, stacklevel=user_stacklevel(skip_files))

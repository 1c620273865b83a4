"""The command lines of ampkit's own Python children: none of them imports from the current folder.

``python -c CODE`` and ``python -m MODULE`` put the current folder first on ``sys.path`` (as
``''`` or as its path), so a ``json.py`` or ``typing_extensions.py`` lying in the folder where a
user runs ampkit would run inside every compare arm, ``--nproc`` rank and plan probe. The
children that run ampkit's own code start through :func:`python_code` / :func:`python_module`
instead: with ``-P`` (Python 3.11+: no such entry), or, on 3.10, with code that removes the
entry before anything is imported. The flag is not inherited through the environment, so a
user's own command that such a child starts (compare's wrapper execs it) sees ``sys.path`` as
it would when run by hand. A user's task module beside the run (``--task mytask:make_task``) is
still found: :func:`ampkit.tasks.registry.resolve_factory` adds the folder for it, in the child too.
"""

from __future__ import annotations

import sys

#: Whether this interpreter knows ``-P`` (``sys.flags.safe_path``, Python 3.11+).
SAFE_PATH_FLAG = sys.version_info >= (3, 11)

#: Lines that drop ``-c``'s current-folder entry, for interpreters without ``-P``.
DROP_CWD = "import sys\nif sys.path and sys.path[0] == '':\n    del sys.path[0]\n"


def python_code(code: str, *, safe_flag: bool | None = None) -> list[str]:
    """``[python, -P, -c, code]``: ``code`` run by this interpreter without the current folder on
    ``sys.path`` (arguments for ``code`` follow in ``sys.argv[1:]``, as after ``-c``)."""
    if SAFE_PATH_FLAG if safe_flag is None else safe_flag:
        return [sys.executable, "-P", "-c", code]
    return [sys.executable, "-c", DROP_CWD + code]


def python_module(module: str, *, safe_flag: bool | None = None) -> list[str]:
    """``[python, -P, -m, module]``: ``module`` run as ``__main__`` without the current folder on
    ``sys.path`` (on 3.10: through ``runpy``, as ``-m`` does, with ``sys.argv[0]`` its file)."""
    if SAFE_PATH_FLAG if safe_flag is None else safe_flag:
        return [sys.executable, "-P", "-m", module]
    run = f"import runpy\nrunpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
    return python_code(run, safe_flag=False)

"""``--task module:factory`` finds a module in the current folder, as ``python -m`` would."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from ampkit.errors import UsageError
from ampkit.tasks.registry import resolve_factory

TESTS = Path(__file__).parent


def test_a_task_module_beside_the_user_is_found_without_pythonpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(TESTS / "slow_task.py", tmp_path / "my_local_task.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "my_local_task", raising=False)
    factory = resolve_factory("my_local_task:make_task")
    assert callable(factory) and factory.__module__ == "my_local_task"


def test_a_missing_module_names_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="no module 'nowhere_task' on the Python path"):
        resolve_factory("nowhere_task:make_task")

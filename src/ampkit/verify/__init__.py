"""``ampkit verify``: prove each precision mode works on this machine (dtypes, loss scaling, learning)."""

from .checks import CHECKS, Check, expected_dtypes
from .runner import ModeReport, verify_mode, verify_modes

__all__ = ["CHECKS", "Check", "ModeReport", "expected_dtypes", "verify_mode", "verify_modes"]

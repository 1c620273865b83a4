"""Which precision a command arm's script really ran, and whether the study must flag the arm.

Evidence: ampkit's proof line (``ampkit: precision=<mode> ...``, printed by ``Precision.describe()``
users and by ``ampkit train``) on the script's stdout/stderr, and ``precision`` events in its
``ampkit.log`` file. A script that reported another mode than the arm asked for is flagged
(``requested bf16-mixed, script ran fp32``). A script that uses ampkit (it wrote ``ampkit.log``
events or ``ampkit:`` lines) but never reported its precision is flagged too. A plain script
that never touches ampkit has ``USE_AMP``/``AMP_DTYPE`` (and the placeholders) as its only
channel: it is not flagged, but an arm whose mode that spelling cannot say (``bf16-true``,
``tf32``, ...) gets a warning unless the command names ``{precision}`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..precision import PrecisionError, canonical_mode
from .placeholders import USE_AMP_MODES


@dataclass(frozen=True)
class PrecisionCheck:
    """The outcome: ``status`` is ok, mismatch, not reported or not verifiable."""

    status: str
    ran: str | None
    """The mode the script reported (several joined by ``+`` when ranks disagree), None if none."""
    evidence: str
    """Where the report came from, or why there is none."""
    flagged: bool
    """Whether the arm's row is flagged (its figures are not the requested precision's)."""
    warning: str | None = None

    @property
    def reason(self) -> str:
        return self.evidence


def _canonical(mode: str) -> str:
    try:
        return canonical_mode(mode)
    except PrecisionError:
        return mode


def check_precision(
    requested: str,
    proofs: list[tuple[str, str]],
    events: list[tuple[str, str]],
    *,
    uses_ampkit: bool,
    names_precision: bool,
) -> PrecisionCheck:
    """Compare the requested mode with the script's own reports (proof lines, precision events)."""
    seen = {_canonical(m) for m, _ in [*events, *proofs]}
    where = []
    if events:
        where.append(f"ampkit.log precision event ({events[0][1] or events[0][0]})")
    if proofs:
        where.append(f"proof line {proofs[0][1]!r}")
    if seen:
        ran = "+".join(sorted(seen))
        if seen == {requested}:
            return PrecisionCheck("ok", ran, "; ".join(where), False)
        return PrecisionCheck(
            "mismatch", ran, f"requested {requested}, script ran {ran} (from the {'; '.join(where)})", True
        )
    if uses_ampkit:
        return PrecisionCheck(
            "not reported",
            None,
            f"requested {requested}, script did not report its precision: it uses ampkit (ampkit.log or "
            "'ampkit:' lines) but printed no 'ampkit: precision=' line and logged no precision event",
            True,
        )
    if requested in USE_AMP_MODES or names_precision:
        how = _use_amp(requested) + (" and {precision} in its command" if names_precision else "")
        return PrecisionCheck("not reported", None, f"plain script (no ampkit): told by {how}", False)
    return PrecisionCheck(
        "not verifiable",
        None,
        f"plain script (no ampkit): told only {_use_amp(requested)}",
        False,
        warning=(
            f"{requested} has no USE_AMP/AMP_DTYPE spelling, the script got USE_AMP=0 and did not report its "
            "precision, so it may have run fp32; pass {precision} in the command or use Precision.from_env()"
        ),
    )


def _use_amp(mode: str) -> str:
    dtype = USE_AMP_MODES.get(mode)
    return f"USE_AMP=1 AMP_DTYPE={dtype}" if dtype else "USE_AMP=0"

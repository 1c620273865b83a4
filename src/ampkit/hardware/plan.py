"""The largest micro-batch of a task that fits, per precision, measured (``ampkit plan``).

The method (docs/plan.md): for each precision, micro-batches ``k, 2k, 4k, ...`` (``k`` =
``multiple_of``, default 1) are probed until one does not fit or ``max_batch`` is reached, then
the gap between the last batch that fitted and the first that did not is bisected down to one
step of ``k``. Each probe is a few real training steps (a warm-up, then ``timed_steps``) in a
fresh process (:mod:`~.probe`), so its peak memory is its own, and its step time is measured at
the same time. The gradient accumulation that reaches a wanted global batch follows from the
largest batch that fitted.

:func:`largest_batch` is the search alone, over any ``probe(batch) -> ProbeResult`` (the tests
give it a fake one); :func:`plan_mode` runs it with real probes.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .budget import format_size
from .probe import ProbeRequest, ProbeResult

SCHEMA = "ampkit.plan/1"
#: A probe's status -> what it says stopped the search (any other failure to fit: memory).
LIMITS = {"over": "memory", "oom": "memory", "killed": "memory", "timeout": "timeout"}


@dataclass
class Search:
    """The outcome of :func:`largest_batch`."""

    best: ProbeResult | None
    """The probe of the largest batch that fitted (None: not even the smallest did)."""
    probes: list[ProbeResult]
    """Every probe, in the order run."""
    limit: str
    """What stopped a larger batch: memory, max-batch, task (its batches are no larger) or timeout."""
    error: str | None = None
    """A probe failed for another reason than memory (the task itself): the search stopped."""


def largest_batch(probe: Callable[[int], ProbeResult], max_batch: int, multiple_of: int = 1) -> Search:
    """The largest multiple of ``multiple_of`` up to ``max_batch`` for which ``probe`` fits: doubling
    from ``multiple_of`` until a batch does not fit, then bisection between the last fit and the
    first failure. Assumes memory grows with the batch (a larger batch never needs less)."""
    k = multiple_of
    lo, hi = 0, max_batch // k + 1  # in units of k: lo fits (0: none known), hi does not
    limit, probes = "max-batch", []
    doubling = True
    best: ProbeResult | None = None
    while hi - lo > 1:
        unit = min(max(2 * lo, 1), hi - 1) if doubling else (lo + hi) // 2
        result = probe(unit * k)
        probes.append(result)
        if result.status == "error":
            return Search(best, probes, limit, error=result.reason or "the probe failed")
        if result.status == "short":  # the task gives no larger batch: that is the ceiling
            hi, limit = min(hi, (result.delivered or 0) // k + 1), "task"
        elif result.fits:
            lo, best = unit, result
        else:
            hi, limit, doubling = unit, LIMITS.get(result.status, "memory"), False
    return Search(best, probes, limit)


@dataclass(frozen=True)
class Accumulation:
    """How to reach ``global_batch`` samples per optimizer step with micro-batches that fit."""

    global_batch: int
    accumulate: int
    """``ceil(global_batch / largest batch)`` micro-batches per step."""
    micro_batch: int
    """``ceil(global_batch / accumulate)``: the smallest micro-batch that gets there in that many."""
    effective: int
    """``micro_batch * accumulate``: the global batch really trained (>= ``global_batch``)."""


def accumulation(global_batch: int, largest: int) -> Accumulation:
    """The fewest micro-batches of at most ``largest`` samples that make ``global_batch``."""
    accumulate = -(-global_batch // largest)
    micro = -(-global_batch // accumulate)
    return Accumulation(global_batch, accumulate, micro, micro * accumulate)


@dataclass
class PlanSettings:
    """What ``ampkit plan`` measures, for every precision alike."""

    task: str = "tinygpt"
    size: str = "default"
    device: str = "cpu"
    seed: int = 0
    budget_bytes: int | None = None
    """The memory a probe may use (None on a GPU: the device's own)."""
    max_batch: int = 4096
    multiple_of: int = 1
    timed_steps: int = 2
    probe_timeout_s: float = 300.0
    global_batch: int | None = None
    threads: int | None = None
    keep_fp32: str | None = None


@dataclass
class ModePlan:
    """One precision's row: the largest batch, its memory and speed, the accumulation."""

    precision: str
    status: str = "measured"
    """measured, nothing fits, skipped (cannot run here) or failed (a probe failed: the task)."""
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    max_batch: int | None = None
    limit: str | None = None
    peak_bytes: int | None = None
    baseline_bytes: int | None = None
    samples_per_s: float | None = None
    items_per_s: float | None = None
    item_unit: str = "samples"
    step_time_s: float | None = None
    accumulation: Accumulation | None = None
    probes: list[ProbeResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["accumulation"] = asdict(self.accumulation) if self.accumulation else None
        data["probes"] = [
            {k: p.to_dict()[k] for k in ("batch", "status", "peak_bytes", "seconds", "reason")}
            for p in self.probes
        ]
        return data


def _rate(result: ProbeResult) -> str:
    if not result.step_times_s:
        return ""
    rate = result.batch / statistics.median(result.step_times_s)
    return f", {rate:,.0f} samples/s" if rate >= 100 else f", {rate:.3g} samples/s"


def verdict(result: ProbeResult, budget: int | None) -> str:
    """A probe's outcome in words, for its progress line."""
    peak = format_size(result.peak_bytes)
    of = f" of {format_size(budget)}" if budget else ""
    return {
        "ok": f"fits, peak {peak}{of}" + _rate(result),
        "over": f"over the {format_size(budget)} budget"
        + (f" ({result.reason})" if result.reason else f", peak {peak}"),
        "oom": f"out of memory ({result.reason})",
        "short": result.reason or "the task gives smaller batches",
        "timeout": f"timed out ({result.reason})",
        "killed": result.reason or "killed",
        "error": f"failed: {result.reason}",
    }.get(result.status, result.status)


def limit_note(search: Search, max_batch: int) -> str:
    """Why no larger batch, in a few words: the first batch above the best that did not fit."""
    best = search.best.batch if search.best else 0
    above = [p for p in search.probes if p.batch > best and not p.fits]
    if search.limit == "max-batch" or not above:
        return f"--max-batch {max_batch} reached"
    first = min(above, key=lambda p: p.batch)
    if first.status == "short":
        return f"the task's batches hold {first.delivered} samples"
    words = {"over": "over budget", "oom": "out of memory", "killed": "killed", "timeout": "timed out"}
    return f"batch {first.batch} {words.get(first.status, first.status)}"


def plan_mode(
    settings: PlanSettings,
    mode: str,
    probe: Callable[[ProbeRequest], ProbeResult],
    progress: Callable[[str], None] = lambda line: None,
) -> ModePlan:
    """Search one precision; ``probe`` runs a request in a fresh process."""

    def request(batch: int) -> ProbeRequest:
        return ProbeRequest(
            task=settings.task,
            precision=mode,
            batch=batch,
            device=settings.device,
            size=settings.size,
            seed=settings.seed,
            budget_bytes=settings.budget_bytes,
            timed_steps=settings.timed_steps,
            threads=settings.threads,
            keep_fp32=settings.keep_fp32,
        )

    def one(batch: int) -> ProbeResult:
        result = probe(request(batch))
        progress(f"{mode} batch {batch}: {verdict(result, settings.budget_bytes)} ({result.seconds:.1f} s)")
        return result

    search = largest_batch(one, settings.max_batch, settings.multiple_of)
    row = ModePlan(mode, probes=search.probes, limit=search.limit)
    if search.error is not None:
        row.status, row.reason = "failed", search.error
        return row
    if search.best is None:
        first = search.probes[0]
        row.status, row.peak_bytes = "nothing fits", first.peak_bytes
        row.reason = f"batch {first.batch}: {verdict(first, settings.budget_bytes)}"
        return row
    best = search.best
    row.reason = limit_note(search, settings.max_batch)
    row.max_batch, row.peak_bytes, row.baseline_bytes = best.batch, best.peak_bytes, best.baseline_bytes
    row.item_unit = best.item_unit
    if settings.global_batch:
        row.accumulation = accumulation(settings.global_batch, best.batch)
    if best.step_times_s:
        row.step_time_s = statistics.median(best.step_times_s)
        row.samples_per_s = best.batch / row.step_time_s
        row.items_per_s = row.samples_per_s * best.items_per_sample
    return row

"""Epoch order: seeded permutations, rank spans, worker batches, mid-epoch resume."""

from __future__ import annotations

import numpy as np
import pytest

from ampkit.data.order import EpochPlan, epoch_order, rank_span, resolve_rank
from ampkit.errors import UsageError


def test_epoch_order_is_a_seeded_permutation() -> None:
    a = epoch_order([10, 10, 3], seed=1, epoch=0)
    assert sorted(a.tolist()) == list(range(23))
    assert np.array_equal(a, epoch_order([10, 10, 3], seed=1, epoch=0))
    assert not np.array_equal(a, epoch_order([10, 10, 3], seed=1, epoch=1))
    assert not np.array_equal(a, epoch_order([10, 10, 3], seed=2, epoch=0))
    assert epoch_order([4, 4], 0, 0, "none").tolist() == list(range(8))


def test_shard_order_keeps_each_shard_contiguous() -> None:
    counts = [5, 7, 3]
    order = epoch_order(counts, seed=3, epoch=2, shuffle="shard")
    assert sorted(order.tolist()) == list(range(15))
    shard = np.searchsorted([0, 5, 12], order, side="right") - 1
    runs = [int(s) for i, s in enumerate(shard) if i == 0 or s != shard[i - 1]]
    assert sorted(runs) == [0, 1, 2]  # each shard visited once, as one run
    assert not np.array_equal(order, np.arange(15))


@pytest.mark.parametrize("n,world", [(10, 3), (9, 3), (2, 4), (0, 2)])
def test_uneven_reads_every_sample_exactly_once(n: int, world: int) -> None:
    spans = [rank_span(n, r, world, "uneven") for r in range(world)]
    assert sorted(np.concatenate(spans).tolist()) == list(range(n))
    assert max(map(len, spans)) - min(map(len, spans)) <= 1


def test_pad_and_drop_give_equal_shares() -> None:
    pad = [rank_span(10, r, 3, "pad") for r in range(3)]
    assert [len(s) for s in pad] == [4, 4, 4]
    assert set(np.concatenate(pad).tolist()) == set(range(10))  # all read, two of them twice
    drop = [rank_span(10, r, 3, "drop") for r in range(3)]
    assert [len(s) for s in drop] == [3, 3, 3]
    assert len(set(np.concatenate(drop).tolist())) == 9


def test_bad_policy_and_rank_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="valid: pad, drop, uneven"):
        rank_span(4, 0, 1, "wrap")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="rank 2"):
        rank_span(4, 2, 2, "pad")
    with pytest.raises(UsageError):
        resolve_rank(3, 2)
    assert resolve_rank(None, None) == (0, 1)  # no process group


def test_rank_comes_from_an_initialised_process_group(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        assert resolve_rank(None, None) == (0, 1)
        assert resolve_rank(1, 2) == (1, 2)  # explicit values win
    finally:
        dist.destroy_process_group()


def test_worker_batches_interleave_back_to_the_rank_order() -> None:
    plan = EpochPlan(epoch_order([17], 5, 0), rank=1, world_size=2, policy="uneven", batch_size=3)
    whole = plan.batches()
    for k in (1, 2, 3):
        per_worker = [plan.worker_batches(w, k) for w in range(k)]
        # DataLoader takes one batch from each worker in turn
        merged = [per_worker[j % k][j // k] for j in range(len(whole))]
        assert all(np.array_equal(a, b) for a, b in zip(merged, whole))


def test_resume_continues_the_same_sequence() -> None:
    order = epoch_order([40], 9, 3)
    full = EpochPlan(order, rank=0, world_size=2, batch_size=4).sequence()
    for start in (0, 5, 8, 19, 20):
        rest = EpochPlan(order, rank=0, world_size=2, batch_size=4, start=start).sequence()
        assert np.array_equal(rest, full[start:])


def test_drop_last_drops_a_short_final_batch() -> None:
    plan = EpochPlan(np.arange(10), batch_size=4, drop_last=True)
    assert [len(b) for b in plan.batches()] == [4, 4]

"""What PrecisionOptimizer accepts (QA adoption pass): clip thresholds of 0 mean no clipping, bad
arguments are one-line errors, step() mid-accumulation raises, float16 eps is made safe, and
inf/NaN already in the weights is named when it makes a step skip."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ampkit.engine import TrainConfig
from ampkit.engine.setup import build_run
from ampkit.errors import UsageError
from ampkit.optim import NONFINITE_WEIGHTS, PrecisionOptimizer
from ampkit.precision import Precision, PrecisionError, PrecisionWarning


def _tiny(dtype: torch.dtype = torch.float32) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).to(dtype)


def _batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(16, 4, generator=gen), torch.randint(0, 2, (16,), generator=gen)


def _loss(model: nn.Module, prec: Precision, seed: int = 1) -> torch.Tensor:
    x, y = _batch(seed)
    with prec.autocast():
        out = model(prec.cast_inputs(x))
    return F.cross_entropy(out.float(), y)


# -- 1. clip thresholds: 0 is "no clipping", negative / non-finite is refused --------------------------
@pytest.mark.parametrize("off", [0, 0.0, None])
@pytest.mark.parametrize("which", ["clip_grad_norm", "clip_grad_value"])
def test_clip_zero_means_no_clipping_bit_for_bit(which: str, off: float | None) -> None:
    prec = Precision("fp32")
    model, reference = _tiny(), _tiny()
    kwargs: dict[str, Any] = {which: off}
    opt = PrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), prec, **kwargs)
    plain = torch.optim.SGD(reference.parameters(), lr=0.1)
    assert getattr(opt, which) is None
    losses = []
    for _ in range(4):
        loss = _loss(model, prec)
        opt.backward(loss)
        assert opt.step().applied
        ref = _loss(reference, prec)
        ref.backward()
        plain.step()
        plain.zero_grad()
        assert loss.item() == ref.item()
        losses.append(loss.item())
    assert losses[-1] < losses[0]  # it learns: the gradients were not zeroed
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))


def test_clip_set_to_zero_later_also_turns_clipping_off() -> None:
    model = _tiny()
    opt = PrecisionOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1), Precision("fp32"), clip_grad_norm=1.0
    )
    opt.clip_grad_norm = 0
    assert opt.clip_grad_norm is None
    with pytest.raises(UsageError, match=r"clip_grad_norm=-1.0; valid: > 0, or 0/None for no clipping"):
        opt.clip_grad_norm = -1.0
    opt.backward(_loss(model, opt.precision))
    before = model[0].weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model[0].weight)


# -- bad constructor arguments: one line naming what was passed and what is valid -------------------------
def _model_sgd() -> tuple[nn.Module, torch.optim.Optimizer]:
    model = _tiny()
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def _shared() -> list[torch.optim.Optimizer]:
    model = _tiny()
    return [torch.optim.SGD(model.parameters(), lr=0.1), torch.optim.SGD(model[0].parameters(), lr=0.1)]


# (id, build the arguments, error class, needle)
BAD: list[tuple[str, Callable[[], tuple[Any, Any, dict[str, Any]]], type[Exception], str]] = [
    ("clip-norm-negative", lambda: (_model_sgd()[1], Precision("fp32"), {"clip_grad_norm": -1.0}), UsageError,
     "clip_grad_norm=-1.0; valid: > 0, or 0/None for no clipping"),
    ("clip-norm-nan", lambda: (_model_sgd()[1], Precision("fp32"), {"clip_grad_norm": math.nan}), UsageError,
     "clip_grad_norm=nan; valid: > 0, or 0/None"),
    ("clip-norm-inf", lambda: (_model_sgd()[1], Precision("fp32"), {"clip_grad_norm": math.inf}), UsageError,
     "clip_grad_norm=inf; valid: > 0, or 0/None"),
    ("clip-norm-string", lambda: (_model_sgd()[1], Precision("fp32"), {"clip_grad_norm": "1.0"}), UsageError,
     "clip_grad_norm='1.0'; valid: > 0"),
    ("clip-norm-bool", lambda: (_model_sgd()[1], Precision("fp32"), {"clip_grad_norm": True}), UsageError,
     "clip_grad_norm=True; valid: > 0"),
    ("clip-value-negative", lambda: (_model_sgd()[1], Precision("fp32"), {"clip_grad_value": -0.5}), UsageError,
     "clip_grad_value=-0.5; valid: > 0, or 0/None for no clipping"),
    ("clip-value-nan", lambda: (_model_sgd()[1], Precision("fp32"), {"clip_grad_value": math.nan}), UsageError,
     "clip_grad_value=nan; valid"),
    ("accumulate-float", lambda: (_model_sgd()[1], Precision("fp32"), {"accumulate": 2.5}), UsageError,
     "accumulate=2.5; valid: a whole number >= 1"),
    ("accumulate-zero", lambda: (_model_sgd()[1], Precision("fp32"), {"accumulate": 0}), UsageError,
     "accumulate=0; valid: a whole number >= 1"),
    ("accumulate-negative", lambda: (_model_sgd()[1], Precision("fp32"), {"accumulate": -2}), UsageError,
     "accumulate=-2; valid"),
    ("accumulate-bool", lambda: (_model_sgd()[1], Precision("fp32"), {"accumulate": True}), UsageError,
     "accumulate=True; valid"),
    ("accumulate-string", lambda: (_model_sgd()[1], Precision("fp32"), {"accumulate": "2"}), UsageError,
     "accumulate='2'; valid"),
    ("module-as-optimizer", lambda: (_tiny(), Precision("fp32"), {}), UsageError,
     "optimizer is an nn.Module (Sequential)"),
    ("precision-first", lambda: (Precision("fp32"), _model_sgd()[1], {}), UsageError,
     "the optimizer comes first: PrecisionOptimizer(optimizer, precision)"),
    ("parameters-as-optimizer", lambda: (_tiny().parameters(), Precision("fp32"), {}), UsageError,
     "optimizer is a generator; valid: a torch.optim optimizer"),
    ("empty-list", lambda: ([], Precision("fp32"), {}), UsageError, "optimizer is a list; valid"),
    ("list-with-module", lambda: ([_model_sgd()[1], _tiny()], Precision("fp32"), {}), UsageError,
     "the list holds an nn.Module (Sequential)"),
    ("shared-parameter", lambda: (_shared(), Precision("fp32"), {}), UsageError,
     "optimizers 0 and 1 share a parameter of shape (8, 4)"),
    ("precision-none", lambda: (_model_sgd()[1], None, {}), UsageError,
     "precision is a NoneType; valid: a Precision"),
    ("precision-dtype", lambda: (_model_sgd()[1], torch.bfloat16, {}), UsageError,
     "precision is a dtype; valid: a Precision, e.g. Precision('bf16-mixed', 'cuda'), or a mode name"),
    ("precision-unknown-name", lambda: (_model_sgd()[1], "bf17", {}), PrecisionError,
     "unknown precision 'bf17'; valid: fp64, fp32"),
    ("wrapper-as-optimizer", lambda: (PrecisionOptimizer(_model_sgd()[1], "fp32"), Precision("fp32"), {}),
     UsageError, "optimizer is already a PrecisionOptimizer (a torch.optim.Optimizer too); valid: the torch "
     "optimizer it wraps (opt.optimizer)"),
    ("wrapper-in-list", lambda: ([PrecisionOptimizer(_model_sgd()[1], "fp32")], Precision("fp32"), {}),
     UsageError, "optimizer is already a PrecisionOptimizer"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "error", "needle"), [pytest.param(*row[1:], id=row[0]) for row in BAD])
def test_bad_arguments_are_one_line_errors(
    build: Callable[[], tuple[Any, Any, dict[str, Any]]], error: type[Exception], needle: str
) -> None:
    optimizer, precision, kwargs = build()
    with pytest.raises(error) as caught:
        PrecisionOptimizer(optimizer, precision, **kwargs)
    assert type(caught.value) is error  # not an AttributeError/TypeError from deep inside
    message = str(caught.value)
    assert needle in message and "\n" not in message


def test_a_refused_construction_changes_nothing() -> None:
    param = nn.Parameter(torch.zeros(3, dtype=torch.float16))
    adamw = torch.optim.AdamW([param], lr=1e-3)  # eps 1e-8: would be raised to 1e-4
    with pytest.raises(UsageError, match=r"accumulate=2\.5"):
        PrecisionOptimizer(adamw, Precision("fp16-true"), accumulate=2.5)  # type: ignore[arg-type]
    assert adamw.param_groups[0]["eps"] == 1e-8


def test_a_mode_name_is_resolved_on_the_parameters_device() -> None:
    model, reference = _tiny(), _tiny()
    by_name = PrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), "bf16-mixed")
    by_object = PrecisionOptimizer(
        torch.optim.SGD(reference.parameters(), lr=0.1), Precision("bf16-mixed", "cpu")
    )
    assert by_name.precision == Precision("bf16-mixed", "cpu")
    for opt, net in ((by_name, model), (by_object, reference)):
        opt.backward(_loss(net, by_object.precision))
        assert opt.step().applied
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))
    assert repr(by_name) == "PrecisionOptimizer(SGD, 'bf16-mixed', accumulate=1)"


# -- 4. step() before opt.ready raises, as unscale_() does; the accumulation survives -----------------------
def test_step_before_ready_raises_and_keeps_the_accumulation() -> None:
    prec = Precision("fp32")
    model, reference = _tiny(), _tiny()
    opt = PrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), prec, accumulate=4)
    opt.backward(_loss(model, prec, seed=0))
    with pytest.raises(PrecisionError, match=r"opt.step\(\) after 1 of 4 micro-batches: .*opt.ready"):
        opt.step()
    with pytest.raises(PrecisionError, match=r"opt.unscale_\(\) after 1 of 4 micro-batches"):
        opt.unscale_()
    assert opt.steps == 0 and model[0].weight.grad is not None  # nothing stepped, nothing dropped
    for seed in (1, 2, 3):
        opt.backward(_loss(model, prec, seed=seed))
    assert opt.ready and opt.step().applied
    plain = torch.optim.SGD(reference.parameters(), lr=0.1)
    for seed in range(4):
        (_loss(reference, prec, seed=seed) / 4).backward()
    plain.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


def test_zero_grad_drops_a_partial_accumulation() -> None:
    model = _tiny()
    opt = PrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), Precision("fp32"), accumulate=2)
    opt.backward(_loss(model, opt.precision))
    opt.zero_grad()
    assert opt.step().reason == "no gradients"  # no longer mid-accumulation: nothing to raise about


# -- 2. fp16-true with a user's AdamW: eps raised once, with one warning at the user's line -------------------
def _fp16_true_model() -> nn.Sequential:
    torch.manual_seed(0)
    prec = Precision("fp16-true", "cpu")
    model = prec.prepare(nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 2)))
    assert isinstance(model, nn.Sequential)
    return model


def test_fp16_true_adamw_eps_is_raised_with_one_warning_at_the_users_line() -> None:
    prec = Precision("fp16-true", "cpu")
    model = _fp16_true_model()
    with pytest.warns(PrecisionWarning) as caught:
        opt = PrecisionOptimizer(torch.optim.AdamW(model.parameters(), lr=1e-3), prec, model=model)
    eps_warnings = [w for w in caught if "eps" in str(w.message)]
    assert len(eps_warnings) == 1 and eps_warnings[0].filename == __file__
    assert str(eps_warnings[0].message) == (
        "fp16-true: eps 1e-08 underflows in float16 (smallest normal 6.1e-05); using 1e-4; pass eps>=1e-4 to silence"
    )
    groups = opt.optimizer.param_groups
    assert [g["eps"] for g in groups] == [1e-4]
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        x, y = torch.randn(16, 8, generator=gen), torch.randint(0, 2, (16,), generator=gen)
        out = model(prec.cast_inputs(x))
        opt.backward(F.cross_entropy(out.float(), y))
        assert opt.step().applied
        assert all(torch.isfinite(p).all() for p in model.parameters())


def test_safe_eps_fp32_groups_and_engine_optimizers_are_left_alone() -> None:
    model = _fp16_true_model()
    groups: list[dict[str, Any]] = [
        {"params": model[0].parameters(), "eps": 1e-3},
        {"params": model[1].parameters()},  # the LayerNorm, kept float32 by prepare(): its 1e-8 is fine
    ]
    mixed = torch.optim.AdamW(groups, lr=1e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PrecisionOptimizer(mixed, Precision("fp32"))
        run = build_run(
            TrainConfig(task="digits", precision="fp16-true", device="cpu", steps=1, progress=False)
        )
    assert not [w for w in caught if "eps" in str(w.message)]
    assert [g["eps"] for g in mixed.param_groups] == [1e-3, 1e-8]
    assert run.optimizer.optimizer.param_groups[0]["eps"] == 1e-4  # the engine's own, not re-warned


def test_rebind_raises_eps_of_the_rebuilt_optimizer() -> None:
    model = _fp16_true_model()
    opt = PrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), Precision("fp16-true"))
    rebuilt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-6)
    with pytest.warns(PrecisionWarning, match="fp16-true: eps 1e-06 underflows in float16") as caught:
        opt.rebind(rebuilt)
    assert caught[0].filename == __file__ and rebuilt.param_groups[0]["eps"] == 1e-4


# -- 2b. inf/NaN that an applied update wrote into the weights is named at the skip it causes --------------
def test_overflowed_fp16_weights_are_reported_at_the_next_step() -> None:
    prec = Precision("fp16-true")
    model = _tiny(torch.float16)
    opt = PrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=1000.0), prec)
    opt.backward(_loss(model, prec) * 1000)  # finite gradients of ~100: the update overflows float16
    first = opt.step()
    assert first.applied  # its gradients were finite; the check would cost a sync per step
    assert not all(torch.isfinite(p).all() for p in model.parameters())
    opt.backward(_loss(model, prec))
    with pytest.warns(
        PrecisionWarning,
        match=r"fp16-true: step 2 skipped: \d+ of 4 parameter tensors hold "
        r"inf/NaN \(written by step 1, the last applied one\)",
    ) as caught:
        second = opt.step()
    assert caught[0].filename == __file__
    assert (second.applied, second.reason) == (False, NONFINITE_WEIGHTS)
    opt.backward(_loss(model, prec))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrecisionWarning)  # warned once
        assert opt.step().reason == NONFINITE_WEIGHTS


def test_nonfinite_weights_under_a_scaler_are_named_too() -> None:
    prec = Precision("fp16-mixed", "cpu")
    model = _tiny()
    opt = PrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), prec)
    with torch.no_grad():
        model[2].bias[0] = float("nan")  # type: ignore[operator]
    opt.backward(_loss(model, prec))
    with pytest.warns(PrecisionWarning, match=r"\(before any applied step\)"):
        outcome = opt.step()
    assert (outcome.applied, outcome.reason, outcome.next_loss_scale) == (False, NONFINITE_WEIGHTS, 32768.0)

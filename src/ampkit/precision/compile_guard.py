"""The guard around a torch.compile'd call: its first calls, its fallback to eager, its record.

:class:`GuardedCall` runs the compiled callable; its first calls compile the backward graph
with the forward (so a failure surfaces in that call, not in a later ``loss.backward()``), and
the first compile error (:func:`compile_errors`) is one :class:`CompileWarning` line after
which the eager callable runs. :class:`CompileState` records what happened, and
:func:`compile_state` reads it back from a model. :mod:`.compile` decides and wires it up.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..warn import warn

#: Calls per compiled object whose backward graph is compiled with the forward (failures surface
#: in the call, not in ``loss.backward()``): the training step's first call, plus recompiles.
EAGER_BACKWARD_CALLS = 4


class CompileWarning(UserWarning):
    """torch.compile was asked for but this model (or mode) runs eager; the message says why."""


def compile_errors() -> tuple[type[BaseException], ...]:
    """The exception types of a failed compile (dynamo, AOTAutograd backends, inductor, C++ build)."""
    from torch._dynamo import exc as dynamo_exc
    from torch._inductor import exc as inductor_exc

    return (
        dynamo_exc.TorchDynamoException,  # Unsupported, BackendCompilerFailed, InductorError, ...
        inductor_exc.CppCompileError,
        inductor_exc.InvalidCxxCompiler,
        inductor_exc.OperatorIssue,
        inductor_exc.CppWrapperCodegenError,
    )


@dataclass
class CompileState:
    """What happened to one compile request (kept on the module as ``_ampkit_compile``)."""

    backend: str
    """The torch.compile backend asked for."""
    status: str = "pending"
    """``pending`` (not called yet), ``compiled`` (a compiled call returned) or ``eager``."""
    reason: str | None = None
    """Why it runs eager (the mode cannot compile here, or the compile failed)."""
    graphs: int = 0
    """Graphs dynamo captured during this object's first calls: the proof that it compiled."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {"backend": self.backend, "status": self.status, "reason": self.reason, "graphs": self.graphs}


def _graphs_captured() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


@contextlib.contextmanager
def _first_calls() -> Iterator[None]:
    """Compile the backward graph with the forward (so its failure is this call's), without the
    DeprecationWarning torch's own compile stack emits on its first use."""
    from torch._functorch import config

    saved = config.force_non_lazy_backward_lowering
    config.force_non_lazy_backward_lowering = True
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*torch.jit.script_method.*", DeprecationWarning)
            yield
    finally:
        config.force_non_lazy_backward_lowering = saved


def _one_line(err: BaseException) -> str:
    inner = getattr(err, "inner_exception", None)  # BackendCompilerFailed: what the backend raised
    if isinstance(inner, BaseException):
        return f"{type(err).__name__}: {_one_line(inner)}"
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return f"{type(err).__name__}: {text[:200]}".rstrip(": ")


class GuardedCall:
    """The compiled callable, with the eager one to fall back to on the first compile failure."""

    def __init__(
        self, compiled: Callable[..., Any], eager: Callable[..., Any], state: CompileState, label: str
    ):
        self.compiled, self.eager, self.state, self.label = compiled, eager, state, label
        self.calls = 0
        self.on_fallback: Callable[[], None] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.state.status == "eager":
            return self.eager(*args, **kwargs)
        self.calls += 1
        try:
            if self.calls > EAGER_BACKWARD_CALLS:
                return self.compiled(*args, **kwargs)
            before = _graphs_captured()
            with _first_calls():
                out = self.compiled(*args, **kwargs)
        except compile_errors() as err:
            self.fall_back(_one_line(err))
            return self.eager(*args, **kwargs)
        self.state.graphs += _graphs_captured() - before
        self.state.status = "compiled"
        return out

    def fall_back(self, reason: str) -> None:
        self.state.status, self.state.reason = "eager", f"compile failed: {reason}"
        warn(f"torch.compile of {self.label} failed ({reason}); running it eager", CompileWarning)
        if self.on_fallback is not None:
            self.on_fallback()


def compile_state(model: Any) -> CompileState | None:
    """What :func:`~ampkit.precision.compile.compile_model` did to ``model`` (None when it was not
    asked to compile it)."""
    state = getattr(model, "_ampkit_compile", None)
    if state is None and isinstance(getattr(model, "module", None), nn.Module):  # DDP wraps the model
        model = model.module
        state = getattr(model, "_ampkit_compile", None)
    if not isinstance(state, CompileState):
        return None
    if (
        isinstance(model, nn.Module)
        and state.status != "eager"
        and not isinstance(model._compiled_call_impl, GuardedCall)
    ):
        return None  # a copy (copy.deepcopy, pickle): nn.Module drops the compiled call, the copy runs eager
    return state

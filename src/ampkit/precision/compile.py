"""torch.compile under every precision mode: ``prec.compile(model)`` and the engine's ``--compile``.

A module is compiled in place (``nn.Module.compile``'s way: its ``__call__`` goes through
``torch.compile``), so ``state_dict`` keys, checkpoints, hooks and the optimizer's parameters
stay what they were. What the precision mode adds sits where torch.compile handles it: autocast
and the ``keep_fp32`` islands (a ``with`` block in each kept module's forward) are traced into
the graph, ``@fp32`` losses too when they are inside the compiled function; loss scaling, the
Kahan/stochastic bf16 updates and the non-finite check stay outside it, in the optimizer.

Two promises:

* A mode that cannot compile here is not compiled: :func:`cannot_compile` (the one decision,
  patchable) names why in one line, a :class:`CompileWarning` says it, and the run goes on eager.
* A compile that fails anyway (a dynamo error, ``BackendCompilerFailed``, inductor's
  ``CppCompileError``, ...) fails at the first call, not deep in a later backward: the first
  calls compile the backward graph eagerly too. The failure is one warning line and that
  module (or function) runs eager from then on.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import UsageError
from ..warn import warn

DEFAULT_BACKEND = "inductor"
"""torch.compile's own default: TorchInductor (C++/OpenMP kernels on CPU, Triton on GPU)."""

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


def _cxx_compiler() -> str | None:
    from torch._inductor import config

    configured = config.cpp.cxx[-1] if isinstance(config.cpp.cxx, tuple) else config.cpp.cxx
    names = [configured] if configured else ["g++", "c++", "clang++"]
    return next((found for name in names if (found := shutil.which(str(name)))), None)


def cannot_compile(mode: str, device_type: str, backend: Any = DEFAULT_BACKEND) -> str | None:
    """Why ``mode`` cannot be compiled with ``backend`` on ``device_type`` here (one line), or None.

    The one place that decides; patch it to change what compiles. Checks what is known to fail
    before a compile is tried: dynamo on this Python, inductor's C++ compiler on a CPU and
    Triton on a GPU, and modes whose layers torch.compile does not trace.
    """
    if not torch._dynamo.is_dynamo_supported():
        return f"torch.compile is not supported on Python {sys.version.split()[0]} with torch {torch.__version__}"
    if backend == "inductor" and device_type == "cpu" and _cxx_compiler() is None:
        return "inductor needs a C++ compiler on the CPU (g++ or clang++ on PATH, or $CXX); none found"
    if backend == "inductor" and device_type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return "inductor needs Triton on a CUDA GPU (pip install triton); not importable"
    # No mode is excluded with torch 2.13: all nine compiled and trained on the CPU with inductor
    # (int8-qat with a graph break at each torch.ao fake-quantise module, which dynamo skips).
    return None


def compile_seconds() -> float | None:
    """Seconds this process has spent compiling so far (dynamo's frame and backward compile
    timers), or None where torch does not expose them."""
    try:
        from torch._dynamo.utils import calculate_time_spent

        return float(calculate_time_spent().get("total_wall_time", 0.0))
    except Exception:  # a private API: its absence must not break a run
        return None


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


class _GuardedCall:
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


def _own_frame(module: nn.Module) -> Callable[..., Any]:
    """``module``'s call in a frame of ampkit's, which dynamo traces (inlining the module, hooks and
    all). ``torch.compile(module._call_impl)`` — what ``nn.Module.compile`` does — silently compiles
    nothing for torch's own containers (``nn.Sequential``): dynamo skips frames inside torch.nn.
    A code object of its own per module keeps each module's recompile budget its own."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return module._call_impl(*args, **kwargs)

    call.__code__ = call.__code__.replace(co_varnames=call.__code__.co_varnames)  # a new code object
    return call


def _check_backend(backend: Any) -> None:
    if callable(backend):
        return
    known = torch._dynamo.list_backends(exclude_tags=())
    if backend not in known:
        raise UsageError(f"torch.compile backend {backend!r}: unknown; valid: {', '.join(sorted(known))}")


def compile_model(
    model: Any, mode: str = "fp32", device_type: str = "cpu", *, label: str | None = None, **kwargs: Any
) -> Any:
    """``model`` (an ``nn.Module``, compiled in place and returned) or a function (a compiled
    wrapper is returned) under torch.compile with ``kwargs``; eager, with one
    :class:`CompileWarning` line, where ``mode`` cannot compile here or the compile fails.
    """
    backend = kwargs.setdefault("backend", DEFAULT_BACKEND)
    _check_backend(backend)
    name = backend if isinstance(backend, str) else getattr(backend, "__name__", "custom")
    state = CompileState(name)
    what = label or str(
        type(model).__name__ if isinstance(model, nn.Module) else getattr(model, "__name__", "fn")
    )
    why = cannot_compile(mode, device_type, backend)
    if why is not None:
        state.status, state.reason = "eager", f"{mode} cannot compile here: {why}"
        warn(f"torch.compile: {mode} on {device_type} runs eager: {why}", CompileWarning)
        if isinstance(model, nn.Module):
            setattr(model, "_ampkit_compile", state)  # noqa: B010  (nn.Module types its attributes)
        return model
    if isinstance(model, nn.Module):
        guard = _GuardedCall(torch.compile(_own_frame(model), **kwargs), model._call_impl, state, what)

        def uncompile() -> None:
            model._compiled_call_impl = None  # plain eager calls from now on, no wrapper

        guard.on_fallback = uncompile
        model._compiled_call_impl = guard
        setattr(model, "_ampkit_compile", state)  # noqa: B010
        return model
    if not callable(model):
        raise UsageError(f"compile() needs an nn.Module or a function; got a {type(model).__name__}")
    guard = _GuardedCall(torch.compile(model, **kwargs), model, state, what)

    @functools.wraps(model)
    def compiled(*args: Any, **kwargs: Any) -> Any:
        return guard(*args, **kwargs)

    compiled._ampkit_compile = state  # type: ignore[attr-defined]
    return compiled


def compile_state(model: Any) -> CompileState | None:
    """What :func:`compile_model` did to ``model`` (None when it was not asked to compile it)."""
    state = getattr(model, "_ampkit_compile", None)
    if state is None and isinstance(getattr(model, "module", None), nn.Module):  # DDP wraps the model
        model = model.module
        state = getattr(model, "_ampkit_compile", None)
    if not isinstance(state, CompileState):
        return None
    if (
        isinstance(model, nn.Module)
        and state.status != "eager"
        and not isinstance(model._compiled_call_impl, _GuardedCall)
    ):
        return None  # a copy (copy.deepcopy, pickle): nn.Module drops the compiled call, the copy runs eager
    return state

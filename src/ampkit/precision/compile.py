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
  module (or function) runs eager from then on (:mod:`.compile_guard`, whose names are
  re-exported here).
"""

from __future__ import annotations

import functools
import shutil
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import UsageError
from ..warn import warn
from .compile_guard import EAGER_BACKWARD_CALLS as EAGER_BACKWARD_CALLS
from .compile_guard import CompileState as CompileState
from .compile_guard import CompileWarning as CompileWarning
from .compile_guard import GuardedCall
from .compile_guard import compile_errors as compile_errors
from .compile_guard import compile_state as compile_state

DEFAULT_BACKEND = "inductor"
"""torch.compile's own default: TorchInductor (C++/OpenMP kernels on CPU, Triton on GPU)."""


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
        guard = GuardedCall(torch.compile(_own_frame(model), **kwargs), model._call_impl, state, what)

        def uncompile() -> None:
            model._compiled_call_impl = None  # plain eager calls from now on, no wrapper

        guard.on_fallback = uncompile
        model._compiled_call_impl = guard
        setattr(model, "_ampkit_compile", state)  # noqa: B010
        return model
    if not callable(model):
        raise UsageError(f"compile() needs an nn.Module or a function; got a {type(model).__name__}")
    guard = GuardedCall(torch.compile(model, **kwargs), model, state, what)

    @functools.wraps(model)
    def compiled(*args: Any, **kwargs: Any) -> Any:
        return guard(*args, **kwargs)

    compiled._ampkit_compile = state  # type: ignore[attr-defined]
    return compiled

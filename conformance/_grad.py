"""Gradient helpers for the conformance suite (autodiff backends only).

The suite needs one operation the array API standard lacks: the value and gradients of
a scalar function of some arrays. Adapters can provide it as an attribute

    grad_fn(f, *arrays) -> (value, (grad_1, ..., grad_n))

where ``f(*arrays)`` returns a 0-d array of the backend and each ``grad_i`` has the
shape, dtype and device of ``arrays[i]``. The built-in torch and jax adapters are served
by the helpers below (keyed by the namespace they serve), so the adapters stay untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

GradFn = Callable[..., tuple[Any, tuple[Any, ...]]]


def _torch_grad(f: Callable[..., Any], *arrays: Any) -> tuple[Any, tuple[Any, ...]]:
    import torch

    xs = [a.detach().clone().requires_grad_(True) for a in arrays]
    v = f(*xs)
    if not v.requires_grad:  # nothing flows back (detached result): the gradient is 0
        return v.detach(), tuple(torch.zeros_like(x) for x in xs)
    gs = torch.autograd.grad(v, xs, allow_unused=True)
    grads = tuple(
        torch.zeros_like(x) if g is None else g.detach() for x, g in zip(xs, gs, strict=True)
    )
    return v.detach(), grads


def _jax_grad(f: Callable[..., Any], *arrays: Any) -> tuple[Any, tuple[Any, ...]]:
    # jit the whole value-and-gradient (as a jitted train step would): one XLA program
    # per case instead of one per kernel for the JVP and one for its transpose
    import jax

    v, gs = jax.jit(jax.value_and_grad(f, argnums=tuple(range(len(arrays)))))(*arrays)
    return v, tuple(gs)


#: built-in helpers, keyed by the namespace name the adapter serves
BUILTIN: dict[str, GradFn] = {"array_api_compat.torch": _torch_grad, "jax.numpy": _jax_grad}


def grad_fn_for(backend: Any) -> GradFn | None:
    """The gradient hook of ``backend``: its ``grad_fn`` attribute, else the built-in
    helper of the first namespace it serves (torch, jax)."""
    hook = getattr(backend, "grad_fn", None)
    if callable(hook):
        return hook
    for ns in backend.namespace_names:
        if ns in BUILTIN:
            return BUILTIN[ns]
    return None


def value_and_grad(backend: Any, f: Callable[..., Any],
                   arrays: Sequence[Any]) -> tuple[Any, tuple[Any, ...]]:
    fn = grad_fn_for(backend)
    if fn is None:
        raise NotImplementedError(
            f"backend {backend.name!r} supports autodiff but provides no gradient hook: "
            "give the adapter a grad_fn(f, *arrays) -> (value, grads) attribute"
        )
    return fn(f, *arrays)

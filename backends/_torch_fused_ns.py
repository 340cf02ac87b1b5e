"""The array namespace the torch fuser hands to the kernels it compiles.

It is ``array_api_compat.torch`` except for the functions whose values come from a
math library (``sqrt``, ``log``, ``exp``, trigonometric and hyperbolic functions,
``hypot``): these are *opaque custom operators* (``zpml::eager_unary``,
``zpml::eager_binary``) whose implementation is the eager aten function. Inductor cannot
look inside them, so it calls aten's kernel for them (an extern call on the whole
tensor) and fuses the exactly rounded code around them. Every value therefore comes
from the same function as in an eager call: fused == eager bit for bit, also for
kernels using ``log``/``exp``/``sqrt``/trigonometry. (Inductor's own vectorised libm
differs from aten's in the last ulp; aten's CPU ``sqrt`` is MKL-VML, which is not
correctly rounded, while inductor's is.)

Imported only by the fuser, on an eager path, once torch is loaded. Registered as one of
the torch adapter's namespaces, so ``get_backend`` maps it to the torch adapter.
"""

from __future__ import annotations

from typing import Any

import array_api_compat.torch as _compat
import torch
from torch.library import custom_op

_UNARY = ("sqrt", "log", "exp", "sin", "cos", "tan", "tanh", "sinh", "cosh", "expm1",
          "log1p", "log2", "log10", "asin", "acos", "atan", "asinh", "acosh", "atanh")
_BINARY = ("hypot", "atan2", "logaddexp")


@custom_op("zpml::eager_unary", mutates_args=())
def eager_unary(x: torch.Tensor, fn: str) -> torch.Tensor:
    """``array_api_compat.torch.<fn>(x)``, evaluated eagerly (aten)."""
    return getattr(_compat, fn)(x)


@eager_unary.register_fake
def _eager_unary_fake(x: torch.Tensor, fn: str) -> torch.Tensor:
    return torch.empty_like(x)


@custom_op("zpml::eager_binary", mutates_args=())
def eager_binary(x: torch.Tensor, y: torch.Tensor, fn: str) -> torch.Tensor:
    """``array_api_compat.torch.<fn>(x, y)`` of two tensors, evaluated eagerly (aten)."""
    return getattr(_compat, fn)(x, y)


@eager_binary.register_fake
def _eager_binary_fake(x: torch.Tensor, y: torch.Tensor, fn: str) -> torch.Tensor:
    shape = torch.broadcast_shapes(x.shape, y.shape)
    return x.new_empty(shape, dtype=torch.promote_types(x.dtype, y.dtype))


def _unary(fn: str) -> Any:
    def f(x: Any, /) -> Any:
        if isinstance(x, torch.Tensor) and not x.is_complex():
            return eager_unary(x, fn)
        return getattr(_compat, fn)(x)

    f.__name__ = f.__qualname__ = fn
    return f


def _binary(fn: str) -> Any:
    def f(x: Any, y: Any, /) -> Any:
        if (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
                and not (x.is_complex() or y.is_complex())):
            return eager_binary(x, y, fn)
        return getattr(_compat, fn)(x, y)

    f.__name__ = f.__qualname__ = fn
    return f


# everything else: array_api_compat.torch itself
globals().update({k: v for k, v in vars(_compat).items()
                  if not k.startswith("__") or k in ("__array_namespace_info__",
                                                     "__array_api_version__")})
globals().update({fn: _unary(fn) for fn in _UNARY if hasattr(_compat, fn)})
globals().update({fn: _binary(fn) for fn in _BINARY if hasattr(_compat, fn)})

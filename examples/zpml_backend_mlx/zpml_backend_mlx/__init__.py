"""zpml_core backend adapter for MLX, with gradients. MLX is not patched: its array-API
gaps are filled in a wrapper namespace handed to the core by the namespace hook."""

import types
from typing import Any

import mlx.core as mx
import numpy as np

from zpml_core import Backend
from zpml_core.autodiff.rules import gate_backward


class _Namespace(types.ModuleType):  # mlx.core, with the gaps filled in below
    def __getattr__(self, name: str) -> Any:
        return getattr(mx, name)


xp: Any = _Namespace("zpml_backend_mlx.xp")
xp.bool = mx.bool_


def _no_device(fn: Any) -> Any:  # unified memory: MLX takes no device= keyword
    return lambda *a, device=None, copy=None, **k: fn(*a, **k)


for _name in ("zeros", "ones", "full", "empty", "arange", "zeros_like", "ones_like",
              "full_like", "astype"):
    setattr(xp, _name, _no_device(getattr(mx, _name)))
xp.asarray = _no_device(lambda obj, dtype=None: mx.array(obj, dtype=dtype))


def _hypot(x: Any, y: Any) -> Any:  # sqrt(x² + y²) without overflow; inf if one is inf
    a, b = mx.abs(x), mx.abs(y)
    hi, lo = mx.maximum(a, b), mx.minimum(a, b)
    r = mx.where(hi == 0, 0, lo / mx.where(hi == 0, 1, hi))
    return mx.where(mx.isinf(a) | mx.isinf(b), mx.inf, hi * mx.sqrt(1 + r * r))


def _with_vjp(fwd: Any, dfdx: Any) -> Any:  # f(x) whose derivative is dfdx(x, f(x))
    f = mx.custom_function(fwd)
    f.vjp(lambda x, cot, y: cot * dfdx(x, y))  # one input: x is the array itself
    return f


# MLX's CPU exp/sin/cos are float32-accurate even in float64 (float32 exp overflows from
# ~88.70); its expm1 and tan are accurate: sin x = 2t/(1+t²), cos x = (1-t²)/(1+t²) with
# t = tan(x/2) (u = 1/t where |t| > 1), and cos x = sin x / tan x near the zeros of cos.
def _exp(x: Any) -> Any:
    return mx.where(x < 0, 1 / (mx.expm1(-x) + 1), mx.expm1(x) + 1)


def _sin_cos(x: Any) -> tuple[Any, Any]:
    t = mx.tan(x / 2)
    big = mx.abs(t) > 1
    u = mx.where(big, 1 / t, t)
    s, c = 2 * u / (1 + u * u), mx.where(big, u * u - 1, 1 - u * u) / (1 + u * u)
    tx, tiny = mx.tan(x), mx.abs(x) < 1e-8  # sin x = x, cos x = 1 there
    return mx.where(tiny, x, s), mx.where(tiny, 1.0, mx.where(mx.abs(tx) > 1, s / tx, c))


xp.hypot = _hypot
xp.exp = _with_vjp(_exp, lambda x, y: y)
xp.sin = _with_vjp(lambda x: _sin_cos(x)[0], lambda x, y: _sin_cos(x)[1])
xp.cos = _with_vjp(lambda x: _sin_cos(x)[1], lambda x, y: -_sin_cos(x)[0])
xp.tan = _with_vjp(mx.tan, lambda x, y: 1 + y * y)


_GATES: dict[Any, Any] = {}  # policy -> gate


class MLXBackend(Backend):
    name = "mlx"
    namespace_names = ("zpml_backend_mlx.xp",)
    array_types = ("mlx.core.array",)  # served through the namespace hook
    supports_autodiff = True

    def array_namespace(self, x: Any) -> Any:  # the namespace hook
        return xp

    def array_device(self, x: Any) -> Any:  # MLX arrays have no .device
        return mx.default_device()

    def is_lazy(self, x: Any) -> bool:  # values computed on demand (lazy, not traced)
        return True

    def stop_gradient(self, x: Any) -> Any:
        return mx.stop_gradient(x)

    def signed_zero(self, x: Any) -> Any:  # copysign(0, x) whose derivative is 1
        d = mx.stop_gradient(x)
        return d * 0.0 - (d - x)

    def clip_scalar(self, x: Any, lo: float | None, hi: float | None) -> Any:
        """Clip whose gradient passes at a bound (``mx.clip``'s is 0 there)."""
        x = x if lo is None else mx.where(x < lo, lo, x)
        return x if hi is None else mx.where(x > hi, hi, x)

    def gate(self, value: Any, bottom: Any, policy: Any, *, xp: Any) -> Any:
        g = _GATES.get(policy)
        if g is None:  # identity whose backward applies the policy to the cotangent
            g = _GATES[policy] = mx.custom_function(lambda v, b: v)
            g.vjp(lambda p, cot, out: (gate_backward(policy, (p[1],), cot, xp=xp),
                                       mx.zeros_like(p[1])))
        return g(value, bottom)

    def namespace(self) -> Any:  # the rest is used by the conformance suite
        return xp

    def asarray(self, a: Any, *, dtype: Any = None, device: Any = None) -> Any:
        return mx.array(np.array(a, copy=True), dtype=dtype)

    def to_numpy(self, x: Any) -> Any:
        return np.array(x, copy=True)

    def grad_fn(self, f: Any, *arrays: Any) -> tuple[Any, tuple[Any, ...]]:
        """``(value, (grad_1, ..., grad_n))``: a tuple even for one array."""
        value, grads = mx.value_and_grad(f, argnums=list(range(len(arrays))))(*arrays)
        return value, tuple(grads) if isinstance(grads, (tuple, list)) else (grads,)

"""Vectorised Signed Common Meadow operations.

Every op returns ``SCMArray(value, bottom)``: ``bottom`` is a bool mask of the broadcast
shape, ``value`` carries ``+0`` at bottom positions and the IEEE result elsewhere.

Rules shared by all ops:

* ``bottom ⊇ mask | ¬finite(operands)``; a result that is not finite is bottom.
* Masks are decided by exact predicates on the inputs, never by whether one library's
  libm overflowed. Subnormal operands count as (signed) zero everywhere (DAZ): in every
  predicate, and in the computation wherever a subnormal operand could change a
  normal-range result (``mul``, ``div`` numerator, ``pow``, ``sqrt``). Hence numpy,
  torch, jax (which flushes subnormals on CPU) and array-api-strict agree bit for bit on
  the masks.
* float16/bfloat16: masks that depend on a result are decided in float32 with the half
  dtype's constants ("the half result overflows" is the exact ``|r| ≥ max + ulp/2``)
  and the value is rounded once, so eager, fused and compiled code agree bit for bit
  (``zpml_core._precision``).
* Every predicate reads stop-gradient operands, and the differentiated operands are
  replaced by safe values at bottom positions *before* any arithmetic (``y → 1`` for a
  divisor), so no differentiated intermediate ever holds inf/NaN — for any input — and
  gradients at bottom positions are exactly 0, whatever ``where``'s backward does
  (``zpml_core._scm_real``).

Public functions validate and convert arguments, detect the namespace once and run a
kernel through the backend adapter (``fuse``: jit-compiled on JAX, op by op elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from zpml_core import _fast, _xp
from zpml_core._registry import Backend, get_backend
from zpml_core._scm_complex import (
    _k_add_complex,
    _k_div_complex,
    _k_inv_complex,
    _k_mul_complex,
    _k_pow_complex,
    _k_unary_complex,
)
from zpml_core._scm_int import k_int_binary, k_int_neg
from zpml_core._scm_real import (
    _k_add,
    _k_div,
    _k_exp,
    _k_inv,
    _k_log,
    _k_mul,
    _k_neg,
    _k_pow,
    _k_sqrt,
    _k_trig,
)
from zpml_core._xp import Array, Namespace

__all__ = [
    "SCMArray",
    "add",
    "cos",
    "div",
    "exp",
    "inv",
    "log",
    "mul",
    "neg",
    "pow",
    "sin",
    "sqrt",
    "sub",
    "tan",
]


class SCMArray(NamedTuple):
    """An SCM result: ``value`` (0 at bottom) and the boolean ``bottom`` mask."""

    value: Array
    bottom: Array


_as_scm = tuple.__new__


def _scm_result(pair: Any) -> SCMArray:
    """An adapter's fast-path ``(value, bottom)`` as an :class:`SCMArray`: one C call for
    a 2-tuple (NamedTuple's own ``__new__`` is a Python function), the checked
    constructor for anything else."""
    if type(pair) is tuple and len(pair) == 2:
        return _as_scm(SCMArray, pair)
    return SCMArray(*pair)


def _finish(be: Backend, xp: Namespace, value: Array, bottom: Array) -> SCMArray:
    """Package a kernel result (the single exit point of every public op).

    The value is gated with the active gradient policy (layer ``"scm_ops"``).
    """
    from zpml_core.autodiff.rules import gate_output

    return SCMArray(gate_output(be, value, bottom, "scm_ops", xp=xp), bottom)


# ---------------------------------------------------------------------------------------
# kernels — floating dtypes: zpml_core._scm_real and zpml_core._scm_complex


# ---------------------------------------------------------------------------------------
# public API


def _prepare_binary(
    x: object, y: object, mask_x: object, mask_y: object, *, promote: bool
) -> tuple[Namespace, Backend, Array, Array, Array | None, Array | None]:
    xp = _xp.namespace(x, y, mask_x, mask_y, names=("x", "y", "mask_x", "mask_y"))
    xa, ya = _xp.float_operands(xp, ("x", "y"), (x, y), promote=promote)
    mx = _xp.as_mask(xp, mask_x, "mask_x", xa)
    my = _xp.as_mask(xp, mask_y, "mask_y", xa)
    shapes = [("x", xa.shape), ("y", ya.shape)]
    if mx is not None:
        shapes.append(("mask_x", mx.shape))
    if my is not None:
        shapes.append(("mask_y", my.shape))
    _xp.broadcast_shape(shapes)
    return xp, get_backend(xp), xa, ya, mx, my


def _prepare_unary(
    x: object, mask: object, *, promote: bool = True
) -> tuple[Namespace, Backend, Array, Array | None]:
    xp = _xp.namespace(x, mask, names=("x", "mask"))
    (xa,) = _xp.float_operands(xp, ("x",), (x,), promote=promote)
    m = _xp.as_mask(xp, mask, "mask", xa)
    if m is not None:
        _xp.broadcast_shape([("x", xa.shape), ("mask", m.shape)])
    return xp, get_backend(xp), xa, m


def _run(backend: Backend, kernel: Callable[..., Any], /, *arrays: Array | None,
         **static: Any) -> tuple[Array, Array]:
    return backend.fuse(kernel)(*arrays, **static)


def _check_integer_arithmetic(be: Backend, dtype: Any, names: str) -> None:
    if not be.integer_arithmetic(dtype):
        raise TypeError(
            f"{names}: the {be.name} backend has no arithmetic for dtype {dtype}; cast to a "
            "signed integer or floating dtype"
        )


def _binary(op: str, x: object, y: object, mask_x: object, mask_y: object) -> SCMArray:
    if mask_x is None and mask_y is None:  # the fused fast path (zpml_core._fast)
        fused = _fast.binary(op, x, y)
        if fused is not None:
            return _scm_result(fused)
    xp, be, xa, ya, mx, my = _prepare_binary(x, y, mask_x, mask_y, promote=op == "div")
    dt = xa.dtype
    if not _xp.is_floating(xp, dt):
        if op == "sub" and dt == xp.bool:
            raise TypeError(
                "x and y: scm.sub does not support bool operands (no bool subtraction); "
                "cast them to an integer or floating dtype"
            )
        _check_integer_arithmetic(be, dt, "x and y")
        v, b = _run(be, k_int_binary, xa, ya, mx, my, xp=xp, op=op)
    elif _xp.is_complex(xp, dt):
        if op == "div":
            v, b = _run(be, _k_div_complex, xa, ya, mx, my, xp=xp, be=be)
        elif op == "mul":
            v, b = _run(be, _k_mul_complex, xa, ya, mx, my, xp=xp, be=be)
        else:
            v, b = _run(be, _k_add_complex, xa, ya, mx, my, xp=xp, be=be,
                        subtract=op == "sub")
    else:
        kernel, static = real_kernel(op)
        v, b = _run(be, kernel, xa, ya, mx, my, xp=xp, be=be, **static)
    return _finish(be, xp, v, b)


def add(x: Array, y: Array, *, mask_x: Array | None = None,
        mask_y: Array | None = None) -> SCMArray:
    """SCM addition: ``x + y``; ⊥ where a mask is set, an operand or the sum is not finite."""
    return _binary("add", x, y, mask_x, mask_y)


def sub(x: Array, y: Array, *, mask_x: Array | None = None,
        mask_y: Array | None = None) -> SCMArray:
    """SCM subtraction: ``x - y``; ⊥ where a mask is set, an operand or the result is not finite."""
    return _binary("sub", x, y, mask_x, mask_y)


def mul(x: Array, y: Array, *, mask_x: Array | None = None,
        mask_y: Array | None = None) -> SCMArray:
    """SCM multiplication: ``x * y``; ⊥ where a mask is set or an operand/product is not finite.

    A subnormal factor counts as signed zero (DAZ): ``mul(1e-320, 1e308) = 0.0``.
    """
    return _binary("mul", x, y, mask_x, mask_y)


def div(x: Array, y: Array, *, mask_x: Array | None = None,
        mask_y: Array | None = None) -> SCMArray:
    """SCM division ``x / y`` (real): ⊥ iff a mask is set, ``¬fin(x)``, ``¬fin(y)``,
    ``|y| < sqrt(tiny)`` (``y == 0`` and ``y·y`` underflow, DAZ), or ``|x|/(y·y)`` overflows.

    Complex operands: ⊥ iff a mask is set, an operand is not finite, ``y == 0`` or
    ``x/y`` is not finite. Integer/bool operands are promoted to the default float.
    """
    return _binary("div", x, y, mask_x, mask_y)


def _unary(name: str, x: object, mask: object) -> SCMArray:
    if mask is None:  # the fused fast path (zpml_core._fast)
        fused = _fast.unary(name, x)
        if fused is not None:
            return _scm_result(fused)
    xp, be, xa, m = _prepare_unary(x, mask, promote=name != "neg")
    dt = xa.dtype
    if name == "neg" and not _xp.is_floating(xp, dt):
        if dt == xp.bool:
            raise TypeError(
                "x: scm.neg does not support bool arrays (no bool negation); cast x to "
                "an integer or floating dtype (or use ~x for logical not)"
            )
        _check_integer_arithmetic(be, dt, "x")
        v, b = _run(be, k_int_neg, xa, m, xp=xp)
    elif _xp.is_complex(xp, dt) and name != "neg":
        if name == "inv":
            v, b = _run(be, _k_inv_complex, xa, m, xp=xp, be=be)
        else:
            v, b = _run(be, _k_unary_complex, xa, m, xp=xp, be=be, fn=name,
                        zero_is_bottom=name == "log", safe=0.0 if name in _ZERO_SAFE else 1.0)
    else:
        kernel, static = real_kernel(name)
        v, b = _run(be, kernel, xa, m, xp=xp, be=be, **static)
    return _finish(be, xp, v, b)


_ZERO_SAFE = frozenset({"exp", "sin", "cos", "tan"})
_REAL_KERNELS: dict[str, tuple[Callable[..., tuple[Array, Array]], dict[str, Any]]] = {
    "add": (_k_add, {"subtract": False}),
    "sub": (_k_add, {"subtract": True}),
    "mul": (_k_mul, {}),
    "div": (_k_div, {}),
    "neg": (_k_neg, {}),
    "inv": (_k_inv, {}),
    "log": (_k_log, {}),
    "exp": (_k_exp, {}),
    "sqrt": (_k_sqrt, {}),
    "sin": (_k_trig, {"fn": "sin"}),
    "cos": (_k_trig, {"fn": "cos"}),
    "tan": (_k_trig, {"fn": "tan"}),
}


def real_kernel(op: str) -> tuple[Callable[..., tuple[Array, Array]], dict[str, Any]]:
    """``(kernel, static keywords)`` of the real floating SCM op ``op`` (``add sub mul div``:
    ``kernel(x, y, mask_x, mask_y, *, xp, be, **static)``; the unary ops:
    ``kernel(x, mask, *, xp, be, **static)``) — what the public op runs, for adapters
    whose fast path calls the same compiled kernel."""
    return _REAL_KERNELS[op]


def inv(x: Array, *, mask: Array | None = None) -> SCMArray:
    """SCM reciprocal ``1/x``: ⊥ iff masked, ``¬fin(x)`` or ``|x| < tiny`` (zero, DAZ).

    Note ``inv(y)`` is not ``div(1, y)`` for ``sqrt(tiny) > |y| ≥ tiny`` (div's y² probe).
    """
    return _unary("inv", x, mask)


def neg(x: Array, *, mask: Array | None = None) -> SCMArray:
    """SCM negation ``-x`` (``neg(0.0) = -0.0``): ⊥ iff masked or ``¬fin(x)``. No promotion."""
    return _unary("neg", x, mask)


def log(x: Array, *, mask: Array | None = None) -> SCMArray:
    """SCM natural log: ⊥ iff masked, ``¬fin(x)`` or ``x < tiny`` (``x ≤ 0``, subnormal).

    Complex: ⊥ iff masked, not finite or ``x == 0``; principal branch otherwise.
    """
    return _unary("log", x, mask)


def exp(x: Array, *, mask: Array | None = None) -> SCMArray:
    """SCM exponential: ⊥ iff masked, ``¬fin(x)`` or ``x > exp_max`` (f64 709.782712893384,
    f32 88.72283172607422, f16 11.0859375). Underflow to 0 is not ⊥.
    """
    return _unary("exp", x, mask)


def sqrt(x: Array, *, mask: Array | None = None) -> SCMArray:
    """SCM square root: ⊥ iff masked, ``¬fin(x)`` or ``x ≤ -tiny``; ``sqrt(-0.0) = -0.0``
    and subnormal ``x`` gives a signed zero. Complex: principal root, ⊥ only if not finite.
    """
    return _unary("sqrt", x, mask)


def sin(x: Array, *, mask: Array | None = None) -> SCMArray:
    """SCM sine: ⊥ iff masked or ``¬fin(x)`` (complex: also on overflow)."""
    return _unary("sin", x, mask)


def cos(x: Array, *, mask: Array | None = None) -> SCMArray:
    """SCM cosine: ⊥ iff masked or ``¬fin(x)`` (complex: also on overflow)."""
    return _unary("cos", x, mask)


def tan(x: Array, *, mask: Array | None = None) -> SCMArray:
    """SCM tangent: ⊥ iff masked, ``¬fin(x)`` or ``¬fin(tan(x))`` (only float16 overflows)."""
    return _unary("tan", x, mask)


def pow(x: Array, exponent: Array | float, *, mask: Array | None = None) -> SCMArray:
    """SCM power ``x ** exponent``.

    Real base: ⊥ iff masked, an operand is not finite, ``x ≈ 0`` with ``e < 0``, ``x < 0``
    with non-integral ``e`` (``e ≠ floor(e)`` in the base's dtype) or ``x**e`` overflows.
    ``0**0 = 1``. Complex base: ⊥ iff masked, not finite, ``x == 0`` with ``e < 0`` or
    overflow. The exponent must be real (complex → ``TypeError``); it is converted to the
    base's real dtype.
    """
    if isinstance(exponent, complex) and not isinstance(exponent, (int, float)):
        raise TypeError("exponent must be real, got a complex number")
    xp = _xp.namespace(x, exponent, mask, names=("x", "exponent", "mask"))
    (xa,) = _xp.float_operands(xp, ("x",), (x,), promote=True)
    rdt = _xp.real_dtype(xp, xa.dtype)
    if _xp.is_array(exponent):
        e_arr: Array = _xp.as_input(xp, exponent)
        if _xp.is_complex(xp, e_arr.dtype):
            raise TypeError(f"exponent must be real, got an array of dtype {e_arr.dtype}")
        ea = e_arr if e_arr.dtype == rdt else xp.astype(e_arr, rdt)
    elif isinstance(exponent, (int, float)):
        ea = _xp.scalar_array(xp, "exponent", exponent, rdt, _xp.device(xa))
    else:
        raise TypeError(f"exponent must be an array or a real number, got {type(exponent)}")
    m = _xp.as_mask(xp, mask, "mask", xa)
    shapes = [("x", xa.shape), ("exponent", ea.shape)]
    if m is not None:
        shapes.append(("mask", m.shape))
    _xp.broadcast_shape(shapes)
    be = get_backend(xp)
    kernel = _k_pow_complex if _xp.is_complex(xp, xa.dtype) else _k_pow
    v, b = _run(be, kernel, xa, ea, m, xp=xp, be=be)
    return _finish(be, xp, v, b)


# zeroproofml's backend-suffixed names scm_<op>_{numpy,torch,jax}: deprecated aliases of
# the functions above (zpml_core._compat_names)
from zpml_core import _compat_names  # noqa: E402

globals().update({name: getattr(_compat_names, name) for name in _compat_names.SCM_ALIASES})

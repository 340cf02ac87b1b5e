"""Vectorised Signed Common Meadow operations (SPEC §1).

Every op returns ``SCMArray(value, bottom)``: ``bottom`` is a bool mask of the broadcast
shape, ``value`` carries ``+0`` at bottom positions and the IEEE result elsewhere.

Rules shared by all ops (SPEC §1.1, §10 #1):

* ``bottom ⊇ mask | ¬finite(operands)``; a result that is not finite is bottom.
* Masks are decided by exact predicates on the inputs, never by whether one library's
  libm overflowed. Subnormal operands count as (signed) zero everywhere (DAZ): in every
  predicate, and in the computation wherever a subnormal operand could change a
  normal-range result (``mul``, ``div`` numerator, ``pow``, ``sqrt``). Hence numpy,
  torch, jax (which flushes subnormals on CPU) and array-api-strict agree bit for bit on
  the masks.
* Operands are replaced by safe values at bottom positions *before* the operation
  (``y → 1`` for a divisor), so no branch ever holds inf/NaN and gradients at bottom
  positions are exactly 0.

Public functions validate and convert arguments, detect the namespace once and run a
kernel through the backend adapter (``fuse``: jit-compiled on JAX, op by op elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from zpml_core import _daz, _xp
from zpml_core._layout import ELEMENTWISE, layout
from zpml_core._registry import Backend, get_backend
from zpml_core._scm_int import k_int_binary, k_int_neg
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


# ---------------------------------------------------------------------------------------
# small kernel helpers (pure array API, ``xp`` keyword-only)


def _or(a: Array, b: Array | None) -> Array:
    return a if b is None else a | b


def _keep(ok: Array, m1: Array | None, m2: Array | None = None) -> Array:
    """``ok & ~m1 & ~m2`` for optional masks."""
    if m1 is not None:
        ok = ok & ~m1
    if m2 is not None:
        ok = ok & ~m2
    return ok


def _finish(be: Backend, xp: Namespace, value: Array, bottom: Array) -> SCMArray:
    """Package a kernel result (the single exit point of every public op).

    The value is gated with the active gradient policy (layer ``"scm_ops"``).
    """
    from zpml_core.autodiff.rules import gate_output

    return SCMArray(gate_output(be, value, bottom, "scm_ops", xp=xp), bottom)


# ---------------------------------------------------------------------------------------
# kernels — real floating dtypes


@layout(ELEMENTWISE)
def _k_add(x: Array, y: Array, mx: Array | None, my: Array | None, *, xp: Namespace,
           be: Backend, subtract: bool) -> tuple[Array, Array]:
    # ¬fin(x) ∨ ¬fin(y) ⟹ ¬fin(x ± y), and d(x ± y) has no singular factor, so the
    # result's finiteness is the whole rule. DAZ: two subnormals could sum to a normal.
    c = _xp.consts(xp, x.dtype)
    xs = _daz.flush(x, xp.abs(x), c.tiny, xp=xp, be=be)
    ys = _daz.flush(y, xp.abs(y), c.tiny, xp=xp, be=be)
    r = xs - ys if subtract else xs + ys
    bottom = _or(_or(~xp.isfinite(r), mx), my)
    return xp.where(bottom, 0.0, r), bottom


@layout(ELEMENTWISE)
def _k_mul(x: Array, y: Array, mx: Array | None, my: Array | None, *,
           xp: Namespace, be: Backend) -> tuple[Array, Array]:
    # ⊥ ⟺ mask ∨ ¬fin(x) ∨ ¬fin(y) ∨ ¬fin(x·y); a subnormal factor gives a signed zero.
    c = _xp.consts(xp, x.dtype)
    ax, ay = xp.abs(x), xp.abs(y)
    keep = _keep((ax <= c.max) & (ay <= c.max), mx, my)
    r = xp.where(keep, x, 0.0) * xp.where(keep, y, 0.0)
    ok = keep & xp.isfinite(r)
    # DAZ: a subnormal factor makes the product a signed zero
    sub = (ax < c.tiny) | (ay < c.tiny)
    r = xp.where(sub, be.signed_zero(r), r)
    return xp.where(ok, r, 0.0), ~ok


@layout(ELEMENTWISE)
def _k_div(x: Array, y: Array, mx: Array | None, my: Array | None, *,
           xp: Namespace, be: Backend) -> tuple[Array, Array]:
    # ⊥ ⟺ mask ∨ ¬fin(x) ∨ ¬fin(y) ∨ y≈0 ∨ |x|/(y·y) overflows        (SPEC §1.2)
    # * DAZ: y·y below the smallest normal counts as 0, i.e. |y| < sqrt(tiny) = 2**(emin/2).
    # * The |x|/(y·y) probe is the multiplication |x| > fl(y·y)·ovf, which guarantees
    #   the quotient is finite when not ⊥ and needs no second division (DEVIATIONS §2).
    #   For |y| ≥ sqrt(tiny), a finite |x|/(y·y) implies a finite x/y.
    # All predicates read x and y directly, so jit compiles them into one loop.
    c = _xp.consts(xp, x.dtype)
    ax, ay = xp.abs(x), xp.abs(y)
    ok = (ay >= c.sqrt_tiny) & (ay <= c.max) & (ax <= c.max) & (ax <= (y * y) * c.ovf)
    ok = _keep(ok, mx, my)
    # numerator: a signed zero at ⊥ (keeps d/dy finite) and where subnormal (DAZ)
    xs = xp.where(ok & (ax >= c.tiny), x, be.signed_zero(x))
    return xp.where(ok, xs / xp.where(ok, y, 1.0), 0.0), ~ok


@layout(ELEMENTWISE)
def _k_inv(x: Array, m: Array | None, *, xp: Namespace) -> tuple[Array, Array]:
    # ⊥ ⟺ mask ∨ ¬fin(x) ∨ x≈0 (DAZ); 1/x cannot overflow for |x| ≥ tiny.
    c = _xp.consts(xp, x.dtype)
    ax = xp.abs(x)
    ok = _keep((ax >= c.tiny) & (ax <= c.max), m)
    return xp.where(ok, 1.0 / xp.where(ok, x, 1.0), 0.0), ~ok


@layout(ELEMENTWISE)
def _k_neg(x: Array, m: Array | None, *, xp: Namespace) -> tuple[Array, Array]:
    bottom = _or(~xp.isfinite(x), m)
    return xp.where(bottom, 0, -x), bottom


@layout(ELEMENTWISE)
def _k_log(x: Array, m: Array | None, *, xp: Namespace) -> tuple[Array, Array]:
    # ⊥ ⟺ mask ∨ x ≤ 0 ∨ x subnormal (DAZ) ∨ ¬fin(x); log of a positive normal is finite.
    c = _xp.consts(xp, x.dtype)
    ok = _keep((x >= c.tiny) & (x <= c.max), m)
    return xp.where(ok, xp.log(xp.where(ok, x, 1.0)), 0.0), ~ok


@layout(ELEMENTWISE)
def _k_exp(x: Array, m: Array | None, *, xp: Namespace) -> tuple[Array, Array]:
    # ⊥ ⟺ mask ∨ ¬fin(x) ∨ x > exp_max(dtype)   (exact overflow border, SPEC §1.2)
    c = _xp.consts(xp, x.dtype)
    ok = _keep((x <= c.exp_max) & (x >= -c.max), m)
    return xp.where(ok, xp.exp(xp.where(ok, x, 0.0)), 0.0), ~ok


@layout(ELEMENTWISE)
def _k_sqrt(x: Array, m: Array | None, *, xp: Namespace, be: Backend) -> tuple[Array, Array]:
    # ⊥ ⟺ mask ∨ ¬fin(x) ∨ x ≤ -tiny.  |x| < tiny is a signed zero: sqrt(±0) = ±0,
    # computed as a detached copysign(0, x) (gradient 0 there, DEVIATIONS §1).
    c = _xp.consts(xp, x.dtype)
    pos = _keep((x >= c.tiny) & (x <= c.max), m)
    zero = _keep((x > -c.tiny) & (x < c.tiny), m)
    r = xp.sqrt(xp.where(pos, x, 1.0))
    signed_zero = xp.where(zero, be.stop_gradient(x) * 0.0, 0.0)
    return xp.where(pos, r, signed_zero), ~(pos | zero)


_F16_MAX = 65504.0


@layout(ELEMENTWISE)
def _k_trig(x: Array, m: Array | None, *, xp: Namespace, be: Backend,
            fn: str) -> tuple[Array, Array]:
    # sin/cos never overflow; tan of a finite input overflows only in float16 (SPEC §1.2),
    # where a detached probe extends the mask before the attached evaluation.
    f = getattr(xp, fn)
    ok = _keep(xp.isfinite(x), m)
    if fn == "tan" and _xp.consts(xp, x.dtype).max == _F16_MAX:
        probe = f(be.stop_gradient(xp.where(ok, x, 0.0)))
        ok = ok & xp.isfinite(probe)
    return xp.where(ok, f(xp.where(ok, x, 0.0)), 0.0), ~ok


@layout(ELEMENTWISE)
def _k_pow(x: Array, e: Array, m: Array | None, *, xp: Namespace,
           be: Backend) -> tuple[Array, Array]:
    # ⊥ ⟺ mask ∨ ¬fin(x) ∨ ¬fin(e) ∨ (x≈0 ∧ e<0) ∨ (x<0 ∧ e∉ℤ) ∨ ¬fin(x**e)
    # DAZ on base and exponent. 0**0 = 1 is computed as 1**0, so both partial
    # derivatives are 0 there on every backend. The overflow probe runs detached; the
    # attached result uses operands re-substituted at the extended mask.
    c = _xp.consts(xp, x.dtype)
    sg = be.stop_gradient
    ax, ae = xp.abs(x), xp.abs(e)
    xf = _daz.flush(x, ax, c.tiny, xp=xp, be=be)
    ef = _daz.flush(e, ae, c.tiny, xp=xp, be=be)
    ok = _keep((ax <= c.max) & (ae <= c.max), m)
    ok = ok & ~((ax < c.tiny) & (e <= -c.tiny))
    ok = ok & ~((x <= -c.tiny) & (ef != xp.floor(ef)))
    base_ok = ok & ~((ax < c.tiny) & (ae < c.tiny))
    probe = sg(xp.where(base_ok, xf, 1.0)) ** sg(xp.where(ok, ef, 0.0))
    ok = ok & xp.isfinite(probe)
    base_ok = base_ok & ok
    r = xp.where(base_ok, xf, 1.0) ** xp.where(ok, ef, 0.0)
    # IEEE: (−0)**e is −0 only for an odd integral e > 0. numpy's 0-d fast path computes
    # x**0.5 as sqrt(x) (−0), so the sign is canonicalised: r + sg(|r| − r) turns −0 into
    # +0 while keeping the gradient of r.
    half = ef * 0.5
    odd = (ef == xp.floor(ef)) & (half != xp.floor(half))
    fix = (ax < c.tiny) & ~odd
    r = xp.where(fix, r + sg(xp.abs(r) - r), r)
    return xp.where(ok, r, 0.0), ~ok


# ---------------------------------------------------------------------------------------
# kernels — complex dtypes: real and imaginary parts are DAZ-flushed first, masks use
# the reference's result-finiteness probes (evaluated detached, then recomputed)


def _flush_c(z: Array, *, xp: Namespace, be: Backend) -> Array:
    return _daz.flush_complex(z, _xp.consts(xp, z.dtype).tiny, xp=xp, sg=be.stop_gradient)


@layout(ELEMENTWISE)
def _k_add_complex(x: Array, y: Array, mx: Array | None, my: Array | None, *,
                   xp: Namespace, be: Backend, subtract: bool) -> tuple[Array, Array]:
    xs, ys = _flush_c(x, xp=xp, be=be), _flush_c(y, xp=xp, be=be)
    r = xs - ys if subtract else xs + ys
    bottom = _or(_or(~xp.isfinite(r), mx), my)
    return xp.where(bottom, 0.0, r), bottom


@layout(ELEMENTWISE)
def _k_unary_complex(x: Array, m: Array | None, *, xp: Namespace, be: Backend, fn: str,
                     zero_is_bottom: bool, safe: float) -> tuple[Array, Array]:
    f = getattr(xp, fn)
    x = _flush_c(x, xp=xp, be=be)
    ok = _keep(xp.isfinite(x), m)
    if zero_is_bottom:
        ok = ok & (x != 0)
    probe = f(be.stop_gradient(xp.where(ok, x, safe)))
    ok = ok & xp.isfinite(probe)
    return xp.where(ok, f(xp.where(ok, x, safe)), 0.0), ~ok


@layout(ELEMENTWISE)
def _k_inv_complex(x: Array, m: Array | None, *, xp: Namespace,
                   be: Backend) -> tuple[Array, Array]:
    x = _flush_c(x, xp=xp, be=be)
    ok = _keep(xp.isfinite(x), m) & (x != 0)
    probe = 1.0 / be.stop_gradient(xp.where(ok, x, 1.0))
    ok = ok & xp.isfinite(probe)
    return xp.where(ok, 1.0 / xp.where(ok, x, 1.0), 0.0), ~ok


@layout(ELEMENTWISE)
def _k_div_complex(x: Array, y: Array, mx: Array | None, my: Array | None, *,
                   xp: Namespace, be: Backend) -> tuple[Array, Array]:
    # ⊥ ⟺ mask ∨ ¬fin ∨ y == 0 ∨ ¬fin(x/y)   (no |x|/y² probe for complex, SPEC §1.2)
    x, y = _flush_c(x, xp=xp, be=be), _flush_c(y, xp=xp, be=be)
    ok = _keep(xp.isfinite(x) & xp.isfinite(y) & (y != 0), mx, my)
    ys = xp.where(ok, y, 1.0)
    probe = be.stop_gradient(xp.where(ok, x, 0.0)) / be.stop_gradient(ys)
    ok = ok & xp.isfinite(probe)
    return xp.where(ok, xp.where(ok, x, 0.0) / ys, 0.0), ~ok


@layout(ELEMENTWISE)
def _k_mul_complex(x: Array, y: Array, mx: Array | None, my: Array | None, *,
                   xp: Namespace, be: Backend) -> tuple[Array, Array]:
    x, y = _flush_c(x, xp=xp, be=be), _flush_c(y, xp=xp, be=be)
    keep = _keep(xp.isfinite(x) & xp.isfinite(y), mx, my)
    r = xp.where(keep, x, 0.0) * xp.where(keep, y, 0.0)
    ok = keep & xp.isfinite(r)
    return xp.where(ok, r, 0.0), ~ok


@layout(ELEMENTWISE)
def _k_pow_complex(x: Array, e: Array, m: Array | None, *, xp: Namespace,
                   be: Backend) -> tuple[Array, Array]:
    # 0**0 = 1 on every backend (torch's complex pow gives NaN there, SPEC §9 #6)
    x = _flush_c(x, xp=xp, be=be)
    c = _xp.consts(xp, x.dtype)
    ef = _daz.flush(e, xp.abs(e), c.tiny, xp=xp, be=be)
    ok = _keep(xp.isfinite(x) & xp.isfinite(ef), m)
    ok = ok & ~((x == 0) & (ef < 0))
    base_ok = ok & ~((x == 0) & (ef == 0))
    ee = xp.astype(ef, x.dtype)
    sg = be.stop_gradient
    probe = sg(xp.where(base_ok, x, 1.0)) ** sg(xp.where(ok, ee, 0.0))
    ok = ok & xp.isfinite(probe)
    r = xp.where(base_ok & ok, x, 1.0) ** xp.where(ok, ee, 0.0)
    return xp.where(ok, r, 0.0), ~ok


# ---------------------------------------------------------------------------------------
# kernels — integer dtypes (add/sub/mul/neg keep the reference's no-promotion rule):
# zpml_core._scm_int (integer overflow is bottom)


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
    elif op == "div":
        v, b = _run(be, _k_div, xa, ya, mx, my, xp=xp, be=be)
    elif op == "mul":
        v, b = _run(be, _k_mul, xa, ya, mx, my, xp=xp, be=be)
    else:
        v, b = _run(be, _k_add, xa, ya, mx, my, xp=xp, be=be, subtract=op == "sub")
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
    elif name == "neg":
        v, b = _run(be, _k_neg, xa, m, xp=xp)
    elif _xp.is_complex(xp, dt):
        if name == "inv":
            v, b = _run(be, _k_inv_complex, xa, m, xp=xp, be=be)
        else:
            v, b = _run(be, _k_unary_complex, xa, m, xp=xp, be=be, fn=name,
                        zero_is_bottom=name == "log", safe=0.0 if name in _ZERO_SAFE else 1.0)
    elif name in ("sin", "cos", "tan"):
        v, b = _run(be, _k_trig, xa, m, xp=xp, be=be, fn=name)
    elif name == "sqrt":
        v, b = _run(be, _k_sqrt, xa, m, xp=xp, be=be)
    else:
        v, b = _run(be, _REAL_UNARY[name], xa, m, xp=xp)
    return _finish(be, xp, v, b)


_ZERO_SAFE = frozenset({"exp", "sin", "cos", "tan"})
_REAL_UNARY: dict[str, Callable[..., tuple[Array, Array]]] = {
    "inv": _k_inv,
    "log": _k_log,
    "exp": _k_exp,
}


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

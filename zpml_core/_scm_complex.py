"""SCM kernels for complex dtypes (the public ops live in :mod:`zpml_core.scm`).

Real and imaginary parts are DAZ-flushed first; masks use the reference's
result-finiteness probes, evaluated on detached operands, then the value is recomputed
from operands re-substituted at the final mask — the evaluation order of
:mod:`zpml_core._scm_real`, so no differentiated intermediate holds inf/NaN and gradients
at ⊥ are 0. Forward-only backends reuse the probe as the value. Only complex64 and
complex128 exist here (no half-precision complex dtype is accepted).
"""

from __future__ import annotations

from zpml_core import _daz, _xp
from zpml_core._layout import ELEMENTWISE, layout
from zpml_core._registry import Backend
from zpml_core._scm_real import keep
from zpml_core._xp import Array, Namespace


def _flush(z: Array, *, xp: Namespace, be: Backend) -> Array:
    return _daz.flush_complex(z, _xp.consts(xp, z.dtype).tiny, xp=xp, sg=be.stop_gradient)


def _det(z: Array, *, xp: Namespace, be: Backend) -> Array:
    """The detached, flushed operand every predicate reads."""
    return _flush(be.stop_gradient(z), xp=xp, be=be)


def _att(ok: Array, z: Array, safe: float, *, xp: Namespace, be: Backend) -> Array:
    """The differentiated operand: ``safe`` at ⊥ (before anything else), then flushed."""
    return _flush(xp.where(ok, z, safe), xp=xp, be=be)


@layout(ELEMENTWISE)
def _k_add_complex(x: Array, y: Array, mx: Array | None, my: Array | None, *,
          xp: Namespace, be: Backend, subtract: bool) -> tuple[Array, Array]:
    xf, yf = _det(x, xp=xp, be=be), _det(y, xp=xp, be=be)
    rd = xf - yf if subtract else xf + yf
    ok = keep(xp.isfinite(rd), mx, my)
    if not be.supports_autodiff:
        return xp.where(ok, rd, 0.0), ~ok
    xs, ys = _att(ok, x, 0.0, xp=xp, be=be), _att(ok, y, 0.0, xp=xp, be=be)
    return xp.where(ok, xs - ys if subtract else xs + ys, 0.0), ~ok


@layout(ELEMENTWISE)
def _k_unary_complex(x: Array, m: Array | None, *, xp: Namespace, be: Backend, fn: str,
            zero_is_bottom: bool, safe: float) -> tuple[Array, Array]:
    f = getattr(xp, fn)
    xf = _det(x, xp=xp, be=be)
    ok = keep(xp.isfinite(xf), m)
    if zero_is_bottom:
        ok = ok & (xf != 0)
    probe = f(xp.where(ok, xf, safe))
    ok = ok & xp.isfinite(probe)
    if not be.supports_autodiff:
        return xp.where(ok, probe, 0.0), ~ok
    return xp.where(ok, f(_att(ok, x, safe, xp=xp, be=be)), 0.0), ~ok


@layout(ELEMENTWISE)
def _k_inv_complex(x: Array, m: Array | None, *, xp: Namespace, be: Backend) -> tuple[Array, Array]:
    xf = _det(x, xp=xp, be=be)
    ok = keep(xp.isfinite(xf), m) & (xf != 0)
    probe = 1.0 / xp.where(ok, xf, 1.0)
    ok = ok & xp.isfinite(probe)
    if not be.supports_autodiff:
        return xp.where(ok, probe, 0.0), ~ok
    return xp.where(ok, 1.0 / _att(ok, x, 1.0, xp=xp, be=be), 0.0), ~ok


@layout(ELEMENTWISE)
def _k_div_complex(x: Array, y: Array, mx: Array | None, my: Array | None, *,
          xp: Namespace, be: Backend) -> tuple[Array, Array]:
    # ⊥ ⟺ mask ∨ ¬fin ∨ y == 0 ∨ ¬fin(x/y)   (no |x|/y² probe for complex)
    xf, yf = _det(x, xp=xp, be=be), _det(y, xp=xp, be=be)
    ok = keep(xp.isfinite(xf) & xp.isfinite(yf) & (yf != 0), mx, my)
    probe = xp.where(ok, xf, 0.0) / xp.where(ok, yf, 1.0)
    ok = ok & xp.isfinite(probe)
    if not be.supports_autodiff:
        return xp.where(ok, probe, 0.0), ~ok
    r = _att(ok, x, 0.0, xp=xp, be=be) / _att(ok, y, 1.0, xp=xp, be=be)
    return xp.where(ok, r, 0.0), ~ok


@layout(ELEMENTWISE)
def _k_mul_complex(x: Array, y: Array, mx: Array | None, my: Array | None, *,
          xp: Namespace, be: Backend) -> tuple[Array, Array]:
    xf, yf = _det(x, xp=xp, be=be), _det(y, xp=xp, be=be)
    fin = keep(xp.isfinite(xf) & xp.isfinite(yf), mx, my)
    rd = xp.where(fin, xf, 0.0) * xp.where(fin, yf, 0.0)
    ok = fin & xp.isfinite(rd)
    if not be.supports_autodiff:
        return xp.where(ok, rd, 0.0), ~ok
    r = _att(ok, x, 0.0, xp=xp, be=be) * _att(ok, y, 0.0, xp=xp, be=be)
    return xp.where(ok, r, 0.0), ~ok


@layout(ELEMENTWISE)
def _k_pow_complex(x: Array, e: Array, m: Array | None, *, xp: Namespace,
          be: Backend) -> tuple[Array, Array]:
    # 0**0 = 1 on every backend (torch's own complex pow gives NaN there)
    c = _xp.consts(xp, x.dtype)
    sg = be.stop_gradient
    xf = _det(x, xp=xp, be=be)
    ed = sg(e)
    esub = xp.abs(ed) < c.tiny
    ef = _daz.flush(ed, esub, xp=xp)
    ok = keep(xp.isfinite(xf) & xp.isfinite(ef), m)
    ok = ok & ~((xf == 0) & (ef < 0))
    base_ok = ok & ~((xf == 0) & (ef == 0))
    probe = xp.where(base_ok, xf, 1.0) ** xp.astype(xp.where(ok, ef, 0.0), x.dtype)
    ok = ok & xp.isfinite(probe)
    if not be.supports_autodiff:
        return xp.where(ok, probe, 0.0), ~ok
    xs = _att(base_ok & ok, x, 1.0, xp=xp, be=be)
    es = _daz.flush_attached(xp.where(ok, e, 0.0), esub, xp=xp, be=be)
    return xp.where(ok, xs ** xp.astype(es, x.dtype), 0.0), ~ok

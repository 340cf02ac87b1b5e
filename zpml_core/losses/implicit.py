"""Implicit (cross-product) fit loss, SPEC §5.1."""

from __future__ import annotations

from zpml_core._registry import Backend, get_backend
from zpml_core._xp import Array, Namespace
from zpml_core.losses import _common

__all__ = ["implicit_loss"]


def _k_implicit(P: Array, Q: Array, Yn: Array, Yd: Array, *, xp: Namespace, be: Backend,
                gamma: float, detach: bool, cplx: bool) -> Array:
    # e = (P·Y_d − Q·Y_n)²,  s = Q²·Y_d² + P²·Y_n²   (|·|² for complex operands)
    r = P * Yd - Q * Yn
    a = Q * Yd
    b = P * Yn
    if cplx:
        e = _common.abs2(r, xp=xp)
        s = _common.abs2(a, xp=xp) + _common.abs2(b, xp=xp)
    else:
        e = r * r
        s = a * a + b * b
    if detach:
        s = be.stop_gradient(s)
    return xp.mean(e / (s + gamma))


def implicit_loss(P: Array, Q: Array, Y_n: Array, Y_d: Array, gamma: float = 1e-9, *,
                  detach_scale: bool = False) -> Array:
    """Population mean of ``(P·Y_d − Q·Y_n)² / (Q²·Y_d² + P²·Y_n² + gamma)``.

    Fits ``P/Q`` to the lifted target ``(Y_n, Y_d)`` without dividing by ``Q``.
    ``detach_scale=True`` stops the gradient through the scale ``s`` (same value).
    No masking: NaN propagates; all-zero tuples with ``gamma=0`` give NaN. Complex
    operands use moduli (``|·|²``); the result is real. ``gamma`` finite ``≥ 0``.
    """
    g = _common.threshold("gamma", gamma)
    if not isinstance(detach_scale, bool):
        raise TypeError(f"detach_scale must be a bool, got {type(detach_scale).__name__}")
    xp = _common.namespace(("P", "Q", "Y_n", "Y_d"), (P, Q, Y_n, Y_d))
    p, q, yn, yd = _common.float_arrays(xp, ("P", "Q", "Y_n", "Y_d"), (P, Q, Y_n, Y_d))
    _common.common_shape([("P", p), ("Q", q), ("Y_n", yn), ("Y_d", yd)])
    be = get_backend(xp)
    out = be.fuse(_k_implicit)(
        p, q, yn, yd, xp=xp, be=be, gamma=g, detach=detach_scale,
        cplx=_common.is_complex(xp, p.dtype),
    )
    return _common.as_0d(out, p, xp=xp)

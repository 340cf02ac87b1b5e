"""Projective tuples: target lifting, encode/decode, renormalisation (semantics §2, §3).

A value ``y`` is represented by a homogeneous tuple ``(N, D)`` with ``y = N / D``;
``D = 0`` represents bottom, and the sign of ``N`` then carries the orientation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from zpml_core import _xp
from zpml_core._daz import flush_attached
from zpml_core._layout import ELEMENTWISE, layout
from zpml_core._precision import attached, detached, finite, narrow
from zpml_core._registry import Backend, get_backend
from zpml_core._scm_complex import _k_div_complex
from zpml_core._xp import Array, Namespace
from zpml_core.scm import SCMArray

__all__ = [
    "BOTTOM_KIND_FAULT",
    "BOTTOM_KIND_NONE",
    "BOTTOM_KIND_SEMANTIC",
    "ORIENTATION_ABOVE",
    "ORIENTATION_BELOW",
    "ORIENTATION_NONE",
    "STATUS_LABELS",
    "SemanticTargets",
    "decode",
    "encode",
    "lift_semantic_targets",
    "lift_targets",
    "projectively_equal",
    "renormalize",
]

#: ``SemanticTargets.orientation`` codes: censored below, none, censored above
ORIENTATION_BELOW = -1
ORIENTATION_NONE = 0
ORIENTATION_ABOVE = 1
#: ``SemanticTargets.bottom_kind`` codes: finite (no bottom), fault, semantic bottom
BOTTOM_KIND_NONE = 0
BOTTOM_KIND_FAULT = 1
BOTTOM_KIND_SEMANTIC = 2

# label → (Y_n for non-finite labels or None for "keep y", Y_d, mask_finite, mask_bottom,
#          orientation, bottom_kind)                                     (semantics §3.2)
_LABEL_TABLE: dict[str, tuple[float | None, float, bool, bool, int, int]] = {
    "finite": (None, 1.0, True, False, ORIENTATION_NONE, BOTTOM_KIND_NONE),
    "bottom": (1.0, 0.0, False, True, ORIENTATION_NONE, BOTTOM_KIND_SEMANTIC),
    "censored_below": (-1.0, 0.0, False, True, ORIENTATION_BELOW, BOTTOM_KIND_SEMANTIC),
    "censored_above": (1.0, 0.0, False, True, ORIENTATION_ABOVE, BOTTOM_KIND_SEMANTIC),
    "domain_invalid": (1.0, 0.0, False, True, ORIENTATION_NONE, BOTTOM_KIND_SEMANTIC),
    "fault": (1.0, 0.0, False, True, ORIENTATION_NONE, BOTTOM_KIND_FAULT),
    "missing": (0.0, 1.0, False, False, ORIENTATION_NONE, BOTTOM_KIND_NONE),
}
STATUS_LABELS: tuple[str, ...] = tuple(_LABEL_TABLE)


class SemanticTargets(NamedTuple):
    """Lifted targets with per-element status (semantics §3.2)."""

    Y_n: Array
    Y_d: Array
    mask_finite: Array
    mask_bottom: Array
    orientation_label: Array
    bottom_kind: Array


# ---------------------------------------------------------------------------------------
# lift_targets


@layout(ELEMENTWISE)
def _k_lift(y: Array, *, xp: Namespace) -> tuple[Array, Array]:
    fin = xp.isfinite(y)
    d = xp.astype(fin, y.dtype)
    if _xp.is_complex(xp, y.dtype):
        return xp.where(fin, y, 1.0), d
    # +inf and NaN → (+1, 0); -inf → (-1, 0): orientation is information
    sign = 1.0 - 2.0 * xp.astype(y < 0, y.dtype)
    return xp.where(fin, y, sign), d


def lift_targets(y: Array) -> tuple[Array, Array]:
    """Lift targets to projective tuples ``(Y_n, Y_d)``.

    finite ``y`` → ``(y, 1)`` (sign of zero kept); ``+inf`` and NaN → ``(+1, 0)``;
    ``-inf`` → ``(-1, 0)``. Integer targets are promoted to the default float.
    """
    xp = _xp.namespace(y, names=("y",))
    if not _xp.is_array(y):
        raise TypeError(f"y must be an array, got {type(y).__name__}")
    ya = _xp.to_float(xp, y)
    be = get_backend(xp)
    return be.fuse(_k_lift)(ya, xp=xp)


# ---------------------------------------------------------------------------------------
# lift_semantic_targets (labels are host-side strings; the array work is traceable)


def _flatten_labels(labels: object) -> tuple[list[str], tuple[int, ...]]:
    """Flatten a rectangular nested sequence (or numpy array) of strings."""
    if isinstance(labels, str):
        return [labels], ()
    if hasattr(labels, "tolist") and hasattr(labels, "shape"):
        labels = labels.tolist()
        if isinstance(labels, str):
            return [labels], ()
    if not isinstance(labels, Sequence):
        raise TypeError(
            "status_labels must be a string or a (nested) sequence of strings, "
            f"got {type(labels).__name__}"
        )
    flat: list[str] = []

    def walk(node: object, depth: int, shape: list[int]) -> None:
        if isinstance(node, str):
            if depth != len(shape):
                raise ValueError("status_labels is ragged (inconsistent nesting depth)")
            flat.append(node)
            return
        if not isinstance(node, Sequence):
            raise TypeError(
                f"status_labels must contain strings, got {type(node).__name__}"
            )
        if depth == len(shape):
            if flat:
                raise ValueError("status_labels is ragged (inconsistent nesting depth)")
            shape.append(len(node))
        elif shape[depth] != len(node):
            raise ValueError(
                f"status_labels is ragged: lengths {shape[depth]} and {len(node)} "
                f"at depth {depth}"
            )
        for child in node:
            walk(child, depth + 1, shape)

    shape: list[int] = []
    walk(labels, 0, shape)
    return flat, tuple(shape)


def lift_semantic_targets(y: Array, status_labels: object) -> SemanticTargets:
    """Lift targets with per-element status labels (semantics §3.2).

    Labels: ``finite`` → ``(y, 1)``; ``bottom``/``domain_invalid`` → ``(1, 0)``
    semantic; ``censored_below`` → ``(-1, 0)``; ``censored_above`` → ``(+1, 0)``;
    ``fault`` → ``(1, 0)`` fault; ``missing`` → ``(0, 1)``, neither finite nor bottom.
    ``status_labels`` is a string (0-d ``y``) or a rectangular nested sequence of strings
    with ``y``'s shape.

    A ``finite`` label over a non-finite value (NaN, ±inf) is an error, enforced by the
    backend adapter (``Backend.require``): concrete arrays raise ``ValueError`` at the
    call; dask arrays raise the same ``ValueError`` when ``Y_n`` or ``Y_d`` is computed;
    traced values that cannot raise (``jax.jit``, ``torch.compile``, ``vmap``) get
    ``Y_n = Y_d = NaN`` at the offending elements, so every loss on them is NaN and the
    trainer stops with its non-finite-loss error (never a silent ``inf`` target).
    ``y`` must have known sizes (a dask array with unknown chunk sizes → ``ValueError``:
    call ``y.compute_chunk_sizes()`` first).
    """
    xp = _xp.namespace(y, names=("y",))
    if not _xp.is_array(y):
        raise TypeError(f"y must be an array, got {type(y).__name__}")
    flat, shape = _flatten_labels(status_labels)
    if any(n is None or (isinstance(n, float) and n != n) for n in y.shape):  # unknown
        raise ValueError(
            f"y has unknown size(s) {tuple(y.shape)}, so status_labels {tuple(shape)} "
            "cannot be matched to it; for a dask array call y.compute_chunk_sizes() first"
        )
    if tuple(shape) != tuple(y.shape):
        raise ValueError(
            f"status_labels shape {tuple(shape)} does not match target shape {tuple(y.shape)}"
        )
    unknown = sorted({lab for lab in flat if lab not in _LABEL_TABLE})
    if unknown:
        raise ValueError(
            f"unknown status label(s) {unknown}; allowed: {', '.join(STATUS_LABELS)}"
        )
    ya = _xp.to_float(xp, y)
    dev = _xp.device(ya)
    rows = [_LABEL_TABLE[lab] for lab in flat]
    ft, it = ya.dtype, _xp.default_int(xp, dev)

    def column(i: int, dtype: Any) -> Array:
        vals = [r[i] if r[i] is not None else 0.0 for r in rows]
        return xp.reshape(xp.asarray(vals, dtype=dtype, device=dev), shape)

    is_finite_label = column(2, xp.bool)
    be = get_backend(xp)
    bad = is_finite_label & ~xp.isfinite(ya)
    y_n, y_d = be.require(
        bad, "a 'finite' status label is attached to a non-finite target value",
        (xp.where(is_finite_label, ya, column(0, ft)), column(1, ft)), xp=xp,
    )
    return SemanticTargets(
        Y_n=y_n,
        Y_d=y_d,
        mask_finite=is_finite_label,
        mask_bottom=column(3, xp.bool),
        orientation_label=column(4, it),
        bottom_kind=column(5, it),
    )


# ---------------------------------------------------------------------------------------
# encode / decode


def encode(value: Array, bottom: Array) -> tuple[Array, Array]:
    """SCM value → projective tuple: ⊥ → ``(1, 0)``; finite ``v`` → ``(v, 1)``."""
    xp = _xp.namespace(value, bottom, names=("value", "bottom"))
    (v,) = _xp.float_operands(xp, ("value",), (value,), promote=True)
    b = _xp.as_mask(xp, bottom, "bottom", v)
    if b is None:
        raise TypeError("bottom must be a boolean array, got None")
    _xp.broadcast_shape([("value", v.shape), ("bottom", b.shape)])
    return xp.where(b, 1.0, v), xp.where(b, 0.0, xp.ones_like(v))


@layout(ELEMENTWISE)
def _k_decode(n: Array, d: Array, *, xp: Namespace, be: Backend) -> tuple[Array, Array]:
    # ⊥ ⟺ D ≈ 0 (DAZ) ∨ ¬fin(N) ∨ ¬fin(D) ∨ ¬fin(N/D); masks from detached operands, the
    # value from operands sanitised at ⊥ (no differentiated intermediate is inf/NaN)
    if _xp.is_complex(xp, n.dtype):  # complex: exactly scm.div (parts DAZ-flushed)
        return _k_div_complex(n, d, None, None, xp=xp, be=be)
    sg = be.stop_gradient
    # real: the quotient guard |N| ≤ fl(|D|·ovf) replaces the overflow probe (one
    # division); for float16/bfloat16 (computed in float32, ovf = the rounding edge) it
    # is exactly "N/D does not round to ±inf". fin(|N| − |D|) ⟺ both finite.
    c = _xp.consts(xp, n.dtype)
    nd, dd = detached(xp, be, c, n), detached(xp, be, c, d)
    an, ad = xp.abs(nd), xp.abs(dd)
    ok = (ad >= c.tiny) & (an <= ad * c.ovf) & xp.isfinite(an - ad)
    # numerator: a signed zero where subnormal (DAZ); at ⊥ the quotient is +0/1 = +0
    nz = an < c.tiny
    ns = flush_attached(attached(xp, c, ok, n, 0.0), nz, xp=xp, be=be)
    # N ≈ 0: ∂/∂D = 0 exactly; a detached D avoids 0·D⁻² overflow (JAX forms D⁻²)
    ds = attached(xp, c, ok, d, 1.0)
    ds = xp.where(nz, sg(ds), ds)
    return narrow(xp, n.dtype, ns / ds), ~ok


def decode(N: Array, D: Array) -> SCMArray:
    """Projective tuple → SCM value: ⊥ iff ``D ≈ 0`` (incl. ``-0.0`` and subnormal ``D``),
    ``N`` or ``D`` not finite, or ``N/D`` overflows (``|N| > |D|·ovf``: ``ovf`` 4 ulp below
    the dtype's max in float32/float64; in float16/bfloat16, computed in float32, exactly
    "``N/D`` rounds to ±inf"); otherwise the value ``N/D``. Complex tuples decode as
    complex ``scm.div`` (real and imaginary parts below the smallest normal count as 0).
    """
    xp = _xp.namespace(N, D, names=("N", "D"))
    n, d = _xp.float_operands(xp, ("N", "D"), (N, D), promote=True)
    _xp.broadcast_shape([("N", n.shape), ("D", d.shape)])
    be = get_backend(xp)
    v, b = be.fuse(_k_decode)(n, d, xp=xp, be=be)
    from zpml_core.autodiff.rules import gate_output

    return SCMArray(gate_output(be, v, b, "decode", xp=xp), b)


# ---------------------------------------------------------------------------------------
# renormalize / projectively_equal


def _renorm(n: Array, d: Array, *, xp: Namespace, be: Backend,
            sg: Callable[[Array], Array] | None, gamma: float) -> tuple[Array, Array]:
    # s = sg(‖(N, D)‖) + gamma, computed scaled: with m = max(|N|, |D|), N/s =
    # (N/m) / (‖(N/m, D/m)‖ + gamma/m), so neither the norm nor s ever overflows
    # (``sg`` None: differentiate through the norm). Subnormal N, D count as 0 (DAZ); gamma
    # enters in the working precision (a subnormal gamma counts as 0 there).
    # Special tuples, as IEEE evaluates the reference formula N/(sqrt(N²+D²)+gamma),
    # from detached constants (gradient 0): the zero tuple → (±0, ±0) if gamma > 0 (any
    # gamma > 0, also where it underflows in the dtype), (NaN, NaN) if gamma == 0 (0/0);
    # a NaN component → (NaN, NaN); otherwise an infinite component → NaN and the finite
    # one → ±0 (x/inf). The scaled formula runs on the safe unit tuple (0, 1) there, so
    # no differentiated intermediate is inf/NaN (hypot's derivative at (0, 0) is 0/0).
    c = _xp.consts(xp, n.dtype)
    cw = _xp.consts(xp, xp.float32) if c.wide else c
    g = cw.round(gamma)
    g = g if g >= cw.tiny else 0.0
    nd, dd = detached(xp, be, c, n), detached(xp, be, c, d)
    an, ad = xp.abs(nd), xp.abs(dd)
    zero = (an < c.tiny) & (ad < c.tiny)
    pos = xp.isfinite(an - ad) & ~zero  # finite, not the zero tuple
    ns = flush_attached(attached(xp, c, pos, n, 0.0), an < c.tiny, xp=xp, be=be)
    ds = flush_attached(attached(xp, c, pos, d, 1.0), ad < c.tiny, xp=xp, be=be)
    # m is a scaling constant, detached in every mode: the norm is homogeneous, so this
    # changes no gradient, and it keeps the backward of gamma/m free of 0·inf (tiny m)
    m = be.stop_gradient(xp.where(pos, xp.maximum(xp.abs(ns), xp.abs(ds)), 1.0))
    # the where between the two divisions keeps XLA from rewriting (n/m)/den as
    # n/(m·den), which overflows for huge tuples
    u, v = xp.where(pos, ns / m, 0.0), xp.where(pos, ds / m, 1.0)
    r = xp.hypot(u, v)
    den = (r if sg is None else sg(r)) + g / m
    un, vn = narrow(xp, n.dtype, u / den), narrow(xp, n.dtype, v / den)
    special = xp.isnan(an + ad)  # a NaN component: (NaN, NaN)
    if gamma == 0.0:
        special = special | zero
    nan = float("nan")
    n_sp = xp.where(special, nan, be.stop_gradient(n) * 0.0)  # inf → NaN, finite → ±0
    d_sp = xp.where(special, nan, be.stop_gradient(d) * 0.0)
    return xp.where(pos, un, n_sp), xp.where(pos, vn, d_sp)


@layout(ELEMENTWISE)
def _k_renormalize(n: Array, d: Array, *, xp: Namespace, be: Backend, detach: bool,
                   gamma: float) -> tuple[Array, Array]:
    return _renorm(n, d, xp=xp, be=be, sg=be.stop_gradient if detach else None, gamma=gamma)


def _renormalize_with(n: Array, d: Array, *, xp: Namespace, be: Backend,
                      sg: Callable[[Array], Array], gamma: float) -> tuple[Array, Array]:
    """Same rule with a user-supplied stop-gradient callable (run unfused)."""
    return _renorm(n, d, xp=xp, be=be, sg=sg, gamma=gamma)


def renormalize(
    N: Array,
    D: Array,
    gamma: float = 1e-9,
    *,
    stop_gradient: bool | Callable[[Array], Array] = True,
) -> tuple[Array, Array]:
    """Scale a tuple to (near) unit norm: ``s = sg(‖(N, D)‖) + gamma``; return ``(N/s, D/s)``.

    The norm is computed overflow-safely (``hypot``), so huge tuples normalise.
    ``stop_gradient=True`` (default) treats ``s`` as a constant for gradients (via the
    backend adapter); ``False`` differentiates through it; a callable is used as given.
    ``gamma`` must be finite and ``>= 0``. Subnormal components count as 0.

    Special tuples (as IEEE arithmetic evaluates ``N/(sqrt(N²+D²) + gamma)``): the zero
    tuple gives ``(±0, ±0)`` for every ``gamma > 0`` — also where ``gamma`` underflows in
    the dtype (float16) — and ``(NaN, NaN)`` for ``gamma == 0``; a NaN component gives
    ``(NaN, NaN)``; otherwise an infinite component gives NaN and the finite one ``±0``
    (``renormalize(inf, 1) = (NaN, 0)``). Gradients there are 0.
    """
    g = _xp.check_real("gamma", gamma, ge=0.0)
    xp = _xp.namespace(N, D, names=("N", "D"))
    n, d = _xp.float_operands(xp, ("N", "D"), (N, D), promote=True)
    if _xp.is_complex(xp, n.dtype):
        raise TypeError("renormalize expects real N and D")
    _xp.broadcast_shape([("N", n.shape), ("D", d.shape)])
    be = get_backend(xp)
    if isinstance(stop_gradient, bool) or stop_gradient is None:
        return be.fuse(_k_renormalize)(
            n, d, xp=xp, be=be, detach=bool(stop_gradient), gamma=g
        )
    if callable(stop_gradient):
        # a user callable is not a stable jit key: run unfused
        assert g is not None
        return _renormalize_with(n, d, xp=xp, be=be, sg=stop_gradient, gamma=g)
    raise TypeError("stop_gradient must be a bool or a callable")


def projectively_equal(
    N1: Array, D1: Array, N2: Array, D2: Array, *, atol: float = 1e-8
) -> Array:
    """Elementwise ``|N1·D2 − N2·D1| ≤ atol`` (absolute; ``(0, 0)`` equals everything,
    NaN never equals). Returns a bool array of the broadcast shape."""
    tol = _xp.check_real("atol", atol, ge=0.0)
    xp = _xp.namespace(N1, D1, N2, D2, names=("N1", "D1", "N2", "D2"))
    a, b, c, d = _xp.float_operands(xp, ("N1", "D1", "N2", "D2"), (N1, D1, N2, D2),
                                    promote=True)
    _xp.broadcast_shape([("N1", a.shape), ("D1", b.shape), ("N2", c.shape), ("D2", d.shape)])
    be = get_backend(xp)
    return be.fuse(_k_proj_eq)(a, b, c, d, xp=xp, be=be, atol=tol)


@layout(ELEMENTWISE)
def _k_proj_eq(a: Array, b: Array, c: Array, d: Array, *, xp: Namespace, be: Backend,
               atol: float) -> Array:
    # DAZ/FTZ: subnormal operands and differences count as 0, as does a
    # subnormal atol. A product is flushed when |p| ≤ tiny: a product just below tiny
    # rounds up to tiny in IEEE arithmetic but is flushed by XLA's FTZ, and nothing else
    # can land on either side of that border. (A difference in the subnormal range is
    # exact, so flushing it at < tiny agrees everywhere.) Exact equality first: XLA may
    # contract a·d − c·b into an FMA, whose residue is the rounding error of c·b, so a
    # tuple would not equal itself in float32 (inf == inf is not equality here:
    # |inf − inf| is NaN in the reference rule). The result is a mask: everything reads
    # detached operands. float16/bfloat16 are computed in float32 (products exact, the
    # difference rounded to float32, atol rounded to the half dtype); a product that
    # rounds to ±inf in the half dtype makes the pair unequal, as in the reference.
    k = _xp.consts(xp, a.dtype)
    tiny = k.tiny

    def ftz(v: Array, *, inclusive: bool = False) -> Array:
        av = xp.abs(v)
        return xp.where((av <= tiny) if inclusive else (av < tiny), xp.zeros_like(v), v)

    a, b, c, d = (ftz(detached(xp, be, k, v)) for v in (a, b, c, d))
    ad, cb = ftz(a * d, inclusive=True), ftz(c * b, inclusive=True)
    tol = k.round(atol) if atol >= tiny else 0.0
    if k.wide:
        fin = finite(xp, k, ad) & finite(xp, k, cb)
        return fin & ((ad == cb) | (ftz(xp.abs(ad - cb)) <= tol))
    return ((ad == cb) & xp.isfinite(ad)) | (ftz(xp.abs(ad - cb)) <= tol)

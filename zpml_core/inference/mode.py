"""Strict inference: decode ``(P, Q)`` with the masks production uses.

``strict_inference`` refuses instead of guessing: wherever the denominator is too small
(``|Q| < tau_infer``, *semantic* bottom) or anything is not finite (*fault*), the decoded
value is NaN and the element is flagged; ``gap`` marks accepted elements whose
denominator lies between ``tau_infer`` and ``tau_train`` (risky, never trained there).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from zpml_core import _fast, _xp
from zpml_core._daz import flush_attached
from zpml_core._layout import LEADING, layout
from zpml_core._precision import detached, narrow, widen
from zpml_core._registry import Backend, get_backend
from zpml_core._xp import Array, Namespace

__all__ = [
    "BOTTOM_PROVENANCE_FAULT",
    "BOTTOM_PROVENANCE_FINITE",
    "BOTTOM_PROVENANCE_MIXED",
    "BOTTOM_PROVENANCE_SEMANTIC",
    "STRICT_INFERENCE_FIELDS",
    "InferenceConfig",
    "InferenceResult",
    "SCMInferenceWrapper",
    "strict_inference",
]

#: the three fields an :class:`InferenceResult` unpacks to, in order
STRICT_INFERENCE_FIELDS: tuple[str, str, str] = ("decoded", "bottom_mask", "gap_mask")
#: codes of ``InferenceResult.bottom_provenance``: ``fault + 2·semantic``
BOTTOM_PROVENANCE_FINITE = 0
BOTTOM_PROVENANCE_FAULT = 1
BOTTOM_PROVENANCE_SEMANTIC = 2
BOTTOM_PROVENANCE_MIXED = 3

_PROVENANCE = ("off", "experimental")
_REPRESENTATIONS = ("split_masks", "bottom_provenance")


def _positive_threshold(name: str, value: object) -> float:
    if isinstance(value, str):
        raise TypeError(f"{name} must be a real number, got str {value!r}")
    v = _xp.check_real(name, value, gt=0.0)
    assert v is not None
    return v


def _monitor_threshold(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, (bool, str)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number or None, got {type(value).__name__}")
    return _xp.check_real(name, value, ge=0.0)


@dataclass(frozen=True)
class InferenceConfig:
    """Thresholds of strict inference.

    ``tau_infer`` (default 1e-6): finite, ``> 0``. ``tau_train`` (default None): None or
    finite ``>= tau_infer`` (equal disables the gap band). ``provenance`` ∈ {"off",
    "experimental"} and ``provenance_representation`` ∈ {"split_masks",
    "bottom_provenance"} are metadata. ``numerical_hazard_threshold`` and
    ``provenance_fault_threshold`` are monitor-only aliases (finite ``>= 0``; if both are
    given they must be equal; one fills the other). Strings are rejected (``TypeError``).
    """

    tau_infer: float = 1e-6
    tau_train: float | None = None
    provenance: str = "off"
    provenance_representation: str = "split_masks"
    numerical_hazard_threshold: float | None = None
    provenance_fault_threshold: float | None = None

    def __post_init__(self) -> None:
        tau = _positive_threshold("tau_infer", self.tau_infer)
        object.__setattr__(self, "tau_infer", tau)
        if self.tau_train is not None:
            tt = _positive_threshold("tau_train", self.tau_train)
            if tt < tau:
                raise ValueError(
                    f"tau_train must be >= tau_infer ({tau!r}), got {tt!r}"
                )
            object.__setattr__(self, "tau_train", tt)
        if self.provenance not in _PROVENANCE:
            raise ValueError(
                f"provenance must be one of {_PROVENANCE}, got {self.provenance!r}"
            )
        if self.provenance_representation not in _REPRESENTATIONS:
            raise ValueError(
                "provenance_representation must be one of "
                f"{_REPRESENTATIONS}, got {self.provenance_representation!r}"
            )
        h = _monitor_threshold("numerical_hazard_threshold", self.numerical_hazard_threshold)
        f = _monitor_threshold("provenance_fault_threshold", self.provenance_fault_threshold)
        if h is not None and f is not None and h != f:
            raise ValueError(
                "numerical_hazard_threshold and provenance_fault_threshold must be equal "
                f"when both are given, got {h!r} and {f!r}"
            )
        object.__setattr__(self, "numerical_hazard_threshold", h if h is not None else f)
        object.__setattr__(self, "provenance_fault_threshold", f if f is not None else h)


def _split_masks(
    bottom: Array, fault: Array | None, semantic: Array | None, provenance: Array | None
) -> tuple[Array, Array]:
    """The missing split masks of an :class:`InferenceResult` (see its docstring)."""
    xp = _xp.namespace(bottom, provenance, names=("bottom_mask", "bottom_provenance"))
    b = _xp.as_mask(xp, bottom, "bottom_mask", bottom)
    assert b is not None
    if provenance is None:
        none = xp.zeros_like(b)
        return (none if fault is None else fault), (none if semantic is None else semantic)
    code = _xp.as_input(xp, provenance)
    if not xp.isdtype(code.dtype, "integral"):
        raise TypeError(f"bottom_provenance must be an integer array, got dtype {code.dtype}")
    mixed = code == BOTTOM_PROVENANCE_MIXED
    if fault is None:
        fault = b & ((code == BOTTOM_PROVENANCE_FAULT) | mixed)
    if semantic is None:
        semantic = b & ((code == BOTTOM_PROVENANCE_SEMANTIC) | mixed)
    return fault, semantic


#: ``InferenceConfig()`` (frozen), shared by the calls that pass no config
_DEFAULT_CONFIG = InferenceConfig()


class InferenceResult(tuple):
    """``(decoded, bottom_mask, gap_mask)`` — unpacks and indexes as a 3-tuple, with
    ``_fields`` (:data:`STRICT_INFERENCE_FIELDS`) and ``_asdict()`` like a named tuple — and
    the extra attributes ``fault_mask``, ``semantic_bottom_mask`` and ``bottom_provenance``
    (``fault + 2·semantic``: 0 finite, 1 fault only, 2 semantic only, 3 both; the library's
    default int dtype).

    Built from the three fields alone, the split masks are all False; built with
    ``bottom_provenance`` instead of the masks, ``fault = bottom ∧ code ∈ {1, 3}`` and
    ``semantic = bottom ∧ code ∈ {2, 3}``.
    """

    _fields: tuple[str, str, str] = STRICT_INFERENCE_FIELDS
    fault_mask: Array
    semantic_bottom_mask: Array

    def __new__(
        cls,
        decoded: Array,
        bottom_mask: Array,
        gap_mask: Array,
        fault_mask: Array | None = None,
        semantic_bottom_mask: Array | None = None,
        bottom_provenance: Array | None = None,
    ) -> InferenceResult:
        self = super().__new__(cls, (decoded, bottom_mask, gap_mask))
        if fault_mask is None or semantic_bottom_mask is None:
            fault_mask, semantic_bottom_mask = _split_masks(
                bottom_mask, fault_mask, semantic_bottom_mask, bottom_provenance
            )
        self.fault_mask = fault_mask
        self.semantic_bottom_mask = semantic_bottom_mask
        return self

    def _asdict(self) -> dict[str, Array]:
        """``{"decoded": ..., "bottom_mask": ..., "gap_mask": ...}`` (the three fields)."""
        return dict(zip(self._fields, self, strict=True))

    def __getnewargs__(self) -> tuple[Array, ...]:  # pickling / copying
        return (*self, self.fault_mask, self.semantic_bottom_mask)

    @property
    def decoded(self) -> Array:
        return self[0]

    @property
    def bottom_mask(self) -> Array:
        return self[1]

    @property
    def gap_mask(self) -> Array:
        return self[2]

    @property
    def bottom_provenance(self) -> Array:
        xp = _xp.namespace(self.fault_mask)
        it = _xp.default_int(xp, _xp.device(self.fault_mask))
        prov = xp.astype(self.fault_mask, it) + 2 * xp.astype(self.semantic_bottom_mask, it)
        return _xp.as_input(xp, prov)  # numpy: a 0-d array, not a numpy scalar

    def __repr__(self) -> str:
        return (
            f"InferenceResult(decoded={self[0]!r}, bottom_mask={self[1]!r}, "
            f"gap_mask={self[2]!r}, fault_mask={self.fault_mask!r}, "
            f"semantic_bottom_mask={self.semantic_bottom_mask!r})"
        )


def _any_trailing(m: Array, ndim: int, *, xp: Namespace) -> Array:
    """Reduce ``m`` with ``any`` over its axes beyond the first ``ndim``."""
    if m.ndim <= ndim:
        return m
    return xp.any(m, axis=tuple(range(ndim, m.ndim)))


def _expand_trailing(a: Array, k: int, *, xp: Namespace) -> Array:
    # ``None`` indexing, not reshape: works with unknown sizes (dask, unknown chunks)
    return a if k == 0 else a[(..., *([None] * k))]


@layout(LEADING)
def _k_strict(
    P: Array,
    Q: Array,
    factors: tuple[Array, ...],
    *,
    xp: Namespace,
    be: Backend,
    thr: float,
    tau: float,
    tau_train: float | None,
    factor_taus: tuple[float, ...],
) -> tuple[Array, Array, Array, Array, Array]:
    # fault    = any(¬fin(P)) ∨ ¬fin(Q) ∨ any(¬fin(V_i)) ∨ any(P/Q overflows)
    # semantic = |Q| < max(tau_infer, tiny)   (DAZ: |Q| < tiny is zero) ∨ any(|V_i| < tau_i)
    # Thresholds arrive rounded to Q's dtype (tau_i: to V_i's here). Overflow is the guard
    # |P| > |Q|·ovf (no probe division; float16/bfloat16, computed in float32: exactly
    # "P/Q rounds to ±inf"). Every mask is known before the single division and reads
    # detached operands; the numerator is zeroed at bottom before any arithmetic, so no
    # differentiated intermediate is inf/NaN and dQ stays finite.
    c = _xp.consts(xp, Q.dtype)
    sg = be.stop_gradient
    q_nd = Q.ndim
    k = max(P.ndim - q_nd, 0)
    qd, pd = detached(xp, be, c, Q), detached(xp, be, c, P)
    aq, ap = xp.abs(qd), xp.abs(pd)
    semantic = aq < thr
    fault = ~(aq <= c.max)
    for v, t in zip(factors, factor_taus, strict=True):
        vd = sg(v)
        tv = _xp.consts(xp, v.dtype).round(t)
        fault = fault | _any_trailing(~xp.isfinite(vd), q_nd, xp=xp)
        semantic = semantic | _any_trailing(xp.abs(vd) < tv, q_nd, xp=xp)
    # the quotient is only formed where Q is usable (not semantic, not a Q fault)
    usable = _expand_trailing(~(fault | semantic), k, xp=xp)
    p_bad = ~(ap <= c.max) | (usable & (ap > _expand_trailing(aq, k, xp=xp) * c.ovf))
    fault = fault | _any_trailing(p_bad, q_nd, xp=xp)
    bottom = fault | semantic
    bottom_e = _expand_trailing(bottom, k, xp=xp)
    if be.supports_autodiff:
        # with P's trailing axes (k > 0) the divisor gets the full (P-broadcast) shape
        # through the where condition (P ≠ P selects nothing new: a NaN in P is a fault,
        # inside bottom_e): XLA rewrites P / broadcast(q) as P * (1/q), which flushes
        # 1/q for |q| > 1/tiny
        q_cond = bottom_e | (ap != ap) if k else bottom_e
        q_safe = widen(xp, c, xp.where(q_cond, 1.0, _expand_trailing(Q, k, xp=xp)))
        # numerator: zero at bottom (before any arithmetic), a signed zero where
        # subnormal (DAZ)
        p0 = widen(xp, c, xp.where(bottom_e, 0.0, P))
        num = flush_attached(p0, ap < c.tiny, xp=xp, be=be)
        out = num / q_safe
    else:
        # forward only: the quotient at bottom is discarded, so nothing is sanitised;
        # elsewhere P/Q is finite and DAZ is a product: (P/Q)·1, or (P/Q)·0 = (P·0)/Q
        out = pd / _expand_trailing(qd, k, xp=xp)
        out = out * xp.astype(ap >= c.tiny, out.dtype)
    decoded = xp.where(bottom_e, xp.nan, narrow(xp, Q.dtype, out))
    if tau_train is not None and tau_train > tau:
        gap = (aq >= tau) & (aq < tau_train) & ~bottom
    else:
        gap = xp.zeros_like(bottom)
    return decoded, bottom, gap, fault, semantic


def _thresholds(c: _xp.FloatConsts, cfg: InferenceConfig) -> tuple[float, float, float | None]:
    """``(thr, tau, tau_train)`` for data with constants ``c``: the thresholds rounded to
    the dtype, as eager comparisons with a Python float do (explicitly: float16/bfloat16
    are compared in float32); ``thr = max(tau, tiny)`` (DAZ: ``|Q| < tiny`` is zero).
    Memoised per (dtype constants, thresholds); the memo is not touched while tracing."""
    key = (c, cfg.tau_infer, cfg.tau_train)
    traced = _xp.tracing()
    hit = None if traced else _THRESHOLDS.get(key)
    if hit is not None:
        return hit
    tau = c.round(cfg.tau_infer)
    tau_train = None if cfg.tau_train is None else c.round(cfg.tau_train)
    out = (max(tau, c.tiny), tau, tau_train)
    if not traced and len(_THRESHOLDS) < 4096:
        _THRESHOLDS[key] = out
    return out


_THRESHOLDS: dict[tuple[Any, ...], tuple[float, float, float | None]] = {}


def _tau_underflows(xp: Namespace, dtype: Any, tau: float) -> bool:
    """Whether ``tau`` rounds to 0.0 in ``dtype`` (below half the smallest subnormal)."""
    fi = xp.finfo(_xp.real_dtype(xp, dtype))
    smallest_subnormal = float(fi.smallest_normal) * float(fi.eps)
    return tau <= smallest_subnormal / 2


def _validity_taus(value: object, n: int) -> tuple[float, ...]:
    if isinstance(value, bool):
        raise TypeError("validity_taus must be a real number or a sequence of them, got bool")
    if isinstance(value, numbers.Real):
        t = _xp.check_real("validity_taus", value, ge=0.0)
        assert t is not None
        return (t,) * n
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n:
            raise ValueError(
                f"validity_taus has {len(value)} entries for {n} validity factors"
            )
        out = []
        for i, v in enumerate(value):
            if isinstance(v, bool):
                raise TypeError(f"validity_taus[{i}] must be a real number, got bool")
            t = _xp.check_real(f"validity_taus[{i}]", v, ge=0.0)
            assert t is not None
            out.append(t)
        return tuple(out)
    raise TypeError(
        f"validity_taus must be a real number or a sequence of them, got {type(value).__name__}"
    )


def strict_inference(
    P: Array,
    Q: Array,
    *,
    config: InferenceConfig | None = None,
    experimental_provenance: bool | None = None,
    validity_factors: Sequence[Array] | None = None,
    validity_taus: float | Sequence[float] = 1e-6,
) -> InferenceResult:
    """Decode ``P/Q`` strictly.

    Masks live on ``Q``'s shape: if ``P`` has more dimensions, ``P``-derived masks are
    reduced with ``any`` over ``P``'s trailing axes and ``Q``/masks are expanded with
    trailing singleton axes for decoding. If ``Q`` has more dimensions than ``P`` the two
    simply broadcast.

    * ``fault = any(¬fin(P)) | ¬fin(Q) | any(¬fin(P/Q))`` (quotient overflow)
    * ``semantic = |Q| < tau_infer`` (``Q == ±0`` and subnormal ``Q`` included)
    * ``bottom = fault | semantic``; ``decoded = NaN`` at bottom, ``P/Q`` elsewhere
    * ``gap = tau_infer ≤ |Q| < tau_train`` and not bottom (all False without tau_train)

    ``ValueError`` if ``tau_infer`` rounds to 0 in ``Q``'s dtype. Optional
    ``validity_factors`` (experimental) add ``any(¬fin(V))`` to fault and
    ``any(|V| < tau_i)`` to semantic. Integer inputs are promoted to the default float.
    """
    cfg = _DEFAULT_CONFIG if config is None else config
    if not isinstance(cfg, InferenceConfig):
        raise TypeError(f"config must be an InferenceConfig, got {type(cfg).__name__}")
    if experimental_provenance is not None and not isinstance(experimental_provenance, bool):
        raise TypeError("experimental_provenance must be a bool or None")
    factors = tuple(validity_factors) if validity_factors is not None else ()
    for i, v in enumerate(factors):
        if not _xp.is_array(v):
            raise TypeError(f"validity_factors[{i}] must be an array, got {type(v).__name__}")
    factor_names = tuple(f"validity_factors[{i}]" for i in range(len(factors)))
    ftaus = _validity_taus(validity_taus, len(factors)) if factors else ()
    if not factors:  # the fused fast path (zpml_core._fast)
        fused = _fast.strict(P, Q, lambda c: _thresholds(c, cfg))
        if fused is not None:
            return InferenceResult(*fused)
    if not (_xp.is_array(P) and _xp.is_array(Q)):
        raise TypeError(
            f"P and Q must be arrays, got {type(P).__name__} and {type(Q).__name__}"
        )
    xp = _xp.namespace(P, Q, *factors, names=("P", "Q", *factor_names))
    q_orig_dtype = Q.dtype
    if _xp.is_floating(xp, q_orig_dtype) and _tau_underflows(xp, q_orig_dtype, cfg.tau_infer):
        raise ValueError(
            f"tau_infer={cfg.tau_infer!r} underflows to 0.0 in Q's dtype {q_orig_dtype}; "
            f"choose tau_infer >= finfo({q_orig_dtype}).smallest_normal"
        )
    p, q = _xp.float_operands(xp, ("P", "Q"), (P, Q), promote=True)
    if p.ndim <= q.ndim:
        _xp.broadcast_shape([("P", p.shape), ("Q", q.shape)])
    else:
        _xp.broadcast_shape([("P", p.shape[: q.ndim]), ("Q", q.shape)])
    factors = tuple(_xp.to_float(xp, v) for v in factors)
    for i, v in enumerate(factors):
        _xp.broadcast_shape([("Q", q.shape), (f"validity_factors[{i}]", v.shape[: q.ndim])])
    thr, tau, tau_train = _thresholds(_xp.consts(xp, q.dtype), cfg)
    be = get_backend(xp)
    decoded, bottom, gap, fault, semantic = be.fuse(_k_strict)(
        p, q, factors, xp=xp, be=be, thr=thr, tau=tau, tau_train=tau_train,
        factor_taus=ftaus,
    )
    from zpml_core.autodiff.rules import gate_output

    decoded = gate_output(be, decoded, bottom, "strict_inference", xp=xp)
    return InferenceResult(decoded, bottom, gap, fault, semantic)


# the deployment wrapper lives in its own module (it reads this one's names)
from zpml_core.inference._wrapper import SCMInferenceWrapper  # noqa: E402

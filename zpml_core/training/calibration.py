"""Choosing ``tau_infer`` for export from held-out data.

Rule (:func:`calibrate_tau_infer`): evaluate strict inference at each candidate
threshold and return the **largest** ``tau`` such that

* coverage — the share of held-out samples with finite targets that are accepted
  (decoded as finite) — is at least ``target_coverage``, and
* if ``max_error`` is given, the RMSE of the accepted finite-target predictions is at
  most ``max_error``.

Larger thresholds reject more near-singular predictions (safer, lower error, lower
coverage), so the largest feasible one is the most conservative threshold that still
serves the requested share. The default candidates span the observed ``|Q|``
distribution (its quantiles and a log grid up to the largest ``|Q|``): a model whose
denominator on the singular set settles at ``|Q| ~ 1e-2`` gets a threshold there, not a
constant. ``tau_infer`` never exceeds ``tau_train`` when that is given (pass it to keep
``InferenceConfig(tau_infer, tau_train)`` valid); without it there is no cap. If no candidate is feasible a
``ValueError`` explains which constraint failed and the best coverage reached.

Masks are computed by :func:`zpml_core.inference.strict_inference`, i.e. exactly the
masks production uses, on any array-API library.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from zpml_core import _xp
from zpml_core._xp import Array
from zpml_core.inference import InferenceConfig, strict_inference
from zpml_core.training.metrics import check_shapes

__all__ = ["TauCalibration", "calibrate_tau_infer", "evaluate_tau"]


@dataclass(frozen=True)
class TauCalibration:
    """Result of :func:`calibrate_tau_infer`; ``table`` has one row per candidate
    (ascending ``tau``), :attr:`curve` the same as columns (the coverage/error curve)."""

    tau_infer: float
    coverage: float
    rmse: float
    false_finite_frac: float
    target_coverage: float
    max_error: float | None
    table: list[dict[str, float]] = field(repr=False)

    @property
    def curve(self) -> dict[str, list[float]]:
        """The coverage/error curve: ``{"tau", "coverage", "rmse", "false_finite_frac",
        "bottom_frac"}``, one list each, in ascending ``tau`` (NaN where undefined)."""
        keys = ("tau", "coverage", "rmse", "false_finite_frac", "bottom_frac")
        return {k: [float(r[k]) for r in self.table] for k in keys}

    def as_metadata(self) -> dict[str, Any]:
        return {
            "tau_infer": self.tau_infer,
            "coverage": self.coverage,
            "rmse": None if math.isnan(self.rmse) else self.rmse,
            "false_finite_frac": None if math.isnan(self.false_finite_frac) else self.false_finite_frac,
            "target_coverage": self.target_coverage,
            "max_error": self.max_error,
            "rule": "largest tau with coverage >= target_coverage and rmse <= max_error",
        }


def _real_arg(name: str, value: object, **kw: Any) -> float | None:
    if _xp.is_bool_scalar(value):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return _xp.check_real(name, value, **kw)


def _rows(mask: Array, *, xp: Any, any_: bool) -> Array:
    """Elementwise mask → per-sample mask (reduced over every axis after the first)."""
    if mask.ndim <= 1:
        return mask
    axes = tuple(range(1, mask.ndim))
    return xp.any(mask, axis=axes) if any_ else xp.all(mask, axis=axes)


def _q_float_dtype(xp: Any, Q: Array) -> Any:
    """``Q``'s floating dtype (integer/bool ``Q`` is decoded in the default float)."""
    return Q.dtype if _xp.is_floating(xp, Q.dtype) else _xp.default_float(xp, _xp.device(Q))


def _check_tau(name: str, tau: float, xp: Any, Q: Array) -> None:
    """``ValueError`` naming ``name`` if ``tau`` rounds to 0 in ``Q``'s dtype (strict
    inference could not use it)."""
    from zpml_core.inference import _tau_underflows

    dt = _q_float_dtype(xp, Q)
    if _tau_underflows(xp, dt, tau):
        tiny = float(xp.finfo(_xp.real_dtype(xp, dt)).smallest_normal)
        raise ValueError(
            f"{name}={tau!r} underflows to 0.0 in Q's dtype {dt}; thresholds must be "
            f">= finfo({dt}).smallest_normal = {tiny:g}"
        )


def evaluate_tau(P: Array, Q: Array, y_true: Array, tau: float) -> dict[str, float]:
    """Strict-inference statistics of one threshold on held-out data.

    Shapes: ``y_true`` has exactly ``P``'s shape and ``Q`` ``P``'s leading shape
    (``Q.shape == P.shape[:Q.ndim]``); anything else → ``ValueError`` naming the arrays
    (a ``(N, 1)`` target column next to ``(N,)`` predictions would otherwise be compared
    all-pairs). A sample is the index along the first axis.

    ``coverage``: accepted (no bottom in the sample) share of samples whose targets are
    all finite; ``rmse`` over the elements of those accepted samples (NaN if none),
    computed in at least float32 and scaled so that it never overflows before the final
    value; ``false_finite_frac``: share of samples with a non-finite target that were
    decoded as finite (NaN if none); ``bottom_frac``: share of all samples that are
    bottom.
    """
    xp = _xp.namespace(P, Q, y_true, names=("P", "Q", "y_true"))
    check_shapes(P, Q, [("y_true", y_true)])
    t = _real_arg("tau", tau, gt=0.0)
    assert t is not None
    _check_tau("tau", t, xp, Q)
    res = strict_inference(P, Q, config=InferenceConfig(tau_infer=t))
    decoded, bottom = res[0], res[1]
    y = _xp.to_float(xp, y_true)
    fin_el = xp.isfinite(y)
    fin_row = _rows(fin_el, xp=xp, any_=False)
    bot_row = _rows(bottom, xp=xp, any_=True)
    acc_row = fin_row & ~bot_row
    acc_el = acc_row
    while acc_el.ndim < decoded.ndim:
        acc_el = acc_el[..., None]
    acc_el = xp.broadcast_to(acc_el, decoded.shape)
    # the error in at least float32, halved (never overflows), then scaled by its
    # largest magnitude before squaring: rmse = 2·m·sqrt(mean((e/m)²))
    wide = xp.result_type(decoded.dtype, y.dtype, xp.float32)
    d = xp.astype(decoded, wide) if decoded.dtype != wide else decoded
    yw = xp.astype(y, wide) if y.dtype != wide else y
    half = xp.where(acc_el, d * 0.5 - xp.where(fin_el, yw, 0.0) * 0.5, 0.0)

    def count(m: Array) -> float:
        return float(xp.sum(xp.astype(m, _xp.default_int(xp, _xp.device(m)))))

    n = bot_row.shape[0] if bot_row.ndim else 1
    n_fin = count(fin_row)
    n_acc = count(acc_row)
    n_acc_el = count(acc_el)
    n_bot_t = count(~fin_row)
    n_ff = count(~fin_row & ~bot_row)
    nan = float("nan")
    rmse = nan
    if n_acc_el:
        m = float(xp.max(xp.abs(half))) if half.ndim else abs(float(half))
        if m == 0.0:
            rmse = 0.0
        else:
            r = half / m
            rmse = 2.0 * m * math.sqrt(float(xp.sum(r * r)) / n_acc_el)
    return {
        "tau": t,
        "coverage": n_acc / n_fin if n_fin else nan,
        "rmse": rmse,
        "false_finite_frac": n_ff / n_bot_t if n_bot_t else nan,
        "bottom_frac": count(bot_row) / n if n else nan,
    }


#: quantile levels of the observed finite nonzero ``|Q|`` used as default candidates:
#: 0, 40 log-spaced levels 1e-3 … 1 (13 per decade, dense where coverage targets such as
#: 0.95 fall) and the round levels 0.002, 0.005, 0.02, 0.05, 0.2, 0.5 (so a round target
#: coverage such as 0.95 has its exact quantile as a candidate)
_Q_LEVELS = tuple(sorted({0.0, 0.002, 0.005, 0.02, 0.05, 0.2, 0.5,
                          *(10.0 ** (-3.0 + i / 13) for i in range(40))}))
_N_GRID = 41


def _coverage_cut(Q: Array, y_true: Array, target_coverage: float) -> list[float]:
    """The thresholds at which the coverage of the finite-target samples crosses
    ``target_coverage``: with ``m_i`` = the smallest ``|Q|`` of sample ``i`` (0 if any is
    NaN: such a sample is bottom at every threshold) over the ``n`` samples with finite
    targets, sorted ascending, ``m_(k-1), m_(k), m_(k+1)`` for ``k = ⌊(1 − c)·n⌋`` — at
    ``tau = m_(k)`` exactly the ``k`` samples below it are rejected, the largest threshold
    whose coverage ``(n − k)/n`` is still ``≥ c`` (ties and faults are settled by
    evaluating each candidate)."""
    xp = _xp.namespace(Q, y_true)
    if Q.ndim == 0 or Q.shape[0] == 0:
        return []
    a = xp.abs(_xp.to_float(xp, Q))
    a = xp.where(xp.isnan(a), xp.zeros_like(a), a)
    if a.ndim > 1:
        a = xp.min(a, axis=tuple(range(1, a.ndim)))
    fin = _rows(xp.isfinite(_xp.to_float(xp, y_true)), xp=xp, any_=False)
    n = int(xp.sum(xp.astype(fin, _xp.default_int(xp, _xp.device(fin)))))
    if n == 0:
        return []
    s = xp.sort(xp.where(fin, a, xp.asarray(math.inf, dtype=a.dtype)))
    k = math.floor((1.0 - target_coverage) * n)
    idx = sorted({i for i in (k - 1, k, k + 1) if 0 <= i < n})
    picked = xp.take(s, xp.asarray(idx, dtype=_xp.default_int(xp, _xp.device(s))))
    return [float(picked[i]) for i in range(len(idx))]


def _default_candidates(Q: Array, tau_train: float | None, cut: Sequence[float] = ()
                        ) -> list[float]:
    """Default thresholds spanning the observed ``|Q|`` distribution: 41 log-spaced
    values from ``floor = max(1e-9, finfo(Q).smallest_normal)`` to the largest finite
    ``|Q|``, plus the ``|Q|`` quantiles at :data:`_Q_LEVELS` (each an observed value, so
    every coverage step near the chosen threshold is a candidate) and ``cut`` (the
    target coverage's exact thresholds, :func:`_coverage_cut`), all finite and
    ``>= floor``; with ``tau_train`` given, capped at ``tau_train`` (which is added)."""
    xp = _xp.namespace(Q)
    a = xp.reshape(xp.abs(_xp.to_float(xp, Q)), (-1,))
    tiny = float(xp.finfo(_xp.real_dtype(xp, _q_float_dtype(xp, Q))).smallest_normal)
    floor = max(1e-9, tiny)  # never a threshold that underflows in Q's dtype
    if tau_train is not None and tau_train < floor:
        raise ValueError(
            f"tau_train={tau_train!r} is below the smallest default candidate "
            f"{floor:g} (max(1e-9, finfo({a.dtype}).smallest_normal)); pass "
            "candidates= explicitly"
        )
    usable = xp.isfinite(a) & (a > 0)
    n = int(xp.sum(xp.astype(usable, _xp.default_int(xp, _xp.device(a))))) if a.shape[0] else 0
    out: list[float] = []
    if n:
        # finite nonzero |Q| first (ascending), the rest pushed to the end as +inf
        s = xp.sort(xp.where(usable, a, xp.asarray(math.inf, dtype=a.dtype)))
        idx = sorted({min(n - 1, round(lv * (n - 1))) for lv in _Q_LEVELS})
        picked = xp.take(s, xp.asarray(idx, dtype=_xp.default_int(xp, _xp.device(s))))
        out = [float(picked[i]) for i in range(len(idx))]
        hi = out[-1]  # level 1: the largest finite |Q|
    else:
        hi = 1.0
    if tau_train is not None:
        hi = tau_train
    hi = max(hi, floor)
    lo = floor
    k = _N_GRID
    # in log space (hi / lo overflows for |Q| near finfo.max), never above hi
    llo, lhi = math.log(lo), math.log(hi)
    out += ([lo, *(min(hi, math.exp(llo + (lhi - llo) * i / (k - 1))) for i in range(1, k - 1)), hi]
            if hi > lo else [hi])
    out += [v for v in cut if math.isfinite(v)]
    out = [v for v in out if v >= floor and (tau_train is None or v <= tau_train)]
    return sorted(set(out + ([tau_train] if tau_train is not None else [])))


def calibrate_tau_infer(
    P: Array,
    Q: Array,
    y_true: Array,
    *,
    target_coverage: float = 0.95,
    max_error: float | None = None,
    candidates: Sequence[float] | None = None,
    tau_train: float | None = None,
) -> TauCalibration:
    """Pick ``tau_infer`` from held-out predictions (rule in the module docstring).

    ``P``, ``Q``: model outputs on held-out inputs (``Q`` one denominator per sample:
    ``P``'s shape or its leading part); ``y_true``: targets with exactly ``P``'s shape
    (±inf/NaN mark bottom targets); other shapes → ``ValueError`` naming them.
    ``candidates``: thresholds to try (default: spanning the observed ``|Q|`` — its
    quantiles at the levels ``_Q_LEVELS`` (0, 1e-3 … 1 log-spaced, and round levels
    such as 0.05), the exact thresholds at which the finite-target coverage crosses
    ``target_coverage`` (``_coverage_cut``), plus 41 log-spaced values from
    ``max(1e-9, finfo(Q.dtype).smallest_normal)`` up to the largest finite ``|Q|``;
    with ``tau_train``, everything above ``tau_train`` is dropped); a candidate that underflows to 0 in ``Q``'s dtype →
    ``ValueError`` naming ``candidates[i]``. Returns a :class:`TauCalibration`.
    """
    xp = _xp.namespace(P, Q, y_true, names=("P", "Q", "y_true"))
    check_shapes(P, Q, [("y_true", y_true)])
    tc = _real_arg("target_coverage", target_coverage, ge=0.0, le=1.0)
    me = _real_arg("max_error", max_error, ge=0.0, allow_none=True)
    tt = _real_arg("tau_train", tau_train, gt=0.0, allow_none=True)
    assert tc is not None
    if candidates is None:
        cands = _default_candidates(Q, tt, _coverage_cut(Q, y_true, tc))
    else:
        if isinstance(candidates, (str, bytes)) or not isinstance(candidates, Iterable):
            raise TypeError(
                f"candidates must be a sequence of real numbers or None, got {type(candidates).__name__}"
            )
        cands = []
        for i, c in enumerate(candidates):
            v = _real_arg(f"candidates[{i}]", c, gt=0.0)
            assert v is not None
            _check_tau(f"candidates[{i}]", v, xp, Q)
            cands.append(v)
        if not cands:
            raise ValueError("candidates must not be empty")
        cands = sorted(set(cands))
    if tt is not None:
        cands = [c for c in cands if c <= tt]
        if not cands:
            raise ValueError(f"every candidate exceeds tau_train={tt!r}")
    table = [evaluate_tau(P, Q, y_true, c) for c in cands]
    feasible = [
        r
        for r in table
        if r["coverage"] >= tc and (me is None or (not math.isnan(r["rmse"]) and r["rmse"] <= me))
    ]
    if not feasible:
        best = max(table, key=lambda r: (-1.0 if math.isnan(r["coverage"]) else r["coverage"]))
        raise ValueError(
            f"no candidate tau reaches coverage >= {tc:g}"
            + (f" with rmse <= {me:g}" if me is not None else "")
            + f"; best coverage {best['coverage']:.4f} at tau={best['tau']:.3g} "
            f"(rmse {best['rmse']:.4g})"
        )
    chosen = max(feasible, key=lambda r: r["tau"])
    return TauCalibration(
        tau_infer=chosen["tau"],
        coverage=chosen["coverage"],
        rmse=chosen["rmse"],
        false_finite_frac=chosen["false_finite_frac"],
        target_coverage=tc,
        max_error=me,
        table=table,
    )

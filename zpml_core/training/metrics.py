"""Per-batch training/validation metrics, written once against the array API.

Everything here is traceable (no host syncs, no boolean indexing, no Python branches on
values): the torch step calls it eagerly, the JAX step inside its ``jax.jit`` function.
Each function returns ONE 1-d array (a metrics vector whose layout is given by the
``*_KEYS`` tuples), so the trainer converts a whole step's metrics to Python floats with
a single device→host transfer at the logging boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zpml_core import _xp
from zpml_core._xp import Array, Namespace
from zpml_core.inference import InferenceConfig, strict_inference

__all__ = [
    "RAW_KEYS",
    "STRICT_SUM_KEYS",
    "TRAIN_KEYS",
    "batch_metrics",
    "check_output_shapes",
    "check_shapes",
    "denominator",
    "finish_metrics",
    "per_sample_bottom",
    "strict_sums",
]

#: the metrics a train / eval step reports (``tau_train`` / ``tau_eval`` is added on the
#: host: it is the exact Python float the step received)
TRAIN_KEYS = (
    "loss",
    "coverage",
    "bottom_frac",
    "denom_abs_min",
    "denom_abs_mean",
    "denom_abs_available",
)
#: what :func:`batch_metrics` computes on device (a tuple of 0-d arrays and the static row
#: count); :func:`finish_metrics` turns it into ``TRAIN_KEYS`` on the host — divisions by
#: counts and the NaN-if-empty rules are cheaper there than as device ops on every step
RAW_KEYS = ("loss", "n_rows", "n_covered", "n_finite_q", "q_abs_min", "q_abs_sum")
#: per-batch sums of the strict-inference validation metrics (aggregated on the host)
STRICT_SUM_KEYS = (
    "n_samples",
    "n_strict_bottom",
    "n_gap",
    "n_finite_targets",
    "n_accepted_finite",
    "sse_accepted_finite",
    "n_bottom_targets",
    "n_false_finite",
)


def _unknown(d: Any) -> bool:
    return d is None or (isinstance(d, float) and d != d)


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(
        _unknown(x) or _unknown(y) or x == y for x, y in zip(a, b, strict=True)
    )


def _shape(a: Any) -> tuple[Any, ...]:
    return tuple(a.shape)


def check_shapes(
    p: Any,
    q: Any,
    targets: Sequence[tuple[str, Any]],
    *,
    p_name: str = "P",
    q_name: str = "Q",
) -> None:
    """The shape rule of the trainer, its validation metrics and tau calibration.

    * every target array (``Y_n``, ``Y_d``, ``y_true``) has exactly ``P``'s shape;
    * ``Q`` (if given) has ``P``'s leading shape, ``Q.shape == P.shape[:Q.ndim]``: one
      denominator per sample may be shared by ``P``'s trailing outputs, as strict
      inference decodes it.

    Nothing else broadcasts: targets of shape ``(B, 1)`` next to ``P, Q`` of shape
    ``(B,)`` (what ``y = 1/(x - a)`` gives for ``x`` of shape ``(B, 1)``) would turn an
    elementwise loss or error into a ``B×B`` all-pairs one. A mismatch raises
    ``ValueError`` naming the arrays and their shapes. Shapes are static (also under
    ``jax.jit``); unknown sizes (``None``/NaN, e.g. dask) are not compared.
    """
    ps = _shape(p)
    for name, t in targets:
        ts = _shape(t)
        if not _same(ts, ps):
            hint = ""
            if len(ts) == len(ps) + 1 and ts[-1] == 1 and _same(ts[:-1], ps):
                hint = f" (a column: reshape it to {ps}, e.g. y[..., 0] or y.reshape(-1))"
            raise ValueError(
                f"{name} has shape {ts} but {p_name} has shape {ps}; targets must have "
                f"exactly that shape{hint}. They are never broadcast: a (B, 1) column "
                "next to (B,) outputs would turn an elementwise loss into a B×B "
                "all-pairs one"
            )
    if q is not None:
        qs = _shape(q)
        if len(qs) > len(ps) or not _same(qs, ps[: len(qs)]):
            raise ValueError(
                f"{q_name} has shape {qs} but {p_name} has shape {ps}; Q must have P's "
                "shape or its leading part (one denominator shared by P's trailing "
                "outputs), Q.shape == P.shape[:Q.ndim]. They are never broadcast "
                "otherwise (that would pair every Q with every P)"
            )


def check_output_shapes(outputs: Any, y_n: Any, y_d: Any) -> None:
    """:func:`check_shapes` for a model's ``outputs`` and the lifted targets.

    ``outputs`` is a ``(P, Q, ...)`` tuple/list (``P`` first, ``Q`` second) or a single
    decoded array (which plays ``P``'s role); other output structures are not checked.
    """
    if isinstance(outputs, (tuple, list)):
        if not outputs or not hasattr(outputs[0], "shape"):
            return
        p, q = outputs[0], denominator(outputs)
        p_name, q_name = "the model's P (outputs[0])", "the model's Q (outputs[1])"
    elif hasattr(outputs, "shape"):
        p, q, p_name, q_name = outputs, None, "the model's outputs", "Q"
    else:
        return
    if q is not None and not hasattr(q, "shape"):
        q = None
    named = [("the targets Y_n", y_n), ("the targets Y_d", y_d)]
    if hasattr(y_n, "shape") and hasattr(y_d, "shape") and _same(_shape(y_n), _shape(y_d)):
        named = [("the targets", y_n)]
    check_shapes(p, q, named, p_name=p_name, q_name=q_name)


def denominator(outputs: Any) -> Array | None:
    """``Q`` of a ``(P, Q)`` tuple/list output, else None."""
    if isinstance(outputs, (tuple, list)) and len(outputs) >= 2 and _xp.is_array(outputs[1]):
        return outputs[1]
    return None


def _reduce_rows(mask: Array, *, xp: Namespace) -> Array:
    """Elementwise mask → per-sample mask (``any`` over the last axis if rank > 1)."""
    if mask.ndim > 1:
        mask = xp.any(mask, axis=-1)
    return mask


def per_sample_bottom(outputs: Any, tau: Any, *, xp: Namespace) -> Array | None:
    """Trainer coverage mask (semantics §7.3): for ``(P, Q)`` outputs ``¬fin(Q) | |Q| < tau``;
    for a single array output ``¬fin(out)``; None for anything else (coverage 1)."""
    q = denominator(outputs)
    if q is not None:
        return _reduce_rows(~xp.isfinite(q) | (xp.abs(q) < tau), xp=xp)
    if _xp.is_array(outputs) and not isinstance(outputs, (tuple, list)):
        return _reduce_rows(~xp.isfinite(outputs), xp=xp)
    return None


def _float_dtype(xp: Namespace, loss: Array, q: Array | None) -> Any:
    dt = loss.dtype
    if not _xp.is_floating(xp, dt):
        dt = _xp.default_float(xp, _xp.device(loss))
    if q is not None and _xp.is_floating(xp, q.dtype) and not _xp.is_complex(xp, q.dtype):
        dt = xp.result_type(dt, q.dtype)
    return dt


def batch_metrics(loss: Array, outputs: Any, tau: Any, *, xp: Namespace) -> tuple[Any, ...]:
    """The ``RAW_KEYS`` statistics of one batch (see :func:`finish_metrics`).

    ``loss`` is reduced with ``mean`` if it is not 0-d. Coverage is per sample
    (semantics §7.3; differs from ``losses.coverage``): a row is covered when every ``Q`` of
    it is finite with ``|Q| >= tau``. The denominator statistics are the count, minimum
    and sum of the finite ``|Q|`` values (0, +inf, 0 when the outputs are not a
    ``(P, Q)`` tuple). About ten ops and no casts: it runs on every eager torch step.
    """
    q = denominator(outputs)
    if loss.ndim:
        loss = xp.mean(loss)
    if q is None:
        bottom = per_sample_bottom(outputs, tau, xp=xp)
        if bottom is None:
            return (loss, 1, 1, 0, float("inf"), 0.0)
        n = 1 if bottom.ndim == 0 else int(bottom.shape[0])
        return (loss, n, xp.sum(~bottom), 0, float("inf"), 0.0)
    a = xp.abs(q)
    fin = a < float("inf")  # = isfinite for |Q| (NaN compares False), one op cheaper
    ok = fin & (a >= tau)  # covered: finite and |Q| >= tau
    if ok.ndim > 1:
        ok = xp.all(ok, axis=-1)
    n = 1 if ok.ndim == 0 else int(ok.shape[0])
    count = xp.sum(fin)
    qmin = xp.min(xp.where(fin, a, float("inf")))
    qsum = xp.sum(xp.where(fin, a, 0.0))
    return (loss, n, xp.sum(ok), count, qmin, qsum)


def finish_metrics(raw: Sequence[float]) -> list[float]:
    """``RAW_KEYS`` values (host numbers) → ``TRAIN_KEYS`` values.

    ``denom_abs_min``/``denom_abs_mean`` are NaN when no ``|Q|`` is finite (or the
    outputs are not a tuple); ``denom_abs_available`` is then 0.0, else 1.0.
    """
    loss, n, covered, count, qmin, qsum = (float(v) for v in raw[:6])
    coverage = covered / n if n else float("nan")
    if count > 0:
        return [loss, coverage, 1.0 - coverage, qmin, qsum / count, 1.0]
    nan = float("nan")
    return [loss, coverage, 1.0 - coverage, nan, nan, 0.0]


def strict_sums(
    outputs: Any,
    y_n: Array,
    y_d: Array,
    *,
    inference: InferenceConfig,
    mask_finite: Array | None = None,
    xp: Namespace,
) -> tuple[Any, ...]:
    """Per-batch sums for validation with the masks production uses (``strict_inference``).

    Returns ``STRICT_SUM_KEYS`` as a tuple of 0-d arrays: sample count, strict bottoms (per sample),
    gap samples, finite-target elements, accepted finite-target elements, their squared
    error sum, bottom-target elements (``Y_d == 0``) and how many of those were decoded
    as finite (false finite).
    """
    check_output_shapes(outputs, y_n, y_d)
    if mask_finite is not None:
        check_shapes(y_n, None, [("mask_finite", mask_finite)], p_name="the targets")
    q = denominator(outputs)
    if q is not None:
        res = strict_inference(outputs[0], q, config=inference)
        decoded, bottom, gap = res[0], res[1], res[2]
    else:
        decoded = outputs
        bottom = ~xp.isfinite(outputs)
        gap = xp.zeros_like(bottom)
    dt = decoded.dtype if _xp.is_floating(xp, decoded.dtype) else _xp.default_float(xp)
    # element masks on the decoded shape ("missing" semantic labels are neither)
    finite_t = (y_d != 0) if mask_finite is None else mask_finite
    bottom_t = y_d == 0
    bottom_el = bottom
    while bottom_el.ndim < decoded.ndim:
        bottom_el = bottom_el[..., None]
    bottom_el = xp.broadcast_to(bottom_el, decoded.shape)
    finite_t = xp.broadcast_to(finite_t, decoded.shape)
    bottom_t = xp.broadcast_to(bottom_t, decoded.shape)
    accepted = finite_t & ~bottom_el
    y = y_n / xp.where(finite_t, y_d, xp.ones_like(y_d))
    err = xp.where(accepted, decoded - xp.astype(y, dt), 0.0)
    n = 1 if bottom.ndim == 0 else int(bottom.shape[0])
    return (
        n,
        xp.sum(_reduce_rows(bottom, xp=xp)),
        xp.sum(_reduce_rows(gap, xp=xp)),
        xp.sum(finite_t),
        xp.sum(accepted),
        xp.sum(err * err),
        xp.sum(bottom_t),
        xp.sum(bottom_t & ~bottom_el),
    )

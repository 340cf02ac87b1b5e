"""What to do with the elements strict inference refused (array API, every backend).

* ``reject_on_bottom(decoded, bottom)`` → ``(where(bottom, NaN, decoded), ¬bottom)``
* ``reject_on_gap(decoded, bottom, gap)`` → ``(where(bottom ∨ gap, NaN, decoded), ¬(bottom ∨ gap))``
* ``safe_sentinel(decoded, invalid, sentinel=s)`` → ``where(invalid, s, decoded)``
* ``route_to_analytic_solver`` — replace routed samples by an analytic solver's answer.

Masks live on the leading axes of ``decoded`` (``Q``'s shape, when ``P`` carries trailing
output axes): a mask of shape ``decoded.shape[:k]`` applies to every trailing element.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from zpml_core import _xp
from zpml_core._xp import Array, Namespace
from zpml_core.inference import _masks
from zpml_core.inference.mode import BOTTOM_PROVENANCE_FAULT, BOTTOM_PROVENANCE_MIXED

__all__ = ["reject_on_bottom", "reject_on_gap", "route_to_analytic_solver", "safe_sentinel"]

EventLogger = Callable[[Mapping[str, object]], None]


def _decoded(xp: Namespace, decoded: object) -> Array:
    if not _xp.is_array(decoded):
        raise TypeError(f"decoded must be an array, got {type(decoded).__name__}")
    d = _xp.as_input(xp, decoded)
    if not _xp.is_floating(xp, d.dtype):
        raise TypeError(f"decoded must be a floating array, got dtype {d.dtype}")
    return d


def _leading_mask(xp: Namespace, m: object, name: str, decoded: Array) -> Array:
    """``m`` as a bool mask over ``decoded``'s leading axes, expanded to its rank."""
    b = _masks.mask(xp, m, name, decoded)
    if b.ndim > decoded.ndim or not _masks.shape_eq(tuple(b.shape), tuple(decoded.shape[: b.ndim])):
        raise ValueError(
            f"{name} has shape {tuple(b.shape)}; it must equal decoded's leading shape "
            f"(decoded has shape {tuple(decoded.shape)})"
        )
    return b


def _nan_where(xp: Namespace, reject: Array, decoded: Array) -> Array:
    return _xp.as_input(xp, xp.where(_masks.expand_to(reject, decoded.ndim, xp=xp), xp.nan, decoded))


def reject_on_bottom(decoded: Array, bottom_mask: Array) -> tuple[Array, Array]:
    """Refuse bottom elements: ``(where(bottom, NaN, decoded), accept = ¬bottom)``."""
    xp = _xp.namespace(decoded, bottom_mask, names=("decoded", "bottom_mask"))
    d = _decoded(xp, decoded)
    b = _leading_mask(xp, bottom_mask, "bottom_mask", d)
    return _nan_where(xp, b, d), _xp.as_input(xp, ~b)


def reject_on_gap(decoded: Array, bottom_mask: Array, gap_mask: Array) -> tuple[Array, Array]:
    """Refuse bottom and gap elements (``tau_infer ≤ |Q| < tau_train``, never trained
    there): ``r = bottom ∨ gap``; ``(where(r, NaN, decoded), accept = ¬r)``."""
    xp = _xp.namespace(decoded, bottom_mask, gap_mask, names=("decoded", "bottom_mask", "gap_mask"))
    d = _decoded(xp, decoded)
    b = _leading_mask(xp, bottom_mask, "bottom_mask", d)
    g = _leading_mask(xp, gap_mask, "gap_mask", d)
    if not _masks.shape_eq(tuple(g.shape), tuple(b.shape)):
        raise ValueError(f"gap_mask has shape {tuple(g.shape)}, bottom_mask {tuple(b.shape)}: they must match")
    r = b | g
    return _nan_where(xp, r, d), _xp.as_input(xp, ~r)


def safe_sentinel(decoded: Array, invalid_mask: Array, *, sentinel: float) -> Array:
    """``where(invalid, sentinel, decoded)``: a fixed value (e.g. 0.0) where invalid.

    ``sentinel`` is a real number (NaN and ±inf allowed); a finite sentinel beyond the
    dtype's range is a ``ValueError`` (it would round to ±inf)."""
    xp = _xp.namespace(decoded, invalid_mask, names=("decoded", "invalid_mask"))
    d = _decoded(xp, decoded)
    if isinstance(sentinel, (bool, str)) or not (
        isinstance(sentinel, (int, float)) or _xp._is_real_scalar_like(sentinel)
    ):
        raise TypeError(f"sentinel must be a real number, got {type(sentinel).__name__}")
    s = float(sentinel)
    big = float(xp.finfo(_xp.real_dtype(xp, d.dtype)).max)
    if math.isfinite(s) and abs(s) > big:
        raise ValueError(f"sentinel={s!r} does not fit decoded's dtype {d.dtype} (|sentinel| <= {big:g})")
    inv = _leading_mask(xp, invalid_mask, "invalid_mask", d)
    fill = xp.asarray(s, dtype=d.dtype, device=_xp.device(d))
    return _xp.as_input(xp, xp.where(_masks.expand_to(inv, d.ndim, xp=xp), fill, d))


def _semantic_part(
    xp: Namespace,
    invalid: Array,
    bottom: Array | None,
    fault: Array | None,
    semantic: Array | None,
    code: Array | None,
) -> Array | None:
    """The invalid samples that are *semantic* bottoms (left in place, never routed):
    from ``bottom_provenance`` (codes 2, 3), ``semantic_bottom_mask``, or
    ``bottom ∧ ¬fault``, each restricted to ``bottom`` (``invalid`` without it)."""
    like = invalid if bottom is None else bottom
    sem = None
    if code is not None:
        sem = _masks.split_from_provenance(like, code)[1]
    if semantic is not None:
        cur = semantic & like
        if sem is not None:
            _masks.agree(xp, sem, cur, "bottom_provenance and semantic_bottom_mask disagree", ())
        sem = cur
    if sem is None and fault is not None:
        sem = like & ~fault
    return None if sem is None else invalid & sem


def _count(xp: Namespace, m: Array) -> int:
    return int(xp.sum(xp.astype(m, _xp.default_int(xp, _xp.device(m)))))


def route_to_analytic_solver(
    decoded: Array,
    invalid_mask: Array,
    *,
    inputs: Array,
    solver_fn: Callable[[Array], Any],
    event_logger: EventLogger | None = None,
    bottom_mask: Array | None = None,
    fault_mask: Array | None = None,
    semantic_bottom_mask: Array | None = None,
    bottom_provenance: Array | None = None,
    dense: bool = False,
) -> Array:
    """Replace routed samples of ``decoded`` by ``solver_fn``'s answer for their inputs.

    Per sample (axis 0), ``route = any(invalid) ∧ ¬semantic``: a mask with trailing axes
    routes the whole sample once; when provenance is given (``bottom_provenance``,
    ``semantic_bottom_mask`` or ``fault_mask`` with ``bottom_mask``) *semantic* bottoms
    stay as they are (a genuine singularity is an answer, not a failure) and only fault
    bottoms and other invalid samples are routed.

    ``solver_fn(inputs[route])`` receives the routed rows only and returns their
    replacement, shaped ``(n_routed, *decoded.shape[1:])``; it is not called when
    nothing routes (``decoded`` is returned as is). This selection has a data-dependent
    size: the per-sample route is read on the host (one transfer), so this mode runs
    eagerly (not under ``jit``/``compile``). With
    ``dense=True``, ``solver_fn(inputs)`` answers for every row and the result is
    ``where(route, answer, decoded)`` — no data-dependent shape, traceable.

    ``event_logger`` (eager mode) receives one ``{"event": "fallback-routing", ...}``
    record per provenance tag routed (``mixed``, ``fault``, ``none``) with ``batch_size``,
    ``routed_count``, ``routed_rate``, ``count``, ``rate`` and ``provenance_tag``.
    """
    xp = _xp.namespace(
        decoded, invalid_mask, inputs, bottom_mask, fault_mask, semantic_bottom_mask, bottom_provenance,
        names=("decoded", "invalid_mask", "inputs", "bottom_mask", "fault_mask",
               "semantic_bottom_mask", "bottom_provenance"),
    )
    if not callable(solver_fn):
        raise TypeError(f"solver_fn must be callable, got {type(solver_fn).__name__}")
    if event_logger is not None and not callable(event_logger):
        raise TypeError(f"event_logger must be callable or None, got {type(event_logger).__name__}")
    if not isinstance(dense, bool):
        raise TypeError(f"dense must be a bool, got {type(dense).__name__}")
    d = _decoded(xp, decoded)
    if not _xp.is_array(inputs):
        raise TypeError(f"inputs must be an array, got {type(inputs).__name__}")
    x = _xp.as_input(xp, inputs)
    if d.ndim == 0 or x.ndim == 0:
        raise ValueError("decoded and inputs must have a batch dimension (axis 0)")
    n = x.shape[0]
    if not _masks.dim_eq(d.shape[0], n):
        raise ValueError(f"decoded has batch size {d.shape[0]}, inputs {n}: they must match")
    inv = _masks.batch_any(xp, _masks.mask(xp, invalid_mask, "invalid_mask", d), "invalid_mask", n)

    def opt(m: object, name: str) -> Array | None:
        if m is None:
            return None
        return _masks.batch_any(xp, _masks.mask(xp, m, name, d), name, n)

    bottom = opt(bottom_mask, "bottom_mask")
    fault = opt(fault_mask, "fault_mask")
    semantic = opt(semantic_bottom_mask, "semantic_bottom_mask")
    code = None
    if bottom_provenance is not None:
        code = _masks.batch_vector(xp, _masks.provenance(xp, bottom_provenance), "bottom_provenance", n)
    sem = _semantic_part(xp, inv, bottom, fault, semantic, code)
    route = inv if sem is None else inv & ~sem
    route_e = _masks.expand_to(route, d.ndim, xp=xp)

    if dense:
        answer = _answer(xp, solver_fn(x), d, tuple(d.shape))
        return xp.where(route_e, answer, d)

    # the selection is data-dependent: read the per-sample route once on the host
    it = _xp.default_int(xp, _xp.device(route))
    flags = _masks.host_list(xp.astype(route, it))
    rows = [i for i, f in enumerate(flags) if f]
    routed = len(rows)
    if routed == 0:
        return d
    dev = _xp.device(d)
    idx = xp.asarray(rows, dtype=it, device=dev)
    answer = _answer(xp, solver_fn(xp.take(x, idx, axis=0)), d, (routed, *d.shape[1:]))
    # splice without in-place writes: row i takes answer[k] for its rank k among routed rows
    rank, k = [], 0
    for f in flags:
        rank.append(min(k, routed - 1))
        k += f
    out = xp.where(route_e, xp.take(answer, xp.asarray(rank, dtype=it, device=dev), axis=0), d)
    if event_logger is not None:
        _route_events(xp, event_logger, route, n, routed, bottom, fault, semantic, sem, code)
    return out


def _answer(xp: Namespace, raw: Any, d: Array, shape: tuple[int | None, ...]) -> Array:
    a = xp.asarray(raw, dtype=d.dtype, device=_xp.device(d))
    if not _masks.shape_eq(tuple(a.shape), tuple(shape)):
        raise ValueError(f"solver_fn returned shape {tuple(a.shape)}; expected {tuple(shape)}")
    return a


def _route_events(
    xp: Namespace,
    log: EventLogger,
    route: Array,
    n: int,
    routed: int,
    bottom: Array | None,
    fault: Array | None,
    semantic: Array | None,
    sem: Array | None,
    code: Array | None,
) -> None:
    base = {"batch_size": int(n), "routed_count": routed, "routed_rate": routed / n if n else 0.0}

    def emit(count: int, tag: str) -> None:
        log({"event": "fallback-routing", **base, "count": count,
             "rate": count / n if n else 0.0, "provenance_tag": tag})

    remaining = route
    fault_route = None
    if code is not None:
        mixed = remaining & (code == BOTTOM_PROVENANCE_MIXED)
        c = _count(xp, mixed)
        if c:
            emit(c, "mixed")
            remaining = remaining & ~mixed
        fault_route = remaining & (code == BOTTOM_PROVENANCE_FAULT)
    elif fault is not None:
        fault_route = remaining & fault
    elif semantic is not None and bottom is not None:
        fault_route = remaining & bottom & ~semantic
    elif bottom is not None and sem is not None:
        fault_route = remaining & bottom
    if fault_route is not None:
        c = _count(xp, fault_route)
        if c:
            emit(c, "fault")
            remaining = remaining & ~fault_route
    c = _count(xp, remaining)
    if c:
        emit(c, "none")

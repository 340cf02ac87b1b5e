"""Strict decoding with a direction for refused samples: below / in range / above.

Censoring and regime tasks need to know *which side* a refused sample is on.
``decode_strict_censored_3way`` decodes ``(P, Q)`` strictly (``strict_inference``) and
labels each sample ``0`` (below), ``1`` (in range, or direction unknown), ``2`` (above).
"""

from __future__ import annotations

from typing import NamedTuple

from zpml_core import _xp
from zpml_core._xp import Array, Namespace
from zpml_core.inference import _masks
from zpml_core.inference.mode import InferenceConfig, strict_inference

__all__ = ["SemanticDecodeResult", "decode_strict_censored_3way"]

CLASS_BELOW, CLASS_IN_RANGE, CLASS_ABOVE = 0, 1, 2


class SemanticDecodeResult(NamedTuple):
    """``(decoded, bottom_mask, class_id)`` of :func:`decode_strict_censored_3way`."""

    decoded: Array
    bottom_mask: Array
    class_id: Array


def _squeeze(a: Array) -> Array:
    """``(B, 1)`` → ``(B,)`` (zeroproofml's column convention)."""
    return a[:, 0] if a.ndim == 2 and a.shape[1] == 1 else a


def _like(xp: Namespace, a: object, name: str, shape: tuple[int | None, ...]) -> Array:
    """``a`` with the decode's sample shape (a ``(B, 1)`` column squeezed)."""
    if not _xp.is_array(a):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    v = _xp.as_input(xp, a)
    if not _masks.shape_eq(tuple(v.shape), shape):
        v = _squeeze(v)
    if not _masks.shape_eq(tuple(v.shape), shape):
        raise ValueError(f"{name} has shape {tuple(v.shape)}; it must have the samples' shape {shape}")
    return v


def _real(xp: Namespace, a: object, name: str) -> Array:
    if not _xp.is_array(a):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    v = _xp.as_input(xp, a)
    _xp.check_dtype(xp, v, name)
    if _xp.is_complex(xp, v.dtype):
        raise TypeError(f"{name} must be a real array (a side needs an order), got dtype {v.dtype}")
    return _squeeze(v)


def decode_strict_censored_3way(
    numerator: Array,
    denominator: Array,
    *,
    tau_infer: float,
    direction_logits: Array | None = None,
    orientation_signal: Array | None = None,
    fault_mask: Array | None = None,
    semantic_bottom_mask: Array | None = None,
    bottom_provenance: Array | None = None,
) -> SemanticDecodeResult:
    """Decode scalar ``(P, Q)`` samples into ``SemanticDecodeResult(decoded, bottom_mask,
    class_id)``. ``P`` and ``Q`` have one shape ``S`` — zeroproofml's batch ``(B,)``, or a
    ``(B, 1)`` column (squeezed to ``(B,)``), or any other shape; the optional masks,
    codes and ``orientation_signal`` have shape ``S`` too, ``direction_logits`` ``S + (2,)``.

    ``decoded`` and ``bottom_mask`` are ``strict_inference(P, Q, tau_infer)``'s (bottom =
    non-finite ``P``/``Q``/quotient, or ``|Q| < tau_infer``). ``class_id`` (default int
    dtype) is ``1`` where not bottom; at a bottom sample it is, last rule winning:

    1. ``1`` (unknown) at a *fault* bottom or a non-finite ``P``; at a *semantic* bottom
       with finite ``P`` the side of ``P``: ``2`` if ``P >= 0`` else ``0``;
    2. with ``orientation_signal`` (finite, real): ``0``/``1``/``2`` for a negative /
       zero / positive signal, at every bottom;
    3. with ``direction_logits`` (``argmax`` over the last axis: 0 = below, 1 = above → class 0 / 2):
       at the semantic bottoms if provenance is known, else at every bottom.

    Provenance: the fault/semantic split of the decode itself, overridden by
    ``bottom_provenance`` (codes 2, 3 semantic; 1, 3 fault), ``semantic_bottom_mask`` or
    ``fault_mask`` (semantic = bottom ∧ ¬fault) when given, each restricted to bottom;
    given ones must agree with each other. Without any of them the direction head
    applies at every bottom. A non-finite ``orientation_signal`` or disagreeing provenance
    is a ``ValueError`` (while traced: ``decoded`` is NaN there instead).
    """
    cfg = InferenceConfig(tau_infer=tau_infer)
    xp = _xp.namespace(
        numerator, denominator, direction_logits, orientation_signal, fault_mask,
        semantic_bottom_mask, bottom_provenance,
        names=("numerator", "denominator", "direction_logits", "orientation_signal",
               "fault_mask", "semantic_bottom_mask", "bottom_provenance"),
    )
    p, q = _real(xp, numerator, "numerator"), _real(xp, denominator, "denominator")
    if not _masks.shape_eq(tuple(p.shape), tuple(q.shape)):
        raise ValueError(
            f"numerator and denominator must have the same shape, got {tuple(numerator.shape)} "
            f"and {tuple(denominator.shape)}"
        )
    shape = tuple(q.shape)
    res = strict_inference(p, q, config=cfg)
    decoded, bottom = res.decoded, res.bottom_mask
    it = _xp.default_int(xp, _xp.device(bottom))

    # provenance: the semantic bottoms the direction head applies to, and the fault ones
    semantic = fault = None
    checks: list[tuple[Array, Array, str]] = []
    if bottom_provenance is not None:
        code = _like(xp, _masks.provenance(xp, bottom_provenance), "bottom_provenance", shape)
        fault, semantic = _masks.split_from_provenance(bottom, code)
    if semantic_bottom_mask is not None:
        s = _masks.mask(xp, _like(xp, semantic_bottom_mask, "semantic_bottom_mask", shape),
                        "semantic_bottom_mask", bottom) & bottom
        if semantic is not None:
            checks.append((semantic, s, "bottom_provenance and semantic_bottom_mask disagree"))
        semantic = s
    if fault_mask is not None:
        f = _masks.mask(xp, _like(xp, fault_mask, "fault_mask", shape), "fault_mask", bottom) & bottom
        if fault is not None:
            checks.append((fault, f, "bottom_provenance and fault_mask disagree"))
        fault = f
        if semantic is None:
            semantic = bottom & ~f
    if fault is None:
        fault = bottom & ~semantic if semantic is not None else res.fault_mask
    direction_semantic = semantic  # None: the head applies at every bottom

    one = xp.ones_like(bottom, dtype=it)
    pd = _xp.to_float(xp, p)
    side = xp.where(pd >= 0.0, 2 * one, 0 * one)
    klass = xp.where(bottom & ~fault & xp.isfinite(pd), side, one)

    if orientation_signal is not None:
        o = _like(xp, orientation_signal, "orientation_signal", shape)
        if _xp.is_complex(xp, o.dtype):
            raise TypeError(f"orientation_signal must be a real array, got dtype {o.dtype}")
        o = _xp.to_float(xp, o)
        checks.append((xp.isfinite(o), xp.ones_like(bottom),
                       "orientation_signal must contain only finite values"))
        o_class = xp.where(o > 0.0, 2 * one, xp.where(o < 0.0, 0 * one, one))
        klass = xp.where(bottom, o_class, klass)

    if direction_logits is not None:
        if not _xp.is_array(direction_logits):
            raise TypeError(f"direction_logits must be an array, got {type(direction_logits).__name__}")
        logits = _xp.as_input(xp, direction_logits)
        if not _masks.shape_eq(tuple(logits.shape), (*shape, 2)):
            raise ValueError(f"direction_logits must have shape {(*shape, 2)} (the samples' "
                             f"shape and 2 logits: below, above), got {tuple(logits.shape)}")
        head = xp.where(xp.argmax(logits, axis=-1) == 1, 2 * one, 0 * one)
        klass = head if direction_semantic is None else xp.where(direction_semantic, head, klass)

    for a, b, msg in checks:
        (decoded,) = _masks.agree(xp, a, b, msg, (decoded,))
    class_id = _xp.as_input(xp, xp.where(bottom, klass, one))
    return SemanticDecodeResult(decoded, bottom, class_id)

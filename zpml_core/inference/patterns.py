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


def _batch(xp: Namespace, a: object, name: str, n: int | None) -> Array:
    if not _xp.is_array(a):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    return _masks.batch_vector(xp, _xp.as_input(xp, a), name, n)


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
    """Decode a batch of scalar ``(P, Q)`` (shape ``(B,)`` or ``(B, 1)``) into
    ``SemanticDecodeResult(decoded, bottom_mask, class_id)``.

    ``decoded`` and ``bottom_mask`` are ``strict_inference(P, Q, tau_infer)``'s (bottom =
    non-finite ``P``/``Q``/quotient, or ``|Q| < tau_infer``). ``class_id`` (default int
    dtype) is ``1`` where not bottom; at a bottom sample it is, last rule winning:

    1. ``1`` (unknown) at a *fault* bottom or a non-finite ``P``; at a *semantic* bottom
       with finite ``P`` the side of ``P``: ``2`` if ``P >= 0`` else ``0``;
    2. with ``orientation_signal`` (finite, ``(B,)``): ``0``/``1``/``2`` for a negative /
       zero / positive signal, at every bottom;
    3. with ``direction_logits`` (``(B, 2)``, ``argmax`` 0 = below, 1 = above → class 0 / 2):
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
    for name, a in (("numerator", numerator), ("denominator", denominator)):
        if not _xp.is_array(a):
            raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    p, q = _xp.as_input(xp, numerator), _xp.as_input(xp, denominator)
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if q.ndim == 2 and q.shape[1] == 1:
        q = q[:, 0]
    if p.ndim != 1 or q.ndim != 1:
        raise ValueError(
            f"decode_strict_censored_3way expects (batch,) or (batch, 1) arrays, got numerator "
            f"{tuple(numerator.shape)} and denominator {tuple(denominator.shape)}"
        )
    if p.shape[0] != q.shape[0]:
        raise ValueError(f"numerator and denominator batch sizes differ: {p.shape[0]} != {q.shape[0]}")
    n = p.shape[0]
    res = strict_inference(p, q, config=cfg)
    decoded, bottom = res.decoded, res.bottom_mask
    it = _xp.default_int(xp, _xp.device(bottom))

    # provenance: the semantic bottoms the direction head applies to, and the fault ones
    semantic = fault = None
    checks: list[tuple[Array, Array, str]] = []
    if bottom_provenance is not None:
        code = _batch(xp, _masks.provenance(xp, bottom_provenance), "bottom_provenance", n)
        fault, semantic = _masks.split_from_provenance(bottom, code)
    if semantic_bottom_mask is not None:
        s = _masks.mask(xp, _batch(xp, semantic_bottom_mask, "semantic_bottom_mask", n),
                        "semantic_bottom_mask", bottom) & bottom
        if semantic is not None:
            checks.append((semantic, s, "bottom_provenance and semantic_bottom_mask disagree"))
        semantic = s
    if fault_mask is not None:
        f = _masks.mask(xp, _batch(xp, fault_mask, "fault_mask", n), "fault_mask", bottom) & bottom
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
        o = _xp.to_float(xp, _batch(xp, orientation_signal, "orientation_signal", n))
        checks.append((xp.isfinite(o), xp.ones_like(bottom),
                       "orientation_signal must contain only finite values"))
        o_class = xp.where(o > 0.0, 2 * one, xp.where(o < 0.0, 0 * one, one))
        klass = xp.where(bottom, o_class, klass)

    if direction_logits is not None:
        if not _xp.is_array(direction_logits):
            raise TypeError(f"direction_logits must be an array, got {type(direction_logits).__name__}")
        logits = _xp.as_input(xp, direction_logits)
        if logits.ndim != 2 or logits.shape[0] != n or logits.shape[1] != 2:
            raise ValueError(f"direction_logits must have shape (batch, 2) with batch={n}, "
                             f"got {tuple(logits.shape)}")
        head = xp.where(xp.argmax(logits, axis=-1) == 1, 2 * one, 0 * one)
        klass = head if direction_semantic is None else xp.where(direction_semantic, head, klass)

    for a, b, msg in checks:
        (decoded,) = _masks.agree(xp, a, b, msg, (decoded,))
    class_id = xp.where(bottom, klass, one)
    return SemanticDecodeResult(decoded, bottom, class_id)

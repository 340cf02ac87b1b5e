"""Rates of strict inference, per batch and running (array API, every backend).

For ``n`` mask elements (``bottom_mask``'s size):

* ``bottom_rate = #bottom / n``, ``gap_rate = #gap / n``, ``accept_rate = #¬bottom / n``;
* with provenance (``fault_mask`` and ``semantic_bottom_mask``, or ``bottom_provenance``
  filling whichever is missing: fault ⇔ code ∈ {1, 3}, semantic ⇔ code ∈ {2, 3}), both
  restricted to bottom: ``fault_rate = #fault / n``, ``semantic_bottom_rate = #semantic / n``;
* with ``numerical_hazard_mask`` (a monitor-only axis, never a bottom):
  ``numerical_hazard_rate = #(hazard ∧ ¬bottom) / n``.

``n = 0`` gives NaN rates. Masks other than ``bottom_mask`` have its shape, or are a batch
vector ``(B,)`` against ``bottom_mask`` of shape ``(B, ...)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from zpml_core import _xp
from zpml_core._xp import Array, Namespace
from zpml_core.inference import _masks
from zpml_core.inference._batch import _Batch

__all__ = ["StrictInferenceMonitor", "strict_inference_rates"]

EventLogger = Callable[[Mapping[str, object]], None]

_TAGS = ("finite", "fault", "semantic", "mixed", "unspecified")


def strict_inference_rates(
    bottom_mask: Array,
    gap_mask: Array | None = None,
    *,
    fault_mask: Array | None = None,
    semantic_bottom_mask: Array | None = None,
    bottom_provenance: Array | None = None,
    numerical_hazard_mask: Array | None = None,
) -> dict[str, Array]:
    """Rates of one batch (see the module docstring for the formulas).

    Returns ``{"n", "bottom_rate", "gap_rate", "accept_rate"}`` plus ``fault_rate`` and
    ``semantic_bottom_rate`` when provenance is given and ``numerical_hazard_rate`` when
    ``numerical_hazard_mask`` is. Every value is a **0-d array** — float64, or the default
    float where the library lacks it (JAX in x32 mode) — on the masks' device (no host transfer, so it works under ``jit`` /
    ``torch.compile``); ``float(v)`` converts. ``gap_rate`` is 0 without ``gap_mask``.
    """
    return _Batch(bottom_mask, gap_mask, fault_mask, semantic_bottom_mask, bottom_provenance,
                  numerical_hazard_mask).rates()


def _histogram(values: list[int]) -> dict[str, int]:
    h: dict[int, int] = {}
    for v in values:
        h[v] = h.get(v, 0) + 1
    return {str(k): h[k] for k in sorted(h)}


def _rate(count: int, total: int) -> float:
    return float(count) / float(total) if total > 0 else 0.0


class StrictInferenceMonitor:
    """Running strict-inference rates over many batches.

    ``update(bottom_mask, gap_mask=None, *, fault_mask=None, semantic_bottom_mask=None,
    bottom_provenance=None, numerical_hazard_mask=None)`` counts one batch **on the
    masks' device** (0-d arrays, no host transfer); ``rates()``/``export_state()``
    convert (one transfer). Running rates are pooled counts over all elements seen:
    ``bottom_rate = Σ#bottom / Σn`` etc. (NaN before any element); ``fault_rate`` and
    ``semantic_bottom_rate`` appear once a batch came with provenance,
    ``numerical_hazard_rate`` once one came with a hazard mask.

    ``event_logger`` (a callable taking one mapping) receives, per update, the
    ``fault-bottom-trigger``, ``semantic-bottom-trigger``, ``numerical-hazard-trigger``
    and ``gap-trigger`` records of non-zero counts and an ``acceptance-rate-drift``
    record when the batch acceptance rate moved by at least
    ``acceptance_rate_drift_threshold`` since the previous non-empty batch; deciding
    these needs the counts on the host, so with an ``event_logger`` every update reads
    its counts (a few scalars). ``bundle_id`` and ``metadata`` are carried into ``rates()``.
    """

    def __init__(
        self,
        bundle_id: str | None = None,
        metadata: Mapping[str, object] | None = None,
        *,
        event_logger: EventLogger | None = None,
        acceptance_rate_drift_threshold: float | None = None,
    ) -> None:
        if bundle_id is not None and not isinstance(bundle_id, str):
            raise TypeError(f"bundle_id must be a str or None, got {type(bundle_id).__name__}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a mapping or None, got {type(metadata).__name__}")
        if event_logger is not None and not callable(event_logger):
            raise TypeError(f"event_logger must be callable or None, got {type(event_logger).__name__}")
        thr = acceptance_rate_drift_threshold
        if thr is not None:
            if isinstance(thr, bool) or not isinstance(thr, numbers.Real):
                raise TypeError("acceptance_rate_drift_threshold must be a real number or None")
            thr = _xp.check_real("acceptance_rate_drift_threshold", thr, ge=0.0)
        self.bundle_id = bundle_id
        self.metadata = metadata
        self.event_logger = event_logger
        self.acceptance_rate_drift_threshold = thr
        self.n_updates = 0
        self.n_gap_updates = 0
        self.n_provenance_updates = 0
        self.n_numerical_hazard_updates = 0
        self.has_provenance = False
        self.has_numerical_hazard = False
        self._xp: Namespace | None = None
        self._batches: list[_Batch] = []
        self._totals: dict[str, Array] = {}
        self._n: int | Array = 0

    def __getstate__(self) -> dict[str, Any]:  # pickling: the namespace is re-derived
        return {k: v for k, v in self.__dict__.items() if k != "_xp"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._xp = self._batches[0].xp if self._batches else None

    # -- accumulation (device) ----------------------------------------------------------
    def update(
        self,
        bottom_mask: Array,
        gap_mask: Array | None = None,
        *,
        fault_mask: Array | None = None,
        semantic_bottom_mask: Array | None = None,
        bottom_provenance: Array | None = None,
        numerical_hazard_mask: Array | None = None,
    ) -> None:
        """Count one batch (see the class docstring)."""
        batch = _Batch(bottom_mask, gap_mask, fault_mask, semantic_bottom_mask, bottom_provenance,
                       numerical_hazard_mask)
        if self._xp is not None and batch.xp is not self._xp:
            raise TypeError(
                f"StrictInferenceMonitor.update got {batch.xp.__name__} masks after "
                f"{self._xp.__name__} ones; use one array library per monitor"
            )
        self._xp = batch.xp
        previous = self._last_nonempty() if self._wants_drift() else None
        self.n_updates += 1
        self.n_gap_updates += batch.has_gap
        self.n_provenance_updates += batch.has_provenance
        self.n_numerical_hazard_updates += batch.has_hazard
        self.has_provenance = self.has_provenance or batch.has_provenance
        self.has_numerical_hazard = self.has_numerical_hazard or batch.has_hazard
        for k, v in batch.counts.items():
            self._totals[k] = v if k not in self._totals else self._totals[k] + v
        self._n = self._n + batch.n
        self._batches.append(batch)
        if self.event_logger is not None:
            self._emit(batch, previous)

    def _wants_drift(self) -> bool:
        return self.event_logger is not None and self.acceptance_rate_drift_threshold is not None

    def _last_nonempty(self) -> _Batch | None:
        for b in reversed(self._batches):
            if self._host_n(b.n) > 0:
                return b
        return None

    def _host_n(self, n: int | Array) -> int:
        return n if isinstance(n, int) else _masks.host_ints(self._xp, [n])[0]

    # -- conversion (host) --------------------------------------------------------------
    def _host_totals(self) -> tuple[int, dict[str, int]]:
        keys = list(self._totals)
        vals = [self._totals[k] for k in keys]
        n_dev = not isinstance(self._n, int)
        if n_dev:
            vals.append(self._n)
        host = _masks.host_ints(self._xp, vals) if vals else []
        n = host.pop() if n_dev else int(self._n)
        return n, dict(zip(keys, host, strict=True))

    def _host_batches(self, batches: list[_Batch] | None = None) -> list[tuple[int, dict[str, int]]]:
        """``(n, counts)`` of ``batches`` (default: every batch) on the host, one transfer."""
        batches = self._batches if batches is None else batches
        flat: list[Array] = []
        layout: list[tuple[list[str], bool]] = []
        for b in batches:
            keys = list(b.counts)
            flat.extend(b.counts[k] for k in keys)
            lazy_n = not isinstance(b.n, int)
            if lazy_n:
                flat.append(b.n)
            layout.append((keys, lazy_n))
        host = iter(_masks.host_ints(self._xp, flat)) if flat else iter(())
        out = []
        for b, (keys, lazy_n) in zip(batches, layout, strict=True):
            counts = {k: next(host) for k in keys}
            n = next(host) if lazy_n else int(b.n)
            out.append((n, counts))
        return out

    @property
    def n(self) -> int:
        return self._host_totals()[0] if self._xp is not None else 0

    def _count(self, key: str) -> int:
        return self._host_totals()[1].get(key, 0) if self._xp is not None else 0

    @property
    def n_bottom(self) -> int:
        return self._count("bottom")

    @property
    def n_gap(self) -> int:
        return self._count("gap")

    @property
    def n_fault(self) -> int:
        return self._count("fault")

    @property
    def n_semantic_bottom(self) -> int:
        return self._count("semantic")

    @property
    def n_numerical_hazard(self) -> int:
        return self._count("hazard")

    def rates(self) -> dict[str, object]:
        """Running rates as Python numbers (``n`` an int), plus ``bundle_id`` and
        ``bundle_metadata`` when set."""
        n, c = self._host_totals() if self._xp is not None else (0, {})
        return self._rates(n, c)

    def _rates(self, n: int, c: Mapping[str, int]) -> dict[str, object]:
        def rate(k: int) -> float:
            return math.nan if n == 0 else float(k) / float(n)

        out: dict[str, object] = {
            "n": int(n),
            "bottom_rate": rate(c.get("bottom", 0)),
            "gap_rate": rate(c.get("gap", 0)),
            "accept_rate": rate(n - c.get("bottom", 0)),
        }
        if self.has_provenance:
            out["fault_rate"] = rate(c.get("fault", 0))
            out["semantic_bottom_rate"] = rate(c.get("semantic", 0))
        if self.has_numerical_hazard:
            out["numerical_hazard_rate"] = rate(c.get("hazard", 0))
        if self.bundle_id is not None:
            out["bundle_id"] = str(self.bundle_id)
        if self.metadata is not None:
            out["bundle_metadata"] = dict(self.metadata)
        return out

    def export_state(
        self, *, include_histograms: bool = False, include_batch_summaries: bool = False
    ) -> dict[str, object]:
        """``rates()`` plus the running counters (``n_updates``, ``n_bottom``, ``n_gap``,
        ``n_accept``, ...); optionally histograms of the per-batch counts (``{"count":
        batches}``, keys sorted numerically) and the per-batch summaries."""
        n, c = self._host_totals() if self._xp is not None else (0, {})
        state = self._rates(n, c)
        state.update({
            "n_updates": self.n_updates,
            "n_gap_updates": self.n_gap_updates,
            "n_provenance_updates": self.n_provenance_updates,
            "n_bottom": c.get("bottom", 0),
            "n_gap": c.get("gap", 0),
            "n_accept": n - c.get("bottom", 0),
            "has_provenance": self.has_provenance,
        })
        if self.has_provenance:
            state["n_fault"] = c.get("fault", 0)
            state["n_semantic_bottom"] = c.get("semantic", 0)
        if self.has_numerical_hazard:
            state["has_numerical_hazard"] = True
            state["n_numerical_hazard_updates"] = self.n_numerical_hazard_updates
            state["n_numerical_hazard"] = c.get("hazard", 0)
        if include_histograms or include_batch_summaries:
            batches = self._host_batches()
        if include_histograms:
            def hist(key: str) -> dict[str, int]:
                return _histogram([bc[key] for _, bc in batches if key in bc])

            h: dict[str, object] = {
                "batch_size": _histogram([bn for bn, _ in batches]),
                "batch_bottom_count": hist("bottom"),
            }
            if self.n_gap_updates > 0:
                h["batch_gap_count"] = hist("gap")
            if self.has_provenance:
                h["batch_fault_count"] = hist("fault")
                h["batch_semantic_bottom_count"] = hist("semantic")
            if self.has_numerical_hazard:
                h["batch_numerical_hazard_count"] = hist("hazard")
            state["histograms"] = h
        if include_batch_summaries:
            state["batch_summaries"] = [
                _summary(i + 1, bn, bc) for i, (bn, bc) in enumerate(batches)
            ]
        return state

    def _emit(self, batch: _Batch, previous: _Batch | None) -> None:
        log = self.event_logger
        assert log is not None
        n_total, tot = self._host_totals()
        bn, bc = self._host_batches([batch])[0]
        ctx: dict[str, object] = {
            "update_index": self.n_updates,
            "batch_size": bn,
            "running_accept_rate": _rate(n_total - tot.get("bottom", 0), n_total),
        }
        if self.bundle_id is not None:
            ctx["bundle_id"] = str(self.bundle_id)

        def trigger(event: str, key: str) -> None:
            if bc.get(key, 0) > 0:
                log({"event": event, **ctx, "count": bc[key], "rate": _rate(bc[key], bn)})

        if batch.has_provenance:
            trigger("fault-bottom-trigger", "fault")
            trigger("semantic-bottom-trigger", "semantic")
        if batch.has_hazard:
            trigger("numerical-hazard-trigger", "hazard")
        if batch.has_gap:
            trigger("gap-trigger", "gap")
        thr = self.acceptance_rate_drift_threshold
        if bn > 0 and previous is not None and thr is not None:
            pn, pc = self._host_batches([previous])[0]
            prev = _rate(pn - pc["bottom"], pn)
            acc = _rate(bn - bc["bottom"], bn)
            delta = acc - prev
            if abs(delta) >= thr:
                log({"event": "acceptance-rate-drift", **ctx, "accept_rate": acc,
                     "previous_accept_rate": prev, "delta": delta, "threshold": float(thr),
                     "direction": "increase" if delta > 0.0 else "decrease"})

    def __repr__(self) -> str:
        return (f"StrictInferenceMonitor(bundle_id={self.bundle_id!r}, n_updates={self.n_updates}, "
                f"has_provenance={self.has_provenance}, has_numerical_hazard={self.has_numerical_hazard})")


def _summary(index: int, n: int, c: Mapping[str, int]) -> dict[str, object]:
    bottom = c["bottom"]
    s: dict[str, object] = {
        "update_index": index,
        "batch_size": n,
        "bottom_count": bottom,
        "bottom_rate": _rate(bottom, n),
        "gap_count": c.get("gap", 0),
        "gap_rate": _rate(c.get("gap", 0), n),
        "accept_count": n - bottom,
        "accept_rate": _rate(n - bottom, n),
        "has_gap": "gap" in c,
        "has_provenance": "fault" in c,
    }
    if "fault" in c:
        tags = {"finite": n - bottom, "fault": c["tag_fault"], "semantic": c["tag_semantic"],
                "mixed": c["tag_mixed"], "unspecified": c["tag_unspecified"]}
        s.update({
            "fault_count": c["fault"],
            "fault_rate": _rate(c["fault"], n),
            "semantic_bottom_count": c["semantic"],
            "semantic_bottom_rate": _rate(c["semantic"], n),
            "provenance_tag_counts": tags,
            "provenance_tags": [t for t in _TAGS[1:] if tags[t] > 0],
        })
    if "hazard" in c:
        s.update({
            "has_numerical_hazard": True,
            "numerical_hazard_count": c["hazard"],
            "numerical_hazard_rate": _rate(c["hazard"], n),
        })
    return s

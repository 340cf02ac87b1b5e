"""One batch of strict-inference masks, resolved against ``bottom_mask`` and counted on
the masks' device (the kernel behind ``strict_inference_rates`` and the monitor)."""

from __future__ import annotations

import math
from typing import Any

from zpml_core import _xp
from zpml_core._xp import Array
from zpml_core.inference import _masks
from zpml_core.inference.mode import (
    BOTTOM_PROVENANCE_FAULT,
    BOTTOM_PROVENANCE_MIXED,
    BOTTOM_PROVENANCE_SEMANTIC,
)


class _Batch:
    """One batch's masks resolved against ``bottom`` and counted on device."""

    def __init__(
        self,
        bottom_mask: Any,
        gap_mask: Any,
        fault_mask: Any,
        semantic_bottom_mask: Any,
        bottom_provenance: Any,
        numerical_hazard_mask: Any,
    ) -> None:
        names = ("bottom_mask", "gap_mask", "fault_mask", "semantic_bottom_mask",
                 "bottom_provenance", "numerical_hazard_mask")
        args = (bottom_mask, gap_mask, fault_mask, semantic_bottom_mask, bottom_provenance,
                numerical_hazard_mask)
        if not _xp.is_array(bottom_mask):
            raise TypeError(f"bottom_mask must be a boolean array, got {type(bottom_mask).__name__}")
        xp = _xp.namespace(*args, names=names)
        self.xp = xp
        b = _masks.mask(xp, bottom_mask, "bottom_mask", bottom_mask)
        shape = tuple(b.shape)

        def aligned(m: Any, name: str) -> Array | None:
            if m is None:
                return None
            return _masks.align(_masks.mask(xp, m, name, b), shape, name, "bottom_mask", xp=xp)

        fault = aligned(fault_mask, "fault_mask")
        semantic = aligned(semantic_bottom_mask, "semantic_bottom_mask")
        fault = None if fault is None else fault & b
        semantic = None if semantic is None else semantic & b
        code = None
        if bottom_provenance is not None:
            code = _masks.align(_masks.provenance(xp, bottom_provenance), shape,
                                "bottom_provenance", "bottom_mask", xp=xp)
            f_code, s_code = _masks.split_from_provenance(b, code)
            fault = f_code if fault is None else fault
            semantic = s_code if semantic is None else semantic
        gap = aligned(gap_mask, "gap_mask")
        hazard = aligned(numerical_hazard_mask, "numerical_hazard_mask")
        self.has_gap = gap is not None
        self.has_provenance = fault is not None and semantic is not None
        self.has_hazard = hazard is not None

        it = _xp.default_int(xp, _xp.device(b))
        self.int_dtype = it

        def count(m: Array) -> Array:
            return xp.sum(xp.astype(m, it))

        if any(_masks.unknown(d) for d in shape):  # unknown sizes (lazy arrays): count on device too
            self.n: int | Array = count(xp.ones_like(b))
        else:
            self.n = math.prod(shape)
        c: dict[str, Array] = {"bottom": count(b)}
        if gap is not None:
            c["gap"] = count(gap & xp.ones_like(b))
        if fault is not None and semantic is not None:
            c["fault"] = count(fault)
            c["semantic"] = count(semantic)
            if code is not None:
                f_only = b & (code == BOTTOM_PROVENANCE_FAULT)
                s_only = b & (code == BOTTOM_PROVENANCE_SEMANTIC)
                mixed = b & (code == BOTTOM_PROVENANCE_MIXED)
            else:
                f_only, s_only, mixed = fault & ~semantic, semantic & ~fault, fault & semantic
            c["tag_fault"] = count(f_only)
            c["tag_semantic"] = count(s_only)
            c["tag_mixed"] = count(mixed)
            c["tag_unspecified"] = count(b & ~(f_only | s_only | mixed))
        if hazard is not None:
            c["hazard"] = count(hazard & ~b)
        self.counts = c

    def __getstate__(self) -> dict[str, Any]:  # pickling: the namespace is re-derived
        return {k: v for k, v in self.__dict__.items() if k != "xp"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.xp = _xp.namespace(self.counts["bottom"])

    def rates(self) -> dict[str, Array]:
        """The rates as 0-d float64 arrays (the default float where float64 is missing)."""
        xp = self.xp
        dev = _xp.device(self.counts["bottom"])
        ft = _masks.wide_float(xp, dev)
        n = self.n
        if isinstance(n, int):
            n_arr = xp.asarray(float(n), dtype=ft, device=dev)

            def rate(c: Array) -> Array:
                if n == 0:
                    return xp.asarray(math.nan, dtype=ft, device=dev)
                return xp.astype(c, ft) / float(n)
        else:
            n_arr = xp.astype(n, ft)
            safe = xp.where(n_arr > 0, n_arr, xp.ones_like(n_arr))

            def rate(c: Array) -> Array:
                return xp.where(n_arr > 0, xp.astype(c, ft) / safe, xp.nan)

        c = self.counts
        zero = xp.zeros_like(c["bottom"])
        out = {
            "n": n_arr,
            "bottom_rate": rate(c["bottom"]),
            "gap_rate": rate(c.get("gap", zero)),
            "accept_rate": rate(self._total() - c["bottom"]),
        }
        if self.has_provenance:
            out["fault_rate"] = rate(c["fault"])
            out["semantic_bottom_rate"] = rate(c["semantic"])
        if self.has_hazard:
            out["numerical_hazard_rate"] = rate(c["hazard"])
        return {k: _xp.as_input(xp, v) for k, v in out.items()}  # numpy: 0-d arrays

    def _total(self) -> Array:
        n = self.n
        if isinstance(n, int):
            return self.xp.asarray(n, dtype=self.int_dtype, device=_xp.device(self.counts["bottom"]))
        return n

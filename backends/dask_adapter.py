"""Dask adapter: chunked, lazily evaluated arrays (``dask.array`` through array-api-compat).

Forward only. Every kernel the core hands to :meth:`DaskBackend.fuse` becomes **one task
per chunk**: the kernel runs on the numpy blocks of its inputs (with the numpy namespace,
under ``numpy.errstate(all="ignore")``), so results stay lazy, the graph stays small,
no numpy RuntimeWarning reaches the user at ``compute()`` time, and the masks are those
of the numpy kernel — identical to every other backend.

Fusion assumes what the core's kernels are: elementwise with broadcasting over the axes
of their lowest-rank result; inputs with more axes (strict inference's ``P`` of more
dims than ``Q``, validity factors) are reduced over their trailing axes, which are then
kept in one chunk. Kernels whose results have fewer axes than their inputs in any other
way (reductions to scalars: the losses) run op by op on the dask namespace, so dask
reduces chunk by chunk; their blocks are viewed as a numpy subclass whose ufuncs run
under ``errstate(all="ignore")`` (converted back to plain numpy at the outputs), so they
stay quiet as well. ``ZPML_DASK_FUSE=0`` (or ``DaskBackend(fuse=False)``) runs every
kernel op by op.
"""

from __future__ import annotations

import operator
import os
import string
from collections.abc import Callable
from typing import Any

from zpml_core._registry import Backend


class _BlockBackend(Backend):
    """What a kernel sees as ``be`` inside one numpy block: forward-only numpy."""

    name = "dask-block"
    namespace_names = ()


_BLOCK_BACKEND = _BlockBackend()


def _is_dask(x: Any) -> bool:
    return type(x).__module__.startswith("dask.") and hasattr(x, "chunks")


class DaskBackend(Backend):
    name = "dask"
    namespace_names = ("array_api_compat.dask.array",)
    supports_autodiff = False

    def __init__(self, *, fuse: bool | None = None, chunks: Any = None) -> None:
        self._enabled = os.environ.get("ZPML_DASK_FUSE", "1") != "0" if fuse is None else fuse
        #: chunks used by :meth:`asarray` (None: about three chunks along every axis)
        self.chunks = chunks
        self._fused: dict[Callable[..., Any], Callable[..., Any]] = {}
        self._plans: dict[Any, Any] = {}

    # -- framework --------------------------------------------------------------------
    def namespace(self) -> Any:
        import array_api_compat.dask.array as xp

        return xp

    def asarray(self, a: Any, *, dtype: Any = None, device: Any = None) -> Any:
        import dask.array as da
        import numpy as np

        arr = np.array(a, copy=True)
        if dtype is not None:
            arr = arr.astype(dtype)
        chunks = self.chunks
        if chunks is None:
            chunks = tuple(max(1, -(-n // 3)) for n in arr.shape)
        return da.from_array(arr, chunks=chunks)

    def to_numpy(self, x: Any) -> Any:
        import numpy as np

        with np.errstate(all="ignore"):
            return np.array(x.compute() if _is_dask(x) else x, copy=True)

    # -- checks -----------------------------------------------------------------------
    def require(self, bad: Any, message: str, outputs: tuple[Any, ...], *,
                xp: Any) -> tuple[Any, ...]:
        """The check becomes part of every output's graph: computing an output (or
        anything built from it) raises ``ValueError(message)`` if any element of
        ``bad`` is True; nothing is computed now. (Outputs get the
        broadcast shape, as ``where(bad, NaN, out)`` has elsewhere.)"""
        import dask.array as da

        if not _is_dask(bad):
            return super().require(bad, message, outputs, xp=xp)
        out = []
        for o in outputs:
            if not _is_dask(o):
                o = da.asarray(o)
            if o.ndim < bad.ndim:
                o = o[(None,) * (bad.ndim - o.ndim)]
            ind = string.ascii_letters[:o.ndim]
            out.append(da.blockwise(_require_block, ind, o, ind, bad, ind[o.ndim - bad.ndim:],
                                    message=message, dtype=o.dtype, meta=o._meta,
                                    align_arrays=True))
        return tuple(out)

    # -- fusion -----------------------------------------------------------------------
    def fuse(self, kernel: Callable[..., Any]) -> Callable[..., Any]:
        f = self._fused.get(kernel)
        if f is None:
            if self._enabled:

                def f(*args: Any, **static: Any) -> Any:
                    return self._blockwise(kernel, args, static)

            else:

                def f(*args: Any, **static: Any) -> Any:
                    return self._op_by_op(kernel, args, static)

            f.__wrapped__ = kernel  # type: ignore[attr-defined]
            self._fused[kernel] = f
        return f

    def _op_by_op(self, kernel: Callable[..., Any], args: tuple[Any, ...],
                  static: dict[str, Any]) -> Any:
        """Run ``kernel`` on the dask namespace (dask builds the chunked graph, with its
        tree reductions), on blocks whose numpy ufuncs cannot warn. Operands of unknown
        size (same rank) are checked block by block to have matching lengths, as in the
        fused path."""
        import dask.array as da

        flat = [t for a in args for t in (a if isinstance(a, tuple) else (a,))]
        unknown = [x for x in flat
                   if _is_dask(x) and any(_dim(n) is None for n in x.shape)]
        groups: list[list[tuple[int, int]]] = []
        if len(unknown) > 1 and len({x.ndim for x in unknown}) == 1:
            dims = tuple(tuple(_dim(n) for n in x.shape) for x in unknown)
            groups = _unknown_groups(dims, unknown[0].ndim)

        def quiet(a: Any) -> Any:
            if _is_dask(a):
                if groups and any(a is u for u in unknown):
                    i = next(k for k, u in enumerate(unknown) if u is a)
                    return da.map_blocks(_to_quiet_checked, *unknown, pick=i, groups=groups,
                                         dtype=a.dtype, meta=a._meta)
                return a.map_blocks(_to_quiet, dtype=a.dtype, meta=a._meta)
            if isinstance(a, tuple):
                return tuple(quiet(t) for t in a)
            return a

        out = kernel(*(quiet(a) for a in args), **static)

        def plain(o: Any) -> Any:
            return o.map_blocks(_to_plain, dtype=o.dtype, meta=o._meta) if _is_dask(o) else o

        return tuple(plain(o) for o in out) if isinstance(out, tuple) else plain(out)

    def _blockwise(self, kernel: Callable[..., Any], args: tuple[Any, ...],
                   static: dict[str, Any]) -> Any:
        import array_api_compat.numpy as npx
        import dask.array as da
        import numpy as np
        from dask.base import tokenize

        # flatten: positional args are arrays, None, or tuples of arrays
        leaves: list[Any] = []
        slots: list[Any] = []
        for a in args:
            if _is_dask(a):
                slots.append(len(leaves))
                leaves.append(a)
            elif isinstance(a, tuple) and any(_is_dask(t) for t in a):
                idx = []
                for t in a:
                    idx.append(len(leaves) if _is_dask(t) else ("const", t))
                    if _is_dask(t):
                        leaves.append(t)
                slots.append(tuple(idx))
            else:
                slots.append(("const", a))
        if not leaves:
            return kernel(*args, **static)
        block_static = dict(static)
        if "xp" in block_static:
            block_static["xp"] = npx
        if "be" in block_static:
            block_static["be"] = _BLOCK_BACKEND

        def rebuild(blocks: tuple[Any, ...]) -> list[Any]:
            out = []
            for s in slots:
                if isinstance(s, int):
                    out.append(blocks[s])
                elif isinstance(s, tuple) and s and s[0] == "const":
                    out.append(s[1])
                else:
                    out.append(tuple(blocks[i] if isinstance(i, int) else i[1] for i in s))
            return out

        def run_block(*blocks: Any) -> Any:
            with np.errstate(all="ignore"):
                return kernel(*rebuild(blocks), **block_static)

        # sizes, None where unknown (dask spells it NaN: chunk sizes not computed yet)
        dims = tuple(tuple(_dim(n) for n in x.shape) for x in leaves)
        key = (kernel, dims, tuple(str(x.dtype) for x in leaves),
               tuple(sorted((k, _static_key(v)) for k, v in static.items())),
               tuple(s if isinstance(s, int) else repr(s)[:200] for s in slots))
        plan = self._plans.get(key)
        if plan is None:
            plan = _plan(run_block, leaves, dims)
            if len(self._plans) > 512:
                self._plans.clear()
            self._plans[key] = plan
        if plan is None:  # not elementwise over the leading axes: run op by op
            return self._op_by_op(kernel, args, static)
        single, r, outs = plan
        groups = _unknown_groups(dims, r)
        if groups:  # unknown sizes can only be compared block by block, at compute time
            unchecked = run_block

            def run_block(*blocks: Any) -> Any:
                _check_blocks(blocks, groups)
                return unchecked(*blocks)
        letters = string.ascii_letters
        out_ind = letters[:r]
        extra = iter(letters[r:])
        pairs: list[Any] = []
        for x in leaves:
            if x.ndim <= r:
                ind = out_ind[r - x.ndim:]
            else:
                ind = out_ind + "".join(next(extra) for _ in range(x.ndim - r))
            pairs.extend((x, ind))
        # deterministic key: same kernel, inputs, argument layout and statics → same graph
        name = "zpml-" + getattr(kernel, "__name__", "kernel").lstrip("_") + "-" + tokenize(
            kernel.__module__, getattr(kernel, "__qualname__", ""), [x.name for x in leaves],
            repr(slots), repr(sorted((k, repr(v)) for k, v in static.items())),
        )
        t = da.blockwise(run_block, out_ind, *pairs, name=name, align_arrays=True,
                         concatenate=True, meta=np.empty((0,) * r, dtype=object))
        results = []
        for i, (nd, dt, trailing, collapsed) in enumerate(outs):
            meta = np.empty((0,) * nd, dtype=dt)
            if single:
                getter: Callable[..., Any] = _identity
                extra_args: tuple[Any, ...] = ()
            else:
                getter, extra_args = operator.getitem, (i,)
            src = t
            if collapsed:  # the output does not vary along these axes: one block row
                src = t.blocks[tuple(slice(0, 1) if j in collapsed else slice(None)
                                     for j in range(r))]
            lead = tuple((1,) if j in collapsed else src.chunks[j] for j in range(r))
            kw: dict[str, Any] = {"chunks": (*lead, *((n,) for n in trailing))}
            if nd > r:
                kw["new_axis"] = list(range(r, nd))
            results.append(src.map_blocks(getter, *extra_args, dtype=dt, meta=meta,
                                          name=f"{name}-{i}", **kw))
        return results[0] if single else tuple(results)


def _identity(x: Any) -> Any:
    return x


def _require_block(block: Any, bad: Any, *, message: str) -> Any:
    """One block of :meth:`DaskBackend.require`: ``block``, or ``ValueError``."""
    import numpy as np

    if np.any(bad):
        raise ValueError(message)
    if block.shape != bad.shape:  # the output has the broadcast shape
        return np.array(np.broadcast_to(block, np.broadcast_shapes(block.shape, bad.shape)))
    return block


_QUIET_CLASS: Any = None


def _quiet_class() -> Any:
    """``numpy.ndarray`` subclass whose ufuncs (incl. reductions) run under
    ``np.errstate(all="ignore")``: the blocks of the op-by-op path, so dask's own chunked
    reductions stay quiet too."""
    global _QUIET_CLASS
    if _QUIET_CLASS is None:
        import numpy as np

        class QuietBlock(np.ndarray):
            def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any,
                                **kwargs: Any) -> Any:
                plain = tuple(np.asarray(i) if isinstance(i, QuietBlock) else i
                              for i in inputs)
                out = kwargs.get("out")
                if out is not None:
                    kwargs["out"] = tuple(np.asarray(o) if isinstance(o, QuietBlock) else o
                                          for o in out)
                with np.errstate(all="ignore"):
                    res = getattr(ufunc, method)(*plain, **kwargs)
                return _rewrap(res, QuietBlock)

            def __array_function__(self, func: Any, types: Any, args: Any,
                                   kwargs: Any) -> Any:
                with np.errstate(all="ignore"):
                    res = super().__array_function__(func, types, args, kwargs)
                return _rewrap(res, QuietBlock)

        _QUIET_CLASS = QuietBlock
    return _QUIET_CLASS


def _rewrap(r: Any, cls: Any) -> Any:
    """Keep results quiet: plain arrays and numpy scalars become ``cls`` views."""
    import numpy as np

    if type(r) is np.ndarray:
        return r.view(cls)
    if isinstance(r, np.generic):
        return np.asarray(r).view(cls)
    if isinstance(r, tuple):
        return tuple(_rewrap(x, cls) for x in r)
    return r


def _to_quiet(block: Any) -> Any:
    import numpy as np

    return np.asarray(block).view(_quiet_class())


def _to_quiet_checked(*blocks: Any, pick: int, groups: list[list[tuple[int, int]]]) -> Any:
    _check_blocks(blocks, groups)
    return _to_quiet(blocks[pick])


def _to_plain(block: Any) -> Any:
    import numpy as np

    return np.asarray(block)


def _static_key(v: Any) -> Any:
    try:
        hash(v)
    except TypeError:
        return repr(v)
    return v


def _dim(n: Any) -> int | None:
    """A dask size as ``int``, or None if unknown (NaN)."""
    return None if n is None or n != n else int(n)


def _unknown_groups(dims: tuple[tuple[int | None, ...], ...],
                    r: int) -> list[list[tuple[int, int]]]:
    """For every blockwise axis with operands of unknown size there: the
    ``(leaf, axis)`` pairs whose blocks must have one common length."""
    groups: dict[int, list[tuple[int, int]]] = {}
    for i, shape in enumerate(dims):
        nd = len(shape)
        for a, n in enumerate(shape):
            if n is None:
                j = r - nd + a if nd <= r else a
                groups.setdefault(j, []).append((i, a))
    return [g for g in groups.values() if len(g) > 1]


def _check_blocks(blocks: tuple[Any, ...], groups: list[list[tuple[int, int]]]) -> None:
    """Raise ``ValueError`` if operands of unknown size disagree in a block.

    Operands with unknown chunk sizes cannot be checked before they are computed; a block
    of length 1 facing one of length 5 would otherwise broadcast silently."""
    for g in groups:
        sizes = {blocks[i].shape[a] for i, a in g}
        if len(sizes) > 1:
            raise ValueError(
                "operands with unknown chunk sizes do not have matching shapes: one block "
                f"holds lengths {sorted(sizes)} along the same axis (check the shapes "
                "after compute_chunk_sizes())"
            )


def _plan(run_block: Callable[..., Any], leaves: list[Any],
          dims: tuple[tuple[int | None, ...], ...]) -> Any:
    """Output structure of a kernel, from runs on small numpy stand-ins.

    Returns ``(single, r, [(ndim, dtype, trailing_sizes, collapsed_axes), ...])``: ``r``
    is the rank of the lowest-rank output (the blockwise axes), ``trailing_sizes`` the
    sizes of an output's axes beyond ``r``, ``collapsed_axes`` the blockwise axes along
    which an output has size 1 although the inputs broadcast to more (e.g. a mask that
    depends on ``Q`` of shape ``(1, n)`` only). None if the kernel is not elementwise
    over those axes (then it runs op by op)."""
    import numpy as np

    def probe(shapes: list[tuple[int, ...]]) -> Any:
        blocks = [np.ones(s, dtype=x.dtype) for s, x in zip(shapes, leaves, strict=True)]
        return run_block(*blocks)

    try:
        out = probe([(1,) * len(d) for d in dims])
    except Exception:
        return None
    single = not isinstance(out, tuple)
    outs = [out] if single else list(out)
    if not all(hasattr(o, "ndim") and hasattr(o, "dtype") for o in outs):
        return None
    nds = [o.ndim for o in outs]
    r = min(nds)
    in_nd = max(len(d) for d in dims)
    if r == 0 and in_nd > 0:
        return None  # a reduction to a scalar: let dask reduce chunk by chunk
    # second probe: blockwise axes of size min(n, 2) (reveals broadcasting; an unknown
    # size stands in as 2), other axes at their real size (kept whole in every block;
    # an unknown size there cannot be planned)
    shapes: list[tuple[int, ...]] = []
    full = [1] * r
    for d in dims:
        if len(d) <= r:
            sh = tuple(2 if n is None else min(n, 2) for n in d)
            for j, n in enumerate(sh):
                full[r - len(d) + j] = max(full[r - len(d) + j], n)
        else:
            if any(n is None for n in d[r:]):
                return None
            sh = tuple((2 if n is None else min(n, 2)) if i < r else int(n or 0)
                       for i, n in enumerate(d))
            for j in range(r):
                full[j] = max(full[j], sh[j])
        shapes.append(sh)
    try:
        out2 = probe(shapes)
    except Exception:
        return None
    outs2 = [out2] if single else list(out2)
    plan = []
    for o, o2 in zip(outs, outs2, strict=True):
        lead = tuple(o2.shape[:r])
        if any(n not in (1, full[j]) for j, n in enumerate(lead)):
            return None
        collapsed = tuple(j for j, n in enumerate(lead) if n == 1 and full[j] > 1)
        plan.append((o.ndim, o.dtype, tuple(o2.shape[r:]), collapsed))
    return single, r, plan

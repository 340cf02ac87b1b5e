"""Blocked execution of layout-marked kernels for numpy.

numpy runs a kernel op by op, one full pass over memory per op; an SCM kernel makes
10–20 passes. Running it on blocks of about ``ZPML_NUMPY_BLOCK`` elements (default
65536, i.e. 512 KiB per float64 temporary) keeps the temporaries in the CPU cache, which
makes large calls 2–3x faster. Only kernels marked with a layout (``zpml_core._layout``)
are split, along axis 0, and only when that axis is long enough; the results are the
same elementwise computations, so values and masks are identical to one whole call.
``ZPML_NUMPY_BLOCK=0`` disables blocking.

Heap: every numpy op of a kernel allocates a temporary, and glibc's malloc returns the
top of the heap to the system as soon as more than its trim threshold (twice the largest
block ever freed from ``mmap``; initially 128 KiB) is free — so a call whose temporaries
and outputs together exceed that (at 10^5 float64 elements: ~20 temporaries of 800 KB)
shrank and regrew the heap on *every* call: ~1000 page faults, 4–6x the time of the
arithmetic. Before its first kernel the numpy adapter therefore raises glibc's dynamic
thresholds once (:func:`prepare_heap`), exactly as freeing any large numpy array does;
with that, blocks of 65536 from 2·65536 elements measured fastest at every size from
3·10^4 to 10^6 (smaller blocks, e.g. from 2^15, only add per-block overhead).

A process started with fixed malloc thresholds — ``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_TOP_PAD_``, ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_MMAP_MAX_`` or the matching
``GLIBC_TUNABLES``; distributed's Nanny starts its workers with
``MALLOC_TRIM_THRESHOLD_=65536`` — keeps them: glibc then ignores the ballast and nothing
here overrides the setting. There the default block is sized to the settings instead
(:func:`fixed_threshold_block`; 4096 under the Nanny's), so the temporaries stay on the
heap: ``scm.div`` on 10^5 / 10^6 float64 measured 1.5 / 12.6 ms against 3.0 / 33.6 ms
with 65536-element blocks (0.37 / 5.2 ms with dynamic thresholds; the outputs, above the
mmap threshold, still page-fault — as the plain ``x / y``'s do there). The fused kernels
of ``zpml-core[fast]`` allocate only their outputs and do not depend on this.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from zpml_core._layout import ELEMENTWISE, LEADING, layout_of

#: bytes of the array allocated and freed once by :func:`prepare_heap` (within glibc's
#: 32 MiB cap on the dynamic mmap threshold)
HEAP_THRESHOLD_BYTES = 16 << 20
_heap_prepared = False


def prepare_heap() -> None:
    """Raise glibc's dynamic malloc thresholds once per process (Linux; elsewhere a
    harmless no-op): allocating and freeing one ``HEAP_THRESHOLD_BYTES`` array — served
    by ``mmap``, never touched — makes glibc serve later blocks below that size from the
    heap and keep up to twice that size free at its top instead of trimming it (glibc
    adjusts ``M_MMAP_THRESHOLD``/``M_TRIM_THRESHOLD`` this way on every ``free`` of a
    mapped block). Kernels' temporaries then reuse heap memory instead of page-faulting
    fresh memory on every call. Thresholds only ever rise; a process that freed a
    larger array already has higher ones."""
    global _heap_prepared
    _heap_prepared = True
    if sys.platform.startswith("linux"):
        import numpy as np

        ballast = np.empty(HEAP_THRESHOLD_BYTES, np.uint8)  # numpy allocates with malloc
        del ballast


#: elements per block (``ZPML_NUMPY_BLOCK`` unset) under glibc's dynamic thresholds
DEFAULT_BLOCK = 65536
#: the smallest block chosen for a process with fixed malloc thresholds (see
#: :func:`fixed_threshold_block`)
MIN_FIXED_BLOCK = 2048
#: glibc's fixed defaults once its dynamic adjustment is off: mmap threshold, trim
#: threshold and top pad, 128 KiB each
_GLIBC_FIXED_DEFAULT = 128 * 1024
_MALLOC_VARS = {"MALLOC_TRIM_THRESHOLD_": "trim_threshold", "MALLOC_TOP_PAD_": "top_pad",
                "MALLOC_MMAP_THRESHOLD_": "mmap_threshold", "MALLOC_MMAP_MAX_": "mmap_max"}


def _start_malloc_settings(environ: bytes) -> dict[str, int]:
    """glibc's malloc settings in a process's initial environment (``/proc/self/environ``
    content): the ``MALLOC_*_`` variables and ``glibc.malloc.*`` tunables that switch its
    dynamic thresholds off, by tunable name (unparsable values count as set, value 0)."""
    found: dict[str, int] = {}

    def put(name: str, raw: str) -> None:
        try:
            found[name] = max(int(raw, 0), 0)
        except ValueError:
            found[name] = 0

    for entry in environ.split(b"\0"):
        key, sep, value = entry.decode("utf-8", "replace").partition("=")
        if not sep:
            continue
        if key in _MALLOC_VARS:
            put(_MALLOC_VARS[key], value)
        elif key == "GLIBC_TUNABLES":
            for item in value.split(":"):
                name, _, raw = item.partition("=")
                if name.startswith("glibc.malloc.") and name[13:] in _MALLOC_VARS.values():
                    put(name[13:], raw)
    return found


def fixed_threshold_block(environ: bytes) -> int | None:
    """The block size for a process whose initial environment (``/proc/self/environ``
    content) fixes glibc's malloc thresholds, else ``None`` (dynamic thresholds).

    glibc reads its settings once, from the environment at exec — not ``os.environ``,
    which may have changed since (distributed's Nanny writes ``MALLOC_TRIM_THRESHOLD_``
    into its parent's). With fixed thresholds a temporary above the mmap threshold is
    mapped and page-faulted on every call, and heap memory beyond
    ``max(trim threshold, top pad)`` is returned to the system after every block, so
    the block is the largest power of two with float64 temporaries of at most the mmap
    threshold (unbounded for ``MALLOC_MMAP_MAX_=0``) and four of them within
    ``max(trim, pad)``; between ``MIN_FIXED_BLOCK`` and ``DEFAULT_BLOCK`` (distributed's
    ``MALLOC_TRIM_THRESHOLD_=65536``: 4096)."""
    found = _start_malloc_settings(environ)
    if not found:
        return None
    mmap_thr = float(found.get("mmap_threshold", _GLIBC_FIXED_DEFAULT))
    if found.get("mmap_max", 1) == 0:
        mmap_thr = float("inf")
    keep = max(found.get("trim_threshold", _GLIBC_FIXED_DEFAULT),
               found.get("top_pad", _GLIBC_FIXED_DEFAULT))
    fit = min(mmap_thr / 8, keep / 32)
    block = MIN_FIXED_BLOCK
    while block * 2 <= min(fit, DEFAULT_BLOCK):
        block *= 2
    return block


@functools.cache
def _process_block() -> int | None:
    """:func:`fixed_threshold_block` of this process (a process constant, read once;
    ``None`` off Linux or where ``/proc/self/environ`` is unreadable)."""
    try:
        with open("/proc/self/environ", "rb") as f:
            return fixed_threshold_block(f.read())
    except OSError:
        return None


def block_size() -> int:
    """``ZPML_NUMPY_BLOCK`` if set, else :data:`DEFAULT_BLOCK` — or, in a process started
    with fixed malloc thresholds, :func:`fixed_threshold_block`."""
    raw = os.environ.get("ZPML_NUMPY_BLOCK")
    if raw is None:
        fixed = _process_block()
        return DEFAULT_BLOCK if fixed is None else fixed
    try:
        return max(int(raw.strip()), 0)
    except ValueError:
        raise ValueError(f"ZPML_NUMPY_BLOCK must be an integer, got {raw!r}") from None


def _arrays(args: tuple[Any, ...]) -> Iterator[Any]:
    for a in args:
        if isinstance(a, tuple):
            yield from _arrays(a)
        elif a is not None:
            yield a


def _sliced(args: tuple[Any, ...], cut: Callable[[Any], bool], sl: slice) -> tuple[Any, ...]:
    out: list[Any] = []
    for a in args:
        if isinstance(a, tuple):
            out.append(_sliced(a, cut, sl))
        elif a is not None and cut(a):
            out.append(a[sl])
        else:
            out.append(a)
    return tuple(out)


def _plan(kind: str, args: tuple[Any, ...], block: int) -> tuple[int, int, Callable[[Any], bool]] | None:
    """``(n, rows per block, which arrays to slice)`` or ``None`` (run whole)."""
    import numpy as np

    arrays = list(_arrays(args))
    if not arrays or not all(type(a) is np.ndarray for a in arrays):
        return None
    size = max(a.size for a in arrays)
    if size < 2 * block:  # the common small call: decided before the layout checks
        return None
    if kind == ELEMENTWISE:
        nd = max(a.ndim for a in arrays)
        if nd == 0:
            return None
        lengths = {a.shape[0] for a in arrays if a.ndim == nd and a.shape[0] != 1}
        if len(lengths) != 1:
            return None
        (n,) = lengths

        def cut(a: Any) -> bool:
            # lower-dimensional arrays align with the trailing axes: constant along axis 0
            return bool(a.ndim == nd and a.shape[0] == n)
    elif kind == LEADING:
        first = arrays[0]
        if first.ndim == 0 or any(a.ndim == 0 or a.ndim > first.ndim for a in arrays):
            return None
        n = first.shape[0]
        if any(a.shape[0] != n for a in arrays):
            return None

        def cut(a: Any) -> bool:
            return True
    else:
        return None
    if n < 2:
        return None
    rows = max(block // max(size // n, 1), 1)
    return n, rows, cut


def run_blocked(kernel: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``kernel(*args, **kwargs)``, computed block by block when its layout allows (the
    caller holds the floating-point error state)."""
    import numpy as np

    if not _heap_prepared:
        prepare_heap()
    kind = layout_of(kernel)
    if kind is None:
        return kernel(*args, **kwargs)
    block = block_size()
    plan = _plan(kind, args, block) if block > 0 else None
    if plan is None:
        return kernel(*args, **kwargs)
    n, rows, cut = plan
    first = kernel(*_sliced(args, cut, slice(0, rows)), **kwargs)
    single = not isinstance(first, tuple)
    parts = (first,) if single else first
    m = min(rows, n)
    if not all(isinstance(p, np.ndarray) and p.ndim >= 1 and p.shape[0] == m for p in parts):
        return kernel(*args, **kwargs)
    outs = [np.empty((n, *p.shape[1:]), dtype=p.dtype) for p in parts]
    for o, p in zip(outs, parts, strict=True):
        o[:m] = p
    for start in range(rows, n, rows):
        sl = slice(start, min(start + rows, n))
        res = kernel(*_sliced(args, cut, sl), **kwargs)
        for o, p in zip(outs, (res,) if single else res, strict=True):
            o[sl] = p
    return outs[0] if single else tuple(outs)

"""Assertions of :mod:`zpml_core.testing`: :func:`to_numpy` (an exact numpy copy of
any supported array), :func:`assert_scm_equal` (masks exact, values within ulps) and
:func:`assert_close` for plain arrays, with readable diffs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from zpml_core import _xp
from zpml_core._registry import GenericBackend, get_backend
from zpml_core.testing._dtypes import Array, _bf16_type, _is_bf16, _np_dtype


def to_numpy(x: Array) -> np.ndarray:
    """An exact numpy copy of an array of any supported library (detached, on host).

    bfloat16 arrays become numpy arrays of ml_dtypes' ``bfloat16`` (exact)."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (bool, int, float, complex, np.generic)):
        return np.asarray(x)
    xp = _xp.namespace(x)
    be = get_backend(xp)
    if _is_bf16(x.dtype) or str(x.dtype).endswith("bfloat16"):
        # not every library exports bfloat16 to numpy: widen exactly, then narrow exactly
        return to_numpy(xp.astype(x, xp.float32)).astype(_bf16_type())
    if isinstance(be, GenericBackend):
        try:
            return np.from_dlpack(x).copy()
        except Exception:
            return np.asarray(x)
    return np.asarray(be.to_numpy(x))



# ---------------------------------------------------------------------------------------
# assertions


def _fmt(v: Any) -> str:
    if isinstance(v, (np.floating, float)):
        f = float(v)
        if f == 0.0:
            return "-0.0" if math.copysign(1.0, f) < 0 else "0.0"
        return repr(f)
    if isinstance(v, (np.complexfloating, complex)):
        return repr(complex(v))
    return repr(v.item() if isinstance(v, np.generic) else v)


def _idx(i: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(int(k)) for k in i) + "]" if i else "[()]"


def _is_float(dtype: Any) -> bool:
    """Real floating numpy dtype, ml_dtypes' bfloat16 included."""
    return bool(np.issubdtype(dtype, np.floating)) or _is_bf16(dtype)


def _ulp_tolerance(a: np.ndarray, e: np.ndarray, ulps: float, atol: float,
                   dtype: Any = None) -> np.ndarray:
    """``max(ulps * spacing(max(|a|, |e|)), atol)`` in float64, the spacing of ``dtype``
    (default: that of ``a``; its real dtype for complex)."""
    mag = np.maximum(np.abs(a), np.abs(e))
    if np.iscomplexobj(mag):
        mag = np.abs(mag)
    rdt = np.finfo(mag.dtype if dtype is None else dtype).dtype
    with np.errstate(all="ignore"):
        m = mag.astype(rdt)
        spacing = np.spacing(m)
        # spacing(max) is inf: use the gap below instead
        spacing = np.where(np.isfinite(spacing), spacing, np.spacing(np.nextafter(m, 0)))
        return np.maximum(ulps * spacing.astype(np.float64), atol)


def _wide(v: np.ndarray) -> np.ndarray:
    """float64 (complex128) copy: differences of two values computed without rounding
    (except where a difference of huge values overflows, which then differs anyway)."""
    return v.astype(np.complex128 if np.iscomplexobj(v) else np.float64)


def _as_pair(x: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(x, tuple) and len(x) == 2):
        raise TypeError(f"{what} must be an SCMArray or a (value, bottom) pair, got "
                        f"{type(x).__name__}")
    return to_numpy(x[0]), to_numpy(x[1])


def _ulps_between(a: Any, e: Any) -> str:
    """`` (N ulp)`` for two finite real values, measured at the larger magnitude."""
    try:
        fa, fe = complex(a), complex(e)
    except (TypeError, ValueError):
        return ""
    if fa.imag or fe.imag or not (math.isfinite(fa.real) and math.isfinite(fe.real)):
        return ""
    with np.errstate(all="ignore"):
        mag = np.maximum(np.abs(np.asarray(a)), np.abs(np.asarray(e)))
        sp = float(np.spacing(mag)) if _is_float(mag.dtype) else 0.0
    if not (sp > 0 and math.isfinite(sp)):
        return ""
    return f" ({abs(fa.real - fe.real) / sp:.3g} ulp)"


def assert_scm_equal(
    actual: Any,
    expected: Any,
    *,
    ulps: float = 4,
    atol: float | None = None,
    signed_zeros: bool = True,
    carrier: bool = True,
    check_dtype: bool = True,
    max_report: int = 10,
    msg: str = "",
) -> None:
    """Assert that two SCM results agree; ``AssertionError`` with a readable diff if not.

    ``actual`` and ``expected`` are ``SCMArray`` s or ``(value, bottom)`` pairs from any
    libraries (e.g. torch against numpy). Checks, in order: shapes; dtypes (the numpy
    name, unless ``check_dtype=False``); **masks exactly**; values where neither is
    bottom — finite and ``|a - e| <= max(ulps * spacing(max(|a|, |e|)), atol)`` with
    ``atol`` defaulting to the smallest normal of the dtype (libraries that flush
    subnormal results, such as JAX on CPU, then still compare equal); with
    ``signed_zeros`` the sign of zero results must match where both are exactly 0; with
    ``carrier`` the value at bottom positions must be ``+0`` in both.
    The message lists the first ``max_report`` differing indices with both values.
    """
    av, ab = _as_pair(actual, "actual")
    ev, eb = _as_pair(expected, "expected")
    head = (msg + "\n") if msg else ""
    if av.shape != ev.shape or ab.shape != eb.shape or av.shape != ab.shape:
        raise AssertionError(
            f"{head}shapes differ: actual value {av.shape} / bottom {ab.shape}, "
            f"expected value {ev.shape} / bottom {eb.shape}"
        )
    if ab.dtype != np.bool_ or eb.dtype != np.bool_:
        raise AssertionError(f"{head}bottom masks must be bool, got actual {ab.dtype}, "
                             f"expected {eb.dtype}")
    if check_dtype and av.dtype != ev.dtype:
        raise AssertionError(f"{head}value dtypes differ: actual {av.dtype}, "
                             f"expected {ev.dtype}")
    problems: list[tuple[tuple[int, ...], str]] = []

    def add(mask: np.ndarray, why: str) -> None:
        for i in np.argwhere(mask):
            problems.append((tuple(int(k) for k in i), why))

    add(ab != eb, "mask differs")
    both = ~ab & ~eb
    with np.errstate(all="ignore"):
        fin_a = np.isfinite(av)
        fin_e = np.isfinite(ev)
        add(both & ~fin_a, "actual value not finite")
        add(both & fin_a & ~fin_e, "expected value not finite")
        cmp_ok = both & fin_a & fin_e
        floor = atol
        if floor is None:
            floor = _smallest_normal(av.dtype)
        a_c = np.where(cmp_ok, av, 0)
        e_c = np.where(cmp_ok, ev, 0).astype(a_c.dtype)
        diff = np.abs(_wide(a_c) - _wide(e_c))
        tol = _ulp_tolerance(a_c, e_c, ulps, floor)
        add(cmp_ok & ~(diff <= tol), f"values differ by more than {ulps} ulp (floor {floor:g})")
        if signed_zeros:
            z = cmp_ok & (av == 0) & (ev == 0)
            add(z & (_signbit(av) != _signbit(ev)), "signs of zero differ")
        if carrier:
            add(ab & ~((av == 0) & ~_signbit(av)), "actual value at bottom is not +0")
            add(eb & ~((ev == 0) & ~_signbit(ev)), "expected value at bottom is not +0")
    if not problems:
        return
    problems.sort()
    lines = [f"{head}SCM results differ at {len({p[0] for p in problems})} of "
             f"{max(av.size, 1)} positions (shape {av.shape}):"]
    shown: set[tuple[int, ...]] = set()
    for i, _ in problems:
        if i in shown:
            continue
        if len(shown) >= max_report:
            lines.append("  ...")
            break
        shown.add(i)
        reasons = "; ".join(w for j, w in problems if j == i)
        a_val, e_val, a_bot, e_bot = av[i], ev[i], ab[i], eb[i]
        lines.append(
            f"  at {_idx(i)}: actual (value={_fmt(a_val)}, bottom={bool(a_bot)})  "
            f"expected (value={_fmt(e_val)}, bottom={bool(e_bot)}){_ulps_between(a_val, e_val)}"
            f"  <- {reasons}"
        )
    raise AssertionError("\n".join(lines))


def _smallest_normal(dtype: Any) -> float:
    if not (np.issubdtype(dtype, np.inexact) or _is_bf16(dtype)):
        return 0.0
    return float(np.finfo(dtype).smallest_normal)


def _signbit(v: np.ndarray) -> np.ndarray:
    if np.iscomplexobj(v):
        return np.signbit(v.real) | np.signbit(v.imag)
    if _is_float(v.dtype):
        return np.signbit(v)
    return np.zeros(v.shape, dtype=bool)


def assert_close(
    actual: Any,
    expected: Any,
    *,
    ulps: float = 4,
    atol: float | None = None,
    equal_nan: bool = True,
    signed_zeros: bool = False,
    check_dtype: bool = True,
    max_report: int = 10,
    msg: str = "",
) -> None:
    """Assert two plain arrays (any libraries) agree within ``ulps`` (floor ``atol``,
    default the dtype's smallest normal). NaN positions must coincide (``equal_nan``),
    infinities must be equal; with ``signed_zeros`` the sign of exact zeros must match."""
    a, e = to_numpy(actual), to_numpy(expected)
    head = (msg + "\n") if msg else ""
    if a.shape != e.shape:
        raise AssertionError(f"{head}shapes differ: actual {a.shape}, expected {e.shape}")
    if check_dtype and a.dtype != e.dtype:
        raise AssertionError(f"{head}dtypes differ: actual {a.dtype}, expected {e.dtype}")
    if _is_bf16(a.dtype) or _is_bf16(e.dtype):
        tdt = _np_dtype("bfloat16")  # compared in float32 (exact), tolerances in bfloat16
        fa, fe = (np.asarray(v, dtype=tdt).astype(np.float32) for v in (a, e))
    else:
        fa = np.asarray(a, dtype=np.result_type(a.dtype, e.dtype, np.float16))
        fe = np.asarray(e, dtype=fa.dtype)
        tdt = fa.dtype
    floor = atol if atol is not None else _smallest_normal(tdt)
    na, ne = np.isnan(fa), np.isnan(fe)
    bad = (na != ne) if equal_nan else (na | ne)
    fin = np.isfinite(fa) & np.isfinite(fe)
    bad |= ~fin & ~na & ~ne & (fa != fe)  # infinities must match exactly
    with np.errstate(all="ignore"):
        diff = np.abs(_wide(np.where(fin, fa, 0)) - _wide(np.where(fin, fe, 0)))
        tol = _ulp_tolerance(np.where(fin, fa, 0), np.where(fin, fe, 0), ulps, floor, tdt)
    bad |= fin & ~(diff <= tol)
    if signed_zeros and np.issubdtype(fa.dtype, np.floating):
        bad |= fin & (fa == 0) & (fe == 0) & (np.signbit(fa) != np.signbit(fe))
    if not bad.any():
        return
    idx = [tuple(int(k) for k in i) for i in np.argwhere(bad)]
    lines = [f"{head}arrays differ at {len(idx)} of {max(a.size, 1)} positions "
             f"(shape {a.shape}, tolerance {ulps} ulp, floor {floor:g}):"]
    for i in idx[:max_report]:
        lines.append(f"  at {_idx(i)}: actual {_fmt(a[i])}  expected {_fmt(e[i])}"
                     f"{_ulps_between(a[i], e[i])}")
    if len(idx) > max_report:
        lines.append("  ...")
    raise AssertionError("\n".join(lines))

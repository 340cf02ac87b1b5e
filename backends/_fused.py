"""Fused CPU kernels (numba) for the real SCM ops and strict inference — ``zpml-core[fast]``.

A second implementation of formulas whose specification is the array-API kernels
(``zpml_core._scm_real``, ``zpml_core.inference._k_strict``): one loop per op and dtype
reads the operands once and writes the value and the mask(s), instead of 10–25 full
passes over memory. The numpy adapter runs them on ndarrays, the torch adapter on
zero-copy numpy views of CPU tensors (``FastOps``); a differential test holds them bit
for bit identical to the array-API kernels (masks equal, values bitwise, NaN payloads and
signed zeros included).

Rules that make the two implementations agree:

* Every constant is a scalar *of the operand dtype*, compiled in (a Python float next to
  float32 would make the loop compute ``y·y·ovf`` in float64 and move the guard). The
  constants are the array-API kernels' (``zpml_core._xp.consts``), rounded to the dtype
  exactly as numpy and torch round a Python scalar next to an array.
* Only correctly rounded operations are evaluated in the loop (``+ − × ÷``, ``abs``,
  comparisons; ``sqrt`` only where the library's own ``sqrt`` is correctly rounded too),
  with no fast-math and no contraction into FMAs (numba's defaults), so a result is a
  function of the operands alone.
* Transcendental values (``log``, ``exp``, ``sin``, ``cos``, ``tan``; ``sqrt`` for torch)
  come from the library's own function applied in place to the sanitised operand the
  loop wrote (``x`` where not ⊥, the kernel's safe constant at ⊥), exactly what the
  array-API kernel evaluates; a second loop rewrites the ⊥ positions (and ``sqrt``'s
  signed zeros) where the safe constant does not map to ``+0``.
* Division by zero never traps (``error_model="numpy"``); the quotient is formed with the
  safe divisor 1 at ⊥, as in the array-API kernel.

Kernels are compiled on first use, one per op and dtype (float32, float64), serially
(no threads), and cached on disk (numba's ``cache=True``: ``__pycache__`` beside this
file, or numba's user cache directory when that is not writable); later processes load
them. Arguments are 1-d C-contiguous arrays (the adapters pass ``reshape(-1)`` views).
``import zpml_core`` imports neither numba nor this module.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

#: ops with a fused kernel, by arity; ``strict`` is strict_inference (P, Q, no factors)
BINARY_OPS = ("add", "sub", "mul", "div")
#: unary ops computed entirely in the loop (exact arithmetic)
EXACT_UNARY_OPS = ("neg", "inv", "sqrt")
#: unary ops whose value comes from the library's function: op -> the kernel's safe
#: input at ⊥ and whether f(safe) needs rewriting to +0 afterwards
LIBRARY_UNARY_OPS: dict[str, tuple[float, bool]] = {
    "log": (1.0, False),  # log(1) = +0
    "exp": (0.0, True),  # exp(0) = 1
    "sin": (0.0, False),  # sin(+0) = +0
    "cos": (0.0, True),  # cos(0) = 1
    "tan": (0.0, False),  # tan(+0) = +0
    "sqrt": (1.0, True),  # sqrt(1) = 1; |x| < tiny is a signed zero
}

_LOCK = threading.Lock()
_KERNELS: dict[tuple[str, str], Callable[..., Any]] = {}
_STATE: dict[str, Any] = {"numba": None, "error": None}


class Unavailable(RuntimeError):
    """numba is not installed or cannot compile here (the caller takes the array-API path)."""


def _numba() -> Any:
    nb = _STATE["numba"]
    if nb is not None:
        return nb
    if _STATE["error"] is not None:
        raise Unavailable(_STATE["error"])
    try:
        import numba
    except Exception as exc:  # ImportError, or a numba/numpy version mismatch
        _STATE["error"] = f"numba is not importable: {exc}"
        raise Unavailable(_STATE["error"]) from exc
    _STATE["numba"] = numba
    return numba


def available() -> bool:
    """Whether numba can be imported (the ``[fast]`` extra is installed)."""
    try:
        _numba()
    except Unavailable:
        return False
    return True


def _constants(char: str) -> dict[str, Any]:
    """The array-API kernels' constants as scalars of the dtype ``char`` ('f' or 'd')."""
    import array_api_compat.numpy as xnp
    import numpy as np

    from zpml_core import _xp

    f = np.float32 if char == "f" else np.float64
    c = _xp.consts(xnp, np.dtype(f))
    # f(python float) rounds to nearest, as numpy/torch convert a Python scalar
    return {"f": f, "tiny": f(c.tiny), "max": f(c.max), "ovf": f(c.ovf),
            "exp_max": f(c.exp_max), "neg_max": f(-c.max), "zero": f(0.0),
            "one": f(1.0), "nan": f(np.nan)}


def kernel(op: str, char: str) -> Callable[..., Any]:
    """The compiled kernel for ``op`` and dtype ``char`` ('f' float32, 'd' float64)."""
    k = _KERNELS.get((op, char))
    if k is not None:
        return k
    nb = _numba()
    with _LOCK:
        k = _KERNELS.get((op, char))
        if k is None:
            k = _build(nb, op, char)
            _KERNELS[(op, char)] = k
    return k


def _jit(nb: Any, fn: Callable[..., Any]) -> Any:
    """``fn`` compiled lazily (on its first call), cached on disk where numba finds a
    writable cache directory, else compiled per process."""
    opts = {"nogil": True, "error_model": "numpy", "boundscheck": False}
    try:
        return nb.njit(cache=True, **opts)(fn)
    except RuntimeError:  # "no locator available": no writable cache location
        return nb.njit(**opts)(fn)


def _build(nb: Any, op: str, char: str) -> Callable[..., Any]:
    k = _constants(char)
    if op in BINARY_OPS:
        fn = _binary_source(op, k)
    elif op in EXACT_UNARY_OPS:
        fn = _exact_unary_source(op, k)
    elif op.startswith("pre_"):
        fn = _library_prepass_source(op[4:], k)
    elif op.startswith("post_"):
        fn = _library_postpass_source(op[5:], k)
    elif op in ("strict", "strict_gap"):
        fn = _strict_source(k, gap_band=op == "strict_gap")
    else:
        raise ValueError(f"no fused kernel for op {op!r}")
    return _jit(nb, fn)


# ---------------------------------------------------------------------------------------
# kernel sources: each mirrors the forward-only branch of its array-API kernel
# (``not be.supports_autodiff``), which the attached branch equals in value


def _binary_source(op: str, k: dict[str, Any]) -> Callable[..., Any]:
    tiny, zero, one, ovf = k["tiny"], k["zero"], k["one"], k["ovf"]
    if op == "div":
        def div(x: Any, y: Any, out: Any, bottom: Any) -> None:
            # ok = y·y ≥ tiny ∧ |x| ≤ fl(y·y)·ovf ∧ fin(|x| − |y|)
            # value = ok ? (|x| ≥ tiny ? x : x·0) / y : +0
            for i in range(x.shape[0]):
                xi = x[i]
                yi = y[i]
                ax = abs(xi)
                yy = yi * yi
                ok = (yy >= tiny) & (ax <= yy * ovf) & np.isfinite(ax - abs(yi))
                num = xi if ax >= tiny else xi * zero
                q = num / (yi if ok else one)
                out[i] = q if ok else zero
                bottom[i] = not ok
        return div
    if op == "mul":
        def mul(x: Any, y: Any, out: Any, bottom: Any) -> None:
            # ok = fin(x·y); value = ok ? (min(|x|,|y|) < tiny ? (x·y)·0 : x·y) : +0
            for i in range(x.shape[0]):
                xi = x[i]
                yi = y[i]
                r = xi * yi
                ok = np.isfinite(r)
                sub = (abs(xi) < tiny) | (abs(yi) < tiny)
                v = r * zero if sub else r
                out[i] = v if ok else zero
                bottom[i] = not ok
        return mul
    subtract = op == "sub"

    def add(x: Any, y: Any, out: Any, bottom: Any) -> None:
        # xf, yf = DAZ-flushed operands; r = xf ± yf; ok = fin(r); value = ok ? r : +0
        for i in range(x.shape[0]):
            xi = x[i]
            yi = y[i]
            xf = xi * zero if abs(xi) < tiny else xi
            yf = yi * zero if abs(yi) < tiny else yi
            r = xf - yf if subtract else xf + yf
            ok = np.isfinite(r)
            out[i] = r if ok else zero
            bottom[i] = not ok
    return add


def _exact_unary_source(op: str, k: dict[str, Any]) -> Callable[..., Any]:
    tiny, fmax, zero, one = k["tiny"], k["max"], k["zero"], k["one"]
    neg_zero = -zero
    if op == "neg":
        def neg(x: Any, out: Any, bottom: Any) -> None:
            # ok = fin(x); value = −(ok ? x : −0)
            for i in range(x.shape[0]):
                xi = x[i]
                ok = np.isfinite(xi)
                out[i] = -(xi if ok else neg_zero)
                bottom[i] = not ok
        return neg
    if op == "inv":
        def inv(x: Any, out: Any, bottom: Any) -> None:
            # ok = tiny ≤ |x| ≤ max; value = ok ? 1/x : +0
            for i in range(x.shape[0]):
                xi = x[i]
                ax = abs(xi)
                ok = (ax >= tiny) & (ax <= fmax)
                r = one / (xi if ok else one)
                out[i] = r if ok else zero
                bottom[i] = not ok
        return inv

    def sqrt(x: Any, out: Any, bottom: Any) -> None:
        # pos = tiny ≤ x ≤ max; zero = |x| < tiny (a signed zero, x·0)
        # value = pos ? sqrt(x) : (zero ? x·0 : +0); ⊥ = ¬(pos ∨ zero)
        for i in range(x.shape[0]):
            xi = x[i]
            pos = (xi >= tiny) & (xi <= fmax)
            z = abs(xi) < tiny
            r = np.sqrt(xi if pos else one)
            out[i] = r if pos else (xi * zero if z else zero)
            bottom[i] = not (pos | z)
    return sqrt


_KIND = {"log": 0, "sqrt": 0, "exp": 1, "sin": 2, "cos": 2, "tan": 2}


def _library_prepass_source(op: str, k: dict[str, Any]) -> Callable[..., Any]:
    f, tiny, fmax, exp_max, neg_max = k["f"], k["tiny"], k["max"], k["exp_max"], k["neg_max"]
    safe = f(LIBRARY_UNARY_OPS[op][0])
    kind = _KIND[op]  # a compile-time constant: numba folds the branches below
    keep_zero = op == "sqrt"

    def prepass(x: Any, out: Any, bottom: Any) -> None:
        # ok: log/sqrt tiny ≤ x ≤ max; exp −max ≤ x ≤ exp_max; sin/cos/tan fin(x)
        # out = ok ? x : safe (the library's function is then applied to out in place)
        # ⊥ = ¬ok (sqrt: ¬(ok ∨ |x| < tiny), a signed zero is not ⊥)
        for i in range(x.shape[0]):
            xi = x[i]
            if kind == 0:
                ok = (xi >= tiny) & (xi <= fmax)
            elif kind == 1:
                ok = (xi <= exp_max) & (xi >= neg_max)
            else:
                ok = np.isfinite(xi)
            out[i] = xi if ok else safe
            if keep_zero:
                bottom[i] = not (ok | (abs(xi) < tiny))
            else:
                bottom[i] = not ok
    return prepass


def _library_postpass_source(op: str, k: dict[str, Any]) -> Callable[..., Any]:
    tiny, zero = k["tiny"], k["zero"]
    keep_zero = op == "sqrt"

    def postpass(x: Any, out: Any, bottom: Any) -> None:
        # reads the prepass's ⊥: there out = +0; sqrt: x·0 where |x| < tiny and not ⊥
        # (a signed zero; the prepass wrote the safe 1 there)
        for i in range(x.shape[0]):
            if bottom[i]:
                out[i] = zero
            elif keep_zero:
                xi = x[i]
                if abs(xi) < tiny:
                    out[i] = xi * zero
    return postpass


def _strict_source(k: dict[str, Any], *, gap_band: bool) -> Callable[..., Any]:
    tiny, fmax, ovf, zero, one, nan = k["tiny"], k["max"], k["ovf"], k["zero"], k["one"], k["nan"]

    def strict(P: Any, Q: Any, thr: Any, tau: Any, tau_train: Any,
               decoded: Any, bottom: Any, gap: Any, fault: Any, semantic: Any) -> None:
        # semantic = |Q| < thr; fault = ¬(|Q| ≤ max) ∨ ¬(|P| ≤ max) ∨ (¬semantic ∧ |P| > |Q|·ovf)
        # ⊥ = fault ∨ semantic; decoded = ⊥ ? NaN : (|P| < tiny ? P·0 : P) / Q
        # gap = tau ≤ |Q| < tau_train ∧ ¬⊥ (the gap_band variant; else all False)
        # The array-API kernel's ``usable = ¬(¬(|Q| ≤ max) ∨ semantic)`` needs no ``|Q| ≤
        # max`` term here (|P| > NaN or ∞ is False), and its safe numerator/divisor at ⊥
        # (P·0 and 1 where ⊥ or P is NaN; a NaN P is a fault) are not needed: at ⊥
        # decoded is NaN whatever the quotient (the divisor 1 there is a hint the
        # compiler may drop; nothing traps, error_model="numpy").
        for i in range(P.shape[0]):
            p = P[i]
            q = Q[i]
            aq = abs(q)
            ap = abs(p)
            s = aq < thr
            f = (not (aq <= fmax)) | (not (ap <= fmax)) | ((not s) & (ap > aq * ovf))
            b = f | s
            num = p * zero if ap < tiny else p
            r = num / (one if b else q)
            decoded[i] = nan if b else r
            bottom[i] = b
            fault[i] = f
            semantic[i] = s
            if gap_band:  # a compile-time constant
                gap[i] = (aq >= tau) & (aq < tau_train) & (not b)
            else:
                gap[i] = False
    return strict


# ---------------------------------------------------------------------------------------
# runners on numpy arrays (the adapters qualify the operands and convert to/from them)

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_BOOL = np.dtype(np.bool_)


def dtype_char(a: Any) -> str | None:
    """'f'/'d' for a native float32/float64 ndarray dtype, else None."""
    dt = a.dtype
    if dt is _F64:
        return "d"
    if dt is _F32:
        return "f"
    return None


def binary(op: str, char: str, x: Any, y: Any) -> tuple[Any, Any]:
    """``(value, bottom)`` of ``op`` on C-contiguous ``x, y`` of one shape and dtype."""
    k = _KERNELS.get((op, char)) or kernel(op, char)
    out = np.empty(x.shape, x.dtype)
    bottom = np.empty(x.shape, _BOOL)
    if x.ndim == 1:
        k(x, y, out, bottom)
    else:
        k(x.reshape(-1), y.reshape(-1), out.reshape(-1), bottom.reshape(-1))
    return out, bottom


def unary(op: str, char: str, x: Any, library: Callable[[Any], Any] | None) -> tuple[Any, Any]:
    """``(value, bottom)`` of the unary ``op`` on a C-contiguous ``x``.

    ``library`` (for the ops in :data:`LIBRARY_UNARY_OPS`; ``None`` for an exact op
    computed in the loop) applies the library's own function in place to the float
    array it is given (the sanitised operand)."""
    out = np.empty(x.shape, x.dtype)
    bottom = np.empty(x.shape, _BOOL)
    if x.ndim == 1:
        xf, of, bf = x, out, bottom
    else:
        xf, of, bf = x.reshape(-1), out.reshape(-1), bottom.reshape(-1)
    if library is None:
        (_KERNELS.get((op, char)) or kernel(op, char))(xf, of, bf)
        return out, bottom
    kernel("pre_" + op, char)(xf, of, bf)
    library(out)
    if LIBRARY_UNARY_OPS[op][1]:
        kernel("post_" + op, char)(xf, of, bf)
    return out, bottom


def strict(char: str, P: Any, Q: Any, thr: float, tau: float, tau_train: float | None
           ) -> tuple[Any, Any, Any, Any, Any]:
    """``(decoded, bottom, gap, fault, semantic)`` of strict inference on C-contiguous
    ``P, Q`` of one shape and dtype, thresholds already rounded to the dtype. Each mask
    is an array of its own (views into one shared buffer would keep all four alive as
    long as any one is)."""
    f = np.float32 if char == "f" else np.float64
    shape = Q.shape
    decoded = np.empty(shape, Q.dtype)
    bottom = np.empty(shape, _BOOL)
    gap = np.empty(shape, _BOOL)
    fault = np.empty(shape, _BOOL)
    semantic = np.empty(shape, _BOOL)
    if tau_train is not None and tau_train > tau:
        name = "strict_gap"
    else:
        name, tau_train = "strict", tau  # no band: gap is all False
    k = _KERNELS.get((name, char)) or kernel(name, char)
    if Q.ndim == 1:
        k(P, Q, f(thr), f(tau), f(tau_train), decoded, bottom, gap, fault, semantic)
    else:
        k(P.reshape(-1), Q.reshape(-1), f(thr), f(tau), f(tau_train), decoded.reshape(-1),
          bottom.reshape(-1), gap.reshape(-1), fault.reshape(-1), semantic.reshape(-1))
    return decoded, bottom, gap, fault, semantic

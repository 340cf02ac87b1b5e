"""Choosing ``tau_infer`` after training: FN/FP curves from cached ``|Q|``.

Strict inference refuses a sample when ``|Q| < tau_infer``. For a censoring or regime
task with a known in-range subset, every candidate ``tau`` trades

* ``fn_in(tau) = #{in range: |Q| < tau} / #in range`` — in-range samples refused;
* ``fp_cens(tau) = 1 − #{censored: |Q| < tau} / #censored`` — censored samples accepted;
* ``bottom_rate(tau) = #{|Q| < tau} / n`` — everything refused.

An empty subset gives NaN. A NaN ``|Q|`` is never ``< tau`` but counts in the
denominators. The curves need only ``|Q|``, not another pass through the model; compare
:func:`zpml_core.training.calibrate_tau_infer`, which picks one ``tau_infer`` for a
target coverage.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from zpml_core import _xp
from zpml_core._xp import Array
from zpml_core.inference._masks import host_ints, wide_float

__all__ = ["tau_infer_sweep_from_q_abs", "tau_infer_sweep_report", "write_tau_infer_sweep"]


def _taus(taus: object) -> list[float]:
    if isinstance(taus, (str, bytes)) or not isinstance(taus, Iterable):
        raise TypeError(f"taus must be an iterable of real numbers, got {type(taus).__name__}")
    out = []
    for i, t in enumerate(taus):
        if _xp.is_bool_scalar(t) or not (isinstance(t, numbers.Real) or _xp._is_real_scalar_like(t)):
            raise TypeError(f"taus[{i}] must be a real number, got {type(t).__name__}")
        v = float(t)
        if v != v:
            raise ValueError(f"taus[{i}] is NaN")
        out.append(v)
    return out


def tau_infer_sweep_from_q_abs(
    q_abs: Array,
    *,
    is_in_range: Array,
    taus: Sequence[float] | Iterable[float],
) -> dict[str, list[float]]:
    """The curves of the module docstring for each ``tau`` in ``taus``.

    ``q_abs``: ``|Q|`` of every sample (any shape, a real array of any backend);
    ``is_in_range``: bool (or 0/1 integer) array with as many elements, True for the
    in-range samples (the others are censored); elements correspond in row-major order.
    Comparisons run in float64 where the library has it. Returns ``{"taus", "fn_in",
    "fp_cens", "bottom_rate"}``, each a list of Python floats (one host transfer).
    """
    ts = _taus(taus)
    if not (_xp.is_array(q_abs) and _xp.is_array(is_in_range)):
        raise TypeError(
            "q_abs and is_in_range must be arrays, got "
            f"{type(q_abs).__name__} and {type(is_in_range).__name__}"
        )
    xp = _xp.namespace(q_abs, is_in_range, names=("q_abs", "is_in_range"))
    q = _xp.as_input(xp, q_abs)
    if _xp.is_complex(xp, q.dtype) or q.dtype == xp.bool:
        raise TypeError(f"q_abs must be a real array, got dtype {q.dtype}")
    m = _xp.as_mask(xp, is_in_range, "is_in_range", q)
    assert m is not None
    size_q, size_m = _size(q.shape), _size(m.shape)
    if size_q is not None and size_m is not None and size_q != size_m:
        raise ValueError(
            f"q_abs has {size_q} elements (shape {tuple(q.shape)}) and is_in_range {size_m} "
            f"(shape {tuple(m.shape)}): they must correspond one to one"
        )
    dev = _xp.device(q)
    wide = wide_float(xp, dev)
    q = xp.astype(xp.reshape(q, (-1,)), wide)
    m = xp.reshape(m, (-1,))
    it = _xp.default_int(xp, dev)
    counts = [xp.sum(xp.astype(m, it)), xp.sum(xp.ones_like(m, dtype=it))]
    for t in ts:
        below = q < t
        counts.append(xp.sum(xp.astype(below & m, it)))
        counts.append(xp.sum(xp.astype(below & ~m, it)))
    host = host_ints(xp, counts)
    n_in, n = host[0], host[1]
    n_cens = n - n_in

    def frac(c: int, total: int) -> float:
        return math.nan if total == 0 else float(c) / float(total)

    fn_in, fp_cens, bottom = [], [], []
    for k in range(len(ts)):
        c_in, c_cens = host[2 + 2 * k], host[3 + 2 * k]
        fn_in.append(frac(c_in, n_in))
        fp_cens.append(1.0 - frac(c_cens, n_cens))
        bottom.append(frac(c_in + c_cens, n))
    return {"taus": ts, "fn_in": fn_in, "fp_cens": fp_cens, "bottom_rate": bottom}


def _size(shape: tuple[int | None, ...]) -> int | None:
    return None if None in shape else math.prod(shape)  # type: ignore[arg-type]


def tau_infer_sweep_report(curves: Mapping[str, Sequence[float]], *, title: str | None = None) -> str:
    """A Markdown table of a sweep: a ``# title`` heading (default ``tau_infer sweep``),
    the gate rule, and one row per ``tau``: ``tau`` as ``%.3e``, the three curves as
    ``%.6f`` (rows up to the shortest curve)."""
    if not isinstance(curves, Mapping):
        raise TypeError(f"curves must be a mapping, got {type(curves).__name__}")

    def col(key: str) -> list[float]:
        return [float(v) for v in curves.get(key, [])]

    rows = zip(col("taus"), col("fn_in"), col("fp_cens"), col("bottom_rate"))  # noqa: B905
    lines = [
        f"# {title}" if title else "# tau_infer sweep",
        "",
        "Strict gate: mark bottom when `|Q| < τ_infer`.",
        "",
        "| τ_infer | FN_in | FP_cens | bottom_rate |",
        "|---:|---:|---:|---:|",
        *(f"| {t:.3e} | {a:.6f} | {b:.6f} | {c:.6f} |" for t, a, b, c in rows),
    ]
    return "\n".join(lines).rstrip() + "\n"


def _check_finite(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value!r}; strict JSON has no NaN/Infinity")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_finite(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite(v, f"{where}[{i}]")


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_tau_infer_sweep(
    out_dir: str | os.PathLike[str],
    curves: Mapping[str, Sequence[float]],
    *,
    provenance: Mapping[str, object] | None = None,
    basename: str = "tau_infer_sweep",
) -> dict[str, object]:
    """Write ``<basename>.json`` (``{"curves": ..., "provenance": ...}``, strict JSON,
    2-space indent, sorted keys, final newline) and ``<basename>.md``
    (:func:`tau_infer_sweep_report`) into ``out_dir`` (created if missing), each
    atomically; return the JSON payload. A NaN/±inf value (e.g. a curve over an empty
    subset) is a ``ValueError`` naming it; nothing is written then."""
    if not isinstance(curves, Mapping):
        raise TypeError(f"curves must be a mapping, got {type(curves).__name__}")
    if provenance is not None and not isinstance(provenance, Mapping):
        raise TypeError(f"provenance must be a mapping or None, got {type(provenance).__name__}")
    if not isinstance(basename, str) or not basename or basename in (".", "..") or any(
        s in basename for s in ("/", "\\", os.sep, "\0")
    ):
        raise ValueError(f"basename must be a plain file name stem, got {basename!r}")
    payload: dict[str, object] = {"curves": dict(curves)}
    if provenance is not None:
        payload["provenance"] = dict(provenance)
    _check_finite(payload, "payload")
    try:
        text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except TypeError as exc:
        raise TypeError(f"write_tau_infer_sweep: payload is not JSON data ({exc})") from None
    report = tau_infer_sweep_report(curves)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    _atomic_write(root / f"{basename}.json", text)
    _atomic_write(root / f"{basename}.md", report)
    return payload

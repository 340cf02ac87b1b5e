"""Run the conformance cases against one backend and compare with the numpy reference.

For every case the runner

1. builds the numpy inputs (fixed seed) and computes the **reference** by calling the
   function on numpy arrays (float64 cases: numpy float64; float32 cases: numpy float32
   on the same float32 inputs — so f32 tolerances measure cross-library rounding in the
   same dtype, not accuracy);
2. converts the inputs with ``backend.asarray(a, dtype=..., device=...)`` (on the
   backend's conformance device: array-api-strict runs on ``Device("device1")`` so that
   every array the core creates must follow its inputs' device), calls the function and
   flattens the result into named outputs (``value``, ``bottom``, ``decoded``, ...);
3. checks each output: an array of the backend's own library, the reference's dtype and
   shape, the inputs' device; masks (bool) and integer outputs **bit-identical**;
   floating outputs equal in NaN positions, infinities and signed zeros and otherwise
   within ``|a - b| <= atol + rtol·|b|`` (defaults: float64 ``rtol=1e-12``, float32
   ``rtol=1e-6`` (8 ulp; at most 2 ulp were observed: libm exp/trig), ``atol =
   finfo.smallest_normal`` because JAX flushes subnormal *results* to zero on CPU); no
   RuntimeWarning may escape the call;
4. gradient cases (autodiff backends): gradients must be arrays of the backend with the
   input's dtype/device, exactly 0 where the case says (bottom positions), close to
   central finite differences of the numpy float64 reference where the case is smooth,
   and close to the gradients of every other available autodiff backend (pairwise).

Failure messages name the backend, the case and the first differing element.
"""

from __future__ import annotations

import fnmatch
import re
import time
import traceback as _tb
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from zpml_conformance import _grad
from zpml_conformance.cases import Case, all_cases

import zpml_core
from zpml_core import Backend, get_backend_by_name, registered_backends
from zpml_core._registry import is_builtin

__all__ = [
    "FAILED",
    "PASSED",
    "XFAILED",
    "XPASSED",
    "Report",
    "Result",
    "check_case",
    "clear_caches",
    "default_tolerance",
    "judge",
    "load_xfails",
    "run",
    "select_cases",
    "xfails_paths",
]

PASSED, FAILED, XFAILED, XPASSED = "passed", "failed", "xfailed", "xpassed"

_RTOL = {"float64": 1e-12, "float32": 1e-6}
_GRAD_RTOL = {"float64": 1e-9, "float32": 1e-4}
_FD_RTOL = {"float64": 1e-6, "float32": 1e-3}


def _grad_atol(dtype: str) -> float:
    # gradients below ~2**24 smallest normals count as zero: JAX flushes subnormal
    # intermediates of backward formulas (e.g. x**(e-1) in d(x**e)/dx)
    return float(np.finfo(dtype).smallest_normal) * 2.0**24


def default_tolerance(dtype: str) -> tuple[float, float]:
    """``(rtol, atol)`` for floating outputs of ``dtype`` cases."""
    return _RTOL[dtype], float(np.finfo(dtype).smallest_normal)


@dataclass
class Result:
    case: str
    group: str
    backend: str
    status: str
    message: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    backend: str
    results: list[Result] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str, group: str | None = None) -> int:
        return sum(
            1 for r in self.results if r.status == status and (group is None or r.group == group)
        )

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.status == FAILED]

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "seconds": round(self.seconds, 3),
            "warnings": list(self.warnings),
            "results": [asdict(r) for r in self.results],
        }


# ---------------------------------------------------------------------------------------
# selection and xfails


def _matches(case_id: str, pattern: str) -> bool:
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(case_id, pattern)
    return pattern in case_id


def select_cases(
    backend: Backend | None = None,
    *,
    cases: Iterable[Case] | None = None,
    dtype: str | None = None,
    only: Sequence[str] | None = None,
) -> list[Case]:
    """Cases that apply to ``backend`` (gradient cases need autodiff), filtered by dtype
    and by ``only`` patterns (glob if it contains ``*?[``, else substring)."""
    out = []
    for c in all_cases() if cases is None else cases:
        if c.grad is not None and backend is not None and not backend.supports_autodiff:
            continue
        if dtype not in (None, "all") and c.dtype != dtype:
            continue
        if only and not any(_matches(c.id, p) for p in only):
            continue
        out.append(c)
    return out


def default_xfails_path(backend: str | Backend) -> Path | None:
    """The xfails file shipped for ``backend`` (an adapter or a registered name), if any:

    1. the adapter's ``conformance_xfails`` attribute (a path, an
       ``importlib.resources`` file, or a zero-argument callable returning one);
    2. ``<name>-xfails.txt`` next to the adapter's module, in its package (shipped as
       package data and so found through the entry point);
    3. ``zpml_conformance/<name>-xfails.txt`` (the built-in backends)."""
    b: Backend | None
    if isinstance(backend, str):
        name = backend
        b = registered_backends().get(name)
    else:
        b, name = backend, backend.name
    if b is not None:
        hook = getattr(b, "conformance_xfails", None)
        if callable(hook):
            hook = hook()
        if hook is not None:
            return Path(str(hook))
        module = type(b).__module__
        if not is_builtin(b) and module not in ("__main__", "builtins"):
            try:
                pkg = module if _is_package(module) else module.rpartition(".")[0] or module
                path = Path(str(resources.files(pkg).joinpath(f"{name}-xfails.txt")))
                if path.is_file():
                    return path
            except (ModuleNotFoundError, TypeError, ValueError):
                pass
    try:
        p = resources.files("zpml_conformance").joinpath(f"{name}-xfails.txt")
    except (ModuleNotFoundError, TypeError):  # pragma: no cover
        return None
    path = Path(str(p))
    return path if path.is_file() else None


def _is_package(module: str) -> bool:
    import sys

    m = sys.modules.get(module)
    return m is not None and hasattr(m, "__path__")


def xfails_paths(backend: Backend, xfails: Any = True) -> list[Path]:
    """The xfails files that apply to ``backend``: the shipped one
    (:func:`default_xfails_path`) unless ``xfails`` is None/False, plus the files given
    as ``xfails`` — a path or a sequence of paths; an item ``"NAME=PATH"`` applies
    only to the backend called NAME."""
    if xfails is None or xfails is False:
        return []
    out: list[Path] = []
    shipped = default_xfails_path(backend)
    if shipped is not None:
        out.append(shipped)
    if xfails is True:
        return out
    items = [xfails] if isinstance(xfails, (str, Path)) else list(xfails)
    for item in items:
        text = str(item)
        name, sep, rest = text.partition("=")
        if sep and not isinstance(item, Path) and name and "/" not in name \
                and not Path(text).exists():
            if name != backend.name:
                continue
            text = rest
        path = Path(text)
        if path not in out:
            out.append(path)
    return out


def load_xfails(path: str | Path | None) -> list[tuple[str, str]]:
    """Parse an xfails file: one ``<case id or glob>[:<output>] <reason>`` per line,
    ``#`` comments. With ``:<output>`` (an output name such as ``bottom``, or for a
    gradient case the input ``x``; globs allowed) only that output's problems are
    excused: a difference in another output still fails the case."""
    if path is None:
        return []
    entries = []
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        entries.append((parts[0], parts[1].strip() if len(parts) > 1 else ""))
    return entries


@dataclass(frozen=True)
class Xfail:
    """One xfails entry: the case pattern, the output it excuses (None: all)."""

    pattern: str
    output: str | None
    reason: str
    source: str

    def matches(self, case_id: str) -> bool:
        return case_id == self.pattern or fnmatch.fnmatchcase(case_id, self.pattern)

    def excuses(self, problem: str) -> bool:
        if self.output is None:
            return True
        out = problem_output(problem)
        return out is not None and (out == self.output
                                    or fnmatch.fnmatchcase(out, self.output))


def parse_xfails(paths: Sequence[Path]) -> list[Xfail]:
    entries = []
    for path in paths:
        for pat, reason in load_xfails(path):
            case, sep, output = pat.partition(":")
            entries.append(Xfail(case, output if sep and output else None, reason, str(path)))
    return entries


_PROBLEM_OUTPUT = re.compile(r"^(?:output '([^']+)'|gradient d/d(\w+)\b)")


def problem_output(problem: str) -> str | None:
    """The output a problem message is about (``output 'bottom' ...`` → ``bottom``,
    ``gradient d/dx ...`` → ``x``); None for problems about the whole case."""
    m = _PROBLEM_OUTPUT.match(problem)
    if m is None:
        return None
    return m.group(1) or m.group(2)


# ---------------------------------------------------------------------------------------
# conversion helpers


def _flatten(out: Any, prefix: str = "") -> dict[str, Any]:
    """Named leaves of a function result (NamedTuple fields, InferenceResult attributes,
    tuple positions, dict keys; a bare array is ``out``)."""
    from zpml_core.inference import InferenceResult

    def key(k: str) -> str:
        return f"{prefix}.{k}" if prefix else k

    if isinstance(out, InferenceResult):
        return {
            key("decoded"): out.decoded,
            key("bottom_mask"): out.bottom_mask,
            key("gap_mask"): out.gap_mask,
            key("fault_mask"): out.fault_mask,
            key("semantic_bottom_mask"): out.semantic_bottom_mask,
            key("bottom_provenance"): out.bottom_provenance,
        }
    if isinstance(out, tuple) and hasattr(out, "_fields"):
        res: dict[str, Any] = {}
        for f in out._fields:
            res.update(_flatten(getattr(out, f), key(f)))
        return res
    if isinstance(out, (tuple, list)):
        res = {}
        for i, v in enumerate(out):
            res.update(_flatten(v, key(str(i))))
        return res
    if isinstance(out, Mapping):
        res = {}
        for k, v in out.items():
            res.update(_flatten(v, key(str(k))))
        return res
    return {prefix or "out": out}


def _xp_dtype(xp: Any, np_dtype: np.dtype) -> Any:
    return getattr(xp, np.dtype(np_dtype).name)


def _dtype_name(dt: Any) -> str:
    return str(dt).rsplit(".", 1)[-1].strip("'>")


def _device_of(x: Any) -> Any:
    from zpml_core import _xp

    return _xp.device(x)


_BUILTIN_DEVICES: dict[str, Callable[[Any], Any]] = {
    # array-api-strict's multi-device mode: a non-default device makes every array the
    # core creates without device= fail (strict refuses to mix devices)
    "array_api_strict": lambda xp: xp.Device("device1"),
}


def conformance_device(backend: Backend) -> Any:
    """The device the suite places inputs on (None: the backend's default).

    An adapter may set ``conformance_device`` (a value or a zero-argument callable)."""
    hook = getattr(backend, "conformance_device", None)
    if hook is not None:
        return hook() if callable(hook) else hook
    xp = backend.namespace()
    for name in backend.namespace_names:
        if name in _BUILTIN_DEVICES:
            return _BUILTIN_DEVICES[name](xp)
    return None


def resolve_device(backend: Backend, name: str) -> Any:
    """The device of ``backend`` called ``name`` (matched against ``str``/``repr`` of
    ``__array_namespace_info__().devices()``); ``"auto"`` → :func:`conformance_device`,
    ``"default"`` → None (the library's default device)."""
    if name == "auto":
        return conformance_device(backend)
    if name == "default":
        return None
    devices = list(backend.namespace().__array_namespace_info__().devices())
    for d in devices:
        if name == str(d) or f"'{name}'" in repr(d):
            return d
    for d in devices:
        if name.lower() in repr(d).lower():
            return d
    raise ValueError(
        f"backend {backend.name!r} has no device {name!r}; devices: "
        + ", ".join(str(d) for d in devices)
    )


def prepare_backend(backend: Backend) -> None:
    """Per-backend set-up before any array exists: JAX runs with float64 enabled
    (``jax_enable_x64``; semantics §9 #2). Adapters may define ``conformance_setup()``."""
    hook = getattr(backend, "conformance_setup", None)
    if callable(hook):
        hook()
    if "jax.numpy" in backend.namespace_names:
        import jax

        jax.config.update("jax_enable_x64", True)


def _convert(backend: Backend, xp: Any, inputs: Mapping[str, Any], dev: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in inputs.items():
        if isinstance(v, np.ndarray):
            out[k] = backend.asarray(v, dtype=_xp_dtype(xp, v.dtype), device=dev)
        elif isinstance(v, tuple) and v and all(isinstance(t, np.ndarray) for t in v):
            out[k] = tuple(
                backend.asarray(t, dtype=_xp_dtype(xp, t.dtype), device=dev) for t in v
            )
        else:
            out[k] = v
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (np.integer, int)):
        return str(int(v))
    if isinstance(v, (np.floating, float)):
        return repr(float(v))
    return repr(v)


def _first_diff(bad: np.ndarray, a: np.ndarray, e: np.ndarray) -> str:
    idx = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.ndim else ()
    n = int(np.count_nonzero(bad))
    return (
        f"{n} of {bad.size} element(s) differ; first differing element at index {idx}: "
        f"actual {_fmt(a[idx])}, expected {_fmt(e[idx])}"
    )


def _value_mismatch(a: np.ndarray, e: np.ndarray, rtol: float, atol: float,
                    signed_zeros: bool) -> np.ndarray:
    """Elementwise "differs" mask for floating arrays (both already the same shape)."""
    a64 = a.astype(np.float64)
    e64 = e.astype(np.float64)
    an, en = np.isnan(a64), np.isnan(e64)
    bad = an != en
    both = ~an & ~en
    ainf, einf = np.isinf(a64), np.isinf(e64)
    bad |= both & (ainf | einf) & (a64 != e64)
    fin = both & ~ainf & ~einf
    with np.errstate(all="ignore"):
        bad |= fin & ~(np.abs(a64 - e64) <= atol + rtol * np.abs(e64))
    if signed_zeros:
        zero = fin & (a64 == 0) & (e64 == 0)
        bad |= zero & (np.signbit(a64) != np.signbit(e64))
    return bad


def compare_arrays(actual: np.ndarray, expected: np.ndarray, *, rtol: float, atol: float,
                   signed_zeros: bool = True) -> str | None:
    """None if equal under the suite's rules, else a description of the first difference."""
    a, e = np.asarray(actual), np.asarray(expected)
    if a.shape != e.shape:
        return f"shape {a.shape}, expected {e.shape}"
    if e.dtype == np.bool_ or np.issubdtype(e.dtype, np.integer):
        if a.dtype.kind not in "biu":
            return f"converted dtype {a.dtype}, expected {e.dtype}"
        bad = a != e
    elif np.issubdtype(e.dtype, np.complexfloating):
        bad = _value_mismatch(np.real(a), np.real(e), rtol, atol, signed_zeros) | \
            _value_mismatch(np.imag(a), np.imag(e), rtol, atol, signed_zeros)
    else:
        if a.dtype.kind not in "fc":
            return f"converted dtype {a.dtype}, expected {e.dtype}"
        bad = _value_mismatch(a, e, rtol, atol, signed_zeros)
    if bad.any():
        return _first_diff(bad, a, e)
    return None


def _check_native(backend: Backend, xp: Any, x: Any, dtype: np.dtype, shape: tuple[int, ...],
                  dev: Any) -> list[str]:
    """Library / dtype / shape / device of a backend array."""
    problems = []
    try:
        ns = zpml_core.namespace(x)
        ok = ns is xp or ns.__name__ in backend.namespace_names
        if not ok or not hasattr(x, "dtype"):
            problems.append(f"is a {type(x).__module__}.{type(x).__qualname__} "
                            f"(namespace {ns.__name__}), not an array of {backend.name}")
            return problems
    except TypeError:
        problems.append(f"is a {type(x).__module__}.{type(x).__qualname__}, not an array")
        return problems
    want = _xp_dtype(xp, dtype)
    if x.dtype != want:
        problems.append(f"has dtype {_dtype_name(x.dtype)}, expected {np.dtype(dtype).name}")
    if tuple(x.shape) != tuple(shape):
        problems.append(f"has shape {tuple(x.shape)}, expected {tuple(shape)}")
    if dev is not None:
        d = _device_of(x)
        if d != dev:
            problems.append(f"is on device {d!r}, expected the inputs' device {dev!r}")
    return problems


# ---------------------------------------------------------------------------------------
# reference


@dataclass(frozen=True)
class _Raised:
    name: str
    text: str


_REF: dict[str, dict[str, np.ndarray] | _Raised] = {}


def reference(case: Case) -> dict[str, np.ndarray] | _Raised:
    """The numpy reference outputs of ``case`` (cached per case id)."""
    r = _REF.get(case.id)
    if r is None:
        inputs = case.inputs()
        try:
            with np.errstate(all="ignore"), _policy_context(case):
                out = case.fn(**case.call_args(inputs))
            r = {k: np.array(v, copy=True) for k, v in _flatten(out).items()}
        except Exception as exc:
            r = _Raised(type(exc).__name__, str(exc))
        _REF[case.id] = r
    return r


# ---------------------------------------------------------------------------------------
# forward check


def _policy_context(case: Case) -> AbstractContextManager[Any]:
    pol = case.grad.policy if case.grad is not None and case.grad.policy else case.policy
    if pol is None:
        return nullcontext()
    from zpml_core.autodiff.policies import GradientPolicy, gradient_policy

    return gradient_policy(GradientPolicy[pol])


def _check_forward(case: Case, backend: Backend, xp: Any, dev: Any) -> list[str]:
    ref = reference(case)
    if isinstance(ref, _Raised) and ref.name != case.raises:
        return [f"the numpy reference raised {ref.name}: {ref.text}"
                + (f" (the case expects {case.raises})" if case.raises else "")]
    inputs_np = case.inputs()
    arrays = _convert(backend, xp, inputs_np, dev)
    problems = _check_inputs(backend, xp, inputs_np, arrays, dev)
    if problems:
        return problems
    in_dev = _input_device(arrays)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with _policy_context(case):
                out = case.fn(**case.call_args(arrays))
            flat = _flatten(out)
        except Exception as exc:
            if isinstance(ref, _Raised):
                if type(exc).__name__ == ref.name:
                    return []
                return [f"raised {type(exc).__name__}: {exc}; expected {ref.name} "
                        f"like the reference{_trace(exc)}"]
            if case.raises:
                return [f"raised {type(exc).__name__}: {exc}; expected {case.raises}"
                        f"{_trace(exc)}"]
            return [f"raised {type(exc).__name__}: {exc}{_trace(exc)}"]
        converted: dict[str, Any] = {}
        conversion: dict[str, str] = {}
        for k, v in flat.items():
            try:
                converted[k] = backend.to_numpy(v)
            except Exception as exc:
                conversion[k] = f"to_numpy raised {type(exc).__name__}: {exc}"
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    if isinstance(ref, _Raised):
        return [f"returned normally; the reference raised {ref.name}: {ref.text}"]
    if case.raises:
        return [f"returned normally; expected {case.raises}"]
    if runtime:
        problems.append(f"emitted RuntimeWarning: {runtime[0].message}")
    if set(flat) != set(ref):
        return [f"outputs {sorted(flat)}, expected {sorted(ref)}"]
    for name, e in ref.items():
        x = flat[name]
        want = e.dtype
        case_dtype = case.dtype
        if name in case.default_float:
            from zpml_core import _xp

            want = np.dtype(_dtype_name(_xp.default_float(xp, in_dev)))
            case_dtype = want.name if want.name in ("float32", "float64") else case.dtype
        elif e.dtype.kind in "iu" and name.rsplit(".", 1)[-1] in case.default_int:
            from zpml_core import _xp

            want = np.dtype(_dtype_name(_xp.default_int(xp, in_dev)))
        d_rtol, d_atol = default_tolerance(case_dtype)
        msgs = [f"output {name!r} {p}" for p in
                _check_native(backend, xp, x, want, e.shape, in_dev)]
        rtol, atol = case.tol.get(name, (
            max(case.rtol, d_rtol) if case.rtol is not None else d_rtol,
            case.atol if case.atol is not None else d_atol))
        if name in conversion:
            msgs.append(f"output {name!r}: {conversion[name]}")
            problems.extend(msgs)
            continue
        diff = compare_arrays(converted[name], e, rtol=rtol, atol=atol,
                              signed_zeros=case.signed_zeros)
        if diff is not None:
            msgs.append(f"output {name!r}: {diff}")
        problems.extend(msgs)
    return problems


def _check_inputs(backend: Backend, xp: Any, inputs_np: Mapping[str, Any],
                  arrays: Mapping[str, Any], dev: Any) -> list[str]:
    problems: list[str] = []
    for k, v in inputs_np.items():
        vs = v if isinstance(v, tuple) else (v,)
        xs = arrays[k] if isinstance(v, tuple) else (arrays[k],)
        for i, (a, x) in enumerate(zip(vs, xs, strict=True)):
            if not isinstance(a, np.ndarray):
                continue
            name = k if len(vs) == 1 else f"{k}[{i}]"
            problems.extend(f"asarray({name}) {p}" for p in
                            _check_native(backend, xp, x, a.dtype, a.shape, dev))
    return problems


def _input_device(arrays: Mapping[str, Any]) -> Any:
    for v in arrays.values():
        for x in v if isinstance(v, tuple) else (v,):
            if hasattr(x, "shape") and hasattr(x, "dtype"):
                return _device_of(x)
    return None


# ---------------------------------------------------------------------------------------
# gradient check


_GradResult = tuple[dict[str, np.ndarray] | str, list[str]]
_GRADS: dict[tuple[int, str], _GradResult] = {}


def _backend_grads(case: Case, backend: Backend, xp: Any, dev: Any) -> _GradResult:
    """numpy copies of the gradients of ``case`` on ``backend`` (or an error text), and
    the problems with the native gradient arrays (library, dtype, shape, device);
    cached per backend object and case id."""
    key = (id(backend), case.id)
    cached = _GRADS.get(key)
    if cached is None:
        problems: list[str] = []
        cached = (_compute_grads(case, backend, xp, dev, problems), problems)
        _GRADS[key] = cached
    return cached


def _compute_grads(case: Case, backend: Backend, xp: Any, dev: Any,
                   problems: list[str]) -> dict[str, np.ndarray] | str:
    assert case.grad is not None
    spec = case.grad
    inputs_np = case.inputs()
    arrays = _convert(backend, xp, inputs_np, dev)
    in_dev = _input_device(arrays)

    def f(*wrt_arrays: Any) -> Any:
        a = dict(arrays)
        a.update(zip(spec.wrt, wrt_arrays, strict=True))
        out = case.fn(**case.call_args(a))
        return spec.scalar(out, a, xp)

    try:
        with _policy_context(case), np.errstate(all="ignore"):
            _, grads = _grad.value_and_grad(backend, f, [arrays[k] for k in spec.wrt])
        res = {}
        for k, g in zip(spec.wrt, grads, strict=True):
            a = inputs_np[k]
            problems.extend(f"gradient d/d{k} {p}" for p in
                            _check_native(backend, xp, g, a.dtype, a.shape, in_dev))
            res[k] = np.array(backend.to_numpy(g), copy=True)
        return res
    except Exception as exc:
        return f"gradient computation raised {type(exc).__name__}: {exc}{_trace(exc)}"


_FD: dict[str, dict[str, np.ndarray]] = {}


def _fd_grads(case: Case) -> dict[str, np.ndarray]:
    """Central finite differences of the numpy float64 reference (cached per case)."""
    assert case.grad is not None
    spec = case.grad
    cached = _FD.get(case.id)
    if cached is not None:
        return cached
    import array_api_compat.numpy as npx

    raw = case.inputs()
    if spec.fd_inputs is not None:
        raw = spec.fd_inputs(raw)
    inputs = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype.kind == "f"
                  else v) for k, v in raw.items()}

    def scalar(a: Mapping[str, Any]) -> float:
        with np.errstate(all="ignore"):
            return float(spec.scalar(case.fn(**case.call_args(a)), a, npx))

    out = {}
    for k in spec.wrt:
        x = inputs[k]
        g = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            h = 1e-6 * max(spec.fd_floor, abs(float(x[i]))) if np.isfinite(x[i]) else 0.0
            if h == 0.0:
                g[i] = np.nan
                continue
            xp_, xm_ = x.copy(), x.copy()
            xp_[i] += h
            xm_[i] -= h
            g[i] = (scalar({**inputs, k: xp_}) - scalar({**inputs, k: xm_})) / (2 * h)
        out[k] = g
    _FD[case.id] = out
    return out


def _peer_backends(backend: Backend) -> list[Backend]:
    """The reference autodiff backends for ``backend``'s gradients: the *built-in*
    ones (torch, jax) that are installed, except ``backend`` itself and any serving the
    same namespace. A third-party adapter is never a reference, so its wrong gradient
    cannot fail another backend's cases."""
    peers = []
    mine = set(backend.namespace_names)
    for name, b in sorted(registered_backends().items()):
        if name == backend.name or not b.supports_autodiff or b is backend:
            continue
        if not is_builtin(b) or mine & set(b.namespace_names):
            continue
        if _grad.grad_fn_for(b) is None or not b.available():
            continue
        peers.append(b)
    return peers


def _peer_grads(case: Case, b: Backend) -> dict[str, np.ndarray] | str:
    prepare_backend(b)
    return _backend_grads(case, b, b.namespace(), conformance_device(b))[0]


def _check_grad(case: Case, backend: Backend, xp: Any, dev: Any) -> list[str]:
    assert case.grad is not None
    spec = case.grad
    got, native_problems = _backend_grads(case, backend, xp, dev)
    if isinstance(got, str):
        return [got]
    problems = list(native_problems)
    inputs_np = case.inputs()
    g_rtol = spec.rtol if spec.rtol is not None else _GRAD_RTOL[case.dtype]
    g_atol = spec.atol if spec.atol is not None else _grad_atol(case.dtype)
    if spec.zero_at is not None:
        for k, m in spec.zero_at(inputs_np).items():
            g = got[k]
            bad = np.broadcast_to(m, g.shape) & (g != 0)
            if bad.any():
                problems.append(f"gradient d/d{k} is not 0 at a bottom position: "
                                + _first_diff(bad, g, np.zeros_like(g)))
    if spec.fd:
        fd = _fd_grads(case)
        f_rtol = _FD_RTOL[case.dtype]
        where = spec.fd_at(inputs_np) if spec.fd_at is not None else None
        for k in spec.wrt:
            at = np.ones(got[k].shape, bool) if where is None else \
                np.broadcast_to(where[k], got[k].shape)
            fin = np.abs(fd[k][at & np.isfinite(fd[k])])
            scale = float(fin.max()) if fin.size else 1.0
            diff = compare_arrays(np.where(at, got[k], 0), np.where(at, fd[k], 0),
                                  rtol=f_rtol, atol=f_rtol * max(scale, 1.0),
                                  signed_zeros=False)
            if diff is not None:
                problems.append(f"gradient d/d{k} vs central finite differences of the "
                                f"numpy reference: {diff}")
    cmp_at = spec.compare_at(inputs_np) if spec.compare_at is not None else None
    for peer in _peer_backends(backend):
        other = _peer_grads(case, peer)
        if isinstance(other, str):  # the reference could not compute: no comparison
            continue
        for k in spec.wrt:
            a, e = got[k], other[k]
            if cmp_at is not None:
                at = np.broadcast_to(cmp_at[k], a.shape)
                a, e = np.where(at, a, 0), np.where(at, e, 0)
            atol = g_atol
            if spec.scaled_atol:
                fin = np.abs(e[np.isfinite(e)])
                if fin.size:
                    atol = max(atol, 4 * float(np.finfo(case.dtype).eps) * float(fin.max()))
            diff = compare_arrays(a, e, rtol=g_rtol, atol=atol, signed_zeros=False)
            if diff is not None:
                problems.append(f"gradient d/d{k} differs from the built-in reference "
                                f"{peer.name}'s: {diff}")
    return problems


# ---------------------------------------------------------------------------------------
# driver


def clear_caches() -> None:
    """Forget cached reference outputs, gradients and finite differences (tests that
    register deliberately broken adapters call this before and after)."""
    _REF.clear()
    _GRADS.clear()
    _FD.clear()


_TRACEBACKS = [False]


def _trace(exc: BaseException) -> str:
    """The traceback of ``exc`` (appended to failure messages with ``traceback=True``)."""
    if not _TRACEBACKS[0]:
        return ""
    return "\n" + "".join(_tb.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


def check_case(case: Case, backend: Backend | str, *, device: Any = "auto",
               traceback: bool = False) -> list[str]:
    """Problems of one case on one backend (empty list: the case passes). With
    ``traceback`` an exception's message carries the traceback of where it came from."""
    b = _resolve(backend)
    prepare_backend(b)
    xp = b.namespace()
    dev = resolve_device(b, device) if isinstance(device, str) else device
    saved, _TRACEBACKS[0] = _TRACEBACKS[0], traceback
    try:
        if case.grad is not None:
            return _check_grad(case, b, xp, dev)
        return _check_forward(case, b, xp, dev)
    except Exception as exc:  # a crash in the runner path itself is a failure too
        return [f"raised {type(exc).__name__}: {exc}{_trace(exc)}"]
    finally:
        _TRACEBACKS[0] = saved


def _resolve(backend: Backend | str) -> Backend:
    return get_backend_by_name(backend) if isinstance(backend, str) else backend


def judge(case_id: str, problems: Sequence[str], entries: Sequence[Xfail]) -> tuple[str, str]:
    """``(status, detail)`` of a case from its problems and the xfails entries: a case
    is XFAILED if every problem is excused (a whole-case entry, or entries naming the
    outputs the problems are about), FAILED if one is not, XPASSED if it passes but an
    entry names it."""
    mine = [e for e in entries if e.matches(case_id)]
    if not problems:
        if mine:
            return XPASSED, "passed but is listed as xfail (" + \
                "; ".join(_entry_text(e) for e in mine) + ")"
        return PASSED, ""
    left = [p for p in problems if not any(e.excuses(p) for e in mine)]
    if left:
        excused = len(problems) - len(left)
        note = f" ({excused} more excused by xfails)" if excused else ""
        return FAILED, "; ".join(left) + note
    used = [e for e in mine if any(e.excuses(p) for p in problems)]
    return XFAILED, "; ".join(problems) + " (xfail: " + \
        "; ".join(_entry_text(e) for e in used) + ")"


def _entry_text(e: Xfail) -> str:
    where = f"{e.output}: " if e.output else ""
    return where + (e.reason or "listed")


def run(
    backend: Backend | str,
    *,
    cases: Iterable[Case] | None = None,
    dtype: str | None = None,
    only: Sequence[str] | None = None,
    xfails: Any = True,
    device: Any = "auto",
    progress: Callable[[Result], None] | None = None,
    traceback: bool = False,
) -> Report:
    """Run the suite against ``backend`` (an adapter instance or a registered name).

    ``xfails``: True → the file shipped for the backend (:func:`default_xfails_path`);
    a path or a sequence of paths (``"NAME=PATH"``: for backend NAME only) → those
    files *and* the shipped one; None/False → none. ``device``: a device object, or a
    name for :func:`resolve_device` (``"auto"``: :func:`conformance_device`;
    ``"default"``: the library default). ``traceback``: failure messages of
    exceptions carry their traceback.
    """
    b = _resolve(backend)
    report = Report(b.name)
    t_start = time.perf_counter()
    prepare_backend(b)
    dev = resolve_device(b, device) if isinstance(device, str) else device
    pool = select_cases(b, cases=cases)
    selected = select_cases(b, cases=pool, dtype=dtype, only=only)
    entries = parse_xfails(xfails_paths(b, xfails))
    for e in entries:
        if not any(e.matches(c.id) for c in pool):
            msg = f"{b.name}: xfails entry {e.pattern!r} ({e.source}) matches no case"
            report.warnings.append(msg)
            warnings.warn(msg, UserWarning, stacklevel=2)
    for case in selected:
        t0 = time.perf_counter()
        problems = check_case(case, b, device=dev, traceback=traceback)
        status, detail = judge(case.id, problems, entries)
        message = f"[{b.name}] {case.id}: {detail}" if detail else ""
        r = Result(case.id, case.group, b.name, status, message, time.perf_counter() - t0)
        report.results.append(r)
        if progress is not None:
            progress(r)
    report.seconds = time.perf_counter() - t_start
    return report

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

The runner is split by responsibility: case selection and xfails
(:mod:`zpml_conformance._xfails`), conversion and comparison
(:mod:`zpml_conformance._compare`), the reference and forward check
(:mod:`zpml_conformance._forward`) and the gradient check
(:mod:`zpml_conformance._gradcheck`); this module holds the results and the driver and
re-exports every name.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from zpml_conformance._compare import (  # noqa: F401  (re-exported)
    _BUILTIN_DEVICES,
    _FD_RTOL,
    _GRAD_RTOL,
    _RTOL,
    _check_native,
    _convert,
    _device_of,
    _dtype_name,
    _first_diff,
    _flatten,
    _fmt,
    _grad_atol,
    _value_mismatch,
    _xp_dtype,
    compare_arrays,
    conformance_device,
    default_tolerance,
    prepare_backend,
    resolve_device,
)
from zpml_conformance._forward import (  # noqa: F401  (re-exported)
    _REF,
    _TRACEBACKS,
    _check_forward,
    _check_inputs,
    _input_device,
    _policy_context,
    _Raised,
    _trace,
    reference,
)
from zpml_conformance._gradcheck import (  # noqa: F401  (re-exported)
    _FD,
    _GRADS,
    _backend_grads,
    _check_grad,
    _compute_grads,
    _fd_grads,
    _GradResult,
    _peer_backends,
    _peer_grads,
)
from zpml_conformance._xfails import (  # noqa: F401  (re-exported)
    _PROBLEM_OUTPUT,
    FAILED,
    PASSED,
    XFAILED,
    XPASSED,
    Xfail,
    _entry_text,
    _is_package,
    _matches,
    default_xfails_path,
    judge,
    load_xfails,
    parse_xfails,
    problem_output,
    select_cases,
    xfails_paths,
)
from zpml_conformance.cases import Case

from zpml_core import Backend, get_backend_by_name

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
# driver


def clear_caches() -> None:
    """Forget cached reference outputs, gradients and finite differences (tests that
    register deliberately broken adapters call this before and after)."""
    _REF.clear()
    _GRADS.clear()
    _FD.clear()




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

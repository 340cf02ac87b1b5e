"""The conformance runner catches deliberately broken adapters.

Each test feeds the runner a copy of a built-in adapter with one defect — one mask
element of one op flipped, a dtype changed, a device dropped, a foreign library
returned, a conversion or a gradient perturbed, a gradient policy ignored — and checks
that exactly the affected cases fail with a message naming the backend, the case and
the first differing element (index, actual, expected).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from zpml_conformance import runner
from zpml_conformance.cases import all_cases

from zpml_core import get_backend, register_backend, scm
from zpml_core._registry import Backend, unregister_backend

xs = pytest.importorskip("array_api_strict")
from zpml_backends.strict_adapter import StrictBackend  # noqa: E402

CASES = {c.id: c for c in all_cases()}


@contextmanager
def serving(adapter: Backend) -> Iterator[Backend]:
    """Let ``adapter`` serve its namespaces (so the core's kernels run through it), then
    restore the adapter that served them before."""
    original = get_backend(adapter.namespace())
    runner.clear_caches()
    register_backend(adapter, replace=True)
    try:
        yield adapter
    finally:
        unregister_backend(adapter.name)
        register_backend(original, replace=True)
        runner.clear_caches()


def _breaking(target: Callable[..., Any], change: Callable[..., Any],
              name: str) -> StrictBackend:
    """A strict adapter whose ``fuse`` applies ``change(outputs, xp)`` to ``target``."""

    class Broken(StrictBackend):
        def fuse(self, kernel: Callable[..., Any]) -> Callable[..., Any]:
            f = super().fuse(kernel)
            if kernel is not target:
                return f

            def broken(*args: Any, **kw: Any) -> Any:
                return change(f(*args, **kw), kw["xp"])

            return broken

    Broken.name = name
    return Broken()


def _run(backend: Backend, only: list[str]) -> dict[str, runner.Result]:
    rep = runner.run(backend, only=only, xfails=None)
    assert rep.results, f"no case selected by {only}"
    return {r.case: r for r in rep.results}


def _flip_element(k: int) -> Callable[..., Any]:
    def change(out: Any, xp: Any) -> Any:
        value, bottom = out
        flat = xp.reshape(bottom, (-1,))
        hit = xp.arange(flat.shape[0], device=flat.device) == k
        return value, xp.reshape(xp.where(hit, ~flat, flat), bottom.shape)

    return change


def test_one_flipped_mask_element_fails_exactly_that_op() -> None:
    adapter = _breaking(scm._k_div, _flip_element(3), "strict-flipmask")
    with serving(adapter):
        res = _run(adapter, ["scm.div/f64/edge-bcast", "scm.div/f32/rand-1d",
                             "scm.mul/f64/edge-bcast", "scm.log/f64/edge-1d"])
    assert res["scm.mul/f64/edge-bcast"].status == runner.PASSED
    assert res["scm.log/f64/edge-1d"].status == runner.PASSED
    r = res["scm.div/f64/edge-bcast"]
    assert r.status == runner.FAILED
    expected = bool(runner.reference(CASES[r.case])["bottom"][0, 3])
    assert r.message.startswith("[strict-flipmask] scm.div/f64/edge-bcast: "), r.message
    assert (f"output 'bottom': 1 of 2916 element(s) differ; first differing element at "
            f"index (0, 3): actual {not expected}, expected {expected}") in r.message
    # the value was not touched: only the mask is reported
    assert "output 'value'" not in r.message
    r = res["scm.div/f32/rand-1d"]
    assert r.status == runner.FAILED
    assert "first differing element at index (3,)" in r.message


def test_changed_dtype_is_reported() -> None:
    def to_f32(out: Any, xp: Any) -> Any:
        value, bottom = out
        return xp.astype(value, xp.float32), bottom

    adapter = _breaking(scm._k_exp, to_f32, "strict-dtype")
    with serving(adapter):
        res = _run(adapter, ["scm.exp/f64/edge-1d", "scm.exp/f32/edge-1d"])
    r = res["scm.exp/f64/edge-1d"]
    assert r.status == runner.FAILED
    assert r.message.startswith("[strict-dtype] scm.exp/f64/edge-1d: ")
    assert "output 'value' has dtype float32, expected float64" in r.message
    # the rounded values are reported too, with the first differing element
    assert re.search(r"output 'value': \d+ of 54 element\(s\) differ; first differing "
                     r"element at index \(\d+,\): actual \S+, expected \S+", r.message)
    assert res["scm.exp/f32/edge-1d"].status == runner.PASSED  # already float32


def test_dropped_device_is_reported() -> None:
    cpu = xs.Device("CPU_DEVICE")

    def to_cpu(out: Any, xp: Any) -> Any:
        value, bottom = out
        return value.to_device(cpu), bottom

    adapter = _breaking(scm._k_sqrt, to_cpu, "strict-device")
    assert runner.conformance_device(adapter) == xs.Device("device1")
    with serving(adapter):
        res = _run(adapter, ["scm.sqrt/f64/edge-1d", "scm.sin/f64/edge-1d"])
    r = res["scm.sqrt/f64/edge-1d"]
    assert r.status == runner.FAILED
    assert "[strict-device] scm.sqrt/f64/edge-1d: output 'value' is on device " \
           "array_api_strict.Device('CPU_DEVICE'), expected the inputs' device " \
           "array_api_strict.Device('device1')" in r.message
    assert "output 'bottom'" not in r.message
    assert res["scm.sin/f64/edge-1d"].status == runner.PASSED


def test_foreign_library_output_is_reported() -> None:
    def to_numpy(out: Any, xp: Any) -> Any:
        value, bottom = out
        return np.from_dlpack(value.to_device(xs.Device("CPU_DEVICE"))).copy(), bottom

    adapter = _breaking(scm._k_log, to_numpy, "strict-library")
    with serving(adapter):
        res = _run(adapter, ["scm.log/f64/rand-2d"])
    r = res["scm.log/f64/rand-2d"]
    assert r.status == runner.FAILED
    assert "output 'value' is a numpy.ndarray (namespace array_api_compat.numpy), not an " \
           "array of strict-library" in r.message


def test_broken_asarray_is_reported_before_the_call() -> None:
    class DropsDevice(StrictBackend):
        name = "strict-asarray"

        def asarray(self, a: Any, *, dtype: Any = None, device: Any = None) -> Any:
            return super().asarray(a, dtype=dtype)  # ignores device=

    res = _run(DropsDevice(), ["scm.add/f64/masked-2d"])
    r = res["scm.add/f64/masked-2d"]
    assert r.status == runner.FAILED
    assert "asarray(x) is on device array_api_strict.Device('CPU_DEVICE'), expected the " \
           "inputs' device array_api_strict.Device('device1')" in r.message
    assert "asarray(mask_x)" in r.message


def test_broken_to_numpy_names_the_first_differing_element() -> None:
    class NegatesOne(StrictBackend):
        name = "strict-to-numpy"

        def to_numpy(self, x: Any) -> Any:
            a = super().to_numpy(x)
            if a.dtype.kind == "f" and a.ndim == 2:
                a[1, 2] = -a[1, 2] if a[1, 2] != 0 else 1.0
            return a

    res = _run(NegatesOne(), ["scm.mul/f64/masked-2d"])
    r = res["scm.mul/f64/masked-2d"]
    assert r.status == runner.FAILED
    expected = float(runner.reference(CASES[r.case])["value"][1, 2])
    actual = -expected if expected != 0 else 1.0
    assert (f"[strict-to-numpy] scm.mul/f64/masked-2d: output 'value': 1 of 48 element(s) "
            f"differ; first differing element at index (1, 2): actual {actual!r}, "
            f"expected {expected!r}") in r.message


def test_failures_make_the_cli_exit_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    from zpml_conformance.__main__ import main

    adapter = _breaking(scm._k_div, _flip_element(0), "strict-cli")
    with serving(adapter):
        code = main(["--backend", "strict-cli", "--only", "scm.div/f64/*"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL [strict-cli] scm.div/f64/" in out
    assert re.search(r"^0 passed, 4 failed$", out, re.M), out


# ---- gradients (torch, jax) --------------------------------------------------------------


@pytest.mark.autodiff
def test_perturbed_gradient_is_reported(backend: Backend) -> None:
    from zpml_conformance import _grad

    builtin = _grad.grad_fn_for(backend)
    assert builtin is not None

    class BadGrad(type(backend)):  # type: ignore[misc]
        name = f"{backend.name}-badgrad"

        def grad_fn(self, f: Callable[..., Any], *arrays: Any) -> Any:
            v, gs = builtin(f, *arrays)
            xp = self.namespace()
            g0 = gs[0]
            bump = xp.where(xp.arange(g0.shape[0]) == 2, 1e-3, 0.0)
            return v, (g0 + xp.astype(bump, g0.dtype), *gs[1:])

    runner.clear_caches()
    try:
        res = _run(BadGrad(), ["grad.scm.mul/f64/smooth-1d"])
    finally:
        runner.clear_caches()
    r = res["grad.scm.mul/f64/smooth-1d"]
    assert r.status == runner.FAILED
    assert r.message.startswith(f"[{backend.name}-badgrad] grad.scm.mul/f64/smooth-1d: ")
    assert "gradient d/dx vs central finite differences of the numpy reference: 1 of 24 " \
           "element(s) differ; first differing element at index (2,)" in r.message
    assert "d/dy" not in r.message


@pytest.mark.autodiff
def test_ignored_gradient_policy_is_reported(backend: Backend) -> None:
    class NoGate(type(backend)):  # type: ignore[misc]
        name = f"{backend.name}-nogate"

        def gate(self, value: Any, bottom: Any, policy: Any, *, xp: Any) -> Any:
            return value  # policies ignored

    adapter = NoGate()
    with serving(adapter):
        res = _run(adapter, ["grad.scm.log/f64/policy-reject",
                             "grad.scm.log/f64/policy-clamp",
                             "grad.scm.log/f64/policy-passthrough"])
    assert res["grad.scm.log/f64/policy-passthrough"].status == runner.PASSED
    r = res["grad.scm.log/f64/policy-reject"]
    assert r.status == runner.FAILED
    assert re.search(r"gradient d/dx is not 0 at a bottom position: \d+ of 24 element\(s\) "
                     r"differ; first differing element at index \(\d+,\): actual \S+, "
                     r"expected 0\.0", r.message), r.message
    r = res["grad.scm.log/f64/policy-clamp"]
    assert r.status == runner.FAILED
    assert "vs central finite differences" in r.message

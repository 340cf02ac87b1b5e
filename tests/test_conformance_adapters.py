"""The adapter protocol: the namespace hook, registry order and isolation, lazy versus
traced arrays, and the suite's handling of third-party adapters (xfails per output and
per backend, XFAIL details, tracebacks, built-in gradient references only)."""

from __future__ import annotations

import os
import re
import types
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import array_api_compat.numpy as npx
import numpy as np
import pytest
from zpml_conformance import runner
from zpml_conformance.__main__ import main

import zpml_core
from zpml_core import _registry, _xp, register_backend, scm
from zpml_core._registry import Backend, GenericBackend, unregister_backend

# ---- the namespace hook ------------------------------------------------------------------


class FakeArray:
    """Not an array-API array (no ``__array_namespace__``): only a hook can serve it."""

    dtype = np.dtype("float64")
    shape = (3,)


class FakeChild(FakeArray):
    pass


class HookBackend(Backend):
    name = "hook-test"
    namespace_names = ("hook_test_ns",)
    array_types = (f"{__name__}.FakeArray",)

    def __init__(self) -> None:
        self.ns = types.ModuleType("hook_test_ns")
        self.ns.__dict__.update({k: getattr(npx, k) for k in dir(npx) if not k.startswith("__")})
        self.calls = 0

    def array_namespace(self, x: Any) -> Any:
        self.calls += 1
        return self.ns

    def array_device(self, x: Any) -> Any:
        return "dev0"


@pytest.fixture
def hooked() -> Iterator[HookBackend]:
    b = HookBackend()
    register_backend(b)
    try:
        yield b
    finally:
        unregister_backend(b.name)


def test_the_hook_serves_its_declared_types(hooked: HookBackend) -> None:
    a = FakeArray()
    assert zpml_core.namespace(a) is hooked.ns
    assert zpml_core.namespace(FakeArray()) is hooked.ns  # cached per type
    assert hooked.calls == 1
    assert zpml_core.namespace(FakeChild()) is hooked.ns  # subclasses too
    assert zpml_core.get_backend(hooked.ns) is hooked
    assert _xp.device(a) == "dev0" and _xp.device(FakeChild()) == "dev0"
    assert zpml_core.namespace(np.ones(3)) is not hooked.ns  # other types: compat


def test_without_the_hook_the_type_is_rejected(hooked: HookBackend) -> None:
    unregister_backend(hooked.name)
    with pytest.raises(TypeError, match=r"x must be an array from an array-API library"):
        zpml_core.namespace(FakeArray(), names=("x",))
    register_backend(hooked)


def test_while_tracing_a_typed_hook_is_asked_for_its_types_only(hooked: HookBackend) -> None:
    assert _xp._hooked_namespace(np.ones(2), True) is None
    assert _xp._hooked_namespace(FakeArray(), True) is hooked.ns


def test_a_device_asked_first_goes_through_the_hook(hooked: HookBackend) -> None:
    assert _xp.device(FakeChild()) == "dev0"  # before any namespace() call of the type


class Claimer(Backend):
    """A third-party adapter claiming numpy's array type and namespace."""

    name = "claimer"
    namespace_names = ("array_api_compat.numpy",)
    array_types = ("numpy.ndarray",)
    fast_types = (("numpy", "ndarray"), ("numpy", "memmap"))

    def fast(self, op: str, *args: Any) -> Any:
        raise RuntimeError("broken adapter")

    def array_namespace(self, x: Any) -> Any:
        raise RuntimeError("broken adapter")

    def fuse(self, kernel: Callable[..., Any]) -> Callable[..., Any]:
        raise RuntimeError("broken adapter")


def test_a_third_party_adapter_cannot_take_a_builtin_type() -> None:
    x, y = np.array([1.0, 0.0, -2.0]), np.array([0.0, 0.0, 4.0])
    before = scm.div(x, y)
    with pytest.warns(RuntimeWarning, match=r"'numpy.ndarray', which a built-in adapter"):
        register_backend(Claimer())
    try:
        after = scm.div(x, y)
        assert zpml_core.get_backend(zpml_core.namespace(x)).name == "numpy"
        assert _registry.fast_backend(np.memmap) is not zpml_core.get_backend_by_name("claimer")
    finally:
        unregister_backend("claimer")
    np.testing.assert_array_equal(after.value, before.value)
    np.testing.assert_array_equal(after.bottom, before.bottom)


def test_discovery_puts_builtin_adapters_first_and_skips_broken_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("_BY_NAMESPACE", "_BY_TYPE", "_FAST"):
        monkeypatch.setattr(_registry, name, {})
    group = _registry.ENTRY_POINT_GROUP
    eps = [EntryPoint("claimer", f"{__name__}:Claimer", group),
           EntryPoint("broken", "zpml_no_such_module_14:Nothing", group),
           EntryPoint("raising", f"{__name__}:BrokenDeclarations", group),
           EntryPoint("numpy", "zpml_backends.numpy_adapter:NumpyBackend", group)]
    found: dict[str, Backend] = {}
    with pytest.warns(RuntimeWarning) as record:
        _registry._register_found(_registry._load_entry_points(eps), found)
    assert sorted(found) == ["claimer", "numpy"]
    assert _registry._BY_NAMESPACE["array_api_compat.numpy"] is found["numpy"]
    assert "numpy.ndarray" not in _registry._BY_TYPE
    text = " ".join(str(w.message) for w in record)
    assert "could not load backend entry point 'broken'" in text
    assert "backend BrokenDeclarations is broken and was skipped" in text


class PairArray:
    """An array type of a third-party fast path (no namespace: only ``fast`` serves it)."""


class PairBackend(Backend):
    """Its ``fast`` returns what the test sets: the protocol asks for ``(value, bottom)``."""

    name = "pair-test"
    fast_types = ((__name__, "PairArray"),)
    result: Any = None

    def fast(self, op: str, *args: Any) -> Any:
        return self.result


def test_a_fast_result_becomes_an_scm_array_or_a_clear_error() -> None:
    b = PairBackend()
    register_backend(b)
    try:
        assert _registry.fast_backend(PairArray) is b
        x = PairArray()
        for pair in ((1.0, False), [1.0, False]):  # the protocol's tuple; a list too
            b.result = pair
            r = scm.div(x, x)
            assert type(r) is scm.SCMArray and (r.value, r.bottom) == (1.0, False)
            assert (r.value, r.bottom) == tuple(scm.sqrt(x))
        b.result = (1.0, False, True)  # not a pair: the constructor's error, no 3-field result
        with pytest.raises(TypeError):
            scm.mul(x, x)
    finally:
        unregister_backend("pair-test")
    assert _registry.fast_backend(PairArray) is None  # the per-type key cache is not stale


def test_clearing_the_fast_table_in_place_switches_the_fast_path_off() -> None:
    if os.environ.get("ZPML_FAST", "1").strip() == "0":
        pytest.skip("ZPML_FAST=0: no fast types are registered")
    x = np.array([1.0, 2.0])
    assert _registry.fast_backend(np.ndarray) is not None
    saved = dict(_registry._FAST)
    _registry._FAST.clear()
    try:
        assert _registry.fast_backend(np.ndarray) is None
    finally:
        _registry._FAST.update(saved)
    assert _registry.fast_backend(type(x)) is zpml_core.get_backend_by_name("numpy")


class BrokenDeclarations(Backend):
    """An adapter whose declarations raise."""

    @property
    def namespace_names(self) -> tuple[str, ...]:  # type: ignore[override]
        raise RuntimeError("broken declarations")


# ---- lazy versus traced ------------------------------------------------------------------


def test_lazy_is_not_traced() -> None:
    da = pytest.importorskip("dask.array")
    lazy = da.ones(4, chunks=2)
    adapter = Backend()
    assert adapter.is_lazy(lazy) and not adapter.is_tracing(lazy)
    assert GenericBackend().is_tracing(lazy)  # no adapter: cannot tell, treated as traced
    eager = np.ones(4)
    assert not adapter.is_lazy(eager) and not adapter.is_tracing(eager)
    # a lazy array is checked, not poisoned: the default require computes it
    bad = da.from_array(np.array([False, True]), chunks=1)
    with pytest.raises(ValueError, match="boom"):
        adapter.require(bad, "boom", (lazy,), xp=zpml_core.namespace(lazy))


# ---- the suite ---------------------------------------------------------------------------


def _flip_one_bottom() -> Backend:
    from zpml_backends.numpy_adapter import NumpyBackend

    class FlipOne(NumpyBackend):
        name = "numpy-flipone"

        def to_numpy(self, x: Any) -> Any:
            a = np.array(x, copy=True)
            if a.dtype == bool and a.size > 1:
                a.flat[1] = not a.flat[1]
            return a

    return FlipOne()


@pytest.fixture
def flip() -> Iterator[Backend]:
    b = _flip_one_bottom()
    register_backend(b)
    try:
        yield b
    finally:
        unregister_backend(b.name)


def test_an_xfail_naming_one_output_excuses_only_that_output(
        flip: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = "scm.log/f64/edge-1d"
    wrong = tmp_path / "wrong.txt"
    wrong.write_text(f"{case}:value  value only\n")
    right = tmp_path / "right.txt"
    right.write_text(f"{case}:bottom  a flipped mask, known\n")
    other = tmp_path / "other.txt"
    other.write_text(f"{case}  for another backend\n")
    assert main(["--backend", flip.name, "--only", case, "--xfails", str(wrong)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL [{flip.name}] {case}: output 'bottom': 1 of 54" in out
    # repeatable and per backend: NAME=FILE for another backend does not apply
    assert main(["--backend", flip.name, "--only", case, "--xfails", str(wrong),
                 "--xfails", f"strict={other}", "--xfails", f"{flip.name}={right}"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^XFAIL \[{flip.name}\] {re.escape(case)}: output 'bottom': 1 of 54 "
                     r".*\(xfail: bottom: a flipped mask, known\)$", out, re.M), out
    assert re.search(r"^0 passed, 0 failed$", out, re.M)


def test_judge_rules() -> None:
    e = runner.parse_xfails([])
    assert runner.judge("c", [], e) == (runner.PASSED, "")
    entries = [runner.Xfail("c*", "bottom", "r", "f")]
    p_bottom, p_value = "output 'bottom': differs", "output 'value': differs"
    assert runner.judge("c1", [p_bottom], entries)[0] == runner.XFAILED
    status, detail = runner.judge("c1", [p_bottom, p_value], entries)
    assert status == runner.FAILED and detail.startswith(p_value) and "1 more excused" in detail
    assert runner.judge("c1", [], entries)[0] == runner.XPASSED
    grad = [runner.Xfail("g", "x", "r", "f")]
    assert runner.judge("g", ["gradient d/dx differs"], grad)[0] == runner.XFAILED
    assert runner.judge("g", ["gradient d/dy differs"], grad)[0] == runner.FAILED


def test_traceback_shows_where_an_exception_came_from() -> None:
    from zpml_backends.strict_adapter import StrictBackend

    class Raising(StrictBackend):
        name = "strict-raising"

        def fuse(self, kernel: Callable[..., Any]) -> Callable[..., Any]:
            def boom(*a: Any, **k: Any) -> Any:
                raise RuntimeError("kernel exploded")

            return boom

    b = Raising()
    original = zpml_core.get_backend(b.namespace())
    runner.clear_caches()
    register_backend(b, replace=True)
    try:
        short = runner.run(b, only=["scm.neg/f64/edge-1d"], xfails=None).results[0]
        full = runner.run(b, only=["scm.neg/f64/edge-1d"], xfails=None,
                          traceback=True).results[0]
    finally:
        unregister_backend(b.name)
        register_backend(original, replace=True)
        runner.clear_caches()
    assert short.status == full.status == runner.FAILED
    assert "raised RuntimeError: kernel exploded" in short.message
    assert "Traceback" not in short.message
    assert "Traceback (most recent call last)" in full.message
    assert "test_conformance_adapters.py" in full.message and "in boom" in full.message


def test_gradient_references_are_builtin_adapters_only() -> None:
    class ThirdParty(Backend):
        name = "third-party-ad"
        namespace_names = ("third_party_ns",)
        supports_autodiff = True

        def namespace(self) -> Any:
            return npx

        def grad_fn(self, f: Callable[..., Any], *arrays: Any) -> Any:
            raise AssertionError("never asked")

    tp = ThirdParty()
    register_backend(tp)
    try:
        for name in ("torch", "jax"):
            b = zpml_core.registered_backends().get(name)
            if b is not None and b.available():
                peers = runner._peer_backends(b)
                assert tp not in peers
                assert all(_registry.is_builtin(p) for p in peers)
        assert runner._peer_backends(tp) == [
            b for n, b in sorted(zpml_core.registered_backends().items())
            if n in ("jax", "torch") and b.available()]
    finally:
        unregister_backend(tp.name)


def test_xfails_paths(flip: Backend, tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_text("")
    assert runner.xfails_paths(flip, None) == []
    assert runner.xfails_paths(flip, [str(f), f"other={f}"]) == [f]
    assert runner.xfails_paths(flip, [f"{flip.name}={f}"]) == [f]
    numpy = zpml_core.get_backend_by_name("numpy")
    shipped = runner.default_xfails_path(numpy)
    assert shipped is not None and shipped.name == "numpy-xfails.txt"
    assert runner.xfails_paths(numpy, [str(f)]) == [shipped, f]

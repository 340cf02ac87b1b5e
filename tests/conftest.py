"""Shared fixtures: every test that takes ``xp`` (or ``backend``) runs once per backend.

Backends come from ``ZPML_TEST_BACKENDS`` (comma separated: numpy, torch, jax, strict);
by default every installed one of the four built-ins. A backend that was asked for but
cannot be imported FAILS the run instead of being skipped. Tests marked ``autodiff``
skip forward-only backends (numpy, strict) — by that marker only.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np
import pytest

BUILTIN = ("numpy", "torch", "jax", "strict")
_MODULES = {"numpy": "numpy", "torch": "torch", "jax": "jax", "strict": "array_api_strict"}


def _importable(name: str) -> bool:
    try:
        importlib.import_module(_MODULES.get(name, name))
    except ImportError:
        return False
    return True


def requested_backends() -> tuple[list[str], bool]:
    env = os.environ.get("ZPML_TEST_BACKENDS", "").strip()
    if env:
        return [b.strip() for b in env.split(",") if b.strip()], True
    return [b for b in BUILTIN if _importable(b)], False


# Hypothesis profiles (dev / ci / nightly) must exist before hypothesis' pytest plugin
# reads --hypothesis-profile from the repository root. One is loaded now, before any test
# module is imported: a module-level ``settings(...)`` inherits the profile active at its
# creation, and the dev and ci profiles are derandomized (no test may pass on one run and
# fail on the next). An explicit --hypothesis-profile is loaded later by the plugin.
try:
    from zpml_core.testing import load_profile

    load_profile()
except ImportError:  # hypothesis not installed: only the property tests need it
    pass

# JAX must run in float64 for the float64 tests (semantics §9 #2); set before any jax array.
if _importable("jax"):
    import jax

    jax.config.update("jax_enable_x64", True)


def pytest_configure(config: pytest.Config) -> None:
    names, explicit = requested_backends()
    if explicit:
        from zpml_core import registered_backends

        known = registered_backends()
        missing = [n for n in names if n not in known]
        broken = [n for n in names if n in known and not known[n].available()]
        if missing or broken:
            raise pytest.UsageError(
                f"ZPML_TEST_BACKENDS asks for {names}, but "
                + (f"{missing} are not registered adapters " if missing else "")
                + (f"{broken} cannot be imported" if broken else "")
            )


def pytest_report_header(config: pytest.Config) -> str:
    names, explicit = requested_backends()
    return f"zpml backends: {', '.join(names)} ({'ZPML_TEST_BACKENDS' if explicit else 'installed'})"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_name" in metafunc.fixturenames:
        names, _ = requested_backends()
        metafunc.parametrize("backend_name", names, scope="session")


@pytest.fixture(scope="session")
def backend(backend_name: str) -> Any:
    from zpml_core import get_backend_by_name

    b = get_backend_by_name(backend_name)
    b.namespace()  # an unavailable requested backend fails here, loudly
    return b


@pytest.fixture(autouse=True)
def _autodiff_marker(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("autodiff") is None:
        return
    if "backend_name" not in request.fixturenames:
        return
    b = request.getfixturevalue("backend")
    if not b.supports_autodiff:
        pytest.skip(f"{b.name} has no autodiff (test marked 'autodiff')")


@pytest.fixture
def xp(backend: Any) -> Any:
    return backend.namespace()


class Arrays:
    """Build backend arrays from Python/numpy data and read them back exactly."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.xp = backend.namespace()

    def __call__(self, data: Any, dtype: str = "float64", device: Any = None) -> Any:
        a = np.asarray(data, dtype=dtype)
        return self.backend.asarray(a, device=device)

    def np(self, x: Any) -> np.ndarray:
        return np.asarray(self.backend.to_numpy(x))


@pytest.fixture
def arr(backend: Any) -> Arrays:
    return Arrays(backend)


def assert_same_bits(actual: np.ndarray, expected: np.ndarray) -> None:
    """Exact equality including signed zeros and NaN positions."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    both_nan = np.isnan(actual) & np.isnan(expected)
    eq = (actual == expected) | both_nan
    assert eq.all(), f"values differ at {np.nonzero(~eq)}: {actual[~eq]} vs {expected[~eq]}"
    zero = (actual == 0) & (expected == 0)
    assert (np.signbit(actual[zero]) == np.signbit(expected[zero])).all(), "signed zeros differ"


@pytest.fixture(scope="module")
def no_fast_path() -> Any:
    """Switch off the public ops' fused fast path (``zpml_core._fast``: numba kernels
    of ``zpml-core[fast]``) for a module that tests the array-API path behind it
    (numpy blocking, inductor fusion); ``tests/test_fused_kernels.py`` holds the two
    paths bit-identical."""
    from zpml_core import _registry

    saved = dict(_registry._FAST)
    _registry._FAST.clear()
    yield
    _registry._FAST.update(saved)

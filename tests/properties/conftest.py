"""Hypothesis profiles for the property suite.

Profiles (see ``zpml_core.testing.PROFILES``): ``dev`` (derandomized, 20 examples, the
local default), ``ci`` (derandomized, 200 examples per property) and ``nightly`` (10,000
random examples: the exploring run).
Select one with ``--hypothesis-profile NAME`` or ``HYPOTHESIS_PROFILE=NAME``; without
either, ``ci`` is used when ``$CI`` is set, else ``dev``.

Note: ``--hypothesis-profile`` is read by hypothesis' own pytest plugin before this
conftest is imported when pytest is started from the repository root, so
``pytest --hypothesis-profile nightly`` needs the profiles registered in
``tests/conftest.py``; ``pytest tests/properties --hypothesis-profile nightly`` and
``HYPOTHESIS_PROFILE=nightly pytest`` work regardless.
"""

from __future__ import annotations

import os

import pytest

from zpml_core.testing import load_profile, register_profiles

register_profiles()


def _share_jax_compilations() -> None:
    """JAX compiles every kernel once per signature; a persistent compilation cache lets
    the xdist workers (and later runs) reuse each other's executables. Opt out with
    ZPML_JAX_CACHE=0; ZPML_JAX_CACHE=<dir> chooses the directory."""
    where = os.environ.get("ZPML_JAX_CACHE", "1").strip()
    if where == "0":
        return
    try:
        import jax
    except ImportError:
        return
    if where == "1":
        import tempfile

        where = os.path.join(tempfile.gettempdir(), f"zpml_core_jax_cache_{os.getuid()}")
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


_share_jax_compilations()


def pytest_configure(config: pytest.Config) -> None:
    # An explicit --hypothesis-profile wins. Hypothesis' plugin loaded it before this
    # conftest registered ours (and hypothesis has a built-in "ci" profile of its own),
    # so load it again to pick up our definition.
    load_profile(config.getoption("hypothesis_profile", default=None))


BUILTIN = ("numpy", "torch", "jax", "strict")


def _requested() -> list[str]:
    env = os.environ.get("ZPML_TEST_BACKENDS", "").strip()
    if env:
        return [b.strip() for b in env.split(",") if b.strip()]
    from zpml_core import registered_backends

    known = registered_backends()
    return [b for b in BUILTIN if b in known and known[b].available()]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # differential tests compare every requested backend except the numpy reference
    if "diff_backend_name" in metafunc.fixturenames:
        metafunc.parametrize(
            "diff_backend_name", [b for b in _requested() if b != "numpy"], scope="session"
        )


@pytest.fixture(scope="session")
def diff_backend(diff_backend_name: str):
    from zpml_core import get_backend_by_name

    b = get_backend_by_name(diff_backend_name)
    b.namespace()
    return b

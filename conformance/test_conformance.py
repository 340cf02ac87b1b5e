"""The conformance suite as pytest tests (one test per backend × case).

    pytest --pyargs zpml_conformance --zpml-backend NAME

Collected only when this package is passed to pytest. ``--zpml-*`` options come from
:mod:`zpml_conformance.pytest_plugin` (``pytest11`` entry point, or ``-p
zpml_conformance.pytest_plugin``); without the plugin the environment variables
``ZPML_CONFORMANCE_BACKEND`` / ``ZPML_CONFORMANCE_DTYPE`` / ``ZPML_CONFORMANCE_XFAILS``
are read instead.
"""

from __future__ import annotations

import fnmatch
import os
import warnings
from typing import Any

import pytest

_ENV = {"zpml_backend": "ZPML_CONFORMANCE_BACKEND", "zpml_dtype": "ZPML_CONFORMANCE_DTYPE",
        "zpml_xfails": "ZPML_CONFORMANCE_XFAILS"}


def _option(config: pytest.Config, name: str) -> Any:
    try:
        value = config.getoption(name)
    except ValueError:  # the plugin is not loaded
        value = None
    if value in (None, [], "all") and os.environ.get(_ENV[name]):
        value = os.environ[_ENV[name]]
        if name == "zpml_backend":
            value = [value]
    return value


def _backend_names(config: pytest.Config) -> list[str]:
    from zpml_core import registered_backends

    known = registered_backends()
    raw = _option(config, "zpml_backend")
    if not raw:
        return [n for n in sorted(known) if known[n].available()]
    names = [n.strip() for item in raw for n in str(item).split(",") if n.strip()]
    if "all" in names:
        return [n for n in sorted(known) if known[n].available()]
    bad = [n for n in names if n not in known or not known[n].available()]
    if bad:
        raise pytest.UsageError(
            f"--zpml-backend {bad}: not registered or not importable "
            f"(registered: {', '.join(sorted(known))})"
        )
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "zpml_case" not in metafunc.fixturenames:
        return
    from zpml_conformance import runner

    from zpml_core import get_backend_by_name

    dtype = _option(metafunc.config, "zpml_dtype") or "all"
    params = []
    for name in _backend_names(metafunc.config):
        b = get_backend_by_name(name)
        for case in runner.select_cases(b, dtype=dtype):
            params.append(pytest.param(name, case, id=f"{name}:{case.id}"))
        path = _option(metafunc.config, "zpml_xfails") or runner.default_xfails_path(name)
        pool = runner.select_cases(b)
        for pattern, _ in runner.load_xfails(path) if path else []:
            if not any(c.id == pattern or fnmatch.fnmatchcase(c.id, pattern) for c in pool):
                warnings.warn(f"{name}: xfails entry {pattern!r} ({path}) matches no case",
                              UserWarning, stacklevel=1)
    metafunc.parametrize(("zpml_backend_name", "zpml_case"), params)


def _xfail_reason(config: pytest.Config, backend: str, case_id: str) -> str | None:
    from zpml_conformance import runner

    path = _option(config, "zpml_xfails") or runner.default_xfails_path(backend)
    for pattern, reason in runner.load_xfails(path) if path else []:
        if case_id == pattern or fnmatch.fnmatchcase(case_id, pattern):
            return reason or "listed in the xfails file"
    return None


def test_conformance(request: pytest.FixtureRequest, zpml_backend_name: str,
                     zpml_case: Any) -> None:
    from zpml_conformance import runner

    problems = runner.check_case(zpml_case, zpml_backend_name)
    reason = _xfail_reason(request.config, zpml_backend_name, zpml_case.id)
    if problems and reason is not None:
        pytest.xfail(reason)
    assert not problems, f"[{zpml_backend_name}] {zpml_case.id}: " + "; ".join(problems)

"""The conformance suite as pytest tests (one test per backend × case).

    pytest --pyargs zpml_conformance --zpml-backend NAME

Collected only when this package is passed to pytest. ``--zpml-*`` options come from
:mod:`zpml_conformance.pytest_plugin` (``pytest11`` entry point, or ``-p
zpml_conformance.pytest_plugin``); without the plugin the environment variables
``ZPML_CONFORMANCE_BACKEND`` / ``ZPML_CONFORMANCE_DTYPE`` / ``ZPML_CONFORMANCE_XFAILS``
are read instead.
"""

from __future__ import annotations

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


def _xfails(config: pytest.Config, backend: Any) -> list[Any]:
    from zpml_conformance import runner

    raw = _option(config, "zpml_xfails")
    given = [raw] if isinstance(raw, str) else list(raw or [])
    return runner.parse_xfails(runner.xfails_paths(backend, given or True))


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
        pool = runner.select_cases(b)
        for e in _xfails(metafunc.config, b):
            if not any(e.matches(c.id) for c in pool):
                warnings.warn(f"{name}: xfails entry {e.pattern!r} ({e.source}) matches "
                              "no case", UserWarning, stacklevel=1)
    metafunc.parametrize(("zpml_backend_name", "zpml_case"), params)


def test_conformance(request: pytest.FixtureRequest, zpml_backend_name: str,
                     zpml_case: Any) -> None:
    from zpml_conformance import runner

    from zpml_core import get_backend_by_name

    b = get_backend_by_name(zpml_backend_name)
    problems = runner.check_case(zpml_case, b)
    status, detail = runner.judge(zpml_case.id, problems, _xfails(request.config, b))
    if status == runner.XFAILED:
        pytest.xfail(detail)
    assert status != runner.FAILED, f"[{zpml_backend_name}] {zpml_case.id}: {detail}"

"""Reproductions of :mod:`zpml_core.testing`: :func:`reproduction` renders a call as a
self-contained snippet (arrays written out exactly); :func:`note_reproduction` notes it
for hypothesis' final failing example.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from zpml_core import _xp
from zpml_core.testing._assertions import _fmt, to_numpy
from zpml_core.testing._dtypes import Array

_IMPORTS = {
    "array_api_compat.numpy": "import array_api_compat.numpy as xp",
    "numpy": "import array_api_compat.numpy as xp",
    "array_api_compat.torch": "import array_api_compat.torch as xp",
    "jax.numpy": 'import jax\njax.config.update("jax_enable_x64", True)\nimport jax.numpy as xp',
    "array_api_strict": "import array_api_strict as xp",
}


def _is_arr(a: Any) -> bool:
    return hasattr(a, "shape") and hasattr(a, "dtype") and not isinstance(a, type)


def _literal(v: Any, imports: dict[str, None]) -> str:
    """Python source for an argument: arrays written out, named tuples (``SCMArray``)
    rebuilt from their fields, other objects from their ``repr`` (class imported)."""
    if _is_arr(v):
        return _array_code(v)
    if isinstance(v, float):
        return _fmt(v)
    if isinstance(v, tuple) and hasattr(v, "_fields"):
        t = type(v)
        imports[f"from {t.__module__} import {t.__qualname__}"] = None
        return f"{t.__qualname__}({', '.join(_literal(u, imports) for u in v)})"
    if isinstance(v, (list, tuple)):
        inner = ", ".join(_literal(u, imports) for u in v)
        return f"[{inner}]" if isinstance(v, list) else f"({inner}{',' if len(v) == 1 else ''})"
    if v is None or isinstance(v, (bool, int, complex, str)):
        return repr(v)
    t = type(v)
    if t.__module__ != "builtins":
        imports[f"from {t.__module__} import {t.__qualname__.split('.')[0]}"] = None
    return repr(v)


def _array_code(x: Array) -> str:
    a = to_numpy(x)
    dt = "bool" if a.dtype == np.bool_ else a.dtype.name
    return f"xp.asarray({_literal(a.tolist(), {})}, dtype=xp.{dt})"


def _arrays_in(v: Any) -> list[Any]:
    if _is_arr(v):
        return [v]
    if isinstance(v, (list, tuple)):
        return [a for u in v for a in _arrays_in(u)]
    return []


def note_reproduction(func: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> None:
    """``hypothesis.note(reproduction(func, *args, **kwargs))``, rendered only when
    hypothesis will report it (the final, minimal failing example, or verbose runs)."""
    from hypothesis import note

    try:
        from hypothesis.control import should_note

        if not should_note():
            return
    except Exception:  # outside a test, or a hypothesis without should_note
        pass
    note(reproduction(func, *args, **kwargs))


def reproduction(func: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> str:
    """Render ``func(*args, **kwargs)`` as a self-contained snippet a user can paste.

    Arrays are written out exactly (``xp.asarray([...], dtype=xp.float32)``, with
    ``nan``/``inf`` and signed zeros preserved) for the namespace they belong to; other
    arguments by their ``repr`` (their class is imported). ``func`` is a function
    (imported by its module) or a dotted path such as ``"zpml_core.scm.div"``. Use it with
    ``hypothesis.note`` (or :func:`note_reproduction`) inside a property.
    """
    path = func if isinstance(func, str) else f"{func.__module__}.{func.__qualname__}"
    module = path.rsplit(".", 1)[0] if "." in path else ""
    arrays = _arrays_in([*args, *kwargs.values()])
    ns = _xp.namespace(*arrays).__name__ if arrays else "array_api_compat.numpy"
    imports: dict[str, None] = {_IMPORTS.get(ns, f"import {ns} as xp"): None}
    if module:
        imports[f"import {module}"] = None
    body = ['nan, inf = float("nan"), float("inf")']
    names: list[str] = []
    for i, a in enumerate(args):
        if _arrays_in(a):
            body.append(f"a{i} = {_literal(a, imports)}")
            names.append(f"a{i}")
        else:
            names.append(_literal(a, imports))
    for k, v in kwargs.items():
        if _arrays_in(v):
            body.append(f"{k} = {_literal(v, imports)}")
            names.append(f"{k}={k}")
        else:
            names.append(f"{k}={_literal(v, imports)}")
    body.append(f"result = {path}({', '.join(names)})")
    body.append("print(result)")
    return "\n".join([*imports, *body])

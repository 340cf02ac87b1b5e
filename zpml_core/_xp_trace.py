"""Symbolic-tracing probes: is a tracer with guards (Dynamo) recording a graph right now?

Every cache in zpml_core is bypassed (neither read nor written) while :func:`tracing` is
True; adapters register their probe with :func:`add_trace_probe`. Re-exported by
:mod:`zpml_core._xp`.
"""

from __future__ import annotations

from collections.abc import Callable

_TRACE_PROBES: list[Callable[[], bool]] = []


def add_trace_probe(probe: Callable[[], bool]) -> None:
    """Register an adapter's "is a symbolic trace being recorded right now?" check.

    Idempotent. Adapters whose tracer *guards* on the Python state it reads register one
    (torch: Dynamo); JAX traces by running Python normally and needs none.
    """
    if probe not in _TRACE_PROBES:
        _TRACE_PROBES.append(probe)


def tracing() -> bool:
    """True while a tracer with guards (Dynamo under ``torch.compile``) records a graph.

    Rule for every cache in zpml_core: while this is True, neither read nor write it,
    compute the value instead. Under Dynamo a cache miss installs a guard ("key absent")
    that the first eager fill invalidates (a recompile), and a write is a side effect
    Dynamo must replay; a cold first call inside ``torch.compile`` would depend on both.
    """
    return any(probe() for probe in _TRACE_PROBES)

"""Hypothesis profiles of :mod:`zpml_core.testing`: :data:`PROFILES` (``dev``, ``ci``,
``nightly``), :func:`register_profiles` and :func:`load_profile`.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings

#: The hypothesis profiles :func:`register_profiles` registers (settings keyword args).
PROFILES: dict[str, dict[str, Any]] = {
    # fast local feedback, reproducible: the same examples on every run (a plain
    # ``pytest`` must never pass on one run and fail on the next); explore with nightly
    # (no wall-clock checks: a loaded machine must not fail a run)
    "dev": {"max_examples": 20, "derandomize": True, "database": None, "deadline": None,
            "print_blob": True, "suppress_health_check": [HealthCheck.too_slow]},
    # CI: reproducible, >= 200 examples per property
    "ci": {
        "max_examples": 200,
        "derandomize": True,
        "database": None,
        "deadline": None,
        "print_blob": True,
        "suppress_health_check": [HealthCheck.too_slow],
    },
    # nightly: >= 10,000 random examples per property
    "nightly": {
        "max_examples": 10_000,
        "deadline": None,
        "print_blob": True,
        "suppress_health_check": [HealthCheck.too_slow],
    },
}


def register_profiles() -> None:
    """Register the ``dev``, ``ci`` and ``nightly`` hypothesis profiles (idempotent).

    Each derives from hypothesis' own ``default`` profile, not from the profile loaded
    at the time (which would leak, e.g., dev's ``derandomize`` into nightly)."""
    base = settings.get_profile("default")
    for name, kw in PROFILES.items():
        settings.register_profile(name, base, **kw)


def load_profile(name: str | None = None) -> str:
    """Register the profiles and load one: ``name``, else ``$HYPOTHESIS_PROFILE``, else
    ``ci`` when ``$CI`` is set to a true value, else ``dev``. Returns the loaded name."""
    register_profiles()
    if name is None:
        name = os.environ.get("HYPOTHESIS_PROFILE", "").strip() or None
    if name is None:
        ci = os.environ.get("CI", "").strip().lower()
        name = "ci" if ci not in ("", "0", "false", "no") else "dev"
    settings.load_profile(name)
    return name

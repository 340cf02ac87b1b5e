"""List zeroproofml 0.6.1's public names (``__all__`` of each import root it aliases).

Run with an interpreter that has ``zeroproofml==0.6.1`` (not the project's environment)::

    /path/to/zeroproofml-venv/bin/python tests/data/make_zeroproofml_public_names.py

Writes ``zeroproofml-0.6.1-public-names.json``: ``{module: [names]}``, plus its top-level
product modules under ``"modules"``. ``tests/test_compat_names.py`` checks that every name
is shipped under ``zpml_core.<module>`` or named in DEVIATIONS.md.
"""

from __future__ import annotations

import importlib
import json
import pathlib
import pkgutil

import zeroproofml

ROOTS = ("scm", "autodiff", "layers", "losses", "training", "inference", "metrics", "utils")


def main() -> None:
    out: dict[str, list[str]] = {}
    for root in ROOTS:
        module = importlib.import_module(f"zeroproofml.{root}")
        out[root] = sorted(module.__all__)
    out["modules"] = sorted(
        m.name for m in pkgutil.iter_modules(zeroproofml.__path__) if not m.name.startswith("_")
    )
    out["version"] = [zeroproofml.__version__]
    path = pathlib.Path(__file__).resolve().parent / "zeroproofml-0.6.1-public-names.json"
    path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

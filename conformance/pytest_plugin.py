"""pytest plugin of the conformance suite: ``pytest --pyargs zpml_conformance``.

Options (registered through the ``pytest11`` entry point ``zpml_conformance``, or with
``-p zpml_conformance.pytest_plugin``):

    --zpml-backend NAME   backend(s) to check (repeatable or comma separated; default:
                          every registered backend that imports; env ZPML_CONFORMANCE_BACKEND)
    --zpml-dtype DTYPE    float64, float32 or all (default)
    --zpml-xfails FILE    xfails file, added to the one the backend ships (repeatable;
                          NAME=FILE: backend NAME only)

The plugin only adds options; the tests live in ``zpml_conformance/test_conformance.py``
and are collected only when the package is given to pytest. Importing the plugin imports
no array library.
"""

from __future__ import annotations

from typing import Any


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("zpml_conformance", "zpml_core conformance suite")
    group.addoption("--zpml-backend", action="append", default=None, metavar="NAME",
                    help="zpml_core backend to run the conformance suite against "
                    "(repeatable, comma separated; default: all registered)")
    group.addoption("--zpml-dtype", default="all", choices=("float64", "float32", "all"),
                    help="run only cases of this dtype")
    group.addoption("--zpml-xfails", action="append", default=None, metavar="[NAME=]FILE",
                    help="xfails file, in addition to the one the backend ships: one "
                    "'<case id or glob>[:<output>] <reason>' per line (repeatable; "
                    "NAME=FILE: backend NAME only)")

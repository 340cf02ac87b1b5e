"""The ``zpml`` console command.

``zpml demo``         train the RationalHead demo on every installed autodiff backend
``zpml bench``        the benchmark tasks over several seeds on torch and JAX (zpml_tasks)
``zpml conformance``  run the conformance suite (same flags as ``python -m zpml_conformance``)
``zpml backends``     list registered backend adapters and whether they import
``zpml --version``    print the installed zpml-core version
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """usage: zpml [--version] {demo,bench,conformance,backends} [options]

  demo          train the guide's RationalHead on poles (1/(x-a), 2-link IK) per backend
  bench         benchmark tasks (pole, reference IK, true-pole IK) over seeds, torch and JAX
  conformance   check every installed backend against the SCM contract
  backends      list registered backend adapters

  zpml COMMAND --help   options of one command
"""


def _backends() -> int:
    from zpml_core import registered_backends

    for name, b in sorted(registered_backends().items()):
        status = "available" if b.available() else "not installed"
        grad = "autodiff" if b.supports_autodiff else "forward-only"
        print(f"{name:10s} {status:14s} {grad:12s} {type(b).__module__}.{type(b).__qualname__}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    cmd, rest = args[0], args[1:]
    if cmd in ("-V", "--version"):
        from zpml_core import __version__

        print(f"zpml-core {__version__}")
        return 0
    if cmd == "conformance":
        from zpml_conformance.__main__ import main as conformance_main

        return int(conformance_main(rest, prog="zpml conformance"))
    if cmd == "demo":
        from zpml_tasks.demo import main as demo_main

        return int(demo_main(rest))
    if cmd == "bench":
        from zpml_tasks.bench import main as bench_main

        return int(bench_main(rest))
    if cmd == "backends":
        return _backends()
    print(f"zpml: unknown command {cmd!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

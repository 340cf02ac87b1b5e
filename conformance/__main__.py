"""Command line: ``python -m zpml_conformance`` (also ``zpml conformance``).

    python -m zpml_conformance                       # every registered, importable backend
    python -m zpml_conformance --backend jax --backend torch
    python -m zpml_conformance --list --backend numpy
    python -m zpml_conformance --backend strict --only 'scm.div/*' --dtype float32
    python -m zpml_conformance --backend mylib --xfails mylib=extra-xfails.txt --json out.json
    python -m zpml_conformance --backend mylib --only scm.exp --traceback

Prints failures (and xfails, with their details), a table (backend × group: passed / failed / xfailed) and a final line
``N passed, M failed``; the exit code is 1 on any failure (2 on usage errors).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from zpml_conformance.cases import DTYPES, GROUPS

ALL = "all"


def _parser(prog: str = "python -m zpml_conformance") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Check zpml_core backends against the numpy float64 reference.",
    )
    p.add_argument("--backend", action="append", metavar="NAME",
                   help="registered backend name (repeatable, or comma separated); "
                   "default: all registered backends that import")
    p.add_argument("--list", action="store_true", help="list the case ids and exit")
    p.add_argument("--only", action="append", metavar="PATTERN",
                   help="run only case ids matching PATTERN (glob with * ? [...], else "
                   "substring; repeatable)")
    p.add_argument("--dtype", choices=(*DTYPES, ALL), default=ALL)
    p.add_argument("--xfails", action="append", metavar="[NAME=]FILE",
                   help="xfails file (one '<case id or glob>[:<output>] <reason>' per "
                   "line), used in addition to the file the backend ships; repeatable; "
                   "NAME=FILE applies to backend NAME only")
    p.add_argument("--traceback", action="store_true",
                   help="show the traceback of every exception a case raised")
    p.add_argument("--json", metavar="PATH", help="write all results as JSON to PATH")
    p.add_argument("--device", default="auto", metavar="NAME",
                   help="device for the inputs: a device name of the backend (e.g. "
                   "device2 for array-api-strict, cuda:0 for torch), 'default', or 'auto' "
                   "(default: the adapter's conformance_device; array-api-strict: device1)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print failure details")
    return p


def _names(args: argparse.Namespace) -> tuple[list[str], bool]:
    if not args.backend:
        return [], False
    names = [n.strip() for item in args.backend for n in item.split(",") if n.strip()]
    if ALL in names:
        return [], False
    return names, True


def _table(reports: Sequence[Any]) -> str:
    groups = [g for g in GROUPS if any(r.group == g for rep in reports for r in rep.results)]
    head = f"{'backend':<12}" + "".join(f"{g:>22}" for g in groups) + f"{'time':>9}"
    sub = " " * 12 + "".join(f"{'pass/fail/xfail':>22}" for _ in groups)
    lines = [head, sub, "-" * len(head)]
    for rep in reports:
        row = f"{rep.backend:<12}"
        for g in groups:
            p = rep.count("passed", g) + rep.count("xpassed", g)
            f = rep.count("failed", g)
            x = rep.count("xfailed", g)
            row += f"{f'{p}/{f}/{x}':>22}" if (p + f + x) else f"{'-':>22}"
        row += f"{rep.seconds:>8.1f}s"
        lines.append(row)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m zpml_conformance") -> int:
    """Run the suite; ``prog`` names the command in usage and help
    (``zpml conformance`` when called from the ``zpml`` command)."""
    args = _parser(prog).parse_args(list(sys.argv[1:] if argv is None else argv))
    from zpml_conformance import runner

    from zpml_core import registered_backends

    known = registered_backends()
    names, explicit = _names(args)
    if explicit:
        unknown = [n for n in names if n not in known]
        if unknown:
            print(f"unknown backend(s) {unknown}; registered: {', '.join(sorted(known))}",
                  file=sys.stderr)
            return 2
        unavailable = [n for n in names if not known[n].available()]
        if unavailable:
            print(f"backend(s) {unavailable} are registered but cannot be imported",
                  file=sys.stderr)
            return 2
    else:
        names = [n for n in sorted(known, key=_order) if known[n].available()]
        skipped = [n for n in sorted(known) if not known[n].available()]
        if skipped:
            print(f"(not installed, skipped: {', '.join(skipped)})")
    dtype = None if args.dtype == ALL else args.dtype

    if args.list:
        backend = known[names[0]] if explicit and len(names) == 1 else None
        for c in runner.select_cases(backend, dtype=dtype, only=args.only):
            print(f"{c.id:<70} {c.group}")
        return 0

    reports = []
    t0 = time.perf_counter()
    for name in names:
        try:
            rep = runner.run(known[name], dtype=dtype, only=args.only,
                             xfails=args.xfails or True, device=args.device,
                             traceback=args.traceback)
        except ValueError as exc:  # unknown device
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        reports.append(rep)
        if not args.quiet:
            for r in rep.results:
                if r.status in _SHOWN:
                    print(_SHOWN[r.status] + r.message)
        for w in rep.warnings:
            print(f"warning: {w}")
    total = time.perf_counter() - t0
    print()
    print(_table(reports))
    passed = sum(r.count(runner.PASSED) + r.count(runner.XPASSED) for r in reports)
    failed = sum(r.count(runner.FAILED) for r in reports)
    xfailed = sum(r.count(runner.XFAILED) for r in reports)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"passed": passed, "failed": failed, "xfailed": xfailed,
                       "seconds": round(total, 3),
                       "backends": [r.as_dict() for r in reports]}, fh, indent=1)
    print(f"({xfailed} xfailed, {total:.1f}s)" if xfailed else f"({total:.1f}s)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not reports else 0


_ORDER = ("numpy", "strict", "torch", "jax", "dask")
_SHOWN = {"failed": "FAIL ", "xpassed": "XPASS ", "xfailed": "XFAIL "}


def _order(name: str) -> tuple[int, str]:
    return (_ORDER.index(name) if name in _ORDER else len(_ORDER), name)


if __name__ == "__main__":
    raise SystemExit(main())

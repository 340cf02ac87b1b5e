"""Case selection and xfail handling of the conformance runner: which cases run
(:func:`select_cases`), the shipped and user xfails files, their entries
(:class:`Xfail`) and the verdict of a case from its problems (:func:`judge`).

Re-exported by :mod:`zpml_conformance.runner`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from zpml_conformance.cases import Case, all_cases

from zpml_core import Backend, registered_backends
from zpml_core._registry import is_builtin

PASSED, FAILED, XFAILED, XPASSED = "passed", "failed", "xfailed", "xpassed"


# ---------------------------------------------------------------------------------------
# selection and xfails


def _matches(case_id: str, pattern: str) -> bool:
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(case_id, pattern)
    return pattern in case_id


def select_cases(
    backend: Backend | None = None,
    *,
    cases: Iterable[Case] | None = None,
    dtype: str | None = None,
    only: Sequence[str] | None = None,
) -> list[Case]:
    """Cases that apply to ``backend`` (gradient cases need autodiff), filtered by dtype
    and by ``only`` patterns (glob if it contains ``*?[``, else substring)."""
    out = []
    for c in all_cases() if cases is None else cases:
        if c.grad is not None and backend is not None and not backend.supports_autodiff:
            continue
        if dtype not in (None, "all") and c.dtype != dtype:
            continue
        if only and not any(_matches(c.id, p) for p in only):
            continue
        out.append(c)
    return out


def default_xfails_path(backend: str | Backend) -> Path | None:
    """The xfails file shipped for ``backend`` (an adapter or a registered name), if any:

    1. the adapter's ``conformance_xfails`` attribute (a path, an
       ``importlib.resources`` file, or a zero-argument callable returning one);
    2. ``<name>-xfails.txt`` next to the adapter's module, in its package (shipped as
       package data and so found through the entry point);
    3. ``zpml_conformance/<name>-xfails.txt`` (the built-in backends)."""
    b: Backend | None
    if isinstance(backend, str):
        name = backend
        b = registered_backends().get(name)
    else:
        b, name = backend, backend.name
    if b is not None:
        hook = getattr(b, "conformance_xfails", None)
        if callable(hook):
            hook = hook()
        if hook is not None:
            return Path(str(hook))
        module = type(b).__module__
        if not is_builtin(b) and module not in ("__main__", "builtins"):
            try:
                pkg = module if _is_package(module) else module.rpartition(".")[0] or module
                path = Path(str(resources.files(pkg).joinpath(f"{name}-xfails.txt")))
                if path.is_file():
                    return path
            except (ModuleNotFoundError, TypeError, ValueError):
                pass
    try:
        p = resources.files("zpml_conformance").joinpath(f"{name}-xfails.txt")
    except (ModuleNotFoundError, TypeError):  # pragma: no cover
        return None
    path = Path(str(p))
    return path if path.is_file() else None


def _is_package(module: str) -> bool:
    import sys

    m = sys.modules.get(module)
    return m is not None and hasattr(m, "__path__")


def xfails_paths(backend: Backend, xfails: Any = True) -> list[Path]:
    """The xfails files that apply to ``backend``: the shipped one
    (:func:`default_xfails_path`) unless ``xfails`` is None/False, plus the files given
    as ``xfails`` — a path or a sequence of paths; an item ``"NAME=PATH"`` applies
    only to the backend called NAME."""
    if xfails is None or xfails is False:
        return []
    out: list[Path] = []
    shipped = default_xfails_path(backend)
    if shipped is not None:
        out.append(shipped)
    if xfails is True:
        return out
    items = [xfails] if isinstance(xfails, (str, Path)) else list(xfails)
    for item in items:
        text = str(item)
        name, sep, rest = text.partition("=")
        if sep and not isinstance(item, Path) and name and "/" not in name \
                and not Path(text).exists():
            if name != backend.name:
                continue
            text = rest
        path = Path(text)
        if path not in out:
            out.append(path)
    return out


def load_xfails(path: str | Path | None) -> list[tuple[str, str]]:
    """Parse an xfails file: one ``<case id or glob>[:<output>] <reason>`` per line,
    ``#`` comments. With ``:<output>`` (an output name such as ``bottom``, or for a
    gradient case the input ``x``; globs allowed) only that output's problems are
    excused: a difference in another output still fails the case."""
    if path is None:
        return []
    entries = []
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        entries.append((parts[0], parts[1].strip() if len(parts) > 1 else ""))
    return entries


@dataclass(frozen=True)
class Xfail:
    """One xfails entry: the case pattern, the output it excuses (None: all)."""

    pattern: str
    output: str | None
    reason: str
    source: str

    def matches(self, case_id: str) -> bool:
        return case_id == self.pattern or fnmatch.fnmatchcase(case_id, self.pattern)

    def excuses(self, problem: str) -> bool:
        if self.output is None:
            return True
        out = problem_output(problem)
        return out is not None and (out == self.output
                                    or fnmatch.fnmatchcase(out, self.output))


def parse_xfails(paths: Sequence[Path]) -> list[Xfail]:
    entries = []
    for path in paths:
        for pat, reason in load_xfails(path):
            case, sep, output = pat.partition(":")
            entries.append(Xfail(case, output if sep and output else None, reason, str(path)))
    return entries


_PROBLEM_OUTPUT = re.compile(r"^(?:output '([^']+)'|gradient d/d(\w+)\b)")


def problem_output(problem: str) -> str | None:
    """The output a problem message is about (``output 'bottom' ...`` → ``bottom``,
    ``gradient d/dx ...`` → ``x``); None for problems about the whole case."""
    m = _PROBLEM_OUTPUT.match(problem)
    if m is None:
        return None
    return m.group(1) or m.group(2)



def judge(case_id: str, problems: Sequence[str], entries: Sequence[Xfail]) -> tuple[str, str]:
    """``(status, detail)`` of a case from its problems and the xfails entries: a case
    is XFAILED if every problem is excused (a whole-case entry, or entries naming the
    outputs the problems are about), FAILED if one is not, XPASSED if it passes but an
    entry names it."""
    mine = [e for e in entries if e.matches(case_id)]
    if not problems:
        if mine:
            return XPASSED, "passed but is listed as xfail (" + \
                "; ".join(_entry_text(e) for e in mine) + ")"
        return PASSED, ""
    left = [p for p in problems if not any(e.excuses(p) for e in mine)]
    if left:
        excused = len(problems) - len(left)
        note = f" ({excused} more excused by xfails)" if excused else ""
        return FAILED, "; ".join(left) + note
    used = [e for e in mine if any(e.excuses(p) for p in problems)]
    return XFAILED, "; ".join(problems) + " (xfail: " + \
        "; ".join(_entry_text(e) for e in used) + ")"


def _entry_text(e: Xfail) -> str:
    where = f"{e.output}: " if e.output else ""
    return where + (e.reason or "listed")

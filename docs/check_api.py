"""Check the built documentation site: every public name is in the API reference.

Run after ``mkdocs build`` (``.ci/run`` does): reads ``__all__`` of ``zpml_core`` and of
each package documented under "API reference" (statically, from the source: no framework
needs to be installed) and looks each ``zpml_core.<package>.<name>`` up in the site's
object inventory (``build/site/objects.inv``). Exit status 1 and the missing names
otherwise.
"""

from __future__ import annotations

import ast
import re
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _literal(module: str, variable: str) -> list[ast.expr]:
    rel = Path(*module.split("."))
    path = ROOT / rel / "__init__.py"
    if not path.is_file():
        path = ROOT / rel.with_suffix(".py")
    values = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        target = getattr(node, "target", None) or (getattr(node, "targets", None) or [None])[0]
        if isinstance(target, ast.Name) and target.id == variable:
            values.append(node.value)  # type: ignore[attr-defined]
    return values


def public_names(module: str) -> list[str]:
    """``__all__`` of ``module`` (a list/tuple literal, possibly extended with ``+=``)."""
    names = [n for v in _literal(module, "__all__") for n in ast.literal_eval(v)]
    if not names:
        raise SystemExit(f"{module}: no literal __all__")
    return names


def documented_as(module: str, name: str) -> list[str]:
    """Where ``module.name`` may be documented: there; as ``module.name.name`` (a name
    re-exported from the submodule of the same name, which shadows it statically); at
    the framework module a lazy ``_LAZY = {name: module}`` table loads it from."""
    lazy = {k: v for d in _literal(module, "_LAZY") for k, v in ast.literal_eval(d).items()}
    where = [f"{module}.{name}", f"{module}.{name}.{name}"]
    if name in lazy:
        where.append(f"{lazy[name]}.{name}")
    return where


def documented_modules() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    return sorted(set(re.findall(r"^\s+- (zpml_core(?:\.\w+)?): api/", text, flags=re.M)))


def inventory(site: Path) -> set[str]:
    data = (site / "objects.inv").read_bytes()
    body = zlib.decompress(data.split(b"\n", 4)[4]).decode("utf-8")
    return {line.split(" ", 1)[0] for line in body.splitlines()}


def main() -> int:
    site = ROOT / "build" / "site"
    have = inventory(site)
    modules = documented_modules()
    missing = [
        f"{m}.{n}"
        for m in modules
        for n in public_names(m)
        if n != "__version__" and not any(w in have for w in documented_as(m, n))
    ]
    total = sum(len(public_names(m)) for m in modules)
    if missing:
        print(f"not in the API reference ({len(missing)} of {total}): {', '.join(missing)}")
        return 1
    print(f"API reference: all {total} public names of {len(modules)} modules are documented")
    return 0


if __name__ == "__main__":
    sys.exit(main())

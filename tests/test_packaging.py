"""Packaging promises: ``all`` is what a user runs (no lint or type-check tools: those are
in ``dev``), CI installs what it runs with the README's own test command, and the
repository is self-contained (no file points outside it)."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]


def _requirements(extra: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """Distribution names an extra pulls in, self-references (``zpml-core[a,b]``) expanded."""
    names: set[str] = set()
    for req in EXTRAS[extra]:
        m = re.match(r"zpml-core\[([^\]]+)\]", req)
        if m:
            for sub in m.group(1).split(","):
                if sub not in seen:
                    names |= _requirements(sub.strip(), seen | {extra})
        else:
            names.add(re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower())
    return names


def test_all_has_no_developer_tools_and_dev_has_them() -> None:
    everything = _requirements("all")
    assert {"torch", "jax", "matplotlib"} <= everything
    assert not everything & {"ruff", "mypy", "pytest", "pytest-xdist", "hypothesis"}
    assert {"ruff", "mypy", "pytest", "pytest-xdist", "hypothesis"} <= _requirements("dev")


def _commands(text: str) -> list[str]:
    return re.findall(r"pip install[^\n]*", text)


def test_ci_runs_the_readme_test_command_with_what_it_needs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_cmd = next(c for c in _commands(readme) if c.endswith("pytest -q -n 2"))
    assert '".[all,dev]"' in test_cmd
    assert test_cmd.replace("pip install", "pip install -q") in ci
    assert re.search(r"^ruff check", ci, re.M) and re.search(r"^mypy ", ci, re.M)
    first = _commands(readme)[0]
    assert '".[all]"' in first and first.endswith("zpml demo")
    # the documentation site: built strictly, every public name checked
    assert {"mkdocs", "mkdocs-material", "mkdocstrings"} <= _requirements("docs")
    assert '-e ".[docs]"' in ci and "mkdocs build --strict" in ci and "docs/check_api.py" in ci


def _tracked_text_files() -> list[Path]:
    skip = {".git", ".venv", "build", ".nox", "__pycache__", ".pytest_cache", ".mypy_cache",
            ".ruff_cache", ".hypothesis"}
    out = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if any(part in skip or part.endswith(".egg-info") for part in rel.parts):
            continue
        if path.is_file() and path.suffix in {".py", ".md", ".txt", ".toml", ".cfg", ".yml",
                                              ".yaml", ".rst", ".json"}:
            out.append(path)
    return out


def test_repository_is_self_contained() -> None:
    """No file cites the design documents this repository was built from (they are not
    in it): the semantics live in docs/semantics.md, cited as "semantics §N"."""
    pattern = re.compile(r"SPEC ?§|SPEC\.md|\.\./shared|ARCHITECTURE\.md|PITFALLS\.md|/work/notes")
    hits = []
    for path in _tracked_text_files():
        if path == Path(__file__).resolve():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "\n".join(hits)
    assert (ROOT / "docs" / "semantics.md").is_file()

"""mkdocs hook: pages that are files of the repository root.

``docs/index.md`` and ``docs/deviations.md`` hold one line ``--8<-- "README.md"`` (or
``"DEVIATIONS.md"``); this hook puts the file there, with its links to repository paths
(``docs/semantics.md``, ``DEVIATIONS.md``) turned into links to the pages next to it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_INCLUDE = re.compile(r'^--8<-- "([\w.]+)"$', re.M)
_LINKS = {"docs/": "", "DEVIATIONS.md": "deviations.md", "README.md": "index.md"}


def _fix_link(m: re.Match[str]) -> str:
    target = m.group(1)
    for old, new in _LINKS.items():
        if target.startswith(old):
            return f"]({new}{target[len(old):]}"
    return m.group(0)


def on_page_markdown(markdown: str, page: Any, config: Any, **kwargs: Any) -> str:
    root = Path(config.config_file_path).resolve().parent

    def include(m: re.Match[str]) -> str:
        text = (root / m.group(1)).read_text(encoding="utf-8")
        return re.sub(r"\]\((?!https?:|#)([^)\s]+)", _fix_link, text)

    return _INCLUDE.sub(include, markdown)

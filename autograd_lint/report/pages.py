"""The rule reference pages (`rules/<CODE>.md` in the repository), as `autograd-lint rule` prints them."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # autograd_lint/, this module being in report/
# A wheel ships the pages inside the package; a source checkout (editable install) has them at the top.
_CANDIDATES = (_PACKAGE_DIR / "rule_pages", _PACKAGE_DIR.parent / "rules")


def pages_dir() -> Path:
    for candidate in _CANDIDATES:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("rule pages are missing from this installation")


def page_path(code: str) -> Path:
    return pages_dir() / f"{code}.md"


def rule_page(code: str) -> str:
    return page_path(code).read_text(encoding="utf-8")

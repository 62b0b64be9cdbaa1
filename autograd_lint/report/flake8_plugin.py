"""autograd-lint as a flake8 plugin: `flake8 --select AGL` reports what `autograd-lint` reports.

Registered as `AGL = autograd_lint.report.flake8_plugin:AutogradLintChecker` in the `flake8.extension` entry
point group. The checker runs the library's `lint_source` with every rule selected and leaves
selection (`--select`, `--ignore`, `--extend-ignore`), `--per-file-ignores` and `# noqa` to flake8,
configured the flake8 way; `[tool.autograd-lint]` in pyproject.toml is not read. The opt-in rules
(`rules.OPT_IN`) are in flake8's default ignore list, as they are outside autograd-lint's default
selection: `--extend-select AGL004` (or `--select`) turns one on, AGL010 included (flake8 cannot see
whether the package takes second derivatives).

flake8 shows one line per finding: the short message, as `autograd-lint`'s `text` format does (the
explanation is in `--output-format full`, the JSON formats and `autograd-lint rule CODE`).

flake8 expects 0-based columns and adds 1 when it prints them; autograd-lint's are 1-based, so the
checker hands over `column - 1` and both tools print the same `path:line:col`.

The noqa checks (AGL100 unused-noqa, AGL101 blanket-noqa) never run under flake8: flake8 applies `# noqa`
itself, after the plugin, and only it knows which comments silenced something (the flake8-noqa plugin
checks them there).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from ..api import lint_source
from ..config import Config
from ..core.diagnostic import SYNTAX_ERROR_CODE
from ..core.noqa import NOQA_RULES
from ..rules import OPT_IN
from ..version import __version__
from .escaping import escape_controls

_EVERY_RULE = Config(select=("ALL",), ignore=tuple(sorted(NOQA_RULES)))


class AutogradLintChecker:
    name = "autograd-lint"
    version = __version__

    def __init__(self, tree: ast.AST, filename: str, lines: list[str]):
        # flake8 hands over its own ast; autograd-lint parses with libcst, so it needs the text.
        self.tree = tree
        self.filename = filename
        self.lines = lines

    @classmethod
    def add_options(cls, option_manager) -> None:
        option_manager.extend_default_ignore(sorted(OPT_IN - NOQA_RULES))

    def run(self) -> Iterator[tuple[int, int, str, type]]:
        source = "".join(self.lines)
        for d in lint_source(source, path=self.filename, config=_EVERY_RULE):
            if d.code == SYNTAX_ERROR_CODE and _cpython_rejects(source):
                # flake8 reports the same error as E999 (and does not run plugins on such files).
                continue
            # flake8 prints the line to a terminal: code quoted from the file is shown escaped, as in `text`.
            yield d.line, d.column - 1, f"{d.code} {escape_controls(d.message)}", type(self)


def _cpython_rejects(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return True
    return False

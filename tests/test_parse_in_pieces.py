"""Parsing a long file in pieces (`core.module.parse_in_pieces`) gives libcst's tree of the whole file: equal
node for node, and the same code, whatever the file's comments, line ends, indentation and decorators."""

from __future__ import annotations

import ast

import libcst as cst
import pytest

from autograd_lint.core.module import PIECES_FROM, parse_in_pieces

BLOCK = "def f{n}(x):\n    return x * {n}\n"

SOURCES = {
    "comments between and after blocks": (
        "# header\n\n"
        + "".join(
            f"# about f{n}\n@decorate\n# between\n@other(\n    {n})\n" + BLOCK.format(n=n) + "    # block footer\n\n"
            for n in range(6)
        )
        + "x = 1; y = 2\n# file footer\n"
    ),
    "CRLF line ends, no final newline": "".join(BLOCK.format(n=n) for n in range(6)).replace("\n", "\r\n")[:-2],
    "two-space indentation after a block-free piece": "import os\nimport sys\n\n\n"
    + "".join(f"class C{n}:\n  def m(self):\n    return {n}\n" for n in range(6)),
    "tabs": "".join(f"def t{n}():\n\tif True:\n\t\treturn {n}\n" for n in range(6)),
    "mixed line ends": "a = 1\r\n" + "".join(BLOCK.format(n=n) for n in range(6)),
    "simple suites and else blocks": "".join(f"if x{n}: pass\nelse:\n    y = {n}\n" for n in range(6)),
    "continuations and form feeds": "".join(f"v{n} = (1 +\n      2) + \\\n    3\n\x0c\n" for n in range(6)),
    "indented comment at the end of a piece": "".join(
        f"def g{n}():\n    pass\n        # deeper\n  # shallower\n" for n in range(6)
    ),
}


@pytest.mark.parametrize("source", SOURCES.values(), ids=SOURCES.keys())
@pytest.mark.parametrize("piece_size", [1, 40])
def test_pieces_make_the_whole_files_tree(source, piece_size):
    whole = cst.parse_module(source)
    pieces = parse_in_pieces(source, ast.parse(source), piece_size=piece_size, pieces_from=0)
    assert pieces.code == source
    assert pieces.deep_equals(whole)


def test_a_long_file_is_parsed_in_pieces_and_a_short_one_whole(monkeypatch):
    parsed: list[str] = []
    parse = cst.parse_module
    monkeypatch.setattr(cst, "parse_module", lambda text, *a, **k: parsed.append(text) or parse(text, *a, **k))
    long_source = "".join(BLOCK.format(n=n) for n in range(PIECES_FROM // len(BLOCK) + 100))
    assert parse_in_pieces(long_source, ast.parse(long_source)).code == long_source
    assert len(parsed) > 3 and "".join(parsed) == long_source
    parsed.clear()
    short = BLOCK.format(n=1) * 2
    parse_in_pieces(short, ast.parse(short))
    assert parsed == [short]


def test_a_piece_libcst_rejects_sends_the_whole_file_to_libcst():
    # `@(` on its own line: CPython's decorator line is the next one, so a cut falls inside the statement
    source = "".join(BLOCK.format(n=n) for n in range(3)) + "@(\n    deco\n)\ndef k():\n    pass\n"
    assert parse_in_pieces(source, ast.parse(source), piece_size=1, pieces_from=0).deep_equals(cst.parse_module(source))

"""Positions computed one top-level statement at a time (`ParsedModule.position`) are the positions libcst gives
for the whole module, for every node, whatever the file's line ends, comments, decorators and continuations."""

from __future__ import annotations

import pytest

from autograd_lint.core.module import ParsedModule
from autograd_lint.core.syntax import walk

SOURCES = {
    "header, decorators and comments": (
        "# header comment\n\n"
        "import torch\n\n\n"
        "# about the class\n"
        "@decorate\n"
        "# between decorators\n"
        "@other(1,\n"
        "       2)\n"
        "class Scale(torch.autograd.Function):\n"
        "    @staticmethod\n"
        "    def forward(ctx, x):\n"
        "        return x * 2  # trailing\n"
        "    # a comment the block owns\n\n"
        "x = 1; y = 2;\n"
        "if x:\n"
        "    z = (1 +\n"
        "         2)\n"
        "else:\n"
        "    z = 3\n"
    ),
    "CRLF line ends, no final newline": "import torch\r\n\r\ndef f(x):\r\n    return x\r\n\r\ny = f(1)",
    "CR line ends": "a = 1\r\rdef g():\r    return a\r",
    "backslash continuation and form feed": "total = 1 + \\\n    2\n\x0c\ndef h():\n    return total\n",
    "async, nested classes and strings": (
        'async def run():\n    """doc\n    string"""\n    await thing()\n\n'
        "class Outer:\n    class Inner:\n        value = '''a\nb'''\n"
    ),
    # The decorator's expression starts on the line after its `@`: CPython's line is not the code's start,
    # the check against the text catches it and the whole module's positions are used.
    "decorator expression on the next line": "@(\n    deco\n)\ndef k():\n    pass\nw = 1\n",
}


@pytest.mark.parametrize("source", SOURCES.values(), ids=SOURCES.keys())
def test_statement_positions_are_the_module_positions(source):
    module = ParsedModule(source, "m.py")
    whole = module._module_positions
    nodes = [node for node in walk(module.tree) if node is not module.tree]
    assert nodes
    for node in nodes:
        assert module.position(node) == whole[node], node


def test_statements_are_located_alone_where_the_parsers_agree():
    module = ParsedModule(SOURCES["header, decorators and comments"], "m.py")
    assert all(module._statement_positions(statement) is not None for statement in module.tree.body)
    odd = ParsedModule(SOURCES["decorator expression on the next line"], "m.py")
    first, *rest = odd.tree.body
    assert odd._statement_positions(first) is None  # falls back to the whole module's positions
    assert all(odd._statement_positions(statement) is not None for statement in rest)

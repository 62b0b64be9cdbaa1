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


# A test module's shape: one top-level class over a thousand lines long, whose methods are located one at a time.
LONG_CLASS_METHODS = (
    "    @staticmethod\n"
    "    # a comment between the decorator and the method\n"
    "    def forward_{i}(ctx, x):\n"
    '        """A docstring\n'
    "        over lines."
    '"""\n'
    "        total = (x +\n"
    "                 1)  # a bracket continued\n"
    "        text = '''a string\n"
    "continued at column 0''' + str(x)\n"
    "        return total * \\\n"
    "            2\n"
    "\n"
    "    class Inner{i}:\n"
    "        def method(self, y):\n"
    "            return y.grad(create_graph=True)\n"
    "\n"
)


def long_class(methods: int, extra: str = "") -> str:
    return "import torch\n\n\nclass Tests:\n" + "".join(LONG_CLASS_METHODS.format(i=i) for i in range(methods)) + extra


@pytest.mark.parametrize(
    "extra",
    ["x = 1\n", "# a comment at column 0 ends the class\n"],
    ids=["plain", "comment at column 0"],
)
def test_methods_of_a_long_class_are_located_alone_at_the_module_positions(extra):
    module = ParsedModule(long_class(80, extra), "m.py")
    [_, klass, *_] = module.tree.body
    whole = module._module_positions
    in_methods = [node for node in walk(klass) if module.enclosing_function(node) is not None]
    assert len(in_methods) > 3000
    for node in in_methods:
        assert module.position(node) == whole[node], node
    # each method, the nested classes' too, was generated alone, never the whole class
    assert klass not in module._located_statements
    methods = [m for m in module._located_statements if type(m).__name__ == "FunctionDef"]
    assert len(methods) == 160 and all(module._located_statements[m] is not None for m in methods)
    # what is outside the methods is located with the whole class
    assert module.position(klass.name) == whole[klass.name]


def test_a_short_class_is_located_whole():
    module = ParsedModule(long_class(2), "m.py")
    [_, klass] = module.tree.body
    method = next(m for m in walk(klass) if type(m).__name__ == "FunctionDef")
    assert module.position(method) == module._module_positions[method]
    assert klass in module._located_statements and method not in module._located_statements

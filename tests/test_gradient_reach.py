"""gradient_reach: where autograd records nothing, what carries a gradient, which values reach the output."""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest

from autograd_lint.core.module import ParsedModule
from autograd_lint.core.syntax import code_of
from autograd_lint.facts.gradient_reach import ValueFlow, callers, gradient_disabled, is_straight_through

HEADER = "import torch\nimport torch.nn as nn\nfrom torch.distributions import Uniform\n\n"


def parse(source: str) -> ParsedModule:
    return ParsedModule(HEADER + textwrap.dedent(source), "case.py")


def function(module: ParsedModule, name: str) -> cst.FunctionDef:
    return next(n for n in module.parents if isinstance(n, cst.FunctionDef) and n.name.value == name)


def call_of(module: ParsedModule, text: str) -> cst.Call:
    """The call whose source is exactly `text`."""
    return next(n for n in module.parents if isinstance(n, cst.Call) and code_of(n) == text)


@pytest.mark.parametrize(
    "source, disabled",
    [
        ("def f(x):\n    with torch.no_grad():\n        y = x.round()\n", True),
        ("def f(x):\n    with torch.inference_mode():\n        y = x.round()\n", True),
        ("@torch.no_grad()\ndef f(x):\n    y = x.round()\n", True),
        ("class Q(torch.optim.Optimizer):\n    def apply_rounding(self, x):\n        y = x.round()\n", True),
        ("class Sched:\n    def step(self):\n        for g in self.param_groups:\n            y = g.round()\n", True),
        ("class Layer(nn.Module):\n    def step(self, x):\n        y = x.round()\n", False),
        ("def f(x):\n    y = x.round()\n", False),
    ],
)
def test_gradient_disabled(source, disabled):
    module = parse(source)
    rounding = next(n for n in module.parents if isinstance(n, cst.Call) and code_of(n).endswith(".round()"))
    assert gradient_disabled(module, rounding) is disabled


@pytest.mark.parametrize(
    "expression, straight_through",
    [
        ("x + (q - x).detach()", True),
        ("(q - x).detach() + x", True),
        ("q + x - x.detach()", True),
        ("x - x.detach() + q.detach()", True),
        ("x + (q - x).data", True),
        ("x + (q - y).detach()", False),
        ("q + x", False),
        ("x - (q - x).detach()", False),
    ],
)
def test_is_straight_through(expression, straight_through):
    module = parse(f"y = {expression}\n")
    operation = next(n for n in module.parents if isinstance(n, cst.BinaryOperation))
    assert is_straight_through(module, operation) is straight_through


def test_callers_of_a_function_and_of_a_method():
    module = parse(
        """
        def quantize(x):
            return x.round()

        class A(nn.Module):
            def quantize(self, x):
                return quantize(x)

            def forward(self, x):
                return self.quantize(x) + A.quantize(self, x)

        class B(nn.Module):
            def forward(self, x):
                return self.quantize(x)
        """
    )
    top_level = next(n for n in module.tree.body if isinstance(n, cst.FunctionDef))
    owner_method = next(
        n
        for n in module.parents
        if isinstance(n, cst.FunctionDef) and n.name.value == "quantize" and n is not top_level
    )
    assert [code_of(c) for c in callers(module, top_level)] == ["quantize(x)"]
    assert sorted(code_of(c) for c in callers(module, owner_method)) == [
        "A.quantize(self, x)",
        "self.quantize(x)",
        "self.quantize(x)",
    ]


CARRIES = """
class Layer(nn.Linear):
    def __init__(self, n):
        super().__init__(n, n)
        self.sampler = Uniform(0.0, 1.0)
        self.scale = nn.Parameter(torch.ones(1))
        self.eps = 1e-6

    def forward(self, x, shape: tuple, bits=8, lengths=None):
        noise = torch.rand(3)
        frozen = x.detach()
        with torch.no_grad():
            target = x * 2
        flag = x > 0
        settings = [self.sampler, self.eps]
        drawn = self.sampler.sample((3,))
        h = x * 2
        return h
"""


@pytest.mark.parametrize(
    "expression, carries",
    [
        ("x", True),
        ("h", True),
        ("self.weight", True),  # inherited from nn.Linear
        ("self.scale", True),  # an nn.Parameter
        ("shape", False),  # annotated as a non-tensor
        ("bits", False),  # a literal default: a setting
        ("lengths", False),
        ("noise", False),
        ("frozen", False),
        ("target", False),  # assigned under no_grad
        ("flag", False),  # a comparison
        ("drawn", False),
        ("self.sampler", False),  # read as a value, not built as an nn.Parameter
        ("self.eps", False),
    ],
)
def test_carries_gradient(expression, carries):
    module = parse(CARRIES)
    flow = ValueFlow(module, function(module, "forward"))
    expr = cst.parse_expression(expression)
    if isinstance(expr, cst.Attribute):  # judge the attribute where the function reads it
        expr = next((n for n in flow.nodes if isinstance(n, cst.Attribute) and code_of(n) == expression), expr)
    assert flow.carries_gradient(expr) is carries


@pytest.mark.parametrize(
    "body, source, reaches",
    [
        ("return torch.sign(x)", "torch.sign(x)", True),
        ("q = torch.sign(x)\n    return self.fc(q)", "torch.sign(x)", True),
        ("i = x.floor().long()\n    return self.table[i]", "x.floor().long()", False),
        ("return x * (x.abs() > 1).float()", "(x.abs() > 1).float()", False),
        ("return y * torch.sign(x)", "torch.sign(x)", False),
        ("return x - 6.28 * torch.floor(x / 6.28)", "torch.floor(x / 6.28)", False),
        ("s = x.abs().max() / 127\n    return torch.round(x / s) * s", "torch.round(x / s)", True),
        ("s = x.abs().mean()\n    return torch.sign(x) * s", "torch.sign(x)", True),
        ("q = torch.round(x)\n    return x + (q - x).detach()", "torch.round(x)", False),
        ("q = torch.round(x)\n    return q + x - x.detach()", "torch.round(x)", False),
        ("n = (x * 4).long()\n    return n", "(x * 4).long()", False),
        ("n = (x * 4).long()\n    return n.float() / 4", "(x * 4).long()", True),
        ("n = (x * 4).long()\n    return n * y", "(x * 4).long()", True),
        ("i = x.floor().long()\n    return x - i", "x.floor().long()", False),
        ("return imported_pool(torch.sign(x))", "torch.sign(x)", False),
        ("return local_pool(torch.sign(x))", "torch.sign(x)", True),
        ("return torch.gather(y, 1, torch.round(x).long())", "torch.round(x)", False),
    ],
)
def test_reaches_output(body, source, reaches):
    module = parse(
        "from helpers import imported_pool\n\n"
        "def local_pool(t):\n    return t.mean(-1)\n\n"
        "class M(nn.Module):\n    def forward(self, x, y):\n    " + "    " + body.replace("\n    ", "\n        ") + "\n"
    )
    flow = ValueFlow(module, function(module, "forward"))
    node = call_of(module, source)
    operand = node.args[0].value if node.args and not code_of(node).endswith(".long()") else node.func.value
    integer = code_of(node).endswith(".long()")
    assert (flow.reaches_output(node, integer, operand) is not None) is reaches

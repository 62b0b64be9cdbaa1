"""gradient_reach.holds_no_gradient and feeds_only_non_differentiable: values no gradient flows through."""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest

from autograd_lint.core.module import ParsedModule
from autograd_lint.core.syntax import walk
from autograd_lint.facts.gradient_reach import (
    feeds_only_non_differentiable,
    holds_no_gradient,
    in_function_forward,
    in_operator_implementation,
)


def marked(source: str) -> tuple[ParsedModule, cst.BaseExpression]:
    """The module and the expression assigned to `subject` (the last such assignment)."""
    module = ParsedModule(textwrap.dedent(source), "case.py")
    values = [
        n.value
        for n in walk(module.tree)
        if isinstance(n, cst.Assign)
        and isinstance(n.targets[0].target, cst.Name)
        and n.targets[0].target.value == "subject"
    ]
    return module, values[-1]


@pytest.mark.parametrize(
    "source, expected",
    [
        ("def f(x):\n    subject = torch.log(x)\n", False),  # a parameter nobody here passes
        ("def f(n):\n    t = torch.linspace(-1, 1, n) * math.pi\n    subject = torch.sin(t) / t\n", True),
        (
            "def f(edges, n):\n    ones = torch.ones(edges.shape[1])\n    deg = torch.zeros(n).index_add(0, edges[0], ones)\n    subject = deg[edges[1]]\n",
            True,
        ),
        (
            "def f(idx, vals, n):\n    subject = torch.sparse_coo_tensor(idx, vals, (n, n))\n",
            False,
        ),  # the values are a parameter
        (
            "def f(idx, n):\n    a = torch.sparse_coo_tensor(idx, torch.ones(idx.shape[1]), (n, n))\n    subject = torch.sparse.sum(a, dim=1)\n",
            True,
        ),
        ("def f(x):\n    subject = x.detach() + 1\n", True),
        ("def f(x):\n    subject = x.argmax(-1).float()\n", True),
        ("def f(self):\n    subject = self.weight * 2\n", False),
        ("def f(x):\n    subject = helper(x)\n", False),
        ("def f(x):\n    with torch.no_grad():\n        y = x * 2\n    subject = y\n", True),
        ("def f(x, scale=0.5):\n    subject = torch.rand(3) * scale\n", True),  # a literal default is a setting
        # a helper judged by what this module's functions pass it
        (
            "def _k(t):\n    subject = torch.sin(t) / t\n\ndef kernel(n=8):\n    return _k(torch.arange(n) - n / 2)\n",
            True,
        ),
        ("def _k(t):\n    subject = torch.sin(t) / t\n\ndef layer(x):\n    return _k(x)\n", False),
        # a demonstration at module level is no evidence
        ("def _k(t):\n    subject = torch.sin(t) / t\n\nprint(_k(torch.arange(4)))\n", False),
    ],
)
def test_holds_no_gradient(source, expected):
    module, subject = marked("import math\nimport torch\n" + source)
    assert holds_no_gradient(module, subject) is expected


@pytest.mark.parametrize(
    "source, expected",
    [
        ("def f(x):\n    subject = x / 2\n    return subject\n", False),
        ("def f(x):\n    subject = x / 2\n    best = torch.argmax(subject * 3, dim=-1)\n    return best\n", True),
        ("def f(x):\n    subject = x / 2\n    peak = subject.gather(1, idx).squeeze(1)\n    return peak > 0\n", True),
        (
            "def f(x):\n    subject = x / 2\n    if subject.max() > 1:\n        print(subject.shape)\n    return x\n",
            True,
        ),
        ("def f(x):\n    subject = x / 2\n    loss = (subject * x).sum()\n    loss.backward()\n", False),
        ("def f(self, x):\n    subject = x / 2\n    self.cache = subject\n", False),
        ("def f(x):\n    subject = x / 2\n    return nn.Parameter(subject)\n", True),
        ("def f(x, out):\n    subject = x / 2\n    out.copy_(subject)\n", False),
        ("def f(x):\n    subject = x / 2\n    return x[subject.long()]\n", True),
        (
            "def f(x):\n    subject = x / 2\n    scale = lambda y: y * subject\n    return scale(x).argmax()\n",
            False,
        ),  # a closure reads it
        # a constructor of this module that wraps its argument in nn.Parameter detaches it
        (
            "class Line(nn.Module):\n    def __init__(self, slope):\n        super().__init__()\n"
            "        if not isinstance(slope, torch.Tensor):\n            raise TypeError(f'got {type(slope)}')\n"
            "        self.slope = nn.Parameter(slope)\n\n"
            "    @classmethod\n    def fit(cls, x):\n        subject = x / 2\n        return cls(subject)\n",
            True,
        ),
        (
            "class Line(nn.Module):\n    def __init__(self, slope):\n        super().__init__()\n        self.slope = slope\n\n"
            "def fit(x):\n    subject = x / 2\n    return Line(subject)\n",
            False,
        ),
    ],
)
def test_feeds_only_non_differentiable(source, expected):
    module, subject = marked("import torch\nimport torch.nn as nn\n" + source)
    assert feeds_only_non_differentiable(module, subject) is expected


@pytest.mark.parametrize(
    "decorator, expected",
    [
        ('@torch.library.custom_op("mylib::elu", mutates_args=())', True),
        ("@register_decomposition(aten.elu)", True),
        ("@torch.compile", False),
        ("@staticmethod", False),
    ],
)
def test_in_operator_implementation(decorator, expected):
    source = f"import torch\nfrom torch._decomp import register_decomposition\n\n{decorator}\ndef elu(x):\n    return torch.where(x > 0, x, torch.expm1(x))\n"
    module = ParsedModule(source, "case.py")
    where = next(
        n
        for n in walk(module.tree)
        if isinstance(n, cst.Call) and isinstance(n.func, cst.Attribute) and n.func.attr.value == "where"
    )
    assert in_operator_implementation(module, where) is expected


def test_in_function_forward():
    source = (
        "import torch\n\n\nclass Fn(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, x):\n"
        "        return torch.where(x > 0, x, 0.0)\n\n    @staticmethod\n    def backward(ctx, g):\n"
        "        return torch.where(g > 0, g, 0.0)\n\n\nclass Layer(torch.nn.Module):\n    def forward(self, x):\n"
        "        return torch.where(x > 0, x, 0.0)\n"
    )
    module = ParsedModule(source, "case.py")
    wheres = [
        n
        for n in walk(module.tree)
        if isinstance(n, cst.Call) and isinstance(n.func, cst.Attribute) and n.func.attr.value == "where"
    ]
    assert [in_function_forward(module, w) for w in wheres] == [True, False, False]

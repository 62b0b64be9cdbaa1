"""AGL023 where-nan-gradient: static cases and the confirm recipe under real torch."""

from __future__ import annotations

import ast
import textwrap

import pytest
from snippets import marked_positions, reported_positions
from test_confirm import run_recipe

from autograd_lint import Config, lint_source
from autograd_lint.engine import lint_text
from autograd_lint.rules.agl023_where_nan_gradient import WhereNanGradient


def agl023(body: str) -> list[tuple[int, int]]:
    source = (
        "import torch\nimport torch.nn.functional as F\nEPS = 1e-8\n\n\ndef f(x, y, mask, alpha=1.0):\n"
        + textwrap.indent(textwrap.dedent(body).strip(), "    ")
        + "\n"
    )
    return [(d.line, d.column) for d in lint_source(source, "case.py", Config(select=("AGL023",)))]


@pytest.mark.parametrize(
    "body, column",
    [
        ("return torch.where(x > 0, torch.log(x), 0.0)", 31),
        ("return torch.where(x <= 0, 0.0, x.log())", 37),
        ("return torch.where(x != 0, 1 / x, 0.0)", 32),
        ("return torch.where(x == 0, 0.0, y / x)", 37),
        ("return torch.where(x > EPS, torch.log(x), 0.0)", 33),
        ("return torch.where(x >= 0, torch.sqrt(x), 0.0)", 32),
        ("return torch.where(x > 0, x ** 0.5, 0.0)", 31),
        ("return torch.where(x > 0, torch.pow(x, -1), 0.0)", 31),
        ("return torch.where(x > 0, x.rsqrt(), 0.0)", 31),
        ("return torch.where(x.abs() < 1, torch.acos(x), 0.0)", 37),
        ("return torch.where(torch.abs(x) < 1e-6, 1.0, torch.sin(x) / x)", 50),
        ("return torch.where(x > 0, x, torch.exp(x) - 1)", 34),
        ("return torch.where(x < 0, torch.expm1(x), x)", 31),
        ("return torch.where(x > 20, x, torch.log1p(torch.exp(x)))", 47),
        (
            "return torch.where(x > 0, torch.exp(-x), 1.0)",
            31,
        ),  # exp(-x) overflows for the very negative x it does not select
        ("return torch.where(x.gt(0), torch.log(x), 0.0)", 33),
        ("return torch.where(~(x > 0), 0.0, torch.log(x))", 39),
        ("m = x > 0\nreturn torch.where(m, torch.log(x), 0.0)", 27),
        ("logx = torch.log(x)\nreturn torch.where(x > 0, logx, 0.0)", 12),
        ("return torch.log(x).where(x > 0, 0.0)", 12),
        ("return torch.where(x > 0, torch.sqrt(x.clamp(min=0)), 0.0)", 31),
    ],
)
def test_unsafe_branches_are_flagged_at_the_op(body, column):
    lines = body.splitlines()
    # the op's line: the last one, unless an earlier assignment computes it (`logx = torch.log(x)`)
    line = 7 + next(
        (i for i, text in enumerate(lines) if "=" in text and "torch.log(" in text and "where" not in text),
        len(lines) - 1,
    )
    assert agl023(body) == [(line, column)]


@pytest.mark.parametrize(
    "body",
    [
        "return torch.where(x > 0, torch.log(torch.where(x > 0, x, 1.0)), 0.0)",
        "return torch.where(x > 0, torch.log(x.clamp(min=1e-6)), 0.0)",
        "return torch.where(x > 0, torch.sqrt(x.clamp_min(EPS)), 0.0)",
        "return torch.where(x > 0, x, torch.expm1(x.clamp(max=0)))",  # exp kept at or below 1
        "return torch.where(x > 0, torch.log(torch.maximum(x, y)), 0.0)",
        "return torch.where(mask, torch.log(x), 0.0)",  # the condition guards another tensor
        "return torch.where(x > 1, torch.log(x), x - 1)",  # regime switch away from log's singular point
        "return torch.where(x < 3.75, x, torch.log(x))",
        "return torch.where(x > 0, torch.log1p(x), x)",
        "return torch.where(x > 0, torch.exp(x), 0.0)",  # exp only overflows where it is selected
        "return torch.where(x < 0, torch.exp(-x), 1.0)",
        "return torch.where(x > 0, x, 0.01 * x)",
        "return torch.where(x > 0, x ** 2, 0.0)",
        "return torch.where(x > 0, torch.log(x + 1), 0.0)",  # not the guarded variable itself
        "return torch.where((x > 0) | mask, torch.log(x), 0.0)",  # `mask` may select log(x) at 0: a forward -inf, not this bug
        "return torch.where(x > 0, torch.log(x.detach()), 0.0)",  # no gradient flows into the op
        "return torch.where(x > 0, torch.log(torch.clamp(x, min=EPS)), 0.0)",
        "return torch.where(x > 0, x, torch.exp(x.clamp(max=0)) - 1)",
        "return torch.log(x).masked_fill(mask, 0.0)",  # the mask guards another tensor
        "return (y / x).masked_fill(x > 0, 0.0)",  # the division is selected where x <= 0: a forward inf, not this bug
        "return torch.where(x > y, torch.log(x), 0.0)",  # the threshold is another tensor
        "return F.elu(x) + F.softplus(x) + torch.xlogy(x, x)",
        "return x * (x > 0)",  # AGL003's shape, never this rule's
    ],
)
def test_look_alikes_are_silent(body):
    assert agl023(body) == []


@pytest.mark.parametrize(
    "body, line, column",
    [
        ("return torch.where((x > 0) & (x < 1), torch.log(x), 0.0)", 7, 43),  # x == 0 fails the first conjunct
        ("return torch.where(torch.logical_and(x > 0, mask), torch.log(x), 0.0)", 7, 56),
        ("return torch.where(~((x > 0) & mask), 0.0, torch.log(x))", 7, 48),
        ("d = torch.sqrt(x)\nscaled = 2 * d\nreturn torch.where(x > 0, scaled, 0.0)", 7, 9),
        ("valid = x.abs() > EPS\nreturn torch.where(valid, y / x, torch.zeros_like(y))", 8, 31),
        ("return (y / x).masked_fill(x == 0, 0.0)", 7, 13),
        ("ratio = y / x\nreturn ratio.masked_fill_(x.abs() < 1e-9, 0.0)", 7, 13),
        ("return torch.masked_fill(torch.log(x), x <= 0, 0.0)", 7, 30),
        ("return torch.where(x > 20, x, torch.log1p(torch.exp(2.0 * x)) / 2.0)", 7, 47),
        ("return torch.where(x > 0, x, alpha * torch.expm1(x))", 7, 42),
        ("return torch.where(x > 0, y / x[..., None], 0.0)", 7, 31),
        ("return torch.where(x > 0, torch.sqrt(torch.clamp(x, 0)), 0.0)", 7, 31),
        ("nonempty = (x > 0).unsqueeze(-1)\nreturn torch.where(nonempty, y / x.unsqueeze(-1), 0.0)", 8, 34),
        ("n = x.norm(dim=-1, keepdim=True)\nreturn torch.where(n.squeeze(-1)[..., None] > 0, y / n, 0.0)", 8, 54),
    ],
)
def test_shapes_real_code_uses(body, line, column):
    assert agl023(body) == [(line, column)]


def test_message_names_the_input_the_value_and_the_fix():
    source = "import torch\n\n\ndef distance(d2):\n    return torch.where(d2 > 0, torch.sqrt(d2), 0.0)\n"
    [diagnostic] = lint_source(source, "case.py", Config(select=("AGL023",)))
    assert diagnostic.message == "`torch.sqrt(d2)` has a NaN gradient at `d2 <= 0`, where torch.where discards it"
    assert diagnostic.explanation == (
        "`torch.sqrt(d2)` is evaluated on every element, also where torch.where does not select it: at `d2 <= 0` "
        "its derivative is infinite or NaN, and torch.where's zero gradient times it is NaN, so `d2` gets a NaN "
        "gradient although the output is finite (whenever a gradient flows to `d2`). Compute the op on a safe "
        "input, `torch.where(d2 > 0, d2, 1.0)` (the double-where), or clamp it away from the singular point."
    )


def test_message_names_the_numerator_of_a_division():
    source = "import torch\n\n\ndef normalize(v, n):\n    return torch.where(n == 0, 0.0, v / n)\n"
    [diagnostic] = lint_source(source, "case.py", Config(select=("AGL023",)))
    assert (
        "at `n == 0`" in diagnostic.message and "`n` and the numerator `v` get a NaN gradient" in diagnostic.explanation
    )
    assert "`torch.where(n == 0, 1.0, n)` (the double-where)" in diagnostic.explanation


@pytest.mark.parametrize(
    "source",
    [
        # no gradient can reach the op or leave the where
        "@torch.no_grad()\ndef f(x):\n    return torch.where(x > 0, torch.log(x), 0.0)\n",
        "def f(n):\n    t = torch.linspace(-3, 3, n)\n    return torch.where(t == 0, 1.0, torch.sin(t) / t)\n",
        "def f(x):\n    m = torch.where(x > 0, torch.log(x), 0.0)\n    return m.argmax(-1)\n",
        "def f(x):\n    s = torch.where(x > 0, 1 / x, 0.0)\n    return nn.Parameter(s)\n",
        '@torch.library.custom_op("mylib::safe_log", mutates_args=())\ndef f(x: torch.Tensor) -> torch.Tensor:\n    return torch.where(x > 0, torch.log(x), 0.0)\n',
        "class SafeLog(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, x):\n        ctx.save_for_backward(x)\n"
        "        return torch.where(x > 0, torch.log(x), 0.0)\n\n    @staticmethod\n    def backward(ctx, g):\n"
        "        (x,) = ctx.saved_tensors\n        return g * (x > 0) / x.clamp(min=1e-12)\n",
    ],
)
def test_no_gradient_through_the_where_is_silent(source):
    assert lint_source("import torch\nimport torch.nn as nn\n\n" + source, "case.py", Config(select=("AGL023",))) == []


@pytest.mark.parametrize(
    "source, position",
    [
        ("from torch import where, log\n\ndef f(x):\n    return where(x > 0, log(x), 0.0)\n", (4, 25)),
        ("import torch as th\n\ndef f(x):\n    return th.where(x > 0, th.sqrt(x), 0.0)\n", (4, 28)),
        (
            "import torch\n\ndef f(x):\n    return torch.where(condition=x > 0, input=torch.log(x), other=torch.zeros_like(x))\n",
            (4, 47),
        ),
        ("import torch\n\ndef f(x, y):\n    return (y / x).masked_fill(value=0.0, mask=x == 0)\n", (4, 13)),
        (
            "import torch\n\ndef _log(v):\n    return torch.log(v)\n\ndef f(x):\n    return torch.where(x > 0, _log(x), 0.0)\n",
            (7, 31),
        ),
        (  # a helper that returns another helper's result
            "import torch\n\ndef _log(v):\n    return torch.log(v)\n\ndef safe_log(v):\n    return _log(v)\n\n"
            "def f(x):\n    return torch.where(x > 0, safe_log(x), 0.0)\n",
            (10, 31),
        ),
        (
            "import torch\n\ndef _inv(v, eps=0.0):\n    return 1.0 / (v + eps)\n\ndef f(x):\n    return torch.where(x != 0, _inv(x), 0.0)\n",
            None,
        ),
        (
            "import torch\n\ndef _log(v):\n    return torch.log(v.clamp(min=1e-6))\n\ndef f(x):\n    return torch.where(x > 0, _log(x), 0.0)\n",
            None,
        ),
    ],
)
def test_aliases_keywords_and_helpers(source, position):
    found = [(d.line, d.column) for d in lint_source(source, "case.py", Config(select=("AGL023",)))]
    assert found == ([position] if position else [])


def test_message_through_a_helper_names_the_helpers_op():
    source = "import torch\n\ndef _log(v):\n    return torch.log(v)\n\ndef f(x):\n    return torch.where(x > 0, _log(x), 0.0)\n"
    [diagnostic] = lint_source(source, "case.py", Config(select=("AGL023",)))
    assert diagnostic.message == "`_log(x)` has a NaN gradient at `x == 0`, where torch.where discards it"
    assert diagnostic.explanation.startswith("`_log(x)` (which computes `torch.log(v)`) is evaluated on every element")


def test_guard_on_a_local_holding_a_scaled_input_alone_in_its_file():
    # nothing else in the file passes the prefilter: it must follow `bx` to `beta * x` itself
    source = "import torch\n\ndef f(x, beta=2.0):\n    bx = beta * x\n    return torch.where(bx > 20, x, torch.log1p(torch.exp(beta * x)) / beta)\n"
    assert [(d.line, d.column) for d in lint_source(source, "case.py", Config(select=("AGL023",)))] == [(5, 48)]


@pytest.mark.parametrize(
    "source",
    [
        # the threshold is not the op's singular point: a switch between two formulas
        "import torch\n\ndef f(x):\n    return torch.where(x > 5.0, torch.log(x), 0.0)\n",
        # triton's three-argument where, not torch's
        "import triton.language as tl\n\ndef f(w, n):\n    return tl.where(n == 0.0, 0.0, w / n)\n",
        "from .compat import tl\n\ndef f(w, n):\n    return tl.where(n == 0.0, 0.0, w / n)\n",
        # the comparison is an operand of a reduction, not a guard
        "import torch\n\ndef f(x, y):\n    return torch.where(torch.max(torch.ge(x, 0), y), torch.log(x), 0.0)\n",
        # the unsafe op and the guard are in one function but not in one selection
        "import torch\n\ndef f(x, z):\n    y = torch.log(x)\n    m = x > 0\n    return torch.where(m, z, 0.0), y\n",
        # the guard compares a variable the op does not read
        "import torch\n\ndef f(x, n):\n    return torch.where(n > 0, torch.log(x), 0.0)\n",
        # the mask is a local of the enclosing function: the rule follows the selection's own function's locals
        "import torch\n\ndef f(x):\n    m = x > 0\n\n    def g(x):\n        return torch.where(m, torch.log(x), 0.0)\n\n"
        "    return g(x)\n",
    ],
)
def test_the_prefilter_passes_over_what_the_rule_cannot_report(source):
    """These files are not parsed with libcst for AGL023, and the rule, made to look, agrees."""
    assert not WhereNanGradient.candidate(ast.parse(source))
    assert lint_text(source, "case.py", ["AGL023"], prefilter=False) == []


def test_a_selection_in_a_nested_function_reads_that_functions_locals():
    source = (
        "import torch\n\ndef f(x):\n    m = x < 0\n\n    def g(x):\n        m = x > 0\n"
        "        return torch.where(m, torch.log(x), 0.0)\n\n    return g(x), m\n"
    )
    assert WhereNanGradient.candidate(ast.parse(source))
    assert [(d.line, d.column) for d in lint_source(source, "case.py", Config(select=("AGL023",)))] == [(8, 31)]


def test_numpy_where_is_not_torch():
    source = "import numpy as np\n\ndef f(x):\n    return np.where(x > 0, np.log(x), 0.0)\n"
    assert lint_source(source, "case.py", Config(select=("AGL023",))) == []


def recipe(expression: str) -> tuple[str, str]:
    return run_recipe(
        "import torch\n"
        f"def parts(x):\n    cond = x > 0\n    return torch.where(cond, {expression}, 0.0), cond, {expression}, 0.0\n"
        f"agl023.check_where(parts, [-2.0, -0.5, 0.0, 0.5, 2.0], {expression!r})"
    )


def test_recipe_confirms_nan_where_the_selected_branch_is_finite():
    verdict, evidence = recipe("torch.log(x)")
    assert verdict == "confirmed"
    assert "x=0: NaN (selected branch: 0)" in evidence


@pytest.mark.parametrize(
    "expression",
    ["torch.log(torch.where(x > 0, x, 1.0))", "torch.log(x.clamp(min=1e-6))", "x * 2"],
)
def test_recipe_does_not_confirm_safe_branches(expression):
    verdict, evidence = recipe(expression)
    assert verdict == "not-reproduced", evidence


VALID = [
    # the double-where idiom
    """\
        import torch


        def entropy_bonus(probs):
            safe = torch.where(probs > 0, probs, torch.ones_like(probs))
            plogp = torch.where(probs > 0, probs * torch.log(safe), torch.zeros_like(probs))
            return -plogp.sum(-1).mean()
    """,
    # a clamped argument keeps the op away from its singular point
    """\
        import torch


        def distance(d2):
            return torch.where(d2 > 0, torch.sqrt(d2.clamp(min=1e-12)), torch.zeros_like(d2))
    """,
    # a condition on another tensor
    """\
        import torch


        def masked_log(x, mask):
            return torch.where(mask, torch.log(x), torch.zeros_like(x))
    """,
    # exp on the side selected for large inputs
    """\
        import torch


        def grow(x):
            return torch.where(x > 0, torch.exp(x), torch.zeros_like(x))
    """,
    # smooth ops, and numpy's where
    """\
        import numpy as np
        import torch


        def leaky_square(x):
            return torch.where(x > 0, x ** 2, 0.01 * x)


        def np_log(a):
            return np.where(a > 0, np.log(a), 0.0)
    """,
    # no gradient under no_grad
    """\
        import torch


        @torch.no_grad()
        def entropy(probs):
            return -torch.where(probs > 0, probs * torch.log(probs), torch.zeros_like(probs)).sum()
    """,
]

INVALID = [
    # log on the discarded branch: NaN gradient at 0
    """\
        import torch


        def entropy_bonus(probs):
            plogp = torch.where(probs > 0, probs * torch.log(probs), torch.zeros_like(probs))  # AGL023:44
            return -plogp.sum(-1).mean()
    """,
    # exp overflowing on the discarded branch
    """\
        import torch


        def elu(x, alpha=1.0):
            return torch.where(x > 0, x, alpha * (torch.exp(x) - 1))  # AGL023:43
    """,
    # sqrt at 0 on the discarded branch
    """\
        import torch


        def pairwise_distance(a, b):
            d2 = (a.unsqueeze(1) - b.unsqueeze(0)).pow(2).sum(-1)
            return torch.where(d2 > 0, torch.sqrt(d2), torch.zeros_like(d2))  # AGL023:32
    """,
    # clamp(min=0) puts 0 right back
    """\
        import torch


        def safe_norm(v):
            n2 = (v * v).sum(-1)
            return torch.where(n2 > 0, torch.sqrt(n2.clamp(min=0)), torch.zeros_like(n2))  # AGL023:32
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL023", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL023", source) == marked_positions("AGL023", source)

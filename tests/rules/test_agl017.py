"""AGL017 materialize-grads-none: static cases and the confirm recipe under real torch."""

from __future__ import annotations

import textwrap

import pytest
from snippets import marked_positions, reported_positions
from test_confirm import run_recipe

from autograd_lint import Config, lint_source


def agl017(source: str) -> list[tuple[int, int]]:
    found = lint_source(source, "case.py", Config(select=("AGL017",)))
    return [(d.line, d.column) for d in found]


HELPERS = (
    "def combine(a, b):\n    return 2 * a + 3 * b\n\n"
    "def combine_checked(a, b):\n    return (0 if a is None else 2 * a) + (0 if b is None else 3 * b)\n\n"
)


def function(backward_body: str, grads: str = "g1, g2", materialize: str = "ctx.set_materialize_grads(False)") -> str:
    return (
        "import torch\nimport torch.nn.functional as F\n\n"
        "class TwoOut(torch.autograd.Function):\n"
        "    @staticmethod\n"
        "    def forward(ctx, x):\n"
        f"        {materialize}\n"
        "        return x * 2, x * 3\n\n"
        "    @staticmethod\n"
        f"    def backward(ctx, {grads}):\n"
        + textwrap.indent(textwrap.dedent(backward_body).strip(), " " * 8)
        + "\n\n\n"
        + HELPERS
    )


@pytest.mark.parametrize(
    "body, expected",
    [
        ("return g1 * 2 + g2 * 3", [(12, 16), (12, 25)]),
        ("return -g1 + g2", [(12, 16), (12, 16)]),
        ("g2 *= 3\nreturn g1 + g2", [(12, 9), (13, 16)]),
        ("out = g1.clone()\nreturn out + g2.sum()", [(12, 15), (13, 22)]),
        ("return torch.add(g1, 1) + g2[0]", [(12, 16), (12, 35)]),
        ("return F.relu(g1) + g2.shape[0]", [(12, 16), (12, 29)]),
        ("if g1 is None:\n    return g2 * 3\nreturn g1 * 2 + g2 * 3", [(13, 20)]),  # g1 checked, g2 not
        ("if g1 > 0:\n    pass\nreturn g1", [(12, 12)]),
        ("return torch.cat([g1, g2]).sum()", [(12, 16), (12, 16)]),
        ("return combine(g1, g2)", [(12, 16)]),  # this module's helper does arithmetic on both: one finding at the call
        ("a, b = grads\nreturn a * 2 + b.sum()", [(13, 16), (13, 24)]),
        ("a = grads[0]\nb = grads[1]\nreturn a * 2 + b.sum()", [(14, 16), (14, 24)]),
    ],
)
def test_unchecked_uses_are_flagged_once_per_gradient(body, expected):
    grads = "*grads" if body.startswith(("a, b = grads", "a = grads[0]")) else "g1, g2"
    assert sorted(agl017(function(body, grads))) == sorted(expected)


@pytest.mark.parametrize(
    "body, grads, materialize",
    [
        ("return g1 * 2 + g2 * 3", "g1, g2", "pass"),  # the default: zeros
        ("return g1 * 2 + g2 * 3", "g1, g2", "ctx.set_materialize_grads(True)"),
        ("return g * 2", "g", "ctx.set_materialize_grads(False)"),  # one output
        (
            "out = 0\nif g1 is not None:\n    out = out + g1 * 2\nif g2 is not None:\n    out = out + g2 * 3\nreturn out",
            "g1, g2",
            "ctx.set_materialize_grads(False)",
        ),
        (
            "g1 = torch.zeros(3) if g1 is None else g1\ng2 = fill(g2)\nreturn g1 * 2 + g2 * 3",
            "g1, g2",
            "ctx.set_materialize_grads(False)",
        ),
        ("return helper(g1, g2)", "g1, g2", "ctx.set_materialize_grads(False)"),  # not this module's: may handle None
        ("return combine_checked(g1, g2)", "g1, g2", "ctx.set_materialize_grads(False)"),
        (
            "a, b = grads\nif a is None or b is None:\n    return None\nreturn a * 2 + b * 3",
            "*grads",
            "ctx.set_materialize_grads(False)",
        ),
        ("a = grads[0]\nreturn a * 2", "*grads", "ctx.set_materialize_grads(False)"),  # which outputs exist is unknown
        ("return (g1 or 0) * 2", "g1, g2", "ctx.set_materialize_grads(False)"),
        ("return sum(g for g in grads if g is not None)", "*grads", "ctx.set_materialize_grads(False)"),
        ("return g1 if isinstance(g1, torch.Tensor) else None", "g1, g2", "ctx.set_materialize_grads(False)"),
        (
            "if any(g is None for g in (g1, g2)):\n    return None\nreturn g1 * 2 + g2 * 3",
            "g1, g2",
            "ctx.set_materialize_grads(False)",
        ),
    ],
)
def test_checked_default_and_single_output_are_silent(body, grads, materialize):
    assert agl017(function(body, grads, materialize)) == []


def test_setup_context_disabling_counts():
    source = textwrap.dedent(
        """\
        import torch

        class TwoOut(torch.autograd.Function):
            @staticmethod
            def forward(x):
                return x * 2, x * 3

            @staticmethod
            def setup_context(ctx, inputs, output):
                ctx.set_materialize_grads(False)

            @staticmethod
            def backward(ctx, g1, g2):
                return g1 * 2 + g2 * 3
        """
    )
    assert agl017(source) == [(14, 16), (14, 25)]


TWO_OUT = """
import torch
class TwoOut(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.set_materialize_grads(False)
        return x * 2, x * 3
    @staticmethod
    def backward(ctx, g1, g2):
        return BODY
"""
BUILDERS = "[('TwoOut.apply(<tensor>)', lambda s: [_agl_probes.leaf_tensor(s)])]"


def test_recipe_confirms_with_torchs_message_and_the_materialized_contrast():
    code = TWO_OUT.replace("BODY", "g1 * 2 + g2 * 3")
    verdict, evidence = run_recipe(code + f"agl017.check_materialize_grads(TwoOut.apply, {BUILDERS}, 'g2', 1)")
    assert verdict == "confirmed"
    assert (
        "unsupported operand type(s) for *: 'NoneType' and 'int'" in evidence
        and "materialized (torch's default) the same backward runs" in evidence
    )


def test_recipe_does_not_confirm_a_backward_that_handles_none():
    code = TWO_OUT.replace("BODY", "(0 if g1 is None else g1 * 2) + (0 if g2 is None else g2 * 3)")
    verdict, evidence = run_recipe(code + f"agl017.check_materialize_grads(TwoOut.apply, {BUILDERS}, 'g2', 1)")
    assert verdict == "not-reproduced", evidence


VALID = [
    # one gradient parameter: never None
    """\
        import torch


        class Square(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.set_materialize_grads(False)
                ctx.save_for_backward(x)
                return x * x

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return 2 * x * g
    """,
    # each gradient tested for None
    """\
        import torch


        class MainAndAux(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.set_materialize_grads(False)
                return x * 2, x * 3

            @staticmethod
            def backward(ctx, g_main, g_aux):
                grad = torch.zeros(())
                if g_main is not None:
                    grad = grad + 2 * g_main
                if g_aux is not None:
                    grad = grad + 3 * g_aux
                return grad
    """,
    # gradients are materialized (the default)
    """\
        import torch


        class Both(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2, x * 3

            @staticmethod
            def backward(ctx, g1, g2):
                return 2 * g1 + 3 * g2
    """,
    # gradients rebound before use
    """\
        import torch


        class Pair(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.set_materialize_grads(False)
                ctx.save_for_backward(x)
                return x * 2, x * 3

            @staticmethod
            def backward(ctx, g1, g2):
                (x,) = ctx.saved_tensors
                g1 = torch.zeros_like(x) if g1 is None else g1
                g2 = torch.zeros_like(x) if g2 is None else g2
                return 2 * g1 + 3 * g2
    """,
]

INVALID = [
    # arithmetic on both gradients, either may be None
    """\
        import torch


        class MainAndAux(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w_main, w_aux):
                ctx.set_materialize_grads(False)
                ctx.save_for_backward(x, w_main, w_aux)
                return x @ w_main, x @ w_aux

            @staticmethod
            def backward(ctx, g_main, g_aux):
                x, w_main, w_aux = ctx.saved_tensors
                grad_x = g_main @ w_main.t() + g_aux @ w_aux.t()  # AGL017:18 AGL017:40
                return grad_x, x.t() @ g_main, x.t() @ g_aux
    """,
    # arithmetic on one gradient, a method call on the other
    """\
        import torch


        class ValueAndIndex(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.set_materialize_grads(False)
                return x * 2, x.sum()

            @staticmethod
            def backward(ctx, g_value, g_sum):
                return g_value * 2 + g_sum.expand(g_value.shape)  # AGL017:16 AGL017:30
    """,
    # two gradients named from *grads
    """\
        import torch


        class Split(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.set_materialize_grads(False)
                return x * 2, x * 3

            @staticmethod
            def backward(ctx, *grads):
                g_a, g_b = grads
                return g_a * 2 + g_b * 3  # AGL017:16 AGL017:26
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL017", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL017", source) == marked_positions("AGL017", source)

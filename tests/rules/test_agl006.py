"""AGL006 forward-called-directly: direct calls of forward/backward, and the recipe that says `not-reproduced`
on correct code (real torch, no mocks)."""

from __future__ import annotations

import textwrap

import pytest
from snippets import marked_positions, reported_positions
from test_agl005 import HEADER, STATIC, findings
from test_confirm import run_recipe


def test_direct_calls_outside_functions_and_outside_no_grad():
    assert findings(
        """
        class Shifted(Scale):
            @staticmethod
            def forward(ctx, x, alpha):
                return Scale.forward(ctx, x, alpha) + 1

        class Twice(Function):
            @staticmethod
            def forward(ctx, x, alpha):
                return Scale.forward(ctx, Scale.forward(ctx, x, alpha), alpha)

            @staticmethod
            def backward(ctx, g):
                return Scale.backward(ctx, Scale.backward(ctx, g)[0])[0], None

        @torch.no_grad()
        def infer(x):
            return Scale.forward(None, x, 2.0)

        def train(x, g):
            with torch.set_grad_enabled(False):
                Scale.forward(None, x, 2.0)
            with torch.set_grad_enabled(True):
                y = Scale.forward(None, x, 2.0)
            return y, Scale.backward(None, g)
        """,
        prefix=STATIC,
    ) == [(35, "AGL006", 13), (36, "AGL006", 15)]


def test_direct_call_recipe_does_not_confirm_a_call_that_records_the_custom_node():
    code = """
    class Wrapped(Function):
        @staticmethod
        def forward(ctx, x):
            return Wrapped.apply(x) if ctx is None else x * 2
        @staticmethod
        def backward(ctx, g):
            return g * 2
    agl006.compare_direct_call(Wrapped, 'forward', ['None', None], True, 'Wrapped.forward(None, x)')
    """
    verdict, evidence = run_recipe(HEADER + textwrap.dedent(code))
    assert verdict == "not-reproduced" and "WrappedBackward" in evidence


def test_direct_backward_call_that_runs_is_inconclusive():
    code = STATIC + "agl006.compare_direct_call(Scale, 'backward', ['None', None], True, 'Scale.backward(None, g)')\n"
    verdict, evidence = run_recipe(code)
    # Scale.backward reads ctx.alpha from None: the call as written crashes.
    assert verdict == "confirmed" and "'NoneType' object has no attribute 'alpha'" in evidence
    code = HEADER + textwrap.dedent(
        """
        class Neg(Function):
            @staticmethod
            def forward(ctx, x):
                return -x
            @staticmethod
            def backward(ctx, g):
                return -g
        agl006.compare_direct_call(Neg, 'backward', ['None', None], True, 'Neg.backward(None, g)')
        """
    )
    assert run_recipe(code)[0] == "inconclusive"


VALID = [
    # a subclass calling its base's forward and backward on its own ctx
    """\
        import torch


        class Scale(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2

            @staticmethod
            def backward(ctx, g):
                return g * 2


        class ShiftedScale(Scale):
            @staticmethod
            def forward(ctx, x):
                return Scale.forward(ctx, x) + 1

            @staticmethod
            def backward(ctx, g):
                return Scale.backward(ctx, g)
    """,
    # a direct call under no_grad: nothing is recorded, so nothing is bypassed
    """\
        import torch


        class RoundSTE(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return torch.round(x)

            @staticmethod
            def backward(ctx, g):
                return g


        @torch.no_grad()
        def export_weights(w):
            return RoundSTE.forward(None, w)
    """,
    # the forward of an nn.Module, not a Function
    """\
        import torch.nn as nn


        class Wrapped(nn.Linear):
            def forward(self, x):
                return nn.Linear.forward(self, x) * 2
    """,
    # the call under set_grad_enabled(False)
    """\
        import torch


        class Neg(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return -x

            @staticmethod
            def backward(ctx, g):
                return -g


        def negate_frozen(x):
            with torch.set_grad_enabled(False):
                return Neg.forward(None, x)
    """,
]

INVALID = [
    # forward called directly: the custom backward is bypassed
    """\
        import torch


        class RoundSTE(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return torch.round(x)

            @staticmethod
            def backward(ctx, g):
                return g


        def fake_quant(x, scale):
            return RoundSTE.forward(None, x / scale) * scale  # AGL006:12
    """,
    # backward called directly as a gradient formula
    """\
        import torch


        class Neg(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return -x

            @staticmethod
            def backward(ctx, g):
                return -g


        def grad_of_neg(g):
            return Neg.backward(None, g)  # AGL006:12
    """,
    # forward called in an nn.Module's forward
    """\
        import torch
        import torch.nn as nn


        class Sign(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return torch.sign(x)

            @staticmethod
            def backward(ctx, g):
                return g


        class Binarize(nn.Module):
            def forward(self, x):
                return Sign.forward(None, x)  # AGL006:16
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL006", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL006", source) == marked_positions("AGL006", source)

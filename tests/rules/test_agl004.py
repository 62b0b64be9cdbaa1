"""AGL004 non-differentiable-activation: which helper uses are reported, and what the message says."""

from __future__ import annotations

import textwrap

import pytest
from snippets import marked_positions, reported_positions

from autograd_lint import Config, lint_source

HEADER = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n"

QUANTIZE = """
def quantize(w, scale):
    return torch.round(w / scale) * scale
"""


def agl004(source: str):
    return lint_source(HEADER + textwrap.dedent(source), "case.py", Config(select=("AGL004",)))


def layer(forward_body: str) -> str:
    return (
        QUANTIZE
        + "\n\nclass QLinear(nn.Linear):\n    def forward(self, x):\n"
        + textwrap.indent(textwrap.dedent(forward_body).strip(), " " * 8)
        + "\n"
    )


def test_helper_used_as_a_value_by_a_forward_is_reported_with_the_consequence_and_the_fix():
    found = agl004(layer("return F.linear(x, quantize(self.weight, 0.1), self.bias)"))
    assert [(d.line, d.column) for d in found] == [(7, 12)]
    assert found[0].message == "`torch.round(w / scale)` reaches what `quantize` returns"
    explanation = found[0].explanation
    assert explanation.startswith("`quantize` returns what `QLinear.forward` uses as a value.")
    assert "`w / scale` and every weight before it get no gradient" in explanation
    assert "matters if they are learnable" in explanation
    assert "x + (q - x).detach()" in explanation and "autograd.Function" in explanation


@pytest.mark.parametrize(
    "forward_body",
    [
        # a straight-through estimator in the caller, in three spellings
        "w = self.weight\nreturn F.linear(x, w + (quantize(w, 0.1) - w).detach(), self.bias)",
        "q = quantize(self.weight, 0.1)\nreturn F.linear(x, q + self.weight - self.weight.detach(), self.bias)",
        "q = quantize(self.weight, 0.1)\nreturn F.linear(x, (q - self.weight).detach() + self.weight, self.bias)",
        # the helper only sees values without a gradient
        "return F.linear(x, quantize(self.weight.detach(), 0.1), self.bias)",
        "with torch.no_grad():\n    w = quantize(self.weight, 0.1)\nreturn F.linear(x, w, self.bias)",
        # its result is only an index or a Python number
        "step = int(quantize(self.weight, 0.1).abs().max())\nreturn F.linear(x, self.weight, self.bias) * step",
    ],
)
def test_helper_results_that_lose_no_gradient_are_silent(forward_body):
    assert agl004(layer(forward_body)) == []


def test_a_helper_nothing_in_the_file_calls_is_silent():
    assert agl004(QUANTIZE) == []


def test_helper_reached_through_another_helper_is_reported_naming_the_forward():
    source = QUANTIZE + textwrap.dedent(
        """

        def quantize_weight(layer):
            return quantize(layer.weight, 0.05)


        class QConv(nn.Conv2d):
            def forward(self, x):
                return F.conv2d(x, quantize_weight(self), self.bias)
        """
    )
    found = agl004(source)
    assert [(d.line, d.column) for d in found] == [(7, 12)]
    assert "`quantize` returns what `QConv.forward` uses as a value" in found[0].explanation


def test_integer_output_of_a_forward_is_silent_until_made_float_again():
    source = """
    class Bucketize(nn.Module):
        def forward(self, x):
            return (x * 10).long()


    class Posterize(nn.Module):
        def forward(self, x):
            levels = (x * 10).long()
            return levels.float() / 10
    """
    found = agl004(source)
    assert [(d.line, d.column) for d in found] == [(13, 18)]
    assert "reaches what `Posterize.forward` returns" in found[0].message


def test_an_op_imported_under_an_alias_is_found():
    source = """
    from torch import sign as hard_sign


    class BinaryAct(nn.Module):
        def forward(self, x):
            return hard_sign(x)
    """
    found = agl004(source)
    assert [(d.line, d.column) for d in found] == [(11, 16)]
    assert "At `hard_sign(x)`, sign has a gradient of exactly zero" in found[0].explanation


VALID = [
    # inside a Function's forward: the Function supplies the backward
    """\
        import torch


        class SignSTE(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return torch.sign(x)

            @staticmethod
            def backward(ctx, g):
                return g


        def binarize(x):
            return SignSTE.apply(x)
    """,
    # a straight-through estimator
    """\
        import torch
        import torch.nn as nn
        import torch.nn.functional as F


        class BinaryLinear(nn.Linear):
            def forward(self, x):
                w = self.weight
                w_bin = w + (torch.sign(w) - w).detach()
                return F.linear(x, w_bin, self.bias)
    """,
    # nothing is recorded under no_grad
    """\
        import torch
        import torch.nn as nn


        class Accuracy(nn.Module):
            def forward(self, logits, labels):
                with torch.no_grad():
                    hits = (logits.argmax(-1) == labels).float()
                return hits.mean()
    """,
    # an integer result kept as an integer index
    """\
        import torch.nn as nn


        class Bucketed(nn.Module):
            def forward(self, x):
                idx = (x * 16).floor().long()
                return self.table[idx]
    """,
    # a sign factor of another differentiable term
    """\
        import torch
        import torch.nn as nn


        class SymLog(nn.Module):
            def forward(self, x):
                return torch.sign(x) * torch.log1p(x.abs())
    """,
    # a comparison as the condition of torch.where with differentiable branches
    """\
        import torch
        import torch.nn as nn


        class Leaky(nn.Module):
            def forward(self, x):
                return torch.where(x > 0, x, 0.2 * x)
    """,
    # the operand beside its rounded part (a wrap keeps slope 1)
    """\
        import math

        import torch
        import torch.nn as nn


        class Wrap(nn.Module):
            def forward(self, angle):
                return angle - 2 * math.pi * torch.floor(angle / (2 * math.pi))
    """,
]

INVALID = [
    # a sign of the weight used as a value
    """\
        import torch
        import torch.nn as nn
        import torch.nn.functional as F


        class BinaryLinear(nn.Linear):
            def forward(self, x):
                w_bin = torch.sign(self.weight)  # AGL004:17
                return F.linear(x, w_bin, self.bias)
    """,
    # a step activation returned as a float
    """\
        import torch.nn as nn


        class Step(nn.Module):
            def forward(self, x):
                return (x > 0).float()  # AGL004:16
    """,
    # quantize-dequantize in a helper a forward uses
    """\
        import torch
        import torch.nn as nn
        import torch.nn.functional as F


        def quantize(w, step):
            return torch.round(w / step) * step  # AGL004:12


        class QLinear(nn.Linear):
            def forward(self, x):
                return F.linear(x, quantize(self.weight, 0.1), self.bias)
    """,
    # an integer made float again: reported where the value loses its gradient
    """\
        import torch.nn as nn


        class Posterize(nn.Module):
            def forward(self, x):
                levels = (x * 8).long()  # AGL004:18
                return levels.float() / 8
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL004", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL004", source) == marked_positions("AGL004", source)

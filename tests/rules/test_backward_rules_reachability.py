"""Rules about backward's body say nothing where autograd can never call that backward."""

from __future__ import annotations

import textwrap

import pytest
from snippets import EVERY_RULE

from autograd_lint import lint_source

TEMPLATE = textwrap.dedent("""\
    import torch
    import topk_ext

    class TopK(torch.autograd.Function):
        @staticmethod
        def forward(ctx, scores, k):
            values, indices = topk_ext.forward(scores, k)
            ctx.save_for_backward(indices)
            {returned}
        @staticmethod
        def backward(ctx, grad):
            (indices,) = ctx.saved_tensors
            grad.mul_(2)
            return topk_ext.backward(grad, indices), None


    def top_k(scores, k):
        return TopK.apply(scores, k)
    """)


def reported(returned: str) -> list[tuple[int, str]]:
    return sorted((d.line, d.code) for d in lint_source(TEMPLATE.format(returned=returned), "topk.py", EVERY_RULE))


def test_a_float_output_makes_backward_reachable_and_reported():
    assert reported("return values") == [(13, "AGL008"), (14, "AGL010")]


@pytest.mark.parametrize(
    "returned",
    [
        "return indices.long()",
        "ctx.mark_non_differentiable(values)\n        return values",
    ],
)
def test_an_output_that_cannot_require_grad_silences_the_backward_rules(returned):
    assert reported(returned) == []


RANDOM_BACKWARD = textwrap.dedent("""\
    import torch

    class NoisyRound(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, k):
            noise = torch.rand_like(x)
            {returned}
        @staticmethod
        def backward(ctx, grad):
            return grad * torch.rand_like(grad), grad


    def noisy_round(x):
        return NoisyRound.apply(x, 3)
    """)


def test_rules_on_gradients_and_randomness_follow_reachability_too():
    def found(returned):
        source = RANDOM_BACKWARD.format(returned=returned)
        return sorted((d.line, d.code) for d in lint_source(source, "noisy.py", EVERY_RULE))

    assert found("return x + noise") == [(10, "AGL011"), (10, "AGL016")]
    assert found("return (x + noise).round().long()") == []

"""AGL021 bad-grad-shape: static cases and the confirm recipe under real torch."""

from __future__ import annotations

import textwrap

import pytest
from snippets import marked_positions, reported_positions
from test_confirm import run_recipe

from autograd_lint import Config, lint_source


def agl021(source: str) -> list[tuple[int, int]]:
    found = lint_source(textwrap.dedent(source), "case.py", Config(select=("AGL021",)))
    return [(d.line, d.column) for d in found]


def last_line(source: str) -> tuple[int, int]:
    """Where a finding on backward's final `return <grad>` is reported."""
    return (len(source.splitlines()), 16)


def function(forward_body: str, backward_body: str, forward_params: str = "x", backward_params: str = "g") -> str:
    return (
        "import torch\nfrom torch.autograd import Function\n\n"
        "class F(Function):\n"
        "    @staticmethod\n"
        f"    def forward(ctx, {forward_params}):\n"
        + textwrap.indent(textwrap.dedent(forward_body).strip(), " " * 8)
        + "\n\n    @staticmethod\n"
        f"    def backward(ctx, {backward_params}):\n"
        + textwrap.indent(textwrap.dedent(backward_body).strip(), " " * 8)
        + "\n"
    )


@pytest.mark.parametrize(
    "forward",
    [
        "return x.sum(1)",
        "return torch.sum(x)",
        "return x.mean(dim=-1, keepdim=True)",
        "return x.max(1)[0]",
        "return torch.max(x, dim=1).values",
        "return torch.mean(input=x, dim=1)",
        "values, indices = x.min(-1)\nreturn values",
        "return x.flatten(1)",
        "return x.reshape(-1)",
        "return x.contiguous().view(x.size(0), -1)",
        "return x.t()",
        "return x.mT",
        "return x.transpose(-1, -2).contiguous()",
        "out = x.permute(0, 2, 1)\nreturn out",
    ],
)
def test_shape_changing_forward_with_raw_gradient_is_flagged(forward):
    source = function(forward, "return g")
    assert agl021(source) == [last_line(source)]


@pytest.mark.parametrize(
    "forward, backward",
    [
        ("return x.unsqueeze(0)", "return g"),  # broadcast: torch sums it back
        ("return x.expand(2, *x.shape)", "return g"),
        ("return x.view(x.shape)", "return g"),
        ("return x.view(torch.float32)", "return g"),
        ("return x.view(*ctx.shape)", "return g"),
        ("return x.max(x * 2)", "return g"),  # elementwise max of two tensors
        ("return x.sum(1) + 1", "return g"),
        ("x = x.reshape(-1)\nreturn x.sum(0)", "return g"),  # input rebound
        ("if ctx.flag:\n    return x\nreturn x.sum(1)", "return g"),  # not a reduction on every return
        ("ctx.shape = x.shape\nreturn x.sum(1)", "return g.unsqueeze(1).expand(ctx.shape)"),
        ("ctx.w = x\nreturn x.sum(1)", "return g * ctx.w"),  # broadcasts against a saved tensor
        ("return x.sum(1)", "g = g.unsqueeze(1)\nreturn g"),
        ("return x.sum(1)", "g *= 2\nreturn g"),
    ],
)
def test_look_alikes_are_silent(forward, backward):
    assert agl021(function(forward, backward)) == []


def test_the_gradient_must_be_the_matching_outputs_and_at_the_reduced_inputs_position():
    forward = "return x, x.sum(1)"
    assert agl021(function(forward, "return g_full", backward_params="g_full, g_sum")) == []
    flagged = function(forward, "return g_sum", backward_params="g_full, g_sum")
    assert agl021(flagged) == [last_line(flagged)]
    two_inputs = "return x.sum(1)"
    assert agl021(function(two_inputs, "return None, g", forward_params="x, w")) == []
    flagged = function(two_inputs, "return g, None", forward_params="x, w")
    assert agl021(flagged) == [last_line(flagged)]


def test_scaling_by_a_number_or_a_shape_keeps_the_flag():
    forward = "ctx.n = x.shape[1]\nctx.w = 0.5\nreturn x.mean(1)"
    for backward in ("return g / ctx.n", "grad = -g * ctx.w\nreturn grad"):
        source = function(forward, backward)
        assert agl021(source) == [last_line(source)]
    assert agl021(function(forward.replace("ctx.w = 0.5", "ctx.w = x"), "return g * ctx.w")) == []


RECIPE = """
import torch
from torch.autograd import Function

class F(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return {forward}

    @staticmethod
    def backward(ctx, g):
        return {backward}

_agl_builders = [("F.apply(<tensor>)", lambda shape: [_agl_probes.leaf_tensor(shape)])]
agl021.check_grad_shape(F.apply, _agl_builders, 0)
"""


def test_recipe_confirms_with_torchs_message_for_the_input():
    verdict, evidence = run_recipe(RECIPE.format(forward="x.sum(-1)", backward="g"))
    assert verdict == "confirmed"
    assert "returned an invalid gradient at index 0 - got [3] but expected shape compatible with [3, 4]" in evidence


def test_recipe_confirms_a_transpose_that_a_square_input_would_hide():
    verdict, evidence = run_recipe(RECIPE.format(forward="x.transpose(0, -1)", backward="g"))
    assert verdict == "confirmed" and "got [4, 3] but expected shape compatible with [3, 4]" in evidence


@pytest.mark.parametrize(
    "forward, backward",
    [
        ("x.sum(-1)", "g.unsqueeze(-1).expand(ctx.shape)"),
        ("x.flatten()", "g.reshape(ctx.shape)"),
        ("x.transpose(0, -1)", "g.transpose(0, -1)"),
        ("x.unsqueeze(0)", "g"),
    ],
)
def test_recipe_does_not_confirm_correct_functions(forward, backward):
    verdict, evidence = run_recipe(RECIPE.format(forward=forward, backward=backward))
    assert verdict == "not-reproduced", evidence


@pytest.mark.parametrize(
    "helper, flagged",
    [
        ("def pool(t, dim=1):\n    return t.mean(dim=dim)\n", True),
        ("def pool(t, dim=1):\n    out = t.flatten(1)\n    return out\n", True),
        ("def pool(t, dim=1):\n    return t * 2\n", False),  # shape kept
        (
            "def pool(t, dim=1):\n    if dim is None:\n        return t\n    return t.sum(dim)\n",
            False,
        ),  # not on every return
    ],
)
def test_a_module_function_that_changes_the_shape_is_followed(helper, flagged):
    source = helper + "\n\n" + function("return pool(x)", "return g")
    assert bool(agl021(source)) is flagged


def test_torch_linalg_reduction():
    source = function("return torch.linalg.vector_norm(x, dim=-1)", "return g")
    assert agl021(source) == [last_line(source)]


VALID = [
    # a broadcast torch sums back itself
    """\
        import torch


        class AddBatch(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.unsqueeze(0)

            @staticmethod
            def backward(ctx, g):
                return g
    """,
    # a view whose target shape may be the input's own
    """\
        import torch


        class Reshape(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, shape):
                ctx.in_shape = x.shape
                return x.view(*shape)

            @staticmethod
            def backward(ctx, g):
                return g, None
    """,
    # an elementwise max, not a reduction
    """\
        import torch


        class Floor(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, other):
                ctx.save_for_backward(x, other)
                return torch.max(x, other)

            @staticmethod
            def backward(ctx, g):
                x, other = ctx.saved_tensors
                return g * (x >= other), g * (x < other)
    """,
    # a gradient backward expands back
    """\
        import torch


        class MeanPool(torch.autograd.Function):
            @staticmethod
            def forward(ctx, hidden):
                ctx.shape = hidden.shape
                return hidden.mean(dim=1)

            @staticmethod
            def backward(ctx, g):
                return g.unsqueeze(1).expand(ctx.shape) / ctx.shape[1]
    """,
    # an output built from more than the reduction
    """\
        import torch


        class SumBias(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, bias):
                return x.sum(1) + bias

            @staticmethod
            def backward(ctx, g):
                return g, g
    """,
]

INVALID = [
    # the pooled gradient returned for the unpooled input
    """\
        import torch


        class TimeMeanPool(torch.autograd.Function):
            @staticmethod
            def forward(ctx, hidden):
                ctx.steps = hidden.shape[1]
                return hidden.mean(dim=1)

            @staticmethod
            def backward(ctx, g):
                return g / ctx.steps  # AGL021:16
    """,
    # a flattened gradient for the unflattened input
    """\
        import torch


        class Flatten(torch.autograd.Function):
            @staticmethod
            def forward(ctx, features):
                return features.view(features.size(0), -1)

            @staticmethod
            def backward(ctx, grad_flat):
                return grad_flat  # AGL021:16
    """,
    # a permuted gradient returned unpermuted
    """\
        import torch


        class ChannelsFirst(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.permute(0, 2, 1)

            @staticmethod
            def backward(ctx, grad_output):
                return grad_output  # AGL021:16
    """,
    # a sum over all elements
    """\
        import torch


        class Total(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.sum()

            @staticmethod
            def backward(ctx, grad_total):
                return grad_total  # AGL021:16
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL021", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL021", source) == marked_positions("AGL021", source)

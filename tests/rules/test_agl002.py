"""AGL002 backward-arity-mismatch: the snippet table (the realistic cases are fixtures/agl002/; tests/snippets.py
SNIPPET is the CLI tests' AGL002 finding)."""

from __future__ import annotations

import pytest
from snippets import marked_positions, reported_positions

VALID = [
    # extra trailing Nones
    """\
        import torch


        class Scale(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, scale):
                ctx.scale = scale
                return x * scale

            @staticmethod
            def backward(ctx, g):
                return g * ctx.scale, None, None
    """,
    # a forward taking *args: the count is known only at run time
    """\
        import torch


        class Sum(torch.autograd.Function):
            @staticmethod
            def forward(ctx, *tensors):
                ctx.n = len(tensors)
                return sum(tensors)

            @staticmethod
            def backward(ctx, g):
                return g
    """,
    # a return whose length cannot be read from the source
    """\
        import torch


        class Concat(torch.autograd.Function):
            @staticmethod
            def forward(ctx, a, b):
                ctx.split = a.shape[0]
                return torch.cat([a, b])

            @staticmethod
            def backward(ctx, g):
                grads = g.split([ctx.split, g.shape[0] - ctx.split])
                return tuple(grads)
    """,
    # a default that no call site passes: the count matches every call
    """\
        import torch


        class Scale(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, scale=2.0):
                ctx.scale = scale
                return x * scale

            @staticmethod
            def backward(ctx, g):
                return g * ctx.scale


        def double(x):
            return Scale.apply(x)
    """,
    # cls in classmethods is no input
    """\
        import torch


        class Square(torch.autograd.Function):
            @classmethod
            def forward(cls, ctx, x):
                ctx.save_for_backward(x)
                return x * x

            @classmethod
            def backward(cls, ctx, g):
                (x,) = ctx.saved_tensors
                return 2 * x * g
    """,
    # a name bound to a tuple of the right length
    """\
        import torch


        class Mul(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w):
                ctx.save_for_backward(x, w)
                return x * w

            @staticmethod
            def backward(ctx, g):
                x, w = ctx.saved_tensors
                grads = (g * w, g * x)
                return grads
    """,
    # every output an integer tensor: backward never runs
    """\
        import torch


        class TopIndices(torch.autograd.Function):
            @staticmethod
            def forward(ctx, scores, k):
                return scores.argsort(descending=True)[:k]

            @staticmethod
            def backward(ctx, g):
                return g
    """,
]

INVALID = [
    # one gradient for two inputs
    """\
        import torch


        class Scale(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, scale):
                ctx.scale = scale
                return x * scale

            @staticmethod
            def backward(ctx, g):
                return g * ctx.scale  # AGL002:9
    """,
    # a returned list is one object
    """\
        import torch


        class Modulate(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, gamma):
                ctx.save_for_backward(x, gamma)
                return x * gamma

            @staticmethod
            def backward(ctx, g):
                x, gamma = ctx.saved_tensors
                return [g * gamma, g * x]  # AGL002:9
    """,
    # a call site passes the optional argument that backward has no slot for
    """\
        import torch


        class Scale(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, scale=2.0):
                ctx.scale = scale
                return x * scale

            @staticmethod
            def backward(ctx, g):
                return g * ctx.scale  # AGL002:9


        def half(x):
            return Scale.apply(x, 0.5)
    """,
    # a bias gradient for a bias the call never passes
    """\
        import torch


        class Linear(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w, bias=None):
                ctx.save_for_backward(x, w)
                out = x @ w.t()
                return out if bias is None else out + bias

            @staticmethod
            def backward(ctx, g):
                x, w = ctx.saved_tensors
                return g @ w, g.t() @ x, g.sum(0)  # AGL002:9


        def linear(x, w):
            return Linear.apply(x, w)
    """,
    # setup_context binds the defaults: every parameter counts
    """\
        import torch


        class Scale(torch.autograd.Function):
            @staticmethod
            def forward(x, scale=2.0):
                return x * scale

            @staticmethod
            def setup_context(ctx, inputs, output):
                ctx.scale = inputs[1]

            @staticmethod
            def backward(ctx, g):
                return g * ctx.scale  # AGL002:9
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL002", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL002", source) == marked_positions("AGL002", source)

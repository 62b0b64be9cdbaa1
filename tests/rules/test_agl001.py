"""AGL001 shared-state-in-backward: the snippet table (the realistic cases are fixtures/agl001/)."""

from __future__ import annotations

import pytest
from snippets import marked_positions, reported_positions

VALID = [
    # a class attribute only read, never written after the class body
    """\
        import torch


        class SafeLog(torch.autograd.Function):
            EPS = 1e-6

            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return torch.log(x + SafeLog.EPS)

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return g / (x + SafeLog.EPS)
    """,
    # the value snapshotted on ctx in forward
    """\
        import torch


        class GradDecay(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, alpha):
                ctx.alpha = float(alpha)
                return x.view_as(x)

            @staticmethod
            def backward(ctx, g):
                return g * ctx.alpha, None


        def grad_decay(x, alpha):
            return GradDecay.apply(x, alpha)
    """,
    # shared state read in forward only: captured when forward runs
    """\
        import torch


        class Shift(torch.autograd.Function):
            offset = 0.0

            @staticmethod
            def forward(ctx, x):
                return x + Shift.offset

            @staticmethod
            def backward(ctx, g):
                return g


        def shift(x, offset):
            Shift.offset = offset
            return Shift.apply(x)
    """,
    # a closure factory: a new class per call, `lam` never reassigned
    """\
        import torch


        def make_reversal(lam):
            class Reverse(torch.autograd.Function):
                @staticmethod
                def forward(ctx, x):
                    return x.view_as(x)

                @staticmethod
                def backward(ctx, g):
                    return -lam * g

            return Reverse.apply
    """,
    # a module global set once at import from the environment
    """\
        import os

        import torch

        GRAD_SCALE = float(os.environ.get("GRAD_SCALE", "1.0"))


        class Scaled(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.clone()

            @staticmethod
            def backward(ctx, g):
                return g * GRAD_SCALE
    """,
    # a write to a copy of the container backward reads
    """\
        import torch

        DEFAULTS = {"beta": 1.0}


        class Smooth(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.clone()

            @staticmethod
            def backward(ctx, g):
                return g * DEFAULTS["beta"]


        def smooth(x, beta):
            opts = dict(DEFAULTS)
            opts["beta"] = beta
            return Smooth.apply(x)
    """,
    # a backward torch never calls: the only output is marked non-differentiable
    """\
        import torch


        class Bucket(torch.autograd.Function):
            edges = None

            @staticmethod
            def forward(ctx, x):
                out = torch.bucketize(x, Bucket.edges)
                ctx.mark_non_differentiable(out)
                return out

            @staticmethod
            def backward(ctx, g):
                return g * Bucket.edges.numel()


        def bucket(x, edges):
            Bucket.edges = edges
            return Bucket.apply(x)
    """,
]

INVALID = [
    # a class attribute written right before each apply
    """\
        import torch


        class GradDecay(torch.autograd.Function):
            alpha = 1.0

            @staticmethod
            def forward(ctx, x):
                return x.view_as(x)

            @staticmethod
            def backward(ctx, g):
                return g * GradDecay.alpha  # AGL001:20


        def grad_decay(x, alpha):
            GradDecay.alpha = alpha
            return GradDecay.apply(x)
    """,
    # a module global rebound with `global` at run time
    """\
        import torch

        LAMBDA = 1.0


        def set_lambda(value):
            global LAMBDA
            LAMBDA = value


        class ReverseGrad(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.view_as(x)

            @staticmethod
            def backward(ctx, g):
                return -LAMBDA * g  # AGL001:17
    """,
    # a mutable module container that a configure function writes
    """\
        import torch

        CONFIG = {"scale": 1.0}


        def configure(scale):
            CONFIG["scale"] = scale


        class Scale(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2

            @staticmethod
            def backward(ctx, g):
                return g * 2 * CONFIG["scale"]  # AGL001:24
    """,
    # a class attribute written by forward itself: every apply before backward shares the last value
    """\
        import torch


        class Clip(torch.autograd.Function):
            bound = 1.0

            @staticmethod
            def forward(ctx, x, bound):
                Clip.bound = bound
                return x.clamp(-bound, bound)

            @staticmethod
            def backward(ctx, g):
                return g.clamp(-Clip.bound, Clip.bound), None  # AGL001:25 AGL001:37
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL001", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL001", source) == marked_positions("AGL001", source)

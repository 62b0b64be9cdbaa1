"""AGL013 save-for-backward-twice: static cases and the confirm recipe under real torch."""

from __future__ import annotations

import pytest
from snippets import marked_positions, reported_positions
from test_agl007 import CORRECT, found, function
from test_confirm import run_recipe


@pytest.mark.parametrize(
    "body, expected",
    [
        ("ctx.save_for_backward(x)\nctx.save_for_backward(w)", [(8, 9)]),
        ("ctx.save_for_backward(x, w)\nif w.dim() > 1:\n    ctx.save_for_backward(w)", [(9, 13)]),
        ("for t in (x, w):\n    ctx.save_for_backward(t)", [(8, 13)]),
        ("while x.sum() > 0:\n    x = x - 1\n    ctx.save_for_backward(x)", [(9, 13)]),
        ("with torch.no_grad():\n    ctx.save_for_backward(x, w)\nctx.save_for_backward(x)", [(9, 9)]),
        ("try:\n    ctx.save_for_backward(x)\nexcept RuntimeError:\n    ctx.save_for_backward(w)", [(10, 13)]),
        ("ctx.save_for_backward(x)\nctx.save_for_backward(w)\nctx.save_for_backward(x * 2)", [(8, 9), (9, 9)]),
        ("ctx.save_for_backward(x, w)\nctx.save_for_backward(x * w, x)", [(8, 9)]),  # w is lost
        # One-line suites hold small statements, not statements (once skipped: no finding).
        ("ctx.save_for_backward(x)\nif w.dim() > 1: ctx.save_for_backward(w)", [(8, 25)]),
        ("for t in (x, w): ctx.save_for_backward(t)", [(7, 26)]),
    ],
)
def test_second_save_on_one_path_is_flagged(body, expected):
    source = function(body + "\nreturn x * w", "x, w", backward="return g, g")
    assert found("AGL013", source) == expected


def test_superset_resave_is_flagged_when_backward_unpacks_the_first_calls_tensors():
    body = "ctx.save_for_backward(x, w)\ny = x * w\nctx.save_for_backward(x, w, y)\nreturn y"
    unpacks_two = function(body, "x, w", backward="x, w = ctx.saved_tensors\n        return g * w, g * x")
    unpacks_three = function(body, "x, w", backward="x, w, y = ctx.saved_tensors\n        return g * w, g * x")
    assert found("AGL013", unpacks_two) == [(9, 9)]
    assert found("AGL013", unpacks_three) == []


@pytest.mark.parametrize(
    "body",
    [
        "ctx.save_for_backward(x, w)",
        "ctx.save_for_backward(x)\ny = x * w\nctx.save_for_backward(x, w, y)",  # a superset: the first is only redundant
        "with torch.no_grad():\n    ctx.save_for_backward(x)\nctx.save_for_backward(x, w)",
        "if w is None:\n    ctx.save_for_backward(x)\nelse:\n    ctx.save_for_backward(x, w)",
        "if x.dim() == 1:\n    ctx.save_for_backward(x)\nelif x.dim() == 2:\n    ctx.save_for_backward(w)\nelse:\n    ctx.save_for_backward(x, w)",
        "if w is None:\n    ctx.save_for_backward(x)\n    return x * 2\nctx.save_for_backward(x, w)",
        "if w is None: ctx.save_for_backward(x); return x * 2\nctx.save_for_backward(x, w)",
        "if w is None:\n    raise ValueError('w')\n    ctx.save_for_backward(x)\nctx.save_for_backward(x, w)",
        "ctx.save_for_backward()\nctx.save_for_backward(x, w)",
        "ctx.save_for_backward(None)\nctx.save_for_backward(x, w)",
        "for t in (x, w):\n    if t.requires_grad:\n        ctx.save_for_backward(t)\n        break",
        "def later():\n    ctx.save_for_backward(w)\nctx.save_for_backward(x)",
        "match x.dim():\n    case 1:\n        ctx.save_for_backward(x)\n    case _:\n        ctx.save_for_backward(w)",
    ],
)
def test_one_save_per_path_is_silent(body):
    source = function(body + "\nreturn x * w", "x, w", backward="return g, g")
    assert found("AGL013", source) == []


def test_recipe_does_not_confirm_correct_code():
    assert run_recipe(CORRECT + "agl013.check_save_twice(Square.apply, BUILDERS)")[0] == "not-reproduced"


def test_save_twice_with_lost_duplicate_is_not_reproduced():
    """The second call saves again what the first saved: nothing the gradients need is lost."""
    code = """
import torch
class Twice(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.save_for_backward(x)
        return x * x
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g
agl013.check_save_twice(Twice.apply, [("Twice.apply(<tensor>)", lambda s: [_agl_probes.leaf_tensor(s)])])
"""
    verdict, evidence = run_recipe(code)
    assert verdict == "not-reproduced" and "saved_tensors holds 1" in evidence


VALID = [
    # one call with every tensor
    """\
        import torch


        class Bilinear(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w):
                ctx.save_for_backward(x, w)
                return x * w

            @staticmethod
            def backward(ctx, g):
                x, w = ctx.saved_tensors
                return g * w, g * x
    """,
    # calls in exclusive branches
    """\
        import torch


        class MaybeScaled(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w):
                if w is None:
                    ctx.save_for_backward(x)
                    return x * 2
                else:
                    ctx.save_for_backward(x, w)
                    return x * w

            @staticmethod
            def backward(ctx, g):
                return g, None
    """,
    # a path that returns before the second call
    """\
        import torch


        class Early(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w):
                if w is None:
                    ctx.save_for_backward(x)
                    return x * 2
                ctx.save_for_backward(x, w)
                return x * w

            @staticmethod
            def backward(ctx, g):
                return g, None
    """,
    # a superset saved again: the first call is only redundant
    """\
        import torch


        class Hidden(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w):
                ctx.save_for_backward(x, w)
                h = torch.tanh(x * w)
                ctx.save_for_backward(x, w, h)
                return h

            @staticmethod
            def backward(ctx, g):
                x, w, h = ctx.saved_tensors
                d = g * (1 - h * h)
                return d * w, d * x
    """,
    # a first call that saves nothing
    """\
        import torch


        class Reset(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward()
                ctx.save_for_backward(x)
                return x * x

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return 2 * x * g
    """,
]

INVALID = [
    # the second call replaces the first
    """\
        import torch


        class Bilinear(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w):
                ctx.save_for_backward(x)
                ctx.save_for_backward(w)  # AGL013:9
                return x * w

            @staticmethod
            def backward(ctx, g):
                x, w = ctx.saved_tensors
                return g * w, g * x
    """,
    # a save in a loop
    """\
        import torch


        class Pair(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w):
                for t in (x, w):
                    ctx.save_for_backward(t)  # AGL013:13
                return x * w

            @staticmethod
            def backward(ctx, g):
                return g, g
    """,
    # a conditional second save on the same path
    """\
        import torch


        class Cond(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w):
                ctx.save_for_backward(x, w)
                if w.dim() > 1:
                    ctx.save_for_backward(w)  # AGL013:13
                return x * w

            @staticmethod
            def backward(ctx, g):
                return g, g
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL013", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL013", source) == marked_positions("AGL013", source)

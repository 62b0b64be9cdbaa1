"""AGL009 inplace-input-without-mark-dirty: tricky shapes and the recipe under real torch.

The in-place/alias analysis it shares with AGL008 lives in autograd_lint/inplace.py.
"""

from __future__ import annotations

import pytest
from snippets import marked_positions, reported_positions
from test_agl008 import BUILDERS, findings, forward_of
from test_confirm import run_recipe


@pytest.mark.parametrize(
    "body, params, expected",
    [
        ("x.clamp_(-1, 1)\nreturn x * 2\n", "ctx, x", [(4, 9)]),
        ("x += 1\nreturn x.view_as(x)\n", "ctx, x: torch.Tensor", [(4, 9)]),
        ("n = x.shape[0]\nx[0] = n\nreturn x * 1\n", "ctx, x", [(5, 9)]),
        ("x.data = x.data.round()\nreturn x * 1\n", "ctx, x", [(4, 9)]),
        ("flat = x.view(-1)\nflat[:2] = 0\nreturn x * 1\n", "ctx, x", [(5, 9)]),
        ("torch.nn.init.zeros_(w)\nreturn x * w\n", "ctx, x, w", [(4, 9)]),
        ("for t in xs:\n    t.div_(2)\nreturn xs[0] * 1\n", "ctx, *xs", [(5, 13)]),
        ("if ctx.inplace:\n    y = x\nelse:\n    y = x.clone()\ny.mul_(2)\nreturn y\n", "ctx, x", [(8, 9)]),
        # Collectives write the tensor they are given, however torch.distributed (or a wrapper) is reached.
        ("torch.distributed.all_reduce(x)\nreturn x\n", "ctx, x", [(4, 9)]),
        ("from torch.distributed import all_reduce\nall_reduce(x)\nreturn x\n", "ctx, x", [(5, 9)]),
        (
            "from deepspeed import comm as dist\ndist.all_reduce(x.contiguous(), group=g)\nreturn x\n",
            "ctx, x, g",
            [(5, 9)],
        ),
        ("from trainkit import comm\ncomm.broadcast(x, 0)\nreturn x\n", "ctx, x", [(5, 9)]),
        # Through this module's own helper that writes its parameter with a tensor operation.
        ("return _round_(x, 0.1)\n", "ctx, x", [(4, 16)]),
        ("_track(x, handles)\nreturn x * 2\n", "ctx, x, handles", []),  # the helper fills a dict
        # Silent: marked dirty (even conditionally), rebound, non-tensor arguments, unknown marking.
        ("x.add_(1)\nctx.mark_dirty(x)\nreturn x\n", "ctx, x", []),
        (
            "if inplace:\n    ctx.mark_dirty(x)\n    y = x\nelse:\n    y = x.clone()\ny.mul_(2)\nreturn y\n",
            "ctx, x, inplace=False",
            [],
        ),
        ("x = x.clone()\nx.clamp_(-1, 1)\nreturn x\n", "ctx, x", []),
        ("k += 1\ncache['a'] = k\nhistory.append(k)\nreturn x * k\n", "ctx, x, k, cache, history", []),
        ("x.copy_(x)\nreturn x * 1\n", "ctx, x", []),
        ("helper(ctx, x)\nx.mul_(2)\nreturn x\n", "ctx, x", []),
        ("ctx.mark_dirty(*ctx.dirty)\nx.mul_(2)\nreturn x\n", "ctx, x", []),
        ("out = torch.empty_like(x)\ntorch.mul(x, 2, out=out)\nout += 1\nreturn out\n", "ctx, x", []),
        ("torch.mul(x, 2, out=out)\nreturn out\n", "ctx, x, out=None", []),  # a caller's output buffer
        (
            "_, order = x.flatten().sort(descending=True)\nm = x.clone()\nm.view(-1)[order[:2]] = 1\nreturn m\n",
            "ctx, x",
            [],
        ),
        ("from functools import reduce\nreturn reduce(lambda a, b: a + b, [x, x])\n", "ctx, x", []),
    ],
)
def test_agl009_shapes(body, params, expected):
    helpers = (
        "\n\ndef _round_(t, step):\n    t.div_(step).round_().mul_(step)\n    return t\n"
        "\n\ndef _track(t, handles):\n    handles['last'] = t\n"
    )
    assert findings(forward_of(body, params) + helpers, "AGL009") == expected


def test_agl009_silent_when_setup_context_marks_dirty():
    code = """
    class F2(Function):
        @staticmethod
        def forward(x):
            return x.add_(1)
        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.mark_dirty(inputs[0])
        @staticmethod
        def backward(ctx, g):
            return g
    class F3(Function):
        @staticmethod
        def forward(x):
            return x.add_(1)
        @staticmethod
        def setup_context(ctx, inputs, output):
            pass
        @staticmethod
        def backward(ctx, g):
            return g
    """
    assert findings(code, "AGL009") == [(15, 16)]


CORRECT_FORWARDS = """
import torch
class Clip(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w):
        w = w.clone()
        w.clamp_(-1, 1)
        return w
    @staticmethod
    def backward(ctx, g):
        return g
class AddOne(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.mark_dirty(x)
        return x.add_(1)
    @staticmethod
    def backward(ctx, g):
        return g
"""


def test_agl009_recipe_does_not_confirm_a_copy_or_a_marked_input():
    clip = run_recipe(CORRECT_FORWARDS + f"agl009.check_input_inplace(Clip.apply, {BUILDERS.format('Clip')}, ['w'])")
    assert clip[0] == "not-reproduced", clip
    # A marked input: the leaf is refused by torch, a non-leaf input is changed as declared.
    marked = run_recipe(
        CORRECT_FORWARDS
        + "agl009.check_input_inplace(AddOne.apply, [('AddOne.apply(<tensor>)', lambda s: [_agl_probes.leaf_tensor(s) * 1])], ['x'])"
    )
    assert marked[0] == "not-reproduced", marked
    leaf = run_recipe(
        CORRECT_FORWARDS + f"agl009.check_input_inplace(AddOne.apply, {BUILDERS.format('AddOne')}, ['x'])"
    )
    assert leaf[0] == "not-reproduced" and "torch refused the leaf" in leaf[1], leaf


VALID = [
    # the input marked dirty
    """\
        import torch


        class AddOne(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.mark_dirty(x)
                return x.add_(1)

            @staticmethod
            def backward(ctx, g):
                return g
    """,
    # the old InplaceFunction shape: marked dirty under the same condition
    """\
        import torch


        class Clamp(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, inplace=False):
                if inplace:
                    ctx.mark_dirty(x)
                    y = x
                else:
                    y = x.clone()
                y.clamp_(-1, 1)
                return y

            @staticmethod
            def backward(ctx, g):
                return g, None
    """,
    # rebound to a copy first
    """\
        import torch


        class ClipWeights(torch.autograd.Function):
            @staticmethod
            def forward(ctx, w):
                w = w.clone()
                w.clamp_(-1, 1)
                return w

            @staticmethod
            def backward(ctx, g):
                return g
    """,
    # arguments that hold no tensor: an int, a dict, a list
    """\
        import torch


        class Counted(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, step, stats, history):
                step += 1
                stats["calls"] = step
                history.append(step)
                return x * 2

            @staticmethod
            def backward(ctx, g):
                return g * 2, None, None, None
    """,
    # a caller-supplied output buffer
    """\
        import torch


        class Doubled(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, out=None):
                torch.mul(x, 2, out=out)
                return out

            @staticmethod
            def backward(ctx, g):
                return g * 2, None
    """,
    # the input marked dirty in setup_context: what is marked cannot be read, nothing is reported
    """\
        import torch


        class Inc(torch.autograd.Function):
            @staticmethod
            def forward(x):
                return x.add_(1)

            @staticmethod
            def setup_context(ctx, inputs, output):
                ctx.mark_dirty(inputs[0])

            @staticmethod
            def backward(ctx, g):
                return g
    """,
]

INVALID = [
    # a clamp in place on the input
    """\
        import torch


        class ClipWeights(torch.autograd.Function):
            @staticmethod
            def forward(ctx, w):
                w.clamp_(-1, 1)  # AGL009:9
                return w * 2

            @staticmethod
            def backward(ctx, g):
                return g * 2
    """,
    # a masked assignment into the input
    """\
        import torch


        class Sparsify(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, threshold):
                keep = x.abs() >= threshold
                x[~keep] = 0.0  # AGL009:9
                ctx.save_for_backward(keep)
                return x.clone()

            @staticmethod
            def backward(ctx, g):
                (keep,) = ctx.saved_tensors
                return g * keep, None
    """,
    # a write through a view of the input
    """\
        import torch


        class ZeroHead(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                flat = x.view(-1)
                flat[:2] = 0  # AGL009:9
                return x * 1

            @staticmethod
            def backward(ctx, g):
                return g
    """,
    # a collective writes the tensor it is given
    """\
        import torch
        import torch.distributed as dist


        class AllReduce(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                dist.all_reduce(x)  # AGL009:9
                return x

            @staticmethod
            def backward(ctx, g):
                dist.all_reduce(g)
                return g
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL009", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL009", source) == marked_positions("AGL009", source)

"""AGL020 output-view-inplace: the caller-side flow and the recipe.

It follows what a function does with `Fn.apply(...)` after the call (autograd_lint/apply_flow.py), as AGL019 does.
"""

from __future__ import annotations

import pytest
from snippets import marked_positions, reported_positions
from test_agl019 import HEADER, WRITING_HELPERS, caller_findings
from test_confirm import run_recipe

from autograd_lint import Config, lint_source

VIEWS = """
class GRL(Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.alpha = alpha
        return x.view_as(x)
    @staticmethod
    def backward(ctx, g):
        return -ctx.alpha * g, None

class Same(Function):
    @staticmethod
    def forward(ctx, x):
        return x
    @staticmethod
    def backward(ctx, g):
        return g
"""


@pytest.mark.parametrize(
    "body, expected",
    [
        ("y = GRL.apply(x, 1.0)\ny.mul_(2)\nreturn y\n", [(2, 5)]),
        ("y = Same.apply(x)\ny *= 2\nreturn y\n", [(2, 5)]),
        ("y = Same.apply(x)\ny[0] = 1\nreturn y\n", [(2, 5)]),
        ("y = GRL.apply(x, 1.0)\nnn.ReLU(inplace=True)(y)\nreturn y\n", [(2, 5)]),
        ("y = GRL.apply(x, 1.0)\nF.relu(y, inplace=True)\nreturn y\n", [(2, 5)]),
        ("return F.relu_(GRL.apply(x, 1.0))\n", [(1, 12)]),
        ("y = Same.apply(x)\ny.sum().backward()\ny.zero_()\nreturn y\n", [(3, 5)]),  # torch refuses after backward too
        # Silent: out of place, cloned, rebound, under no_grad.
        ("y = GRL.apply(x, 1.0)\nreturn F.relu(y)\n", []),
        ("y = GRL.apply(x, 1.0).clone()\ny.mul_(2)\nreturn y\n", []),
        ("y = Same.apply(x)\ny = y * 2\ny.add_(1)\nreturn y\n", []),
        ("y = Same.apply(x)\nwith torch.no_grad():\n    y.clamp_(0, 1)\nreturn y\n", []),
        ("with torch.no_grad():\n    y = Same.apply(x)\ny.add_(1)\nreturn y\n", []),
        ("y = Same.apply(x)\nx.add_(1)\nreturn y\n", []),
        ("y = GRL.apply(x, 1.0)\ny.data.mul_(2)\nreturn y\n", []),
    ],
)
def test_agl020_caller_shapes(body, expected):
    assert caller_findings(body, rule="AGL020", functions=VIEWS) == expected


@pytest.mark.parametrize(
    "returned, flagged",
    [
        ("x", True),
        ("x.view(-1)", True),
        ("x[:, 0]", True),
        ("x.transpose(0, 1)", True),
        ("x.reshape(-1)", True),
        ("x.contiguous()", True),
        ("x.T", True),
        ("x.view_as(x).squeeze(0)", True),
        ("x.detach()", False),
        ("x.data", False),
        ("x.float()", False),
        ("x.clone()", False),
        ("x[x > 0]", False),
        ("x * 1", False),
        ("x[index]", False),
    ],
)
def test_agl020_which_returns_are_views(returned, flagged):
    functions = (
        "\nclass V(Function):\n    @staticmethod\n    def forward(ctx, x, index=0):\n"
        f"        return {returned}\n    @staticmethod\n    def backward(ctx, g):\n        return g, None\n"
    )
    assert (
        bool(caller_findings("y = V.apply(x, 0)\ny.add_(1)\nreturn y\n", rule="AGL020", functions=functions)) is flagged
    )


def test_agl020_local_view_and_mark_dirty():
    via_local = (
        "\nclass V(Function):\n    @staticmethod\n    def forward(ctx, x):\n        flat = x.view(-1)\n        return flat\n"
        "    @staticmethod\n    def backward(ctx, g):\n        return g\n"
    )
    assert caller_findings("y = V.apply(x)\ny.add_(1)\n", rule="AGL020", functions=via_local) == [(2, 5)]
    dirty = (
        "\nclass V(Function):\n    @staticmethod\n    def forward(ctx, x):\n        ctx.mark_dirty(x)\n        return x.relu_()\n"
        "    @staticmethod\n    def backward(ctx, g):\n        return g\n"
    )
    assert caller_findings("y = V.apply(x)\ny.add_(1)\n", rule="AGL020", functions=dirty) == []


def test_agl020_follows_a_functional_wrapper():
    source = (
        HEADER
        + VIEWS
        + "\ndef grl(x):\n    return GRL.apply(x, 1.0)\n\ndef caller(x):\n    y = grl(x)\n    y.mul_(2)\n"
    )
    (diagnostic,) = lint_source(source, "t.py", Config(select=("AGL020",)))
    assert diagnostic.message == "`y.mul_(2)` writes in place into GRL's output, a view of its input"
    assert "`y` is the output of `GRL.apply` (through `grl()`)" in diagnostic.explanation


def test_agl020_sees_writes_made_by_a_module_function():
    assert caller_findings(
        "y = Same.apply(x)\nclip_(y)\nreturn y\n", rule="AGL020", functions=VIEWS + WRITING_HELPERS
    ) == [(2, 5)]


def test_agl020_message_quotes_torch_and_the_return():
    source = HEADER + VIEWS + "\ndef caller(x):\n    y = GRL.apply(x, 1.0)\n    y.mul_(2)\n    return y\n"
    (diagnostic,) = lint_source(source, "t.py", Config(select=("AGL020",)))
    assert "GRL.forward returns a view of its input `x` (`return x.view_as(x)`)" in diagnostic.explanation
    assert "Output 0 of GRL is a view and is being modified inplace" in diagnostic.explanation


VIEW_BUILDERS = "_agl_builders = [('GRL.apply(<tensor>, 1.0)', lambda shape: [_agl_probes.leaf_tensor(shape), 1.0])]\n"


def test_agl020_recipe_confirms_with_the_users_write_and_the_clone_runs():
    recipe = "agl020.check_output_view_inplace(GRL.apply, _agl_builders, 'y', 'torch.relu_(y)', globals())\n"
    verdict, evidence = run_recipe(HEADER + VIEWS + VIEW_BUILDERS + recipe)
    assert verdict == "confirmed", evidence
    assert "then `torch.relu_(y)` on the output raised RuntimeError: Output 0 of GRL is a view" in evidence
    assert "on the output's .clone() the same write runs" in evidence


def test_agl020_recipe_not_reproduced_when_forward_copies():
    fixed = VIEWS.replace("return x.view_as(x)", "return x.clone()")
    code = (
        HEADER
        + fixed
        + VIEW_BUILDERS
        + "agl020.check_output_view_inplace(GRL.apply, _agl_builders, 'y', None, globals())\n"
    )
    verdict, evidence = run_recipe(code)
    assert verdict == "not-reproduced", evidence
    assert "the output is not a view" in evidence


@pytest.mark.parametrize(
    "helper, flagged",
    [
        ("def passthrough(t, scale):\n    return t.view_as(t)\n", True),
        ("def passthrough(t, scale):\n    out = t * scale\n    return out\n", False),
        ("def passthrough(t, scale):\n    if scale:\n        return t\n    return t.clone()\n", False),
    ],
)
def test_agl020_forward_returning_a_view_made_by_a_module_function(helper, flagged):
    functions = (
        "\n" + helper + "\nclass V(Function):\n    @staticmethod\n    def forward(ctx, x, scale):\n"
        "        return passthrough(x, scale)\n    @staticmethod\n    def backward(ctx, g):\n        return g, None\n"
    )
    assert (
        bool(caller_findings("y = V.apply(x, 2)\ny.add_(1)\nreturn y\n", rule="AGL020", functions=functions)) is flagged
    )


GRL = """\
        import torch
        import torch.nn as nn
        import torch.nn.functional as F


        class GradReverse(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, alpha):
                ctx.alpha = alpha
                return x.view_as(x)

            @staticmethod
            def backward(ctx, g):
                return g.neg() * ctx.alpha, None
"""

VALID = [
    # the view returned, no in-place write on it
    GRL
    + """\


        def reverse(features):
            h = GradReverse.apply(features, 1.0)
            return F.relu(h)
    """,
    # a write on a clone of the output
    GRL
    + """\


        def reverse(features):
            h = GradReverse.apply(features, 1.0).clone()
            h.relu_()
            return h
    """,
    # a write under no_grad
    GRL
    + """\


        def reverse(features):
            h = GradReverse.apply(features, 1.0)
            with torch.no_grad():
                h.clamp_(-1, 1)
            return h
    """,
    # a forward returning a copy
    """\
        import torch


        class Copy(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.clone()

            @staticmethod
            def backward(ctx, g):
                return g


        def copied(x):
            y = Copy.apply(x)
            y.add_(1)
            return y
    """,
    # an in-place Function that marks its input dirty
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


        def inc(x):
            y = AddOne.apply(x)
            y.mul_(2)
            return y
    """,
]

INVALID = [
    # an in-place activation module on the view
    GRL
    + """\


        class DomainClassifier(nn.Module):
            def __init__(self, d_in):
                super().__init__()
                self.act = nn.ReLU(inplace=True)
                self.fc = nn.Linear(d_in, 2)

            def forward(self, features, alpha=1.0):
                h = GradReverse.apply(features, alpha)
                h = self.act(h)  # AGL020:13
                return self.fc(h)
    """,
    # a method call writing the view
    GRL
    + """\


        def reverse(features):
            h = GradReverse.apply(features, 1.0)
            h.mul_(2)  # AGL020:5
            return h
    """,
    # an input returned as is, then written
    """\
        import torch


        class Identity(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x

            @staticmethod
            def backward(ctx, g):
                return g


        def bump(x):
            y = Identity.apply(x)
            y += 1  # AGL020:5
            return y
    """,
    # the functional in-place ReLU on the output
    GRL
    + """\


        def reverse(features):
            return F.relu_(GradReverse.apply(features, 1.0))  # AGL020:12
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL020", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL020", source) == marked_positions("AGL020", source)

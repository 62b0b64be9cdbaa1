"""AGL011 grad-for-non-tensor-input: static cases, the division with AGL002, and the confirm recipe under real torch."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest
from snippets import marked_positions, reported_positions
from test_confirm import run_recipe

from autograd_lint import Config, lint_source
from autograd_lint.confirm.runner import RunLimits
from autograd_lint.confirm.session import confirm_diagnostics

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
HEADER = "import torch\nimport torch.nn as nn\nfrom torch.autograd import Function\n\n"


def lint(source: str, select=("AGL011",)) -> list[tuple[str, int, int]]:
    found = lint_source(HEADER + textwrap.dedent(source), "case.py", Config(select=select))
    return sorted((d.code, d.line - HEADER.count("\n"), d.column) for d in found)


def function(forward_params: str, backward_return: str, backward_body: str = "", extra: str = "") -> str:
    """A Function `F` whose forward returns `x * 2` and whose backward ends with `return <backward_return>`
    (on line 8 of the snippet), followed by `extra` (call sites)."""
    body = textwrap.indent(textwrap.dedent(backward_body).strip(), " " * 8) + "\n" if backward_body.strip() else ""
    return (
        "class F(Function):\n"
        "    @staticmethod\n"
        f"    def forward(ctx, {forward_params}):\n"
        "        return x * 2\n"
        "\n"
        "    @staticmethod\n"
        "    def backward(ctx, g):\n" + body + f"        return {backward_return}\n\n" + textwrap.dedent(extra)
    )


def return_line(source: str) -> int:
    return next(
        i
        for i, line in enumerate(source.splitlines(), start=1)
        if line.strip().startswith("return ") and "x * 2" not in line
    )


@pytest.mark.parametrize(
    "params, returned, flagged, calls",
    [
        # a literal float, a literal None, a string, a bool, a module constant, keyword binding
        ("x, scale", "g * 2, g.sum()", "g.sum()", "y = F.apply(torch.ones(2), 0.5)\n"),
        ("x, w, bias", "g, g, g.sum(0)", "g.sum(0)", "def f(x, w):\n    return F.apply(x, w, None)\n"),
        ("x, mode", "g, g.mean()", "g.mean()", "def f(x):\n    return F.apply(x, 'mean')\n"),
        ("x, flag", "g, torch.zeros(1)", "torch.zeros(1)", "def f(x):\n    return F.apply(x, True)\n"),
        ("x, scale", "g, g.sum()", "g.sum()", "SCALE = 0.25\ndef f(x):\n    return F.apply(x, SCALE)\n"),
        ("x, scale=1.0", "g, g.sum()", "g.sum()", "def f(x):\n    return F.apply(x, scale=2.0)\n"),
        # arithmetic folds; a local bound to a number; a caller parameter with a scalar annotation
        ("x, t", "g, -g.sum()", "-g.sum()", "DIM = 16\ndef f(x):\n    return F.apply(x, DIM ** 0.5)\n"),
        ("x, k", "g, g.sum()", "g.sum()", "def f(x):\n    k = x.shape[0]\n    return F.apply(x, k)\n"),
        ("x, p", "g, g.sum()", "g.sum()", "def f(x, p: float):\n    return F.apply(x, p)\n"),
        # no call site: the signature's annotation or non-None literal default
        ("x, eps: float", "g, g.sum()", "g.sum()", ""),
        ("x, eps=1e-5", "g, g.sum()", "g.sum()", ""),
        # the element is a name bound only to non-None values
        ("x, s", "g, gs", "gs", "def f(x):\n    return F.apply(x, 3)\n"),
    ],
)
def test_gradient_for_a_non_tensor_is_flagged(params, returned, flagged, calls):
    body = "gs = (g * 2).sum()" if "gs" in returned else ""
    source = function(params, returned, body, calls)
    line = return_line(source)
    assert lint(source) == [("AGL011", line, source.splitlines()[line - 1].rindex(flagged) + 1)]


def test_self_config_attribute_from_a_constructor_default_is_a_number():
    source = function(
        "x, scale",
        "g * 2, g.sum()",
        extra="""
        class Layer(nn.Module):
            def __init__(self, scale=0.1):
                super().__init__()
                self.scale = scale

            def forward(self, x):
                return F.apply(x, self.scale)
        """,
    )
    assert lint(source) == [("AGL011", 8, 23)]


@pytest.mark.parametrize(
    "init",
    [
        "self.scale = nn.Parameter(torch.ones(()))",
        "self.scale = nn.Parameter(torch.ones(())) if learn else 0.5",  # a tensor in one configuration
        "self.register_buffer('scale', torch.ones(()))",
        "self.scale = scale_param",  # a constructor argument of unknown kind
    ],
)
def test_self_attributes_that_may_be_tensors_are_not_flagged(init):
    source = function(
        "x, scale",
        "g * 2, g.sum()",
        extra=f"""
        class Layer(nn.Module):
            def __init__(self, scale_param, learn=True):
                super().__init__()
                {init}

            def forward(self, x):
                return F.apply(x, self.scale)
        """,
    )
    assert lint(source) == []


@pytest.mark.parametrize(
    "params, returned, body, calls",
    [
        # a name set to None on some path
        (
            "x, w, bias",
            "g, g, gb",
            "gb = None\nif ctx.needs_input_grad[2]:\n    gb = g.sum(0)",
            "F.apply(x, w, None)\n",
        ),
        ("x, w, bias", "g, g, g.sum(0) if ctx.needs_input_grad[2] else None", "", "F.apply(x, w, None)\n"),
        # guards around the return, and an early return
        (
            "x, w, bias",
            "g, g, g.sum(0)",
            "if not ctx.needs_input_grad[2]:\n    return g, g, None",
            "F.apply(x, w, None)\n",
        ),
        ("x, w, bias", "g, g, None", "if ctx.has_bias:\n    return g, g, g.sum(0)", "F.apply(x, w, None)\n"),
        ("x, s", "g, gs", "need_x, need_s = ctx.needs_input_grad\nif need_s:\n    gs = g.sum()", "F.apply(x, 0.5)\n"),
        # values that may be None: an attribute of ctx, a saved tensor, a helper's result
        ("x, s", "g, ctx.grad_s", "", "F.apply(x, 0.5)\n"),
        ("x, s", "g, saved", "(saved,) = ctx.saved_tensors", "F.apply(x, 0.5)\n"),
        ("x, s", "g, helper(g)", "", "F.apply(x, 0.5)\n"),
        # inputs that are tensors or of unknown kind
        ("x, s", "g, g.sum()", "", "F.apply(x, torch.tensor(0.5))\n"),
        ("x, s", "g, g.sum()", "", "def f(x, s):\n    return F.apply(x, s)\n"),
        ("x, eps=1e-5", "g, g.sum()", "", "F.apply(x, torch.full((), 1e-5))\n"),
        (
            "x, eps=1e-5",
            "g, g.sum()",
            "",
            "def f(x, e):\n    return F.apply(x, e)\n",
        ),  # a default speaks only without call sites
        ("x, bias=None", "g, g.sum(0)", "", ""),  # no call site says it is None
        # forward uses the argument as a tensor: forward would fail first
        ("x, s", "g, g.sum()", "", "F.apply(x, 0.5)\n"),
        # the torch-tolerated shapes
        ("x, s", "g * 2, None, None", "", "F.apply(x, 0.5)\n"),
    ],
)
def test_look_alikes_are_silent(params, returned, body, calls):
    source = function(params, returned, body, calls)
    if params == "x, s" and returned == "g, g.sum()" and calls == "F.apply(x, 0.5)\n":
        source = source.replace("return x * 2", "return x * s.view(1)")
    assert lint(source) == []


def test_count_errors_are_agl002s_and_positions_are_agl011s():
    """Torch checks the count first: a call whose count is wrong gets AGL002 on the return; a call
    where the count is accepted gets AGL011 on the element. Never both for the same call."""
    only_count = function("x, scale, bias=None", "g, g.sum(), g.sum(0)", extra="F.apply(x, 2.0)\n")
    assert lint(only_count, ("AGL002", "AGL011")) == [("AGL002", 8, 9)]
    both_calls = function("x, scale, bias=None", "g, None, g.sum(0)", extra="F.apply(x, 2.0)\nF.apply(x, 2.0, None)\n")
    assert lint(both_calls, ("AGL002", "AGL011")) == [("AGL002", 8, 9), ("AGL011", 8, 25)]
    list_return = function("x, scale", "[g, g.sum()]", extra="F.apply(x, 2.0)\n")
    assert lint(list_return, ("AGL002", "AGL011")) == [("AGL002", 8, 9)]
    extra_non_none = function("x, scale", "g, g.sum(), g", extra="F.apply(x, 2.0)\n")
    assert lint(extra_non_none, ("AGL002", "AGL011")) == [("AGL002", 8, 9)]


def test_setup_context_binds_an_omitted_none_default():
    source = """
    class F(Function):
        @staticmethod
        def forward(x, bias=None):
            return x * 2

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        @staticmethod
        def backward(ctx, g):
            return g, g.sum(0)

    F.apply(torch.ones(2))
    """
    assert lint(source) == [("AGL011", 13, 19)]
    ctx_style = source.replace("def forward(x, bias=None)", "def forward(ctx, x, bias=None)").replace(
        "    @staticmethod\n        def setup_context(ctx, inputs, output):\n            pass\n", ""
    )
    assert lint(ctx_style, ("AGL002", "AGL011")) == [("AGL002", 10, 9)]  # omitted: one input, two gradients


def test_every_flagged_slot_of_a_return_is_reported_in_order():
    source = function("x, lo, hi, bits", "g, g.sum(), g.sum(), None", extra="F.apply(x, 0.0, 6.0, 4)\n")
    assert lint(source) == [("AGL011", 8, 19), ("AGL011", 8, 28)]


# ---- the recipe under torch ----

CORRECT = """
import torch
class Affine(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale, bias):
        ctx.scale = scale
        return x * scale if bias is None else x * scale + bias
    @staticmethod
    def backward(ctx, g):
        return g * ctx.scale, None, g.sum(0) if ctx.needs_input_grad[2] else None
"""


def test_recipe_is_not_reproduced_on_the_correct_function():
    verdict, evidence = run_recipe(
        CORRECT
        + "agl011.check_non_tensor_grad(Affine, [('Affine.apply(<tensor>, 0.5, None)', lambda s: [_agl_probes.leaf_tensor(s), 0.5, None])], 3, [2])"
    )
    assert verdict == "not-reproduced", evidence


def test_recipe_requires_the_reported_position():
    """Torch's message for another position is not proof of this one."""
    buggy = CORRECT.replace("return g * ctx.scale, None,", "return g * ctx.scale, g.sum(),")
    verdict, evidence = run_recipe(
        buggy
        + "agl011.check_non_tensor_grad(Affine, [('Affine.apply(<tensor>, 0.5, None)', lambda s: [_agl_probes.leaf_tensor(s), 0.5, None])], 3, [])"
    )
    assert verdict == "inconclusive" and "at position 2," in evidence


def test_confirmed_positions_match_the_findings():
    path = FIXTURES / "agl011" / "buggy_pact_float_alpha.py"
    diagnostics = lint_source(path.read_text(), str(path), Config(select=("AGL011",)))
    verdicts = confirm_diagnostics(diagnostics, RunLimits(sys.executable, timeout=60), jobs=2)
    assert len(verdicts) == 2
    for diagnostic, result in verdicts.items():
        position = re.search(r"\(position (\d+)\)", diagnostic.message).group(1)
        assert result.verdict == "confirmed", result.evidence
        assert f"different than None at position {position}," in result.evidence
    masked = [r.evidence for r in verdicts.values() if "replaced by None" in r.evidence]
    assert len(masked) == 1 and "position 3," in masked[0]


def test_one_call_site_with_a_number_is_enough_and_is_named():
    """A Function called with a tensor at one site and a float at another crashes at the second:
    the message names that call."""
    source = function("x, w", "g * w, (g * x).sum()", extra="F.apply(x, torch.ones(()))\nF.apply(x, 0.5)\n")
    found = lint_source(HEADER + source, "case.py", Config(select=("AGL011",)))
    assert [(d.line - HEADER.count("\n"), d.column) for d in found] == [(8, 23)]
    assert found[0].message == "F.backward returns a gradient for `w` (position 2), which is not a tensor"
    assert "The call `F.apply(x, 0.5)` passes `0.5` for `w`" in found[0].explanation


FLAGGED_RETURN = """
class F(Function):
    @staticmethod
    def forward(ctx, x, scale, learn):
        ctx.learn = learn
        return x * scale

    @staticmethod
    def backward(ctx, g):
        if {test}:
            return g, g.sum(), None
        return g, None, None

{calls}
"""


@pytest.mark.parametrize(
    "test, calls, expected",
    [
        ("ctx.learn", "y = F.apply(torch.ones(2), 0.5, True)", [("AGL011", 11, 23)]),  # the call takes the branch
        ("not ctx.learn", "y = F.apply(torch.ones(2), 0.5, False)", [("AGL011", 11, 23)]),
        ("ctx.learn", "y = F.apply(torch.ones(2), 0.5, False)", []),  # every call takes the other path
        ("not ctx.learn", "y = F.apply(torch.ones(2), 0.5, True)", []),
        ("ctx.learn", "def f(x, learn):\n    return F.apply(x, 0.5, learn)", []),  # the caller's choice
    ],
)
def test_gradient_selected_by_a_stored_flag_follows_the_call_sites(test, calls, expected):
    assert lint(FLAGGED_RETURN.format(test=test, calls=calls)) == expected


def test_flag_forward_computes_from_the_input_guards_it():
    source = """
class F(Function):
    @staticmethod
    def forward(ctx, x, scale=None):
        ctx.has_scale = scale is not None
        ctx.save_for_backward(x, scale)
        return x.clone() if scale is None else x * scale

    @staticmethod
    def backward(ctx, g):
        x, s = ctx.saved_tensors
        if not ctx.has_scale:
            return g, None
        return g * s, (g * x).sum()

y = F.apply(torch.ones(2), None)
"""
    assert lint(source) == []


def test_scalar_annotation_of_an_input_forward_uses_as_a_tensor_is_not_trusted():
    source = function(
        "x, threshold: float, sigmoid: bool",
        "g, g.sum().view(-1), None",
        backward_body="",
    ).replace(
        "        return x * 2\n",
        "        if sigmoid:\n            threshold = torch.sigmoid(threshold).item()\n        return x * threshold\n",
        1,
    )
    assert lint(source) == []


def test_flag_read_into_a_local_is_followed():
    source = FLAGGED_RETURN.format(test="learn", calls="y = F.apply(torch.ones(2), 0.5, {flag})").replace(
        "    def backward(ctx, g):\n", "    def backward(ctx, g):\n        learn = ctx.learn\n"
    )
    assert lint(source.format(flag="False")) == []
    assert lint(source.format(flag="True")) == [("AGL011", 12, 23)]


STORED_OPTIONAL = """
class F(Function):
    @staticmethod
    def forward(ctx, x, scale=None):
        ctx.scale = scale
        ctx.save_for_backward(x)
        return x if scale is None else x * scale

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        if ctx.scale is None:
            return g, None
        return g * ctx.scale, (g * x).sum()

{calls}
"""


@pytest.mark.parametrize(
    "calls, expected",
    [
        ("y = F.apply(torch.ones(2), None)", []),  # the None path returns None
        ("y = F.apply(torch.ones(2), torch.ones(()))", []),  # a tensor: its gradient is fine
        ("y = F.apply(torch.ones(2), 0.5)", [("AGL011", 14, 31)]),  # a number takes the gradient path
    ],
)
def test_return_past_an_is_none_test_of_a_stored_input_follows_the_call_sites(calls, expected):
    assert lint(STORED_OPTIONAL.format(calls=calls)) == expected


VALID = [
    # a slot that may be None, set under a test of needs_input_grad
    """\
        import torch


        class Affine(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, scale):
                ctx.save_for_backward(x)
                ctx.scale = scale
                return x * scale

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                grad_scale = None
                if ctx.needs_input_grad[1]:
                    grad_scale = (g * x).sum()
                return g * ctx.scale, grad_scale


        def halve(x):
            return Affine.apply(x, 0.5)
    """,
    # the bias slot decided by a test on the bias
    """\
        import torch


        class Linear(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w, bias=None):
                ctx.save_for_backward(x, w)
                ctx.has_bias = bias is not None
                out = x @ w.t()
                return out if bias is None else out + bias

            @staticmethod
            def backward(ctx, g):
                x, w = ctx.saved_tensors
                grad_bias = g.sum(0) if ctx.has_bias else None
                return g @ w, g.t() @ x, grad_bias


        def linear(x, w):
            return Linear.apply(x, w, None)
    """,
    # an input whose kind is unknown: a caller's variable
    """\
        import torch


        class Mul(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, scale):
                ctx.save_for_backward(x, scale)
                return x * scale

            @staticmethod
            def backward(ctx, g):
                x, scale = ctx.saved_tensors
                return g * scale, (g * x).sum()


        def mul(x, scale):
            return Mul.apply(x, scale)
    """,
    # a literal default, but a call site passes a tensor
    """\
        import torch


        class Shift(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, offset=0.0):
                return x + offset

            @staticmethod
            def backward(ctx, g):
                return g, g.sum()


        def shift(x):
            return Shift.apply(x, torch.zeros(()))
    """,
    # extra trailing Nones
    """\
        import torch


        class Scale(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, k):
                ctx.k = k
                return x * k

            @staticmethod
            def backward(ctx, g):
                return g * ctx.k, None, None


        def triple(x):
            return Scale.apply(x, 3.0)
    """,
]

INVALID = [
    # a gradient for a float and one for a None bias
    """\
        import torch
        import torch.nn as nn


        class Affine(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, scale, bias):
                ctx.save_for_backward(x)
                ctx.scale = scale
                out = x * scale
                return out if bias is None else out + bias

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                grad_scale = (g * x).sum()
                return (
                    g * ctx.scale,
                    grad_scale,  # AGL011:13
                    g.sum(0),  # AGL011:13
                )


        class Rescale(nn.Module):
            def __init__(self, scale=0.5):
                super().__init__()
                self.scale = scale

            def forward(self, x):
                return Affine.apply(x, self.scale, None)
    """,
    # a literal passed at the call site
    """\
        import torch


        class Shift(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, offset):
                return x + offset

            @staticmethod
            def backward(ctx, g):
                return g, g.sum()  # AGL011:19


        def shift(x):
            return Shift.apply(x, 1.5)
    """,
    # an input annotated int
    """\
        import torch


        class Repeat(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, times: int):
                ctx.times = times
                return x.repeat(times)

            @staticmethod
            def backward(ctx, g):
                return g.view(ctx.times, -1).sum(0), g.sum()  # AGL011:46
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL011", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL011", source) == marked_positions("AGL011", source)

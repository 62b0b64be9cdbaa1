"""AGL018 float-output-not-marked: static cases and the confirm recipe under real torch."""

from __future__ import annotations

import textwrap

import pytest
from snippets import marked_positions, reported_positions
from test_confirm import run_recipe

from autograd_lint import Config, lint_source


def function(
    forward_body: str, backward_body: str = "return grad_out", backward_params: str = "grad_out, grad_mask"
) -> str:
    return (
        "import torch\nfrom torch.autograd import Function\n\n"
        "class F(Function):\n"
        "    @staticmethod\n"
        "    def forward(ctx, x):\n"
        + textwrap.indent(textwrap.dedent(forward_body).strip(), " " * 8)
        + "\n\n    @staticmethod\n"
        f"    def backward(ctx, {backward_params}):\n"
        + textwrap.indent(textwrap.dedent(backward_body).strip(), " " * 8)
        + "\n"
    )


def agl018(source: str) -> list[tuple[int, int]]:
    return [(d.line, d.column) for d in lint_source(source, "case.py", Config(select=("AGL018",)))]


@pytest.mark.parametrize(
    "forward, column",
    [
        ("mask = (x > 0).float()\nreturn x * 2, mask", 23),
        ("return x * 2, (x > 0).float()", 23),
        ("return x * 2, x.gt(0).to(x.dtype)", 23),
        ("return x * 2, (x > 0).type_as(x)", 23),
        ("m = x.isfinite()\nreturn x * 2, m.double()", 23),
        ("return x * 2, torch.where(x > 0, 1.0, 0.0)", 23),
        ("return x * 2, x.argmax(dim=-1).float()", 23),
        ("idx = x.argsort(dim=-1)\nreturn x * 2, idx.to(torch.float32)", 23),
        ("m = (x > 0) & (x < 1)\nreturn x * 2, m.half()", 23),
        ("return x * 2, (x > 0).to(device=x.device, dtype=x.dtype)", 23),
        ("keep = (x.abs() > 1) * 1.0\nreturn x * keep, keep", 26),
        ("return x * 2, torch.where(x > 0, torch.ones_like(x), torch.zeros_like(x))", 23),
    ],
)
def test_float_masks_and_indices_are_flagged(forward, column):
    source = function(forward)
    line = 6 + len(forward.splitlines())
    assert agl018(source) == [(line, column)]


@pytest.mark.parametrize(
    "forward, backward",
    [
        ("mask = (x > 0).float()\nctx.mark_non_differentiable(mask)\nreturn x * 2, mask", "return grad_out"),
        ("return x * 2, x > 0", "return grad_out"),  # bool: torch marks it
        ("return x * 2, x.argmax(dim=-1)", "return grad_out"),  # int64: torch marks it
        ("return x * 2, x.argmax(dim=-1).long()", "return grad_out"),
        ("return x * 2, (x > 0).to(torch.int64)", "return grad_out"),
        ("return x * 2, (x > 0).float()", "return grad_out + grad_mask"),  # straight-through: backward uses it
        ("return x * 2, torch.sigmoid(x)", "return grad_out"),  # a soft mask is differentiable
        ("return x * 2, (x > 0).to(device=x.device)", "return grad_out"),  # still bool
        ("return x * 2, (x > 0) * x", "return grad_out"),  # carries x: differentiable
        ("return x * 2, (x > 0) * 1", "return grad_out"),  # int64: torch marks it
        ("return x * 2, torch.where(x > 0, x, torch.zeros_like(x))", "return grad_out"),  # carries x: differentiable
        ("return (x > 0).float()", "return grad_out"),  # a single output: not this rule's
        ("mask = (x > 0).float()\nhelper(ctx, mask)\nreturn x * 2, mask", "return grad_out"),  # a helper may mark it
        ("outs = (x * 2, (x > 0).float())\nctx.mark_non_differentiable(*outs[1:])\nreturn outs", "return grad_out"),
    ],
)
def test_look_alikes_are_silent(forward, backward):
    assert agl018(function(forward, backward)) == []


def test_a_gradient_only_tested_against_none_is_still_ignored():
    source = function("return x * 2, (x > 0).float()", "assert grad_mask is not None\nreturn grad_out")
    assert agl018(source) == [(7, 23)]


RECIPE = """
import torch
from torch.autograd import Function

class F(Function):
    @staticmethod
    def forward(ctx, x):
        mask = (x > 0).float()
        {mark}
        return x * 2, mask

    @staticmethod
    def backward(ctx, grad_out, grad_mask):
        return grad_out * 2

_agl_builders = [("F.apply(<tensor>)", lambda shape: [_agl_probes.leaf_tensor(shape)])]
agl018.check_unmarked_output(F, _agl_builders, 1)
"""


def test_recipe_shows_the_dropped_gradient():
    verdict, evidence = run_recipe(RECIPE.format(mark="pass"))
    assert verdict == "confirmed"
    assert "output 1" in evidence and "requires_grad=True" in evidence
    assert "backward received a gradient [3, 3" in evidence and "the gradient is dropped" in evidence


def test_recipe_does_not_confirm_a_marked_output():
    verdict, evidence = run_recipe(RECIPE.format(mark="ctx.mark_non_differentiable(mask)"))
    assert verdict == "not-reproduced", evidence
    assert "requires_grad=False" in evidence


HELPERS = """
import torch
from torch.autograd import Function

def in_range(x):
    return ((x > -1) & (x < 1)).to(x.dtype)

def smooth(x):
    return torch.sigmoid(x)

class F(Function):
    @staticmethod
    def forward(ctx, x):
        mask = {made}
        return x * mask, mask

    @staticmethod
    def backward(ctx, grad_out, grad_mask):
        return grad_out
"""


def test_a_mask_made_by_a_module_function_is_flagged():
    assert agl018(HELPERS.format(made="in_range(x)")) == [(15, 26)]
    assert agl018(HELPERS.format(made="smooth(x)")) == []


SETUP_CONTEXT = """
import torch
from torch.autograd import Function

class F(Function):
    @staticmethod
    def forward(x):
        mask = x.gt(0).float()
        return x * mask, mask

    @staticmethod
    def setup_context(ctx, inputs, output):
        {mark}

    @staticmethod
    def backward(ctx, grad_out, grad_mask):
        return grad_out
"""


def test_setup_context_style_is_judged_with_its_marks():
    (diagnostic,) = lint_source(SETUP_CONTEXT.format(mark="pass"), "case.py", Config(select=("AGL018",)))
    assert (diagnostic.line, diagnostic.column) == (9, 26)
    assert diagnostic.explanation.endswith("Call `ctx.mark_non_differentiable(output[1])` in setup_context.")
    assert agl018(SETUP_CONTEXT.format(mark="ctx.mark_non_differentiable(output[1])")) == []


VALID = [
    # the mask output marked non-differentiable
    """\
        import torch


        class ReLUWithMask(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                mask = (x > 0).float()
                ctx.mark_non_differentiable(mask)
                ctx.save_for_backward(mask)
                return torch.relu(x), mask

            @staticmethod
            def backward(ctx, g, g_mask):
                (mask,) = ctx.saved_tensors
                return g * mask
    """,
    # a bool output: torch marks it itself
    """\
        import torch


        class ReLUWithBoolMask(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                mask = x > 0
                ctx.save_for_backward(mask)
                return torch.relu(x), mask

            @staticmethod
            def backward(ctx, g, g_mask):
                (mask,) = ctx.saved_tensors
                return g * mask
    """,
    # a soft mask is differentiable
    """\
        import torch


        class Gate(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                gate = torch.sigmoid(x)
                ctx.save_for_backward(x, gate)
                return x * gate, gate

            @staticmethod
            def backward(ctx, g, g_gate):
                x, gate = ctx.saved_tensors
                d = gate * (1 - gate)
                return g * (gate + x * d) + g_gate * d
    """,
    # a straight-through hard mask whose gradient backward uses
    """\
        import torch


        class HardSoft(torch.autograd.Function):
            @staticmethod
            def forward(ctx, logits):
                soft = logits.softmax(-1)
                hard = (soft == soft.amax(-1, keepdim=True)).float()
                ctx.save_for_backward(soft)
                return soft, hard

            @staticmethod
            def backward(ctx, g_soft, g_hard):
                (soft,) = ctx.saved_tensors
                g = g_soft + g_hard
                return soft * (g - (g * soft).sum(-1, keepdim=True))
    """,
    # the mask is the only output: a zero-gradient op
    """\
        import torch


        class Step(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return (x > 0).float()

            @staticmethod
            def backward(ctx, g):
                return g
    """,
]

INVALID = [
    # a float mask returned beside the output
    """\
        import torch


        class ReLUWithMask(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                mask = (x > 0).float()
                ctx.save_for_backward(mask)
                return torch.relu(x), mask  # AGL018:31

            @staticmethod
            def backward(ctx, g, g_mask):
                (mask,) = ctx.saved_tensors
                return g * mask
    """,
    # an index made float
    """\
        import torch


        class Top1Router(torch.autograd.Function):
            @staticmethod
            def forward(ctx, scores):
                probs = scores.softmax(dim=-1)
                ctx.save_for_backward(probs)
                return probs, probs.argmax(dim=-1).float()  # AGL018:23

            @staticmethod
            def backward(ctx, g_probs, g_expert):
                (probs,) = ctx.saved_tensors
                return probs * (g_probs - (g_probs * probs).sum(dim=-1, keepdim=True))
    """,
    # a mask built by a helper of the module
    """\
        import torch


        def in_range(x, lo, hi):
            return ((x >= lo) & (x <= hi)).float()


        class Clip(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                mask = in_range(x, -1, 1)
                ctx.save_for_backward(mask)
                return x.clamp(-1, 1), mask  # AGL018:32

            @staticmethod
            def backward(ctx, g, g_mask):
                (mask,) = ctx.saved_tensors
                return g * mask
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL018", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL018", source) == marked_positions("AGL018", source)

"""AGL003 handwritten-piecewise-activation: reported only as an activation on a gradient path."""

from __future__ import annotations

import textwrap

import pytest
from snippets import marked_positions, reported_positions

from autograd_lint import Config, lint_source


def agl003(source: str) -> list[tuple[int, int]]:
    return [(d.line, d.column) for d in lint_source(textwrap.dedent(source), "case.py", Config(select=("AGL003",)))]


@pytest.mark.parametrize(
    "body, column",
    [
        ("return x * (x > 0).float()", 12),
        ("return (x > 0) * x", 12),
        ("return x * x.gt(0)", 12),
        ("return torch.mul(x, x > 0)", 12),
        ("return x * (x > threshold)", 12),  # a parameter: a setting
        ("keep = (x > 0).to(x.dtype)\n    return x * keep", 12),
        ("return torch.square(x * (x >= 0).double())", 25),
        ("return x * (x < -1.0)", 12),  # zeroes -1 < x < 0 too: -0.0 there
    ],
)
def test_activations_on_a_gradient_path_are_reported(body, column):
    source = f"import torch\n\n\ndef act(x, threshold=0.5):\n    {body}\n"
    assert agl003(source) == [(len(body.splitlines()) + 4, column)]


def test_in_place_mask_multiplication_is_reported():
    # the statement's own value is discarded, but the product lives on in `x`
    assert agl003("def act(x):\n    x.mul_(x > 0)\n    return x\n") == [(2, 5)]


def test_learned_threshold_from_module_state_is_an_activation():
    source = """
        import torch.nn as nn


        class JumpReLU(nn.Module):
            def forward(self, pre):
                threshold = self.log_threshold.exp()
                return pre * (pre > threshold)
    """
    assert agl003(source) == [(8, 16)]


@pytest.mark.parametrize(
    "source",
    [
        # a threshold computed from the compared value: a data-dependent selection
        "def segment(image):\n    level = image.mean()\n    return (image > level) * image\n",
        "def segment(image):\n    hist = torch.histc(image)\n    level = hist.argmax() / 64\n    return image * (image > level)\n",
        # a sum absorbs the -0.0 and the gradient is the library op's
        "def gate(x, h):\n    return x + h * (h > 0)\n",
        "def leaky(x, slope=0.1):\n    pos = x * (x > 0)\n    neg = slope * x * (x <= 0)\n    return pos + neg\n",
        # no gradient reaches the product
        "def noise(shape):\n    r = torch.randn(shape)\n    return r * (r > 0)\n",
        "@torch.no_grad()\ndef sparsity(h):\n    return (h * (h > 0)).count_nonzero()\n",
        "def count_active(h):\n    return (h * (h > 0)).argmax()\n",
        "def positions(n):\n    offsets = torch.arange(n) - n // 2\n    return offsets * (offsets > 0)\n",
        # a mask of another tensor
        "def masked(scores, mask):\n    return scores * (mask > 0)\n",
        # the mask zeroes only values >= 0: x * 0 is +0.0 there
        "def keep_negative(x):\n    return x * (x < 0)\n",
        "def clip_high(x):\n    return x * x.le(1.0)\n",
        "def clip_high(x):\n    return x * (2 >= x)\n",
    ],
)
def test_not_an_activation_on_a_gradient_path(source):
    assert agl003("import torch\n\n\n" + source) == []


def test_clipping_coefficient_in_an_optimizer_step_is_silent():
    source = """
        import torch


        class Clipped(torch.optim.Optimizer):
            def step(self):
                for group in self.param_groups:
                    for p in group["params"]:
                        coeff = 1.0 / (p.grad.norm() + 1e-6)
                        p.grad.mul_(coeff * (coeff < 1))
    """
    assert agl003(source) == []


def test_demo_call_on_a_constant_is_no_evidence_that_no_gradient_reaches():
    source = """
        import torch


        def relu(x):
            return x * (x > 0).float()


        if __name__ == "__main__":
            print(relu(torch.tensor([-1.0, 1.0])))
    """
    assert agl003(source) == [(6, 12)]


def test_message_states_the_consequences_and_the_fix():
    [diagnostic] = lint_source("def relu(x):\n    return x * (x > 0).float()\n", "case.py", Config(select=("AGL003",)))
    assert diagnostic.message == "`x * (x > 0).float()` is a hand-written activation of `x`"
    assert diagnostic.explanation == (
        "Where the mask is 0 it returns `x * 0`, which "
        "is -0.0 for a negative `x` (the library op gives +0.0) and NaN for an infinite one, and an inf gradient "
        "arriving there becomes a NaN gradient for `x` (the library op passes 0); for finite values the gradients "
        "agree. Use torch.relu(x) or torch.where(x > 0, x, 0.0)."
    )


def test_message_for_a_threshold_suggests_where():
    [diagnostic] = lint_source("def act(x, t=1.0):\n    return x * (x > t)\n", "case.py", Config(select=("AGL003",)))
    assert diagnostic.explanation.endswith("Use torch.where(x > t, x, 0.0).")


@pytest.mark.parametrize(
    "body, multiplied",
    [
        ("mask = x > 0\ny = x * mask", True),
        ("mask = (x > 0)\ny = mask.float() * x", True),
        ("mask = x.gt(0)\ny = x.mul(mask)", True),
        ("a = b = x > 0\ny = b * x", True),
        ("mask = x > 0\ny = x * (  # keep the sign\n    mask\n)", True),
        ("mask = (\n    x\n    > 0\n)\ny = x * mask", True),
        ("keep = torch.rand_like(x).ge(0.5)\ny = torch.mul(x, keep)", True),
        ("mask = x > 0\ny = torch.where(mask, x, 0.0)", False),
        ("total = (\n    x\n    + 1\n)\ny = x * total", False),
        ("if x > 0:\n    y = 2 * x", False),
        ("y = x * 2  " + "#" * 80 + "\nmask = x > 0", False),  # a run of `#`: read in linear time
    ],
)
def test_a_comparison_counts_where_it_is_multiplied(body, multiplied):
    """The text cue: a comparison assigned to a name counts where the name is a factor of a product (the prefilter
    parses no other file for the rule); wherever the rule, made to look, reports, the cue is there."""
    from autograd_lint.engine import lint_text
    from autograd_lint.rules.text_cues import TEXT_CUES

    source = "import torch\n\n\ndef f(x):\n" + textwrap.indent(body, "    ") + "\n    return y\n"
    [cue] = TEXT_CUES["AGL003"]
    assert cue.found_in(source) == multiplied
    reported = lint_text(source, "case.py", ["AGL003"], prefilter=False)
    assert not reported or multiplied


@pytest.mark.parametrize(
    "source, multiplied",
    [
        ("def positive(h):\n    return h > 0\n\n\ndef f(x):\n    return x * positive(x)\n", True),
        ("def positive(h):\n    return (h > 0).float()\n\n\ndef f(x):\n    return positive(x).to(x) * x\n", True),
        ("def positive(h):\n    return h > 0\n\n\ndef f(x):\n    return x + positive(x)\n", False),
        ("def positive(h):\n    return h > 0\n\n\ndef f(x, positive_x):\n    return x * positive_x\n", False),
    ],
)
def test_a_returned_comparison_counts_where_its_function_is_multiplied(source, multiplied):
    from autograd_lint.rules.text_cues import TEXT_CUES

    [cue] = TEXT_CUES["AGL003"]
    assert cue.found_in("import torch\n\n\n" + source) == multiplied


def test_mask_from_a_helper_of_the_module():
    source = """
        import torch


        def above(t, threshold=0.0):
            return (t > threshold).float()


        def level_mask(t):
            level = t.mean()
            return (t > level).float()


        def act(h):
            return h * above(h)


        def select(h):
            return h * level_mask(h)
    """
    [diagnostic] = lint_source(textwrap.dedent(source), "case.py", Config(select=("AGL003",)))
    assert (diagnostic.line, diagnostic.column) == (15, 12)
    assert diagnostic.message == "`h * above(h)` is a hand-written activation of `h`"
    assert diagnostic.explanation.endswith("Use torch.relu(h) or torch.where(h > 0.0, h, 0.0).")


VALID = [
    # a mask of another tensor (attention or padding mask, dropout keep mask)
    """\
        import torch


        def masked_scores(scores, mask):
            return scores * (mask > 0)


        def dropout(x, p=0.1):
            return x * (torch.rand_like(x) > p) / (1 - p)
    """,
    # a Function's backward masking the incoming gradient
    """\
        import torch


        class ReLU(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x.clamp(min=0)

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return g * (x > 0)
    """,
    # torch.where, the library ops and masked_fill
    """\
        import torch
        import torch.nn.functional as F


        def leaky(x, slope=0.1):
            return torch.where(x > 0, x, slope * x)


        def relu_variants(x):
            return torch.relu(x) + F.relu(x) + x.clamp(min=0) + x.masked_fill(x <= 0, 0)
    """,
    # a masked term added to another: the sum absorbs the -0.0
    """\
        def leaky(x, slope=0.1):
            return x * (x > 0) + slope * x * (x <= 0)
    """,
    # a mask keeping the values below a non-negative threshold: x * 0 is +0.0 there
    """\
        def keep_negative(x):
            return x * (x < 0)
    """,
    # a threshold computed from the compared value: a data-dependent selection
    """\
        def foreground(image):
            level = image.mean()
            return image * (image > level)
    """,
    # no gradient reaches the product
    """\
        import torch


        @torch.no_grad()
        def active_fraction(h):
            return (h * (h > 0)).count_nonzero() / h.numel()


        def positive_noise(shape):
            r = torch.randn(shape)
            return r * (r > 0)
    """,
]

INVALID = [
    # the float mask of the value itself
    """\
        import torch


        def relu(x):
            return x * (x > 0).float()  # AGL003:12
    """,
    # a threshold parameter is a setting, not data
    """\
        def threshold_act(x, threshold=0.5):
            return x * (x > threshold)  # AGL003:12
    """,
    # a learned threshold from module state
    """\
        import torch.nn as nn


        class JumpReLU(nn.Module):
            def forward(self, pre):
                threshold = self.log_threshold.exp()
                return pre * (pre > threshold)  # AGL003:16
    """,
    # the mask through a local name and a method comparison
    """\
        def gated(x):
            keep = x.gt(0).to(x.dtype)
            return x * keep  # AGL003:12
    """,
    # in place: the product lives on in x
    """\
        def relu_(x):
            x.mul_(x > 0)  # AGL003:5
            return x
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL003", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL003", source) == marked_positions("AGL003", source)

"""AGL016 rng-in-backward: static cases and the confirm recipe under real torch."""

from __future__ import annotations

import textwrap

import pytest
from snippets import marked_positions, reported_positions
from test_confirm import run_recipe

from autograd_lint import Config, lint_source

HEADER = "import random\nimport numpy as np\nimport torch\nimport torch.nn.functional as F\n\n"


def agl016(source: str) -> list[tuple[int, int]]:
    found = lint_source(source, "case.py", Config(select=("AGL016",)))
    return [(d.line, d.column) for d in found]


def function(forward_body: str, backward_body: str) -> str:
    return (
        HEADER + "class F2(torch.autograd.Function):\n"
        "    @staticmethod\n"
        "    def forward(ctx, x):\n"
        + textwrap.indent(textwrap.dedent(forward_body).strip(), " " * 8)
        + "\n\n    @staticmethod\n    def backward(ctx, g):\n"
        + textwrap.indent(textwrap.dedent(backward_body).strip(), " " * 8)
        + "\n"
    )


FORWARD_MASK = "return x * (torch.rand_like(x) > 0.5)"


@pytest.mark.parametrize(
    "draw",
    [
        "torch.rand_like(g)",
        "torch.randn(g.shape)",
        "torch.randint(0, 2, g.shape)",
        "torch.bernoulli(torch.full_like(g, 0.5))",
        "F.dropout(g, 0.5)",
        "F.dropout(g, p=0.5, training=True)",
        "torch.nn.functional.dropout2d(g)",
        "torch.empty_like(g).uniform_()",
        "g.new_empty(g.shape).normal_(0, 1)",
        "torch.zeros_like(g).bernoulli_(0.5)",
        "torch.multinomial(g.abs().flatten(), 1)",
        "np.random.rand(3)",
        "random.random()",
        "torch.nn.Dropout(0.5)(g)",
        "torch.nn.RReLU()(g)",
        "torch.distributions.Bernoulli(probs=torch.full_like(g, 0.5)).sample()",
    ],
)
def test_draws_in_backward_are_flagged_when_forward_draws_too(draw):
    source = function(FORWARD_MASK, f"noise = {draw}\nreturn g * noise")
    line = source.splitlines().index(f"        noise = {draw}") + 1
    assert agl016(source) == [(line, 17)]


@pytest.mark.parametrize(
    "forward, backward",
    [
        ("return x * 2", "return g + 0.01 * torch.randn_like(g)"),  # gradient noise on purpose
        (FORWARD_MASK, "return g * torch.rand(g.shape, generator=ctx.gen)"),
        (
            "ctx.state = torch.get_rng_state()\n" + FORWARD_MASK,
            "with torch.random.fork_rng():\n    torch.set_rng_state(ctx.state)\n    return g * (torch.rand_like(g) > 0.5)",
        ),
        (FORWARD_MASK, "torch.manual_seed(ctx.seed)\nreturn g * (torch.rand_like(g) > 0.5)"),
        (FORWARD_MASK, "return F.dropout(g, 0.5, training=False)"),
        (FORWARD_MASK, "return F.dropout(g, 0.5, False)"),
        (
            "mask = torch.rand_like(x) > 0.5\nctx.save_for_backward(mask)\nreturn x * mask",
            "(mask,) = ctx.saved_tensors\nreturn g * mask",
        ),
        (FORWARD_MASK, "return g * ctx.dist.sample()"),
    ],
)
def test_reused_or_controlled_randomness_is_silent(forward, backward):
    assert agl016(function(forward, backward)) == []


def test_forward_draw_through_setup_context_counts():
    source = HEADER + textwrap.dedent(
        """\
        class Noise(torch.autograd.Function):
            @staticmethod
            def forward(x, noise):
                return x * noise

            @staticmethod
            def setup_context(ctx, inputs, output):
                ctx.extra = torch.randn(3)

            @staticmethod
            def backward(ctx, g):
                return g * torch.randn_like(g), None
        """
    )
    assert agl016(source) == [(17, 20)]


CORRECT = """
import torch
class SavedMask(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        keep = torch.rand_like(x) > 0.5
        ctx.save_for_backward(keep)
        return x * keep
    @staticmethod
    def backward(ctx, g):
        (keep,) = ctx.saved_tensors
        return g * keep

class Replayed(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.state = torch.get_rng_state()
        return x * (torch.rand_like(x) > 0.5)
    @staticmethod
    def backward(ctx, g):
        with torch.random.fork_rng():
            torch.set_rng_state(ctx.state)
            return g * (torch.rand_like(g) > 0.5)
"""


@pytest.mark.parametrize("name", ["SavedMask", "Replayed"])
def test_recipe_does_not_confirm_reused_randomness(name):
    builders = f"[('{name}.apply(<tensor>)', lambda s: [_agl_probes.leaf_tensor(s)])]"
    verdict, evidence = run_recipe(
        CORRECT + f"agl016.check_rng_backward({name}.apply, {builders}, 'torch.rand_like(g)')"
    )
    assert verdict == "not-reproduced" and "identical gradients" in evidence


def test_recipe_measures_the_mask_mismatch():
    redrawn = CORRECT.replace("            torch.set_rng_state(ctx.state)\n", "")
    builders = "[('Replayed.apply(<tensor>)', lambda s: [_agl_probes.leaf_tensor(s)])]"
    verdict, evidence = run_recipe(
        redrawn + f"agl016.check_rng_backward(Replayed.apply, {builders}, 'torch.rand_like(g)')"
    )
    assert verdict == "confirmed"
    assert "gave different gradients for input 0" in evidence and "forward's output is zero at" in evidence


def test_a_mask_helper_called_by_forward_and_backward_is_followed():
    helper = "def keep_mask(t):\n    return (torch.rand(t.shape) > 0.5).to(t.dtype)\n\n"
    source = function("return x * keep_mask(x)", "return g * keep_mask(g)").replace("class F2", helper + "class F2")
    line = source.splitlines().index("        return g * keep_mask(g)") + 1
    assert agl016(source) == [(line, 20)]
    seeded = source.replace(
        "    return (torch.rand(t.shape)", "    torch.manual_seed(0)\n    return (torch.rand(t.shape)"
    )
    assert agl016(seeded) == []  # the helper seeds the RNG before drawing


def test_module_and_distribution_draws_through_a_local_name():
    forward = "drop = torch.nn.Dropout(0.2)\nreturn drop(x)"
    backward = "sampler = torch.distributions.Normal(g, 1.0)\nnoise = sampler.rsample()\nreturn g + noise"
    source = function(forward, backward)
    assert agl016(source) == [(source.splitlines().index("        noise = sampler.rsample()") + 1, 17)]
    # No draw: a module that does not sample, a distribution's deterministic attributes.
    quiet = "sampler = torch.distributions.Normal(g, 1.0)\nact = torch.nn.ReLU()\nreturn act(g) * sampler.stddev"
    assert agl016(function(forward, quiet)) == []


def test_a_dropout_module_kept_on_ctx_draws_in_both_passes():
    source = HEADER + textwrap.dedent(
        """\
        class Drop(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, p):
                ctx.drop = torch.nn.Dropout(p)
                ctx.act = torch.nn.ReLU()
                return ctx.drop(x)

            @staticmethod
            def backward(ctx, g):
                return ctx.act(g) * ctx.drop(g), None
        """
    )
    assert agl016(source) == [(len(source.splitlines()), 29)]


VALID = [
    # randomness in forward only, the mask read back from saved tensors
    """\
        import torch


        class Dropout(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, p=0.1):
                keep = torch.bernoulli(torch.full_like(x, 1 - p))
                ctx.save_for_backward(keep)
                ctx.p = p
                return x * keep / (1 - p)

            @staticmethod
            def backward(ctx, g):
                (keep,) = ctx.saved_tensors
                return g * keep / (1 - ctx.p), None
    """,
    # backward restores forward's RNG state before drawing
    """\
        import torch


        class LowMemDropout(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, p=0.1):
                ctx.p = p
                ctx.rng = torch.get_rng_state()
                keep = torch.bernoulli(torch.full_like(x, 1 - p))
                return x * keep / (1 - p)

            @staticmethod
            def backward(ctx, g):
                torch.set_rng_state(ctx.rng)
                keep = torch.bernoulli(torch.full_like(g, 1 - ctx.p))
                return g * keep / (1 - ctx.p), None
    """,
    # gradient noise on purpose: forward draws nothing
    """\
        import torch


        class NoisyGrad(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.view_as(x)

            @staticmethod
            def backward(ctx, g):
                return g + 0.01 * torch.randn_like(g)
    """,
    # an explicit generator seeded with forward's seed
    """\
        import torch


        class SeededDropout(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, seed):
                ctx.seed = seed
                gen = torch.Generator().manual_seed(seed)
                keep = torch.rand(x.shape, generator=gen) > 0.1
                return x * keep, None

            @staticmethod
            def backward(ctx, g, _):
                gen = torch.Generator().manual_seed(ctx.seed)
                keep = torch.rand(g.shape, generator=gen) > 0.1
                return g * keep, None
    """,
    # dropout with training=False draws nothing
    """\
        import torch
        import torch.nn.functional as F


        class Smooth(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x + torch.rand_like(x)

            @staticmethod
            def backward(ctx, g):
                return F.dropout(g, 0.1, training=False)
    """,
]

INVALID = [
    # a fresh mask drawn in backward
    """\
        import torch


        class LowMemDropout(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, p=0.1):
                ctx.p = p
                keep = torch.bernoulli(torch.full_like(x, 1 - p))
                return x * keep / (1 - p)

            @staticmethod
            def backward(ctx, g):
                keep = torch.bernoulli(torch.full_like(g, 1 - ctx.p))  # AGL016:16
                return g * keep / (1 - ctx.p), None
    """,
    # the functional dropout in backward
    """\
        import torch
        import torch.nn.functional as F


        class Drop(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return F.dropout(x, 0.2)

            @staticmethod
            def backward(ctx, g):
                return F.dropout(g, 0.2)  # AGL016:16
    """,
    # rand_like in both passes
    """\
        import torch


        class StochasticRound(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return torch.floor(x + torch.rand_like(x))

            @staticmethod
            def backward(ctx, g):
                return g * (torch.rand_like(g) > 0.5)  # AGL016:21
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL016", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL016", source) == marked_positions("AGL016", source)

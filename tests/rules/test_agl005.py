"""AGL005 legacy-function-api: tricky shapes, and recipes that say `not-reproduced` on correct code (real torch,
no mocks). The helpers select AGL006 too, so that each rule is seen leaving the other's cases alone."""

from __future__ import annotations

import textwrap

import pytest
from snippets import marked_positions, reported_positions
from test_confirm import CORRECT_FUNCTION, run_recipe

from autograd_lint import Config, lint_source

HEADER = "import torch\nfrom torch.autograd import Function\n"


def findings(body: str, codes=("AGL005", "AGL006"), prefix: str = "") -> list[tuple[int, str, int]]:
    source = (prefix or HEADER) + textwrap.dedent(body)
    return [(d.line, d.code, d.column) for d in lint_source(source, "m.py", Config(select=codes))]


STATIC = "from torch.autograd import Function\n" + CORRECT_FUNCTION  # Scale(x, alpha), ctx.alpha


def test_plain_methods_reading_what_forward_wrote_are_tolerated():
    assert (
        findings(
            """
        class Clamp(Function):
            def forward(self, x, low):
                self.save_for_backward(x)
                self.low = low
                return x.clamp(min=low)

            def backward(self, g):
                (x,) = self.saved_tensors
                return g * (x >= self.low), None

        y = Clamp.apply(torch.ones(2), 0.0)
        """
        )
        == []
    )


def test_plain_method_reading_a_method_or_init_state_is_flagged_at_its_def():
    assert findings(
        """
        class Legacy(Function):
            def __init__(self, k=2):
                self.k = k

            def helper(self, x):
                return x

            def forward(self, x):
                return self.helper(x)

            def backward(self, g):
                return g * self.k
        """
    ) == [(5, "AGL005", 9), (11, "AGL005", 9), (14, "AGL005", 9)]


def test_instance_uses():
    assert findings(
        """
        class Bare(Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2

            @staticmethod
            def backward(ctx, g):
                return g * 2

        x = torch.ones(2, requires_grad=True)
        a = Bare()(x)
        b = Bare().apply(x)
        c = Bare(0.5).apply(x)
        d = Scale.apply(x, 2.0)
        """,
        prefix=STATIC,
    ) == [(23, "AGL005", 5), (25, "AGL005", 5)]


def test_init_writing_a_class_attribute_leaves_apply_to_agl001():
    assert findings(
        """
        class Decay(Function):
            def __init__(self, rate):
                Decay.rate = rate

            @staticmethod
            def forward(ctx, x):
                return x.clone()

            @staticmethod
            def backward(ctx, g):
                return g * Decay.rate

        y = Decay(0.5).apply(torch.ones(2))
        """
    ) == [(5, "AGL005", 9)]


def test_own_call_and_unknown_bases_keep_instance_calls_silent():
    assert (
        findings(
            """
        from lib import Base

        class Callable(Function):
            def __call__(self, x):
                return Callable.apply(x)

            @staticmethod
            def forward(ctx, x):
                return x * 2

            @staticmethod
            def backward(ctx, g):
                return g * 2

        class Mixed(Function, Base):
            @staticmethod
            def forward(ctx, x):
                return x * 2

        y = Callable()(torch.ones(2)) + Mixed()(torch.ones(2))
        """
        )
        == []
    )


@pytest.mark.parametrize(
    "body",
    [
        "@staticmethod\ndef jvp(ctx, t):\n    return t * 2\n",
        "backward = staticmethod(lambda ctx, g: g * 2)\n",
        "@staticmethod\ndef vjp(ctx, g):\n    return g * 2\n",
    ],
)
def test_missing_backward_stays_silent_with_jvp_vjp_or_assigned_backward(body):
    source = (
        "class Double(Function):\n    @staticmethod\n    def forward(ctx, x):\n        return x * 2\n"
        + textwrap.indent(body, "    ")
    )
    assert findings(source) == []


def test_missing_backward_is_flagged_only_where_backward_can_run():
    assert findings(
        """
        class Base(Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2

        class Child(Base):
            @staticmethod
            def backward(ctx, g):
                return g * 2

        class Indices(Function):
            @staticmethod
            def forward(ctx, x):
                out = x.argmax(-1)
                ctx.mark_non_differentiable(out)
                return out

        class Inference(Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2

        class Training(Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2

        with torch.no_grad():
            y = Inference.apply(torch.ones(2))
        z = Training.apply(torch.ones(2))
        """
    ) == [(26, "AGL005", 7)]


# --- recipes on correct code ------------------------------------------------------------------


def legacy(
    kind,
    make="None",
    init="None",
    other="None",
    other_args="None",
    attribute=None,
    cls="Scale",
    args="[_agl_probes.leaf_tensor(s), 2.0]",
):
    return run_recipe(
        STATIC
        + f"agl005.check_legacy_api({cls}, {kind!r}, {make}, {init}, {other}, {other_args}, {attribute!r},"
        + f" [('{cls}.apply(x, 2.0)', lambda s: {args})])"
    )


def test_legacy_recipe_does_not_confirm_correct_code():
    assert legacy("no-backward")[0] == "not-reproduced"
    assert legacy("instance-state", attribute="alpha")[0] == "not-reproduced"


@pytest.mark.parametrize(
    "init, verdict, says",
    [
        ("Decay.rate = rate", "not-reproduced", "constructor arguments are used"),  # shared state: AGL001's
        ("self.rate = rate", "confirmed", "constructor arguments are ignored"),
    ],
)
def test_legacy_recipe_compares_constructor_arguments(init, verdict, says):
    code = f"""
    class Decay(Function):
        rate = 1.0
        def __init__(self, rate):
            {init}
        @staticmethod
        def forward(ctx, x):
            return x * Decay.rate
        @staticmethod
        def backward(ctx, g):
            return g * Decay.rate
    agl005.check_legacy_api(Decay, 'instance-apply', lambda: Decay(0.5), '0.5', lambda: Decay(2.0), '2.0', None,
                       [('Decay.apply(x)', lambda s: [_agl_probes.leaf_tensor(s)])])
    """
    result = run_recipe(HEADER + textwrap.dedent(code))
    assert result[0] == verdict and says in result[1]


VALID = [
    # plain methods reading only what forward wrote on its first argument, used through apply
    """\
        import torch


        class Clamp(torch.autograd.Function):
            def forward(self, x, low):
                self.save_for_backward(x)
                self.low = low
                return x.clamp(min=low)

            def backward(self, g):
                (x,) = self.saved_tensors
                return g * (x >= self.low), None


        def clamp(x, low):
            return Clamp.apply(x, low)
    """,
    # Fn().apply(x) without constructor arguments: only a DeprecationWarning
    """\
        import torch


        class Double(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2

            @staticmethod
            def backward(ctx, g):
                return g * 2


        def double(x):
            return Double().apply(x)
    """,
    # an __init__ that stores nothing
    """\
        import torch


        class Neg(torch.autograd.Function):
            def __init__(self):
                super().__init__()

            @staticmethod
            def forward(ctx, x):
                return -x

            @staticmethod
            def backward(ctx, g):
                return -g
    """,
    # no backward, but a jvp (forward mode only) or an assigned backward
    """\
        import torch


        def _straight_through(ctx, g):
            return g


        class Round(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return torch.round(x)

            backward = staticmethod(_straight_through)


        class Exp(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                y = x.exp()
                ctx.y = y
                return y

            @staticmethod
            def jvp(ctx, t):
                return t * ctx.y
    """,
    # no backward, but torch never calls one: the only output is an index tensor
    """\
        import torch


        class ArgTop(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.argmax(-1)


        def top(x):
            return ArgTop.apply(x)
    """,
    # no backward, and every apply runs under no_grad
    """\
        import torch


        class Fused(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * torch.sigmoid(x)


        @torch.no_grad()
        def infer(x):
            return Fused.apply(x)
    """,
]

INVALID = [
    # an __init__ storing state and a plain backward reading it
    """\
        import torch


        class GradReverse(torch.autograd.Function):
            def __init__(self, lambd):  # AGL005:9
                self.lambd = lambd

            def forward(self, x):
                return x.view_as(x)

            def backward(self, g):  # AGL005:9
                return -self.lambd * g
    """,
    # a Function applied without a backward
    """\
        import torch


        class BinActive(torch.autograd.Function):  # AGL005:7
            @staticmethod
            def forward(ctx, x):
                return x.sign()


        def binarize(x):
            return BinActive.apply(x)
    """,
    # an instance call (the legacy API)
    """\
        import torch


        class Square(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * x

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return 2 * x * g


        def square(x):
            return Square()(x)  # AGL005:12
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL005", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL005", source) == marked_positions("AGL005", source)

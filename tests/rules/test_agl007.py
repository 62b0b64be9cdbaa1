"""AGL007 tensor-on-ctx: static cases (with the value_kinds heuristic it shares with AGL012 and AGL013) and the
confirm recipe under real torch. The Function builders here serve the AGL012 and AGL013 tests too."""

from __future__ import annotations

import textwrap

import pytest
from snippets import marked_positions, reported_positions
from test_confirm import run_recipe

from autograd_lint import Config, lint_source


def found(code: str, source: str) -> list[tuple[int, int]]:
    return [(d.line, d.column) for d in lint_source(textwrap.dedent(source), "case.py", Config(select=(code,)))]


def function(forward_body: str, params: str = "x", call: str = "", backward: str = "return g") -> str:
    """A Function whose forward body starts at line 7 (column 9)."""
    return (
        "import torch\nimport torch.nn.functional as F\n\n"
        "class Fn(torch.autograd.Function):\n"
        "    @staticmethod\n"
        f"    def forward(ctx, {params}):\n"
        + textwrap.indent(textwrap.dedent(forward_body).strip(), " " * 8)
        + "\n\n    @staticmethod\n    def backward(ctx, g):\n        "
        + backward
        + "\n"
        + (f"\n\ny = {call}\n" if call else "")
    )


@pytest.mark.parametrize(
    "body, params, call, backward",
    [
        ("ctx.x = x\nreturn x.clamp(min=0)", "x", "", "return g * ctx.x"),  # a tensor-only method tells
        ("ctx.w = w\nreturn x @ w", "x, w", "", "return g @ ctx.w.t(), g"),  # an operand of @
        (
            "ctx.x = x\nreturn x * 2",
            "x",
            "Fn.apply(torch.randn(3))",
            "return g * ctx.x",
        ),  # the call site passes a tensor
        ("ctx.x = x\nreturn x * 2", "x: torch.Tensor", "", "return g * ctx.x"),  # the annotation
        ("ctx.x = x\nreturn x * 2", "x", "", "x = ctx.x\n        return g * x"),  # read through a local
        ("ctx.x = x\nreturn x * k", "x, k: float", "", "return g * ctx.x, None"),  # the only input that is not a number
        ("x = x.contiguous()\nctx.x = x\nreturn x * 2", "x", "", "return g * ctx.x"),  # a view/alias of the input
        ("ctx.xt = x.t()\nreturn x * 2", "x", "", "return g * ctx.xt.t()"),  # a transposed view
        ("ctx.saved = (x, 2)\nreturn x * 2", "x", "", "x, n = ctx.saved\n        return g * x * n"),  # a tuple element
        # backward always returns a gradient for x: torch accepts one only for a tensor
        ("ctx.x = x\nreturn x * w", "x, w", "", "gx = g * ctx.x\n        return gx, None"),
        ("y = torch.exp(x)\nctx.y = y\nreturn y", "x", "", "return g"),  # the output: a cycle, even unread
        ("out = x * 2\nctx.out = out\nreturn out", "x", "", "return g * 2"),  # returned alone: an output
        ("ctx.m = F.relu(x) > 0\nreturn F.relu(x)", "x", "", "return g"),  # an intermediate backward never reads
        ("ctx.cache = (torch.sigmoid(x), 2)\nreturn x * 2", "x", "", "return g"),  # unread, in a tuple
        ("ctx.a, ctx.n = torch.tanh(x), 2\nreturn x * 2", "x", "", "return g * ctx.n"),  # element-wise tuple targets
    ],
)
def test_tensor_on_ctx_is_flagged(body, params, call, backward):
    line = 7 + next(i for i, text in enumerate(body.splitlines()) if text.startswith("ctx."))
    assert found("AGL007", function(body, params, call, backward)) == [(line, 9)]


@pytest.mark.parametrize(
    "body, params, backward",
    [
        ("ctx.shape = x.shape\nctx.n = x.size(0)\nctx.d = x.dim()\nreturn x.clone()", "x", "return g"),
        (
            "ctx.dtype = x.dtype\nctx.device = x.device\nctx.peak = x.abs().max().item()\nreturn x.clone()",
            "x",
            "return g",
        ),
        ("ctx.k = k\nreturn x.clone() * k", "x, k: float", "return g * ctx.k, None"),
        ("ctx.eps = eps\nreturn x.clone()", "x, eps=1e-5", "return g, None"),
        ("ctx.group = group\nctx.fn = fn\nreturn x.clone()", "x, group, fn", "return g, None, None"),
        ("ctx.x = None\nreturn x.clone()", "x", "return g"),
        ("ctx.flag = ctx.needs_input_grad[0]\nreturn x.clone()", "x", "return g"),
        ("ctx.state = torch.get_rng_state()\nreturn x.clone()", "x", "return g"),
        # nothing tells which input is the tensor (x's gradient may be None)
        ("ctx.x = x\nreturn x * w", "x, w", "return (g * ctx.x if ctx.needs_input_grad[0] else None), None"),
        ("ctx.parts = helper(x)\nreturn x.clone()", "x", "return g"),
        ("ctx.rest = rest\nreturn x.clone()", "x, *rest", "return g"),
        ("x = x.shape\nctx.x = x\nreturn x", "x", "return g"),  # rebound to a shape
        # a process group has .size() too; passed as group= it is no tensor
        ("ctx.pg = pg\nn = pg.size()\nreturn x.clone() * n", "x, pg", "return g * ctx.pg.size(), None"),
        # backward reads it only for its shape, dtype or device
        ("ctx.x = x\nreturn x.clone()", "x", "return torch.zeros_like(ctx.x)"),
        ("ctx.x = x\nreturn x.clone()", "x", "return g.new_zeros(ctx.x.shape)"),
        ("ctx.x = x\nreturn x.clone()", "x", "return g.view(ctx.x.size())"),
        # an input that receives no gradient (frozen weight, index tensor)
        ("ctx.w = w\nreturn x.mm(w.t())", "x, w: torch.Tensor", "return g.mm(ctx.w), None"),
        # an intermediate backward uses: nothing outside forward can change it
        ("ctx.m = F.relu(x) > 0\nreturn F.relu(x)", "x", "return g * ctx.m"),
        (
            "t = torch.tanh(x)\nctx.cache = (t, 2)\nreturn t * 2",
            "x",
            "t, k = ctx.cache\n        return g * (1 - t * t) * k",
        ),
        # an input backward never reads: it stays alive with its caller anyway
        ("ctx.x = x\nreturn x.clone()", "x", "return g"),
        # outputs without grad_fn: integer results and outputs marked non-differentiable (no cycle)
        ("idx = x.argmax(-1)\nctx.idx = idx\nreturn x.clone(), idx", "x", "return g.scatter(-1, ctx.idx, g)"),
        ("y = x * 2\nctx.mark_non_differentiable(y)\nctx.y = y\nreturn y", "x", "return g * ctx.y"),
        # ctx handed to a helper: what it reads is not known, and an intermediate is not reported
        ("ctx.m = x > 0\nreturn x.clone()", "x", "return _grad(ctx, g)"),
    ],
)
def test_non_tensors_and_harmless_tensors_on_ctx_are_silent(body, params, backward):
    assert found("AGL007", function(body, params, backward=backward)) == []


def test_process_group_passed_as_group_keyword_is_not_a_tensor():
    source = function(
        "ctx.group = group\nworld = group.size()\ntorch.distributed.all_reduce(x, group=group)\nreturn x * world",
        "x, group",
        backward="torch.distributed.all_reduce(g, group=ctx.group)\n        return g, None",
    )
    assert found("AGL007", source) == []


def setup_context_function(body: str, backward: str = "return g * ctx.x, None") -> str:
    """forward(x, k) with a setup_context whose body starts at line 10 (column 9)."""
    return (
        "import torch\n\nclass Fn(torch.autograd.Function):\n"
        "    @staticmethod\n    def forward(x, k):\n        return x.exp() * k\n\n"
        "    @staticmethod\n    def setup_context(ctx, inputs, output):\n"
        + textwrap.indent(textwrap.dedent(body).strip(), " " * 8)
        + f"\n\n    @staticmethod\n    def backward(ctx, g):\n        {backward}\n\n"
        "y = Fn.apply(torch.ones(2), 3)\n"
    )


def test_setup_context_inputs_and_output():
    source = setup_context_function("x, k = inputs\nctx.k = k\nctx.out = output\nctx.x = x")
    assert found("AGL007", source) == [(12, 9), (13, 9)]


def test_setup_context_inputs_by_index():
    source = setup_context_function("ctx.x = inputs[0]\nctx.k = inputs[1]\nctx.save_for_backward(inputs[0], inputs[1])")
    assert found("AGL007", source) == [(10, 9)]


def test_torch_source_patterns_stay_silent():
    """Shapes from torch's own Functions: a checkpoint stores its callable and RNG state, a
    collective its process group; saved tensors go through one call."""
    source = """\
    import torch

    class CheckpointLike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, run_function, preserve_rng_state, *args):
            ctx.run_function = run_function
            ctx.preserve_rng_state = preserve_rng_state
            if preserve_rng_state:
                ctx.fwd_cpu_state = torch.get_rng_state()
            ctx.inputs = []
            tensor_inputs = []
            for arg in args:
                if torch.is_tensor(arg):
                    tensor_inputs.append(arg)
                    ctx.inputs.append(None)
                else:
                    ctx.inputs.append(arg)
            ctx.save_for_backward(*tensor_inputs)
            with torch.no_grad():
                return run_function(*args)

        @staticmethod
        def backward(ctx, *grads):
            return (None, None) + grads
    """
    assert found("AGL007", source) + found("AGL012", source) + found("AGL013", source) == []


# ---- the recipes on correct code ----

CORRECT = """
import torch
class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, k):
        ctx.save_for_backward(x)
        ctx.k = k
        ctx.shape = x.shape
        return x * x * k
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g * ctx.k, None
BUILDERS = [("Square.apply(<tensor>, 2.0)", lambda s: [_agl_probes.leaf_tensor(s), 2.0])]
"""


def test_recipe_does_not_confirm_correct_code():
    for attribute in ("k", "shape", "missing"):
        verdict, evidence = run_recipe(
            CORRECT + f"agl007.check_tensor_on_ctx(Square.apply, BUILDERS, {attribute!r}, 'input')"
        )
        assert verdict == "not-reproduced" and f"stored no tensor as ctx.{attribute}" in evidence


def test_ctx_tensor_recipe_names_the_harm_of_each_role():
    code = """
import torch
class Leaky(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = x * x
        ctx.x = x
        ctx.y = y
        ctx.m = x.exp()
        return y
    @staticmethod
    def backward(ctx, g):
        return 2 * ctx.x * g
agl007.check_tensor_on_ctx(Leaky.apply, [("Leaky.apply(<tensor>)", lambda s: [_agl_probes.leaf_tensor(s)])], {attribute!r}, "x")
"""
    cycle = run_recipe(code.replace("{attribute!r}", "'y'"))
    assert cycle[0] == "confirmed" and "survived `del out`" in cycle[1]
    stale = run_recipe(code.replace("{attribute!r}", "'x'"))
    assert stale[0] == "confirmed" and "raised no error but changed input 0's gradient" in stale[1]
    held = run_recipe(code.replace("{attribute!r}", "'m'"))
    assert (
        held[0] == "confirmed"
        and "after backward, grad_fn still holds ctx.m (torch.float64 [3, 3], 72 bytes)" in held[1]
    )


def test_function_without_a_backward_here_reports_only_its_output():
    source = """
import torch

class Fn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor):
        ctx.x = x
        ctx.y = torch.exp(x)
        out = x * 2
        ctx.out = out
        return out
"""
    assert found("AGL007", source) == [(10, 9)]


VALID = [
    # shapes, dtypes, Python numbers and flags
    """\
        import torch


        class Fn(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, eps=1e-5):
                ctx.shape = x.shape
                ctx.dtype = x.dtype
                ctx.peak = x.abs().max().item()
                ctx.eps = eps
                return x / (x.norm() + eps)

            @staticmethod
            def backward(ctx, g):
                return g.view(ctx.shape) / ctx.peak, None
    """,
    # an input backward reads only for its shape
    """\
        import torch


        class Zeroed(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.x = x
                return x.sum()

            @staticmethod
            def backward(ctx, g):
                return g.expand(ctx.x.shape)
    """,
    # an intermediate backward reads: forward runs without grad, nothing can change it
    """\
        import torch
        import torch.nn.functional as F


        class Relu(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.mask = x > 0
                return F.relu(x)

            @staticmethod
            def backward(ctx, g):
                return g * ctx.mask
    """,
    # an output marked non-differentiable closes no cycle
    """\
        import torch


        class Indices(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                idx = x.argmax(-1)
                ctx.idx = idx
                return x.clone(), idx

            @staticmethod
            def backward(ctx, g, g_idx):
                return g
    """,
    # an RNG state, a clean-up and a process group
    """\
        import torch


        class Noisy(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, group):
                ctx.rng = torch.get_rng_state()
                ctx.group = group
                ctx.x = None
                return x + torch.randn_like(x)

            @staticmethod
            def backward(ctx, g):
                torch.distributed.all_reduce(g, group=ctx.group)
                return g, None
    """,
    # an input that receives no gradient (a frozen weight)
    """\
        import torch


        class FrozenLinear(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w: torch.Tensor):
                ctx.w = w
                return x.mm(w.t())

            @staticmethod
            def backward(ctx, g):
                return g.mm(ctx.w), None
    """,
]

INVALID = [
    # the input and the output kept on ctx
    """\
        import torch


        class Swish(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                out = x * torch.sigmoid(x)
                ctx.x = x  # AGL007:9
                ctx.out = out  # AGL007:9
                return out

            @staticmethod
            def backward(ctx, g):
                sig = torch.sigmoid(ctx.x)
                return g * (ctx.out + sig * (1 - ctx.out))
    """,
    # an operand of @ that backward reads
    """\
        import torch


        class MatMul(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w):
                ctx.w = w  # AGL007:9
                ctx.save_for_backward(x)
                return x @ w

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return g @ ctx.w.t(), x.t() @ g
    """,
    # a tensor in a tuple on ctx, read back in backward
    """\
        import torch


        class Power(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.saved = (x, 3)  # AGL007:9
                return x ** 3

            @staticmethod
            def backward(ctx, g):
                x, n = ctx.saved
                return g * n * x ** (n - 1)
    """,
    # the output stored though backward never reads it: a reference cycle
    """\
        import torch


        class Exp(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                y = torch.exp(x)
                ctx.y = y  # AGL007:9
                ctx.save_for_backward(y)
                return y

            @staticmethod
            def backward(ctx, g):
                (y,) = ctx.saved_tensors
                return g * y
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL007", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL007", source) == marked_positions("AGL007", source)

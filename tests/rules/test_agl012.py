"""AGL012 save-for-backward-non-tensor: static cases (with the value_kinds heuristic it shares with AGL007) and
the confirm recipe under real torch."""

from __future__ import annotations

import textwrap

import pytest
from snippets import marked_positions, reported_positions
from test_agl007 import CORRECT, found, function, setup_context_function
from test_confirm import run_recipe

from autograd_lint import Config, lint_source


def test_setup_context_inputs_by_index():
    source = setup_context_function("ctx.x = inputs[0]\nctx.k = inputs[1]\nctx.save_for_backward(inputs[0], inputs[1])")
    assert found("AGL012", source) == [(12, 42)]
    (diagnostic,) = lint_source(source, "case.py", Config(select=("AGL012",)))
    assert "`inputs[1]` (an int)" in diagnostic.message
    assert "`inputs[1]`, which is an int" in diagnostic.explanation


def test_setup_context_unpacked_input_is_named_by_its_call_site_type():
    source = setup_context_function("x, k = inputs\nctx.save_for_backward(x, k)")
    (diagnostic,) = lint_source(source, "case.py", Config(select=("AGL012",)))
    assert (diagnostic.line, diagnostic.column) == (11, 34)
    assert "`k` (an int)" in diagnostic.message
    assert "`k`, which is an int" in diagnostic.explanation


@pytest.mark.parametrize(
    "args, column",
    [
        ("x, 3", 34),
        ("x, 0.5", 34),
        ("x.shape", 31),
        ("x.size()", 31),
        ("x, x.item()", 34),
        ("x.tolist()", 31),
        ("[x, x]", 31),
        ("(x, x)", 32),
        ("x, len(x)", 34),
        ("x, x.dim()", 34),
        ("*x.shape", 32),
        ("x, 'mean'", 34),
    ],
)
def test_non_tensor_argument_is_flagged(args, column):
    source = function(f"ctx.save_for_backward({args})\nreturn x.clone()")
    assert found("AGL012", source) == [(7, column)]


@pytest.mark.parametrize(
    "params, args, call",
    [
        ("x, k: int", "x, k", ""),
        ("x, k", "x, k", "Fn.apply(torch.ones(2), 3)"),
        ("x, eps=1e-5", "x, eps", "Fn.apply(torch.ones(2))"),
        ("x, eps=1e-5", "x, eps", ""),
    ],
)
def test_non_tensor_parameter_is_flagged(params, args, call):
    source = function(f"ctx.save_for_backward({args})\nreturn x.clone()", params, call)
    assert found("AGL012", source) == [(7, 34)]


@pytest.mark.parametrize(
    "params, body, call",
    [
        ("x, bias=None", "ctx.save_for_backward(x, bias)", ""),
        ("x", "ctx.save_for_backward(x, None)", ""),
        ("*tensors", "ctx.save_for_backward(*tensors)", ""),
        ("x", "ctx.save_for_backward(*[x, x])", ""),
        ("x, tau=1.0", "ctx.save_for_backward(x, tau)", "Fn.apply(torch.ones(2), torch.tensor(2.0))"),
        ("x, tau=1.0", "ctx.save_for_backward(x, tau)", "Fn.apply(torch.ones(2), t)"),  # unknown at the call
        ("x, k", "ctx.save_for_backward(x, k)", "Fn.apply(torch.ones(2), 3 if a else w)"),
        ("x, eps=1e-5", "ctx.save_for_backward(x, eps)\ny = eps.view(-1)", ""),  # used as a tensor
        ("x", "y = torch.exp(x)\nctx.save_for_backward(x, y, y.sum())", ""),
    ],
)
def test_tensors_none_and_unknowns_are_silent(params, body, call):
    assert found("AGL012", function(body + "\nreturn x.clone()", params, call)) == []


HELPER_LEVELS = """
import torch

def _levels(bits):
    return int(2 ** (bits - 1)) - 1

class Fn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bits):
        {body}
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g, None

def _stats(x):
    return x.abs().max(), x.numel()
"""


@pytest.mark.parametrize(
    "body, position",
    [
        ("n = _levels(bits)\n        ctx.save_for_backward(x, n)", (11, 34)),  # a module function's int
        ("n = int(2 ** (bits - 1))\n        ctx.save_for_backward(x, n)", (11, 34)),  # a call's value through a name
        ("s = x.size()\n        ctx.save_for_backward(x, s)", (11, 34)),
        ("saved = (x, x.dim())\n        ctx.save_for_backward(*saved)", (10, 21)),  # `*` of a local tuple
        ("ctx.save_for_backward(*[x, x.numel()])", (10, 36)),  # `*` of a display
        ("save = ctx.save_for_backward\n        save(x, x.item())", (11, 17)),  # through an alias
        ("n, c = x.shape[:2]\n        ctx.save_for_backward(x, c)", (11, 34)),  # unpacked from a shape slice
        ("p, k = x.abs().max(), x.numel()\n        ctx.save_for_backward(p, k)", (11, 34)),  # element of a display
        ("p, k = _stats(x)\n        ctx.save_for_backward(p, k)", (11, 34)),  # element of a helper's returned tuple
    ],
)
def test_non_tensor_reached_through_names_calls_and_stars_is_flagged(body, position):
    assert found("AGL012", HELPER_LEVELS.format(body=body)) == [position]


def test_save_in_a_helper_forward_hands_ctx_to_is_flagged_at_forwards_argument():
    source = """
import torch

def _stash(ctx, *tensors):
    ctx.save_for_backward(*tensors)

class Fn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, threshold):
        _stash(ctx, x, threshold)
        return (x > threshold).float()

    @staticmethod
    def backward(ctx, g):
        return g, None

def spike(x):
    return Fn.apply(x, 1.0)
"""
    assert found("AGL012", source) == [(10, 24)]
    (diagnostic,) = lint_source(textwrap.dedent(source), "case.py", Config(select=("AGL012",)))
    assert "(through `_stash(...)`) is given `threshold` (a float)" in diagnostic.message
    assert "`threshold`, which is a float" in diagnostic.explanation


@pytest.mark.parametrize(
    "test",
    ["isinstance(k, int)", "k is None", "not torch.is_tensor(k)"],
)
def test_save_under_a_test_of_the_arguments_kind_is_silent(test):
    body = f"if {test}:\n    ctx.k = k\n    ctx.save_for_backward(x)\nelse:\n    ctx.save_for_backward(x, k)\nreturn x.clone()"
    assert found("AGL012", function(body, "x, k: int")) == []


def test_call_sites_outrank_the_annotation():
    """`k: torch.Tensor` that every call passes an int: the call sites say what k is."""
    source = function(
        "ctx.save_for_backward(x, k)\nreturn x.clone()", "x, k: torch.Tensor", "Fn.apply(torch.ones(2), 64)"
    )
    assert found("AGL012", source) == [(7, 34)]


def test_recipe_does_not_confirm_correct_code():
    assert run_recipe(CORRECT + "agl012.check_save_non_tensor(Square.apply, BUILDERS)")[0] == "not-reproduced"


def test_non_tensor_save_is_quiet_without_grad():
    """The TypeError needs a recorded graph: the recipe's evidence says the no_grad call passes."""
    code = """
import torch
class Pow(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, k):
        ctx.save_for_backward(x, k)
        return x ** k
    @staticmethod
    def backward(ctx, g):
        return g, None
agl012.check_save_non_tensor(Pow.apply, [("Pow.apply(<tensor>, 3)", lambda s: [_agl_probes.leaf_tensor(s), 3])])
"""
    verdict, evidence = run_recipe(code)
    assert verdict == "confirmed"
    assert "argument 1 is of type int (under torch.no_grad() the same call runs without error)" in evidence


def test_forward_varargs_saved_with_a_number_from_a_call_site_is_flagged():
    source = """
import torch

class Fn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, *args):
        ctx.save_for_backward(x, *args)
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return (g * 2,) + (None,) * (len(ctx.saved_tensors) - 1)

def with_tensor(x, w):
    return Fn.apply(x, w)

def with_number(x, w):
    return Fn.apply(x, w, 0.5)
"""
    (diagnostic,) = lint_source(textwrap.dedent(source), "case.py", Config(select=("AGL012",)))
    assert (diagnostic.line, diagnostic.column) == (7, 35)
    assert "`*args`, which holds `0.5` at a call" in diagnostic.message
    assert "holds `0.5` from the call `Fn.apply(x, w, 0.5)`" in diagnostic.explanation
    assert "argument 2 is of type float" in diagnostic.explanation
    assert found("AGL012", source.replace("Fn.apply(x, w, 0.5)", "Fn.apply(x, w, w)")) == []


def test_function_imported_under_another_name_is_checked():
    source = """
import torch
from torch.autograd import Function as AutogradFn

class Quant(AutogradFn):
    @staticmethod
    def forward(ctx, x, bits):
        ctx.save_for_backward(x, bits)
        return torch.round(x * 2 ** bits)

    @staticmethod
    def backward(ctx, g):
        return g, None

def quantize(x):
    return Quant.apply(x, bits=4)
"""
    assert found("AGL012", source) == [(8, 34)]


VALID = [
    # None and an optional bias
    """\
        import torch


        class Linear(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w, bias=None):
                ctx.save_for_backward(x, w, bias)
                out = x @ w.t()
                return out if bias is None else out + bias

            @staticmethod
            def backward(ctx, g):
                x, w, bias = ctx.saved_tensors
                return g @ w, g.t() @ x, None if bias is None else g.sum(0)
    """,
    # starred tensors
    """\
        import torch


        class Sum(torch.autograd.Function):
            @staticmethod
            def forward(ctx, *tensors):
                ctx.save_for_backward(*tensors)
                return sum(tensors)

            @staticmethod
            def backward(ctx, g):
                return (g,) * len(ctx.saved_tensors)
    """,
    # a parameter a call site passes a value of unknown kind for
    """\
        import torch


        class Pow(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, k):
                ctx.save_for_backward(x, k)
                return x ** k

            @staticmethod
            def backward(ctx, g):
                x, k = ctx.saved_tensors
                return g * k * x ** (k - 1), None


        def power(x, k):
            return Pow.apply(x, k)
    """,
    # tensors computed in forward
    """\
        import torch


        class Exp(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                y = torch.exp(x)
                ctx.save_for_backward(y, y.sum())
                return y

            @staticmethod
            def backward(ctx, g):
                y, _ = ctx.saved_tensors
                return g * y
    """,
    # a save under a test of the argument's kind
    """\
        import torch


        class Rotate(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, offsets):
                if isinstance(offsets, int):
                    ctx.offsets = offsets
                    ctx.save_for_backward(x)
                else:
                    ctx.save_for_backward(x, offsets)
                return x.roll(1)

            @staticmethod
            def backward(ctx, g):
                return g.roll(-1), None
    """,
]

INVALID = [
    # an int passed at the call site
    """\
        import torch


        class Pow(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, k):
                ctx.save_for_backward(x, k)  # AGL012:34
                return x ** k

            @staticmethod
            def backward(ctx, g):
                x, k = ctx.saved_tensors
                return g * k * x ** (k - 1), None


        def cube(x):
            return Pow.apply(x, 3)
    """,
    # a shape
    """\
        import torch


        class Flatten(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x.shape)  # AGL012:31
                return x.reshape(x.shape[0], -1)

            @staticmethod
            def backward(ctx, g):
                (shape,) = ctx.saved_tensors
                return g.reshape(shape)
    """,
    # a Python number through a local name
    """\
        import torch


        class Normalize(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                peak = x.abs().max().item()
                ctx.save_for_backward(x, peak)  # AGL012:34
                return x / peak

            @staticmethod
            def backward(ctx, g):
                x, peak = ctx.saved_tensors
                return g / peak
    """,
    # a parameter annotated int
    """\
        import torch


        class Quant(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, bits: int):
                ctx.save_for_backward(x, bits)  # AGL012:34
                return torch.round(x * 2 ** bits) / 2 ** bits

            @staticmethod
            def backward(ctx, g):
                return g, None
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL012", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL012", source) == marked_positions("AGL012", source)

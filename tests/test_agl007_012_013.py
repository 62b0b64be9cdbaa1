"""AGL007 tensor-on-ctx, AGL012 save-for-backward-non-tensor, AGL013 save-for-backward-twice:
static cases (with the value_kinds heuristic they share) and the confirm recipes under real torch."""

from __future__ import annotations

import textwrap

import pytest

from autograd_lint import Config, lint_source

from test_confirm import run_recipe


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


# ---- AGL007 ----


@pytest.mark.parametrize(
    "body, params, call, backward",
    [
        ("ctx.x = x\nreturn x.clamp(min=0)", "x", "", "return g * ctx.x"),  # a tensor-only method tells
        ("ctx.w = w\nreturn x @ w", "x, w", "", "return g @ ctx.w.t(), g"),  # an operand of @
        ("ctx.x = x\nreturn x * 2", "x", "Fn.apply(torch.randn(3))", "return g * ctx.x"),  # the call site passes a tensor
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
        ("ctx.dtype = x.dtype\nctx.device = x.device\nctx.peak = x.abs().max().item()\nreturn x.clone()", "x", "return g"),
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
        ("t = torch.tanh(x)\nctx.cache = (t, 2)\nreturn t * 2", "x", "t, k = ctx.cache\n        return g * (1 - t * t) * k"),
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


# ---- AGL012 ----


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
    source = function("ctx.save_for_backward(x, k)\nreturn x.clone()", "x, k: torch.Tensor", "Fn.apply(torch.ones(2), 64)")
    assert found("AGL012", source) == [(7, 34)]


# ---- AGL013 ----


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
BUILDERS = [("Square.apply(<tensor>, 2.0)", lambda s: [_agl_leaf(s), 2.0])]
"""


def test_recipes_do_not_confirm_correct_code():
    assert run_recipe(CORRECT + "_agl_save_non_tensor_recipe(Square.apply, BUILDERS)")[0] == "not-reproduced"
    assert run_recipe(CORRECT + "_agl_save_twice_recipe(Square.apply, BUILDERS)")[0] == "not-reproduced"
    for attribute in ("k", "shape", "missing"):
        verdict, evidence = run_recipe(CORRECT + f"_agl_ctx_tensor_recipe(Square.apply, BUILDERS, {attribute!r}, 'input')")
        assert verdict == "not-reproduced" and f"stored no tensor as ctx.{attribute}" in evidence


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
_agl_save_twice_recipe(Twice.apply, [("Twice.apply(<tensor>)", lambda s: [_agl_leaf(s)])])
"""
    verdict, evidence = run_recipe(code)
    assert verdict == "not-reproduced" and "saved_tensors holds 1" in evidence


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
_agl_ctx_tensor_recipe(Leaky.apply, [("Leaky.apply(<tensor>)", lambda s: [_agl_leaf(s)])], {attribute!r}, "x")
"""
    cycle = run_recipe(code.replace("{attribute!r}", "'y'"))
    assert cycle[0] == "confirmed" and "survived `del out`" in cycle[1]
    stale = run_recipe(code.replace("{attribute!r}", "'x'"))
    assert stale[0] == "confirmed" and "raised no error but changed input 0's gradient" in stale[1]
    held = run_recipe(code.replace("{attribute!r}", "'m'"))
    assert held[0] == "confirmed" and "after backward, grad_fn still holds ctx.m (torch.float64 [3, 3], 72 bytes)" in held[1]


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
_agl_save_non_tensor_recipe(Pow.apply, [("Pow.apply(<tensor>, 3)", lambda s: [_agl_leaf(s), 3])])
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

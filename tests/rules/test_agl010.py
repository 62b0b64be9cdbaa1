"""AGL010 missing-once-differentiable: static cases and the gradient-penalty recipe under real torch."""

from __future__ import annotations

import textwrap

import pytest
from snippets import marked_positions, reported_positions
from test_confirm import run_recipe

from autograd_lint import Config, lint_source

HEADER = "import torch\nimport numpy as np\n"


def agl010(source: str) -> list[tuple[int, int]]:
    found = lint_source(textwrap.dedent(source), "case.py", Config(select=("AGL010",)))
    return [(d.line, d.column) for d in found]


def backward(
    body: str,
    forward: str = "ctx.save_for_backward(x)\nreturn x * x",
    header: str = HEADER,
    decorators: str = "",
    after: str = "",
) -> str:
    """A one-input Function whose backward body starts on line 14 (plus header lines beyond two and decorators)."""
    return (
        header + "\n\nclass F(torch.autograd.Function):\n"
        "    @staticmethod\n"
        "    def forward(ctx, x):\n"
        + textwrap.indent(textwrap.dedent(forward).strip(), " " * 8)
        + "\n\n    @staticmethod\n"
        + "".join(f"    {d}\n" for d in decorators.splitlines() if d)
        + "    def backward(ctx, g):\n"
        "        (x,) = ctx.saved_tensors\n"
        + textwrap.indent(textwrap.dedent(body).strip(), " " * 8)
        + "\n"
        + textwrap.dedent(after)
    )


# Backward bodies start on line 14 (after `(x,) = ctx.saved_tensors` on line 13).
@pytest.mark.parametrize(
    "body, found",
    [
        ("return g * 2 * x.data", [(14, 24)]),
        ("return g * torch.from_numpy(np.cos(x.numpy()))", [(14, 44)]),
        ("return g * torch.as_tensor(np.cos(x))", [(14, 36)]),
        ("s = x.sum().item()\nreturn g * s", [(14, 13)]),
        ("return torch.stack([g[i] * v for i, v in enumerate(x.tolist())])", [(14, 60)]),
        ("y = x.detach()\nreturn g * y.cos()", [(14, 13)]),
        ("with torch.no_grad():\n    out = g * x.cos()\nreturn out", [(14, 9)]),
        ("with torch.set_grad_enabled(False):\n    out = g * x.cos()\nreturn out", [(14, 9)]),
        ("with torch.inference_mode():\n    return g * x.cos()", [(14, 9)]),
        # in-place updates and written-into buffers carry the value to the return
        ("out = g.clone()\nout.mul_(x.data)\nreturn out", [(15, 18)]),
        ("out = torch.empty_like(g)\nout[...] = g * x.detach()\nreturn out", [(15, 24)]),
        # one finding per backward: the first construct in evaluation order
        ("a = x.data\nb = g.detach()\nreturn a * b", [(14, 13)]),
        ("return g.detach() * x.data", [(14, 16)]),
    ],
)
def test_leaving_autograd_on_the_way_to_the_gradient_is_flagged(body, found):
    assert agl010(backward(body)) == found


@pytest.mark.parametrize(
    "body",
    [
        "return 2 * x * g",
        # shapes, counts, indices, conditions, guards, logging
        "n = int(x.numel())\nk = int(x.sum().item())\nout = g.new_zeros(k)\nreturn g * 2 * x",
        "if x.abs().max().item() > 1e6:\n    raise FloatingPointError('overflow')\nreturn 2 * x * g",
        "sizes = x.sum(0).long().tolist()\nparts = g.split(sizes)\nreturn 2 * x * g",
        "print(g.detach().norm().item())\nreturn 2 * x * g",
        "stats = {'norm': g.detach().norm()}\nreturn 2 * x * g",
        "assert not torch.isnan(g.detach()).any().item()\nreturn 2 * x * g",
        "out = g.new_zeros(x.shape)\nout[int(x.argmax().item())] = 1.0\nreturn out * g * 2 * x",
        "return g * 2 * x if x.data.ndim else g",
        "return (g * 2 * x).view(x.detach().shape)",
        # a backward that only raises
        "raise RuntimeError(f'no gradient for {x.detach().numpy()}')",
        # a local graph under enable_grad from detached leaves (checkpoint style)
        "with torch.enable_grad():\n    leaf = x.detach().requires_grad_()\n    y = leaf * leaf\nreturn torch.autograd.grad(y, leaf, g)[0]",
        "leaf = x.detach().requires_grad_(True)\nwith torch.enable_grad():\n    y = leaf * leaf\nreturn torch.autograd.grad(y, leaf, g)[0]",
        # no_grad around something that does not reach the gradient; enable_grad(True)
        "with torch.no_grad():\n    peak = g.abs().max()\nreturn 2 * x * g",
        "with torch.set_grad_enabled(True):\n    out = 2 * x * g\nreturn out",
        # a hyperparameter tensor kept on ctx is not a value autograd differentiates
        "return 2 * x * g * ctx.scale.item()",
        # delegation to another Function's apply (its own backward defines double backward)
        "return Other.apply(g, x)",
        # torch's own C functions are autograd-aware
        "return torch._C._nn.gelu(g) * x",
    ],
)
def test_look_alikes_stay_silent(body):
    assert agl010(backward(body)) == []


@pytest.mark.parametrize(
    "decorator, header",
    [
        ("@once_differentiable", HEADER + "from torch.autograd.function import once_differentiable\n"),
        ("@first_order", HEADER + "from torch.autograd.function import once_differentiable as first_order\n"),
        ("@torch.autograd.function.once_differentiable", HEADER),
        ("@function.once_differentiable", HEADER + "from torch.autograd import function\n"),
    ],
)
def test_once_differentiable_however_imported_silences(decorator, header):
    assert agl010(backward("return g * torch.from_numpy(np.cos(x.numpy()))", header=header, decorators=decorator)) == []


@pytest.mark.parametrize(
    "header, body, found",
    [
        ("import torch\nimport roi_align_cuda\n", "return roi_align_cuda.backward(g, x)", (13, 16)),
        ("import torch\nfrom . import _C\n", "return _C.fused_backward(g, x)", (13, 16)),
        ("import torch\nfrom mmcv import _ext as ext_module\n", "return ext_module.sigmoid_backward(g, x)", (13, 16)),
        ("import torch\nfrom torch.utils.cpp_extension import load\n", "return ops.backward(g, x)", (13, 16)),
        (
            "import torch\nimport triton\n",
            "dx = torch.empty_like(x)\n_bwd_kernel[(x.numel(),)](g, x, dx, x.numel())\nreturn dx",
            (14, 9),
        ),
        (
            "import torch\nimport deform_conv_cuda\n",
            "grad_x = torch.zeros_like(x)\ndeform_conv_cuda.backward(g, x, grad_x)\nreturn grad_x",
            (14, 9),
        ),
    ],
)
def test_compiled_extension_calls_are_flagged(header, body, found):
    after = "\nops = load(name='ops', sources=['ops.cpp'])\n" if "cpp_extension" in header else ""
    # the module-level `ops = load(...)` must be at top level: put it in the header instead of after
    if after:
        header = header + after
    lines = agl010(backward(body, header=header))
    offset = header.count("\n") - 2 + 1
    assert lines == [(found[0] + offset, found[1])]


def test_extension_call_that_does_not_feed_the_gradient_is_silent():
    source = backward(
        "roi_align_cuda.check_inputs(g, x)\nreturn 2 * x * g",
        header="import torch\nimport roi_align_cuda\n",
    )
    assert agl010(source) == []


INTERMEDIATE = """\
import torch


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        sq = x * x
        mask = x > 0
        ctx.save_for_backward(x, sq, mask)
        ctx.sq = sq
        return sq * x

    @staticmethod
    def backward(ctx, g):
        x, sq, mask = ctx.saved_tensors
        return {returned}
"""


@pytest.mark.parametrize(
    "returned, found",
    [
        ("3 * sq * g", [(16, 20)]),
        ("3 * ctx.sq * g", [(16, 20)]),
        ("3 * ctx.saved_tensors[1] * g", [(16, 20)]),
        ("3 * x * x * g * mask", []),  # recomputed from the saved input; the mask has no gradient anyway
    ],
)
def test_saved_intermediates_are_flagged_only_where_the_module_takes_second_derivatives(returned, found):
    source = INTERMEDIATE.format(returned=returned)
    assert agl010(source) == []  # nothing in this module differentiates twice
    penalty = (
        source
        + "\n\ndef penalty(x):\n    (g,) = torch.autograd.grad(Cube.apply(x).sum(), x, create_graph=True)\n    return g.pow(2).sum()\n"
    )
    assert agl010(penalty) == found
    hessian = source + "\n\nH = torch.autograd.functional.hessian(lambda x: Cube.apply(x).sum(), torch.ones(3))\n"
    assert agl010(hessian) == found
    first_order = source + "\n\nG = torch.autograd.grad(Cube.apply(torch.ones(3)).sum(), x, create_graph=False)\n"
    assert agl010(first_order) == []


@pytest.mark.parametrize(
    "use, counts, in_text",
    [
        (
            "torch.autograd.gradgradcheck(Cube.apply, (torch.ones(3, dtype=torch.double, requires_grad=True),))",
            True,
            True,
        ),
        ("J = torch.func.jacrev(torch.func.jacrev(Cube.apply))(torch.ones(3))", True, True),
        # a caller's flag passed on: the caller that sets it to True is the second derivative
        (
            "def grads(y, x, create_graph=False):\n    return torch.autograd.grad(y, x, create_graph=create_graph)",
            False,
            False,
        ),
        ("def hessian(f):\n    return f", False, False),
        # the package-level text test also counts comments and strings; the rule reads code only
        ("# call torch.autograd.grad(..., create_graph=True) for a gradient penalty", False, True),
        ('NOTE = "hessian(f) is not supported"', False, True),
    ],
)
def test_second_derivatives_are_the_default_selections_definition(use, counts, in_text):
    """AGL010 reads saved intermediates where `second_derivatives` (which puts the rule in a package's
    default run) finds a second derivative, at a match that is code."""
    from autograd_lint.facts.second_derivatives import takes_second_derivatives

    source = INTERMEDIATE.format(returned="3 * sq * g") + "\n\n" + use + "\n"
    assert agl010(source) == ([(16, 20)] if counts else [])
    assert takes_second_derivatives(textwrap.dedent(source)) == in_text


def test_message_quotes_where_the_module_takes_second_derivatives():
    source = (
        INTERMEDIATE.format(returned="3 * sq * g")
        + "\n\n# create_graph=True in a comment\nP = torch.autograd.grad(Cube.apply(torch.ones(3)).sum(), x, create_graph=True)\n"
    )
    (diagnostic,) = lint_source(textwrap.dedent(source), "case.py", Config(select=("AGL010",)))
    assert "`create_graph=True` on line 20" in diagnostic.explanation


@pytest.mark.parametrize(
    "body, found",
    [
        # the value reaches the gradient through a write into a buffer, then the buffer is returned
        ("grad_in = torch.zeros_like(g)\ngrad_in[x > 0] = g[x > 0].detach()\nreturn grad_in", [(15, 26)]),
        ("out = torch.empty_like(g)\nout.copy_(g.detach() * 2)\nreturn out", [(15, 19)]),
        ("grads = []\ngrads.append(g.data * x)\nreturn tuple(grads)", [(15, 22)]),
        # read only for its structure: a dtype, a device, metadata, a torch function's dim/start/length
        ("s = torch.ones(3, dtype=g.detach().dtype)\nreturn g * s", []),
        ("n = torch.narrow(g, 0, int(x.sum().item()), 1)\nreturn n", []),
        ("kind = g.detach().type()\nreturn g * 2 if kind else g", []),
        ("ok = bool(g.detach().abs().max().item()) and x.numel() > 0\nreturn g * ok", []),
    ],
)
def test_flow_into_the_returned_gradient(body, found):
    assert agl010(backward(body)) == found


def test_saved_intermediate_of_an_input_without_gradient_is_silent():
    source = """\
    import torch

    class Weighted(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, lengths):
            w = 1.0 / lengths.to(x.dtype)
            ctx.save_for_backward(w)
            return x * w

        @staticmethod
        def backward(ctx, g):
            (w,) = ctx.saved_tensors
            return g * w, None

    def penalty(x, lengths):
        (g,) = torch.autograd.grad(Weighted.apply(x, lengths).sum(), x, create_graph=True)
        return g.pow(2).sum()
    """
    assert agl010(source) == []


def test_message_names_the_construct_and_the_fix():
    (diagnostic,) = lint_source(backward("return g * 2 * x.data"), "case.py", Config(select=("AGL010",)))
    assert diagnostic.severity.value == "warning"
    assert diagnostic.message == "F.backward leaves autograd at `x.data` without @once_differentiable"
    assert "computes its gradient outside autograd at `x.data`" in diagnostic.explanation
    assert "decorate backward with @once_differentiable" in diagnostic.explanation


# --- the recipe under real torch --------------------------------------------------------------


def recipe(backward_body: str) -> tuple[str, str]:
    code = (
        "import torch\n"
        "class Cube(torch.autograd.Function):\n"
        "    @staticmethod\n"
        "    def forward(ctx, x):\n"
        "        ctx.save_for_backward(x)\n"
        "        return x ** 3\n"
        "    @staticmethod\n"
        "    def backward(ctx, g):\n"
        "        (x,) = ctx.saved_tensors\n"
        f"        {backward_body}\n"
        "agl010.check_double_backward(Cube.apply, [('Cube.apply(<tensor>)', lambda shape: [_agl_probes.leaf_tensor(shape)])])\n"
    )
    return run_recipe(code)


def test_recipe_does_not_confirm_a_double_differentiable_backward():
    verdict, evidence = recipe("return 3 * x * x * g")
    assert verdict == "not-reproduced", evidence
    assert "matches finite differences" in evidence


def test_recipe_measures_the_wrong_second_order_gradient():
    verdict, evidence = recipe("return 3 * x.data ** 2 * g")
    assert verdict == "confirmed", evidence
    assert "second-order gradient for input 0" in evidence and "central finite differences" in evidence


def test_recipe_quotes_torch_when_the_gradient_cannot_be_differentiated():
    verdict, evidence = recipe("return (3 * x * x * g).detach()")
    assert verdict == "confirmed", evidence
    assert "element 0 of tensors does not require grad and does not have a grad_fn" in evidence


HELPERS = """\
import numpy as np
import torch


def _np_slope(grad, x):
    return grad * torch.from_numpy(np.cos(x.cpu().numpy()))


def _torch_slope(grad, x):
    return grad * torch.cos(x)


def _rows(t):
    return t.detach().shape[0]


def _via_np(grad, x):
    return _np_slope(grad, x)


class Sine(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sin(x)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return {returned}
"""


@pytest.mark.parametrize(
    "returned, found",
    [
        ("_np_slope(grad_out, x)", [(30, 16)]),  # the helper's `.numpy()` reaches what it returns
        ("_np_slope(x=x, grad=grad_out)", [(30, 16)]),  # by keyword
        ("_torch_slope(grad_out, x)", []),
        ("grad_out * torch.cos(x)[: _rows(x)]", []),  # the helper's detach only gives a size
        ("_np_slope(grad_out, x).sum() * 0 + _torch_slope(grad_out, x) if _rows(x) else grad_out", [(30, 16)]),
        ("_via_np(grad_out, x)", []),  # one call deep: a helper's own helpers are not followed
    ],
)
def test_module_helpers_backward_calls_are_followed_one_call_deep(returned, found):
    source = HELPERS.format(returned=returned)
    assert agl010(source) == found
    if found:
        (diagnostic,) = lint_source(source, "case.py", Config(select=("AGL010",)))
        assert "`.numpy()` turns the tensor into a NumPy array, in `_np_slope` on line 6" in diagnostic.explanation


def test_a_static_method_of_a_kernels_class_is_a_helper_too():
    source = HELPERS.replace(
        "def _via_np(grad, x):",
        "class _Kernels:\n    @staticmethod\n    def slope(grad, x):\n        return _np_slope(grad.detach(), x)\n\n\ndef _via_np(grad, x):",
    )
    assert agl010(source.format(returned="_Kernels.slope(grad_out, x)")) == [(36, 16)]


def test_a_function_defined_inside_backward_is_a_helper_too():
    body = "def to_host(t):\n    return torch.from_numpy(t.cpu().numpy())\n\nreturn to_host(g) * 2 * x"
    assert agl010(backward(body)) == [(17, 16)]
    assert agl010(backward("def rows(t):\n    return t.detach().shape[0]\n\nreturn g[: rows(x)] * 2 * x")) == []


VALID = [
    # decorated once_differentiable
    """\
        import numpy as np
        import torch
        from torch.autograd.function import once_differentiable


        class NumpyErf(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return torch.erf(x)

            @staticmethod
            @once_differentiable
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                slope = 2 / np.sqrt(np.pi) * np.exp(-x.numpy() ** 2)
                return g * torch.from_numpy(slope)
    """,
    # .item() only for a condition, .detach() only for logging
    """\
        import torch


        class Logged(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * x

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                if g.abs().max().item() > 1e3:
                    print("large gradient", g.detach().norm())
                return 2 * x * g
    """,
    # a hyperparameter on ctx carries no gradient
    """\
        import torch


        class Scale(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, scale):
                ctx.scale = scale
                return x * scale

            @staticmethod
            def backward(ctx, g):
                return g * ctx.scale.item(), None
    """,
    # delegating to another Function's apply
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
                return Double.apply(x) * g


        class Double(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2

            @staticmethod
            def backward(ctx, g):
                return g * 2
    """,
    # a saved intermediate in a module that never takes second derivatives
    """\
        import torch


        class Softplus(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                sig = torch.sigmoid(x)
                ctx.save_for_backward(sig)
                return torch.nn.functional.softplus(x)

            @staticmethod
            def backward(ctx, g):
                (sig,) = ctx.saved_tensors
                return g * sig
    """,
]

INVALID = [
    # .data cuts the graph backward's own result is built on
    """\
        import torch


        class Swish(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * torch.sigmoid(x)

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                sig = torch.sigmoid(x.data)  # AGL010:29
                return g * sig * (1 + x * (1 - sig))
    """,
    # a NumPy round trip
    """\
        import numpy as np
        import torch


        class NumpyErf(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return torch.erf(x)

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                slope = 2 / np.sqrt(np.pi) * np.exp(-x.numpy() ** 2)  # AGL010:46
                return g * torch.from_numpy(slope)
    """,
    # a saved intermediate where the module takes second derivatives
    """\
        import torch


        class Softplus(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                sig = torch.sigmoid(x)
                ctx.save_for_backward(sig)
                return torch.nn.functional.softplus(x)

            @staticmethod
            def backward(ctx, g):
                (sig,) = ctx.saved_tensors
                return g * sig  # AGL010:20


        def gradient_penalty(f, x):
            (grad,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
            return grad.pow(2).sum()
    """,
    # a compiled extension's backward kernel
    """\
        import torch
        import fused_cuda


        class Fused(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return fused_cuda.forward(x)

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return fused_cuda.backward(g, x)  # AGL010:16
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL010", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL010", source) == marked_positions("AGL010", source)

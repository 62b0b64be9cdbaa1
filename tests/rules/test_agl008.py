"""AGL008 inplace-grad-output: tricky shapes and the recipe under real torch.

The in-place/alias analysis it shares with AGL009 lives in autograd_lint/facts/inplace.py; the builders here serve
the AGL009 tests too.
"""

from __future__ import annotations

import textwrap

import pytest
from snippets import marked_positions, reported_positions
from test_confirm import run_recipe

from autograd_lint import Config, lint_source

HEADER = "import torch\nimport torch.nn.functional as F\nfrom torch.autograd import Function\n\n"


def findings(code: str, rule: str) -> list[tuple[int, int]]:
    source = HEADER + textwrap.dedent(code)
    return [(d.line - 4, d.column) for d in lint_source(source, "t.py", Config(select=(rule,)))]


def backward_of(body: str, params: str = "ctx, g") -> str:
    """A Function whose backward is `body` (lines numbered from 1 at the first body line)."""
    return (
        "class F1(Function):\n"
        "    @staticmethod\n"
        "    def forward(ctx, x):\n"
        "        return x * 2\n"
        "    @staticmethod\n"
        f"    def backward({params}):\n" + textwrap.indent(textwrap.dedent(body), "        ")
    )


def forward_of(body: str, params: str = "ctx, x") -> str:
    return (
        "class F1(Function):\n"
        "    @staticmethod\n"
        f"    def forward({params}):\n" + textwrap.indent(textwrap.dedent(body), "        ") + "    @staticmethod\n"
        "    def backward(ctx, g):\n"
        "        return g\n"
    )


# Line 7 is the first line of the body given to backward_of / forward_of (line 4 after the header).
@pytest.mark.parametrize(
    "body, params, expected",
    [
        ("g.mul_(2)\nreturn g\n", "ctx, g", [(7, 9)]),
        ("g *= 2\nreturn g\n", "ctx, g", [(7, 9)]),
        ("g[g < 0] = 0\nreturn g\n", "ctx, g", [(7, 9)]),
        ("torch.relu_(g)\nreturn g\n", "ctx, g", [(7, 9)]),
        ("F.relu(g, inplace=True)\nreturn g\n", "ctx, g", [(7, 9)]),
        ("torch.mul(g, 2, out=g)\nreturn g\n", "ctx, g", [(7, 25)]),
        ("g.data.mul_(2)\nreturn g\n", "ctx, g", [(7, 9)]),
        ("h = g.view(-1)\nh.zero_()\nreturn g\n", "ctx, g", [(8, 9)]),
        ("g = g.contiguous()\ng.div_(2)\nreturn g\n", "ctx, g", [(8, 9)]),
        ("a = g.numpy()\na += 1\nreturn g\n", "ctx, g", [(8, 9)]),
        ("g0 = grads[0]\ng0.add_(1)\nreturn g0\n", "ctx, *grads", [(8, 9)]),
        ("a, b = grads\nb.add_(1)\nreturn a\n", "ctx, *grads", [(8, 9)]),
        ("for t in grads:\n    t.mul_(2)\nreturn grads\n", "ctx, *grads", [(8, 13)]),
        ("return [t.mul_(2) for t in grads][0]\n", "ctx, *grads", [(7, 17)]),
        ("if ctx.flag:\n    g = g.clone()\ng.mul_(2)\nreturn g\n", "ctx, g", [(9, 9)]),
        ("g.mul_(2)\ng.add_(1)\nreturn g\n", "ctx, g", [(7, 9)]),  # the first write only
        # Silent: rebound first, fresh tensors, list slots, copies from the gradient.
        ("g = g.clone()\ng.mul_(2)\nreturn g\n", "ctx, g", []),
        ("g = g * 2\ng += 1\ng[0] = 0\nreturn g\n", "ctx, g", []),
        ("if g is None:\n    return None\ng = g.clone()\ng.mul_(2)\nreturn g\n", "ctx, g", []),
        ("out = torch.zeros_like(g)\nout.index_add_(0, ctx.idx, g)\nreturn out\n", "ctx, g", []),
        ("grads = list(grads)\ngrads[0] = grads[0] * 2\nreturn tuple(grads)\n", "ctx, *grads", []),
        ("g[g > 0].mul_(2)\nreturn g\n", "ctx, g", []),
        ("g.requires_grad_(False)\nreturn g\n", "ctx, g", []),
        ("buf = torch.empty(3)\nbuf.copy_(g)\nreturn buf\n", "ctx, g", []),
        ("def hook(t):\n    t.mul_(2)\nreturn g * 2\n", "ctx, g", []),
    ],
)
def test_agl008_shapes(body, params, expected):
    assert findings(backward_of(body, params), "AGL008") == expected


def test_agl008_ignores_forward_and_non_functions():
    code = (
        forward_of("x.mul_(2)\nreturn x\n") + "\nclass NotAFunction:\n    def backward(self, g):\n        g.mul_(2)\n"
    )
    assert findings(code, "AGL008") == []


CORRECT_BACKWARD = """
import torch
class Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)
    @staticmethod
    def backward(ctx, g):
        g = g.clone()
        g.mul_(-1)
        return g
"""


BUILDERS = "[('{0}.apply(<tensor>)', lambda s: [_agl_probes.leaf_tensor(s)])]"


def test_agl008_recipe_does_not_confirm_a_clone_first_backward():
    verdict, evidence = run_recipe(
        CORRECT_BACKWARD + f"agl008.check_grad_output_inplace(Reverse.apply, {BUILDERS.format('Reverse')})"
    )
    assert verdict == "not-reproduced", evidence
    assert "explicit upstream gradients unchanged" in evidence and ".sum().backward() ran" in evidence


def test_agl008_recipe_confirms_a_changed_caller_gradient():
    code = CORRECT_BACKWARD.replace("        g = g.clone()\n", "")
    verdict, evidence = run_recipe(
        code + f"agl008.check_grad_output_inplace(Reverse.apply, {BUILDERS.format('Reverse')})"
    )
    assert verdict == "confirmed" and "changed the caller's upstream gradient from [-2, 1.111" in evidence
    assert "to [2, -1.111" in evidence


def test_agl008_recipe_quotes_torchs_error_for_an_expanded_gradient():
    # `mul_(1)` leaves the caller's values as they were; only torch's check on `.sum()`'s expanded
    # gradient shows the write.
    code = CORRECT_BACKWARD.replace("        g = g.clone()\n", "").replace("g.mul_(-1)", "g.mul_(1)")
    verdict, evidence = run_recipe(
        code + f"agl008.check_grad_output_inplace(Reverse.apply, {BUILDERS.format('Reverse')})"
    )
    assert verdict == "confirmed"
    assert (
        "then .sum().backward() raised RuntimeError: unsupported operation: more than one element of the written-to tensor refers to a single memory location"
        in evidence
    )


def test_agl008_augmented_element_of_a_gradient_list():
    body = "grads = list(grads)\ngrads[0] *= 2\nreturn tuple(grads)\n"
    assert findings(backward_of(body, "ctx, *grads"), "AGL008") == [(8, 9)]


def test_agl008_follows_try_and_with_blocks():
    body = "try:\n    g = g.clone()\nexcept RuntimeError:\n    pass\nwith torch.no_grad():\n    g.mul_(2)\nreturn g\n"
    assert findings(backward_of(body), "AGL008") == [(12, 13)]


VALID = [
    # rebound to a new tensor first
    """\
        import torch


        class Reverse(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.view_as(x)

            @staticmethod
            def backward(ctx, g):
                g = g.clone()
                g.mul_(-1)
                return g
    """,
    # writes into a tensor backward creates, and a copy from the gradient
    """\
        import torch


        class Gather(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, idx):
                ctx.save_for_backward(idx)
                ctx.n = x.shape[0]
                return x[idx]

            @staticmethod
            def backward(ctx, g):
                (idx,) = ctx.saved_tensors
                out = g.new_zeros((ctx.n,) + g.shape[1:])
                out.index_add_(0, idx, g)
                buf = torch.empty_like(out)
                buf.copy_(out)
                return buf, None
    """,
    # rebuilding the list of gradients assigns a slot, it writes no tensor
    """\
        import torch


        class Pair(torch.autograd.Function):
            @staticmethod
            def forward(ctx, a, b):
                return a * 2, b * 2

            @staticmethod
            def backward(ctx, *grads):
                grads = list(grads)
                grads[0] = grads[0] * 2
                grads[1] = grads[1] * 2
                return tuple(grads)
    """,
    # advanced indexing copies, and a flag-only method
    """\
        import torch


        class Odd(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * 1

            @staticmethod
            def backward(ctx, g):
                g[g > 0].mul_(2)
                g.requires_grad_(False)
                return g
    """,
    # a backward of a class that is no Function
    """\
        class Hook:
            def backward(self, g):
                g.mul_(2)
                return g
    """,
]

INVALID = [
    # the incoming gradient written in place
    """\
        import torch


        class GradientReversal(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, lambd):
                ctx.lambd = lambd
                return x.view_as(x)

            @staticmethod
            def backward(ctx, g):
                return g.mul_(-ctx.lambd), None  # AGL008:16
    """,
    # an alias of the gradient (contiguous may return it), then a masked assignment
    """\
        import torch


        class MyReLU(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x.clamp(min=0)

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                grad_input = g.contiguous()
                grad_input[x < 0] = 0  # AGL008:9
                return grad_input
    """,
    # an augmented assignment
    """\
        import torch


        class Scale(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * 4

            @staticmethod
            def backward(ctx, g):
                g *= 4  # AGL008:9
                return g
    """,
    # a path where the branch did not clone
    """\
        import torch


        class Maybe(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, copy):
                ctx.copy = copy
                return x * 2

            @staticmethod
            def backward(ctx, g):
                if ctx.copy:
                    g = g.clone()
                g.mul_(2)  # AGL008:9
                return g, None
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL008", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL008", source) == marked_positions("AGL008", source)

"""AGL008 inplace-grad-output and AGL009 inplace-input-without-mark-dirty: tricky shapes and recipes.

The in-place/alias analysis they share lives in autograd_lint/facts/inplace.py.
"""

from __future__ import annotations

import textwrap

import pytest

from autograd_lint import Config, lint_source

from test_confirm import run_recipe

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
        f"    def backward({params}):\n"
        + textwrap.indent(textwrap.dedent(body), "        ")
    )


def forward_of(body: str, params: str = "ctx, x") -> str:
    return (
        "class F1(Function):\n"
        "    @staticmethod\n"
        f"    def forward({params}):\n"
        + textwrap.indent(textwrap.dedent(body), "        ")
        + "    @staticmethod\n"
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
    code = forward_of("x.mul_(2)\nreturn x\n") + "\nclass NotAFunction:\n    def backward(self, g):\n        g.mul_(2)\n"
    assert findings(code, "AGL008") == []


@pytest.mark.parametrize(
    "body, params, expected",
    [
        ("x.clamp_(-1, 1)\nreturn x * 2\n", "ctx, x", [(4, 9)]),
        ("x += 1\nreturn x.view_as(x)\n", "ctx, x: torch.Tensor", [(4, 9)]),
        ("n = x.shape[0]\nx[0] = n\nreturn x * 1\n", "ctx, x", [(5, 9)]),
        ("x.data = x.data.round()\nreturn x * 1\n", "ctx, x", [(4, 9)]),
        ("flat = x.view(-1)\nflat[:2] = 0\nreturn x * 1\n", "ctx, x", [(5, 9)]),
        ("torch.nn.init.zeros_(w)\nreturn x * w\n", "ctx, x, w", [(4, 9)]),
        ("for t in xs:\n    t.div_(2)\nreturn xs[0] * 1\n", "ctx, *xs", [(5, 13)]),
        ("if ctx.inplace:\n    y = x\nelse:\n    y = x.clone()\ny.mul_(2)\nreturn y\n", "ctx, x", [(8, 9)]),
        # Collectives write the tensor they are given, however torch.distributed (or a wrapper) is reached.
        ("torch.distributed.all_reduce(x)\nreturn x\n", "ctx, x", [(4, 9)]),
        ("from torch.distributed import all_reduce\nall_reduce(x)\nreturn x\n", "ctx, x", [(5, 9)]),
        ("from deepspeed import comm as dist\ndist.all_reduce(x.contiguous(), group=g)\nreturn x\n", "ctx, x, g", [(5, 9)]),
        ("from trainkit import comm\ncomm.broadcast(x, 0)\nreturn x\n", "ctx, x", [(5, 9)]),
        # Through this module's own helper that writes its parameter with a tensor operation.
        ("return _round_(x, 0.1)\n", "ctx, x", [(4, 16)]),
        ("_track(x, handles)\nreturn x * 2\n", "ctx, x, handles", []),  # the helper fills a dict
        # Silent: marked dirty (even conditionally), rebound, non-tensor arguments, unknown marking.
        ("x.add_(1)\nctx.mark_dirty(x)\nreturn x\n", "ctx, x", []),
        ("if inplace:\n    ctx.mark_dirty(x)\n    y = x\nelse:\n    y = x.clone()\ny.mul_(2)\nreturn y\n", "ctx, x, inplace=False", []),
        ("x = x.clone()\nx.clamp_(-1, 1)\nreturn x\n", "ctx, x", []),
        ("k += 1\ncache['a'] = k\nhistory.append(k)\nreturn x * k\n", "ctx, x, k, cache, history", []),
        ("x.copy_(x)\nreturn x * 1\n", "ctx, x", []),
        ("helper(ctx, x)\nx.mul_(2)\nreturn x\n", "ctx, x", []),
        ("ctx.mark_dirty(*ctx.dirty)\nx.mul_(2)\nreturn x\n", "ctx, x", []),
        ("out = torch.empty_like(x)\ntorch.mul(x, 2, out=out)\nout += 1\nreturn out\n", "ctx, x", []),
        ("torch.mul(x, 2, out=out)\nreturn out\n", "ctx, x, out=None", []),  # a caller's output buffer
        ("_, order = x.flatten().sort(descending=True)\nm = x.clone()\nm.view(-1)[order[:2]] = 1\nreturn m\n", "ctx, x", []),
        ("from functools import reduce\nreturn reduce(lambda a, b: a + b, [x, x])\n", "ctx, x", []),
    ],
)
def test_agl009_shapes(body, params, expected):
    helpers = (
        "\n\ndef _round_(t, step):\n    t.div_(step).round_().mul_(step)\n    return t\n"
        "\n\ndef _track(t, handles):\n    handles['last'] = t\n"
    )
    assert findings(forward_of(body, params) + helpers, "AGL009") == expected


def test_agl009_silent_when_setup_context_marks_dirty():
    code = """
    class F2(Function):
        @staticmethod
        def forward(x):
            return x.add_(1)
        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.mark_dirty(inputs[0])
        @staticmethod
        def backward(ctx, g):
            return g
    class F3(Function):
        @staticmethod
        def forward(x):
            return x.add_(1)
        @staticmethod
        def setup_context(ctx, inputs, output):
            pass
        @staticmethod
        def backward(ctx, g):
            return g
    """
    assert findings(code, "AGL009") == [(15, 16)]


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

CORRECT_FORWARDS = """
import torch
class Clip(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w):
        w = w.clone()
        w.clamp_(-1, 1)
        return w
    @staticmethod
    def backward(ctx, g):
        return g
class AddOne(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.mark_dirty(x)
        return x.add_(1)
    @staticmethod
    def backward(ctx, g):
        return g
"""

BUILDERS = "[('{0}.apply(<tensor>)', lambda s: [_agl_leaf(s)])]"


def test_agl008_recipe_does_not_confirm_a_clone_first_backward():
    verdict, evidence = run_recipe(CORRECT_BACKWARD + f"_agl_grad_output_inplace_recipe(Reverse.apply, {BUILDERS.format('Reverse')})")
    assert verdict == "not-reproduced", evidence
    assert "explicit upstream gradients unchanged" in evidence and ".sum().backward() ran" in evidence


def test_agl008_recipe_confirms_a_changed_caller_gradient():
    code = CORRECT_BACKWARD.replace("        g = g.clone()\n", "")
    verdict, evidence = run_recipe(code + f"_agl_grad_output_inplace_recipe(Reverse.apply, {BUILDERS.format('Reverse')})")
    assert verdict == "confirmed" and "changed the caller's upstream gradient from [-2, 1.111" in evidence
    assert "to [2, -1.111" in evidence


def test_agl008_recipe_quotes_torchs_error_for_an_expanded_gradient():
    # `mul_(1)` leaves the caller's values as they were; only torch's check on `.sum()`'s expanded
    # gradient shows the write.
    code = CORRECT_BACKWARD.replace("        g = g.clone()\n", "").replace("g.mul_(-1)", "g.mul_(1)")
    verdict, evidence = run_recipe(code + f"_agl_grad_output_inplace_recipe(Reverse.apply, {BUILDERS.format('Reverse')})")
    assert verdict == "confirmed"
    assert "then .sum().backward() raised RuntimeError: unsupported operation: more than one element of the written-to tensor refers to a single memory location" in evidence


def test_agl009_recipe_does_not_confirm_a_copy_or_a_marked_input():
    clip = run_recipe(CORRECT_FORWARDS + f"_agl_input_inplace_recipe(Clip.apply, {BUILDERS.format('Clip')}, ['w'])")
    assert clip[0] == "not-reproduced", clip
    # A marked input: the leaf is refused by torch, a non-leaf input is changed as declared.
    marked = run_recipe(
        CORRECT_FORWARDS
        + "_agl_input_inplace_recipe(AddOne.apply, [('AddOne.apply(<tensor>)', lambda s: [_agl_leaf(s) * 1])], ['x'])"
    )
    assert marked[0] == "not-reproduced", marked
    leaf = run_recipe(CORRECT_FORWARDS + f"_agl_input_inplace_recipe(AddOne.apply, {BUILDERS.format('AddOne')}, ['x'])")
    assert leaf[0] == "not-reproduced" and "torch refused the leaf" in leaf[1], leaf


def test_agl008_augmented_element_of_a_gradient_list():
    body = "grads = list(grads)\ngrads[0] *= 2\nreturn tuple(grads)\n"
    assert findings(backward_of(body, "ctx, *grads"), "AGL008") == [(8, 9)]


def test_agl008_follows_try_and_with_blocks():
    body = (
        "try:\n    g = g.clone()\nexcept RuntimeError:\n    pass\n"
        "with torch.no_grad():\n    g.mul_(2)\nreturn g\n"
    )
    assert findings(backward_of(body), "AGL008") == [(12, 13)]

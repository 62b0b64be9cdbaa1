"""AGL024 functorch-incompatible: static cases and the confirm recipe under real torch."""

from __future__ import annotations

import re
import textwrap

import pytest
from snippets import marked_positions, reported_positions
from test_confirm import run_recipe

from autograd_lint import Config, lint_source

OLD = """
import functools
import torch
import torch.func
from torch.func import grad, jacfwd, jacrev, vmap

class Sin(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin()
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.cos()
"""
NEW = """
import functools
import torch
import torch.func
from torch.func import grad, jacfwd, jacrev, vmap

class Sin(torch.autograd.Function):
    @staticmethod
    def forward(x):
        return x.sin()
    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.cos()
"""


def agl024(source: str) -> list[tuple[int, int, str, str]]:
    found = lint_source(textwrap.dedent(source), "case.py", Config(select=("AGL024",)))
    return [(d.line, d.column, d.message, d.explanation) for d in found]


def last_line(source: str) -> int:
    return len(textwrap.dedent(source).rstrip("\n").splitlines())


@pytest.mark.parametrize(
    "use, column",
    [
        ("y = vmap(Sin.apply)(x)", 5),
        ("y = torch.vmap(Sin.apply)(x)", 5),
        ("y = torch.func.grad(lambda t: Sin.apply(t).sum())(x)", 5),
        ("y = jacrev(Sin.apply)(x)", 5),
        ("y = vmap(functools.partial(Sin.apply))(x)", 5),
        ("y = torch.func.jvp(Sin.apply, (x,), (x,))", 5),
        ("fn = Sin.apply\ny = vmap(fn)(x)", 5),
        ("def f(t):\n    return Sin.apply(t).sum()\ny = vmap(grad(f))(x)", 5),
        (
            "def f(t):\n    return Sin.apply(t).sum()\ndef g(t):\n    return f(t) * 2\ny = grad(g)(x)",
            5,
        ),  # one call deep
        ("def run(x):\n    def inner(t):\n        return Sin.apply(t)\n    return vmap(inner)(x)", 12),
        ("@vmap\ndef f(t):\n    return Sin.apply(t)", 2),
        # Reached through a name bound to a partial, a method of the enclosing class, a model instance.
        ("sin = functools.partial(Sin.apply)\ny = vmap(sin)(x)", 5),
        ("sin = functools.partial(Sin.apply)\ndef f(t):\n    return sin(t).sum()\ny = grad(f)(x)", 5),
        (
            "class Probe:\n    def loss(self, t):\n        return Sin.apply(t).sum()\n    def run(self, x):\n        return grad(self.loss)(x)",
            16,
        ),
        (
            "class Net(torch.nn.Module):\n    def forward(self, t):\n        return Sin.apply(t).sum()\nnet = Net()\ny = grad(net)(x)",
            5,
        ),
        (
            "class Probe:\n    def __init__(self):\n        self.fn = Sin.apply\n    def run(self, x):\n        return vmap(self.fn)(x)",
            16,
        ),
    ],
)
def test_old_style_under_any_transform_is_flagged(use, column):
    source = OLD + use + "\n"
    (finding,) = agl024(source)
    line = next(
        i
        for i, text in enumerate(textwrap.dedent(source).splitlines(), 1)
        if "vmap(" in text or "grad(" in text or "jacrev(" in text or "jvp(" in text or text.startswith("@vmap")
    )
    assert finding[:2] == (line, column)
    assert re.fullmatch(r"`.+` runs Sin\.apply under \w+, but Sin has no setup_context", finding[2])
    assert "must override the setup_context staticmethod" in finding[3]


@pytest.mark.parametrize(
    "use, missing",
    [
        ("y = vmap(Sin.apply)(x)", "does not have vmap support"),
        ("y = jacfwd(Sin.apply)(x)", "does not have vmap support"),
        ("y = torch.func.jvp(Sin.apply, (x,), (x,))", "You must implement the jvp function"),
    ],
)
def test_new_style_without_vmap_or_jvp_is_flagged(use, missing):
    (finding,) = agl024(NEW + use + "\n")
    assert finding[2].endswith("which has no vmap rule" if "vmap" in missing else "but Sin has no jvp")
    assert missing in finding[3]


@pytest.mark.parametrize(
    "source",
    [
        NEW + "y = grad(lambda t: Sin.apply(t).sum())(x)\nz = jacrev(Sin.apply)(x)\nw = torch.func.vjp(Sin.apply, x)\n",
        NEW.replace(
            "class Sin(torch.autograd.Function):\n",
            "class Sin(torch.autograd.Function):\n    generate_vmap_rule = True\n",
        )
        + "y = vmap(Sin.apply)(x)\n",
        NEW
        + "    @staticmethod\n    def vmap(info, in_dims, x):\n        return x.sin(), in_dims[0]\ny = vmap(Sin.apply)(x)\n",
        NEW + "    @staticmethod\n    def jvp(ctx, t):\n        return t\ny = torch.func.jvp(Sin.apply, (x,), (x,))\n",
        OLD + "y = Sin.apply(x)\nz = vmap(torch.sin)(x)\n",
        OLD + "from torch.autograd.functional import jacobian\ny = jacobian(Sin.apply, x)\n",
        OLD + "y = torch.func.functional_call(model, params, (Sin.apply(x),))\n",
        OLD + "def f(t):\n    return t.sin()\ny = vmap(f)(Sin.apply(x))\n",  # applied outside the transform
        OLD
        + "def f(t):\n    return h(t)\ndef h(t):\n    return k(t)\ndef k(t):\n    return Sin.apply(t)\ny = vmap(f)(x)\n",  # two calls deep
        OLD + "y = vmap(model)(x)\n",
        OLD.replace("from torch.func import grad, jacfwd, jacrev, vmap", "from mylib import vmap")
        + "y = vmap(Sin.apply)(x)\n",
    ],
)
def test_supported_or_unreached_functions_are_silent(source):
    assert agl024(source) == []


def test_subclass_inherits_generate_vmap_rule_from_a_base_in_the_module():
    source = (
        NEW.replace(
            "class Sin(torch.autograd.Function):\n",
            "class Base(torch.autograd.Function):\n    generate_vmap_rule = True\n\nclass Sin(Base):\n",
        )
        + "y = vmap(Sin.apply)(x)\n"
    )
    assert agl024(source) == []


BUILDERS = "[('Sin.apply(<tensor>)', lambda s: [_agl_probes.leaf_tensor(s)])]"


@pytest.mark.parametrize("transform", ["vmap", "grad", "jacrev"])
def test_recipe_confirms_old_style_and_not_a_func_ready_version(transform):
    verdict, evidence = run_recipe(OLD + f"agl024.check_functorch(Sin.apply, {BUILDERS}, {transform!r})")
    assert verdict == "confirmed" and "must override the setup_context staticmethod" in evidence, evidence
    ready = NEW.replace(
        "class Sin(torch.autograd.Function):\n", "class Sin(torch.autograd.Function):\n    generate_vmap_rule = True\n"
    )
    verdict, evidence = run_recipe(ready + f"agl024.check_functorch(Sin.apply, {BUILDERS}, {transform!r})")
    assert verdict == "not-reproduced", evidence


def test_recipe_confirms_missing_vmap_rule_and_missing_jvp():
    verdict, evidence = run_recipe(NEW + f"agl024.check_functorch(Sin.apply, {BUILDERS}, 'vmap')")
    assert verdict == "confirmed" and "You tried to vmap over Sin, but it does not have vmap support" in evidence, (
        evidence
    )
    verdict, evidence = run_recipe(NEW + f"agl024.check_functorch(Sin.apply, {BUILDERS}, 'jvp')")
    assert verdict == "confirmed" and "You must implement the jvp function" in evidence, evidence
    verdict, evidence = run_recipe(NEW + f"agl024.check_functorch(Sin.apply, {BUILDERS}, 'grad')")
    assert verdict == "not-reproduced", evidence


def test_parenthesized_import_of_torch_func_is_seen():
    source = (
        OLD.replace("import torch.func\n", "from torch import (\n    func,\n)\n")
        + "y = func.grad(lambda t: Sin.apply(t).sum())(x)\n"
    )
    (finding,) = agl024(source)
    assert "runs Sin.apply under grad, but" in finding[2]
    assert "which torch.func.grad needs" in finding[3]


FORWARD_AD = """
import torch.autograd.forward_ad as fwAD

def sin(t):
    return Sin.apply(t)

def tangent(x, v):
    with fwAD.dual_level():
        before = Sin.apply(x)
        dual = fwAD.make_dual(x, v)
        out = {call}
        return fwAD.unpack_dual(out).tangent
"""


@pytest.mark.parametrize("call", ["Sin.apply(dual)", "sin(dual)"])
def test_forward_ad_dual_tensors_need_jvp_even_old_style(call):
    ((line, column, message, explanation),) = agl024(OLD + FORWARD_AD.format(call=call))
    assert message == f"`{call}` runs Sin.apply under forward-mode AD, but Sin has no jvp"
    assert explanation.startswith(
        "It runs under torch.autograd.forward_ad dual tensors, and Sin has no `jvp` staticmethod"
    )
    assert "You must implement the jvp function" in explanation
    with_jvp = OLD.replace(
        "    @staticmethod\n    def backward",
        "    @staticmethod\n    def jvp(ctx, t):\n        return t\n    @staticmethod\n    def backward",
    )
    assert agl024(with_jvp + FORWARD_AD.format(call=call)) == []


def test_recipe_confirms_forward_ad_without_jvp():
    verdict, evidence = run_recipe(OLD + f"agl024.check_functorch(Sin.apply, {BUILDERS}, 'forward_ad')")
    assert verdict == "confirmed" and "You must implement the jvp function" in evidence, evidence


SWISH_OLD = """\
        import functools

        import torch
        from torch.func import grad, jacrev, vmap


        class Swish(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * torch.sigmoid(x)

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                s = torch.sigmoid(x)
                return g * s * (1 + x * (1 - s))
"""

SWISH_NEW = """\
        import torch
        from torch.func import grad, jacrev, vmap


        class Swish(torch.autograd.Function):
            generate_vmap_rule = True

            @staticmethod
            def forward(x):
                return x * torch.sigmoid(x)

            @staticmethod
            def setup_context(ctx, inputs, output):
                ctx.save_for_backward(inputs[0])

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                s = torch.sigmoid(x)
                return g * s * (1 + x * (1 - s))
"""

VALID = [
    # an old-style Function under ordinary autograd only
    SWISH_OLD
    + """\


        def loss(w, x):
            return Swish.apply(x @ w).sum()


        def train_step(w, x):
            loss(w, x).backward()
    """,
    # a new-style Function with generate_vmap_rule under vmap and grad
    SWISH_NEW
    + """\


        def loss(w, x):
            return Swish.apply(x @ w).sum()


        def per_sample_grads(w, xs):
            return vmap(grad(loss), in_dims=(None, 0))(w, xs)
    """,
    # torch.autograd.functional.jacobian is ordinary autograd
    SWISH_OLD
    + """\


        def jacobian(x):
            return torch.autograd.functional.jacobian(Swish.apply, x)
    """,
    # a model passed in as a parameter is not followed
    SWISH_OLD
    + """\


        def per_sample(model, xs):
            return vmap(model)(xs)
    """,
]

INVALID = [
    # an old-style Function under vmap(grad(...)) through a function of the module
    SWISH_OLD
    + """\


        def loss(w, x):
            return Swish.apply(x @ w).sum()


        def per_sample_grads(w, xs):
            return vmap(grad(loss), in_dims=(None, 0))(w, xs)  # AGL024:12
    """,
    # apply given to a transform directly
    SWISH_OLD
    + """\


        def jacobian(x):
            return jacrev(Swish.apply)(x)  # AGL024:12
    """,
    # a partial of apply under vmap
    SWISH_OLD
    + """\


        def batched(xs):
            return vmap(functools.partial(Swish.apply))(xs)  # AGL024:12
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL024", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL024", source) == marked_positions("AGL024", source)

"""AGL015 autograd-inside-forward: static cases and the confirm recipe under real torch."""

from __future__ import annotations

import textwrap

import pytest
from snippets import marked_positions, reported_positions
from test_confirm import run_recipe

from autograd_lint import Config, lint_source

HEADER = "import torch\nfrom torch import autograd\nfrom torch.autograd import grad\n\n"


def agl015(source: str) -> list[tuple[int, int]]:
    found = lint_source(source, "case.py", Config(select=("AGL015",)))
    return [(d.line, d.column) for d in found]


def function(forward_body: str, decorators: str = "", before: str = "") -> str:
    return (
        HEADER + textwrap.dedent(before) + "class F(torch.autograd.Function):\n"
        "    @staticmethod\n"
        + "".join(f"    {d}\n" for d in decorators.split(";") if d)
        + "    def forward(ctx, x):\n"
        + textwrap.indent(textwrap.dedent(forward_body).strip(), " " * 8)
        + "\n\n    @staticmethod\n    def backward(ctx, g):\n        return g\n"
    )


def marked(source: str) -> list[tuple[int, int]]:
    """(line, column) of each `<<` marker: the finding is at the start of the text after it."""
    found = []
    for number, line in enumerate(source.splitlines(), start=1):
        if "#<<" in line:
            code = line.split("#<<")[0]
            found.append((number, len(code) - len(code.lstrip()) + 1 + int(line.split("#<<")[1] or 0)))
    return found


@pytest.mark.parametrize(
    "body",
    [
        "z = x.detach().requires_grad_()\n(g,) = torch.autograd.grad((z ** 2).sum(), z) #<<7",
        "z = x.detach().requires_grad_()\ng = autograd.grad((z ** 2).sum(), z)[0] #<<4",
        "z = x.detach().requires_grad_()\ng = grad((z ** 2).sum(), z)[0] #<<4",
        "z = x.detach().requires_grad_()\n(z ** 2).sum().backward() #<<",
        "z = x.detach().requires_grad_()\nloss = (z ** 2).sum()\nif loss > 0:\n    loss.backward() #<<",
        "z = x.detach().requires_grad_()\ntorch.autograd.backward([(z * 2).sum()]) #<<",
        "with torch.no_grad():\n    y = x * 2\nz = x.detach().requires_grad_()\ng = torch.autograd.grad(z.sum(), z) #<<4",
    ],
)
def test_autograd_calls_in_forward_are_flagged(body):
    source = function(body).replace(" #<<", "#<<")
    expected = marked(source)
    assert agl015(source.replace("#<<", "  #")) == expected


@pytest.mark.parametrize(
    "body, decorators",
    [
        (
            "with torch.enable_grad():\n    z = x.detach().requires_grad_()\n    g = torch.autograd.grad(z.sum(), z)[0]\nreturn g",
            "",
        ),
        (
            "with torch.set_grad_enabled(True):\n    z = x.detach().requires_grad_()\n    z.sum().backward()\nreturn z.grad",
            "",
        ),
        (
            "with torch.set_grad_enabled(ctx.needs_input_grad[0]):\n    z = x.detach().requires_grad_()\n    z.sum().backward()\nreturn x",
            "",
        ),
        ("z = x.detach().requires_grad_()\ng = torch.autograd.grad(z.sum(), z)[0]\nreturn g", "@torch.enable_grad()"),
        (
            "torch.set_grad_enabled(True)\nz = x.detach().requires_grad_()\nreturn torch.autograd.grad(z.sum(), z)[0]",
            "",
        ),
        (
            "torch._C._set_grad_enabled(True)\nz = x.detach().requires_grad_()\nreturn torch.autograd.grad(z.sum(), z)[0]",
            "",
        ),
        ("return torch.func.grad(lambda t: t.sin().sum())(x)", ""),
        ("return F.backward(ctx, x)", ""),
        ("return super().backward(x)", ""),
        ("def inner(t):\n    t.sum().backward()\nreturn x * 2", ""),  # a nested function, maybe never called here
        ("return torch.autograd.functional.jacobian(lambda t: t.sin(), x).diagonal()", ""),  # enables grad itself
    ],
)
def test_grad_enabled_and_look_alikes_are_silent(body, decorators):
    assert agl015(function(body, decorators)) == []


def test_helpers_are_followed_and_reported_at_forwards_call():
    helpers = """\
        def input_grad(fn, x):
            x = x.detach().requires_grad_()
            return torch.autograd.grad(fn(x).sum(), x)[0]


        @torch.enable_grad()
        def guarded_grad(fn, x):
            x = x.detach().requires_grad_()
            return torch.autograd.grad(fn(x).sum(), x)[0]


        def calls_input_grad(x):
            return input_grad(torch.sin, x)


        """
    body = "a = input_grad(torch.tanh, x)\nb = guarded_grad(torch.tanh, x)\nc = calls_input_grad(x)\nwith torch.enable_grad():\n    d = input_grad(torch.cos, x)\nreturn a + b + c + d"
    source = function(body, before=helpers)
    line = source.splitlines().index("        a = input_grad(torch.tanh, x)") + 1
    assert agl015(source) == [(line, 13), (line + 2, 13)]  # `calls_input_grad` reaches it one call further
    (_, deeper) = lint_source(source, "case.py", Config(select=("AGL015",)))
    assert deeper.message == "F.forward calls `calls_input_grad()`, which runs autograd outside enable_grad()"
    assert "`calls_input_grad()` (through `input_grad()`) calls `torch.autograd.grad(" in deeper.explanation


def test_a_function_of_a_namespace_class_is_followed():
    helpers = """        class Physics:
            @staticmethod
            def force(x):
                x = x.detach().requires_grad_()
                return -grad(x.pow(2).sum(), x)[0]

            @staticmethod
            def safe_force(x):
                with torch.enable_grad():
                    return Physics.force(x)


        """
    source = function("return x + Physics.force(x) + Physics.safe_force(x)", before=helpers)
    line = source.splitlines().index("        return x + Physics.force(x) + Physics.safe_force(x)") + 1
    assert agl015(source) == [(line, 20)]


def test_a_static_helper_of_the_function_is_followed():
    source = HEADER + textwrap.dedent(
        """\
        class F(torch.autograd.Function):
            @staticmethod
            def _slope(x):
                x = x.detach().requires_grad_()
                torch.tanh(x).sum().backward()
                return x.grad

            @staticmethod
            def forward(ctx, x):
                return x * F._slope(x)

            @staticmethod
            def backward(ctx, g):
                return g
        """
    )
    (finding,) = lint_source(source, "case.py", Config(select=("AGL015",)))
    assert (finding.line, finding.column) == (14, 20)
    assert "calls `_slope()`, which runs autograd outside enable_grad()" in finding.message
    assert "`_slope()` calls `torch.tanh(x).sum().backward()`" in finding.explanation


GUARDED = """
import torch
class Slope(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        with torch.enable_grad():
            z = x.detach().requires_grad_()
            (g,) = torch.autograd.grad(torch.tanh(z).sum(), z)
        return g
    @staticmethod
    def backward(ctx, g):
        return g
"""


def test_recipe_confirms_the_unguarded_version_and_not_the_guarded_one():
    builders = "[('Slope.apply(<tensor>)', lambda s: [_agl_probes.leaf_tensor(s)])]"
    verdict, evidence = run_recipe(
        GUARDED + f"agl015.check_autograd_in_forward(Slope.apply, {builders}, 'torch.autograd.grad')"
    )
    assert verdict == "not-reproduced", evidence
    unguarded = GUARDED.replace("        with torch.enable_grad():\n", "        if True:\n")
    verdict, evidence = run_recipe(
        unguarded + f"agl015.check_autograd_in_forward(Slope.apply, {builders}, 'torch.autograd.grad')"
    )
    assert (
        verdict == "confirmed" and "element 0 of tensors does not require grad and does not have a grad_fn" in evidence
    )


def test_a_function_defined_in_forward_and_called_there_is_followed():
    body = "def score(z):\n    z = z.detach().requires_grad_()\n    return torch.autograd.grad(z.pow(2).sum(), z)[0]\nreturn x + score(x)"
    source = function(body)
    line = source.splitlines().index("        return x + score(x)") + 1
    assert agl015(source) == [(line, 20)]


VALID = [
    # autograd under enable_grad in forward
    """\
        import torch


        class Relax(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                with torch.enable_grad():
                    z = x.detach().requires_grad_(True)
                    (g,) = torch.autograd.grad((z ** 4).sum(), z)
                return (x - 0.1 * g).detach()

            @staticmethod
            def backward(ctx, g):
                return g
    """,
    # autograd in backward: checkpoint-style recomputation
    """\
        import torch


        class Checkpointed(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return torch.tanh(x)

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                with torch.enable_grad():
                    x = x.detach().requires_grad_(True)
                    y = torch.tanh(x)
                return torch.autograd.grad(y, x, g)
    """,
    # torch.func transforms switch grad mode on themselves
    """\
        import torch
        from torch.func import grad


        class Descend(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                step = grad(lambda t: (t ** 2).sum())(x)
                return x - 0.1 * step

            @staticmethod
            def backward(ctx, g):
                return g
    """,
    # a training loop's .backward() outside any Function
    """\
        def train_step(model, batch, optimizer):
            loss = model(batch).sum()
            loss.backward()
            optimizer.step()
    """,
    # a forward decorated with enable_grad
    """\
        import torch


        class Solve(torch.autograd.Function):
            @staticmethod
            @torch.enable_grad()
            def forward(ctx, x):
                z = x.detach().requires_grad_(True)
                (g,) = torch.autograd.grad((z ** 2).sum(), z)
                return g.detach()

            @staticmethod
            def backward(ctx, g):
                return 2 * g
    """,
]

INVALID = [
    # torch.autograd.grad in forward: grad mode is off there
    """\
        import torch


        class EnergyDescent(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                z = x.detach().clone().requires_grad_(True)
                (g,) = torch.autograd.grad((z ** 4 - z ** 2).sum(), z)  # AGL015:16
                return (z - 0.1 * g).detach()

            @staticmethod
            def backward(ctx, g):
                return g
    """,
    # a helper that takes a gradient, called from forward
    """\
        import torch
        from torch.autograd import grad


        def slope(fn, x):
            x = x.detach().requires_grad_(True)
            return grad(fn(x), x)[0]


        class Newton(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x - slope(lambda t: (t ** 3).sum(), x)  # AGL015:20

            @staticmethod
            def backward(ctx, g):
                return g
    """,
    # .backward() in forward
    """\
        import torch


        class Probe(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                z = x.detach().requires_grad_(True)
                (z ** 2).sum().backward()  # AGL015:9
                return z.grad

            @staticmethod
            def backward(ctx, g):
                return g
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL015", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL015", source) == marked_positions("AGL015", source)

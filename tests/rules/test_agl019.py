"""AGL019 saved-tensor-mutated: the caller-side flow and the recipe.

It follows what a function does with `Fn.apply(...)` after the call (autograd_lint/facts/apply_flow.py), as AGL020
does; the caller builder here serves the AGL020 tests too.
"""

from __future__ import annotations

import textwrap

import pytest
from snippets import marked_positions, reported_positions
from test_confirm import run_recipe

from autograd_lint import Config, lint_source

HEADER = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\nfrom torch.autograd import Function\n\n"

SAVES = """
class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        out = x.exp()
        ctx.save_for_backward(out)
        return out
    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * out

class Mul(Function):
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x)
        return x * w
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return None, g * x
"""


def caller_findings(
    body: str, rule: str = "AGL019", functions: str = SAVES, params: str = "x, w"
) -> list[tuple[int, int]]:
    """(line in `body`, 1-based, column) of each finding in `def caller(params): body`."""
    prefix = HEADER + functions + f"\ndef caller({params}):\n"
    source = prefix + textwrap.indent(textwrap.dedent(body), "    ")
    return [(d.line - prefix.count("\n"), d.column) for d in lint_source(source, "t.py", Config(select=(rule,)))]


@pytest.mark.parametrize(
    "body, expected",
    [
        ("y = Exp.apply(x)\ny.add_(1)\nreturn y\n", [(2, 5)]),
        ("y = Exp.apply(x)\ny *= 2\nreturn y\n", [(2, 5)]),
        ("y = Exp.apply(x)\ny[y > 3] = 3\nreturn y\n", [(2, 5)]),
        ("y = Exp.apply(x)\ntorch.relu_(y)\nreturn y\n", [(2, 5)]),
        ("y = Exp.apply(x)\nF.relu(y, inplace=True)\nreturn y\n", [(2, 5)]),
        ("y = Exp.apply(x)\nnn.ReLU(inplace=True)(y)\nreturn y\n", [(2, 5)]),
        ("y = Exp.apply(x)\nnn.ReLU(True)(y)\nreturn y\n", [(2, 5)]),  # inplace by position
        ("y = Exp.apply(x)\nF.leaky_relu(y, 0.2, True)\nreturn y\n", [(2, 5)]),
        ("y = Exp.apply(x)\nF.dropout(y, 0.1, True, True)\nreturn y\n", [(2, 5)]),
        ("y = Exp.apply(x)\nh = y.view(-1)\nh.zero_()\nreturn y\n", [(3, 5)]),
        ("y = Exp.apply(x)\ntorch.exp(x, out=y)\nreturn y\n", [(2, 18)]),
        ("Exp.apply(x).add_(1)\n", [(1, 5)]),
        ("y = Exp.apply(x)\nif w is None:\n    y = y.clone()\ny.add_(1)\nreturn y\n", [(4, 5)]),
        ("y = Exp.apply(x)\ny.add_(1)\ny.mul_(2)\nreturn y\n", [(2, 5)]),  # the first write only
        ("x = x * 1\ny = Mul.apply(x, w)\nx.sub_(1)\nreturn y\n", [(3, 5)]),
        ("y = Mul.apply(x, w)\nwith torch.no_grad():\n    x.clamp_(-1, 1)\nreturn y\n", [(3, 9)]),
        ("for _ in range(3):\n    x += Mul.apply(x, w)\nreturn x\n", [(2, 9)]),
        # Silent: not saved, rebound, cloned, after backward, no graph recorded.
        ("y = Mul.apply(x, w)\nw.add_(1)\ny.add_(1)\nreturn y\n", []),
        ("y = Exp.apply(x)\nx.add_(1)\nreturn y\n", []),
        ("y = Exp.apply(x).clone()\ny.add_(1)\nreturn y\n", []),
        ("y = Exp.apply(x)\ny = y * 2\ny.add_(1)\nreturn y\n", []),
        ("y = Mul.apply(x.clone(), w)\nx.add_(1)\nreturn y\n", []),
        ("y = Exp.apply(x)\ny.sum().backward()\ny.add_(1)\nreturn y\n", []),
        ("y = Exp.apply(x)\ntorch.autograd.grad(y.sum(), x)\ny.add_(1)\nreturn y\n", []),
        ("with torch.no_grad():\n    y = Exp.apply(x)\n    y.add_(1)\nreturn y\n", []),
        ("x.add_(1)\ny = Mul.apply(x, w)\nreturn y\n", []),
        ("y = Exp.apply(x)\ny.requires_grad_(False)\nreturn y\n", []),
        ("y = Exp.apply(x)\ny.data.add_(1)\nreturn y\n", []),  # .data: no version check (silently wrong instead)
        ("y = Exp.apply(x)\nz = F.leaky_relu(y, 0.2, False)\nz = nn.Dropout(0.1, False)(y)\nreturn z\n", []),
        ("y = Exp.apply(x)\ndef later():\n    y.add_(1)\nreturn later\n", []),
    ],
)
def test_agl019_caller_shapes(body, expected):
    assert caller_findings(body) == expected


def test_agl019_inplace_module_attribute():
    source = (
        HEADER
        + SAVES
        + textwrap.dedent(
            """
        class Block(nn.Module):
            def __init__(self, inplace=True):
                super().__init__()
                self.act = nn.ReLU(inplace=True)
                self.plain = nn.ReLU()
            def forward(self, x):
                y = Exp.apply(x)
                y = self.plain(y)
                z = Exp.apply(x)
                z = self.act(z)
                return y + z
        """
        )
    )
    reported = [(d.line, d.column) for d in lint_source(source, "t.py", Config(select=("AGL019",)))]
    assert reported == [(source.splitlines().index("        z = self.act(z)") + 1, 13)]


def test_agl019_follows_a_functional_wrapper():
    wrapped = SAVES + "\ndef exp(x):\n    return Exp.apply(x)\n\ndef mul(w, x):\n    return Mul.apply(x, w)\n"
    body = "y = exp(x)\ny.add_(1)\nh = x * 2\nz = mul(w, h)\nh.add_(1)\nw.add_(1)\nreturn y + z\n"
    assert caller_findings(body, functions=wrapped) == [(2, 5), (5, 5)]


def test_agl019_attribute_argument_written_before_backward():
    source = (
        HEADER
        + SAVES
        + textwrap.dedent(
            """
        class Layer(nn.Module):
            def forward(self, w):
                y = Mul.apply(self.weight, w)
                with torch.no_grad():
                    self.weight.clamp_(-1, 1)
                z = Mul.apply(self.scale, w)
                self.scale.data.mul_(2)
                self.scale = nn.Parameter(torch.ones(3))
                self.scale.mul_(2)
                return y + z
        """
        )
    )
    reported = [(d.line, d.column, d.message) for d in lint_source(source, "t.py", Config(select=("AGL019",)))]
    line = source.splitlines().index("            self.weight.clamp_(-1, 1)") + 1
    assert reported == [(line, 13, "`self.weight.clamp_(-1, 1)` changes `self.weight` after Mul.forward saved it")]


WRITING_HELPERS = (
    "\ndef clip_(t):\n    t.clamp_(-1, 1)\n\ndef clip(t):\n    t = t.clamp(-1, 1)\n    t.add_(1)\n    return t\n"
    "\ndef touch(t):\n    t.data.zero_()\n"
)


def test_agl019_sees_writes_made_by_a_module_function():
    assert caller_findings("y = Mul.apply(x, w)\nclip_(x)\nreturn y\n", functions=SAVES + WRITING_HELPERS) == [(2, 5)]
    assert (
        caller_findings(
            "y = Mul.apply(x, w)\nclip(x)\ntouch(x)\nclip_(w)\nreturn y\n", functions=SAVES + WRITING_HELPERS
        )
        == []
    )


def test_agl019_unpacked_tuple_output():
    functions = SAVES + (
        "\nclass Pair(Function):\n    @staticmethod\n    def forward(ctx, x):\n        y = x.exp()\n        z = x * 2\n"
        "        ctx.save_for_backward(y)\n        return y, z\n    @staticmethod\n    def backward(ctx, gy, gz):\n"
        "        (y,) = ctx.saved_tensors\n        return gy * y + gz * 2\n"
    )
    assert caller_findings("a, b = Pair.apply(x)\nb.add_(1)\na.add_(1)\n", functions=functions) == [(3, 5)]
    assert caller_findings("a, b = Pair.apply(x)\na = a * 2\na.add_(1)\n", functions=functions) == []


def test_agl019_setup_context_and_saved_input_by_unpacking():
    functions = textwrap.dedent(
        """
        class Scale(Function):
            @staticmethod
            def forward(x, w):
                return x * w
            @staticmethod
            def setup_context(ctx, inputs, output):
                x, w = inputs
                ctx.save_for_backward(w)
            @staticmethod
            def backward(ctx, g):
                (w,) = ctx.saved_tensors
                return g * w, None
        """
    )
    body = "y = Scale.apply(x, w)\nx.add_(1)\nw.add_(1)\nreturn y\n"
    assert caller_findings(body, functions=functions) == [(3, 5)]


def test_agl019_message_names_the_function_and_the_saved_parameter():
    source = HEADER + SAVES + "\ndef caller(x, w):\n    y = Mul.apply(x, w)\n    x.add_(1)\n    return y\n"
    (diagnostic,) = lint_source(source, "t.py", Config(select=("AGL019",)))
    assert diagnostic.message == "`x.add_(1)` changes `x` after Mul.forward saved it"
    assert "It changes `x` after passing it to `Mul.apply`, whose forward saves it" in diagnostic.explanation
    assert "modified by an inplace operation" in diagnostic.explanation


CORRECT_019 = (
    HEADER + SAVES + "_agl_builders = [('Exp.apply(<tensor>)', lambda shape: [_agl_probes.leaf_tensor(shape)])]\n"
)


def test_agl019_recipe_not_reproduced_when_forward_saves_nothing_written():
    # Mul saves x only: writing into w (argument 1) leaves backward intact.
    code = (
        HEADER
        + SAVES
        + (
            "_agl_builders = [('Mul.apply(<tensor>, <tensor>)', lambda shape: [_agl_probes.leaf_tensor(shape, 0), _agl_probes.leaf_tensor(shape, 1)])]\n"
            "agl019.check_saved_inplace(Mul.apply, _agl_builders, 1, 'w', None, globals())\n"
        )
    )
    verdict, evidence = run_recipe(code)
    assert verdict == "not-reproduced", evidence
    assert "then backward ran" in evidence


def test_agl019_recipe_confirms_and_shows_the_clone_runs():
    recipe = "agl019.check_saved_inplace(Exp.apply, _agl_builders, None, 'y', 'torch.relu_(y)', globals())\n"
    verdict, evidence = run_recipe(CORRECT_019 + recipe)
    assert verdict == "confirmed", evidence
    assert (
        "then `torch.relu_(y)` on its output, then backward raised RuntimeError: one of the variables needed"
        in evidence
    )
    assert "which is output 0 of Exp" in evidence
    assert "with a .clone() at the call the same sequence runs" in evidence


def test_agl019_recipe_stands_in_for_a_write_it_cannot_replay():
    recipe = "agl019.check_saved_inplace(Exp.apply, _agl_builders, None, 'y', 'y[mask] = 0', globals())\n"
    verdict, evidence = run_recipe(CORRECT_019 + recipe)
    assert verdict == "confirmed", evidence
    assert "`y.mul_(1)` (standing in for the flagged write)" in evidence


def test_agl019_a_method_of_the_caller_writing_the_saved_attribute():
    source = (
        HEADER
        + SAVES
        + textwrap.dedent(
            """
        class Layer(nn.Module):
            def _clip(self):
                with torch.no_grad():
                    self.weight.clamp_(-1, 1)

            def _clip_data(self):
                self.weight.data.clamp_(-1, 1)

            def _reset_other(self):
                self.other.zero_()

            def forward(self, w):
                y = Mul.apply(self.weight, w)
                self._clip_data()
                self._reset_other()
                self._clip()
                return y
        """
        )
    )
    reported = [(d.line, d.column) for d in lint_source(source, "t.py", Config(select=("AGL019",)))]
    assert reported == [(source.splitlines().index("        self._clip()") + 1, 9)]


def test_agl019_partial_of_apply_shifts_the_argument_positions():
    functions = (
        SAVES
        + "\nimport functools\nby_two = functools.partial(Mul.apply)\nscaled = functools.partial(Mul.apply, 2.0)\n"
    )
    # Mul saves its first argument: `scaled(x)` binds 2.0 there, so x (apply's argument 1) is not saved.
    assert caller_findings("y = by_two(x, w)\nx.add_(1)\nreturn y\n", functions=functions) == [(2, 5)]
    assert caller_findings("y = scaled(x)\nx.add_(1)\nreturn y\n", functions=functions) == []
    assert caller_findings("y = functools.partial(Exp.apply)(x)\ny.add_(1)\nreturn y\n", functions=functions) == [
        (2, 5)
    ]


def test_agl019_checkpointed_apply_maps_the_arguments_after_the_function():
    functions = SAVES + "\nfrom torch.utils.checkpoint import checkpoint\n"
    assert caller_findings(
        "y = checkpoint(Mul.apply, x, w, use_reentrant=False)\nx.add_(1)\nreturn y\n", functions=functions
    ) == [(2, 5)]
    assert (
        caller_findings(
            "y = checkpoint(Mul.apply, x, w, use_reentrant=False)\nw.add_(1)\nreturn y\n", functions=functions
        )
        == []
    )


EXP = """\
        import torch
        import torch.nn as nn


        class Exp(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                out = x.exp()
                ctx.save_for_backward(out)
                return out

            @staticmethod
            def backward(ctx, g):
                (out,) = ctx.saved_tensors
                return g * out
"""

VALID = [
    # a write into an argument forward does not save
    EXP
    + """\


        def shifted(x):
            y = Exp.apply(x)
            x.add_(1)
            return y
    """,
    # a write after backward consumed the graph
    EXP
    + """\


        def step(x):
            y = Exp.apply(x)
            y.sum().backward()
            y.clamp_(max=10)
            return y
    """,
    # no graph under no_grad
    EXP
    + """\


        @torch.no_grad()
        def infer(x):
            y = Exp.apply(x)
            y.clamp_(max=10)
            return y
    """,
    # a write after the name is rebound to a copy
    EXP
    + """\


        def clipped(x):
            y = Exp.apply(x).clone()
            y.clamp_(max=10)
            return y
    """,
    # a write through .data raises nothing (and is not this rule)
    EXP
    + """\


        def scaled(x):
            y = Exp.apply(x)
            y.data.mul_(2)
            return y
    """,
]

INVALID = [
    # an in-place activation module on the saved output
    EXP
    + """\


        class RateHead(nn.Module):
            def __init__(self):
                super().__init__()
                self.act = nn.ReLU(inplace=True)

            def forward(self, h):
                rate = Exp.apply(h)
                rate = self.act(rate)  # AGL019:16
                return rate
    """,
    # a method call writing the saved output
    EXP
    + """\


        def capped(x):
            y = Exp.apply(x)
            y.clamp_(max=10)  # AGL019:5
            return y
    """,
    # an augmented assignment into a saved input
    """\
        import torch


        class Linear(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w):
                ctx.save_for_backward(x, w)
                return x @ w.t()

            @staticmethod
            def backward(ctx, g):
                x, w = ctx.saved_tensors
                return g @ w, g.t() @ x


        def residual(x, w):
            x = x * 1.0
            x += Linear.apply(x, w)  # AGL019:5
            return x
    """,
    # a functional in-place activation
    EXP
    + """\


        def rate(x):
            y = Exp.apply(x)
            torch.relu_(y)  # AGL019:5
            return y
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL019", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL019", source) == marked_positions("AGL019", source)

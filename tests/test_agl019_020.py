"""AGL019 saved-tensor-mutated and AGL020 output-view-inplace: the caller-side flow and the recipes.

Both follow what a function does with `Fn.apply(...)` after the call (autograd_lint/facts/apply_flow.py).
"""

from __future__ import annotations

import textwrap

import pytest

from autograd_lint import Config, lint_source

from test_confirm import run_recipe

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


def caller_findings(body: str, rule: str = "AGL019", functions: str = SAVES, params: str = "x, w") -> list[tuple[int, int]]:
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
    source = HEADER + SAVES + textwrap.dedent(
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
    reported = [(d.line, d.column) for d in lint_source(source, "t.py", Config(select=("AGL019",)))]
    assert reported == [(source.splitlines().index("        z = self.act(z)") + 1, 13)]


def test_agl019_and_agl020_follow_a_functional_wrapper():
    wrapped = SAVES + "\ndef exp(x):\n    return Exp.apply(x)\n\ndef mul(w, x):\n    return Mul.apply(x, w)\n"
    body = "y = exp(x)\ny.add_(1)\nh = x * 2\nz = mul(w, h)\nh.add_(1)\nw.add_(1)\nreturn y + z\n"
    assert caller_findings(body, functions=wrapped) == [(2, 5), (5, 5)]
    source = HEADER + VIEWS + "\ndef grl(x):\n    return GRL.apply(x, 1.0)\n\ndef caller(x):\n    y = grl(x)\n    y.mul_(2)\n"
    (diagnostic,) = lint_source(source, "t.py", Config(select=("AGL020",)))
    assert diagnostic.message == "`y.mul_(2)` writes in place into GRL's output, a view of its input"
    assert "`y` is the output of `GRL.apply` (through `grl()`)" in diagnostic.explanation


def test_agl019_attribute_argument_written_before_backward():
    source = HEADER + SAVES + textwrap.dedent(
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
    reported = [(d.line, d.column, d.message) for d in lint_source(source, "t.py", Config(select=("AGL019",)))]
    line = source.splitlines().index("            self.weight.clamp_(-1, 1)") + 1
    assert reported == [(line, 13, "`self.weight.clamp_(-1, 1)` changes `self.weight` after Mul.forward saved it")]


def test_agl019_and_agl020_see_writes_made_by_a_module_function():
    helpers = "\ndef clip_(t):\n    t.clamp_(-1, 1)\n\ndef clip(t):\n    t = t.clamp(-1, 1)\n    t.add_(1)\n    return t\n\ndef touch(t):\n    t.data.zero_()\n"
    assert caller_findings("y = Mul.apply(x, w)\nclip_(x)\nreturn y\n", functions=SAVES + helpers) == [(2, 5)]
    assert caller_findings("y = Mul.apply(x, w)\nclip(x)\ntouch(x)\nclip_(w)\nreturn y\n", functions=SAVES + helpers) == []
    assert caller_findings("y = Same.apply(x)\nclip_(y)\nreturn y\n", rule="AGL020", functions=VIEWS + helpers) == [(2, 5)]


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


CORRECT_019 = HEADER + SAVES + "_agl_builders = [('Exp.apply(<tensor>)', lambda shape: [_agl_leaf(shape)])]\n"


def test_agl019_recipe_not_reproduced_when_forward_saves_nothing_written():
    # Mul saves x only: writing into w (argument 1) leaves backward intact.
    code = HEADER + SAVES + (
        "_agl_builders = [('Mul.apply(<tensor>, <tensor>)', lambda shape: [_agl_leaf(shape, 0), _agl_leaf(shape, 1)])]\n"
        "_agl_saved_inplace_recipe(Mul.apply, _agl_builders, 1, 'w', None, globals())\n"
    )
    verdict, evidence = run_recipe(code)
    assert verdict == "not-reproduced", evidence
    assert "then backward ran" in evidence


def test_agl019_recipe_confirms_and_shows_the_clone_runs():
    recipe = "_agl_saved_inplace_recipe(Exp.apply, _agl_builders, None, 'y', 'torch.relu_(y)', globals())\n"
    verdict, evidence = run_recipe(CORRECT_019 + recipe)
    assert verdict == "confirmed", evidence
    assert "then `torch.relu_(y)` on its output, then backward raised RuntimeError: one of the variables needed" in evidence
    assert "which is output 0 of Exp" in evidence
    assert "with a .clone() at the call the same sequence runs" in evidence


def test_agl019_recipe_stands_in_for_a_write_it_cannot_replay():
    recipe = "_agl_saved_inplace_recipe(Exp.apply, _agl_builders, None, 'y', 'y[mask] = 0', globals())\n"
    verdict, evidence = run_recipe(CORRECT_019 + recipe)
    assert verdict == "confirmed", evidence
    assert "`y.mul_(1)` (standing in for the flagged write)" in evidence


VIEWS = """
class GRL(Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.alpha = alpha
        return x.view_as(x)
    @staticmethod
    def backward(ctx, g):
        return -ctx.alpha * g, None

class Same(Function):
    @staticmethod
    def forward(ctx, x):
        return x
    @staticmethod
    def backward(ctx, g):
        return g
"""


@pytest.mark.parametrize(
    "body, expected",
    [
        ("y = GRL.apply(x, 1.0)\ny.mul_(2)\nreturn y\n", [(2, 5)]),
        ("y = Same.apply(x)\ny *= 2\nreturn y\n", [(2, 5)]),
        ("y = Same.apply(x)\ny[0] = 1\nreturn y\n", [(2, 5)]),
        ("y = GRL.apply(x, 1.0)\nnn.ReLU(inplace=True)(y)\nreturn y\n", [(2, 5)]),
        ("y = GRL.apply(x, 1.0)\nF.relu(y, inplace=True)\nreturn y\n", [(2, 5)]),
        ("return F.relu_(GRL.apply(x, 1.0))\n", [(1, 12)]),
        ("y = Same.apply(x)\ny.sum().backward()\ny.zero_()\nreturn y\n", [(3, 5)]),  # torch refuses after backward too
        # Silent: out of place, cloned, rebound, under no_grad.
        ("y = GRL.apply(x, 1.0)\nreturn F.relu(y)\n", []),
        ("y = GRL.apply(x, 1.0).clone()\ny.mul_(2)\nreturn y\n", []),
        ("y = Same.apply(x)\ny = y * 2\ny.add_(1)\nreturn y\n", []),
        ("y = Same.apply(x)\nwith torch.no_grad():\n    y.clamp_(0, 1)\nreturn y\n", []),
        ("with torch.no_grad():\n    y = Same.apply(x)\ny.add_(1)\nreturn y\n", []),
        ("y = Same.apply(x)\nx.add_(1)\nreturn y\n", []),
        ("y = GRL.apply(x, 1.0)\ny.data.mul_(2)\nreturn y\n", []),
    ],
)
def test_agl020_caller_shapes(body, expected):
    assert caller_findings(body, rule="AGL020", functions=VIEWS) == expected


@pytest.mark.parametrize(
    "returned, flagged",
    [
        ("x", True), ("x.view(-1)", True), ("x[:, 0]", True), ("x.transpose(0, 1)", True), ("x.reshape(-1)", True),
        ("x.contiguous()", True), ("x.T", True), ("x.view_as(x).squeeze(0)", True),
        ("x.detach()", False), ("x.data", False), ("x.float()", False), ("x.clone()", False),
        ("x[x > 0]", False), ("x * 1", False), ("x[index]", False),
    ],
)
def test_agl020_which_returns_are_views(returned, flagged):
    functions = (
        "\nclass V(Function):\n    @staticmethod\n    def forward(ctx, x, index=0):\n"
        f"        return {returned}\n    @staticmethod\n    def backward(ctx, g):\n        return g, None\n"
    )
    assert bool(caller_findings("y = V.apply(x, 0)\ny.add_(1)\nreturn y\n", rule="AGL020", functions=functions)) is flagged


def test_agl020_local_view_and_mark_dirty():
    via_local = "\nclass V(Function):\n    @staticmethod\n    def forward(ctx, x):\n        flat = x.view(-1)\n        return flat\n" \
        "    @staticmethod\n    def backward(ctx, g):\n        return g\n"
    assert caller_findings("y = V.apply(x)\ny.add_(1)\n", rule="AGL020", functions=via_local) == [(2, 5)]
    dirty = "\nclass V(Function):\n    @staticmethod\n    def forward(ctx, x):\n        ctx.mark_dirty(x)\n        return x.relu_()\n" \
        "    @staticmethod\n    def backward(ctx, g):\n        return g\n"
    assert caller_findings("y = V.apply(x)\ny.add_(1)\n", rule="AGL020", functions=dirty) == []


def test_agl020_message_quotes_torch_and_the_return():
    source = HEADER + VIEWS + "\ndef caller(x):\n    y = GRL.apply(x, 1.0)\n    y.mul_(2)\n    return y\n"
    (diagnostic,) = lint_source(source, "t.py", Config(select=("AGL020",)))
    assert "GRL.forward returns a view of its input `x` (`return x.view_as(x)`)" in diagnostic.explanation
    assert "Output 0 of GRL is a view and is being modified inplace" in diagnostic.explanation


VIEW_BUILDERS = "_agl_builders = [('GRL.apply(<tensor>, 1.0)', lambda shape: [_agl_leaf(shape), 1.0])]\n"


def test_agl020_recipe_confirms_with_the_users_write_and_the_clone_runs():
    recipe = "_agl_output_view_recipe(GRL.apply, _agl_builders, 'y', 'torch.relu_(y)', globals())\n"
    verdict, evidence = run_recipe(HEADER + VIEWS + VIEW_BUILDERS + recipe)
    assert verdict == "confirmed", evidence
    assert "then `torch.relu_(y)` on the output raised RuntimeError: Output 0 of GRL is a view" in evidence
    assert "on the output's .clone() the same write runs" in evidence


def test_agl020_recipe_not_reproduced_when_forward_copies():
    fixed = VIEWS.replace("return x.view_as(x)", "return x.clone()")
    code = HEADER + fixed + VIEW_BUILDERS + "_agl_output_view_recipe(GRL.apply, _agl_builders, 'y', None, globals())\n"
    verdict, evidence = run_recipe(code)
    assert verdict == "not-reproduced", evidence
    assert "the output is not a view" in evidence


@pytest.mark.parametrize(
    "helper, flagged",
    [
        ("def passthrough(t, scale):\n    return t.view_as(t)\n", True),
        ("def passthrough(t, scale):\n    out = t * scale\n    return out\n", False),
        ("def passthrough(t, scale):\n    if scale:\n        return t\n    return t.clone()\n", False),
    ],
)
def test_agl020_forward_returning_a_view_made_by_a_module_function(helper, flagged):
    functions = (
        "\n" + helper + "\nclass V(Function):\n    @staticmethod\n    def forward(ctx, x, scale):\n"
        "        return passthrough(x, scale)\n    @staticmethod\n    def backward(ctx, g):\n        return g, None\n"
    )
    assert bool(caller_findings("y = V.apply(x, 2)\ny.add_(1)\nreturn y\n", rule="AGL020", functions=functions)) is flagged


def test_agl019_a_method_of_the_caller_writing_the_saved_attribute():
    source = HEADER + SAVES + textwrap.dedent(
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
    reported = [(d.line, d.column) for d in lint_source(source, "t.py", Config(select=("AGL019",)))]
    assert reported == [(source.splitlines().index("        self._clip()") + 1, 9)]


def test_agl019_partial_of_apply_shifts_the_argument_positions():
    functions = SAVES + "\nimport functools\nby_two = functools.partial(Mul.apply)\nscaled = functools.partial(Mul.apply, 2.0)\n"
    # Mul saves its first argument: `scaled(x)` binds 2.0 there, so x (apply's argument 1) is not saved.
    assert caller_findings("y = by_two(x, w)\nx.add_(1)\nreturn y\n", functions=functions) == [(2, 5)]
    assert caller_findings("y = scaled(x)\nx.add_(1)\nreturn y\n", functions=functions) == []
    assert caller_findings("y = functools.partial(Exp.apply)(x)\ny.add_(1)\nreturn y\n", functions=functions) == [(2, 5)]


def test_agl019_checkpointed_apply_maps_the_arguments_after_the_function():
    functions = SAVES + "\nfrom torch.utils.checkpoint import checkpoint\n"
    assert caller_findings("y = checkpoint(Mul.apply, x, w, use_reentrant=False)\nx.add_(1)\nreturn y\n", functions=functions) == [(2, 5)]
    assert caller_findings("y = checkpoint(Mul.apply, x, w, use_reentrant=False)\nw.add_(1)\nreturn y\n", functions=functions) == []

"""AGL014 tensors-in-containers: static cases and the confirm recipes under real torch."""

from __future__ import annotations

import textwrap

import pytest
from snippets import marked_positions, reported_positions
from test_confirm import run_recipe

from autograd_lint import Config, lint_source


def agl014(source: str) -> list[tuple[int, int]]:
    found = lint_source(textwrap.dedent(source), "case.py", Config(select=("AGL014",)))
    return [(d.line, d.column) for d in found]


def function(forward_params: str, forward_body: str, backward_body: str = "return g", after: str = "") -> str:
    return (
        "import torch\n\n"
        "class F(torch.autograd.Function):\n"
        "    @staticmethod\n"
        f"    def forward(ctx, {forward_params}):\n"
        + textwrap.indent(textwrap.dedent(forward_body).strip(), " " * 8)
        + "\n\n    @staticmethod\n"
        "    def backward(ctx, g, *rest):\n"
        + textwrap.indent(textwrap.dedent(backward_body).strip(), " " * 8)
        + "\n"
        + textwrap.dedent(after)
    )


@pytest.mark.parametrize(
    "body, column",
    [
        ("return [x * 2, x * 3]", 16),  # x gets a gradient from backward: a tensor
        ("return {'y': torch.exp(x)}", 16),
        ("return [torch.relu(t) for t in x.unbind(0)]", 16),
        ("y = x.clone()\nreturn y, [y * 2]", 19),
        ("outs = []\nfor k in range(3):\n    outs.append(x.view(-1) * k)\nreturn outs", 16),
        ("state = {}\nstate['h'] = torch.tanh(x)\nreturn x.clone(), state", 27),
    ],
)
def test_returned_containers_of_tensors_are_flagged(body, column):
    source = function("x", body)
    line = (
        source.splitlines().index(
            next(text for text in source.splitlines() if text.strip().startswith("return") and "def" not in text)
        )
        + 1
    )
    assert agl014(source) == [(line, column)]


@pytest.mark.parametrize(
    "body",
    [
        "return x * 2, x * 3",  # a flat tuple
        "return tuple(t.contiguous() for t in x.chunk(2))",
        "return x * 2, (x.shape[0], x.shape[1])",  # shapes are not tensors
        "return [1, 2]",
        "return helper(x)",
        "parts = helper(x)\nreturn parts",
        "ctx.meta = {'shape': x.shape}\nreturn x.clone()",
        "return [a for a in helper(x)]",  # elements the linter cannot classify
    ],
)
def test_returns_without_contained_tensors_are_silent(body):
    assert agl014(function("x", body)) == []


@pytest.mark.parametrize(
    "forward_params, body, call",
    [
        ("xs", "return torch.cat(xs)", "F.apply([a, b])"),
        ("xs", "return torch.stack(xs).sum(0)", "F.apply([a, b])"),
        ("xs, w", "out = 0\nfor t in xs:\n    out = out + t.float() * w\nreturn out", "F.apply([a, b], w)"),
        ("xs", "return sum(t.contiguous() for t in xs)", "F.apply([a, b])"),
        ("xs", "return xs[0].clone()", "F.apply([a, b])"),
        ("qk", "return qk['q'] @ qk['k']", "F.apply({'q': a, 'k': b})"),
        ("x, scale", "return x * scale", "F.apply([torch.randn(3), torch.randn(3)], 2.0)"),
        # Elements the caller makes with methods only tensors have: whatever forward does with them.
        ("xs, w", "return sum(t * w for t in xs)", "F.apply([a.float(), b.float()], w)"),
        ("xs, w", "return xs['a'] * w", "F.apply({'a': a.contiguous(), 'b': b.detach()}, w)"),
    ],
)
def test_apply_with_tensors_in_a_container_is_flagged(forward_params, body, call):
    source = function(forward_params, body, after=f"\ndef use(a, b, w):\n    return {call}\n")
    line = len(source.splitlines())
    assert agl014(source) == [(line, 12 + len("F.apply("))]


def test_a_tuple_argument_is_reported_at_its_first_element():
    source = function("xs", "return torch.stack(xs).sum(0)", after="\ndef use(a, b):\n    return F.apply((a, b))\n")
    assert agl014(source) == [(len(source.splitlines()), 21)]  # libcst positions exclude the parentheses


def test_apply_with_a_name_bound_to_a_list_points_at_the_name():
    source = function("xs", "return torch.cat(xs)", after="\ndef use(a, b):\n    xs = [a, b]\n    return F.apply(xs)\n")
    (finding,) = lint_source(source, "case.py", Config(select=("AGL014",)))
    assert (finding.line, finding.column) == (len(source.splitlines()), 20)
    assert "`xs` is a list" in finding.message


@pytest.mark.parametrize(
    "forward_params, body, call",
    [
        ("x, pad", "return torch.nn.functional.pad(x, pad)", "F.apply(a, [1, 1, 2, 2])"),
        ("x, shape", "return x.reshape(shape)", "F.apply(a, (a.shape[0], -1))"),
        ("x, sizes", "for s in sizes:\n    x = x.narrow(0, 0, s)\nreturn x", "F.apply(a, [3, 2])"),
        ("x, flags", "return x * 2 if flags[0] else x", "F.apply(a, [b, True])"),  # unknown elements, no tensor use
        ("*xs", "return torch.cat(xs)", "F.apply(*[a, b])"),
        ("fn, *args", "return fn(*args)", "F.apply(torch.relu, a, b)"),
        ("x, sizes", "return x.view(sizes[0], -1)", "F.apply(a, [3, 4])"),  # an element used as a size
        ("x, idx", "return torch.zeros(idx[0]) + x", "F.apply(a, [b, 2])"),  # an element as a constructor's size
    ],
)
def test_config_containers_and_star_args_are_silent(forward_params, body, call):
    source = function(forward_params, body, after=f"\ndef use(a, b):\n    return {call}\n")
    assert agl014(source) == []


GATE_FLAT = """
import torch
class Gate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2, x * 3
    @staticmethod
    def backward(ctx, g1, g2):
        return g1 * 2 + g2 * 3
"""

CONCAT_STAR = """
import torch
class Concat(torch.autograd.Function):
    @staticmethod
    def forward(ctx, *xs):
        ctx.sizes = [x.shape[0] for x in xs]
        return torch.cat(xs)
    @staticmethod
    def backward(ctx, g):
        return tuple(g.split(ctx.sizes))
"""


def test_recipes_do_not_confirm_flat_outputs_or_star_inputs():
    builders = "[('Gate.apply(<tensor>)', lambda s: [_agl_probes.leaf_tensor(s)])]"
    verdict, evidence = run_recipe(GATE_FLAT + f"agl014.check_container_output(Gate.apply, {builders})")
    assert verdict == "not-reproduced", evidence
    verdict, evidence = run_recipe(
        CONCAT_STAR
        + "agl014.check_container_input(Concat.apply, 'Concat.apply(a, b)', 2, lambda shape, inner: (inner, {}))"
    )
    assert verdict == "not-reproduced" and "received a gradient" in evidence


def test_input_recipe_confirms_a_list_argument_with_torchs_numbers():
    code = CONCAT_STAR.replace("*xs", "xs").replace("tuple(g.split(ctx.sizes))", "None")
    verdict, evidence = run_recipe(
        code
        + "agl014.check_container_input(Concat.apply, 'Concat.apply([a, b])', 2, lambda shape, inner: ([inner], {}))"
    )
    assert verdict == "confirmed" and "requires_grad=False" in evidence


def test_a_name_passed_where_forward_concatenates_is_flagged():
    source = function(
        "xs, dim", "return torch.cat(xs, dim)", after="\ndef use(levels):\n    return F.apply(levels, 0)\n"
    )
    (finding,) = lint_source(source, "case.py", Config(select=("AGL014",)))
    assert (finding.line, finding.column) == (len(source.splitlines()), 20)
    assert finding.message == "F.apply receives `levels` as `xs`, a container of tensors"
    assert finding.explanation.startswith("Forward passes it to torch.cat/stack")
    # a single tensor from a torch call, or a literal, is left alone (torch raises for it anyway)
    assert agl014(source.replace("F.apply(levels, 0)", "F.apply(torch.randn(3), 0)")) == []
    assert agl014(source.replace("F.apply(levels, 0)", "F.apply(None, 0)")) == []


def test_names_bound_by_tuple_unpacking_are_elements_not_tuples():
    source = function(
        "a, b",
        "return a * b",
        "return g, g",
        after="\ndef use():\n    a, b = torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)\n    return F.apply(a, b)\n",
    )
    assert agl014(source) == []


PACK = """
def pack(out, aux):
    return {"out": out, "aux": aux}

def pack_shape(out, aux):
    return {"shape": out.shape, "n": 3}

def flat(out, aux):
    return out, aux
"""


@pytest.mark.parametrize(
    "returned, flagged",
    [
        ("pack(x * 2, x.sum())", True),
        ("pack_shape(x * 2, x.sum())", False),
        ("flat(x * 2, x.sum())", False),
        ("pack(1, 2)", False),
    ],
)
def test_a_container_built_by_a_module_function_is_followed(returned, flagged):
    source = function("x", f"return {returned}", after=PACK)
    assert bool(agl014(source)) is flagged


VALID = [
    # a list of sizes passed to apply
    """\
        import torch
        import torch.nn.functional as F


        class Pad(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, pads):
                ctx.pads = pads
                return F.pad(x, pads)

            @staticmethod
            def backward(ctx, g):
                left, right = ctx.pads
                return g[..., left : g.shape[-1] - right], None


        def pad(x):
            return Pad.apply(x, [1, 2])
    """,
    # *args forward called with unpacked tensors
    """\
        import torch


        class Concat(torch.autograd.Function):
            @staticmethod
            def forward(ctx, *levels):
                ctx.sizes = [t.shape[0] for t in levels]
                return torch.cat(levels)

            @staticmethod
            def backward(ctx, g):
                return tuple(g.split(ctx.sizes))


        def concat(levels):
            return Concat.apply(*levels)
    """,
    # a shape returned beside the output
    """\
        import torch


        class Flatten(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.shape = x.shape
                return x.reshape(-1), (x.shape[0], x.shape[1])

            @staticmethod
            def backward(ctx, g, g_shape):
                return g.reshape(ctx.shape)
    """,
    # a tuple built by a call, and a list kept on ctx
    """\
        import torch


        class Split(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                parts = x.chunk(2)
                ctx.parts = [p.shape for p in parts]
                return tuple(p.clone() for p in parts)

            @staticmethod
            def backward(ctx, *grads):
                return torch.cat(grads)
    """,
]

INVALID = [
    # a list of tensors passed to apply
    """\
        import torch


        class ConcatLevels(torch.autograd.Function):
            @staticmethod
            def forward(ctx, levels, dim):
                ctx.sizes = [level.shape[dim] for level in levels]
                ctx.dim = dim
                return torch.cat(levels, dim=dim)

            @staticmethod
            def backward(ctx, g):
                return tuple(g.split(ctx.sizes, dim=ctx.dim)), None


        def fuse(a, b):
            return ConcatLevels.apply([a, b], 0)  # AGL014:31
    """,
    # a list of tensors returned
    """\
        import torch


        class GateAndValue(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                value, gate = x.chunk(2, dim=-1)
                ctx.save_for_backward(value, gate)
                return [value * torch.sigmoid(gate), torch.sigmoid(gate)]  # AGL014:16

            @staticmethod
            def backward(ctx, g_out, g_gate):
                value, gate = ctx.saved_tensors
                s = torch.sigmoid(gate)
                return torch.cat([g_out * s, (g_out * value + g_gate) * s * (1 - s)], dim=-1)
    """,
    # a dict of tensors returned
    """\
        import torch


        class Attention(torch.autograd.Function):
            @staticmethod
            def forward(ctx, q, k):
                scores = q @ k.t()
                return {"scores": scores, "max": scores.amax(-1)}  # AGL014:16

            @staticmethod
            def backward(ctx, g_scores, g_max):
                return g_scores, g_scores
    """,
    # a tuple whose elements are tensors where the call is written
    """\
        import torch


        class Stack(torch.autograd.Function):
            @staticmethod
            def forward(ctx, pair):
                return torch.stack(pair)

            @staticmethod
            def backward(ctx, g):
                return g.unbind(0)


        def stacked(x):
            return Stack.apply((x.float(), x.contiguous()))  # AGL014:25
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL014", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL014", source) == marked_positions("AGL014", source)

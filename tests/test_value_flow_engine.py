"""The one value-flow engine (gradient_reach): the non-value vocabulary and the def-use walk that
AGL010 (`reaches_return` with its carriers) and ValueFlow (AGL004's `reaches_output`) share."""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest

from autograd_lint.core.module import ParsedModule
from autograd_lint.facts.gradient_reach import ValueFlow, non_value_use, reaches_return


def parsed(source: str) -> ParsedModule:
    return ParsedModule(textwrap.dedent(source), "case.py")


def marked(module: ParsedModule) -> cst.Name:
    """The first read of the name `v`, the value being followed."""
    return next(
        n
        for n in module.parents
        if isinstance(n, cst.Name) and n.value == "v" and not isinstance(module.parents.get(n), cst.Param)
    )


def function(module: ParsedModule) -> cst.FunctionDef:
    return next(n for n in module.tree.body if isinstance(n, cst.FunctionDef))


@pytest.mark.parametrize(
    "expression, structure",
    [
        ("v.shape", True),
        ("v.size(0)", True),
        ("v.type()", True),
        ("v.type(torch.half)", False),  # a cast
        ("torch.ones(3, dtype=v)", True),
        ("torch.narrow(x, 0, v, 1)", True),
        ("torch.narrow(v, 0, 1, 1)", False),
        ("torch.gather(x, 1, v)", True),
        ("torch.zeros_like(v)", True),
        ("len(v)", True),
        ("x[v]", True),
        ("v[0]", False),
        ("x if v else y", True),
        ("v if c else y", False),
        ("not v", True),
        ("-v", False),
        ("v and x", True),
        ("v > 0", True),
        ('f"{v}"', True),
        ("x.mul(v)", False),
    ],
)
def test_non_value_uses_are_one_vocabulary(expression, structure):
    module = parsed(f"import torch\n\ndef f(x, y, c, v):\n    return {expression}\n")
    name = marked(module)
    assert non_value_use(module, module.parents[name], name) is structure


def agl010_style_carries(parent, child, state):
    return state if isinstance(parent, cst.BaseExpression) or isinstance(parent, (cst.Arg, cst.Element)) else None


@pytest.mark.parametrize(
    "body, reaches",
    [
        ("out = torch.zeros_like(x)\nout[x > 0] = v\nreturn out", True),  # a write into a buffer
        ("out = torch.empty_like(x)\nout.copy_(v)\nreturn out", True),  # an in-place method
        ("parts = []\nparts.append(v)\nreturn tuple(parts)", True),
        ("a, b = v, x\nreturn b * a", True),
        ("for t in v:\n    x = x + t\nreturn x", True),
        ("if v.sum() > 0:\n    raise ValueError('negative')\nreturn x", False),  # a guard
        ("n = int(v.numel())\nreturn x.view(n, -1)", False),  # a size
        ("k = v\nreturn x[k]", False),  # an index
    ],
)
def test_the_def_use_walk_follows_the_value_into_the_return(body, reaches):
    source = "import torch\n\ndef f(x, v):\n" + textwrap.indent(body, "    ") + "\n"
    module = parsed(source)
    found = reaches_return(module, function(module), marked(module), agl010_style_carries)
    assert (found is not None) is reaches


def test_value_flow_walks_the_same_def_use():
    """ValueFlow (AGL004) walks the same def-use: through tuples and appends into the return, not
    into a size; writes into objects (a metrics dict, an index buffer) are left unfollowed there."""
    module = parsed(
        """\
        import torch

        def quantize(x, s):
            parts = []
            q, scale = torch.round(x / s), s
            parts.append(q * scale)
            return torch.cat(parts)
        """
    )
    rounded = rounding(module)
    assert (
        ValueFlow(module, function(module)).reaches_output(rounded, operand=rounded.args[0].value) is not None
    )  # `* s` dequantizes
    size_only = parsed(
        "import torch\n\ndef f(x, s):\n    k = torch.round(x.sum())\n    return torch.narrow(x, 0, k, 1)\n"
    )
    assert ValueFlow(size_only, function(size_only)).reaches_output(rounding(size_only)) is None
    written = parsed("import torch\n\ndef f(x, stats):\n    stats['q'] = torch.round(x)\n    return stats\n")
    assert ValueFlow(written, function(written)).reaches_output(rounding(written)) is None


def rounding(module: ParsedModule) -> cst.Call:
    return next(
        n
        for n in module.parents
        if isinstance(n, cst.Call) and isinstance(n.func, cst.Attribute) and n.func.attr.value == "round"
    )


@pytest.mark.parametrize(
    "body, only_non_differentiable",
    [
        ("return torch.zeros_like(v) + x", True),  # read for its shape
        ("return torch.narrow(x, 0, v, 1)", True),  # a start index
        ("return x * 2 if v.any() and x.numel() else x", True),  # a truth test
        ("return torch.narrow(v, 0, 1, 1)", False),
    ],
)
def test_feeds_only_non_differentiable_shares_the_vocabulary(body, only_non_differentiable):
    """AGL023/AGL003's sink test reads non-value uses from the same place as the def-use walk."""
    from autograd_lint.facts.gradient_reach import feeds_only_non_differentiable

    module = parsed("import torch\n\ndef f(x, w):\n    v = torch.sqrt(w)\n    " + body + "\n")
    value = next(
        n
        for n in module.parents
        if isinstance(n, cst.Call) and (n.func.attr.value if isinstance(n.func, cst.Attribute) else "") == "sqrt"
    )
    assert feeds_only_non_differentiable(module, value) is only_non_differentiable


def test_names_computed_from_follows_every_binding_kind():
    """The source side: each rule's seeds and the locals computed from them, one fixed point."""
    from autograd_lint.core.syntax import walk
    from autograd_lint.facts.gradient_reach import names_computed_from

    module = parsed(
        """\
        import torch

        def f(x, n):
            a = x * 2
            b: torch.Tensor = a
            c = torch.zeros(3)
            c += b
            for t in c:
                pass
            ys = [u for u in t]
            k = n + 1
            with torch.no_grad():
                d = a.abs()
            return ys, k, d
        """
    )

    def reads(expr, names):
        return any(isinstance(node, cst.Name) and node.value in names for node in [expr, *walk(expr)])

    assert names_computed_from(module, function(module), {"x"}, reads) == {"x", "a", "b", "c", "t", "u", "ys", "d"}
    assert "d" not in names_computed_from(module, function(module), {"x"}, reads, skip=module.under_no_grad)


@pytest.mark.parametrize("method", ["view_as", "type_as", "expand_as", "reshape_as"])
def test_a_tensor_read_for_its_shape_or_dtype_by_a_method_is_a_non_value_use(method):
    module = parsed(f"import torch\n\ndef f(x, v):\n    return x.{method}(v)\n")
    name = marked(module)
    assert non_value_use(module, module.parents[name], name)

"""The shared Function model: which classes are Functions, what their methods take, where they are applied."""

from __future__ import annotations

import textwrap

import pytest

from autograd_lint.core.module import ParsedModule
from autograd_lint.facts.function_model import function_model


def model(source: str, path: str = "m.py", module_name: str | None = None):
    return function_model(ParsedModule(textwrap.dedent(source), path, module_name))


BODY = """
    @staticmethod
    def forward(ctx, x, w, scale=1.0):
        return x * w * scale

    @staticmethod
    def backward(ctx, g):
        return g, g, None
"""


@pytest.mark.parametrize(
    "imports, base",
    [
        ("import torch", "torch.autograd.Function"),
        ("from torch.autograd import Function", "Function"),
        ("import torch.autograd as ag", "ag.Function"),
        ("from torch import autograd", "autograd.Function"),
        ("import torch", "torch.autograd.function.Function"),
        ("from torch.autograd.function import InplaceFunction", "InplaceFunction"),
        ("from torch.autograd import Function as F_", "F_"),
        ("import torch\nFunction = torch.autograd.Function", "Function"),
    ],
)
def test_function_base_resolves_however_it_was_imported(imports, base):
    functions = model(f"{imports}\nclass Mul({base}):{textwrap.indent(BODY, '')}")
    assert [c.name for c in functions] == ["Mul"]
    inputs = functions.classes[0].forward_inputs()
    assert inputs.names == ("x", "w", "scale") and inputs.required == 2 and not inputs.setup_context_style


def test_relative_import_inside_a_package_resolves(tmp_path):
    source = "from ..autograd import Function\nclass Op(Function):\n    pass\n"
    functions = model(source, path=str(tmp_path / "torch" / "nn" / "op.py"), module_name="torch.nn.op")
    assert [c.name for c in functions] == ["Op"]


@pytest.mark.parametrize(
    "source",
    [
        "class Function:\n    pass\nclass NotTorch(Function):\n    pass\n",  # a local class named Function
        "from mylib import Function\nclass Other(Function):\n    pass\n",
        "import torch\nclass Mod(torch.nn.Module):\n    def forward(self, x):\n        return x\n",
    ],
)
def test_classes_that_only_share_the_name_are_not_functions(source):
    assert list(model(source)) == []


def test_subclasses_in_the_same_module_inherit_methods_in_any_order():
    functions = model(
        """
        import torch
        class Child(Base):
            @staticmethod
            def backward(ctx, g):
                return g
        class Base(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x
        """
    )
    child = functions.by_name("Child")
    assert child.forward.owner.name == "Base" and child.backward.owner.name == "Child"
    assert child.hierarchy_known


def test_unknown_base_marks_the_hierarchy_unknown():
    functions = model("import torch\nimport mixins\nclass F(mixins.Mixin, torch.autograd.Function):\n    pass\n")
    assert not functions.classes[0].hierarchy_known


def test_method_kinds_and_ctx_names():
    functions = model(
        """
        import torch
        class A(torch.autograd.Function):
            @classmethod
            def forward(cls, context, x, y):
                return x
            @staticmethod
            def backward(c, g):
                return g, None
        class Legacy(torch.autograd.Function):
            def forward(self, x):
                return x
        class New(torch.autograd.Function):
            @staticmethod
            def forward(x, y=2):
                return x * y
            @staticmethod
            def setup_context(ctx, inputs, output):
                pass
            @staticmethod
            def vjp(ctx, g):
                return g, None
        """
    )
    a, legacy, new = functions.classes
    assert (a.forward.kind, a.forward.cls_name, a.forward.ctx_name) == ("class", "cls", "context")
    assert a.forward_inputs().names == ("x", "y")
    assert (a.backward.kind, a.backward.ctx_name) == ("static", "c")
    assert (legacy.forward.kind, legacy.forward.ctx_name) == ("plain", "self")
    assert legacy.forward_inputs().names == ("x",)
    assert new.forward.ctx_name is None and new.uses_setup_context
    assert new.forward_inputs().names == ("x", "y") and new.forward_inputs().setup_context_style
    assert new.backward.name == "vjp"


def test_varargs_and_keyword_only_are_reported():
    functions = model(
        """
        import torch
        class V(torch.autograd.Function):
            @staticmethod
            def forward(ctx, *args):
                return args[0]
        class K(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, *, flag):
                return x
        """
    )
    assert functions.by_name("V").forward_inputs().has_varargs
    assert functions.by_name("K").forward_inputs().has_keyword_only


def test_apply_call_sites_including_aliases_and_cls_apply():
    module = ParsedModule(
        textwrap.dedent(
            """
            import torch
            class Scale(torch.autograd.Function):
                @staticmethod
                def forward(ctx, x, s=1.0):
                    return x * s
                @staticmethod
                def backward(ctx, g):
                    return g, None
                @classmethod
                def run(cls, x):
                    return cls.apply(x, 2.0)
            scale = Scale.apply
            def f(x):
                return Scale.apply(x) + scale(x, 3.0)
            """
        ),
        "m.py",
    )
    calls = function_model(module).by_name("Scale").apply_calls
    assert sorted(len(c.args) for c in calls) == [1, 2, 2]
    assert sorted(module.position(c).start.line for c in calls) == [12, 15, 15]


def _reachable(source: str) -> dict[str, bool]:
    return {c.name: c.backward_reachable for c in model(source)}


@pytest.mark.parametrize(
    "forward_body, reachable",
    [
        ("idx = x.argsort(dim=-1)\n        return idx", False),  # an index-producing op
        ("idx = x.new_zeros(x.shape, dtype=torch.int32)\n        return idx.transpose(0, 1).contiguous()", False),
        ("return (x > 0).nonzero()[:, 0], x.long()", False),
        ("y = x * 2\n        ctx.mark_non_differentiable(y)\n        return y", False),
        (
            "keep = kernels.nms(x)\n        keep = keep[:10]\n        return order[keep]",
            False,
        ),  # used to index: integer
        ("return x.topk(3).values, x.topk(3).indices", True),  # the values output is float
        ("_, idx = x.topk(3)\n        return idx", False),  # the index half of a (values, indices) pair
        ("values, idx = torch.max(x, 1)\n        return values, idx", True),
        ("return x.sort(dim=-1).indices[..., :2]", False),
        ("idx = x.argmax(-1)\n        return idx, x * 2", True),
        ("return kernels.nms(x)", True),  # nothing says the extension's result is an integer tensor
        ("return x.to(torch.float16)", True),
        ("idx = x.argmax(-1)\n        return idx.to(x.device)", False),
        ("idx = x.argmax(-1)\n        return idx.to(x.device, torch.float32)", True),
        ("idx = x.argmax(-1)\n        return idx.to(x)", True),  # takes x's dtype
    ],
)
def test_backward_is_unreachable_when_no_output_can_require_grad(forward_body, reachable):
    body = "\n".join("        " + line.strip() for line in forward_body.splitlines())
    source = (
        "import torch\n"
        "class Op(torch.autograd.Function):\n"
        "    @staticmethod\n"
        "    def forward(ctx, x):\n"
        "        order = x.argsort()\n"
        f"{body}\n"
        "    @staticmethod\n"
        "    def backward(ctx, *grads):\n"
        "        return None\n"
    )
    assert _reachable(source) == {"Op": reachable}


def test_export_only_and_namespace_classes_have_no_reachable_backward():
    functions = model(
        """
        import torch
        from torch.autograd import Function
        class Export(Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2
            @staticmethod
            def symbolic(g, x):
                return g.op("custom::Double", x)
        class Kernels(Function):
            @staticmethod
            def forward(a, b):
                return a @ b
        class Base(Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2
        class Child(Base):
            @staticmethod
            def forward(ctx, x):
                return Base.forward(ctx, x) + 1
            @staticmethod
            def backward(ctx, g):
                return g * 2
        matmul = Kernels.forward
        def run(x):
            return Export.apply(x) + Child.apply(x)
        """
    )
    export, kernels, base, child = functions.classes
    assert export.export_only and not export.backward_reachable
    assert kernels.used_as_namespace and not kernels.backward_reachable
    assert not base.used_as_namespace and base.backward_reachable  # applied through its subclass
    assert child.backward_reachable


def test_partial_and_local_aliases_of_apply_are_application_sites():
    module = ParsedModule(
        textwrap.dedent(
            """
            import functools
            import torch.autograd as ag
            class Quant(ag.Function):
                @staticmethod
                def forward(ctx, bits, x, scale=None):
                    return x
                @staticmethod
                def backward(ctx, g):
                    return None, g, None
            int8 = functools.partial(Quant.apply, 8)
            def f(x, s):
                apply = Quant.apply
                return int8(x, s) + apply(4, x) + functools.partial(Quant.apply, 2)(x)
            """
        ),
        "m.py",
    )
    quant = function_model(module).by_name("Quant")
    sites = sorted(len(args) for _, args in quant.apply_sites())
    assert sites == [2, 2, 3]
    assert [len(call.args) for call in quant.apply_calls] == [2]
    assert quant.backward_reachable and not quant.used_as_namespace


def test_wrapper_calls_map_keyword_and_default_arguments_to_apply_positions():
    module = ParsedModule(
        textwrap.dedent(
            """
            import torch
            class Query(torch.autograd.Function):
                @staticmethod
                def forward(ctx, k, xyz, center=None, transposed=False):
                    return xyz
            def knn(k, xyz, center=None, transposed=False):
                return Query.apply(k, xyz, center, transposed)
            def group(points, centers):
                return knn(16, points, transposed=True), knn(8, points, centers)
            """
        ),
        "m.py",
    )
    first, second = function_model(module).by_name("Query").wrapper_calls

    def code(expr):
        return None if expr is None else module.tree.code_for_node(expr)

    assert [code(first.argument(i)) for i in range(4)] == ["16", "points", "None", "True"]
    assert [code(second.argument(i)) for i in range(4)] == ["8", "points", "centers", "False"]
    assert first.argument(4) is None


def test_stored_instances_called_later_are_instance_calls():
    functions = model(
        """
        import torch
        class Sign(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.sign()
        class Layer(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.binarize = Sign()
            def forward(self, x):
                return self.binarize(x)
        class Other(torch.nn.Module):
            def forward(self, x):
                return self.binarize(x)  # another class's attribute of the same name
        def run(x):
            op = Sign()
            return op(x)
        """
    )
    sign = functions.by_name("Sign")
    assert [code_line(functions, call) for call, _ in sign.stored_instance_calls] == [12, 18]
    assert sign.applied_here and not sign.used_as_namespace


def code_line(functions, node) -> int:
    return functions.module.position(node).start.line


def test_attribute_aliases_and_checkpointed_apply_are_application_sites():
    functions = model(
        """
        import torch
        from torch.utils.checkpoint import checkpoint
        class Mul(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w, scale=1.0):
                return x * w * scale
        class Block(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.mul = Mul.apply
            def forward(self, x, w):
                return self.mul(x, w) + checkpoint(Mul.apply, x, w, 2.0, use_reentrant=False)
        """
    )
    mul = functions.by_name("Mul")
    assert [len(args) for _, args in mul.apply_sites()] == [2, 3]

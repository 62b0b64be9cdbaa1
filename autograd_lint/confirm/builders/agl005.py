"""The confirm harness of AGL005 legacy-function-api; its recipe is runtime/agl005.py."""

from __future__ import annotations

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...core.syntax import code_of
from ...facts.function_model import FunctionClass
from ...rules.agl005_legacy_function_api import LegacyUse
from ..harness import Harness, apply_builders, finding_subject, function_class_code, literal_call_arguments

EVIDENCE = r"Legacy autograd function with non-static forward method is deprecated|object has no attribute '\w+'|You must implement either the backward or vjp method|constructor arguments are ignored"


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Replays the flagged shape with float64 leaf tensors: the instance call, `Fn(a).apply(x)`
    against `Fn(b).apply(x)`, `.apply` reading the instance's attribute, or backward through a
    Function without one (see confirm/runtime/agl005.py)."""
    use = finding_subject(finding, LegacyUse)
    function_class = use.function_class
    required, optional, definition = function_class_code(module, function_class)
    init_args = use.init_args
    if init_args is None:
        init_args = literal_call_arguments(module, function_class.name)
    if init_args is None:
        init_args = _literal_init_defaults(function_class)
    name = function_class.name
    alternative = _perturbed(init_args)
    main = "\n".join(
        [
            definition,
            apply_builders(module, function_class),
            f"_agl_recipe.check_legacy_api({name}, {use.kind!r}, lambda: {name}({init_args}), {init_args!r}, "
            f"{'lambda: ' + name + '(' + alternative + ')' if alternative else 'None'}, {alternative!r}, "
            f"{use.attribute!r}, _agl_builders)",
        ]
    )
    return Harness(required, main, optional)


def _literal_init_defaults(function_class: FunctionClass) -> str:
    """`__init__`'s parameters as literals: their defaults, 0.5 for the others (a hyperparameter)."""
    init = function_class.method("__init__")
    if init is None:
        return ""
    values = []
    for param in init.params[1:]:
        values.append(code_of(param.default).strip() if param.default is not None else "0.5")
    return ", ".join(values)


def _perturbed(arguments: str) -> str | None:
    """The same arguments with every number changed (x -> 2x + 1); None if none is a number."""
    import ast

    try:
        tree = ast.parse(f"f({arguments})", mode="eval")
    except SyntaxError:
        return None
    changed = False

    class Perturb(ast.NodeTransformer):
        def visit_Constant(self, node):
            nonlocal changed
            if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
                changed = True
                return ast.copy_location(ast.Constant(node.value * 2 + 1), node)
            return node

    new = Perturb().visit(tree)
    return ast.unparse(new)[2:-1] if changed else None

"""The confirm harness of AGL004 non-differentiable-activation; its recipe is runtime/agl004.py."""

from __future__ import annotations

import libcst as cst

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...core.syntax import code_of
from ...rules.agl004_non_differentiable_activation import _operand
from ..harness import CannotBuildHarness, Harness, finding_subject, literal_call_arguments, literal_defaults

EVIDENCE = r"graph cut|blocks the gradient|backward .* raised|grad is None|grad is zero"


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Run the activation (or the module's forward) on a probe with one backward, then again
    with a straight-through estimator at the flagged op: a graph cut, backward raising, or
    gradients that only the estimator lets through prove the op blocks them."""
    function = finding_subject(finding, cst.FunctionDef)
    parent = module.parents.get(function)
    owner = module.parents.get(parent) if parent is not None else None
    name = function.name.value
    top_level = owner if isinstance(owner, cst.ClassDef) else function
    if module.parents.get(top_level) is not module.tree:
        raise CannotBuildHarness(
            f"`{name}` is nested inside another function; the harness copies only top-level definitions"
        )
    patched = _straight_through_source(module, top_level, finding.node)
    if not isinstance(owner, cst.ClassDef):  # top_level is function
        defaults = literal_call_arguments(module, name)
        extra = defaults.split(", ")[1:] if defaults else literal_defaults(function, skip=1)
        arguments = ", ".join(["_agl_input", *extra])
        make = f"lambda namespace: (lambda _agl_input: namespace[{name!r}]({arguments}), None, None)"
        shown = f"{name}()"
    else:
        extra_inputs = len(function.params.params) - 2 - len(literal_defaults(function, skip=2, required_ok=True))
        literal_arguments = literal_call_arguments(module, owner.name.value)
        arguments = literal_arguments if literal_arguments is not None else _layer_arguments(module, owner)
        make = f"lambda namespace: _agl_recipe.module_call(namespace[{owner.name.value!r}]({arguments}), {name!r}, {extra_inputs})"
        shown = f"{owner.name.value}.{name}()"
    main = "\n".join(
        [
            f"_agl_patched_source = {patched!r}",
            f"_agl_recipe.compare_with_straight_through({make}, globals(), _agl_patched_source, {shown!r}, {' '.join(code_of(finding.node).split())[:60]!r})",
        ]
    )
    return Harness({top_level.name.value}, main)


def _straight_through_source(module: ParsedModule, statement: cst.CSTNode, source: cst.CSTNode) -> str | None:
    """`statement`'s code with the flagged op wrapped in a straight-through estimator of its operand."""
    operand = _operand(source)
    if operand is None or not isinstance(source, cst.BaseExpression):
        return None
    wrapped = cst.parse_expression("_agl_recipe.straight_through(__q__, __x__)")
    replacement = wrapped.with_changes(args=[cst.Arg(source), cst.Arg(operand)])

    class Replace(cst.CSTTransformer):
        def on_leave(self, original, updated):
            return replacement if original is source else updated

    patched = statement.visit(Replace())
    return code_of(patched) if isinstance(patched, cst.CSTNode) else None


def _layer_arguments(module: ParsedModule, owner: cst.ClassDef) -> str:
    """Constructor arguments for a class built on a torch layer that nothing in the module builds
    with literals: small sizes that fit `module_inputs` in runtime/agl004.py."""
    for base in owner.bases:
        qualified = module.qualified_name(base.value) or ""
        if qualified.endswith(("Conv1d", "Conv2d", "Conv3d")):
            return "3, 4, 3"
        if qualified.endswith("Linear"):
            return "8, 4"
    return ""

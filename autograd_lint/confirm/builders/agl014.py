"""The confirm harness of AGL014 tensors-in-containers; its recipe is runtime/agl014.py."""

from __future__ import annotations

import libcst as cst

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...rules.agl014_tensors_in_containers import ContainerCase
from ..harness import (
    CannotBuildHarness,
    Harness,
    finding_subject,
    function_class_code,
    literal_binding,
    literal_source,
    recipe_harness,
)

EVIDENCE = (
    r"requires_grad=False .*element 0 of tensors does not require grad|output has requires_grad=False|have \.grad None"
)


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Run the Function on leaf tensors that require grad and look at what autograd tracked: the
    tensors in the returned container (requires_grad, then backward from one of them), or the
    tensors passed inside the container (the output's requires_grad, then their .grad)."""
    case = finding_subject(finding, ContainerCase)
    function_class = case.function_class
    if case.call is None:
        return recipe_harness(
            module, function_class, f"_agl_recipe.check_container_output({function_class.name}.apply, _agl_builders)"
        )
    required, optional, definition = function_class_code(module, function_class)
    label, count, build = _container_call_builder(module, case, case.call)
    main = f"_agl_recipe.check_container_input({function_class.name}.apply, {label!r}, {count}, {build})"
    return Harness(required, definition + "\n" + main, optional)


def _argument_literal(
    module: ParsedModule, case: ContainerCase, call: cst.Call, index: int, arg: cst.Arg
) -> str | None:
    """The literal an argument stands for: as written, the caller's literal binding of the name
    (`def fuse(levels, dim=1)`), or forward's default for that parameter."""
    literal = literal_source(arg.value)
    caller = module.enclosing_function(call)
    if literal is None and isinstance(arg.value, cst.Name) and caller is not None:
        literal = literal_binding(caller, arg.value.value)
    forward = case.function_class.forward
    if literal is None and arg.keyword is None and forward is not None:
        params = forward.data_params
        if index < len(params) and params[index].default is not None:
            literal = literal_source(params[index].default)
    return literal


def _container_call_builder(module: ParsedModule, case: ContainerCase, call: cst.Call) -> tuple[str, int, str]:
    """(label, number of inner tensors, `lambda shape, inner: (args, kwargs)`) for the flagged call:
    leaf tensors inside the container, the other arguments as written when they are literals, else
    leaf tensors."""
    args, kwargs, shown = [], [], []
    count, container_code, container_shown = _container_code(case.container)
    for index, arg in enumerate(call.args):
        key = index if arg.keyword is None else arg.keyword.value
        if key == case.position:
            code, text = container_code, container_shown
        else:
            literal = _argument_literal(module, case, call, index, arg)
            code, text = (
                (literal, literal) if literal is not None else (f"_agl_probes.leaf_tensor(shape, {index})", "<tensor>")
            )
        if arg.keyword is None:
            args.append(code)
            shown.append(text)
        else:
            kwargs.append(f"{arg.keyword.value!r}: {code}")
            shown.append(f"{arg.keyword.value}={text}")
    label = f"{case.function_class.name}.apply({', '.join(shown)})"
    return label, count, f"lambda shape, inner: ([{', '.join(args)}], {{{', '.join(kwargs)}}})"


def _container_code(container: cst.BaseExpression) -> tuple[int, str, str]:
    """(tensor count, code building the container from `inner`, how it is shown)."""
    if isinstance(container, cst.Dict):
        keys = [literal_source(e.key) if isinstance(e, cst.DictElement) else None for e in container.elements]
        if None in keys:
            raise CannotBuildHarness("the dict passed to apply has keys the harness cannot rebuild")
        items = ", ".join(f"{k}: inner[{i}]" for i, k in enumerate(keys))
        return len(keys), "{" + items + "}", "{" + ", ".join(f"{k}: <tensor>" for k in keys) + "}"
    if isinstance(container, (cst.List, cst.Tuple)) and not any(
        isinstance(e, cst.StarredElement) for e in container.elements
    ):
        count = len(container.elements)
    else:
        count = 2  # a comprehension: two tensors stand for its elements
    items = ", ".join(f"inner[{i}]" for i in range(count))
    shown = ", ".join(["<tensor>"] * count)
    if isinstance(container, cst.Tuple):
        return count, f"({items},)", f"({shown})"
    return count, f"[{items}]", f"[{shown}]"

"""AGL007 tensor-on-ctx: tensors kept as `ctx.name = tensor` instead of `ctx.save_for_backward`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import libcst as cst

from ..confirm.harness import Harness, recipe_harness
from ..diagnostic import Severity
from ..function_model import FunctionClass, Method
from ..module import ParsedModule
from ..rule import Finding, FunctionRule
from ..syntax import code_of, walk
from ..value_kinds import NON_TENSOR, NONE, TENSOR, ValueKinds

INPUT, OUTPUT, INTERMEDIATE = "input", "output", "intermediate"


@dataclass(frozen=True)
class CtxTensor:
    function_class: FunctionClass
    method: Method
    attribute: str
    role: str  # INPUT, OUTPUT or INTERMEDIATE
    value: str  # the stored expression's source


class TensorOnCtx(FunctionRule):
    code = "AGL007"
    name = "tensor-on-ctx"
    severity = Severity.WARNING
    summary = "a tensor is stored as ctx.name = ... instead of with save_for_backward"

    def check(self, module: ParsedModule) -> Iterator[Finding]:
        for function_class in module.functions:
            for method in function_class.saving_methods():
                kinds: ValueKinds | None = None
                for target, value in _ctx_assignments(method):
                    if kinds is None:
                        kinds = ValueKinds(function_class, method, module)
                    role = _role(kinds, method, value)
                    if role is not None:
                        subject = CtxTensor(function_class, method, target.attr.value, role, " ".join(code_of(value).split()))
                        yield Finding(target, _message(method, subject), subject=subject)

    def confirm_harness(self, module: ParsedModule, finding: Finding) -> Harness:
        """Three measurements, the first that shows the harm wins: the output on ctx keeps grad_fn alive
        after `del out` with gc disabled (a reference cycle); an input changed in place after apply
        changes the gradients without an error; the tensor is still held by grad_fn after backward."""
        stored: CtxTensor = finding.subject
        name = stored.function_class.name
        call = f"_agl_ctx_tensor_recipe({name}.apply, _agl_builders, {stored.attribute!r}, {stored.role!r})"
        return recipe_harness(module, stored.function_class, call)


def _ctx_assignments(method: Method) -> Iterator[tuple[cst.Attribute, cst.BaseExpression]]:
    """(`ctx.name` target, assigned value) pairs, element-wise for `ctx.a, ctx.b = a, b`."""
    ctx = method.ctx_name
    for node in walk(method.node.body, into_functions=False):
        if isinstance(node, cst.Assign):
            pairs = [(t.target, node.value) for t in node.targets]
        elif isinstance(node, cst.AnnAssign) and node.value is not None:
            pairs = [(node.target, node.value)]
        else:
            continue
        for target, value in pairs:
            if isinstance(target, (cst.Tuple, cst.List)) and isinstance(value, (cst.Tuple, cst.List)) and len(target.elements) == len(value.elements):
                pairs.extend((t.value, v.value) for t, v in zip(target.elements, value.elements) if not isinstance(t, cst.StarredElement))
            elif isinstance(target, cst.Attribute) and isinstance(target.value, cst.Name) and target.value.value == ctx:
                yield target, value


def _role(kinds: ValueKinds, method: Method, value: cst.BaseExpression) -> str | None:
    """INPUT, OUTPUT or INTERMEDIATE when the stored value is surely a tensor, else None. A tuple
    or list takes the role of its first tensor element."""
    if isinstance(value, (cst.Tuple, cst.List)):
        for element in value.elements:
            if not isinstance(element, cst.StarredElement):
                role = _role(kinds, method, element.value)
                if role is not None:
                    return role
        return None
    kind = kinds.kind(value)
    if kind in (NON_TENSOR, NONE):
        return None
    if isinstance(value, cst.Name):
        name = value.value
        if name in kinds.output_names and (kind is TENSOR or kinds.is_whole_output(name)):
            return OUTPUT
        if name in kinds.parameter_kinds and kinds.is_unchanged_input(name):
            return INPUT if kind is TENSOR else None
    if kinds.input_index(value) is not None:  # setup_context's `inputs[i]`
        return INPUT if kind is TENSOR else None
    return INTERMEDIATE if kind is TENSOR else None


def _message(method: Method, stored: CtxTensor) -> str:
    ctx = method.ctx_name
    target = f"{ctx}.{stored.attribute}"
    fix = f"use {ctx}.save_for_backward(...) and read it back from {ctx}.saved_tensors"
    if stored.role == OUTPUT:
        return (
            f"`{target}` keeps forward's output on ctx: output -> grad_fn -> ctx -> output is a reference "
            f"cycle that only Python's cyclic garbage collector frees, so memory grows between collections, "
            f"and in-place changes to the output go unchecked; {fix}"
        )
    if stored.role == INPUT:
        return (
            f"`{target}` keeps the input tensor `{stored.value}` on ctx: if the caller changes it in place after "
            f"apply, backward silently uses the new values where save_for_backward would raise, and the tensor "
            f"outlives backward; {fix}"
        )
    return (
        f"`{target}` keeps a tensor computed in forward on ctx: it stays alive with the graph even after "
        f"backward, is not version-checked (a view of an input changes with it) and bypasses saved-tensor "
        f"hooks; {fix}, or recompute it in backward"
    )

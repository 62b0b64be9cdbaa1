"""AGL012 save-for-backward-non-tensor: save_for_backward accepts only tensors (and None)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import libcst as cst

from ..confirm.harness import Harness, recipe_harness
from ..diagnostic import Severity
from ..function_model import FunctionClass
from ..module import ParsedModule
from ..rule import Finding, FunctionRule
from ..syntax import code_of
from ..value_kinds import NON_TENSOR, ValueKinds, annotation_kind


@dataclass(frozen=True)
class NonTensorSave:
    function_class: FunctionClass
    call: cst.Call
    argument: cst.BaseExpression
    position: int | None  # among the call's arguments; None after a starred one


class SaveForBackwardNonTensor(FunctionRule):
    code = "AGL012"
    name = "save-for-backward-non-tensor"
    severity = Severity.ERROR
    summary = "save_for_backward is given an int, float, shape, list or other non-tensor"

    def check(self, module: ParsedModule) -> Iterator[Finding]:
        for function_class in module.functions:
            for method in function_class.saving_methods():
                if not method.save_calls:
                    continue
                kinds = ValueKinds(function_class, method, module)
                for call in method.save_calls:
                    for index, arg in enumerate(call.args):
                        if arg.keyword is not None:
                            continue
                        if arg.star:
                            if not kinds.is_shape(arg.value):
                                continue  # `*tensors`: whatever the sequence holds
                        elif kinds.kind(arg.value) is not NON_TENSOR:
                            continue
                        position = None if any(a.star for a in call.args[:index]) else index
                        subject = NonTensorSave(function_class, call, arg.value, position)
                        yield Finding(arg.value, _message(kinds, arg, subject), subject=subject)

    def confirm_harness(self, module: ParsedModule, finding: Finding) -> Harness:
        """Apply with float64 inputs that require grad, grad mode on: torch's own TypeError."""
        function_class = finding.subject.function_class
        return recipe_harness(module, function_class, f"_agl_save_non_tensor_recipe({function_class.name}.apply, _agl_builders)")


def _type_of(kinds: ValueKinds, expr: cst.BaseExpression) -> str:
    """How torch will name the argument's type, when the source tells."""
    if isinstance(expr, cst.Integer) or (isinstance(expr, cst.UnaryOperation) and isinstance(expr.expression, cst.Integer)):
        return "int"
    if isinstance(expr, cst.Float) or (isinstance(expr, cst.UnaryOperation) and isinstance(expr.expression, cst.Float)):
        return "float"
    if isinstance(expr, (cst.List, cst.ListComp)):
        return "list"
    if isinstance(expr, cst.Tuple):
        return "tuple"
    if isinstance(expr, cst.BaseString):
        return "str"
    if isinstance(expr, cst.Name) and expr.value in ("True", "False"):
        return "bool"
    if kinds.is_shape(expr):
        return "int" if isinstance(expr, cst.Call) and expr.args else "torch.Size"  # `x.size(0)`
    if isinstance(expr, cst.Call):
        func = expr.func
        method = func.attr.value if isinstance(func, cst.Attribute) else func.value if isinstance(func, cst.Name) else ""
        return {"item": "float", "tolist": "list", "dim": "int", "numel": "int", "len": "int", "int": "int", "float": "float"}.get(method, "a non-tensor")
    if isinstance(expr, cst.BinaryOperation):
        sides = {_type_of(kinds, expr.left), _type_of(kinds, expr.right)}
        if isinstance(expr.operator, cst.Divide) or "float" in sides:
            return "float"
        return "int" if sides == {"int"} else "a non-tensor"
    index = kinds.input_index(expr)
    forward = kinds.function_class.forward
    if index is not None and forward is not None and index < len(forward.data_params):  # setup_context's `inputs[i]`
        passed = {_type_of(kinds, value) for value in _passed(kinds.function_class, index, forward.data_params[index])}
        return passed.pop() if len(passed) == 1 else "a non-tensor"
    if isinstance(expr, cst.Name):
        bound = kinds.bindings.get(expr.value, [])
        if len(bound) == 1 and isinstance(bound[0], cst.Assign) and isinstance(bound[0].targets[0].target, cst.Name):
            return _type_of(kinds, bound[0].value)
        params = [p.name.value for p in kinds.method.data_params]
        if expr.value in params:
            param = kinds.method.data_params[params.index(expr.value)]
            if annotation_kind(param.annotation) is NON_TENSOR:
                return code_of(param.annotation.annotation).strip()
            passed = {_type_of(kinds, value) for value in _passed(kinds.function_class, params.index(expr.value), param)}
            if len(passed) == 1:
                return passed.pop()
    return "a non-tensor"


def _passed(function_class: FunctionClass, index: int, param: cst.Param) -> list[cst.BaseExpression]:
    """What each `.apply(...)` call passes at this position (the default where it passes nothing)."""
    found = []
    for call in function_class.apply_calls:
        positional = [a.value for a in call.args if a.keyword is None and not a.star]
        keyword = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
        value = positional[index] if index < len(positional) else keyword.get(param.name.value, param.default)
        if value is not None:
            found.append(value)
    return found


def _message(kinds: ValueKinds, arg: cst.Arg, subject: NonTensorSave) -> str:
    shown = " ".join(code_of(arg.value).split())
    type_name = "int" if arg.star else _type_of(kinds, arg.value)
    given = f"`*{shown}`, whose elements are ints" if arg.star else f"`{shown}`, which is {_article(type_name)}"
    position = subject.position if subject.position is not None else "i"
    torch_type = type_name if type_name in ("int", "float", "list", "tuple", "str", "bool", "torch.Size") else "<type>"
    return (
        f"save_for_backward is given {given}, not a tensor: "
        f"as soon as an input requires grad torch raises 'save_for_backward can only save variables, but argument "
        f"{position} is of type {torch_type}' (inference with no_grad hides it); keep non-tensors on ctx "
        "(`ctx.k = k`) and save only tensors"
    )


def _article(type_name: str) -> str:
    if type_name.startswith("a "):
        return type_name
    return ("an " if type_name[0] in "aeiou" else "a ") + type_name

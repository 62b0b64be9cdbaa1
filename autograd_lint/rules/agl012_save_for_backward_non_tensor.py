"""AGL012 save-for-backward-non-tensor: save_for_backward accepts only tensors (and None)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.rule import Finding
from ..core.scopes import bindings
from ..core.syntax import code_of, dotted_name, short_code, shortened, walk
from ..facts.function_model import FunctionClass, Method, function_model, is_save_call
from ..facts.value_kinds import NON_TENSOR, CallerKinds, ValueKinds, annotation_kind
from .base import FunctionClassRule


@dataclass(frozen=True)
class NonTensorSave:
    function_class: FunctionClass
    call: cst.Call
    argument: cst.BaseExpression
    position: int | None  # among the call's arguments; None after a starred one


class SaveForBackwardNonTensor(FunctionClassRule[NonTensorSave]):
    code = "AGL012"
    name = "save-for-backward-non-tensor"
    severity = Severity.ERROR
    summary = "save_for_backward is given an int, float, shape, list or other non-tensor"

    def check_class(self, function_class: FunctionClass, module: ParsedModule) -> Iterator[Finding[NonTensorSave]]:
        for method in function_class.saving_methods():
            kinds: ValueKinds | None = None
            for call, arguments, helper in _saved_arguments(module, method):
                kinds = kinds or ValueKinds(function_class, method, module)
                for position, arg, star in arguments:
                    extra = None
                    if star:
                        extra = _varargs_non_tensor(module, method, arg)
                        if not kinds.is_shape(arg) and extra is None:
                            continue  # `*tensors`: whatever the sequence holds
                    elif kinds.kind(arg) is not NON_TENSOR or _kind_tested(module, method, call, arg):
                        continue
                    subject = NonTensorSave(function_class, call, arg, position)
                    yield Finding(arg, *_message(kinds, arg, star, subject, extra, helper), subject=subject)


Saved = tuple[int | None, cst.BaseExpression, bool]  # (position among the saved, forward's expression, starred)


def _saved_arguments(module: ParsedModule, method: Method) -> Iterator[tuple[cst.Call, list[Saved], str | None]]:
    """Each save in `method` with what it saves, as forward's own expressions, and the helper it is in: `ctx.save_for_backward(...)`,
    through a local alias (`save = ctx.save_for_backward`), or in a function of the module that forward
    hands ctx to (one level deep: `_save(ctx, x, n)`, its parameters mapped to forward's arguments)."""
    ctx = method.ctx_name
    aliases = _save_aliases(method.node, ctx)
    for node in walk(method.node.body, into_functions=False):
        if isinstance(node, cst.Call) and (
            is_save_call(node, ctx) or (isinstance(node.func, cst.Name) and node.func.value in aliases)
        ):
            yield node, _expand(method, node.args, {}), None
    for call, helper in function_model(module).called_functions(method):
        passed = _bind(call, helper)
        helper_ctx = next(
            (name for name, value in passed.items() if isinstance(value, cst.Name) and value.value == ctx), None
        )
        if helper_ctx is None:
            continue
        helper_aliases = _save_aliases(helper, helper_ctx)
        for node in walk(helper.body, into_functions=False):
            if isinstance(node, cst.Call) and (
                is_save_call(node, helper_ctx)
                or (isinstance(node.func, cst.Name) and node.func.value in helper_aliases)
            ):
                yield call, _expand(method, node.args, passed), helper.name.value


def _varargs_non_tensor(
    module: ParsedModule, method: Method, arg: cst.BaseExpression
) -> tuple[cst.Call, cst.BaseExpression, int] | None:
    """For `*args` of forward's own `*args` parameter: a call site and the non-tensor it passes there
    (`Fn.apply(x, 3)` to `forward(ctx, x, *args)`)."""
    star = method.node.params.star_arg
    if (
        method.name != "forward"
        or not isinstance(star, cst.Param)
        or not isinstance(arg, cst.Name)
        or arg.value != star.name.value
    ):
        return None
    caller = CallerKinds(module)
    count = len(method.data_params)
    for call in method.owner.apply_calls:
        if any(a.star for a in call.args):
            continue
        for index, extra in enumerate([a.value for a in call.args if a.keyword is None][count:]):
            if caller.kind(extra, call) is NON_TENSOR:
                return call, extra, index
    return None


def _save_aliases(function: cst.FunctionDef, ctx: str | None) -> set[str]:
    """Local names bound to `ctx.save_for_backward`."""
    found = set()
    for node in walk(function.body, into_functions=False):
        if isinstance(node, cst.Assign) and len(node.targets) == 1 and isinstance(node.targets[0].target, cst.Name):
            value = node.value
            if (
                isinstance(value, cst.Attribute)
                and value.attr.value == "save_for_backward"
                and isinstance(value.value, cst.Name)
                and value.value.value == ctx
            ):
                found.add(node.targets[0].target.value)
    return found


def _bind(call: cst.Call, helper: cst.FunctionDef) -> dict[str, object]:
    """Helper parameter name -> forward's argument expression (a list of them for `*args`)."""
    params = list(helper.params.params)
    if params and params[0].name.value in ("self", "cls") and isinstance(call.func, cst.Attribute):
        params = params[1:]
    bound: dict[str, object] = {}
    positional = [a for a in call.args if a.keyword is None]
    if any(a.star for a in positional):
        return bound
    for param, arg in zip(params, positional):
        bound[param.name.value] = arg.value
    star = helper.params.star_arg
    if isinstance(star, cst.Param):
        bound[star.name.value] = [a.value for a in positional[len(params) :]]
    for arg in call.args:
        if arg.keyword is not None:
            bound[arg.keyword.value] = arg.value
    return bound


def _expand(method: Method, args, passed: dict[str, object]) -> list[Saved]:
    """The saved expressions, with `*seq` opened where seq is a display or a local bound once to one
    (`saved = (x, n)`), and a helper's parameters replaced by what forward passed."""
    found: list[tuple[int | None, object, bool]] = []  # a substituted value may be a display's element list
    position: int | None = 0
    local = bindings(method.node)
    for arg in args:
        if arg.keyword is not None:
            continue
        value = arg.value
        if arg.star == "*":
            elements = _display_elements(value, local, passed)
            if elements is None:
                found.append((position, _substitute(value, passed), True))  # where its first element lands
                position = None
                continue
            for element in elements:
                found.append((position, element, False))
                position = None if position is None else position + 1
            continue
        if arg.star:
            continue
        found.append((position, _substitute(value, passed), False))
        position = None if position is None else position + 1
    return [(p, v, star) for p, v, star in found if isinstance(v, cst.BaseExpression)]


def _display_elements(value: cst.BaseExpression, local, passed: dict[str, object]) -> list | None:
    if isinstance(value, cst.Name) and isinstance(elements := passed.get(value.value), list):
        return elements
    if isinstance(value, cst.Name) and not passed:
        nodes = local.get(value.value, [])
        if len(nodes) == 1 and isinstance(nodes[0], cst.Assign) and len(nodes[0].targets) == 1:
            value = nodes[0].value
    if isinstance(value, (cst.Tuple, cst.List)) and not any(isinstance(e, cst.StarredElement) for e in value.elements):
        return [_substitute(e.value, passed) for e in value.elements]
    return None


def _substitute(value: cst.BaseExpression, passed: dict[str, object]) -> object:
    if passed and isinstance(value, cst.Name):
        return passed.get(value.value)  # None: the helper's own local, not judged
    return value


KIND_TESTS = ("isinstance", "is_tensor", "torch.is_tensor", "type")


def _kind_tested(module: ParsedModule, method: Method, call: cst.Call, arg: cst.BaseExpression) -> bool:
    """Whether the save sits under a test of the argument's kind (`if isinstance(off, int): ... else:
    ctx.save_for_backward(off)`, `if off is not None`): the code handles both kinds itself."""
    if not isinstance(arg, cst.Name):
        return False
    for ancestor in module.ancestors(call):
        if ancestor is method.node:
            return False
        if isinstance(ancestor, (cst.If, cst.IfExp)):
            for node in [ancestor.test, *walk(ancestor.test)]:
                if isinstance(node, cst.Call) and (dotted_name(node.func) or "") in KIND_TESTS:
                    if any(
                        isinstance(n, cst.Name) and n.value == arg.value
                        for n in walk(node.args[0].value if node.args else node)
                    ) or (
                        node.args and isinstance(node.args[0].value, cst.Name) and node.args[0].value.value == arg.value
                    ):
                        return True
                if (
                    isinstance(node, cst.Comparison)
                    and isinstance(node.left, cst.Name)
                    and node.left.value == arg.value
                ):
                    if any(isinstance(c.operator, (cst.Is, cst.IsNot)) for c in node.comparisons):
                        return True
    return False


def _type_of(kinds: ValueKinds, expr: cst.BaseExpression, depth: int = 0) -> str:
    """How torch will name the argument's type, when the source tells."""
    if depth > 4:
        return "a non-tensor"
    if isinstance(expr, cst.Integer) or (
        isinstance(expr, cst.UnaryOperation) and isinstance(expr.expression, cst.Integer)
    ):
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
        method = (
            func.attr.value if isinstance(func, cst.Attribute) else func.value if isinstance(func, cst.Name) else ""
        )
        known = {
            "item": "float",
            "tolist": "list",
            "dim": "int",
            "numel": "int",
            "len": "int",
            "int": "int",
            "float": "float",
        }.get(method)
        if known is not None:
            return known
        returned = _helper_returns(kinds, expr)
        types = {_type_of(kinds, value, depth + 1) for value in returned}
        return types.pop() if len(types) == 1 else "a non-tensor"
    if isinstance(expr, cst.BinaryOperation):
        sides = {_type_of(kinds, expr.left, depth + 1), _type_of(kinds, expr.right, depth + 1)}
        if isinstance(expr.operator, cst.Divide) or "float" in sides:
            return "float"
        return "int" if sides == {"int"} else "a non-tensor"
    index = kinds.input_index(expr)
    forward = kinds.function_class.forward
    if index is not None and forward is not None and index < len(forward.data_params):  # setup_context's `inputs[i]`
        return _passed_type(kinds, index, forward.data_params[index])
    if isinstance(expr, cst.Name):
        bound = kinds.bindings.get(expr.value, [])
        if len(bound) == 1 and isinstance(bound[0], cst.Assign) and isinstance(bound[0].targets[0].target, cst.Name):
            return _type_of(kinds, bound[0].value, depth + 1)
        if (
            len(bound) == 1
            and isinstance(bound[0], cst.Assign)
            and isinstance(bound[0].targets[0].target, (cst.Tuple, cst.List))
        ):
            return _element_type(kinds, bound[0].targets[0].target, expr.value, bound[0].value, depth)
        params = [p.name.value for p in kinds.method.data_params]
        if expr.value in params:
            param = kinds.method.data_params[params.index(expr.value)]
            passed = _passed_type(kinds, params.index(expr.value), param)
            if (
                passed == "a non-tensor"
                and param.annotation is not None
                and annotation_kind(param.annotation) is NON_TENSOR
            ):
                return code_of(param.annotation.annotation).strip()
            return passed
    return "a non-tensor"


def _element_type(
    kinds: ValueKinds, target: cst.Tuple | cst.List, name: str, value: cst.BaseExpression, depth: int
) -> str:
    """The type of `name` in `a, b = value`: an element of a display, of a shape slice, or of the
    tuples a module function returns."""
    names = [
        e.value.value if isinstance(e, cst.Element) and isinstance(e.value, cst.Name) else None for e in target.elements
    ]
    if name not in names:
        return "a non-tensor"
    position = names.index(name)
    if isinstance(value, cst.Subscript) and kinds.is_shape(value.value):
        return "int"
    forward = kinds.function_class.forward
    params = kinds.method.data_params
    if (
        kinds.method.name == "setup_context"
        and params
        and isinstance(value, cst.Name)
        and value.value == params[0].name.value
    ):
        if forward is not None and position < len(forward.data_params):  # `x, bits = inputs`
            return _passed_type(kinds, position, forward.data_params[position])
    candidates = (
        [value]
        if isinstance(value, (cst.Tuple, cst.List))
        else _helper_returns(kinds, value)
        if isinstance(value, cst.Call)
        else []
    )
    types = {
        _type_of(kinds, c.elements[position].value, depth + 1)
        for c in candidates
        if isinstance(c, (cst.Tuple, cst.List)) and len(c.elements) == len(names)
    }
    return types.pop() if len(types) == 1 and len(candidates) > 0 else "a non-tensor"


def _helper_returns(kinds: ValueKinds, call: cst.Call) -> list[cst.BaseExpression]:
    """What a module function forward calls returns (one level deep)."""
    if kinds.module is None:
        return []
    for site, helper in function_model(kinds.module).called_functions(kinds.method):
        if site is call:
            return [
                n.value
                for n in walk(helper.body, into_functions=False)
                if isinstance(n, cst.Return) and n.value is not None
            ]
    return []


def _passed_type(kinds: ValueKinds, index: int, param: cst.Param) -> str:
    """The Python type every `.apply(...)` call passes at this position, folded in the caller's scope
    (the default where a call passes nothing)."""
    caller = CallerKinds(kinds.module) if kinds.module is not None else None
    types = set()
    for call in kinds.function_class.apply_calls:
        positional = [a.value for a in call.args if a.keyword is None and not a.star]
        keyword = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
        value = positional[index] if index < len(positional) else keyword.get(param.name.value)
        folded = caller.literal(value, call) if value is not None and caller is not None else None
        if value is None and param.default is not None:
            folded = code_of(param.default).strip()
        types.add(_literal_type(folded))
    if not kinds.function_class.apply_calls and param.default is not None:
        types.add(_literal_type(code_of(param.default).strip()))
    return types.pop() if len(types) == 1 else "a non-tensor"


def _literal_type(text: str | None) -> str:
    if text is None:
        return "a non-tensor"
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return "a non-tensor"
    return type(value).__name__ if isinstance(value, (int, float, bool, str, list, tuple)) else "a non-tensor"


def _message(
    kinds: ValueKinds,
    arg: cst.BaseExpression,
    star: bool,
    subject: NonTensorSave,
    extra=None,
    helper: str | None = None,
) -> tuple[str, str]:
    shown = " ".join(code_of(arg).split())
    type_name = "int" if star else _type_of(kinds, arg)
    given = f"`*{shown}`, whose elements are ints" if star else f"`{shown}`, which is {_article(type_name)}"
    given_briefly = f"`*{shortened(shown, 30)}` (ints)" if star else f"`{shortened(shown, 30)}` ({_article(type_name)})"
    position = subject.position if subject.position is not None else "i"
    if extra is not None:
        call, value, index = extra
        position = position + index if isinstance(position, int) else position
        type_name = (
            _literal_type(CallerKinds(kinds.module).literal(value, call))
            if kinds.module is not None
            else "a non-tensor"
        )
        given = f"`*{shown}`, which holds `{short_code(value, 40)}` from the call `{short_code(call, 60)}`"
        given_briefly = f"`*{shortened(shown, 20)}`, which holds `{short_code(value, 25)}` at a call"
    torch_type = type_name if type_name in ("int", "float", "list", "tuple", "str", "bool", "torch.Size") else "<type>"
    through = f" (through `{helper}(...)`)" if helper else ""
    return (
        f"save_for_backward{through} is given {given_briefly}, not a tensor",
        f"It is given {given}. "
        f"As soon as an input requires grad torch raises 'save_for_backward can only save variables, but argument "
        f"{position} is of type {torch_type}' (inference with no_grad hides it). Keep non-tensors on ctx "
        "(`ctx.k = k`) and save only tensors.",
    )


def _article(type_name: str) -> str:
    if type_name.startswith("a "):
        return type_name
    return ("an " if type_name[0] in "aeiou" else "a ") + type_name

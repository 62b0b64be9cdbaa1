"""AGL018 float-output-not-marked: forward returns a float mask or index next to its real output,
without `ctx.mark_non_differentiable`, and backward ignores the gradient it gets for it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.rule import Finding
from ..core.scopes import bindings
from ..core.syntax import code_of, dotted_name, normalized_code, shortened, walk
from ..facts.function_model import FunctionClass, Method, function_model
from ..torch_api import BOOL_RESULT_OPS, DTYPE_CASTS, FLOAT_CASTS, INDEX_RESULT_OPS, INTEGER_DTYPE_NAMES
from .base import FunctionClassRule


@dataclass(frozen=True)
class UnmarkedOutput:
    function_class: FunctionClass
    index: int
    total: int
    element: cst.BaseExpression
    origin: str  # "mask" or "index"


class FloatOutputNotMarked(FunctionClassRule[UnmarkedOutput]):
    code = "AGL018"
    name = "float-output-not-marked"
    severity = Severity.WARNING
    summary = (
        "forward returns a float mask or index without ctx.mark_non_differentiable, and backward ignores its gradient"
    )

    def check_class(self, function_class: FunctionClass, module: ParsedModule) -> Iterator[Finding[UnmarkedOutput]]:
        pair = function_class.checked_pair()
        if pair is None:
            return
        forward, backward = pair
        if forward.owner is not function_class:
            return
        if isinstance(backward.node.params.star_arg, cst.Param):
            return  # `backward(ctx, *grads)`: which grads it reads is not known
        yield from self._check_forward(module, function_class, forward, backward)

    def _check_forward(
        self, module: ParsedModule, function_class: FunctionClass, forward: Method, backward: Method
    ) -> Iterator[Finding]:
        marked = _marked(function_class, forward)
        if marked is None:
            return
        scope = bindings(forward.node)
        helpers = dict(function_model(module).called_functions(forward))
        grads = [p.name.value for p in backward.data_params]
        used = _used_names(backward)
        for node in walk(forward.node.body, into_functions=False):
            if not isinstance(node, cst.Return) or node.value is None:
                continue
            value = _resolve(scope, node.value)
            if (
                not isinstance(value, cst.Tuple)
                or len(value.elements) < 2
                or any(isinstance(e, cst.StarredElement) for e in value.elements)
            ):
                continue
            for index, element in enumerate(e.value for e in value.elements):
                if normalized_code(element) in marked or index >= len(grads) or grads[index] in used:
                    continue  # marked, or backward uses its gradient (a straight-through mask)
                origin = _float_constant_origin(scope, element, helpers=helpers)
                if origin is not None:
                    subject = UnmarkedOutput(function_class, index, len(value.elements), element, origin)
                    yield Finding(
                        element, *_message(subject, _marking_ctx(function_class), grads[index]), subject=subject
                    )


def _marking_ctx(function_class: FunctionClass) -> str:
    """The ctx name of the method where outputs are marked: forward's, or setup_context's."""
    method = function_class.method("setup_context" if function_class.uses_setup_context else "forward")
    return (method.ctx_name if method is not None else None) or "ctx"


def _marked(function_class: FunctionClass, forward: Method) -> set[str] | None:
    """Normalized source of everything forward passes to `ctx.mark_non_differentiable`; None when
    that cannot be known (`*outputs`, a helper given ctx, or a setup_context that marks outputs: it
    names them through `output`, not as forward wrote them)."""
    ctx = forward.ctx_name
    if ctx is None:
        setup = function_class.method("setup_context")
        if setup is None or setup.owner is not function_class or setup.ctx_name is None:
            return None
        if any(
            isinstance(node, cst.Name) and node.value == "mark_non_differentiable" for node in walk(setup.node.body)
        ):
            return None
        if any(
            isinstance(arg.value, cst.Name) and arg.value.value == setup.ctx_name
            for node in walk(setup.node.body)
            if isinstance(node, cst.Call)
            for arg in node.args
        ):
            return None  # `helper(ctx, ...)` may mark outputs itself
        return set()
    found: set[str] = set()
    for node in walk(forward.node.body, into_functions=False):
        if not isinstance(node, cst.Call):
            continue
        name = dotted_name(node.func) or ""
        if name == f"{ctx}.mark_non_differentiable":
            for arg in node.args:
                if arg.star:
                    return None
                found.add(normalized_code(arg.value))
        elif any(isinstance(arg.value, cst.Name) and arg.value.value == ctx for arg in node.args):
            return None  # `helper(ctx, ...)` may mark outputs itself
    return found


def _used_names(method: Method) -> set[str]:
    """Names a method's body reads, leaving out those only ever tested against None."""
    total: dict[str, int] = {}
    none_checks: dict[str, int] = {}
    for node in walk(method.node.body):
        if isinstance(node, cst.Name):
            total[node.value] = total.get(node.value, 0) + 1
        elif isinstance(node, cst.Comparison) and isinstance(node.left, cst.Name):
            if all(isinstance(c.operator, (cst.Is, cst.IsNot)) for c in node.comparisons):
                none_checks[node.left.value] = none_checks.get(node.left.value, 0) + 1
    return {name for name, count in total.items() if count > none_checks.get(name, 0)}


def _resolve(scope, expr: cst.BaseExpression) -> cst.BaseExpression:
    if isinstance(expr, cst.Name):
        values = scope.get(expr.value, [])
        if (
            len(values) == 1
            and isinstance(values[0], cst.Assign)
            and len(values[0].targets) == 1
            and isinstance(values[0].targets[0].target, cst.Name)
        ):
            return values[0].value
    return expr


def _float_constant_origin(scope, expr: cst.BaseExpression, depth: int = 3, helpers=None) -> str | None:
    """ "mask" or "index" for a floating tensor built from a comparison or an index op by a cast:
    `(x > 0).float()`, `x.argmax(-1).to(x.dtype)`, `torch.where(m, 1.0, 0.0)`, through local names and
    through a call of a function of this module (`helpers`: call -> definition) whose every return is one."""
    if isinstance(expr, cst.Name):
        values = scope.get(expr.value, [])
        if depth == 0 or len(values) != 1 or not isinstance(values[0], cst.Assign) or len(values[0].targets) != 1:
            return None
        if not isinstance(values[0].targets[0].target, cst.Name):
            return None
        return _float_constant_origin(scope, values[0].value, depth - 1, helpers)
    if helpers and isinstance(expr, cst.Call) and expr in helpers:
        return _returned_origin(helpers[expr])
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Multiply):
        # `(x > 0) * 1.0`: a bool mask times a float literal is a float 0/1 mask
        for mask, number in ((expr.left, expr.right), (expr.right, expr.left)):
            if isinstance(number, cst.Float) and _constant_source(scope, mask, depth) == "mask":
                return "mask"
    if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute):
        name = expr.func.attr.value
        if name == "where" and _is_torch(expr.func.value):
            args = [a.value for a in expr.args]
            if len(args) == 3 and all(_float_constant(a) for a in args[1:]):
                return "mask"
            return None
        if name in FLOAT_CASTS and not expr.args or name in DTYPE_CASTS and _to_float(expr):
            return _constant_source(scope, expr.func.value, depth)
    return None


def _returned_origin(function: cst.FunctionDef) -> str | None:
    """The origin shared by every value a helper returns (`return (x > lo).to(x.dtype)`), else None."""
    scope = bindings(function)
    returns = [n for n in walk(function.body, into_functions=False) if isinstance(n, cst.Return)]
    origins = {_float_constant_origin(scope, r.value) if r.value is not None else None for r in returns}
    return origins.pop() if len(origins) == 1 else None


def _float_constant(expr: cst.BaseExpression) -> bool:
    """`1.0`, `torch.ones_like(x)`, `torch.zeros_like(x)` (a floating input's dtype): a constant of a where-mask."""
    if isinstance(expr, cst.Float):
        return True
    return (
        isinstance(expr, cst.Call)
        and isinstance(expr.func, cst.Attribute)
        and _is_torch(expr.func.value)
        and expr.func.attr.value in ("ones_like", "zeros_like")
        and not any(a.keyword is not None and a.keyword.value == "dtype" for a in expr.args)
    )


def _to_float(call: cst.Call) -> bool:
    """`.to(torch.float32)`, `.to(x.dtype)`, `.to(x)`, `.to(device=d, dtype=x.dtype)`, `.type_as(x)`: a cast
    that is not to an integer dtype."""
    dtype = next((a for a in call.args if a.keyword is not None and a.keyword.value == "dtype"), None)
    positional = [a for a in call.args if a.keyword is None]
    chosen = dtype or (positional[0] if positional else None)
    if chosen is None:
        return False
    target = code_of(chosen.value).strip()
    last = target.rsplit(".", 1)[-1]
    return last not in INTEGER_DTYPE_NAMES and not target.startswith(("'", '"')) and "device" not in target


def _constant_source(scope, expr: cst.BaseExpression, depth: int) -> str | None:
    """What a cast is applied to: a comparison ("mask") or an index op ("index")."""
    if isinstance(expr, cst.Comparison):
        return "mask"
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.BitInvert):
        return _constant_source(scope, expr.expression, depth)
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, (cst.BitAnd, cst.BitOr, cst.BitXor)):
        left, right = _constant_source(scope, expr.left, depth), _constant_source(scope, expr.right, depth)
        return "mask" if left == right == "mask" else None
    if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute):
        name = expr.func.attr.value
        if name in BOOL_RESULT_OPS:
            return "mask"
        if name in INDEX_RESULT_OPS:
            return "index"
    if isinstance(expr, cst.Name) and depth > 0:
        values = scope.get(expr.value, [])
        if (
            len(values) == 1
            and isinstance(values[0], cst.Assign)
            and len(values[0].targets) == 1
            and isinstance(values[0].targets[0].target, cst.Name)
        ):
            return _constant_source(scope, values[0].value, depth - 1)
    return None


def _is_torch(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Name) and expr.value == "torch"


def _message(unmarked: UnmarkedOutput, ctx: str, grad: str) -> tuple[str, str]:
    name = unmarked.function_class.name
    shown = " ".join(code_of(unmarked.element).split())
    what = "a 0/1 mask" if unmarked.origin == "mask" else "an index"
    if unmarked.function_class.uses_setup_context:
        fix = f"Call `{ctx}.mark_non_differentiable(output[{unmarked.index}])` in setup_context."
    elif isinstance(unmarked.element, cst.Name):
        fix = f"Call `{ctx}.mark_non_differentiable({shown})` in forward."
    else:
        fix = f"Bind it to a name, pass that to `{ctx}.mark_non_differentiable(...)` in forward and return it."
    return (
        f"{name}.forward returns float {what[2:] if what.startswith('a ') else what[3:]} `{shortened(shown, 25)}` "
        f"without mark_non_differentiable",
        f"`{shown}` (output {unmarked.index}) is {what} cast to a float dtype, and forward does not call "
        f"`{ctx}.mark_non_differentiable`: torch marks it requires_grad=True, a loss that uses it sends "
        f"`{grad}` into backward, and backward drops it, so the dependence is silently ignored. {fix}",
    )

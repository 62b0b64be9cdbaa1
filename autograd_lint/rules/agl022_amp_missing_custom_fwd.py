"""AGL022 amp-missing-custom-fwd: a matmul-type Function applied in a module that runs autocast,
without `torch.amp.custom_fwd`/`custom_bwd`.

Under autocast, forward's matmul/linear/conv runs in low precision, so the output and the incoming
gradient are bfloat16/float16, while the inputs backward saved stay float32. Backward runs after the
`with autocast` block (as training loops do), where autocast is off: its own matmul then mixes dtypes
and torch raises. `custom_fwd(cast_inputs=...)` runs forward in the given dtype with autocast off;
`custom_fwd` plus `custom_bwd` runs backward under forward's autocast state. `custom_bwd` without
`custom_fwd` fails on every backward (it reads what `custom_fwd` stores on ctx).

The linter sees one file: the Function counts as used under autocast when the module that applies it
also builds an enabled autocast (`with torch.autocast(...)`, `torch.amp`/`torch.cuda.amp`/`torch.cpu.amp`
`autocast(...)`, a function decorated with one, or one kept in a name and entered later).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.prefilter import TextCue
from ..core.rule import Finding
from ..core.syntax import code_of, dotted_name, is_none, method_name, short_code, walk
from ..facts.function_model import TRANSPARENT_DECORATORS, FunctionClass, Method, function_model
from ..torch_api import FLOAT_CASTS
from .base import FunctionClassRule

# Ops autocast runs in low precision (CPU bfloat16 and CUDA float16 lists): their output is what
# makes the incoming gradient low precision, and in backward they refuse mixed dtypes.
LOW_PRECISION_OPS = frozenset(
    {
        "matmul",
        "mm",
        "bmm",
        "addmm",
        "baddbmm",
        "addbmm",
        "mv",
        "addmv",
        "einsum",
        "tensordot",
        "chain_matmul",
        "multi_dot",
        "linear",
        "bilinear",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
        "conv_input",
        "conv1d_input",
        "conv2d_input",
        "conv3d_input",
        "conv1d_weight",
        "conv2d_weight",
        "conv3d_weight",
        "scaled_dot_product_attention",
    }
)
# Casts whatever their arguments; `.to` is one only with a dtype (see `_is_cast`).
CASTS_BUT_TO = FLOAT_CASTS | {"type_as"}
TORCH_MESSAGE = "expected m1 and m2 to have the same dtype, but got: c10::BFloat16 != float"


@dataclass(frozen=True)
class AmpCase:
    function_class: FunctionClass
    kind: str  # "no-decorators", "fwd-without-bwd", "bwd-without-fwd", "bwd-with-ctxless-fwd"


class AmpMissingCustomFwd(FunctionClassRule[AmpCase]):
    code = "AGL022"
    name = "amp-missing-custom-fwd"
    severity = Severity.WARNING
    summary = "a matmul/conv Function applied under autocast without torch.amp.custom_fwd/custom_bwd"
    requires = (TextCue("autocast or custom_bwd", substrings=("autocast", "custom_bwd")),)
    only_reachable_backward = True

    def check_class(self, function_class: FunctionClass, module: ParsedModule) -> Iterator[Finding[AmpCase]]:
        pair = function_class.checked_pair()
        if pair is None:
            return
        forward, backward = pair
        fwd, bwd = _amp_decorator(module, forward, "custom_fwd"), _amp_decorator(module, backward, "custom_bwd")
        if not _transparent(forward) or not _transparent(backward):
            return
        if bwd is not None:
            # custom_fwd on a setup_context-style forward (no ctx) stores its state on the first input, not on ctx
            if (fwd is None or function_class.uses_setup_context) and forward.owner is function_class:
                kind = "bwd-without-fwd" if fwd is None else "bwd-with-ctxless-fwd"
                yield Finding(
                    forward.node.name, *_message(function_class, kind, None), subject=AmpCase(function_class, kind)
                )
            return
        if fwd is not None and _casts_inputs(fwd):
            return
        if not (function_class.apply_calls or _apply_referenced(module, function_class)):
            return
        regions = module.fact(autocast_regions)
        if not regions:
            return
        if not (_returns_low_precision(module, forward) and _low_precision_op(module, backward)):
            return
        if (
            _handles_autocast(forward)
            or _handles_autocast(backward)
            or _casts_dtype(backward)
            or _casts_anywhere(forward)
        ):
            return
        region = _region_of(module, function_class, regions)
        if fwd is None:
            if forward.owner is function_class:
                case = AmpCase(function_class, "no-decorators")
                yield Finding(forward.node.name, *_message(function_class, case.kind, region), subject=case)
        elif backward.owner is function_class:
            case = AmpCase(function_class, "fwd-without-bwd")
            yield Finding(backward.node.name, *_message(function_class, case.kind, region), subject=case)


def _message(function_class: FunctionClass, kind: str, region: cst.CSTNode | None) -> tuple[str, str]:
    name = function_class.name
    if kind == "bwd-with-ctxless-fwd":
        return (
            f"{name}.backward has custom_bwd, but forward takes no ctx (setup_context style)",
            f"{name}.forward's `custom_fwd` "
            f"stores the autocast state on the first input instead of ctx: every backward raises AttributeError "
            f"'{name}Backward' object has no attribute '_fwd_used_autocast'. Drop `custom_bwd` and use "
            f"`@torch.amp.custom_fwd(device_type=..., cast_inputs=torch.float32)` on forward.",
        )
    if kind == "bwd-without-fwd":
        return (
            f"{name}.backward has custom_bwd but forward has no custom_fwd",
            f"`custom_bwd` reads the autocast state "
            f"custom_fwd stores on ctx, so every backward raises AttributeError '{name}Backward' object has no attribute "
            f"'_fwd_used_autocast'. Decorate forward with `@torch.amp.custom_fwd(device_type=...)`.",
        )
    where = f"This module runs `{short_code(region, 40)}`" if region is not None else "This module runs autocast"
    if function_class.uses_setup_context:
        # custom_bwd cannot work with a ctx-less forward (see "bwd-with-ctxless-fwd"): only cast_inputs does
        return (
            f"{name} runs matmul/conv ops under autocast without custom_fwd(cast_inputs=...)",
            f"{where}, and {name} runs matmul/conv ops in forward and backward: under autocast forward's output and "
            "gradient are low precision while backward, run after the block with autocast off, mixes them with float32 "
            f"saved tensors (CPU bf16: '{TORCH_MESSAGE}'). Decorate forward with "
            "`@torch.amp.custom_fwd(device_type=..., cast_inputs=torch.float32)` (with a setup_context-style forward, custom_bwd cannot restore the state).",
        )
    if kind == "fwd-without-bwd":
        return (
            f"{name}.backward lacks custom_bwd while forward has custom_fwd without cast_inputs",
            f"{where}: forward's matmul/conv output is low precision, backward runs after the autocast "
            f"block with autocast off and mixes it with float32 saved tensors (CPU bf16: '{TORCH_MESSAGE}'). "
            "Add `@torch.amp.custom_bwd(device_type=...)` to backward.",
        )
    return (
        f"{name} runs matmul/conv ops under autocast without custom_fwd/custom_bwd",
        f"{where}, and {name} runs matmul/conv ops in forward and backward without "
        "`torch.amp.custom_fwd`/`custom_bwd`: under autocast forward's output and gradient are low precision while "
        "backward, run after the block with autocast off, mixes them with float32 saved tensors "
        f"(CPU bf16: '{TORCH_MESSAGE}'). Decorate forward with `@torch.amp.custom_fwd(device_type=...)` and backward "
        "with `@torch.amp.custom_bwd(device_type=...)`, or use `custom_fwd(..., cast_inputs=torch.float32)`.",
    )


def _transparent(method: Method) -> bool:
    return all(name.rsplit(".", 1)[-1] in TRANSPARENT_DECORATORS for name in method.decorators)


def _amp_decorator(module: ParsedModule, method: Method, tail: str) -> cst.Decorator | None:
    for decorator in method.node.decorators:
        expr = decorator.decorator.func if isinstance(decorator.decorator, cst.Call) else decorator.decorator
        if (module.qualified_name(expr) or "").rsplit(".", 1)[-1] == tail:
            return decorator
    return None


def _casts_inputs(decorator: cst.Decorator) -> bool:
    """`custom_fwd(..., cast_inputs=<not None>)`: forward runs in that dtype with autocast off."""
    expr = decorator.decorator
    return isinstance(expr, cst.Call) and any(
        arg.keyword is not None and arg.keyword.value == "cast_inputs" and not is_none(arg.value) for arg in expr.args
    )


def is_autocast(module: ParsedModule, expr: cst.BaseExpression) -> bool:
    """An enabled autocast context or decorator: `torch.autocast(...)`, `torch.amp.autocast(...)`,
    `torch.cuda.amp.autocast()`, `autocast(...)` imported from torch (not `enabled=False`)."""
    args: Sequence[cst.Arg] = ()
    if isinstance(expr, cst.Call):
        args = expr.args
        expr = expr.func
    qualified = module.qualified_name(expr) or ""
    if qualified.rsplit(".", 1)[-1] != "autocast" or not qualified.startswith("torch."):
        return False
    for arg in args:
        if arg.keyword is not None and arg.keyword.value == "enabled":
            return not (isinstance(arg.value, cst.Name) and arg.value.value == "False")
    return True


def autocast_regions(module: ParsedModule) -> list[cst.CSTNode]:
    """The module's `with` items and function decorators that turn autocast on, then every other enabled
    autocast built in the module (`self.amp = torch.autocast("cuda") if amp else nullcontext()`, later
    entered as `with self.amp:`; `stack.enter_context(torch.autocast(...))`), outside Function classes."""
    found, built = [], []
    entered: set[cst.CSTNode] = set()
    for node in module.parents:
        if type(node) is cst.WithItem and is_autocast(module, node.item):
            found.append(node.item)
            entered.add(node.item)
        elif type(node) is cst.Decorator and is_autocast(module, node.decorator):
            found.append(node.decorator)
            entered.add(node.decorator)
        elif type(node) is cst.Call and is_autocast(module, node):
            built.append(node)
    found += [call for call in built if call not in entered and module.parents.get(call) not in entered]
    # A Function restoring autocast state in its own methods (checkpoint-style) is not training code.
    return [region for region in found if function_model(module).enclosing(region) is None]


def _region_of(module: ParsedModule, function_class: FunctionClass, regions: list[cst.CSTNode]) -> cst.CSTNode:
    """The autocast region an apply call sits in, else the module's first one."""
    inside = set(regions)
    for call in function_class.apply_calls:
        for ancestor in module.ancestors(call):
            if isinstance(ancestor, cst.With):
                for item in ancestor.items:
                    if item.item in inside:
                        return item.item
            elif isinstance(ancestor, cst.FunctionDef):
                for decorator in ancestor.decorators:
                    if decorator.decorator in inside:
                        return decorator.decorator
    return regions[0]


def _apply_referenced(module: ParsedModule, function_class: FunctionClass) -> bool:
    """`Cls.apply` used without calling it here (`vmap(Cls.apply)`, `fn = Cls.apply`)."""
    for node in module.parents:
        if (
            type(node) is cst.Attribute
            and node.attr.value == "apply"
            and isinstance(node.value, cst.Name)
            and node.value.value == function_class.name
        ):
            return True
    return False


def _low_precision_op(module: ParsedModule, method: Method) -> bool:
    """The method, or a helper it calls (one level), runs a matmul/conv-type op."""
    return _has_low_precision_op(method.node) or any(
        _has_low_precision_op(helper) for _, helper in function_model(module).called_functions(method)
    )


# Methods a low-precision result keeps its dtype through: views, a copy, and scaling by a number literal.
DTYPE_KEEPING_METHODS = frozenset(
    {
        "view",
        "reshape",
        "contiguous",
        "transpose",
        "permute",
        "squeeze",
        "unsqueeze",
        "flatten",
        "t",
        "clone",
        "view_as",
        "reshape_as",
        "mul",
        "div",
    }
)
# Elementwise activations autocast runs in their input's dtype (not on its float32 list): a low-precision
# matmul result stays low precision through them (`F.gelu(x @ w)`, `(x @ w).relu()`).
DTYPE_KEEPING_ACTIVATIONS = frozenset(
    {"relu", "gelu", "silu", "sigmoid", "tanh", "leaky_relu", "hardtanh", "relu6", "dropout", "mish", "hardswish"}
)


def _is_low_precision(module: ParsedModule, forward: Method, expr: cst.BaseExpression, depth: int = 0) -> bool:
    """`expr` is a low-precision op's result: `x @ w`, `torch.bmm(...)`, `F.linear(...)` (or a forward
    helper doing one), through views and arithmetic with number literals, or a name forward assigns so.
    Adding a float32 tensor (`x @ w + bias`) promotes the output back to float32, so it does not count."""
    if depth > 4:
        return False
    while True:
        if type(expr) is cst.Call and (method_name(expr) or dotted_name(expr.func) or "") in DTYPE_KEEPING_ACTIVATIONS:
            receiver = expr.func.value if isinstance(expr.func, cst.Attribute) else None
            positional = [arg.value for arg in expr.args if arg.keyword is None and not arg.star]
            if receiver is not None and not (module.qualified_name(receiver) or "").startswith("torch"):
                expr = receiver  # `(x @ w).relu()`
            elif positional:
                expr = positional[0]  # `F.gelu(x @ w)`, `torch.relu(x @ w)`
            else:
                return False
        elif (
            type(expr) is cst.Call
            and method_name(expr) in DTYPE_KEEPING_METHODS
            and isinstance(expr.func, cst.Attribute)
        ):
            if method_name(expr) in ("mul", "div") and not all(
                type(a.value) in (cst.Integer, cst.Float) for a in expr.args
            ):
                return False
            expr = expr.func.value
        elif type(expr) is cst.BinaryOperation and type(expr.operator) is not cst.MatrixMultiply:
            numbers = [side for side in (expr.left, expr.right) if type(side) in (cst.Integer, cst.Float)]
            if not numbers:
                return False
            expr = expr.right if numbers[0] is expr.left else expr.left
        else:
            break
    if type(expr) is cst.BinaryOperation:
        return True
    if type(expr) is cst.Call:
        if (dotted_name(expr.func) or "").rsplit(".", 1)[-1] in LOW_PRECISION_OPS:
            return True
        return any(
            call is expr and _has_low_precision_op(helper)
            for call, helper in function_model(module).called_functions(forward)
        )
    if type(expr) is cst.Name:
        for node in walk(forward.node.body, into_functions=False):
            if type(node) is cst.Assign and any(
                type(t.target) is cst.Name and t.target.value == expr.value for t in node.targets
            ):
                if _is_low_precision(module, forward, node.value, depth + 1):
                    return True
    return False


def _returns_low_precision(module: ParsedModule, forward: Method) -> bool:
    """forward returns (one of its outputs being) a low-precision op's result: under autocast that
    output, and so the gradient backward receives, is bfloat16/float16."""
    for node in walk(forward.node.body, into_functions=False):
        if type(node) is cst.Return and node.value is not None:
            values = [e.value for e in node.value.elements] if isinstance(node.value, cst.Tuple) else [node.value]
            if any(_is_low_precision(module, forward, value) for value in values):
                return True
    return False


def _has_low_precision_op(function: cst.FunctionDef) -> bool:
    for node in walk(function.body, into_functions=False):
        if type(node) is cst.BinaryOperation and type(node.operator) is cst.MatrixMultiply:
            return True
        if type(node) is cst.Call and (dotted_name(node.func) or "").rsplit(".", 1)[-1] in LOW_PRECISION_OPS:
            return True
    return False


def _handles_autocast(method: Method) -> bool:
    """The method manages autocast itself: `with torch.autocast(..., enabled=False)` around its
    matmul, backward re-entering forward's state (`with torch.autocast(**ctx.autocast_kwargs)`),
    `torch.is_autocast_enabled()`/`get_autocast_dtype()` checks."""
    for node in walk(method.node.body, into_functions=False):
        if (type(node) is cst.Name and "autocast" in node.value) or (
            type(node) is cst.Attribute and "autocast" in node.attr.value
        ):
            return True
    return False


def _is_cast(node: cst.CSTNode) -> bool:
    if type(node) is not cst.Call:
        return False
    name = method_name(node)
    if name in CASTS_BUT_TO:
        return True
    return (
        name == "to"
        and "dtype" in code_of(node)
        or name == "to"
        and any((dotted_name(arg.value) or "").startswith("torch.") for arg in node.args)
    )


def _casts_dtype(method: Method) -> bool:
    """backward converts dtypes itself before or inside its matmuls (`g = g.float()`, `g @ w.to(g.dtype)`):
    the author handles mixed precision. Casting only the results (`return gx.to(x.dtype)`) comes too late:
    the matmul has already mixed dtypes."""
    nodes = list(walk(method.node.body, into_functions=False))
    first_op = next((i for i, node in enumerate(nodes) if _is_low_precision_op_node(node)), len(nodes))
    operands = {id(inner) for node in nodes if _is_low_precision_op_node(node) for inner in walk(node)}
    return any(_is_cast(node) and (index < first_op or id(node) in operands) for index, node in enumerate(nodes))


LOW_PRECISION_DTYPES = ("float16", "half", "bfloat16")


def _casts_anywhere(method: Method) -> bool:
    """forward casts to a low-precision dtype itself (`x16 = x.half()`, `w.to(torch.bfloat16)`): what it
    saves and returns is then of the dtype it chose, not autocast's. (`w.to(x.dtype)` does not count.)"""
    for node in walk(method.node.body, into_functions=False):
        if type(node) is cst.Call and method_name(node) in ("half", "bfloat16"):
            return True
        if (
            type(node) is cst.Call
            and method_name(node) in ("to", "type")
            and any((dotted_name(arg.value) or "").rsplit(".", 1)[-1] in LOW_PRECISION_DTYPES for arg in node.args)
        ):
            return True
    return False


def _is_low_precision_op_node(node: cst.CSTNode) -> bool:
    if type(node) is cst.BinaryOperation and type(node.operator) is cst.MatrixMultiply:
        return True
    return (
        type(node) is cst.Call
        and (dotted_name(node.func) or method_name(node) or "").rsplit(".", 1)[-1] in LOW_PRECISION_OPS
    )

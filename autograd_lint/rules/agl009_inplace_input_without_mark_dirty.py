"""AGL009 inplace-input-without-mark-dirty: forward writes into an input without telling autograd."""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.rule import Finding
from ..core.syntax import code_of, dotted_name, is_none, normalized_code, walk
from ..facts.function_model import FunctionClass, Method, function_model
from ..facts.inplace import TENSOR, TENSORS, Alias, AliasFlow, CallTracking, InplaceWrite
from ..torch_api import ALIAS_ATTRIBUTES, ALIAS_METHODS
from .base import FunctionClassRule

# Attributes and methods only a tensor (or an ndarray) has: evidence that a parameter holds one.
TENSOR_EVIDENCE = (
    ALIAS_METHODS
    | ALIAS_ATTRIBUTES
    | frozenset(
        {
            "size",
            "dim",
            "ndim",
            "numel",
            "nelement",
            "shape",
            "dtype",
            "device",
            "is_contiguous",
            "stride",
            "new_empty",
            "new_zeros",
            "new_ones",
            "new_full",
            "new_tensor",
            "clone",
            "requires_grad",
            "grad",
            "is_cuda",
            "data_ptr",
            "element_size",
            "numpy",
            "item",
            "tolist",
            "masked_fill",
            "index_select",
            "gather",
            "mm",
            "matmul",
            "bmm",
            "sum",
            "mean",
            "norm",
            "abs",
            "exp",
            "log",
            "sigmoid",
            "tanh",
            "relu",
        }
    )
)


class InplaceInputWithoutMarkDirty(FunctionClassRule[FunctionClass]):
    code = "AGL009"
    name = "inplace-input-without-mark-dirty"
    severity = Severity.ERROR
    summary = "forward modifies an input in place and does not call ctx.mark_dirty on it"

    def check_class(self, function_class: FunctionClass, module: ParsedModule) -> Iterator[Finding[FunctionClass]]:
        forward = function_class.own_methods.get("forward")  # an inherited one is checked where it is defined
        if forward is not None:
            yield from self._check_forward(module, function_class, forward)

    def _check_forward(self, module: ParsedModule, function_class: FunctionClass, forward: Method) -> Iterator[Finding]:
        marked = _marked_dirty(function_class, forward)
        if marked is None:
            return  # mark_dirty is called on something this rule cannot follow
        roots = {
            p.name.value: Alias(p.name.value, TENSOR)
            for p in forward.data_params
            if p.name.value not in marked and not _is_output_buffer(p)
        }
        star = forward.node.params.star_arg
        if isinstance(star, cst.Param) and star.name.value not in marked:
            roots[star.name.value] = Alias(star.name.value, TENSORS)
        if not roots:
            return
        evidence = _tensor_evidence(module, forward)
        reported: set[str] = set()
        for write, alias in AliasFlow(forward.node, roots, module.qualified_name, _HelperWrites(module)).found:
            if alias.root in reported or _self_copy(write):
                continue
            needs_evidence = write.needs_array or isinstance(write.node, cst.Subscript) or alias.indexed
            if needs_evidence and roots[alias.root].kind == TENSOR and alias.root not in evidence:
                continue  # `k += 1` on an int, `cache[key] = v` on a dict
            reported.add(alias.root)
            yield Finding(write.node, *_message(function_class, forward, write, alias), subject=function_class)


class _HelperWrites(CallTracking):
    """`_quantize_(x, bits)` where this module's own function writes that parameter in place."""

    def __init__(self, module: ParsedModule):
        self.module = module
        self._written: dict[cst.FunctionDef, frozenset[int]] = {}

    def writes(self, call: cst.Call) -> Iterator[InplaceWrite]:
        func = call.func
        if not (isinstance(func, cst.Name) and func.value in function_model(self.module).module_functions):
            return
        helper = function_model(self.module).module_functions[func.value]
        if helper not in self._written:
            self._written[helper] = _tensor_written_parameters(self.module, helper)
        positional = [arg.value for arg in call.args if arg.keyword is None and not arg.star]
        for position in sorted(self._written[helper]):
            if position < len(positional) and not any(arg.star for arg in call.args):
                yield InplaceWrite(call, positional[position], call)


def _tensor_written_parameters(module: ParsedModule, helper: cst.FunctionDef) -> frozenset[int]:
    """Positions of the helper's parameters it writes through a tensor operation (`t.mul_()`, a collective,
    `out=t`): `handles[key] = work` on a dict parameter is not a tensor write."""
    params = [p.name.value for p in helper.params.params]
    flow = AliasFlow(helper, {name: Alias(name, TENSOR) for name in params}, module.qualified_name)
    return frozenset(
        params.index(alias.root)
        for write, alias in flow.found
        if isinstance(write.node, (cst.Call, cst.Arg)) and not alias.indexed
    )


def _is_output_buffer(param: cst.Param) -> bool:
    """`out=None`, `residual_out=None`: an optional buffer the caller hands in for forward to fill, as
    torch's own `out=` arguments. Writing it is the contract, and it is not a differentiable input."""
    name = param.name.value.lower()
    named_as_output = (
        name in ("out", "output", "buf", "buffer")
        or name.startswith("out_")
        or name.endswith(("_out", "_output", "_buf", "_buffer"))
    )
    return named_as_output and param.default is not None and is_none(param.default)


def _marked_dirty(function_class: FunctionClass, forward: Method) -> set[str] | None:
    """Names forward passes to `ctx.mark_dirty`; None when that cannot be known (starred or computed
    arguments, ctx handed to a helper, mark_dirty in setup_context)."""
    setup = function_class.method("setup_context")
    if setup is not None and any(
        isinstance(n, cst.Attribute) and n.attr.value == "mark_dirty" for n in walk(setup.node.body)
    ):
        return None
    ctx = forward.ctx_name
    if ctx is None:
        return set()
    marked: set[str] = set()
    for node in walk(forward.node.body, into_functions=False):
        if not isinstance(node, cst.Call):
            continue
        if dotted_name(node.func) == f"{ctx}.mark_dirty":
            for arg in node.args:
                root = _root_name(arg.value)
                if arg.star or root is None:
                    return None
                marked.add(root)
        elif any(isinstance(arg.value, cst.Name) and arg.value.value == ctx for arg in node.args):
            return None  # a helper given ctx may mark inputs dirty
    return marked


def _root_name(expr: cst.BaseExpression) -> str | None:
    while isinstance(expr, (cst.Attribute, cst.Subscript)):
        expr = expr.value
    return expr.value if isinstance(expr, cst.Name) else None


def _tensor_evidence(module: ParsedModule, forward: Method) -> set[str]:
    """Parameters that visibly hold tensors: annotated so, used with a tensor-only attribute, saved for
    backward, or passed to a torch function."""
    params = {p.name.value: p for p in forward.data_params}
    found = {
        name for name, p in params.items() if p.annotation is not None and "Tensor" in code_of(p.annotation.annotation)
    }
    for node in walk(forward.node.body, into_functions=False):
        if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name) and node.value.value in params:
            if node.attr.value in TENSOR_EVIDENCE or node.attr.value.endswith("_"):
                found.add(node.value.value)
        elif isinstance(node, cst.Call):
            qualified = module.qualified_name(node.func) or ""
            if qualified.startswith("torch.") or qualified.endswith(".save_for_backward"):
                found |= {
                    arg.value.value
                    for arg in node.args
                    if isinstance(arg.value, cst.Name) and arg.value.value in params
                }
    return found


def _self_copy(write: InplaceWrite) -> bool:
    """`t.copy_(t)`: writes the values it already holds."""
    call = write.node
    return (
        isinstance(call, cst.Call)
        and isinstance(call.func, cst.Attribute)
        and call.func.attr.value == "copy_"
        and len(call.args) >= 1
        and normalized_code(call.args[0].value) == normalized_code(call.func.value)
    )


def _message(function_class: FunctionClass, forward: Method, write: InplaceWrite, alias: Alias) -> tuple[str, str]:
    ctx = forward.ctx_name or "ctx"
    star = forward.node.params.star_arg
    if isinstance(star, cst.Param) and star.name.value == alias.root:
        which = f"an input (from `*{alias.root}`)"
        fix = f"Clone that input first, or pass it to `{ctx}.mark_dirty` and return it."
    else:
        name = alias.root
        which = f"its input `{name}`"
        fix = f"Work on a copy (`{name} = {name}.clone()`) or call `{ctx}.mark_dirty({name})` and return `{name}`."
    return (
        f"{function_class.name}.forward writes in place into {which} without mark_dirty",
        f"`{write.text}` writes into it, and `{ctx}.mark_dirty` is never called for it: forward runs without grad "
        "recording, so the caller's tensor (even a leaf Parameter) changes silently and a later backward through "
        f"it fails or is wrong. {fix}",
    )

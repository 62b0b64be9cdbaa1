"""Whether torch can ever call a Function's backward.

Autograd calls backward only for an output that requires grad. No output does when every output of
forward is an integer or bool tensor (torch never gives those a grad_fn) or is passed to
`ctx.mark_non_differentiable`; and nothing calls backward of a Function that is never applied: an
ONNX-export-only Function (a `symbolic` staticmethod and no backward) or a class used as a namespace
whose forward is called as a plain static function. Rules about backward stay silent for these.

The integer answer is syntactic and answers only when the source says so: a cast (`.long()`,
`.int()`, `.to(torch.int32)`), a `dtype=torch.int64` constructor, an index-producing op (`argmax`,
`nonzero`, `argsort`), a comparison (a bool mask), a view or slice of one of those, or a name that
forward also uses to index another tensor (a float tensor cannot index).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import libcst as cst

from ..core.syntax import dotted_name, is_integer_dtype, is_none, walk
from ..torch_api import BOOL_RESULT_OPS, INDEX_RESULT_OPS, INTEGER_CASTS


# What this module reads of `function_model.Method` and `function_model.FunctionClass`, which ask it whether
# their outputs can require grad: it names their shape, not them, so the two modules do not import each other.
class Method(Protocol):
    node: cst.FunctionDef

    @property
    def params(self) -> Sequence[cst.Param]: ...


class FunctionClass(Protocol):
    @property
    def forward(self) -> Method | None: ...

    @property
    def hierarchy_known(self) -> bool: ...

    def method(self, name: str) -> Method | None: ...


# Calls that keep the dtype of their receiver (or first argument): views, copies, device moves.
DTYPE_PRESERVING = frozenset(
    {
        "view",
        "view_as",
        "reshape",
        "reshape_as",
        "expand",
        "expand_as",
        "contiguous",
        "detach",
        "t",
        "transpose",
        "permute",
        "squeeze",
        "unsqueeze",
        "flatten",
        "unflatten",
        "narrow",
        "select",
        "clone",
        "cpu",
        "cuda",
        "flip",
        "roll",
        "repeat",
        "repeat_interleave",
        "index_select",
        "gather",
        "masked_select",
        "take",
        "cat",
        "stack",
        "concat",
        "npu",
        "to",
        "type",
        "__getitem__",
    }
)


def _dtype_argument(call: cst.Call) -> cst.BaseExpression | None:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == "dtype":
            return arg.value
    return None


class _OutputKinds:
    """Integer-ness of forward's values, name by name."""

    def __init__(self, forward: Method):
        self.forward = forward
        self.bindings: dict[str, list[cst.BaseExpression | None]] = {}
        self.index_names: set[str] = set()
        for node in walk(forward.node.body, into_functions=False):
            if isinstance(node, cst.Assign):
                for target in node.targets:
                    self._bind(target.target, node.value)
            elif isinstance(node, cst.AnnAssign) and node.value is not None:
                self._bind(node.target, node.value)
            elif isinstance(node, cst.AugAssign):
                self._bind(node.target, None)
            elif isinstance(node, (cst.For, cst.CompFor)):
                self._bind(node.target, None)
            elif isinstance(node, cst.WithItem) and node.asname is not None:
                self._bind(node.asname.name, None)
            elif isinstance(node, cst.NamedExpr):
                self._bind(node.target, node.value)
            elif isinstance(node, cst.Subscript):
                for element in node.slice:
                    if isinstance(element.slice, cst.Index) and isinstance(element.slice.value, cst.Name):
                        self.index_names.add(element.slice.value.value)
        for param in forward.params:
            self.bindings.setdefault(param.name.value, []).append(None)

    def _bind(self, target: cst.BaseExpression, value: cst.BaseExpression | None) -> None:
        if isinstance(target, cst.Name):
            self.bindings.setdefault(target.value, []).append(value)
        elif isinstance(target, (cst.Tuple, cst.List)):
            pair = _values_and_indices(value) and len(target.elements) == 2
            for position, element in enumerate(target.elements):
                # `values, idx = x.topk(k)`: the second element is an index tensor; others unknown.
                self._bind(element.value, _INDICES if pair and position == 1 else None)
        elif isinstance(target, cst.StarredElement):
            self._bind(target.value, None)

    def is_integer(self, expr: cst.BaseExpression, visiting: frozenset[str] = frozenset()) -> bool:
        if expr is _INDICES or isinstance(expr, cst.Comparison):
            return True  # the indices of a (values, indices) pair; a bool mask
        if isinstance(expr, cst.Attribute) and expr.attr.value == "indices":
            return True  # `x.topk(k).indices`
        if isinstance(expr, cst.Name):
            return self._name_is_integer(expr.value, visiting)
        if isinstance(expr, cst.Subscript):
            return self.is_integer(expr.value, visiting)
        if isinstance(expr, cst.Call):
            return self._call_is_integer(expr, visiting)
        return False

    def _name_is_integer(self, name: str, visiting: frozenset[str]) -> bool:
        if name in visiting:
            return True  # `idx = idx[:k]`: as integer as its other bindings
        values = self.bindings.get(name)
        if not values:
            return False
        visiting = visiting | {name}
        for value in values:
            if value is not None and self.is_integer(value, visiting):
                continue
            if value is not None and name in self.index_names and _opaque(value):
                continue  # an extension's result that forward indexes with
            return False
        return True

    def _call_is_integer(self, call: cst.Call, visiting: frozenset[str]) -> bool:
        dtype = _dtype_argument(call)
        if dtype is not None:
            return is_integer_dtype(dtype)
        func = call.func
        name = (
            func.attr.value if isinstance(func, cst.Attribute) else func.value if isinstance(func, cst.Name) else None
        )
        if name is None:
            return False
        positional = [arg.value for arg in call.args if arg.keyword is None and not arg.star]
        if name in ("to", "type") and isinstance(func, cst.Attribute):
            dtypes = [p for p in positional if (dotted_name(p) or "").startswith("torch.")]
            if dtypes:
                return is_integer_dtype(dtypes[-1])
            if not all(_is_device(p) for p in positional):
                return False  # `.to(other)` takes other's dtype
        if name in INTEGER_CASTS and not positional and isinstance(func, cst.Attribute):
            return True
        if name in INDEX_RESULT_OPS or name in BOOL_RESULT_OPS:
            return True
        if name in DTYPE_PRESERVING:
            if isinstance(func, cst.Attribute) and not _is_module(func.value):
                return self.is_integer(func.value, visiting)  # `idx.transpose(1, 2).contiguous()`
            if name in ("cat", "stack", "concat") and positional and isinstance(positional[0], (cst.List, cst.Tuple)):
                elements = positional[0].elements
                return bool(elements) and all(self.is_integer(e.value, visiting) for e in elements)
            return bool(positional) and self.is_integer(positional[0], visiting)
        return False


# Ops returning a (values, indices) pair; `max`/`min`/`median`/`mode` only with a dimension.
PAIR_PRODUCERS = frozenset({"topk", "sort", "kthvalue", "max", "min", "median", "mode", "cummax", "cummin"})
_INDICES = cst.Name("indices")  # stands for the index half of such a pair in the bindings


def _values_and_indices(value: cst.BaseExpression | None) -> bool:
    if not isinstance(value, cst.Call):
        return False
    func = value.func
    name = func.attr.value if isinstance(func, cst.Attribute) else func.value if isinstance(func, cst.Name) else None
    if name not in PAIR_PRODUCERS:
        return False
    if name in ("max", "min", "median", "mode"):
        on_module = isinstance(func, cst.Attribute) and _is_module(func.value)
        return len(value.args) >= (2 if on_module else 1) or any(
            a.keyword is not None and a.keyword.value == "dim" for a in value.args
        )
    return True


def _is_device(expr: cst.BaseExpression) -> bool:
    """`"cuda"`, `x.device`, `device`, `torch.device(...)`: a device, not a dtype."""
    if isinstance(expr, cst.BaseString):
        return True
    if isinstance(expr, cst.Call):
        return (dotted_name(expr.func) or "").endswith("device")
    return "device" in (dotted_name(expr) or "").rsplit(".", 1)[-1]


def _is_module(expr: cst.BaseExpression) -> bool:
    return (dotted_name(expr) or "").split(".")[0] in ("torch", "F", "np", "numpy")


def _opaque(value: cst.BaseExpression) -> bool:
    """A call or subscript whose dtype the source does not say (an extension op's result)."""
    return isinstance(value, (cst.Call, cst.Subscript))


def _marked_names(function_class: FunctionClass) -> tuple[set[str], bool]:
    """Names forward passes to `ctx.mark_non_differentiable`, and whether setup_context marks the
    whole output."""
    names: set[str] = set()
    whole_output = False
    for method_name in ("forward", "setup_context"):
        method = function_class.method(method_name)
        if method is None:
            continue
        output_param = method.params[-1].name.value if method_name == "setup_context" and method.params else None
        for node in walk(method.node.body, into_functions=False):
            if (
                isinstance(node, cst.Call)
                and isinstance(node.func, cst.Attribute)
                and node.func.attr.value == "mark_non_differentiable"
            ):
                for arg in node.args:
                    value = arg.value
                    if isinstance(value, cst.Name):
                        if value.value == output_param:
                            whole_output = True
                        names.add(value.value)
    return names, whole_output


def _returned_elements(forward: Method) -> list[cst.BaseExpression] | None:
    """Every value forward can return, tuples split into elements; None if one cannot be listed."""
    found: list[cst.BaseExpression] = []
    for node in walk(forward.node.body, into_functions=False):
        if isinstance(node, cst.Return):
            if node.value is None:
                return None
            if isinstance(node.value, (cst.Tuple, cst.List)):
                for element in node.value.elements:
                    if isinstance(element, cst.StarredElement):
                        return None
                    found.append(element.value)
            else:
                found.append(node.value)
        elif isinstance(node, (cst.Yield, cst.Lambda)):
            return None
    return found or None


def outputs_non_differentiable(function_class: FunctionClass) -> bool:
    """Every output forward returns is an integer/bool tensor, a non-tensor literal, or marked
    with `ctx.mark_non_differentiable`: no output can require grad."""
    forward = function_class.forward
    if forward is None or not function_class.hierarchy_known:
        return False
    marked, whole_output = _marked_names(function_class)
    if whole_output:
        return True
    returned = _returned_elements(forward)
    if returned is None:
        return False
    kinds = _OutputKinds(forward)
    for value in returned:
        if is_none(value) or isinstance(value, (cst.BaseNumber, cst.BaseString)):
            continue
        if isinstance(value, cst.Name) and value.value in marked:
            continue
        if not kinds.is_integer(value):
            return False
    return True

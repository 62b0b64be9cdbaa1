"""AGL014 tensors-in-containers: autograd tracks only the tensors that are `.apply`'s arguments and
forward's top-level outputs; tensors inside lists, dicts or nested tuples are invisible to it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.rule import Finding
from ..core.scopes import bindings
from ..core.syntax import assigned_names, code_of, is_none, shortened, walk
from ..facts.function_model import FunctionClass, Method, function_model
from ..facts.gradient_returns import returned_values
from ..facts.value_kinds import (
    NON_TENSOR,
    NON_TENSOR_TORCH_FUNCTIONS,
    TENSOR,
    TENSOR_ONLY_METHODS,
    TORCH_CONSTRUCTORS,
    UNKNOWN,
    CallerKinds,
    Kind,
    ValueKinds,
    argument_kind,
    names_used_as_tensors,
)
from .base import FunctionClassRule

DISPLAYS = (cst.List, cst.Tuple, cst.Dict, cst.ListComp, cst.DictComp)
# torch functions whose first argument is a sequence of tensors.
SEQUENCE_FUNCTIONS = frozenset(
    {"cat", "concat", "concatenate", "stack", "hstack", "vstack", "dstack", "column_stack", "row_stack"}
)
TORCH_AND_FUNCTIONAL_MODULES = ("torch", "torch.nn.functional")
GRAD_FN_MESSAGE = "element 0 of tensors does not require grad and does not have a grad_fn"


@dataclass(frozen=True)
class ContainerCase:
    function_class: FunctionClass
    container: cst.BaseExpression  # the display found (for an input: possibly the one a name is bound to)
    call: cst.Call | None = None  # set for an input: the `.apply(...)` call
    position: int | str | None = None  # the container argument's index, or its keyword


class TensorsInContainers(FunctionClassRule[ContainerCase]):
    code = "AGL014"
    name = "tensors-in-containers"
    severity = Severity.ERROR
    summary = "forward returns tensors in a list, dict or nested tuple, or .apply receives tensors inside a container"

    def check_class(self, function_class: FunctionClass, module: ParsedModule) -> Iterator[Finding[ContainerCase]]:
        forward = function_class.own_methods.get("forward")
        if forward is not None:
            yield from self._check_outputs(module, function_class, forward)
        if function_class.forward is not None and function_class.hierarchy_known:
            yield from self._check_inputs(module, function_class, function_class.forward)

    # ---- forward's outputs ----

    def _check_outputs(self, module: ParsedModule, function_class: FunctionClass, forward: Method) -> Iterator[Finding]:
        kinds = _Kinds(function_class, forward, module)
        helpers = dict(function_model(module).called_functions(forward))
        for node in walk(forward.node.body, into_functions=False):
            if not isinstance(node, cst.Return) or node.value is None:
                continue
            if isinstance(node.value, cst.Tuple):
                candidates = [(element.value, True) for element in node.value.elements]
            else:
                candidates = [(node.value, False)]
            for value, nested in candidates:
                container = kinds.container(value)
                if container is None and isinstance(value, cst.Call) and value in helpers:
                    container = _packed_by_helper(kinds, value, helpers[value])
                if container is None or (not nested and isinstance(container, cst.Tuple)):
                    continue
                if kinds.holds_tensor(container):
                    yield Finding(
                        value,
                        *_output_message(function_class, container, nested),
                        subject=ContainerCase(function_class, container),
                    )

    # ---- .apply's inputs ----

    def _check_inputs(self, module: ParsedModule, function_class: FunctionClass, forward: Method) -> Iterator[Finding]:
        params = [p.name.value for p in forward.data_params]
        sequences = _tensor_sequence_params(module, forward)
        concatenated = _concatenated_params(module, forward)
        for call in function_class.apply_calls:
            if any(arg.star for arg in call.args):
                continue
            for index, arg in enumerate(call.args):
                position: int | str  # an argument's index, or its keyword
                param: str | None
                if arg.keyword is None:
                    position, param = index, (params[index] if index < len(params) else None)
                else:
                    position = param = arg.keyword.value
                container = _caller_container(module, call, arg.value)
                if container is None and param in concatenated and not _literal_or_tensor_call(module, arg.value):
                    # whatever the caller passes, forward's torch.cat(param) needs a sequence of tensors
                    case = ContainerCase(function_class, arg.value, call, position)
                    yield Finding(arg.value, *_concatenated_message(function_class, param, arg.value), subject=case)
                    continue
                if container is None or not _display_members(container):
                    continue
                if param in sequences or _holds_caller_tensor(module, call, container):
                    case = ContainerCase(function_class, container, call, position)
                    yield Finding(arg.value, *_input_message(function_class, container, arg.value), subject=case)


def _output_message(function_class: FunctionClass, container, nested: bool) -> tuple[str, str]:
    name = function_class.name
    if nested:
        what = f"{name}.forward returns {_article(container)} inside its output tuple"
        why = "Autograd tracks only the top-level tensors"
    else:
        what = f"{name}.forward returns {_article(container)}"
        why = "Autograd does not look inside it"
    return (
        what,
        f"{why}, so the tensors in it come out with requires_grad=False and no gradient flows through them "
        f"(backward from one raises '{GRAD_FN_MESSAGE}'). Return a flat tuple of tensors instead.",
    )


def _input_message(function_class: FunctionClass, container, written) -> tuple[str, str]:
    name = function_class.name
    shown = "" if container is written else f" (`{shortened(code_of(written), 30)}` is {_article(container)})"
    return (
        f"{name}.apply receives tensors inside {_article(container)}{shown}",
        f"Autograd tracks only tensors passed "
        f"directly as arguments, so they get no gradient (their .grad stays None) and the output may not require grad. "
        f"Pass them as separate arguments (`{name}.apply(*tensors)` with `def forward(ctx, *tensors)`).",
    )


class _Kinds(ValueKinds):
    """ValueKinds, plus: a parameter that backward returns a gradient for is a tensor (torch rejects
    a non-None gradient for anything else), and the containers forward builds in local names."""

    def _parameter_kind(self, name: str) -> Kind:
        kind = super()._parameter_kind(name)
        if kind is UNKNOWN and name in _differentiated_params(self.function_class, self.method):
            return TENSOR
        return kind

    def container(self, expr: cst.BaseExpression) -> cst.BaseExpression | None:
        """The display `expr` is, or the one a local name is bound to."""
        if isinstance(expr, DISPLAYS):
            return expr
        if isinstance(expr, cst.Name):
            return _bound_display(expr.value, bindings(self.method.node).get(expr.value, []))
        return None

    def holds_tensor(self, container: cst.BaseExpression) -> bool:
        for member in self._members(container):
            inner = member if isinstance(member, DISPLAYS) else None
            if self.kind(member) is TENSOR or (inner is not None and self.holds_tensor(inner)):
                return True
        return False

    def _members(self, container: cst.BaseExpression) -> list[cst.BaseExpression]:
        """The display's elements, plus what forward appends or assigns into the name bound to it."""
        members = _display_members(container)
        names = {
            name
            for name, nodes in bindings(self.method.node).items()
            if any(getattr(n, "value", None) is container for n in nodes)
        }
        if not names:
            return members
        for node in walk(self.method.node.body, into_functions=False):
            if (
                isinstance(node, cst.Call)
                and isinstance(node.func, cst.Attribute)
                and node.func.attr.value in ("append", "insert")
            ):
                if _is_name_in(node.func.value, names) and node.args:
                    members.append(node.args[-1].value)
            elif isinstance(node, cst.Assign):
                members += [
                    node.value
                    for t in node.targets
                    if isinstance(t.target, cst.Subscript) and _is_name_in(t.target.value, names)
                ]
        return members


def _packed_by_helper(kinds: _Kinds, call: cst.Call, helper: cst.FunctionDef) -> cst.BaseExpression | None:
    """`return _pack(out, lse)` where `_pack` returns a list or dict display of its parameters on every
    `return` (`return {"out": a, "lse": b}`): that display with the call's arguments put in place of
    the parameters, so forward's kinds judge them."""
    returns = [n for n in walk(helper.body, into_functions=False) if isinstance(n, cst.Return)]
    local = bindings(helper)
    displays = [
        r.value
        if isinstance(r.value, DISPLAYS)
        else _bound_display(r.value.value, local.get(r.value.value, []))
        if isinstance(r.value, cst.Name)
        else None
        for r in returns
    ]
    if (
        not displays
        or any(d is None or isinstance(d, cst.Tuple) for d in displays)
        or any(a.star or a.keyword is not None for a in call.args)
    ):
        return None
    params = [p.name.value for p in helper.params.params]
    passed = {name: arg.value for name, arg in zip(params, call.args)}
    unchanged = {name for name in passed if len(local.get(name, [])) == 1}

    class _Substitute(cst.CSTTransformer):
        def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.BaseExpression:
            return passed[original.value] if original.value in unchanged else updated

    substituted = displays[0].visit(_Substitute()) if displays[0] is not None else None
    return substituted if isinstance(substituted, cst.BaseExpression) else None  # a display, substituted


def _is_name_in(expr: cst.BaseExpression, names: set[str]) -> bool:
    return isinstance(expr, cst.Name) and expr.value in names


def _display_members(container: cst.BaseExpression) -> list[cst.BaseExpression]:
    if isinstance(container, (cst.List, cst.Tuple)):
        return [e.value for e in container.elements if not isinstance(e, cst.StarredElement)]
    if isinstance(container, cst.Dict):
        return [e.value for e in container.elements if isinstance(e, cst.DictElement)]
    if isinstance(container, cst.ListComp):
        return [container.elt]
    if isinstance(container, cst.DictComp):
        return [container.value]
    return []


def _bound_display(name: str, nodes: list[cst.CSTNode]) -> cst.BaseExpression | None:
    """The display a name is bound to, when every binding is an assignment of a display of one family
    to the name itself (`xs = [a, b]`; in `a, b = x, y` the name gets an element, not the tuple)."""
    values = [
        n.value
        for n in nodes
        if isinstance(n, cst.Assign)
        and any(isinstance(t.target, cst.Name) and t.target.value == name for t in n.targets)
    ]
    if not values or len(values) != len(nodes) or not all(isinstance(v, DISPLAYS) for v in values):
        return None
    return values[0] if len({_family(v) for v in values}) == 1 else None


def _family(expr) -> str:
    if isinstance(expr, (cst.Dict, cst.DictComp)):
        return "dict"
    return "list" if isinstance(expr, (cst.List, cst.ListComp)) else "tuple"


def _article(container) -> str:
    return {"dict": "a dict", "list": "a list", "tuple": "a tuple"}[_family(container)]


def _differentiated_params(function_class: FunctionClass, forward: Method) -> set[str]:
    """Forward's parameters at positions where some backward return gives a non-None gradient."""
    backward = function_class.backward
    if backward is None or forward.name != "forward" or isinstance(forward.node.params.star_arg, cst.Param):
        return set()
    names = [p.name.value for p in forward.data_params]
    found = set()
    for returned in returned_values(backward):
        if not returned.is_list:
            found |= {name for name, element in zip(names, returned.elements) if not is_none(element)}
    return found


def _concatenated_params(module: ParsedModule, forward: Method) -> set[str]:
    """Forward's (non-varargs) parameters passed whole to `torch.cat`/`torch.stack`...: sequences of tensors."""
    found = set()
    for node in walk(forward.node.body):
        if (
            isinstance(node, cst.Call)
            and node.args
            and node.args[0].keyword is None
            and isinstance(node.args[0].value, cst.Name)
        ):
            head, _, attr = (module.qualified_name(node.func) or "").rpartition(".")
            if head in TORCH_AND_FUNCTIONAL_MODULES and attr in SEQUENCE_FUNCTIONS:
                found.add(node.args[0].value.value)
    return found & {p.name.value for p in forward.data_params}


def _literal_or_tensor_call(module: ParsedModule, expr: cst.BaseExpression) -> bool:
    """A literal (the user passes something odd on purpose) or a single tensor from a torch call."""
    return argument_kind(expr) is not UNKNOWN or _is_torch_tensor_call(module, expr)


def _concatenated_message(function_class: FunctionClass, param: str, written) -> tuple[str, str]:
    name, passed = function_class.name, shortened(code_of(written), 30)
    shown = f"`{passed}`" if passed == param else f"`{passed}` as `{param}`"
    return (
        f"{name}.apply receives {shown}, a container of tensors",
        f"Forward passes it to torch.cat/stack, so it "
        f"holds tensors inside a container: autograd tracks only tensors passed directly as arguments, so they get no "
        f"gradient (their .grad stays None) and the output may not require grad. Pass them as separate arguments "
        f"(`{name}.apply(*tensors)` with `def forward(ctx, *tensors)`).",
    )


def _tensor_sequence_params(module: ParsedModule, forward: Method) -> set[str]:
    """Forward's parameters used as sequences of tensors: `torch.cat(xs)`, `for t in xs: t.view(...)`,
    `[t.float() for t in xs]`, `xs[0].contiguous()`."""
    tensor_names = names_used_as_tensors(forward.node)
    found = set(_concatenated_params(module, forward))
    for node in walk(forward.node.body):
        if isinstance(node, (cst.For, cst.CompFor)):
            source = _iterated_name(node.iter)
            if source is not None and any(n.value in tensor_names for n in assigned_names(node.target)):
                found.add(source)
        elif (
            isinstance(node, cst.Subscript)
            and isinstance(node.value, cst.Name)
            and _element_used_as_tensor(module, forward, node)
        ):
            found.add(node.value.value)
    return found & {p.name.value for p in forward.data_params}


def _element_used_as_tensor(module: ParsedModule, forward: Method, element: cst.Subscript) -> bool:
    """`xs[0].contiguous()`, `xs["q"] @ xs["k"]`, `torch.exp(xs[1])`: an element used as only a tensor can be."""
    parent = module.parents.get(element)
    if isinstance(parent, cst.Attribute) and parent.value is element:
        return parent.attr.value in TENSOR_ONLY_METHODS
    if isinstance(parent, cst.BinaryOperation):
        return isinstance(parent.operator, cst.MatrixMultiply)
    if isinstance(parent, cst.Arg) and parent.keyword is None:
        call = module.parents.get(parent)
        if isinstance(call, cst.Call) and call.args and call.args[0] is parent:
            head, _, attr = (module.qualified_name(call.func) or "").rpartition(".")
            return (
                head in TORCH_AND_FUNCTIONAL_MODULES
                and attr[:1].islower()
                and attr not in NON_TENSOR_TORCH_FUNCTIONS
                and attr not in TORCH_CONSTRUCTORS
            )
    return False


def _iterated_name(expr: cst.BaseExpression) -> str | None:
    """`xs` in `for t in xs`, `enumerate(xs)`, `zip(xs, ...)`, `reversed(xs)`."""
    if (
        isinstance(expr, cst.Call)
        and isinstance(expr.func, cst.Name)
        and expr.func.value in ("enumerate", "zip", "reversed")
        and expr.args
    ):
        expr = expr.args[0].value
    return expr.value if isinstance(expr, cst.Name) else None


def _caller_container(module: ParsedModule, call: cst.Call, expr: cst.BaseExpression) -> cst.BaseExpression | None:
    """The display `expr` is, or the one the name `expr` is bound to in the calling scope."""
    if isinstance(expr, DISPLAYS):
        return expr
    if isinstance(expr, cst.Name):
        return _bound_display(expr.value, bindings(module.enclosing_function(call) or module.tree).get(expr.value, []))
    return None


def _holds_caller_tensor(module: ParsedModule, call: cst.Call, container: cst.BaseExpression) -> bool:
    """Whether an element is surely a tensor where the call is written: the result of a torch tensor
    function (`torch.randn(3)`) or of a method only tensors have (`a.float()`, `h.contiguous()`), or a
    name the caller binds only to such (value_kinds.CallerKinds)."""
    local = bindings(module.enclosing_function(call) or module.tree)
    caller = CallerKinds(module)
    for element in _display_members(container):
        if argument_kind(element) is NON_TENSOR:
            continue
        # An attribute may be a buffer that needs no gradient (`self.running_mean`): not enough on its own.
        if not isinstance(element, cst.Attribute) and caller.kind(element, call) is TENSOR:
            return True
        values = [element]
        if isinstance(element, cst.Name):
            nodes = local.get(element.value, [])
            values = (
                [n.value for n in nodes if isinstance(n, cst.Assign)]
                if all(isinstance(n, cst.Assign) for n in nodes)
                else []
            )
        if values and all(_is_torch_tensor_call(module, v) or _is_tensor_method_call(v) for v in values):
            return True
    return False


# Methods only a tensor has that give a tensor back (`a.float()`); not `size`, `dim`, `numel`... (numbers).
TENSOR_RESULT_METHODS = frozenset(
    {
        "float",
        "half",
        "double",
        "bfloat16",
        "contiguous",
        "detach",
        "view",
        "view_as",
        "type_as",
        "unsqueeze",
        "permute",
        "expand",
        "expand_as",
        "masked_fill",
        "index_select",
        "narrow",
        "new_zeros",
        "new_ones",
        "new_empty",
        "new_full",
        "new_tensor",
        "requires_grad_",
        "softmax",
        "log_softmax",
        "sigmoid",
        "relu",
    }
)


def _is_tensor_method_call(expr: cst.BaseExpression) -> bool:
    return (
        isinstance(expr, cst.Call)
        and isinstance(expr.func, cst.Attribute)
        and expr.func.attr.value in TENSOR_RESULT_METHODS
    )


def _is_torch_tensor_call(module: ParsedModule, expr: cst.BaseExpression) -> bool:
    if not isinstance(expr, cst.Call):
        return False
    head, _, attr = (module.qualified_name(expr.func) or "").rpartition(".")
    return head in TORCH_AND_FUNCTIONAL_MODULES and attr[:1].islower() and attr not in NON_TENSOR_TORCH_FUNCTIONS

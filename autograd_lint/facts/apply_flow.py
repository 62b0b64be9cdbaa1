"""What callers do with `Fn.apply(...)`: in-place writes to its result, or to its arguments, after the call.

Shared by AGL019 (a tensor forward saved for backward is changed before backward uses it) and AGL020
(an output that is an input or a view of one is changed in place). Each function of the module that
calls `.apply` of a same-module Function is followed once with `inplace.AliasFlow`: the result of the
call and the chosen arguments become tracked tensors from that call on, an `nn` module built with
`inplace=True` (`self.act = nn.ReLU(inplace=True)`, then `self.act(y)`) writes into its input, and a
backward (`loss.backward()`, `torch.autograd.grad/backward`) ends the tracking: the graph is consumed.
Calls under `torch.no_grad()` record no graph and are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import libcst as cst

from ..core.context import per_file
from ..core.module import ParsedModule
from ..core.scopes import bindings
from ..core.syntax import dotted_name, walk
from ..torch_api import AUTOGRAD_GRADIENT_CALLS
from .function_model import FunctionClass, function_model
from .inplace import (
    ALIAS_ATTRIBUTES,
    MODULE_INPLACE_POSITION,
    TENSOR,
    Alias,
    AliasFlow,
    CallTracking,
    Env,
    InplaceWrite,
    inplace_by_position,
)


@dataclass(frozen=True)
class Tracked:
    """One tensor followed after an apply call: its output (`position` None) or the argument at `position`."""

    function_class: FunctionClass
    call: cst.Call
    position: int | None
    name: str  # the caller's name for it at the call (`y` in `y = Fn.apply(x)`, or the argument's name)
    via: str | None = None  # the module's function that returns `Fn.apply(...)`, when `call` calls it
    output_index: int | None = None  # for an output unpacked from a tuple (`out, idx = Fn.apply(x)`)

    @property
    def applied(self) -> str:
        """`Fn.apply`, or `Fn.apply` (through `wrapper()`), for messages."""
        text = f"`{self.function_class.name}.apply`"
        return text if self.via is None else f"{text} (through `{self.via}()`)"

    @property
    def is_output(self) -> bool:
        return self.position is None


@dataclass(frozen=True)
class CallerWrite:
    tracked: Tracked
    write: InplaceWrite


# For one apply call: whether its output is followed (True for a single output, or the positions to
# follow in a returned tuple, when the caller unpacks it), and the argument positions to follow.
Selection = Callable[[FunctionClass, cst.Call], "tuple[bool | tuple[int, ...], list[int]]"]


def caller_writes(
    module: ParsedModule,
    classes: list[FunctionClass],
    select: Selection,
    until_backward: bool = True,
    counts: Callable[[InplaceWrite], bool] = lambda write: True,
) -> Iterator[CallerWrite]:
    """The first in-place write to each followed tensor that `counts`, per apply call, in the functions
    that call; with `until_backward`, writes after a backward are not followed."""
    by_scope: dict[cst.FunctionDef | cst.Module, list[_Applied]] = {}
    for function_class in classes:
        applied = [_Applied(function_class, call) for call in function_class.apply_calls]
        # `partial(Fn.apply, a)(x)`: x is apply's argument 1; `checkpoint(Fn.apply, x)`: x is its argument 0.
        for call, arguments in function_class.partial_applies:
            shift = _positional_count(arguments) - _positional_count(call.args)
            positions = tuple((p, p - shift) for p in range(max(shift, 0), _positional_count(arguments)))
            applied.append(_Applied(function_class, call, None, positions))
        for applied_call in applied + list(_wrapper_calls(function_class)):
            call = applied_call.call
            scope = module.enclosing_function(call) or module.tree
            if function_model(module).enclosing(call) is not None or module.under_no_grad(call):
                continue  # inside a Function (forward records nothing) or with grad recording off
            by_scope.setdefault(scope, []).append(applied_call)
    for scope, calls in by_scope.items():
        tracking = _ApplyTracking(module, calls, select, until_backward)
        if not tracking.roots:
            continue
        reported: set[str] = set()
        for write, alias in AliasFlow(scope, {}, module.qualified_name, tracking).found:
            if alias.root in reported or alias.root not in tracking.roots or _through_data(write) or not counts(write):
                continue
            reported.add(alias.root)
            yield CallerWrite(tracking.roots[alias.root], write)


@dataclass(frozen=True)
class _Applied:
    """A call that applies a Function: `Fn.apply(...)` itself, or a call of a module-level function whose
    only return is `Fn.apply(...)` of its own parameters (`positions` maps apply's argument positions
    to the wrapper call's)."""

    function_class: FunctionClass
    call: cst.Call
    via: str | None = None
    positions: tuple[tuple[int, int], ...] | None = None

    def argument_position(self, position: int) -> int | None:
        if self.positions is None:
            return position
        return dict(self.positions).get(position)


def _wrapper_calls(function_class: FunctionClass) -> Iterator[_Applied]:
    """The Function model's wrapper calls whose wrapper only returns `Fn.apply(...)` (`def exp(x): return
    Exp.apply(x)`): the caller's result is the Function's output, and the wrapper's parameters it passes on
    unchanged are apply's arguments (`positions`)."""
    for wrapper_call in function_class.wrapper_calls:
        found = _wrapper_positions(wrapper_call.wrapper)
        if found is not None and found[0] is wrapper_call.apply_call:
            yield _Applied(function_class, wrapper_call.call, wrapper_call.wrapper.name.value, found[1])


@per_file
def _wrapper_positions(wrapper: cst.FunctionDef) -> tuple[cst.Call, tuple[tuple[int, int], ...]] | None:
    """(the call the wrapper returns, (apply position, wrapper position) of each parameter it passes on
    unchanged) for a wrapper without `*args` whose one `return` returns a call."""
    if wrapper.params.star_arg not in (None, cst.MaybeSentinel.DEFAULT):
        return None
    returns = [n for n in walk(wrapper.body, into_functions=False) if isinstance(n, cst.Return)]
    if len(returns) != 1 or not isinstance(returns[0].value, cst.Call):
        return None
    params = [p.name.value for p in wrapper.params.params]
    local = bindings(wrapper)
    unchanged = {name for name in params if len(local.get(name, [])) == 1}
    positions = tuple(
        (position, params.index(name))
        for position, name in _positional_names(returns[0].value).items()
        if name in unchanged
    )
    return returns[0].value, positions


def _through_data(write: InplaceWrite) -> bool:
    """`y.data.add_(1)`: `.data` has its own version counter and no autograd view, so torch checks nothing
    (the silent twin of both rules, not reported by them)."""
    return any(isinstance(n, cst.Attribute) and n.attr.value == "data" for n in [write.target, *walk(write.target)])


class _ApplyTracking(CallTracking):
    def __init__(self, module: ParsedModule, calls: list[_Applied], select: Selection, until_backward: bool):
        self.module = module
        self.until_backward = until_backward
        self.roots: dict[str, Tracked] = {}
        self._results: dict[cst.Call, Alias] = {}
        self._arguments: dict[cst.Call, Env] = {}
        self._unpacked: dict[cst.Call, list[Alias | None]] = {}
        self._inplace_attributes: dict[cst.ClassDef, frozenset[str]] = {}
        self._written: dict[cst.FunctionDef, frozenset[int]] = {}
        self._written_attributes: dict[cst.FunctionDef, frozenset[str]] = {}
        for applied in calls:
            function_class, call = applied.function_class, applied.call
            output, positions = select(function_class, call)
            if output is True:
                key = f"{id(call)}:out"
                self.roots[key] = Tracked(function_class, call, None, _result_name(module, call), applied.via)
                self._results[call] = Alias(key, TENSOR)
            elif output:
                self._track_unpacked(applied, output)
            arguments = _positional_names(call)
            for position in positions:
                at = applied.argument_position(position)
                name = arguments.get(at) if at is not None else None
                if name is not None:
                    key = f"{id(call)}:{position}"
                    self.roots[key] = Tracked(function_class, call, position, name, applied.via)
                    self._arguments.setdefault(call, {})[name] = Alias(key, TENSOR)

    def _track_unpacked(self, applied: _Applied, indices) -> None:
        """`out, idx = Fn.apply(x)`: the unpacked names at `indices` become tracked outputs."""
        call = applied.call
        parent = self.module.parents.get(call)
        if not (isinstance(parent, cst.Assign) and len(parent.targets) == 1):
            return
        target = parent.targets[0].target
        if not isinstance(target, (cst.Tuple, cst.List)) or any(
            isinstance(e, cst.StarredElement) for e in target.elements
        ):
            return
        elements = [e.value for e in target.elements]
        parts: list[Alias | None] = [None] * len(elements)
        for index in indices:
            if index < len(elements) and isinstance(elements[index], cst.Name):
                key = f"{id(call)}:out{index}"
                self.roots[key] = Tracked(applied.function_class, call, None, elements[index].value, applied.via, index)
                parts[index] = Alias(key, TENSOR)
        self._unpacked[call] = parts

    def result(self, call: cst.Call) -> Alias | None:
        return self._results.get(call)

    def unpacked(self, call: cst.Call, count: int) -> list[Alias | None] | None:
        parts = self._unpacked.get(call)
        return parts if parts is not None and len(parts) == count else None

    def tracked_after(self, call: cst.Call) -> Env:
        return self._arguments.get(call, {})

    def stops(self, call: cst.Call) -> bool:
        if not self.until_backward:
            return False
        func = call.func
        if isinstance(func, cst.Attribute) and func.attr.value == "backward":
            return True
        return (self.module.qualified_name(func) or "") in AUTOGRAD_GRADIENT_CALLS

    def writes(self, call: cst.Call) -> Iterator[InplaceWrite]:
        """`nn.ReLU(inplace=True)(y)`, `self.act(y)` where the class sets `self.act = nn.ReLU(inplace=True)`,
        a call of this module's top-level function that writes its parameter in place (`clip_(w)`), and a
        call of the caller's own method that writes an attribute in place (`self._clip_weights()`)."""
        func = call.func
        if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self":
            for attribute in self._method_writes(call, func.attr.value):
                yield InplaceWrite(call, cst.Attribute(cst.Name("self"), cst.Name(attribute)), call)
        positional = [arg.value for arg in call.args if arg.keyword is None and not arg.star]
        if not positional:
            return
        if isinstance(func, cst.Name) and func.value in function_model(self.module).module_functions:
            helper = function_model(self.module).module_functions[func.value]
            if helper not in self._written:
                self._written[helper] = written_parameters(self.module, helper)
            for position in sorted(self._written[helper]):
                if position < len(positional):
                    yield InplaceWrite(call, positional[position], call)
            return
        if isinstance(func, cst.Call) and self._inplace_module(func):
            yield InplaceWrite(call, positional[0], call)
        elif isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self":
            owner = next((a for a in self.module.ancestors(call) if isinstance(a, cst.ClassDef)), None)
            if owner is not None and func.attr.value in self._attributes_of(owner):
                yield InplaceWrite(call, positional[0], call)

    def _method_writes(self, call: cst.Call, name: str) -> frozenset[str]:
        """The `self.<attr>` that the method `name` of the calling class writes in place (not through `.data`)."""
        owner = next((a for a in self.module.ancestors(call) if isinstance(a, cst.ClassDef)), None)
        method = (
            next((s for s in owner.body.body if isinstance(s, cst.FunctionDef) and s.name.value == name), None)
            if owner
            else None
        )
        if method is None or not method.params.params or method.params.params[0].name.value != "self":
            return frozenset()
        if method not in self._written_attributes:
            attributes = {
                n.attr.value
                for n in walk(method.body)
                if isinstance(n, cst.Attribute) and isinstance(n.value, cst.Name) and n.value.value == "self"
            }
            roots = {f"self.{attr}": Alias(attr, TENSOR) for attr in attributes}
            flow = AliasFlow(method, roots, self.module.qualified_name)
            self._written_attributes[method] = frozenset(
                alias.root for write, alias in flow.found if not _through_data(write)
            )
        return self._written_attributes[method]

    def _inplace_module(self, construction: cst.BaseExpression) -> bool:
        """`nn.ReLU(inplace=True)`, `nn.ReLU(True)` and other `torch.nn` modules built with `inplace=True`."""
        if not isinstance(construction, cst.Call):
            return False
        qualified = self.module.qualified_name(construction.func) or ""
        if not qualified.startswith("torch.nn."):
            return False
        if inplace_by_position(construction, MODULE_INPLACE_POSITION.get(qualified.rsplit(".", 1)[-1])):
            return True
        return any(
            arg.keyword is not None
            and arg.keyword.value == "inplace"
            and isinstance(arg.value, cst.Name)
            and arg.value.value == "True"
            for arg in construction.args
        )

    def _attributes_of(self, owner: cst.ClassDef) -> frozenset[str]:
        """The `self.<attr>` a class assigns only `torch.nn` modules built with `inplace=True`."""
        found = self._inplace_attributes.get(owner)
        if found is None:
            values: dict[str, list[cst.BaseExpression]] = {}
            for node in walk(owner.body):
                if isinstance(node, cst.Assign):
                    for target in node.targets:
                        name = dotted_name(target.target) or ""
                        if name.startswith("self.") and name.count(".") == 1:
                            values.setdefault(name[5:], []).append(node.value)
            found = frozenset(
                attr for attr, assigned in values.items() if all(self._inplace_module(v) for v in assigned)
            )
            self._inplace_attributes[owner] = found
        return found


def _positional_count(args) -> int:
    return sum(1 for arg in args if arg.keyword is None and not arg.star)


def _positional_names(call: cst.Call) -> dict[int, str]:
    """Position -> name for the arguments passed positionally as bare names or attributes (`self.weight`,
    followed until the attribute is assigned again; `x.T`/`x.data` are views, not names)."""
    found = {}
    for position, arg in enumerate(call.args):
        if arg.star or arg.keyword is not None:
            break
        if isinstance(arg.value, cst.Name):
            found[position] = arg.value.value
        elif isinstance(arg.value, cst.Attribute) and arg.value.attr.value not in ALIAS_ATTRIBUTES:
            name = dotted_name(arg.value)
            if name is not None:
                found[position] = name
    return found


def written_parameters(module: ParsedModule, function: cst.FunctionDef) -> frozenset[int]:
    """Positions of a function's parameters that its body writes in place (`def renorm_(w): w.div_(...)`),
    not through `.data` (no version check there); a parameter rebound first is a new tensor."""
    params = [p.name.value for p in function.params.params]
    flow = AliasFlow(function, {name: Alias(name, TENSOR) for name in params}, module.qualified_name)
    return frozenset(params.index(alias.root) for write, alias in flow.found if not _through_data(write))


def _result_name(module: ParsedModule, call: cst.Call) -> str:
    """The name the call's result is assigned to (`y = Fn.apply(x)`), else the call's own text."""
    parent = module.parents.get(call)
    if isinstance(parent, cst.Assign) and len(parent.targets) == 1 and isinstance(parent.targets[0].target, cst.Name):
        return parent.targets[0].target.value
    return f"{dotted_name(call.func) or 'Fn.apply'}(...)"

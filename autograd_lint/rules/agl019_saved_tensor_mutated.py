"""AGL019 saved-tensor-mutated: a tensor forward saved for backward is changed in place after `.apply`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.rule import Finding, FunctionRule
from ..core.syntax import shortened, walk
from ..facts.apply_flow import CallerWrite, Tracked, caller_writes
from ..facts.function_model import FunctionClass, Method, function_model
from ..facts.value_kinds import ValueKinds

TORCH_MESSAGE = "one of the variables needed for gradient computation has been modified by an inplace operation"


@dataclass(frozen=True)
class SavedTensors:
    """What forward (or setup_context) passes to save_for_backward as written: the output, inputs by position."""

    output: bool
    inputs: dict[int, str]  # position of the apply argument -> forward's parameter name
    output_indices: tuple[int, ...] = ()  # saved elements of a returned tuple (`return out, idx`)


@dataclass(frozen=True)
class MutatedSaved:
    caller: CallerWrite
    saved_as: str  # the forward-side name saved


class SavedTensorMutated(FunctionRule[MutatedSaved]):
    code = "AGL019"
    name = "saved-tensor-mutated"
    severity = Severity.ERROR
    summary = "an .apply argument or result that forward saved for backward is modified in place before backward"

    def check(self, module: ParsedModule) -> Iterator[Finding[MutatedSaved]]:
        saved: dict[str, SavedTensors] = {}
        for function_class in function_model(module):
            if function_class.apply_calls or function_class.partial_applies:
                found = saved_tensors(module, function_class)
                if found is not None and (found.output or found.inputs or found.output_indices):
                    saved[function_class.name] = found

        def select(function_class: FunctionClass, call: cst.Call) -> tuple[bool | tuple[int, ...], list[int]]:
            found = saved[function_class.name]
            return found.output or found.output_indices, sorted(found.inputs)

        classes = [c for c in function_model(module) if c.name in saved]
        for caller in caller_writes(module, classes, select):
            found = saved[caller.tracked.function_class.name]
            tracked = caller.tracked
            saved_as = "its output" if tracked.position is None else found.inputs[tracked.position]
            subject = MutatedSaved(caller, saved_as)
            yield Finding(caller.write.node, *_message(tracked, caller.write.text, saved_as), subject=subject)


def saved_tensors(module: ParsedModule, function_class: FunctionClass) -> SavedTensors | None:
    """Which of forward's inputs, and whether its output, reach save_for_backward unchanged (bare names
    only: a parameter never rebound, the name every return gives back, setup_context's `output` or names
    unpacked from `inputs`). None when forward's inputs cannot be lined up with apply's arguments."""
    forward = function_class.forward
    inputs = function_class.forward_inputs()
    if forward is None or inputs is None or inputs.has_varargs or not function_class.hierarchy_known:
        return None
    output, saved, indices = False, {}, set()
    for method in function_class.saving_methods():
        kinds = ValueKinds(function_class, method, module)
        elements = _returned_tuple_names(kinds) if method.name == "forward" else {}
        positions = _input_positions(method, inputs.names)
        for call in method.save_calls:
            for arg in call.args:
                value = arg.value
                if arg.star:
                    continue
                position = kinds.input_index(value)
                if isinstance(value, cst.Name):
                    name = value.value
                    if name in positions and kinds.is_unchanged_input(name):
                        position = positions[name]
                    elif name in kinds.output_names and _single_output(module, function_class, method, kinds, name):
                        output = True
                    elif name in elements and len(kinds.bindings.get(name, [])) == 1:
                        indices.add(elements[name])
                if position is not None and position < len(inputs.names):
                    saved[position] = inputs.names[position]
    return SavedTensors(output, saved, tuple(sorted(indices)))


def _returned_tuple_names(kinds: ValueKinds) -> dict[str, int]:
    """name -> index for names every `return` of forward puts at the same place of a tuple."""
    returns = kinds.returns
    tuples = [r for r in returns if isinstance(r, cst.Tuple)]
    if not returns or len(tuples) != len(returns) or len({len(r.elements) for r in tuples}) != 1:
        return {}
    found = {}
    for index, element in enumerate(tuples[0].elements):
        value = element.value
        same = [r.elements[index].value for r in tuples]
        if isinstance(value, cst.Name) and all(isinstance(v, cst.Name) and v.value == value.value for v in same):
            found[value.value] = index
    return found


def _input_positions(method: Method, names: tuple[str, ...]) -> dict[str, int]:
    """Forward's parameters by position; in setup_context, the names unpacked from `inputs`."""
    if method.name != "setup_context":
        return {name: index for index, name in enumerate(names)}
    params = method.data_params
    if not params:
        return {}
    inputs_name = params[0].name.value
    found: dict[str, int] = {}
    for node in walk(method.node.body, into_functions=False):
        if isinstance(node, cst.Assign) and isinstance(node.value, cst.Name) and node.value.value == inputs_name:
            for target in node.targets:
                elements = target.target.elements if isinstance(target.target, (cst.Tuple, cst.List)) else []
                if not any(isinstance(e, cst.StarredElement) for e in elements):
                    for index, element in enumerate(elements):
                        if isinstance(element.value, cst.Name):
                            found[element.value.value] = index
    return found


def _single_output(
    module: ParsedModule, function_class: FunctionClass, method: Method, kinds: ValueKinds, name: str
) -> bool:
    """`name` is the whole output, and the output is one tensor (so `y = Fn.apply(...)` is it)."""
    if not kinds.is_whole_output(name):
        return False
    if method.name == "setup_context":
        forward = function_class.forward
        returns = ValueKinds(function_class, forward, module).returns if forward is not None else []
        return bool(returns) and not any(isinstance(r, (cst.Tuple, cst.List)) for r in returns)
    return True


def _message(tracked: Tracked, text: str, saved_as: str) -> tuple[str, str]:
    cls = tracked.function_class.name
    if tracked.is_output:
        output = "the output" if tracked.output_index is None else f"output {tracked.output_index}"
        what = f"`{tracked.name}`, {output} of {tracked.applied} that {cls}.forward saves for backward"
        fix = f"Use the out-of-place op, or clone the output first (`{cls}.apply(...).clone()`)."
    else:
        what = f"`{tracked.name}` after passing it to {tracked.applied}, whose forward saves it (as `{saved_as}`) for backward"
        fix = f"Use the out-of-place op, or pass a copy (`{tracked.name}.clone()`) to `{cls}.apply`."
    return (
        f"`{shortened(text, 25)}` changes `{shortened(tracked.name, 20)}` after {cls}.forward saved it",
        f"It changes {what}, before backward has used it: backward then raises '{TORCH_MESSAGE}' "
        f"(the tensor's version moved past the one saved). {fix}",
    )

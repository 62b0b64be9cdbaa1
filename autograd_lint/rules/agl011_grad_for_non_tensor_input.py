"""AGL011 grad-for-non-tensor-input: backward returns a gradient where forward received a number, string, flag or None.

The division of labour with AGL002: torch checks the number of gradients first and the kind of each
input second. So for every (return, call shape) pair whose count torch would reject, AGL002 speaks and
this rule is silent; only where the count is accepted does this rule look at the positions.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.rule import Finding
from ..core.scopes import bindings
from ..core.syntax import code_of, is_none, short_code, shortened, walk
from ..facts.function_model import FunctionClass, Method
from ..facts.gradient_returns import ReturnedValues, returned_values
from ..facts.value_kinds import (
    NON_TENSOR,
    NONE,
    TENSOR,
    UNKNOWN,
    CallerKinds,
    Kind,
    annotation_kind,
    literal_kind,
    names_used_as_tensors,
    used_as_tensor,
)
from .base import FunctionClassRule

NOT_A_TENSOR = (NONE, NON_TENSOR)
# What the harness passes for a non-tensor whose value the source does not spell out, by annotation.
STAND_INS = {"int": ("1", "2"), "float": ("0.5", "1.0"), "bool": ("True", "False")}
DEFAULT_STAND_INS = ("1", "0.5", "2")
GUARD_WORDS = ("needs_input_grad", "isinstance", "is_tensor", "requires_grad")


@dataclass(frozen=True)
class Bound:
    """What torch binds to one forward input at one call shape."""

    kind: Kind
    shown: str  # for the message: "`0.5`", "None", "`self.scale`"
    values: tuple[str, ...]  # source text the harness may pass for a non-tensor
    spelled: bool = False  # the values are what the source says, not stand-ins
    omitted: bool = False  # the call leaves it out and torch binds the default (setup_context)


@dataclass(frozen=True)
class CallShape:
    call: cst.Call | None  # None: no call site in the module, the signature's own word
    inputs: tuple[Bound, ...]  # one per input torch sees at this call


@dataclass(frozen=True)
class NonTensorGradient:
    function_class: FunctionClass
    position: int  # 0-based index among forward's inputs
    shapes: tuple[CallShape, ...]  # the call shapes at which the input is not a tensor
    reported_before: tuple[int, ...]  # earlier positions of the same return reported too (0-based)


class GradForNonTensorInput(FunctionClassRule[NonTensorGradient]):
    code = "AGL011"
    name = "grad-for-non-tensor-input"
    severity = Severity.ERROR
    summary = "backward returns a gradient for an input that is a Python number, string, flag or None at the call sites"
    only_reachable_backward = True

    def check_class(self, function_class: FunctionClass, module: ParsedModule) -> Iterator[Finding[NonTensorGradient]]:
        yield from self._check_class(module, function_class)

    def _check_class(self, module: ParsedModule, function_class: FunctionClass) -> Iterator[Finding]:
        contract = function_class.gradient_contract()
        if contract is None:
            return
        forward, backward, inputs = contract
        shapes = _call_shapes(module, function_class, forward)
        if not any(bound.kind in NOT_A_TENSOR for shape in shapes for bound in shape.inputs):
            return
        facts = _Backward(module, function_class, backward)
        names = inputs.names
        flags, facts.derived = _ctx_flags(function_class, forward)
        facts.flags = flags
        for returned in returned_values(backward):
            if returned.is_list:
                continue  # one object, whatever it holds: AGL002's
            conditions = facts.flag_conditions(returned.node, flags)
            reported: list[int] = []
            for position, element in enumerate(returned.elements):
                hits = sorted(
                    (
                        shape
                        for shape in shapes
                        if position < len(shape.inputs)
                        and shape.inputs[position].kind in NOT_A_TENSOR
                        and _count_accepted(returned, len(shape.inputs))
                        and _takes_branch(shape, conditions)
                    ),
                    key=lambda shape: not shape.inputs[position].spelled,  # show and run spelled-out values first
                )
                if (
                    not hits
                    or not facts.surely_not_none(element)
                    or facts.guarded(returned.node, element, position, names[position])
                ):
                    continue
                subject = NonTensorGradient(function_class, position, tuple(hits), tuple(reported))
                yield Finding(
                    element,
                    *_message(function_class, names[position], position, hits[0], _branch(names, conditions)),
                    subject=subject,
                )
                reported.append(position)


def _ctx_flags(function_class: FunctionClass, forward: Method) -> tuple[dict[str, int], dict[str, set[int]]]:
    """(flags, derived): ctx attribute -> the forward input it holds as passed (`ctx.sigmoid = sigmoid`,
    a caller's choice backward may branch on); ctx attribute -> the inputs a value computed from them
    tells about (`ctx.has_scale = scale is not None`: a test of it is a test of `scale`)."""
    flags: dict[str, int] = {}
    derived: dict[str, set[int]] = {}
    names = [p.name.value for p in forward.data_params]
    for method in function_class.saving_methods():
        ctx = method.ctx_name
        positions = (
            dict(zip(names, range(len(names)))) if method.name == "forward" else _unpacked_inputs(method, len(names))
        )
        for node in walk(method.node.body, into_functions=False):
            if not isinstance(node, cst.Assign):
                continue
            for target in node.targets:
                attr = target.target
                if not (
                    isinstance(attr, cst.Attribute) and isinstance(attr.value, cst.Name) and attr.value.value == ctx
                ):
                    continue
                if isinstance(node.value, cst.Name) and node.value.value in positions:
                    flags[attr.attr.value] = positions[node.value.value]
                else:
                    mentioned = {
                        positions[n.value] for n in walk(node.value) if isinstance(n, cst.Name) and n.value in positions
                    }
                    if mentioned:
                        derived.setdefault(attr.attr.value, set()).update(mentioned)
    return flags, derived


def _unpacked_inputs(method: Method, count: int) -> dict[str, int]:
    """setup_context: name -> input position for `a, b = inputs`."""
    params = method.data_params
    found: dict[str, int] = {}
    if not params:
        return found
    for node in walk(method.node.body, into_functions=False):
        if (
            isinstance(node, cst.Assign)
            and isinstance(node.value, cst.Name)
            and node.value.value == params[0].name.value
        ):
            target = node.targets[0].target
            if isinstance(target, (cst.Tuple, cst.List)):
                for index, element in enumerate(target.elements[:count]):
                    if isinstance(element.value, cst.Name):
                        found[element.value.value] = index
    return found


TRUTH, IS_NONE = "truth", "is None"
Condition = tuple[int, str, bool]  # (input position, TRUTH or IS_NONE, the answer the path needs)


def _takes_branch(shape: CallShape, conditions: list[Condition]) -> bool:
    """Whether the call shape surely takes the path to a return (`if ctx.sigmoid:` with the call's
    `sigmoid` spelled out, past `if ctx.scale is None: return ..., None` with a number passed); a flag
    the source does not spell out is the caller's choice."""
    for position, test, wanted in conditions:
        if position >= len(shape.inputs):
            return False
        bound = shape.inputs[position]
        if test == IS_NONE:
            if bound.kind is UNKNOWN:
                return False
            answer = bound.kind is NONE
        elif bound.kind is NONE:
            answer = False
        elif bound.spelled and bound.values:
            try:
                answer = bool(ast.literal_eval(bound.values[0]))
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return False
        else:
            return False
        if answer is not wanted:
            return False
    return True


def _count_accepted(returned: ReturnedValues, count: int) -> bool:
    """Whether torch accepts this many gradients for `count` inputs (extra trailing Nones are fine);
    when it does not, the count is what fails first, and that is AGL002's finding."""
    if returned.count < count:
        return False
    return all(is_none(extra) for extra in returned.elements[count:])


# ---- what each call site binds to each input ----


def _call_shapes(module: ParsedModule, function_class: FunctionClass, forward: Method) -> list[CallShape]:
    params = forward.data_params
    names = [p.name.value for p in params]
    caller = CallerKinds(module)
    sites = []  # (call, what it binds to each input torch sees, with its kind)
    for call in function_class.apply_calls:
        if any(arg.star for arg in call.args):
            continue
        positional = [arg.value for arg in call.args if arg.keyword is None]
        keywords = {arg.keyword.value: arg.value for arg in call.args if arg.keyword is not None}
        if len(positional) > len(names) or not set(keywords) <= set(names):
            continue
        passed = [positional[i] if i < len(positional) else keywords.get(name) for i, name in enumerate(names)]
        if any(value is None and param.default is None for value, param in zip(passed, params)):
            continue  # forward itself raises TypeError
        if function_class.uses_setup_context:
            count = len(names)  # defaults are bound before torch counts
        else:
            count = len(call.args)
            if any(value is None for value in passed[:count]):
                continue  # a keyword skipping an optional argument: how torch counts it is not known here
        sites.append(
            (call, [(value, caller.kind(value, call) if value is not None else None) for value in passed[:count]])
        )
    # A literal default speaks only when no call site does; an annotation always.
    signature = [_bound_by_signature(forward, param, use_default=not function_class.apply_calls) for param in params]
    shapes = [
        CallShape(
            call,
            tuple(
                _bound_at_call(caller, call, forward, params[i], value, kind, signature[i])
                for i, (value, kind) in enumerate(bound)
            ),
        )
        for call, bound in sites
    ]
    if not function_class.apply_calls:
        shapes.append(CallShape(None, tuple(signature)))
    return shapes


def _bound_at_call(
    caller: CallerKinds, call: cst.Call, forward: Method, param: cst.Param, value, kind: Kind | None, signature: Bound
) -> Bound:
    if value is None or kind is None:  # omitted (no kind then): setup_context binds the default
        default = param.default
        assert default is not None  # call sites that leave out a required input are skipped
        kind = literal_kind(default)
        if kind not in NOT_A_TENSOR:
            return Bound(UNKNOWN, "", ())
        return Bound(kind, _shown_default(param), (code_of(default).strip(),), spelled=True, omitted=True)
    if kind is NON_TENSOR and used_as_tensor(forward, param.name.value):
        return Bound(UNKNOWN, "", ())  # forward would fail on it before backward runs (None is usually tested first)
    if kind is UNKNOWN:
        if signature.kind is NON_TENSOR:
            return Bound(NON_TENSOR, f"`{short_code(value, 60)}` ({signature.shown})", signature.values)
        return Bound(UNKNOWN, "", ())
    if kind is NONE:
        return Bound(NONE, "None", ("None",), spelled=True)
    if kind is NON_TENSOR:
        folded = caller.literal(value, call)
        values = (folded,) if folded is not None else _stand_ins(param)
        shown = f"`{short_code(value, 60)}`" + (
            f" (= {folded})" if folded is not None and folded != code_of(value).strip() else ""
        )
        return Bound(NON_TENSOR, shown, values, spelled=folded is not None)
    return Bound(kind, "", ())


def _bound_by_signature(forward: Method, param: cst.Param, use_default: bool) -> Bound:
    """A non-tensor by forward's own word: a scalar annotation; or, with `use_default` (the module
    has no call site), a literal default other than None that forward does not use as a tensor."""
    name = param.name.value
    annotated = annotation_kind(param.annotation)
    if annotated is NON_TENSOR and name in names_used_as_tensors(forward.node):
        return Bound(
            UNKNOWN, "", ()
        )  # `threshold: float` that forward passes to torch.sigmoid: the annotation is wrong
    if annotated is NON_TENSOR and param.annotation is not None:
        return Bound(
            NON_TENSOR, f"`{name}` is annotated `{code_of(param.annotation.annotation).strip()}`", _stand_ins(param)
        )
    if annotated is UNKNOWN and param.default is not None and literal_kind(param.default) is NON_TENSOR:
        if use_default and not used_as_tensor(forward, name):
            return Bound(NON_TENSOR, _shown_default(param), _stand_ins(param))
    return Bound(TENSOR if annotated is TENSOR else UNKNOWN, "", ())


def _shown_default(param: cst.Param) -> str:
    assert param.default is not None  # asked only about a parameter with a default
    return f"`{param.name.value}` defaults to `{code_of(param.default).strip()}`"


def _stand_ins(param: cst.Param) -> tuple[str, ...]:
    if param.default is not None and literal_kind(param.default) is NON_TENSOR:
        return (code_of(param.default).strip(),)
    if param.annotation is not None:
        return STAND_INS.get(code_of(param.annotation.annotation).strip(), DEFAULT_STAND_INS)
    return DEFAULT_STAND_INS


# ---- what backward returns ----


class _Backward:
    """Whether a returned element is surely not None, and whether it is guarded for its input."""

    def __init__(self, module: ParsedModule, function_class: FunctionClass, backward: Method):
        self.module = module
        self.method = backward
        self.bound = bindings(backward.node)
        self.ctx = backward.ctx_name
        self.cls = backward.cls_name
        # With set_materialize_grads(False) an unused output's gradient arrives as None.
        self.materialized = "set_materialize_grads" not in module.source
        body = list(walk(backward.node.body, into_functions=False))
        self.ifs = [node for node in body if isinstance(node, cst.If)]
        self.derived: dict[str, set[int]] = {}  # ctx attribute -> inputs it was computed from (_ctx_flags)
        self.flags: dict[str, int] = {}  # ctx attribute -> the input it holds as passed (_ctx_flags)
        # `needs_x, needs_w = ctx.needs_input_grad` and `need_w = ctx.needs_input_grad[1]`
        self.need_names = {
            name
            for node in body
            if isinstance(node, cst.Assign) and "needs_input_grad" in code_of(node.value)
            for target in node.targets
            for name in _names_in(target.target)
        }

    def surely_not_none(self, expr: cst.BaseExpression, seen: frozenset[str] = frozenset()) -> bool:
        if isinstance(expr, cst.Name):
            if expr.value in ("True", "False"):
                return True
            nodes = self.bound.get(expr.value)
            if expr.value == "None" or not nodes or expr.value in seen:
                return False
            return all(self._binding_not_none(expr.value, node, seen | {expr.value}) for node in nodes)
        if isinstance(expr, (cst.BaseNumber, cst.BaseString, cst.BinaryOperation, cst.UnaryOperation, cst.Comparison)):
            return True
        if isinstance(expr, (cst.List, cst.Tuple, cst.Dict, cst.Set, cst.Lambda, cst.ListComp)):
            return True
        if isinstance(expr, cst.BooleanOperation):
            return self.surely_not_none(expr.left, seen) and self.surely_not_none(expr.right, seen)
        if isinstance(expr, cst.IfExp):
            return self.surely_not_none(expr.body, seen) and self.surely_not_none(expr.orelse, seen)
        if isinstance(expr, cst.Subscript):
            return self._is_gradient_param(expr.value)
        if isinstance(expr, cst.Call):
            return self._call_not_none(expr, seen)
        return False  # attributes (`ctx.grad_w` may be None), and the rest

    def _binding_not_none(self, name: str, node: cst.CSTNode, seen: frozenset[str]) -> bool:
        if isinstance(node, cst.Param):
            return self._is_gradient_param(cst.Name(name))
        if isinstance(node, cst.Assign):
            if all(isinstance(t.target, cst.Name) for t in node.targets):
                return self.surely_not_none(node.value, seen)
            return False  # unpacked: `x, w = ctx.saved_tensors` may hold None
        if isinstance(node, cst.AugAssign):
            return True  # arithmetic never gives None
        if isinstance(node, cst.AnnAssign):
            return node.value is not None and self.surely_not_none(node.value, seen)
        return False

    def _is_gradient_param(self, expr: cst.BaseExpression) -> bool:
        if not (isinstance(expr, cst.Name) and self.materialized):
            return False
        if expr.value in (self.ctx, self.cls):
            return False
        return any(p.name.value == expr.value for p in self.method.params)

    def _call_not_none(self, call: cst.Call, seen: frozenset[str]) -> bool:
        func = call.func
        if isinstance(func, cst.Name):
            return func.value in ("float", "int", "abs", "len", "bool")
        if not isinstance(func, cst.Attribute) or func.attr.value in ("get", "pop", "setdefault"):
            return False
        if (self.module.qualified_name(func.value) or "").split(".")[0] == "torch":
            return True
        receiver = func.value
        if isinstance(receiver, cst.Name) and receiver.value in (self.ctx, self.cls):
            return False
        return self.surely_not_none(receiver, seen)

    def guarded(self, returned: cst.Return, element: cst.BaseExpression, position: int, name: str) -> bool:
        """Whether a test on this input (`ctx.needs_input_grad[i]`, `bias is not None`, `ctx.has_bias`,
        `isinstance`) decides this return or this element's value: then the author handled the case."""
        if any(self._guard_test(node.test, name, position) for node in self._enclosing_ifs(returned)):
            return True
        for node in self.ifs:  # `if not ctx.needs_input_grad[2]: return gx, gw, None` before it
            if self.module.comes_before(node, returned) and self._guard_test(node.test, name, position):
                if any(isinstance(n, (cst.Return, cst.Raise)) for n in walk(node.body, into_functions=False)):
                    return True
        if isinstance(element, cst.Name):
            for binding in self.bound.get(element.value, []):
                around_return = set(self._enclosing_ifs(returned))
                if any(
                    self._guard_test(node.test, name, position)
                    or (node not in around_return and self._flag_test(node.test, self.flags, True) is not None)
                    for node in self._enclosing_ifs(binding)
                ):  # a value computed only under a test of the input, or of a flag the return is not under
                    return True
        return False

    def flag_conditions(self, returned: cst.Return, flags: dict[str, int]) -> list[Condition]:
        """The tests of stored flags (`ctx.flag = flag` in forward) on the path to `returned`: each
        enclosing `if ctx.flag:` / `if not ctx.flag:` / `if ctx.flag is None:` (or its else), and each
        earlier such `if` whose body returns (the path goes on only when its test fails)."""
        found = []
        child: cst.CSTNode = returned
        ancestors = []
        for ancestor in self.module.ancestors(returned):
            if ancestor is self.method.node:
                break
            ancestors.append(ancestor)
            if isinstance(ancestor, cst.If):
                condition = self._flag_test(ancestor.test, flags, ancestor.body is child)
                if condition is not None:
                    found.append(condition)
            child = ancestor
        for node in self.ifs:
            if (
                node in ancestors
                or not self.module.comes_before(node, returned)
                or self.module.parents.get(node) not in ancestors
            ):
                continue
            if any(isinstance(n, (cst.Return, cst.Raise)) for n in walk(node.body, into_functions=False)):
                condition = self._flag_test(node.test, flags, False)
                if condition is not None:
                    found.append(condition)
        return found

    def _flag_test(self, test: cst.BaseExpression, flags: dict[str, int], wanted: bool) -> Condition | None:
        if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
            test, wanted = test.expression, not wanted
        kind = TRUTH
        if isinstance(test, cst.Comparison) and len(test.comparisons) == 1 and is_none(test.comparisons[0].comparator):
            operator = test.comparisons[0].operator
            if not isinstance(operator, (cst.Is, cst.IsNot)):
                return None
            test, kind, wanted = test.left, IS_NONE, wanted if isinstance(operator, cst.Is) else not wanted
        attribute = self._flag_attribute(test)
        return (flags[attribute.attr.value], kind, wanted) if attribute is not None else None

    def _flag_attribute(self, test: cst.BaseExpression) -> cst.Attribute | None:
        test = self._flag_local(test)
        if isinstance(test, cst.Attribute) and self._is_flag(test):
            return test
        return None

    def _flag_local(self, test: cst.BaseExpression) -> cst.BaseExpression:
        """`use_sigmoid` bound once to `ctx.sigmoid` stands for it."""
        if isinstance(test, cst.Name):
            nodes = self.bound.get(test.value, [])
            if len(nodes) == 1 and isinstance(nodes[0], cst.Assign) and isinstance(nodes[0].value, cst.Attribute):
                if len(nodes[0].targets) == 1 and isinstance(nodes[0].targets[0].target, cst.Name):
                    return nodes[0].value
        return test

    def _is_flag(self, node: cst.Attribute) -> bool:
        """`ctx.learn_step` holding an input as passed: which calls take its branch is decided by
        the call sites (flag_conditions), not by its name."""
        return isinstance(node.value, cst.Name) and node.value.value == self.ctx and node.attr.value in self.flags

    def _enclosing_ifs(self, node: cst.CSTNode) -> Iterator[cst.If]:
        for ancestor in self.module.ancestors(node):
            if ancestor is self.method.node:
                return
            if isinstance(ancestor, cst.If):
                yield ancestor

    def _guard_test(self, test: cst.BaseExpression, name: str, position: int | None = None) -> bool:
        if position is not None and any(
            isinstance(n, cst.Attribute)
            and isinstance(n.value, cst.Name)
            and n.value.value == self.ctx
            and position in self.derived.get(n.attr.value, ())
            for n in [test, *walk(test)]
        ):
            return True  # `if not ctx.has_scale:` with `ctx.has_scale = scale is not None`
        text = code_of(test)
        if any(word in text for word in GUARD_WORDS):
            return True
        word = re.compile(rf"(^|_){re.escape(name)}(_|$)")
        nodes = [test, *walk(test)]
        flag_names = {id(n.attr) for n in nodes if isinstance(n, cst.Attribute) and self._is_flag(n)}
        for node in nodes:
            if (
                isinstance(node, cst.Name)
                and id(node) not in flag_names
                and (node.value in self.need_names or word.search(node.value))
            ):
                return True
            if isinstance(node, cst.Attribute) and word.search(node.attr.value) and id(node.attr) not in flag_names:
                return True
            if (
                isinstance(node, cst.Comparison)
                and self._flag_attribute(node.left) is None
                and any(isinstance(c.operator, (cst.Is, cst.IsNot)) and is_none(c.comparator) for c in node.comparisons)
            ):
                return True
        return False


def _names_in(target: cst.BaseExpression) -> Iterator[str]:
    if isinstance(target, cst.Name):
        yield target.value
    elif isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            yield from _names_in(element.value)


# ---- message and harness ----


def _branch(names: tuple[str, ...], conditions: list[Condition]) -> str:
    """` with `learn` true, which selects this return`: the flags the call passes that lead to the return."""
    shown = ", ".join(
        f"`{names[i]}` {('None' if wanted else 'not None') if test == IS_NONE else ('true' if wanted else 'false')}"
        for i, test, wanted in conditions
        if i < len(names)
    )
    return f" with {shown}, which selects this return" if shown else ""


def _message(
    function_class: FunctionClass, name: str, position: int, shape: CallShape, branch: str = ""
) -> tuple[str, str]:
    cls = function_class.name
    p = position + 1
    bound = shape.inputs[position]
    if shape.call is not None and bound.kind is NONE:
        where = f"The call `{short_code(shape.call, 60)}` passes None for `{name}`{branch}"
    elif shape.call is not None:
        where = f"The call `{short_code(shape.call, 60)}` passes {bound.shown} for `{name}`, not a tensor{',' + branch if branch else ''}"
    else:
        where = f"The input is {bound.shown}, not a tensor"
    fix = (
        f"Return None there, or guard it with `if ctx.needs_input_grad[{position}]`."
        if bound.kind is NONE
        else "Return None at that position."
    )
    what = "None at a call" if bound.kind is NONE else "not a tensor"
    return (
        f"{cls}.backward returns a gradient for `{shortened(name, 30)}` (position {p}), which is {what}",
        f"{where}: torch raises 'function {cls}Backward "
        f"returned a gradient different than None at position {p}, but the corresponding forward input was not "
        f"a Variable'. {fix}",
    )

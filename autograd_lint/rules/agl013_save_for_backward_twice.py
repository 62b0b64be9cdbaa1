"""AGL013 save-for-backward-twice: a second `save_for_backward` replaces what the first one saved."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.rule import Finding
from ..core.syntax import is_none, normalized_code, short_code, walk
from ..facts.function_model import FunctionClass, Method, is_save_call
from .base import FunctionClassRule


def _saves_something(call: cst.Call) -> bool:
    return any(arg.star or not is_none(arg.value) for arg in call.args)


@dataclass(frozen=True)
class Replacement:
    function_class: FunctionClass
    method: Method
    call: cst.Call  # the call that replaces
    previous: cst.Call  # what it replaces (itself, in a loop)


class SaveForBackwardTwice(FunctionClassRule[Replacement]):
    code = "AGL013"
    name = "save-for-backward-twice"
    severity = Severity.ERROR
    summary = "more than one save_for_backward on one path through forward/setup_context: only the last call is kept"
    only_reachable_backward = True  # torch never calls backward: nothing reads what was saved

    def check_class(self, function_class: FunctionClass, module: ParsedModule) -> Iterator[Finding[Replacement]]:
        for method in function_class.saving_methods():
            calls = method.save_calls
            if len(calls) < 2 and not any(_in_loop(module, call, method) for call in calls):
                continue
            paths = _Paths(method.ctx_name)
            paths.block(method.node.body.body, {None})
            for call, previous in paths.replacing.items():
                if (
                    previous is not call
                    and _keeps_everything(call, previous)
                    and _unpacked_count(function_class) in (None, len(call.args))
                ):
                    continue  # the first call is only redundant: the last one saves all it saved
                subject = Replacement(function_class, method, call, previous)
                yield Finding(call, *_message(module, subject), subject=subject)


def _keeps_everything(call: cst.Call, previous: cst.Call) -> bool:
    """`save_for_backward(x, w)` then `save_for_backward(x, w, h)`: every tensor the first call saved
    is saved again by the last one, so nothing is lost and backward unpacks what the last one kept."""
    if any(arg.star for arg in (*call.args, *previous.args)):
        return False
    kept = {normalized_code(arg.value) for arg in call.args}
    return all(is_none(arg.value) or normalized_code(arg.value) in kept for arg in previous.args)


def _unpacked_count(function_class: FunctionClass) -> int | None:
    """How many names backward unpacks `ctx.saved_tensors` into (`x, w, h = ctx.saved_tensors`)."""
    backward = function_class.backward
    if backward is None:
        return None
    for node in walk(backward.node.body, into_functions=False):
        if (
            isinstance(node, cst.Assign)
            and isinstance(node.value, cst.Attribute)
            and node.value.attr.value in ("saved_tensors", "saved_variables")
            and isinstance(node.targets[0].target, (cst.Tuple, cst.List))
        ):
            elements = node.targets[0].target.elements
            if not any(isinstance(e, cst.StarredElement) for e in elements):
                return len(elements)
    return None


def _in_loop(module: ParsedModule, node: cst.CSTNode, method: Method) -> bool:
    for ancestor in module.ancestors(node):
        if ancestor is method.node:
            return False
        if isinstance(ancestor, (cst.For, cst.While)):
            return True
    return False


def _message(module: ParsedModule, replacement: Replacement) -> tuple[str, str]:
    call, previous = replacement.call, replacement.previous
    owner = f"{replacement.function_class.name}.{replacement.method.name}"
    if previous is call:
        where, why = "runs in a loop", "Each iteration replaces what the previous one saved"
    else:
        line = module.position(previous).start.line
        where = f"replaces what line {line} saved"
        why = f"It replaces what `{short_code(previous)}` on line {line} saved on the same path"
    return (
        f"this save_for_backward in {owner} {where}",
        f"{why}: torch keeps only the last call's tensors, so "
        "backward unpacks too few (ValueError) or indexes the wrong ones (silently wrong gradients). "
        "Save every tensor in one call.",
    )


class _Paths:
    """Walks a body path by path. A state is the set of possible last saving calls (None: nothing
    saved yet) on the paths reaching a point; a call reached while some path has already saved is
    recorded in `replacing` with the call it replaces."""

    def __init__(self, ctx: str | None):
        self.ctx = ctx
        self.replacing: dict[cst.Call, cst.Call] = {}
        self._breaks: set = set()
        self._continues: set = set()

    def block(self, body: Sequence[cst.BaseStatement] | Sequence[cst.BaseSmallStatement], state: set) -> set:
        for statement in body:
            if not state:
                break
            if isinstance(statement, cst.BaseSmallStatement):  # a one-line suite: `if flag: ctx.save_for_backward(y)`
                state = self._small(statement, state)
            else:
                state = self.statement(statement, state)
        return state

    def _expressions(self, node: cst.CSTNode | None, state: set) -> set:
        if node is None:
            return state
        nodes = [node, *walk(node, into_functions=False)]
        for found in nodes:
            if is_save_call(found, self.ctx):
                state = self._call(found, state)
        return state

    def _call(self, call: cst.Call, state: set) -> set:
        earlier = [previous for previous in state if previous is not None]
        if earlier and call not in self.replacing:
            self.replacing[call] = call if call in earlier else earlier[0]
        return {call} if _saves_something(call) else {None}

    def statement(self, statement: cst.BaseStatement, state: set) -> set:
        if isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                state = self._small(small, state)
                if not state:
                    break
            return state
        if isinstance(statement, cst.If):
            state = self._expressions(statement.test, state)
            taken = self.block(statement.body.body, state)
            orelse = statement.orelse
            if isinstance(orelse, cst.If):
                return taken | self.statement(orelse, state)
            if isinstance(orelse, cst.Else):
                return taken | self.block(orelse.body.body, state)
            return taken | state
        if isinstance(statement, (cst.For, cst.While)):
            return self._loop(statement, state)
        if isinstance(statement, cst.With):
            for item in statement.items:
                state = self._expressions(item.item, state)
            return self.block(statement.body.body, state)
        if isinstance(statement, (cst.Try, cst.TryStar)):
            after_body = self.block(statement.body.body, state)
            may_raise = state | after_body
            handled = set()
            for handler in statement.handlers:
                handled |= self.block(handler.body.body, may_raise)
            if statement.orelse is not None:
                after_body = self.block(statement.orelse.body.body, after_body)
            out = after_body | handled
            if statement.finalbody is not None:
                self.block(statement.finalbody.body.body, may_raise | out)  # also on the raising paths
                out = self.block(statement.finalbody.body.body, out) if out else out
            return out
        if isinstance(statement, cst.Match):
            state = self._expressions(statement.subject, state)
            out = set(state)
            for case in statement.cases:
                out |= self.block(case.body.body, state)
            return out
        return state  # nested def/class: not this method's path

    def _small(self, small: cst.BaseSmallStatement, state: set) -> set:
        if isinstance(small, cst.Return):
            self._expressions(small.value, state)
            return set()
        if isinstance(small, cst.Raise):
            return set()
        if isinstance(small, cst.Break):
            self._breaks |= state
            return set()
        if isinstance(small, cst.Continue):
            self._continues |= state
            return set()
        return self._expressions(small, state)

    def _loop(self, loop: cst.For | cst.While, state: set) -> set:
        head = self._expressions(loop.iter if isinstance(loop, cst.For) else loop.test, state)
        outer = self._breaks, self._continues
        self._breaks, self._continues = set(), set()
        entry = set(head)
        while True:  # to a fixed point: the body may run again with what an iteration left
            self._continues = set()
            end = self.block(loop.body.body, entry) | self._continues
            if end <= entry:
                break
            entry |= end
        breaks = self._breaks
        self._breaks, self._continues = outer
        runs_forever = isinstance(loop, cst.While) and isinstance(loop.test, cst.Name) and loop.test.value == "True"
        finished = set() if runs_forever else entry
        if loop.orelse is not None and finished:
            finished = self.block(loop.orelse.body.body, finished)
        return finished | breaks

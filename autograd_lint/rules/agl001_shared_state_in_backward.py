"""AGL001 shared-state-in-backward: backward reads state that something rewrites while the model runs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.rule import Finding
from ..core.scopes import bindings, declared_nonlocal
from ..core.syntax import assigned_names, code_of, dotted_name, string_value, walk
from ..facts.function_model import (
    DERIVATIVE_METHODS,
    FUNCTION_PROTOCOL,
    SAVING_METHODS,
    FunctionClass,
    Method,
    function_model,
)
from ..facts.runtime_writes import MUTATING_METHODS, RuntimeWrites, Write, chains_overlap
from .base import FunctionClassRule

ADVICE = (
    "Backward runs after the whole forward pass, so it sees the last value written, not the one "
    "this application used. Pass the value to apply(), keep it on ctx and return None for it."
)


class SharedStateInBackward(FunctionClassRule["SharedRead"]):
    code = "AGL001"
    name = "shared-state-in-backward"
    severity = Severity.ERROR
    summary = "backward reads a class attribute, global or closure variable that is rewritten at run time"
    only_reachable_backward = True  # torch never calls backward: whatever it reads cannot be stale

    def check_class(self, function_class: FunctionClass, module: ParsedModule) -> Iterator[Finding[SharedRead]]:
        writes = module.fact(RuntimeWrites)
        for name in DERIVATIVE_METHODS:
            method = function_class.own_methods.get(name)
            if method is not None:
                yield from self._check_method(module, writes, function_class, method)

    def _check_method(
        self, module, writes: RuntimeWrites, function_class: FunctionClass, method: Method
    ) -> Iterator[Finding]:
        local = set(bindings(method.node))
        cls_name = method.cls_name
        closure = _ClosureWrites(module, function_class)
        gradient_statements = _statements_feeding_return(method)
        computing_statements = gradient_statements | _statements_choosing_values(method)
        forward_chains = _forward_reads(module, function_class)
        # (where to report, the read, the names local there, the helper it is in or None)
        reads: list[tuple[cst.CSTNode, cst.CSTNode, set[str], cst.FunctionDef | None]] = [
            (node, node, local, None) for node in walk(method.node.body)
        ]
        # A value read through a module-level helper backward calls (`return g / _current_scale()`).
        for call, definition in function_model(module).called_functions(method):
            if module.parents.get(definition) is module.tree:
                helper_locals = set(bindings(definition))
                reads += [
                    (call, node, helper_locals, definition) for node in walk(definition.body, into_functions=False)
                ]
        reported: set[tuple[cst.CSTNode, str]] = set()
        for at, node, names, helper in reads:
            read = _read_chain(module, node, names, None if helper else cls_name, function_class.name)
            if read is None or _is_called(module, node):
                continue  # `_backend.bwd(g)`, `_KERNELS[kind](g)`: code looked up, not a value
            chain, shown = read
            if (at, chain) in reported:
                continue
            if at is not node and isinstance(at, cst.Call):  # `at`: the helper's call
                shown = f"{shown}` through `{code_of(at.func).strip()}()"  # quoted by the message: `X` through `f()`
            statement = _statement_of(module, at)
            if chain.split(".")[0] in writes.module_names:
                # `Cls.cfg` read in forward and `Cls.cfg["k"]` in backward overlap; naming the class alone does not.
                forward_reads = any(
                    chains_overlap(c, chain) or ("." in c and chains_overlap(chain, c)) for c in forward_chains
                )
                # A value forward also read matters wherever backward uses it (which inputs it rebuilds,
                # how): the two can disagree. A value only backward reads matters where it shapes the gradient.
                if statement not in (computing_statements if forward_reads else gradient_statements):
                    continue  # a debug switch or assertion in an `if` test does not change the gradient
                found = _run_time_writes(module, function_class, writes.affecting(chain))
                found = [w for w in found if helper is None or w.function is not helper]  # a cache the helper fills
                found.sort(key=_private_last)  # name the public setter a user calls in the message
                if not found:
                    continue
                applying = [w for w in found if _sets_per_application(module, function_class, w)]
                if applying:
                    message = _per_application_message(module, method, shown, applying[0], function_class)
                elif forward_reads:
                    message = _disagreement_message(module, method, shown, found[0])
                elif _backward_time_setting(module, function_class, chain, found, writes):
                    continue
                else:
                    message = _message(module, method, shown, found[0])
                reported.add((at, chain))
                subject = SharedRead(function_class, node, chain, (applying or found)[0])
                yield Finding(at, *message, subject=subject)
                continue
            if at is not node or statement not in gradient_statements:
                continue
            rebinding = closure.rebinding(chain.split(".")[0])
            if rebinding is not None:
                subject = SharedRead(function_class, node, chain, None)
                yield Finding(node, *_closure_message(module, method, shown, rebinding), subject=subject)


@dataclass(frozen=True)
class SharedRead:
    function_class: FunctionClass
    node: cst.CSTNode
    chain: str  # with `cls` resolved to the class name
    write: Write | None  # None: a closure variable


def _is_called(module: ParsedModule, node: cst.CSTNode) -> bool:
    parent = module.parents.get(node)
    if isinstance(parent, cst.Subscript) and parent.value is node:
        node, parent = parent, module.parents.get(parent)
    return isinstance(parent, cst.Call) and parent.func is node


def _statements_feeding_return(method: Method) -> set[cst.CSTNode]:
    """The statements whose values reach what backward returns: the `return`s, the assignments
    and in-place updates (`g.mul_(s)`) of names that flow into them, and `if` tests that choose
    between returns (`if MODE == "reverse": return -g`)."""
    body = [n for n in walk(method.node.body, into_functions=False)]
    feeding: set[cst.CSTNode] = {n for n in body if isinstance(n, cst.Return)}
    # An `if` whose own body returns chooses the gradient; one that only raises is a guard.
    feeding |= {
        n
        for n in body
        if isinstance(n, cst.If) and any(isinstance(r, cst.Return) for r in walk(n.body, into_functions=False))
    }
    candidates = [n for n in body if isinstance(n, (cst.Assign, cst.AugAssign, cst.AnnAssign, cst.Expr))]
    names = {name.value for statement in feeding for name in walk(_own_part(statement)) if isinstance(name, cst.Name)}
    changed = True
    while changed:
        changed = False
        for statement in candidates:
            if statement in feeding:
                continue
            if any(name in names for name in _updated_names(statement)):
                feeding.add(statement)
                names |= {name.value for name in walk(statement) if isinstance(name, cst.Name)}
                changed = True
    return feeding


def _own_part(statement: cst.CSTNode) -> cst.CSTNode:
    """What a feeding statement itself evaluates: an `if`'s test, not its whole body."""
    return statement.test if isinstance(statement, cst.If) else statement


def _updated_names(statement: cst.CSTNode) -> list[str]:
    if isinstance(statement, cst.Assign):
        return [n.value for t in statement.targets for n in assigned_names(t.target)]
    if isinstance(statement, (cst.AugAssign, cst.AnnAssign)):
        return [n.value for n in assigned_names(statement.target)]
    call = statement.value if isinstance(statement, cst.Expr) else None
    if isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute) and call.func.attr.value.endswith("_"):
        receiver = call.func.value
        if isinstance(receiver, cst.Name):
            return [receiver.value]  # `grad_input.mul_(Scale.factor)`
    return []


def _statement_of(module: ParsedModule, node: cst.CSTNode) -> cst.CSTNode | None:
    """The innermost statement evaluating `node` (for a read in an `if` test, the `if`)."""
    for ancestor in module.ancestors(node):
        if isinstance(ancestor, cst.If):
            return ancestor if any(a is ancestor.test for a in [node, *module.ancestors(node)]) else None
        if isinstance(ancestor, (cst.BaseSmallStatement, cst.BaseCompoundStatement)):
            return ancestor
    return None


def _read_chain(module: ParsedModule, node: cst.CSTNode, local: set[str], cls_name: str | None, class_name: str):
    """(chain, as written) for a read of outside state rooted at `node`, else None.

    Only the outermost expression of a read counts: `A.b.c` is one read, not three.
    """
    parent = module.parents.get(node)
    if isinstance(node, cst.Call) and dotted_name(node.func) == "getattr" and len(node.args) >= 2:
        attr = string_value(node.args[1].value)
        owner = dotted_name(node.args[0].value)
        if attr and owner and "." not in owner:
            root = _root(owner, local, cls_name, class_name)
            return (f"{root}.{attr}", f'getattr({owner}, "{attr}")') if root else None
        return None
    if isinstance(node, cst.Attribute):
        if isinstance(parent, cst.Attribute) and parent.value is node:
            return None
        if _is_store(module, node):
            return None
    elif isinstance(node, cst.Name):
        if isinstance(parent, cst.Attribute) or _is_store(module, node) or not _is_load_position(parent, node):
            return None
    else:
        return None
    dotted = dotted_name(node)
    if dotted is None:
        return None
    head, _, rest = dotted.partition(".")
    root = _root(head, local, cls_name, class_name)
    if root is None:
        return None
    return (f"{root}.{rest}" if rest else root), dotted


def _root(head: str, local: set[str], cls_name: str | None, class_name: str) -> str | None:
    if cls_name is not None and head == cls_name:
        return class_name
    if head in local:
        return None
    return head


def _is_load_position(parent, node: cst.Name) -> bool:
    if isinstance(parent, cst.Arg) and parent.keyword is node:
        return False
    if isinstance(
        parent,
        (cst.FunctionDef, cst.ClassDef, cst.Param, cst.ImportAlias, cst.AsName, cst.Global, cst.Nonlocal, cst.NameItem),
    ):
        return False
    return True


def _is_store(module: ParsedModule, node: cst.CSTNode) -> bool:
    parent = module.parents.get(node)
    if isinstance(parent, cst.AssignTarget) and parent.target is node:
        return True
    if isinstance(parent, (cst.AugAssign, cst.AnnAssign)) and parent.target is node:
        return True
    return False


class _ClosureWrites:
    """For a Function class defined inside a function: free variables that function rebinds later.

    A binding after the class statement, through `nonlocal`, or inside a loop that also re-creates
    the class changes the value every existing class's backward will read.
    """

    def __init__(self, module: ParsedModule, function_class: FunctionClass):
        self.module = module
        self.class_node = function_class.node
        self.enclosing = module.enclosing_function(function_class.node)
        self._bindings = bindings(self.enclosing) if self.enclosing is not None else {}

    def rebinding(self, name: str) -> cst.CSTNode | None:
        if self.enclosing is None or name not in self._bindings:
            return None
        for node in self._bindings[name]:
            if isinstance(node, cst.Param):
                continue
            if self.module.comes_before(self.class_node, node) or self._in_loop_around_class(node):
                return node
        for node in walk(self.enclosing.body):
            if _contains(self.module, self.class_node, node):
                continue  # the class's own forward writes once per application of a fresh class
            # A setter rebinding it through `nonlocal`, or anything mutating the container it holds.
            if isinstance(node, cst.FunctionDef) and name in declared_nonlocal(node):
                return node
            if _mutates(node, name):
                return node
        return None

    def _in_loop_around_class(self, node: cst.CSTNode) -> bool:
        for ancestor in self.module.ancestors(self.class_node):
            if ancestor is self.enclosing:
                return False
            if isinstance(ancestor, (cst.For, cst.While)) and (
                node is ancestor or _contains(self.module, ancestor, node)
            ):
                return True
        return False


def _mutates(node: cst.CSTNode, name: str) -> bool:
    """`state["k"] = v`, `state.k = v`, `state.update(...)` on the variable `name`."""
    if isinstance(node, (cst.Assign, cst.AugAssign)):
        targets = [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
        return any(isinstance(t, (cst.Subscript, cst.Attribute)) and dotted_name(t.value) == name for t in targets)
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value in MUTATING_METHODS:
        return dotted_name(node.func.value) == name
    return False


def _contains(module: ParsedModule, outer: cst.CSTNode, inner: cst.CSTNode) -> bool:
    return any(ancestor is outer for ancestor in module.ancestors(inner))


# --- which writes make backward's view of the value stale -------------------------------------------


def _run_time_writes(module: ParsedModule, function_class: FunctionClass, writes: list[Write]) -> list[Write]:
    """The writes that can change the value between a forward and its backward: not a one-time
    initialisation (`if X is None: X = load()`, a lazily loaded extension or default) and not the
    Function's own derivative methods keeping their state."""
    own_derivatives = {m.node for name, m in function_class.own_methods.items() if name in DERIVATIVE_METHODS}
    return [w for w in writes if w.function not in own_derivatives and not _initialises_once(module, w)]


def _private_last(write: Write) -> bool:
    return write.function is not None and write.function.name.value.startswith("_")


def _initialises_once(module: ParsedModule, write: Write) -> bool:
    """The write sits in the body of an `if` that tests the same value for None (`if X is None`,
    `if not X`): it fills the value once, later runs leave it alone."""
    attribute = write.chain.rsplit(".", 1)[-1]
    inner: cst.CSTNode = write.node
    for ancestor in module.ancestors(write.node):
        if ancestor is write.function:
            break
        if isinstance(ancestor, cst.If) and inner is ancestor.body:
            for test in [ancestor.test, *walk(ancestor.test)]:
                if isinstance(test, cst.Comparison) and any(
                    isinstance(c.operator, (cst.Is, cst.Equal)) and _is_none_literal(c.comparator)
                    for c in test.comparisons
                ):
                    if (dotted_name(test.left) or "").rsplit(".", 1)[-1] == attribute:
                        return True
                if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
                    if (dotted_name(test.expression) or "").rsplit(".", 1)[-1] == attribute:
                        return True
        inner = ancestor
    return False


def _is_none_literal(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Name) and expr.value == "None"


def _applying_functions(module: ParsedModule, function_class: FunctionClass) -> set[cst.FunctionDef]:
    """The functions that apply this Function (directly, through an alias or a partial)."""
    found = set()
    for call, _ in function_class.apply_sites():
        enclosing = module.enclosing_function(call)
        if enclosing is not None:
            found.add(enclosing)
    return found


def _sets_per_application(module: ParsedModule, function_class: FunctionClass, write: Write) -> bool:
    """The value is written once per application: by forward itself, by the function that then
    applies the Function (`GradReverse.lambd = l; return GradReverse.apply(x)`), or by a helper that
    such a function calls first (`configure(v); return Fn.apply(x)`)."""
    function = write.function
    if function is None:
        return False
    saving = {m.node for name, m in function_class.own_methods.items() if name in SAVING_METHODS}
    if function in saving:
        return True
    applying = _applying_functions(module, function_class)
    if function in applying:
        return True
    name = function.name.value
    for caller in applying:
        for node in walk(caller.body, into_functions=False):
            if isinstance(node, cst.Call) and (dotted_name(node.func) or "").rsplit(".", 1)[-1] == name:
                return True
    return False


def _backward_time_setting(
    module: ParsedModule, function_class: FunctionClass, chain: str, found: list[Write], writes: RuntimeWrites
) -> bool:
    """A value only backward reads, meant to be read when backward runs: every write is a setter the
    Function itself offers (`Scaler.set_loss_scale(s)`, called between forward and backward on purpose),
    or the value belongs to an object backward itself updates (a phase flag of a scheduler whose other
    fields backward writes): backward takes part in that state's protocol, it does not replay forward."""
    setters = {
        m.node
        for name, m in function_class.own_methods.items()
        if name not in FUNCTION_PROTOCOL and name != "__init__" and m.kind in ("static", "class")
    }
    applying = _applying_functions(module, function_class)
    if all(w.function in setters and w.function not in applying for w in found):
        return True
    root = chain.split(".")[0]
    if "." not in chain or root == function_class.name:
        return False  # the Function's own class: a counter backward keeps there says nothing of its settings
    derivatives = {m.node for name, m in function_class.own_methods.items() if name in DERIVATIVE_METHODS}
    return any(w.function in derivatives and w.chain.split(".")[0] == root for w in writes.writes)


def _forward_reads(module: ParsedModule, function_class: FunctionClass) -> set[str]:
    """The outside chains forward (and setup_context) read."""
    chains: set[str] = set()
    for name in SAVING_METHODS:
        method = function_class.method(name)
        if method is None:
            continue
        local = set(bindings(method.node))
        for node in walk(method.node.body, into_functions=False):
            read = _read_chain(module, node, local, method.cls_name, function_class.name)
            if read is not None:
                chains.add(read[0])
    return chains


def _statements_choosing_values(method: Method) -> set[cst.CSTNode]:
    """Assignments, and `if` tests choosing between assignments or returns: where a value changes what
    backward computes, though maybe not through its return (inputs rebuilt, then differentiated)."""
    found: set[cst.CSTNode] = set()
    for node in walk(method.node.body, into_functions=False):
        if isinstance(node, (cst.Assign, cst.AugAssign, cst.AnnAssign)):
            found.add(node)
        elif isinstance(node, cst.If) and any(
            isinstance(n, (cst.Assign, cst.AugAssign, cst.AnnAssign, cst.Return))
            for n in walk(node.body, into_functions=False)
        ):
            found.add(node)
    return found


_PARTICIPLES = {"reassigns": "reassigned", "modifies": "modified"}


def _message(module: ParsedModule, method: Method, shown: str, write: Write) -> tuple[str, str]:
    return (
        f"{method.name} reads `{shown}`, {_PARTICIPLES[write.how]} {write.where(module)}",
        f"The code {write.how} it at run time. {ADVICE}",
    )


def _closure_message(module: ParsedModule, method: Method, shown: str, rebinding: cst.CSTNode) -> tuple[str, str]:
    line = module.position(rebinding).start.line
    return (
        f"{method.name} reads closure variable `{shown}`, rebound after the class is defined (line {line})",
        f"The enclosing function rebinds it after defining the class. {ADVICE}",
    )


def _per_application_message(
    module: ParsedModule, method: Method, shown: str, write: Write, function_class: FunctionClass
) -> tuple[str, str]:
    line = module.position(write.node).start.line
    function = write.function
    assert function is not None  # _sets_per_application picks writes inside a function
    where = "forward itself" if function.name.value in SAVING_METHODS else f"`{function.name.value}()`"
    return (
        f"{method.name} reads `{shown}`, which {where} sets per application",
        f"It is set for each application of {function_class.name} (line {line}), and backward runs after the "
        "whole forward pass, so when applications with different values share one backward (two heads, a loop "
        "over layers) every one of them gets the last value set, not its own. Pass the value to apply(), keep it "
        "on ctx and return None for it.",
    )


def _disagreement_message(module: ParsedModule, method: Method, shown: str, write: Write) -> tuple[str, str]:
    return (
        f"{method.name} reads `{shown}` (forward too), {_PARTICIPLES[write.how]} {write.where(module)}",
        f"The code {write.how} it at run time: if it changes between a forward and its backward, backward undoes "
        "what forward did under the other setting. Read it once in forward, keep it on ctx and use the ctx copy "
        "in backward.",
    )

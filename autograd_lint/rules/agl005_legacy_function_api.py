"""AGL005 legacy-function-api: pre-1.3 Function code that torch 2.13 rejects or silently ignores."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.rule import Finding
from ..core.syntax import code_of, short_code, walk
from ..facts.function_model import DERIVATIVE_METHODS, FunctionClass, Method, function_model
from .base import FunctionClassRule

# What a ctx (the `<F>Backward` node) offers: reading these on `self` is ctx use, not instance state.
CTX_API = frozenset(
    {
        "save_for_backward",
        "saved_tensors",
        "saved_variables",
        "to_save",
        "needs_input_grad",
        "mark_dirty",
        "mark_non_differentiable",
        "set_materialize_grads",
        "materialize_grads",
        "dirty_tensors",
        "non_differentiable",
        "metadata",
        "next_functions",
        "register_hook",
        "register_prehook",
        "name",
    }
)
FIX = "Make forward and backward @staticmethods taking ctx, pass the values to `.apply(...)`, keep them on ctx and return None for them from backward."


@dataclass(frozen=True)
class LegacyUse:
    """What the confirm recipe replays: `kind` is "instance-call", "instance-apply", "init",
    "instance-state" or "no-backward"; `init_args` the constructor arguments as written (source)."""

    function_class: FunctionClass
    kind: str
    init_args: str | None = None
    attribute: str | None = None


class LegacyFunctionApi(FunctionClassRule[LegacyUse]):
    code = "AGL005"
    name = "legacy-function-api"
    severity = Severity.ERROR
    summary = "legacy autograd.Function usage: instance calls, __init__ state, non-static methods reading instance state, no backward"

    def check_class(self, function_class: FunctionClass, module: ParsedModule) -> Iterator[Finding[LegacyUse]]:
        if function_class.used_as_namespace:
            return  # its methods are plain static functions: no ctx, no instance, no backward
        yield from self._init_state(function_class)
        yield from self._instance_state_reads(function_class)
        yield from self._instance_uses(module, function_class)
        yield from self._missing_backward(module, function_class)

    # --- __init__ -------------------------------------------------------------------------------

    def _init_state(self, function_class: FunctionClass) -> Iterator[Finding]:
        init = function_class.own_methods.get("__init__")
        if init is None or not (
            len(init.params) > 1 or isinstance(init.node.params.star_arg, cst.Param) or _self_attributes(init)
        ):
            return  # a bare `__init__(self): super().__init__()` carries nothing apply could lose
        name = function_class.name
        yield Finding(
            init.node.name,
            f"{name} defines __init__, which `.apply` never runs",
            f"Function instances are legacy: calling one raises 'Legacy autograd "
            f"function with non-static forward method is deprecated' and `.apply` never sees what __init__ "
            f"stores. {FIX}",
            subject=LegacyUse(function_class, "init"),
        )

    # --- non-static forward/backward reading instance state -------------------------------------------

    def _instance_state_reads(self, function_class: FunctionClass) -> Iterator[Finding]:
        if not function_class.hierarchy_known:
            return
        instance_state = _instance_state(function_class)
        if not instance_state:
            return
        ctx_written = _ctx_attributes(function_class)
        for name in ("forward", "backward"):
            method = function_class.own_methods.get(name)
            if method is None or method.kind != "plain" or not method.params:
                continue
            read = _first_state_read(method, instance_state - ctx_written)
            if read is None:
                continue
            yield Finding(
                method.node.name,
                f"{function_class.name}.{name} is not a @staticmethod and reads instance state `{short_code(read, 30)}`",
                f"`{code_of(read)}` is instance state that ctx never has: through `.apply` torch raises "
                f"\"'{function_class.name}Backward' object has no attribute '{read.attr.value}'\" and an instance "
                f"call raises 'Legacy autograd function with non-static forward method is deprecated'. {FIX}",
                subject=LegacyUse(function_class, "instance-state", attribute=read.attr.value),
            )

    # --- Fn(...)(x), Fn(a).apply(x) -------------------------------------------------------------------

    def _instance_uses(self, module: ParsedModule, function_class: FunctionClass) -> Iterator[Finding]:
        name = function_class.name
        if _calls_are_torchs(function_class):
            for call, creation in function_class.stored_instance_calls:
                yield Finding(
                    call,
                    f"`{short_code(call, 30)}` calls a {name} instance created by `{short_code(creation, 30)}`",
                    f"Torch raises "
                    f"'Legacy autograd function with non-static forward method is deprecated. Please use new-style "
                    f"autograd function with static forward method.'. Call `{name}.apply(...)` with every value as an argument.",
                    subject=LegacyUse(function_class, "instance-call", _constructor_arguments(creation)),
                )
        for creation in function_class.instantiations:
            if function_model(module).enclosing(creation) is function_class:
                continue  # the class building itself (a factory classmethod)
            parent = module.parents.get(creation)
            init_args = _constructor_arguments(creation)
            if isinstance(parent, cst.Call) and parent.func is creation:
                if not _calls_are_torchs(function_class):
                    continue
                yield Finding(
                    parent,
                    f"`{short_code(parent)}` calls a {name} instance",
                    f"Torch raises 'Legacy autograd function "
                    f"with non-static forward method is deprecated. Please use new-style autograd function with "
                    f"static forward method.'. Call `{name}.apply(...)` with every value as an argument.",
                    subject=LegacyUse(function_class, "instance-call", init_args),
                )
            elif (
                isinstance(parent, cst.Attribute)
                and parent.attr.value == "apply"
                and isinstance(apply_call := module.parents.get(parent), cst.Call)
                and creation.args
                and not _init_writes_elsewhere(function_class)
            ):
                yield Finding(
                    apply_call,
                    f"`{short_code(apply_call, 40)}`: arguments to {name}(...) never reach forward or backward",
                    f"`apply` is a classmethod, so the arguments given to {name}(...) never "
                    f"reach forward or backward (a backward reading them from ctx raises AttributeError). Pass them "
                    f"to `{name}.apply(...)`, keep them on ctx and return None for them.",
                    subject=LegacyUse(function_class, "instance-apply", init_args),
                )

    # --- no backward ----------------------------------------------------------------------------------

    def _missing_backward(self, module: ParsedModule, function_class: FunctionClass) -> Iterator[Finding]:
        if function_class.backward is not None or function_class.forward is None or not function_class.hierarchy_known:
            return
        if _derivative_assigned_or_jvp(function_class) or _is_a_base(module, function_class):
            return
        if not function_class.backward_reachable:
            return  # no output can require grad, or autograd never applies it: backward is never called
        calls = function_class.apply_calls
        if calls and all(module.under_no_grad(call) for call in calls):
            return  # only ever applied without gradient recording
        name = function_class.name
        yield Finding(
            function_class.node.name,
            f"{name} defines no backward (or vjp)",
            "Backward through it raises 'You must implement either the "
            "backward or vjp method for your custom autograd.Function to use it with backward mode AD.'. Add a "
            "@staticmethod backward(ctx, *grad_outputs) returning one gradient per forward input.",
            subject=LegacyUse(function_class, "no-backward"),
        )


def _self_attributes(method: Method) -> set[str]:
    """Attributes a method assigns on its first parameter (`self.lambd = lambd`)."""
    if not method.params:
        return set()
    first = method.params[0].name.value
    found = set()
    for node in walk(method.node.body):
        targets = []
        if isinstance(node, cst.Assign):
            targets = [t.target for t in node.targets]
        elif isinstance(node, (cst.AugAssign, cst.AnnAssign)):
            targets = [node.target]
        for target in targets:
            for part in [target, *walk(target)]:
                if isinstance(part, cst.Attribute) and isinstance(part.value, cst.Name) and part.value.value == first:
                    found.add(part.attr.value)
    return found


def _instance_state(function_class: FunctionClass) -> set[str]:
    """Names an instance has but a ctx does not: attributes set by the class's other methods
    (`__init__`, setters) and the class body's own attributes and methods."""
    names: set[str] = set()
    for klass in _hierarchy(function_class):
        for method in klass.own_methods.values():
            if method.name not in (*DERIVATIVE_METHODS, "forward", "setup_context") and method.kind == "plain":
                names |= _self_attributes(method)
            names.add(method.name)
        for statement in klass.node.body.body:
            if isinstance(statement, cst.SimpleStatementLine):
                for small in statement.body:
                    if isinstance(small, (cst.Assign, cst.AnnAssign)):
                        targets = small.targets if isinstance(small, cst.Assign) else [small]
                        names |= {t.target.value for t in targets if isinstance(t.target, cst.Name)}
    return names - CTX_API - set(DERIVATIVE_METHODS) - {"forward", "setup_context", "apply"}


def _hierarchy(function_class: FunctionClass) -> list[FunctionClass]:
    found = [function_class]
    for base in function_class.bases:
        found += [k for k in _hierarchy(base) if k not in found]
    return found


def _ctx_attributes(function_class: FunctionClass) -> set[str]:
    """Attributes forward, setup_context or backward set on their ctx (first) parameter."""
    written: set[str] = set()
    for name in ("forward", "setup_context", *DERIVATIVE_METHODS):
        method = function_class.method(name)
        if method is not None:
            written |= _self_attributes(method)
    return written


def _first_state_read(method: Method, state: set[str]) -> cst.Attribute | None:
    first = method.params[0].name.value
    for node in walk(method.node.body):
        if (
            isinstance(node, cst.Attribute)
            and isinstance(node.value, cst.Name)
            and node.value.value == first
            and node.attr.value in state
        ):
            return node
    return None


def _calls_are_torchs(function_class: FunctionClass) -> bool:
    """Whether calling an instance reaches torch's `Function.__call__` (no `__call__` of our own)."""
    return (
        function_class.hierarchy_known
        and function_class.method("__call__") is None
        and not any("__call__" in _class_body_names(k) for k in _hierarchy(function_class))
    )


def _class_body_names(function_class: FunctionClass) -> set[str]:
    names = set()
    for statement in function_class.node.body.body:
        if isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                if isinstance(small, cst.Assign):
                    names |= {t.target.value for t in small.targets if isinstance(t.target, cst.Name)}
    return names


def _init_writes_elsewhere(function_class: FunctionClass) -> bool:
    """`__init__` stores its arguments somewhere apply can see (a class attribute, a global):
    shared state, AGL001's subject, not a lost argument."""
    init = function_class.method("__init__")
    if init is None or not init.params:
        return False
    first = init.params[0].name.value
    for node in walk(init.node.body):
        if isinstance(node, cst.Global):
            return True
        targets = (
            [t.target for t in node.targets]
            if isinstance(node, cst.Assign)
            else [node.target]
            if isinstance(node, (cst.AugAssign, cst.AnnAssign))
            else []
        )
        for target in targets:
            if isinstance(target, (cst.Attribute, cst.Subscript)):
                root: cst.BaseExpression = target
                while isinstance(root, (cst.Attribute, cst.Subscript)):
                    root = root.value
                if not (isinstance(root, cst.Name) and root.value == first) or code_of(target).startswith(
                    f"{first}.__class__"
                ):
                    return True
    return False


def _derivative_assigned_or_jvp(function_class: FunctionClass) -> bool:
    """`backward = _shared_backward` in the class body, or a forward-mode-only Function (jvp)."""
    if function_class.method("jvp") is not None:
        return True
    return any({"backward", "vjp", "jvp"} & _class_body_names(k) for k in _hierarchy(function_class))


def _is_a_base(module: ParsedModule, function_class: FunctionClass) -> bool:
    return any(function_class in other.bases for other in function_model(module))


def _constructor_arguments(call: cst.Call) -> str:
    """The arguments of `Fn(...)` as source the harness can evaluate: literals as written, 0.5 (a
    hyperparameter) for anything that names the caller's variables."""
    import ast

    parts = []
    for arg in call.args:
        text = code_of(arg.value).strip()
        try:
            ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            text = "0.5"
        prefix = "*" * len(arg.star) if arg.star else f"{arg.keyword.value}=" if arg.keyword is not None else ""
        parts.append(prefix + text)
    return ", ".join(parts)

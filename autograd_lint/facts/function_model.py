"""The shared model of custom `torch.autograd.Function` subclasses in one module.

Rules ask it what a Function's forward takes, what its backward is, what ctx is called and where
`.apply(...)` is called, instead of each rediscovering it from the tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeGuard

import libcst as cst

from ..core.module import ParsedModule
from ..core.scopes import bindings
from ..core.syntax import assigned_names, decorator_names, function_params, walk
from ..torch_api import TORCH_FUNCTION_BASES
from .reachability import outputs_non_differentiable

BACKWARD_METHODS = ("backward", "vjp")
SAVING_METHODS = ("forward", "setup_context")  # where ctx.save_for_backward and ctx attributes are set
DERIVATIVE_METHODS = ("backward", "vjp", "jvp")
# The methods torch itself calls on a Function (the others are the author's helpers).
FUNCTION_PROTOCOL = frozenset({"forward", "backward", "setup_context", "vjp", "jvp", "vmap", "apply"})
# checkpoint()'s own keyword arguments: not passed on to the checkpointed function.
CHECKPOINT_OPTIONS = frozenset({"use_reentrant", "preserve_rng_state", "determinism_check", "debug", "context_fn"})
# Decorators that leave forward's signature and backward's return value as written.
TRANSPARENT_DECORATORS = frozenset({"staticmethod", "classmethod", "once_differentiable", "custom_fwd", "custom_bwd"})


@dataclass
class Method:
    name: str
    node: cst.FunctionDef
    owner: FunctionClass

    @cached_property
    def decorators(self) -> list[str]:
        return decorator_names(self.node)

    @cached_property
    def kind(self) -> str:
        """ "static", "class" or "plain" (a plain method still works through `.apply`: self plays ctx)."""
        tails = {name.rsplit(".", 1)[-1] for name in self.decorators}
        if "staticmethod" in tails:
            return "static"
        if "classmethod" in tails:
            return "class"
        return "plain"

    @cached_property
    def params(self) -> list[cst.Param]:
        return function_params(self.node)

    @property
    def cls_name(self) -> str | None:
        """The name of the `cls` parameter of a classmethod."""
        if self.kind == "class" and self.params:
            return self.params[0].name.value
        return None

    @cached_property
    def ctx_name(self) -> str | None:
        """Name of the ctx parameter; None for a setup_context-style forward (it has no ctx)."""
        if self.name == "forward" and self.owner.uses_setup_context:
            return None
        index = 1 if self.kind == "class" else 0
        return self.params[index].name.value if len(self.params) > index else None

    @cached_property
    def data_params(self) -> list[cst.Param]:
        """Positional parameters after cls and ctx."""
        skip = (1 if self.kind == "class" else 0) + (1 if self.ctx_name is not None else 0)
        return self.params[skip:]

    @cached_property
    def save_calls(self) -> list[cst.Call]:
        """The `<ctx>.save_for_backward(...)` calls in this method's own body, in source order."""
        ctx = self.ctx_name
        if ctx is None:
            return []
        return [node for node in walk(self.node.body, into_functions=False) if is_save_call(node, ctx)]


def is_save_call(node: cst.CSTNode, ctx: str | None) -> TypeGuard[cst.Call]:
    """`<ctx>.save_for_backward(...)` (never, for a method without ctx)."""
    return (
        isinstance(node, cst.Call)
        and isinstance(node.func, cst.Attribute)
        and node.func.attr.value == "save_for_backward"
        and isinstance(node.func.value, cst.Name)
        and node.func.value.value == ctx
    )


@dataclass(frozen=True)
class ForwardInputs:
    """What `.apply(...)` binds: forward's parameters minus ctx (and cls)."""

    names: tuple[str, ...]
    required: int
    has_varargs: bool
    has_keyword_only: bool
    setup_context_style: bool

    @property
    def total(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class WrapperCall:
    """A call of a function that applies the Function with its own parameters, such as
    `def knn(k, xyz, center=None): return KNN.apply(k, xyz, center)` called as
    `knn(16, points, center=c)`: what reaches each position of the inner `.apply(...)`."""

    call: cst.Call  # `knn(16, points, center=c)`
    wrapper: cst.FunctionDef
    apply_call: cst.Call  # the `.apply(...)` inside the wrapper

    def argument(self, position: int) -> cst.BaseExpression | None:
        """The expression that reaches `apply`'s argument `position`: the caller's value for a
        wrapper parameter passed straight through (positional, keyword or the default), the inner
        argument itself otherwise. None when it cannot be told (`*args`, a missing argument)."""
        inner = [arg for arg in self.apply_call.args if arg.keyword is None]
        if position >= len(inner) or any(arg.star for arg in self.apply_call.args[: position + 1]):
            return None
        value = inner[position].value
        params = function_params(self.wrapper)
        names = [p.name.value for p in params]
        if not (isinstance(value, cst.Name) and value.value in names):
            return value
        name = value.value
        index = names.index(name)
        if any(arg.star for arg in self.call.args):
            return None
        positional = [arg for arg in self.call.args if arg.keyword is None]
        if index < len(positional):
            return positional[index].value
        keyword = next((arg for arg in self.call.args if arg.keyword is not None and arg.keyword.value == name), None)
        if keyword is not None:
            return keyword.value
        return params[index].default


@dataclass
class FunctionClass:
    name: str
    node: cst.ClassDef
    own_methods: dict[str, Method] = field(default_factory=dict)
    bases: list[FunctionClass] = field(default_factory=list)
    # False when a base is something other than torch's Function or a Function of this module,
    # so methods could be inherited from code we cannot see.
    bases_known: bool = True
    apply_calls: list[cst.Call] = field(default_factory=list)
    # `Cls(...)`: the class instantiated (legacy API), and `Cls.forward(...)` / `Cls.backward(...)`.
    instantiations: list[cst.Call] = field(default_factory=list)
    direct_calls: list[cst.Call] = field(default_factory=list)
    # `functools.partial(Cls.apply, a)(x)`, `checkpoint(Cls.apply, x, w)`: (the call, the arguments apply receives).
    partial_applies: list[tuple[cst.Call, tuple[cst.Arg, ...]]] = field(default_factory=list)
    # Every `Cls.apply` / `cls.apply` in the module, called or handed on (`checkpoint(Cls.apply, x)`).
    apply_references: list[cst.Attribute] = field(default_factory=list)
    # `Cls.forward` (and `__class__.forward` / `cls.forward` inside the class) not reached through apply.
    forward_references: list[cst.Attribute] = field(default_factory=list)
    # `Cls(...)(x)`: an instance called (the legacy API).
    instance_calls: list[cst.Call] = field(default_factory=list)
    # `self.quant = Cls()` ... `self.quant(x)`, `grl = Cls(0.5)` ... `grl(x)`: (the call, the creation).
    stored_instance_calls: list[tuple[cst.Call, cst.Call]] = field(default_factory=list)
    # A subclass in this module is applied, so this class's backward may run through it.
    subclass_applied: bool = False
    # Calls of module-level functions that apply this class with their own parameters.
    wrapper_calls: list[WrapperCall] = field(default_factory=list)

    def method(self, name: str) -> Method | None:
        if name in self.own_methods:
            return self.own_methods[name]
        for base in self.bases:
            found = base.method(name)
            if found is not None:
                return found
        return None

    @property
    def forward(self) -> Method | None:
        return self.method("forward")

    @property
    def backward(self) -> Method | None:
        for name in BACKWARD_METHODS:
            found = self.method(name)
            if found is not None:
                return found
        return None

    def saving_methods(self) -> list[Method]:
        """This class's own forward and setup_context that take a ctx (a setup_context-style forward
        has none): where tensors are saved for backward and ctx attributes set."""
        methods = (self.own_methods.get(name) for name in SAVING_METHODS)
        return [m for m in methods if m is not None and m.ctx_name is not None]

    @property
    def uses_setup_context(self) -> bool:
        return self.method("setup_context") is not None

    @property
    def hierarchy_known(self) -> bool:
        return self.bases_known and all(base.hierarchy_known for base in self.bases)

    def checked_pair(self) -> tuple[Method, Method] | None:
        """(forward, backward) when both are known and at least one is defined in this class (a
        subclass that inherits both is judged where they are defined)."""
        forward, backward = self.forward, self.backward
        if forward is None or backward is None or not self.hierarchy_known:
            return None
        if forward.owner is not self and backward.owner is not self:
            return None
        return forward, backward

    def apply_sites(self) -> list[tuple[cst.Call, tuple[cst.Arg, ...]]]:
        """(call, positional arguments forward receives) for every application seen in this module:
        `Cls.apply(...)`, its aliases, and `functools.partial(Cls.apply, a)(...)` (a first)."""
        return [(call, tuple(call.args)) for call in self.apply_calls] + list(self.partial_applies)

    @property
    def export_only(self) -> bool:
        """An ONNX-export shim: a `symbolic` staticmethod and no backward; torch never differentiates it."""
        return self.method("symbolic") is not None and self.backward is None

    @property
    def used_as_namespace(self) -> bool:
        """forward is called as a plain static function (`Cls.forward(a, b)`, `matmul = Cls.forward`)
        and the module never applies the class or calls an instance: autograd never sees it."""
        return bool(self.forward_references) and not (self.applied_here or self.subclass_applied)

    @property
    def applied_here(self) -> bool:
        """This module applies the class (`.apply`, an alias, a partial) or calls an instance of it."""
        return bool(self.apply_references or self.partial_applies or self.instance_calls or self.stored_instance_calls)

    @cached_property
    def outputs_non_differentiable(self) -> bool:
        """Every output is an integer/bool tensor or marked with `ctx.mark_non_differentiable`."""
        return outputs_non_differentiable(self)

    @property
    def backward_reachable(self) -> bool:
        """Whether autograd can ever call this Function's backward. False when no output can require
        grad (all integer/bool or marked non-differentiable), for an export-only Function and for a
        class used as a namespace. Rules about backward (its arity, its absence, what it does to its
        gradients) have nothing to say when it is False."""
        return not (self.export_only or self.used_as_namespace or self.outputs_non_differentiable)

    def forward_inputs(self) -> ForwardInputs | None:
        forward = self.forward
        if forward is None:
            return None
        params = forward.data_params
        node_params = forward.node.params
        return ForwardInputs(
            names=tuple(p.name.value for p in params),
            required=sum(1 for p in params if p.default is None),
            has_varargs=isinstance(node_params.star_arg, cst.Param),
            has_keyword_only=bool(node_params.kwonly_params) or node_params.star_kwarg is not None,
            setup_context_style=self.uses_setup_context,
        )

    def gradient_contract(self) -> tuple[Method, Method, ForwardInputs] | None:
        """(forward, backward, inputs) when what `.apply` binds and what backward returns can be read
        as written: both methods present, one of them defined in this class (a subclass inheriting
        both is judged where they are), every base known, no decorator that may change forward's
        signature or backward's result, and no `*args` or keyword-only inputs. None otherwise."""
        forward, backward = self.forward, self.backward
        if forward is None or backward is None or not self.hierarchy_known:
            return None
        if forward.owner is not self and backward.owner is not self:
            return None
        if not all(
            name.rsplit(".", 1)[-1] in TRANSPARENT_DECORATORS for name in forward.decorators + backward.decorators
        ):
            return None
        inputs = self.forward_inputs()
        if inputs is None or inputs.has_varargs or inputs.has_keyword_only:
            return None
        return forward, backward, inputs


def _ancestors(function_class: FunctionClass) -> list[FunctionClass]:
    found: list[FunctionClass] = []
    stack = list(function_class.bases)
    while stack:
        base = stack.pop()
        if all(base is not seen for seen in found):
            found.append(base)
            stack.extend(base.bases)
    return found


class FunctionModel:
    """All Function subclasses of a module, in source order."""

    def __init__(self, module: ParsedModule):
        self.module = module
        self.classes: list[FunctionClass] = []
        self.by_node: dict[cst.ClassDef, FunctionClass] = {}
        self._find_classes()
        if self.classes:
            self._find_apply_calls()
            self._find_wrapper_calls()
            self._find_stored_instance_calls()
            for function_class in self.classes:
                if function_class.applied_here:
                    for base in _ancestors(function_class):
                        base.subclass_applied = True

    def __iter__(self) -> Iterator[FunctionClass]:
        return iter(self.classes)

    def __bool__(self) -> bool:
        return bool(self.classes)

    def methods_named(self, *names: str) -> Iterator[Method]:
        """Every class's own methods with one of these names (inherited ones are checked where defined)."""
        for function_class in self.classes:
            for name in names:
                method = function_class.own_methods.get(name)
                if method is not None:
                    yield method

    def with_reachable_backward(self) -> Iterator[FunctionClass]:
        """The classes whose backward autograd can call (`FunctionClass.backward_reachable`): the ones
        rules about backward's body, its gradients and its dtypes judge."""
        return (function_class for function_class in self.classes if function_class.backward_reachable)

    def reachable_backwards(self) -> Iterator[Method]:
        """Every own backward/vjp of the classes `with_reachable_backward` yields."""
        for function_class in self.with_reachable_backward():
            for name in BACKWARD_METHODS:
                method = function_class.own_methods.get(name)
                if method is not None:
                    yield method

    def by_name(self, name: str) -> FunctionClass | None:
        for function_class in self.classes:
            if function_class.name == name:
                return function_class
        return None

    @cached_property
    def module_functions(self) -> dict[str, cst.FunctionDef]:
        """The module's top-level functions by name."""
        return {s.name.value: s for s in self.module.tree.body if isinstance(s, cst.FunctionDef)}

    @cached_property
    def class_functions(self) -> dict[tuple[str, str], cst.FunctionDef]:
        """(class name, function name) -> the function, for the module's top-level classes (the first, when
        two share both names): what `Energy.force(x)` runs, or `Net(...)(x)` (its `forward`)."""
        found: dict[tuple[str, str], cst.FunctionDef] = {}
        for statement in self.module.tree.body:
            if isinstance(statement, cst.ClassDef):
                for item in statement.body.body:
                    if isinstance(item, cst.FunctionDef):
                        found.setdefault((statement.name.value, item.name.value), item)
        return found

    def called_functions(self, method: Method) -> Iterator[tuple[cst.Call, cst.FunctionDef]]:
        """(call, definition) for each call in `method` (not in its nested functions) of a function
        whose code this module shows, one level deep: a function defined in `method` itself, a
        module-level function, or the Function's own helper method called as `Cls.m(...)`/`cls.m(...)`."""
        local = bindings(method.node)
        for node in walk(method.node.body, into_functions=False):
            if not isinstance(node, cst.Call):
                continue
            func, found = node.func, None
            if isinstance(func, cst.Name):
                nested = local.get(func.value)
                if nested:
                    found = nested[0] if len(nested) == 1 and isinstance(nested[0], cst.FunctionDef) else None
                else:
                    found = self.module_functions.get(func.value)
            elif (
                isinstance(func, cst.Attribute)
                and isinstance(func.value, cst.Name)
                and func.value.value in (method.owner.name, "cls")
            ):
                helper = method.owner.own_methods.get(func.attr.value)
                if helper is not None and helper.name not in FUNCTION_PROTOCOL:
                    found = helper.node
            if found is not None and found is not method.node:
                yield node, found

    def enclosing(self, node: cst.CSTNode) -> FunctionClass | None:
        """The Function class whose body contains `node`, if any."""
        for ancestor in self.module.ancestors(node):
            if isinstance(ancestor, cst.ClassDef):
                return self.by_node.get(ancestor)
        return None

    def _find_classes(self) -> None:
        module = self.module
        local_names: dict[str, FunctionClass] = {}
        pending = list(module.classes)
        # Iterate to a fixed point so that subclasses of this module's Functions are found
        # whatever order the classes are written in.
        changed = True
        while changed:
            changed = False
            for class_def in list(pending):
                bases: list[FunctionClass] = []
                is_function = False
                all_known = True
                for arg in class_def.bases:
                    if arg.keyword is not None:
                        continue
                    qualified = module.qualified_name(arg.value)
                    if qualified in TORCH_FUNCTION_BASES:
                        is_function = True
                    elif qualified in local_names:
                        is_function = True
                        bases.append(local_names[qualified])
                    elif qualified != "object":
                        all_known = False
                if not is_function:
                    continue
                function_class = FunctionClass(class_def.name.value, class_def, bases=bases, bases_known=all_known)
                for statement in class_def.body.body:
                    if isinstance(statement, cst.FunctionDef):
                        name = statement.name.value
                        function_class.own_methods[name] = Method(name, statement, function_class)
                local_names[function_class.name] = function_class
                self.by_node[class_def] = function_class
                pending.remove(class_def)
                changed = True
        self.classes = [self.by_node[c] for c in module.classes if c in self.by_node]

    def _find_apply_calls(self) -> None:
        by_name = {c.name: c for c in self.classes}
        aliases: dict[str, FunctionClass] = {}
        partials: dict[str, tuple[FunctionClass, tuple[cst.Arg, ...]]] = {}
        attribute_aliases: dict[tuple[cst.CSTNode | None, str], FunctionClass] = {}
        calls: list[cst.Call] = []
        for node in self.module.parents:
            if type(node) is cst.Call:
                calls.append(node)
            elif type(node) is cst.Attribute:
                self._record_reference(node, by_name)
            elif (type(node) is cst.Assign or type(node) is cst.AnnAssign) and node.value is not None:
                targets = [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
                if len(targets) != 1:
                    continue
                owner = self._apply_owner(node.value, by_name)
                bound = self._partial_apply(node.value, by_name)
                if owner is not None and isinstance(targets[0], cst.Attribute):
                    key = self._instance_key(targets[0])  # `self.fn = Fn.apply` in __init__
                    if key is not None:
                        attribute_aliases[key] = owner
                for target in assigned_names(targets[0]) if isinstance(targets[0], cst.Name) else ():
                    if owner is not None:
                        aliases[target.value] = owner
                    elif bound is not None:
                        partials[target.value] = bound
        for call in calls:
            owner = self._apply_owner(call.func, by_name)
            if owner is None and isinstance(call.func, cst.Name):
                owner = aliases.get(call.func.value)
            if owner is None and attribute_aliases and isinstance(call.func, cst.Attribute):
                instance_key = self._instance_key(call.func)
                owner = attribute_aliases.get(instance_key) if instance_key is not None else None
            if owner is not None:
                owner.apply_calls.append(call)
                continue
            applied = self._checkpointed_apply(call, by_name)  # checkpoint(Cls.apply, x, w)
            if applied is not None:
                applied.partial_applies.append((call, tuple(arg for arg in call.args[1:] if arg.keyword is None)))
                continue
            bound = self._partial_apply(call.func, by_name)  # partial(Cls.apply, a)(x)
            if bound is None and isinstance(call.func, cst.Name):
                bound = partials.get(call.func.value)
            if bound is not None:
                owner, first = bound
                owner.partial_applies.append((call, first + tuple(call.args)))
                continue
            func = call.func
            if type(func) is cst.Name and func.value in by_name:
                function_class = by_name[func.value]
                function_class.instantiations.append(call)
                parent = self.module.parents.get(call)
                if isinstance(parent, cst.Call) and parent.func is call:
                    function_class.instance_calls.append(parent)
            elif (
                type(func) is cst.Attribute
                and func.attr.value in ("forward", "backward")
                and type(func.value) is cst.Name
                and func.value.value in by_name
            ):
                by_name[func.value.value].direct_calls.append(call)

    def _find_stored_instance_calls(self) -> None:
        """Instances kept in a name or on `self` and called later (the legacy `self.grl = GRL(l)` then
        `self.grl(x)`): a name is matched in its own function (or the module), `self.<attr>` in its class."""
        stored: dict[tuple[cst.CSTNode | None, str], tuple[FunctionClass, cst.Call]] = {}
        for function_class in self.classes:
            for creation in function_class.instantiations:
                parent = self.module.parents.get(creation)
                if not (isinstance(parent, cst.Assign) and len(parent.targets) == 1 and parent.value is creation):
                    continue
                key = self._instance_key(parent.targets[0].target)
                if key is not None:
                    stored[key] = (function_class, creation)
        if not stored:
            return
        for node in self.module.parents:
            if type(node) is cst.Call:
                key = self._instance_key(node.func)
                if key in stored:
                    function_class, creation = stored[key]
                    function_class.stored_instance_calls.append((node, creation))

    def _instance_key(self, target: cst.BaseExpression) -> tuple[cst.CSTNode | None, str] | None:
        if isinstance(target, cst.Name):
            return self.module.enclosing_function(target), target.value
        if isinstance(target, cst.Attribute) and isinstance(target.value, cst.Name) and target.value.value == "self":
            owner = next((a for a in self.module.ancestors(target) if isinstance(a, cst.ClassDef)), None)
            return owner, f"self.{target.attr.value}"
        return None

    def _find_wrapper_calls(self) -> None:
        """Module-level functions whose body applies a Function once, and the module's calls of them."""
        wrappers: dict[str, tuple[FunctionClass, cst.FunctionDef, cst.Call | None]] = {}
        for function_class in self.classes:
            for call in function_class.apply_calls:
                enclosing = self.module.enclosing_function(call)
                if enclosing is None or self.module.parents.get(enclosing) is not self.module.tree:
                    continue
                name = enclosing.name.value
                if name in wrappers and wrappers[name][2] is not call:
                    wrappers[name] = (function_class, enclosing, None)  # applied twice: positions differ
                else:
                    wrappers[name] = (function_class, enclosing, call)
        applied_once = {
            name: (function_class, wrapper, call)
            for name, (function_class, wrapper, call) in wrappers.items()
            if call is not None
        }
        if not applied_once:
            return
        for node in self.module.parents:
            if type(node) is cst.Call and type(node.func) is cst.Name and node.func.value in applied_once:
                function_class, wrapper, apply_call = applied_once[node.func.value]
                if self.module.enclosing_function(node) is not wrapper:
                    function_class.wrapper_calls.append(WrapperCall(node, wrapper, apply_call))

    def _record_reference(self, attribute: cst.Attribute, by_name: dict[str, FunctionClass]) -> None:
        """`Cls.apply` anywhere; `Cls.forward` outside a call through apply (also `__class__.forward`
        and `cls.forward` in the class's own methods)."""
        name = attribute.attr.value
        if name not in ("apply", "forward") or not isinstance(attribute.value, cst.Name):
            return
        target = attribute.value.value
        owner = by_name.get(target)
        if owner is None and target in ("cls", "__class__", "self"):
            owner = self.enclosing(attribute)
            if owner is not None and target == "self" and name == "forward":
                return  # a legacy `self.forward` inside its own methods says nothing about use
        if owner is None:
            return
        if name == "apply":
            owner.apply_references.append(attribute)
        else:
            owner.forward_references.append(attribute)

    def _checkpointed_apply(self, call: cst.Call, by_name: dict[str, FunctionClass]) -> FunctionClass | None:
        """`checkpoint(Cls.apply, x, w)` (torch.utils.checkpoint and look-alikes): apply receives the rest."""
        if not call.args or (self.module.qualified_name(call.func) or "").rsplit(".", 1)[-1] != "checkpoint":
            return None
        owner = self._apply_owner(call.args[0].value, by_name)
        if owner is None or any(
            arg.star or (arg.keyword is not None and arg.keyword.value not in CHECKPOINT_OPTIONS)
            for arg in call.args[1:]
        ):
            return None  # a keyword the checkpoint passes on to apply: positions unknown
        return owner

    def _partial_apply(
        self, expr: cst.BaseExpression, by_name: dict[str, FunctionClass]
    ) -> tuple[FunctionClass, tuple[cst.Arg, ...]] | None:
        """`functools.partial(Cls.apply, a, b)`: the class and the arguments it binds first."""
        if not (
            isinstance(expr, cst.Call)
            and expr.args
            and (self.module.qualified_name(expr.func) or "") in ("functools.partial", "partial")
        ):
            return None
        owner = self._apply_owner(expr.args[0].value, by_name)
        rest = expr.args[1:]
        if owner is None or any(arg.star or arg.keyword is not None for arg in rest):
            return None
        return owner, tuple(rest)

    def _apply_owner(self, expr: cst.BaseExpression, by_name: dict[str, FunctionClass]) -> FunctionClass | None:
        """The Function class for `Cls.apply`, or `cls.apply` inside that class's classmethods."""
        if not (isinstance(expr, cst.Attribute) and expr.attr.value == "apply" and isinstance(expr.value, cst.Name)):
            return None
        target = expr.value.value
        if target in by_name:
            return by_name[target]
        if target in ("cls", "self"):
            return self.enclosing(expr)
        return None


def function_model(module: ParsedModule) -> FunctionModel:
    """The module's Function model, built once per file and shared by every rule that asks."""
    return module.fact(FunctionModel)

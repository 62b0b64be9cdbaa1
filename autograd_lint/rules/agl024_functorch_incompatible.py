"""AGL024 functorch-incompatible: a Function reached by a `torch.func` transform it cannot run under.

Every torch.func transform (vmap, grad, grad_and_value, vjp, jacrev, jacfwd, hessian, jvp, linearize)
needs the Function to separate `setup_context` from a ctx-less forward; vmap (and jacfwd/hessian,
which vmap inside) also needs a `vmap` staticmethod or `generate_vmap_rule = True`; the forward-mode
ones (jvp, linearize, jacfwd, hessian) need a `jvp` staticmethod, as does a Function applied to a dual
tensor of `torch.autograd.forward_ad` (there old-style Functions work otherwise).

The linter sees one file: a transform counts when its function argument is `Cls.apply`, a lambda or
`functools.partial` over it (or a name bound to one), a function of this module (or one defined in the
enclosing function), a method of the enclosing class (`grad(self.loss)`) or a local instance of a module
class (its `forward`), whose body applies the Function directly or through a function it calls by name
(one level), also through nested transforms (`vmap(grad(f))`) and `@vmap`-style decorators.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.prefilter import TextCue
from ..core.rule import Finding, FunctionRule
from ..core.scopes import bindings
from ..core.syntax import dotted_name, short_code, walk
from ..facts.function_model import FunctionClass, function_model

# What each transform needs from a Function besides setup_context.
TRANSFORMS = {
    "vmap": ("vmap",),
    "grad": (),
    "grad_and_value": (),
    "vjp": (),
    "jacrev": (),
    "jvp": ("jvp",),
    "linearize": ("jvp",),
    "jacfwd": ("vmap", "jvp"),
    "hessian": ("vmap", "jvp"),
}
TRANSFORM_MODULES = ("torch.func.", "functorch.", "torch._functorch.apis.", "torch._functorch.eager_transforms.")
TRANSFORMS_USED = TextCue(
    "a torch.func transform",
    # also `from torch import (\n    func,\n)`
    patterns=(re.compile(r"torch\.func\b|functorch|vmap|make_dual|from\s+torch\s+import[^)]*?\bfunc\b"),),
)
FORWARD_AD = "torch.autograd.forward_ad."
SETUP_CONTEXT_MESSAGE = (
    "In order to use an autograd.Function with functorch transforms (vmap, grad, jvp, jacrev, ...), it must override "
    "the setup_context staticmethod"
)


@dataclass(frozen=True)
class TransformedFunction:
    function_class: FunctionClass
    transform: str  # the outermost transform's name, what the recipe runs
    missing: str  # "setup_context", "vmap" or "jvp"


class FunctorchIncompatible(FunctionRule[TransformedFunction]):
    code = "AGL024"
    name = "functorch-incompatible"
    severity = Severity.WARNING
    summary = "a Function used under torch.func/vmap without setup_context, a vmap rule or a jvp"

    requires = (TRANSFORMS_USED,)

    def check(self, module: ParsedModule) -> Iterator[Finding[TransformedFunction]]:
        model = function_model(module)
        if not model:
            return
        owners = {call: c for c in model for call in c.apply_calls}
        for node in module.parents:
            if type(node) is cst.Call:
                transforms, target = _transform_chain(module, node)
                report: cst.BaseExpression = node
            elif type(node) is cst.Decorator:
                transforms, target = _transform_chain(module, node.decorator, decorated=module.parents.get(node))
                report = node.decorator
            else:
                continue
            if type(node) is cst.Call and _is_forward_ad(module, node, "make_dual"):
                yield from _forward_ad_findings(module, node, owners)
                continue
            if not transforms or target is None or _is_inner(module, node):
                continue
            needs = {need for name in transforms for need in TRANSFORMS[name]}
            seen = set()
            for function_class in _reached(module, target, owners):
                if function_class.name in seen or not function_class.hierarchy_known:
                    continue
                seen.add(function_class.name)
                missing = _missing(function_class, needs)
                if missing is not None:
                    subject = TransformedFunction(function_class, transforms[0], missing)
                    yield Finding(report, *_message(function_class, transforms[0], missing, report), subject=subject)


def _is_forward_ad(module: ParsedModule, call: cst.Call, name: str) -> bool:
    return (module.qualified_name(call.func) or "") == FORWARD_AD + name


def _forward_ad_findings(module: ParsedModule, make_dual: cst.Call, owners) -> Iterator[Finding]:
    """`with fwAD.dual_level(): d = fwAD.make_dual(x, t); y = Fn.apply(d)`: a Function applied after a
    dual tensor is made in a `dual_level` block runs under forward-mode AD and needs a `jvp` staticmethod
    (setup_context is not required there)."""
    block = next((a for a in module.ancestors(make_dual) if isinstance(a, cst.With)), None)
    if block is None or not any(
        isinstance(i.item, cst.Call) and _is_forward_ad(module, i.item, "dual_level") for i in block.items
    ):
        return
    seen = set()
    for node in walk(block.body, into_functions=False):
        if type(node) is not cst.Call or not module.comes_before(make_dual, node):
            continue
        reached = (
            [owners[node]]
            if node in owners
            else list(_reached(module, node.func, owners))
            if isinstance(node.func, cst.Name)
            else []
        )
        for function_class in reached:
            if function_class.name in seen or not function_class.hierarchy_known or function_class.forward is None:
                continue
            seen.add(function_class.name)
            if function_class.method("jvp") is None:
                subject = TransformedFunction(function_class, "forward_ad", "jvp")
                yield Finding(node, *_message(function_class, "forward_ad", "jvp", node), subject=subject)


def _transform_name(module: ParsedModule, expr: cst.BaseExpression) -> str | None:
    qualified = module.qualified_name(expr) or ""
    tail = qualified.rsplit(".", 1)[-1]
    if tail not in TRANSFORMS:
        return None
    if qualified == "torch.vmap" or qualified.startswith(TRANSFORM_MODULES):
        return tail
    return None


def _transform_chain(
    module: ParsedModule, expr: cst.BaseExpression, decorated: cst.CSTNode | None = None
) -> tuple[list[str], cst.CSTNode | None]:
    """(["vmap", "grad"], f) for `vmap(grad(f))`; for a decorator, the decorated function is the target."""
    transforms: list[str] = []
    while True:
        if isinstance(expr, cst.Call) and decorated is None:
            name = _transform_name(module, expr.func)
            if name is None:
                break
            transforms.append(name)
            argument = _function_argument(expr)
            if argument is None:
                return transforms, None
            expr = argument
            continue
        if decorated is not None:
            name = _transform_name(module, expr.func if isinstance(expr, cst.Call) else expr)
            if name is not None:
                transforms.append(name)
            return transforms, decorated if isinstance(decorated, cst.FunctionDef) else None
        break
    return transforms, expr


def _function_argument(call: cst.Call) -> cst.BaseExpression | None:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == "func":
            return arg.value
    if call.args and call.args[0].keyword is None and not call.args[0].star:
        return call.args[0].value
    return None


def _is_inner(module: ParsedModule, call: cst.CSTNode) -> bool:
    """`grad(f)` inside `vmap(grad(f))`: judged with the outer call."""
    parent = module.grandparent(call)
    return (
        isinstance(parent, cst.Call)
        and module.parents.get(call) is not None
        and _transform_name(module, parent.func) is not None
    )


def _reached(
    module: ParsedModule, target: cst.CSTNode, owners: dict[cst.Call, FunctionClass]
) -> Iterator[FunctionClass]:
    """The Functions applied by the transformed callable: `Cls.apply`, `partial(...)` over it, a
    lambda or a function whose body applies them, directly or one call deep."""
    target = _unwrap_partial(target)
    direct = _apply_reference(module, target)
    if direct is not None:
        yield direct
        return
    if isinstance(target, cst.Name):
        function = _definition(module, target)
    elif isinstance(target, cst.Attribute):
        function = _method_of_self(module, target)
    else:
        function = target
    if isinstance(function, cst.Assign):  # `f = Cls.apply`, `f = partial(Cls.apply, ...)`, `model = Net()`
        value = _unwrap_partial(function.value)
        found = _apply_reference(module, value)
        if found is not None:
            yield found
            return
        function = _module_forward(module, value)
    if not isinstance(function, (cst.FunctionDef, cst.Lambda)):
        return
    yield from _applied_in(module, function, owners, depth=1)


def _unwrap_partial(expr: cst.CSTNode) -> cst.CSTNode:
    """`f` for `partial(f, ...)` / `functools.partial(f, ...)`, else the expression itself."""
    if isinstance(expr, cst.Call) and (dotted_name(expr.func) or "").rsplit(".", 1)[-1] == "partial" and expr.args:
        return expr.args[0].value
    return expr


def _method_of_self(module: ParsedModule, target: cst.Attribute) -> cst.FunctionDef | cst.Assign | None:
    """`self.loss_fn` inside a method: the method of that name in the enclosing class, or the one
    assignment the class makes to it (`self.quant = Quant.apply` in `__init__`)."""
    if not (isinstance(target.value, cst.Name) and target.value.value == "self"):
        return None
    owner = next((a for a in module.ancestors(target) if isinstance(a, cst.ClassDef)), None)
    if owner is None:
        return None
    method = next(
        (s for s in owner.body.body if isinstance(s, cst.FunctionDef) and s.name.value == target.attr.value), None
    )
    if method is not None:
        return method
    assigned = [
        node
        for node in walk(owner.body)
        if isinstance(node, cst.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0].target, cst.Attribute)
        and node.targets[0].target.attr.value == target.attr.value
        and isinstance(node.targets[0].target.value, cst.Name)
        and node.targets[0].target.value.value == "self"
    ]
    return assigned[0] if len(assigned) == 1 else None


def _module_forward(module: ParsedModule, value: cst.CSTNode) -> cst.FunctionDef | None:
    """`Net(...)` of a class defined in this module: its `forward` (what calling the instance runs)."""
    if not (isinstance(value, cst.Call) and isinstance(value.func, cst.Name)):
        return None
    return function_model(module).class_functions.get((value.func.value, "forward"))


def _applied_in(
    module: ParsedModule, function: cst.FunctionDef | cst.Lambda, owners, depth: int
) -> Iterator[FunctionClass]:
    nodes = walk(function.body, into_functions=False)
    for node in [function.body, *nodes] if isinstance(function, cst.Lambda) else nodes:
        if type(node) is cst.Call:
            if node in owners:
                yield owners[node]
            elif type(node.func) is cst.Name:
                helper = _definition(module, node.func)
                if isinstance(helper, cst.Assign):  # `soft = partial(Cls.apply, ...)`, then `soft(x)`
                    found = _apply_reference(module, _unwrap_partial(helper.value))
                    if found is not None:
                        yield found
                elif depth > 0 and isinstance(helper, cst.FunctionDef) and helper is not function:
                    yield from _applied_in(module, helper, owners, depth - 1)
        elif type(node) is cst.Attribute:
            found = _apply_reference(module, node)
            if found is not None:
                yield found


def _apply_reference(module: ParsedModule, expr: cst.CSTNode) -> FunctionClass | None:
    if type(expr) is cst.Attribute and expr.attr.value == "apply" and type(expr.value) is cst.Name:
        return function_model(module).by_name(expr.value.value)
    return None


def _definition(module: ParsedModule, name: cst.Name) -> cst.CSTNode | None:
    """What `name` refers to: the single binding in the nearest enclosing function, else a module-level one."""
    scopes = [a for a in module.ancestors(name) if isinstance(a, cst.FunctionDef)] + [module.tree]
    for scope in scopes:
        bound = bindings(scope).get(name.value)
        if bound:
            return bound[0] if len(bound) == 1 else None
    return None


def _has_generate_vmap_rule(function_class: FunctionClass) -> bool:
    for statement in function_class.node.body.body:
        if isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                if isinstance(small, (cst.Assign, cst.AnnAssign)):
                    targets = [t.target for t in small.targets] if isinstance(small, cst.Assign) else [small.target]
                    if any(isinstance(t, cst.Name) and t.value == "generate_vmap_rule" for t in targets):
                        return not (isinstance(small.value, cst.Name) and small.value.value == "False")
    return any(_has_generate_vmap_rule(base) for base in function_class.bases)


def _missing(function_class: FunctionClass, needs: set[str]) -> str | None:
    if function_class.forward is None:
        return None
    if not function_class.uses_setup_context:
        return "setup_context"
    if "vmap" in needs and function_class.method("vmap") is None and not _has_generate_vmap_rule(function_class):
        return "vmap"
    if "jvp" in needs and function_class.method("jvp") is None:
        return "jvp"
    return None


def _message(function_class: FunctionClass, transform: str, missing: str, report: cst.CSTNode) -> tuple[str, str]:
    name = function_class.name
    shown = short_code(report, 25)
    if missing == "setup_context":
        return (
            f"`{shown}` runs {name}.apply under {transform}, but {name} has no setup_context",
            f"{name}.forward takes ctx and there is no setup_context, which torch.func.{transform} needs: torch "
            f"raises '{SETUP_CONTEXT_MESSAGE}'. Make forward take only the inputs and move the ctx work into "
            "`@staticmethod def setup_context(ctx, inputs, output)`.",
        )
    if missing == "vmap":
        return (
            f"`{shown}` vmaps over {name}.apply, which has no vmap rule",
            f"{name} has no `vmap` staticmethod and no `generate_vmap_rule = True`: "
            f"torch raises 'You tried to vmap over {name}, but it does not have vmap support'. Set "
            f"`generate_vmap_rule = True` on the class (forward written in torch ops) or implement `vmap`.",
        )
    mode = "torch.autograd.forward_ad dual tensors" if transform == "forward_ad" else f"torch.func.{transform}"
    return (
        f"`{shown}` runs {name}.apply under forward-mode AD, but {name} has no jvp",
        f"It runs under {mode}, and {name} has no `jvp` staticmethod: "
        "torch raises 'You must implement the jvp function for custom autograd.Function to use it with forward "
        "mode AD'. Implement `jvp(ctx, *tangents)`.",
    )

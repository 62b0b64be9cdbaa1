"""AGL010 missing-once-differentiable: backward leaves autograd but does not say so.

A backward whose returned gradient is computed through NumPy, `.item()`/`.tolist()`, `.data`,
`.detach()`, `torch.no_grad()` or a compiled extension gives a gradient that autograd cannot
differentiate again. Without `@once_differentiable`, a gradient penalty, a Hessian or any double
backward through it is silently wrong (or fails with a confusing "does not require grad").

Only values that carry gradient count: the backward's grad arguments, its saved tensors and what is
computed from them. A construct counts only when its value flows into what backward returns (not
into a shape, an index, a condition or a guard that raises): the value-flow engine of
`gradient_reach` (`names_computed_from`, `reaches_return`, `non_value_use`), with this rule's carriers.
A module function backward passes a gradient to is read the same way, one call deep. One finding per
backward: the first such construct in evaluation order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.prefilter import TextCue
from ..core.rule import Finding
from ..core.syntax import assigned_names, children, code_of, disables_grad, dotted_name, is_none, shortened, walk
from ..facts.function_model import BACKWARD_METHODS, FunctionClass, Method
from ..facts.gradient_reach import (
    ARGUMENT_CARRYING_METHODS,
    METADATA,
    STRUCTURE_FUNCTIONS,
    STRUCTURE_KEYWORDS,
    names_computed_from,
    reaches_return,
    written_names,
)
from ..facts.gradient_returns import returned_values
from ..facts.second_derivatives import second_derivative_uses
from ..torch_api import VIEW_ATTRIBUTES
from .base import FunctionClassRule

# What each leaving construct does, for the message.
LEAVING_METHODS = {
    "numpy": "`.numpy()` turns the tensor into a NumPy array",
    "item": "`.item()` turns the tensor into a Python number",
    "tolist": "`.tolist()` turns the tensor into Python numbers",
    "detach": "`.detach()` drops the tensor's autograd history",
}
SAVED_ATTRIBUTES = ("saved_tensors", "saved_variables")
# Ops whose result carries no gradient back to their operands (so a saved tensor built with them is
# a constant for double backward anyway): comparisons, indices, integer casts, steps, metadata.
NON_DIFFERENTIABLE_OPS = frozenset(
    {
        "detach",
        "argmax",
        "argmin",
        "argsort",
        "sign",
        "sgn",
        "round",
        "floor",
        "ceil",
        "trunc",
        "long",
        "int",
        "bool",
        "byte",
        "short",
        "char",
        "eq",
        "ne",
        "gt",
        "ge",
        "lt",
        "le",
        "isnan",
        "isinf",
        "isfinite",
        "nonzero",
        "zeros_like",
        "ones_like",
        "empty_like",
        "full_like",
        "rand_like",
        "randn_like",
        "randint_like",
        "bernoulli",
        "float",
        "len",
        "item",
        "tolist",
        "numpy",
        "heaviside",
        "logical_not",
        "logical_and",
        "logical_or",
        "bucketize",
        "searchsorted",
        "one_hot",
        "new_zeros",
        "new_ones",
        "new_empty",
        "new_full",
        "multinomial",
        "get_device",
    }
)
# A module (or a name bound from one) that is a compiled extension: `_C`, `_ext`, `*_cuda`, `*_cpp`...
EXTENSION_MODULE = re.compile(r"^(_C|_ext|_?\w+_(C|cuda|ext|cpp|cext|cuda_ext|kernels?))$")
EXTENSION_LOADERS = frozenset({"load", "load_inline", "load_ext"})
# One of the constructs (or a save, or a ctx attribute written) somewhere in the file.
LEAVES_AUTOGRAD = TextCue(
    "a construct that leaves autograd, a save or a ctx attribute written",
    patterns=(
        re.compile(
            r"\.(numpy|item|tolist|detach|data)\b|no_grad|inference_mode|set_grad_enabled|numpy|\]\s*\("
            r"|_(C|cuda|ext|cpp|cext|kernels?)\b|load|save_for_backward|\w\.\w+\s*=[^=]"
        ),
    ),
)


class MissingOnceDifferentiable(FunctionClassRule[FunctionClass]):
    code = "AGL010"
    name = "missing-once-differentiable"
    severity = Severity.WARNING
    summary = "backward leaves autograd (NumPy, .item(), .data, no_grad, detach, extension calls) without @once_differentiable"
    requires = (LEAVES_AUTOGRAD,)
    only_reachable_backward = True

    def check_class(self, function_class: FunctionClass, module: ParsedModule) -> Iterator[Finding[FunctionClass]]:
        for name in BACKWARD_METHODS:
            method = function_class.own_methods.get(name)
            if method is None or _once_differentiable(module, method):
                continue
            extensions, second_derivatives = module.fact(_ExtensionNames), module.fact(_second_derivative_use)
            found = _BackwardFlow(module, method, extensions, second_derivatives).first_exit()
            if found is not None:
                node, what = found
                yield Finding(node, *_message(function_class, method, node, what), subject=function_class)


def _once_differentiable(module: ParsedModule, method: Method) -> bool:
    for decorator in method.node.decorators:
        expr = decorator.decorator.func if isinstance(decorator.decorator, cst.Call) else decorator.decorator
        if (module.qualified_name(expr) or "").rsplit(".", 1)[-1] == "once_differentiable":
            return True
    return False


class _ExtensionNames:
    """Module-level names that are compiled extensions: imports named like one (`_C`, `*_cuda`,
    `*_ext`, `*_cpp`), names bound from `cpp_extension.load(...)`, and Triton kernels (a module that
    imports triton launches them as `kernel[grid](...)`)."""

    def __init__(self, module: ParsedModule):
        self.module = module
        self.names = {local for local, full in module.imports.items() if _is_extension_path(full)}
        for statement in module.tree.body:
            for small in statement.body if isinstance(statement, cst.SimpleStatementLine) else ():
                if isinstance(small, cst.Assign) and isinstance(small.value, cst.Call):
                    loader = (dotted_name(small.value.func) or "").rsplit(".", 1)[-1]
                    if loader in EXTENSION_LOADERS:
                        self.names |= {n.value for t in small.targets for n in assigned_names(t.target)}
        self.triton = any(full.split(".")[0] == "triton" for full in module.imports.values())

    def called(self, call: cst.Call) -> str | None:
        """The extension a call goes into, as written, or None."""
        func = call.func
        if isinstance(func, cst.Subscript) and self.triton:
            return code_of(func.value).strip()  # kernel[grid](...)
        dotted = dotted_name(func)
        if dotted is None:
            return None
        head = dotted.split(".")[0]
        if head in self.names:
            return dotted
        qualified = self.module.qualified_name(func) or ""
        if head in self.module.imports and _is_extension_path(qualified.rsplit(".", 1)[0]):
            return dotted
        return None


def _is_extension_path(full: str) -> bool:
    parts = full.split(".")
    return parts[0] != "torch" and any(EXTENSION_MODULE.match(part) for part in parts)


class _BackwardFlow:
    """Which values in one backward carry gradient, and whether a leaving construct reaches the return."""

    def __init__(
        self, module: ParsedModule, method: Method, extensions: _ExtensionNames, second_derivatives: cst.CSTNode | None
    ):
        seeds = {p.name.value for p in method.data_params}
        star = method.node.params.star_arg
        if isinstance(star, cst.Param):
            seeds.add(star.name.value)
        self._setup(module, method.node, seeds, method.ctx_name, extensions)
        self.higher_order = second_derivatives
        self.intermediates = _SavedIntermediates(module, method.owner, method) if self.higher_order else None
        self.follows_helpers = True

    @classmethod
    def of_helper(
        cls, module: ParsedModule, helper: cst.FunctionDef, seeds: set[str], extensions: _ExtensionNames
    ) -> _BackwardFlow:
        """The flow inside a module function backward calls, from the parameters it passes gradients
        to (one call deep: the helper's own helpers are not followed)."""
        flow = cls.__new__(cls)
        flow._setup(module, helper, seeds, None, extensions)
        flow.higher_order = flow.intermediates = None
        flow.follows_helpers = False
        return flow

    def _setup(
        self,
        module: ParsedModule,
        function: cst.FunctionDef,
        seeds: set[str],
        ctx: str | None,
        extensions: _ExtensionNames,
    ) -> None:
        self.module = module
        self.function = function
        self.extensions = extensions
        self.ctx = ctx
        self.nodes = list(walk(function.body, into_functions=False))
        self.carrying = names_computed_from(module, function, seeds, self._mentions)
        self.buffers = self._allocated_buffers()

    def _allocated_buffers(self) -> set[str]:
        """Names bound to freshly allocated tensors (`torch.empty_like(x)`, `g.new_zeros(n)`): what an
        extension call or a kernel launch writes its result into."""
        found = set()
        for node in self.nodes:
            if isinstance(node, cst.Assign) and isinstance(node.value, cst.Call):
                func = node.value.func
                short = func.attr.value if isinstance(func, cst.Attribute) else (dotted_name(func) or "")
                if short in STRUCTURE_FUNCTIONS:
                    found |= {n.value for t in node.targets for n in assigned_names(t.target)}
        return found

    def _mentions(self, expr: cst.CSTNode, names: set[str]) -> bool:
        for node in [expr, *walk(expr)]:
            if isinstance(node, cst.Attribute):
                if self.ctx and node.attr.value in SAVED_ATTRIBUTES and dotted_name(node.value) == self.ctx:
                    return True
            elif isinstance(node, cst.Name) and node.value in names:
                parent = self.module.parents.get(node)
                if isinstance(parent, cst.Attribute) and parent.attr is node:
                    continue
                if isinstance(parent, cst.Arg) and parent.keyword is node:
                    continue
                return True
        return False

    def first_exit(self) -> tuple[cst.CSTNode, str] | None:
        if not any(isinstance(n, cst.Return) and n.value is not None for n in self.nodes):
            return None  # backward only raises (or returns nothing)
        for node in _post_order(self.function.body):
            what = self._leaving(node)
            if what is not None and not self._under_enable_grad(node):
                return node, what
        return None

    # --- leaving constructs ------------------------------------------------------------------

    def _leaving(self, node: cst.CSTNode) -> str | None:
        if isinstance(node, cst.With):
            return self._no_grad_block(node)
        if (
            self.intermediates is not None
            and self.higher_order is not None
            and isinstance(node, (cst.Name, cst.Attribute, cst.Subscript))
        ):
            computed = self.intermediates.read_by(node)
            if computed is not None and self._reaches_return(node):
                line = self.module.position(self.higher_order).start.line
                return (
                    f"forward computed `{computed}` and saved it: to autograd it is a constant, not a function of the "
                    f"input, and this module takes second derivatives (`{code_of(self.higher_order).strip()}` on line {line})"
                )
        if isinstance(node, cst.Attribute) and node.attr.value == "data":
            if self._carries_gradient(node.value) and not self._is_target(node) and self._reaches_return(node):
                return "`.data` is the tensor without its autograd history"
            return None
        if not isinstance(node, cst.Call):
            return None
        func = node.func
        if isinstance(func, cst.Attribute) and func.attr.value in LEAVING_METHODS and not node.args:
            if func.attr.value == "detach" and self._requires_grad_again(node):
                return None  # `x.detach().requires_grad_()`: a fresh leaf for a local graph
            if self._carries_gradient(func.value) and self._reaches_return(node):
                return LEAVING_METHODS[func.attr.value]
            return None
        qualified = self.module.qualified_name(func) or ""
        if qualified.split(".")[0] == "numpy" and self._any_argument_carries(node) and self._reaches_return(node):
            return f"`{dotted_name(func)}` computes in NumPy, outside autograd"
        extension = self.extensions.called(node)
        if extension is not None and self._any_argument_carries(node):
            if self._reaches_return(node):
                return f"the compiled extension `{extension}` has no autograd formula of its own"
            return None
        return self._leaving_in_helper(node) if self.follows_helpers else None

    def _leaving_in_helper(self, call: cst.Call) -> str | None:
        """A module function backward passes a gradient to and whose result it returns, when the
        helper leaves autograd on the way (`return _grad_np(g, x)` with `def _grad_np(g, x): ...numpy()`)."""
        helper = _module_function(self.module, call.func, self.function)
        if helper is None:
            return None
        seeds = {param for param, arg in _parameters_bound(helper, call) if self._carries_gradient(arg.value)}
        found = _BackwardFlow.of_helper(self.module, helper, seeds, self.extensions).first_exit() if seeds else None
        if found is None or not self._reaches_return(call):
            return None
        inner, what = found
        return f"{what}, in `{helper.name.value}` on line {self.module.position(inner).start.line}"

    def _no_grad_block(self, node: cst.With) -> str | None:
        for item in node.items:
            call = item.item
            if not disables_grad(call):
                continue
            for statement in walk(node.body, into_functions=False):
                value = (
                    statement.value
                    if isinstance(statement, (cst.Assign, cst.AugAssign, cst.AnnAssign, cst.Return, cst.Expr))
                    else None
                )
                if value is not None and self._carries_gradient(value) and self._reaches_return(value):
                    return f"ops under `{code_of(call).strip()}` record no graph"
        return None

    def _carries_gradient(self, expr: cst.BaseExpression) -> bool:
        return self._mentions(expr, self.carrying)

    def _any_argument_carries(self, call: cst.Call) -> bool:
        return any(self._carries_gradient(arg.value) for arg in call.args)

    def _is_target(self, node: cst.CSTNode) -> bool:
        parent = self.module.parents.get(node)
        return isinstance(parent, (cst.AssignTarget, cst.AugAssign)) and getattr(parent, "target", None) is node

    def _requires_grad_again(self, call: cst.Call) -> bool:
        parent = self.module.parents.get(call)
        return isinstance(parent, cst.Attribute) and parent.attr.value in ("requires_grad_", "requires_grad")

    def _under_enable_grad(self, node: cst.CSTNode) -> bool:
        for ancestor in self.module.ancestors(node):
            if ancestor is self.function:
                return False
            if isinstance(ancestor, cst.With) and any(
                (self.module.qualified_name(i.item.func if isinstance(i.item, cst.Call) else i.item) or "").endswith(
                    "enable_grad"
                )
                for i in ancestor.items
            ):
                return True
        return False

    # --- flow to the returned gradient (the shared def-use walk, with this rule's carriers) -------

    def _reaches_return(self, node: cst.CSTNode) -> bool:
        """Whether `node`'s value flows into what backward returns (`gradient_reach.reaches_return`):
        not into a shape, an index, a condition or a guard that raises."""
        return reaches_return(self.module, self.function, node, self._carries, self._bound_names) is not None

    def _bound_names(self, statement: cst.CSTNode, child: cst.CSTNode, state: bool = True) -> set[str] | None:
        """The names a statement makes hold `child`'s value (not ctx), and the output buffers an
        extension call fills (`ext.backward(g, x, grad_in)` with `grad_in = torch.empty_like(x)`)."""
        written = written_names(
            self.module, statement, child, exclude=frozenset() if self.ctx is None else frozenset({self.ctx})
        )
        if (
            written is not None
            and isinstance(statement, cst.Expr)
            and isinstance(child, cst.Call)
            and self.extensions.called(child) is not None
        ):
            written |= {
                a.value.value for a in child.args if isinstance(a.value, cst.Name) and a.value.value in self.buffers
            }
        return written

    def _carries(self, parent: cst.CSTNode, child: cst.CSTNode, state: bool = True) -> bool | None:
        """`state` (AGL010 tracks none) if `child`'s value flows into `parent`'s value past the shared
        non-value uses, else None. Any expression or container carries it; a tensor method's arguments
        only for value methods (`g.mul(s)`, not `g.view(n, -1)`); torch's own backward kernels end the
        flow (whether they differentiate again is torch's to say: they raise if not)."""
        if isinstance(parent, cst.Arg):
            carried = self._argument_carries(parent)
        else:
            carried = isinstance(parent, cst.BaseExpression) or isinstance(
                parent, (cst.Element, cst.StarredElement, cst.DictElement, cst.CompFor)
            )
        return state if carried else None

    def _argument_carries(self, arg: cst.Arg) -> bool:
        call = self.module.parents.get(arg)
        if not isinstance(call, cst.Call):
            return False
        name = dotted_name(call.func) or ""
        short = (
            name.rsplit(".", 1)[-1] if name else (call.func.attr.value if isinstance(call.func, cst.Attribute) else "")
        )
        if "backward" in short and (self.module.qualified_name(call.func) or "").startswith("torch."):
            return False
        if isinstance(call.func, cst.Attribute) and not self._is_module_function(call.func):
            return short in ARGUMENT_CARRYING_METHODS
        return True

    def _is_module_function(self, func: cst.Attribute) -> bool:
        """`torch.mul(...)`, `F.pad(...)`, `np.exp(...)`, `ext.backward(...)`: a function, not a tensor method."""
        head = (dotted_name(func) or "").split(".")[0]
        return bool(head) and (head in self.module.imports or head in self.extensions.names)


def _module_function(module: ParsedModule, func: cst.BaseExpression, caller: cst.FunctionDef) -> cst.FunctionDef | None:
    """The function of this module `func` names: one defined in the calling function, a module-level
    function (`_grad_np(...)`) or a static method called through its class (`_Kernels.backward_dx(...)`)."""
    if isinstance(func, cst.Name):
        local = [
            n
            for n in walk(caller.body, into_functions=False)
            if isinstance(n, cst.FunctionDef) and n.name.value == func.value
        ]
        return (
            local[-1]
            if local
            else next(
                (s for s in module.tree.body if isinstance(s, cst.FunctionDef) and s.name.value == func.value), None
            )
        )
    if not (isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name)):
        return None
    owner = next(
        (s for s in module.tree.body if isinstance(s, cst.ClassDef) and s.name.value == func.value.value), None
    )
    if owner is None:
        return None
    method = next(
        (s for s in owner.body.body if isinstance(s, cst.FunctionDef) and s.name.value == func.attr.value), None
    )
    static = method is not None and any((dotted_name(d.decorator) or "") == "staticmethod" for d in method.decorators)
    return method if static else None


def _parameters_bound(function: cst.FunctionDef, call: cst.Call) -> list[tuple[str, cst.Arg]]:
    """(parameter, argument) pairs of a call, positional and by keyword; none past a `*args`/`**kw`."""
    positional = [p.name.value for p in (*function.params.posonly_params, *function.params.params)]
    pairs = []
    for index, arg in enumerate(a for a in call.args if a.keyword is None):
        if arg.star or index >= len(positional):
            break
        pairs.append((positional[index], arg))
    pairs += [(arg.keyword.value, arg) for arg in call.args if arg.keyword is not None]
    return pairs


class _SavedIntermediates:
    """Tensors forward saves (with save_for_backward or on ctx) that are neither its inputs nor its
    outputs but are computed from an input that backward returns a gradient for: in backward they are
    constants, so the returned gradient misses their dependence on that input.

    Saved inputs and outputs are fine (torch hands backward the originals, with their history); so
    are masks, indices and other values computed through non-differentiable ops. Only ctx-style
    forwards (no setup_context) are read.
    """

    def __init__(self, module: ParsedModule, function_class: FunctionClass, backward: Method):
        self.module = module
        self.backward = backward
        self.by_position: dict[int, str] = {}  # save_for_backward position -> forward expression
        self.by_attribute: dict[str, str] = {}  # ctx attribute -> forward expression
        self.names: dict[str, str] = {}  # backward's names for saved intermediates -> forward expression
        forward = function_class.forward
        if forward is None or forward.ctx_name is None:
            return
        self.forward = forward
        self.params = [p.name.value for p in forward.data_params]
        self.differentiable = self._differentiable_inputs(function_class, backward)
        if not self.differentiable:
            return
        self.bindings: dict[str, list[cst.BaseExpression]] = {}
        outputs: set[str] = set()
        body = list(walk(forward.node.body, into_functions=False))
        for node in body:
            if isinstance(node, cst.Assign):
                for target in node.targets:
                    for name in assigned_names(target.target):
                        self.bindings.setdefault(name.value, []).append(node.value)
            elif isinstance(node, cst.Return) and node.value is not None:
                value = node.value
                elements = [e.value for e in value.elements] if isinstance(value, (cst.Tuple, cst.List)) else [value]
                outputs |= {e.value for e in elements if isinstance(e, cst.Name)}
        ctx = forward.ctx_name
        for node in body:
            if isinstance(node, cst.Call) and dotted_name(node.func) == f"{ctx}.save_for_backward":
                if any(arg.star for arg in node.args):
                    continue
                for position, arg in enumerate(node.args):
                    if self._intermediate(arg.value, outputs):
                        self.by_position[position] = self._shown(arg.value)
            elif isinstance(node, cst.Assign) and len(node.targets) == 1:
                assigned = node.targets[0].target
                if (
                    isinstance(assigned, cst.Attribute)
                    and dotted_name(assigned.value) == ctx
                    and self._intermediate(node.value, outputs)
                ):
                    self.by_attribute[assigned.attr.value] = self._shown(node.value)
        self.names = self._unpacked_names() if self.by_position else {}

    def _shown(self, expr: cst.BaseExpression) -> str:
        """`sq = x * x` for a name bound once, else the expression."""
        text = " ".join(code_of(expr).split())
        values = self.bindings.get(expr.value, []) if isinstance(expr, cst.Name) else []
        if len(values) == 1:
            value = " ".join(code_of(values[0]).split())
            text = f"{text} = {value if len(value) <= 40 else value[:37] + '...'}"
        return text

    @staticmethod
    def _differentiable_inputs(function_class: FunctionClass, backward: Method) -> set[str]:
        """Inputs that some `return` of backward gives a non-None gradient."""
        inputs = function_class.forward_inputs()
        if inputs is None or inputs.has_varargs:
            return set()
        found = set()
        for returned in returned_values(backward):
            for name, element in zip(inputs.names, returned.elements):
                if not is_none(element) and not returned.is_list:
                    found.add(name)
        return found

    def _intermediate(self, expr: cst.BaseExpression, outputs: set[str]) -> bool:
        if isinstance(expr, cst.Name) and (expr.value in self.params or expr.value in outputs):
            return False
        return self._depends(expr, frozenset())

    def _depends(self, expr: cst.CSTNode, visiting: frozenset[str]) -> bool:
        """Whether `expr` is computed from a differentiable input through differentiable ops."""
        if isinstance(expr, cst.Name):
            if expr.value in self.differentiable:
                return True
            if expr.value in visiting or expr.value in self.params:
                return False
            return any(self._depends(value, visiting | {expr.value}) for value in self.bindings.get(expr.value, ()))
        if isinstance(expr, (cst.Comparison, cst.BooleanOperation)):
            return False
        if isinstance(expr, cst.UnaryOperation):
            return not isinstance(expr.operator, cst.Not) and self._depends(expr.expression, visiting)
        if isinstance(expr, cst.BinaryOperation):
            return self._depends(expr.left, visiting) or self._depends(expr.right, visiting)
        if isinstance(expr, cst.IfExp):
            return self._depends(expr.body, visiting) or self._depends(expr.orelse, visiting)
        if isinstance(expr, cst.Subscript):
            return self._depends(expr.value, visiting)
        if isinstance(expr, cst.Attribute):
            # only a view is a tensor computed from it: every other attribute is metadata or not a tensor
            return expr.attr.value in VIEW_ATTRIBUTES and self._depends(expr.value, visiting)
        if isinstance(expr, cst.Call):
            func = expr.func
            name = func.attr.value if isinstance(func, cst.Attribute) else (dotted_name(func) or "").rsplit(".", 1)[-1]
            if name in NON_DIFFERENTIABLE_OPS or name in METADATA or name in STRUCTURE_FUNCTIONS:
                return False
            receiver = func.value if isinstance(func, cst.Attribute) else None
            if (
                receiver is not None
                and self.module.qualified_name(receiver) is not None
                and (dotted_name(receiver) or "").split(".")[0] in self.module.imports
            ):
                receiver = None  # `torch.exp(x)`: a function of its arguments
            operands = [a.value for a in expr.args if a.keyword is None or a.keyword.value not in STRUCTURE_KEYWORDS]
            return any(self._depends(o, visiting) for o in ([receiver] if receiver is not None else []) + operands)
        return False

    def _unpacked_names(self) -> dict[str, str]:
        """Backward's names for the saved intermediates: `x, sq = ctx.saved_tensors`."""
        ctx = self.backward.ctx_name
        found = {}
        for node in walk(self.backward.node.body, into_functions=False):
            if not (
                isinstance(node, cst.Assign) and dotted_name(node.value) in {f"{ctx}.{a}" for a in SAVED_ATTRIBUTES}
            ):
                continue
            for target in node.targets:
                if isinstance(target.target, (cst.Tuple, cst.List)) and not any(
                    isinstance(e, cst.StarredElement) for e in target.target.elements
                ):
                    for position, element in enumerate(target.target.elements):
                        if position in self.by_position and isinstance(element.value, cst.Name):
                            found[element.value.value] = self.by_position[position]
        return found

    def read_by(self, node: cst.CSTNode) -> str | None:
        """The forward expression a backward read stands for, if it is a saved intermediate."""
        ctx = self.backward.ctx_name
        parent = self.module.parents.get(node)
        if isinstance(node, cst.Name):
            if (
                node.value not in self.names
                or isinstance(parent, (cst.Attribute, cst.AssignTarget, cst.Element, cst.Arg))
                and not _is_load(parent, node)
            ):
                return None
            return self.names[node.value]
        if isinstance(node, cst.Attribute) and dotted_name(node.value) == ctx and node.attr.value in self.by_attribute:
            if isinstance(parent, cst.AssignTarget):
                return None
            return self.by_attribute[node.attr.value]
        if isinstance(node, cst.Subscript) and dotted_name(node.value) in {f"{ctx}.{a}" for a in SAVED_ATTRIBUTES}:
            index = node.slice[0].slice if len(node.slice) == 1 else None
            if isinstance(index, cst.Index) and isinstance(index.value, cst.Integer):
                return self.by_position.get(int(index.value.value))
        return None


def _is_load(parent: cst.CSTNode, node: cst.Name) -> bool:
    if isinstance(parent, cst.Attribute):
        return parent.value is node
    if isinstance(parent, cst.Arg):
        return parent.keyword is not node
    return not isinstance(parent, (cst.AssignTarget, cst.Element))


# The first names of the constructs `second_derivatives` matches: the node a match starts at.
SECOND_DERIVATIVE_NAMES = frozenset(
    {"create_graph", "gradgradcheck", "hessian", "hvp", "vvp", "vhp", "jacrev", "jacfwd", "grad"}
)


def _second_derivative_use(module: ParsedModule) -> cst.CSTNode | None:
    """Where this module takes second derivatives, by `second_derivatives`' one definition (the one
    the default selection uses): the first match that is code, not a comment or a string, as the node
    the message quotes (`create_graph=True`, `torch.autograd.gradgradcheck`, `hessian`)."""
    offsets = second_derivative_uses(module.source)
    if not offsets:
        return None
    starts = {}
    for node in module.parents:
        if type(node) is cst.Name and node.value in SECOND_DERIVATIVE_NAMES:
            position = module.position(node).start
            starts[(position.line, position.column)] = node
    for offset in offsets:
        line_start = module.source.rfind("\n", 0, offset) + 1
        name = starts.get((module.source.count("\n", 0, offset) + 1, offset - line_start))
        if name is None:
            continue
        parent = module.parents.get(name)
        return parent if isinstance(parent, (cst.Arg, cst.Attribute)) else name
    return None


def _post_order(root: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """Nodes in evaluation order, roughly: children before their parent (nested functions skipped)."""
    stack: list[tuple[cst.CSTNode, bool]] = [(child, False) for child in reversed(children(root))]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            yield node
            continue
        if isinstance(node, cst.With):
            yield node  # a no_grad block leaves autograd before anything inside it runs
        else:
            stack.append((node, True))
        if isinstance(node, (cst.FunctionDef, cst.ClassDef, cst.Lambda)):
            continue
        stack.extend((child, False) for child in reversed(children(node)))


def _message(function_class: FunctionClass, method: Method, node: cst.CSTNode, what: str) -> tuple[str, str]:
    shown = (
        " ".join(code_of(node).split())
        if not isinstance(node, cst.With)
        else "with " + ", ".join(" ".join(code_of(i.item).split()) for i in node.items)
    )
    return (
        f"{function_class.name}.{method.name} leaves autograd at `{shortened(shown, 25)}` without @once_differentiable",
        f"It computes its gradient outside autograd at `{shortened(shown, 60)}` ({what}) "
        "and is not marked @once_differentiable: a second derivative through it (gradient penalty, Hessian, "
        "double backward) is silently wrong or fails with 'element 0 of tensors does not require grad'. Compute "
        "it with differentiable torch ops, or decorate backward with @once_differentiable so that double "
        "backward raises.",
    )

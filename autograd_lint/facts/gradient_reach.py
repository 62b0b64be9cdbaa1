"""Can a gradient reach this code, this value? One shared answer for the rules that judge training paths.

Rules about lost or wrong gradients (AGL004 zero-gradient ops, AGL003 hand-written activations, AGL023
`torch.where` NaN gradients) only matter where autograd records the code and where the value they
look at flows, as a differentiable value, into what the function returns. This module answers, from
the structure of the code rather than from names:

- `gradient_disabled(module, node)`: the code runs with recording off (`torch.no_grad()`,
  `inference_mode()`, a decorator of either, `set_grad_enabled(False)`) or inside an optimizer's `step`.
- `is_straight_through(module, operation)`: an additive expression is a straight-through estimator
  in any spelling (`x + (q - x).detach()`, `(q - x).detach() + x`, `q + s - s.detach()`, `.data`).
- `callers(module, function)`: the calls of a module-level function or of a method of its class
  that this module makes, so a helper is judged by how its result is used.
- `ValueFlow(module, function)`: data flow inside one function. `carries_gradient(expr)` says
  whether an expression reads the function's differentiable inputs (not a shape, a label, a count,
  a random sample, a detached or no-grad value); `reaches_output(node)` whether a value flows into a
  `return` as a differentiable value, not only as an index, a size, a comparison, a Python number,
  an integer result, a mask or sign factor of another differentiable term, beside its own operand
  (a wrap, a fraction), or through an STE; `carries_elementwise(expr)` whether a term holds a
  differentiable tensor rather than a scale or a reduction.
- `scale_names_of` / `primary_names_of`: in an op's operand (`round((x - z) / s)`), the scale and
  offset (`s`, `z`) versus the quantized data (`x`).
- `is_integer_cast(call)`, `is_integer_dtype(expr)`: `.long()`, `.to(torch.int8)`, `torch.bool`.
- `holds_no_gradient(module, expr)`: nothing the value is computed from can require grad (numbers,
  shapes, factories and grids, integer indices, detached values; a helper's parameter when this
  module's functions only pass such values).
- `feeds_only_non_differentiable(module, expr)`: every use of the value ends where no gradient flows
  back (argmax, a comparison, an index, a new `nn.Parameter`, also through a constructor of this
  module). Unlike `reaches_output`, a product with a differentiable term keeps the flow going.
- `in_operator_implementation(module, node)`: the body of a registered operator (`custom_op`,
  `register_decomposition`), which autograd never records.
- The value-flow engine under `ValueFlow`, AGL010 and `feeds_only_non_differentiable`, with each
  rule's sources, carriers and blockers: `non_value_use(module, parent, child)` (one vocabulary of
  shape, index, condition, metadata and message uses), `names_computed_from` (a rule's seeds and the
  locals computed from them), `written_names` / `reads_of` (def-use through assignments, tuples,
  appends, writes into objects) and `reaches_return` (the walk to a `return`, with a rule state).
"""

from __future__ import annotations

import re

import libcst as cst

from ..core.module import ParsedModule
from ..core.scopes import bindings
from ..core.syntax import assigned_names, children, code_of, dotted_name, is_integer_dtype, normalized_code, walk
from ..torch_api import (
    CASTS,
    FRESH_TENSOR_FACTORIES,
    INTEGER_CASTS,
    POSITION_RESULT_OPS,
    REDUCTIONS,
    ZERO_GRADIENT_OPS,
)
from .function_model import function_model
from .value_kinds import NON_TENSOR, annotation_kind

# Methods whose receiver's value flows into their result (views, casts, arithmetic, reductions).
CARRYING_METHODS = frozenset(
    {
        "float",
        "double",
        "half",
        "bfloat16",
        "to",
        "type_as",
        "type",
        "view",
        "view_as",
        "reshape",
        "reshape_as",
        "flatten",
        "squeeze",
        "unsqueeze",
        "permute",
        "transpose",
        "t",
        "contiguous",
        "expand",
        "expand_as",
        "repeat",
        "clamp",
        "clip",
        "mul",
        "add",
        "sub",
        "div",
        "matmul",
        "mm",
        "bmm",
        "sum",
        "mean",
        "neg",
        "mul_",
        "add_",
        "sub_",
        "div_",
        "clamp_",
        "masked_fill",
        "cumsum",
        "flip",
        "roll",
        "chunk",
        "split",
        "unbind",
        "narrow",
        "squeeze_",
        "unsqueeze_",
        "sign",
        "round",
        "T",
        "mT",
    }
)
# Methods whose arguments (not just the receiver) are tensors that flow into the result.
# (`x.view_as(y)`, `x.type_as(y)` read only y's shape or dtype: a non-value use, see `non_value_use`.)
ARGUMENT_CARRYING_METHODS = frozenset(
    {
        "mul",
        "add",
        "sub",
        "div",
        "true_divide",
        "matmul",
        "mm",
        "bmm",
        "mv",
        "dot",
        "outer",
        "pow",
        "addcmul",
        "addcdiv",
        "addmm",
        "baddbmm",
        "lerp",
        "maximum",
        "minimum",
        "where",
        "masked_fill",
        "masked_scatter",
        "mul_",
        "add_",
        "sub_",
        "div_",
        "copy_",
        "addcmul_",
        "addcdiv_",
        "lerp_",
        "masked_fill_",
        "fill_",
        "rsub",
        "clamp",
        "clamp_",
        "clip",
        "index_add",
        "index_add_",
        "scatter_add",
        "scatter_add_",
        "new_tensor",
        "append",
    }
)
# Methods whose tensor argument is read only for its shape or dtype.
SHAPE_ARGUMENT_METHODS = frozenset({"type_as", "expand_as", "view_as", "reshape_as"})
# Functions whose positional arguments at these indices are indices, masks or sizes, not values.
NON_VALUE_POSITIONS = {
    "gather": {1, 2},
    "index_select": {1, 2},
    "scatter": {1, 2},
    "scatter_add": {1, 2},
    "take": {1},
    "take_along_dim": {1, 2},
    "where": {0},
    "masked_fill": {1},
    "masked_select": {1},
    "embedding": {0},
    "interpolate": {1, 2},
    "pad": {1},
    "one_hot": {1},
    "bucketize": {1},
    "searchsorted": {0},
    "quantize_per_tensor": {1, 2, 3},
    "quantize_per_channel": {1, 2, 3, 4},
    # Loss functions: the target (and weights) carry no gradient back to the model.
    "cross_entropy": {1, 2},
    "nll_loss": {1, 2},
    "binary_cross_entropy": {1, 2},
    "binary_cross_entropy_with_logits": {1, 2},
    "mse_loss": {1},
    "l1_loss": {1},
    "smooth_l1_loss": {1},
    "huber_loss": {1},
    "kl_div": {1},
    "soft_margin_loss": {1},
    "margin_ranking_loss": {2},
    "hinge_embedding_loss": {1},
    "multilabel_soft_margin_loss": {1},
    "cosine_embedding_loss": {2},
    "poisson_nll_loss": {1},
    "gaussian_nll_loss": {1},
    "ctc_loss": {1, 2, 3},
    "multi_margin_loss": {1},
    "pack_padded_sequence": {1},
}
NON_VALUE_KEYWORDS = frozenset(
    {"target", "weight_target", "labels", "size", "dim", "index", "mask", "num_classes", "lengths"}
)
# Calls whose result is a Python number or a fresh tensor that does not carry gradient.
BLOCKING_CALLS = frozenset(
    {"int", "float", "bool", "len", "range", "str", "round", "math.floor", "math.ceil", "print", "isinstance"}
)
BLOCKING_METHODS = frozenset(
    {
        "detach",
        "detach_",
        "item",
        "tolist",
        "numpy",
        "cpu_numpy",
        "size",
        "dim",
        "numel",
        "nonzero",
        "argwhere",
        "data_ptr",
        "stride",
        "sample",
        "uniform_",
        "normal_",
        "bernoulli_",
        "random_",
        "exponential_",
        "geometric_",
        "cauchy_",
        "log_normal_",
    }
)
BLOCKING_ATTRIBUTES = frozenset({"data", "shape", "dtype", "device", "ndim", "is_cuda", "requires_grad", "grad"})
# Inputs that never need a gradient: loss targets, labels, sequence lengths, masks, indices.
NON_DATA_PARAMETER = re.compile(
    r"(^|_)(targets?|labels?|y_true|tgt|gt|truth|lengths?|lens?|mask\w*|ids?|\w*_ids|index|indices|idx)($|_)"
)


def gradient_disabled(module: ParsedModule, node: cst.CSTNode) -> bool:
    """Whether `node` runs with gradient recording off: under `torch.no_grad()`/`inference_mode()`
    (a `with` or a decorator on any enclosing function) or inside an optimizer's `step`, which
    updates parameters outside autograd."""
    return module.under_no_grad(node) or in_optimizer_step(module, node)


def in_optimizer_step(module: ParsedModule, node: cst.CSTNode) -> bool:
    """Inside a method of a `torch.optim.Optimizer` subclass, or inside a method named `step` of a
    class that walks `self.param_groups` (an optimizer in all but its base class)."""
    for ancestor in module.ancestors(node):
        if not isinstance(ancestor, cst.ClassDef):
            continue
        if any((module.qualified_name(base.value) or "").endswith("Optimizer") for base in ancestor.bases):
            return True
        method = module.enclosing_function(node)
        if method is not None and method.name.value == "step" and "param_groups" in code_of(ancestor.body):
            return True
    return False


def is_straight_through(module: ParsedModule, operation: cst.BinaryOperation) -> bool:
    """Whether the additive expression around `operation` is a straight-through estimator: some term
    `x` is added live and subtracted detached (`x + (q - x).detach()`, `(q - x).detach() + x`,
    `q + s - s.detach()`, `q - x.data + x`), so the forward value is `q` and the gradient is `x`'s."""
    top = operation
    while isinstance(parent := module.parents.get(top), cst.BinaryOperation) and isinstance(
        parent.operator, (cst.Add, cst.Subtract)
    ):
        top = parent
    live: set[str] = set()
    detached_subtracted: set[str] = set()
    for sign, term, detached in _signed_terms(top, 1, False):
        text = normalized_code(term)
        if detached and sign < 0:
            detached_subtracted.add(text)
        elif not detached and sign > 0:
            live.add(text)
    return bool(live & detached_subtracted)


def _signed_terms(expr: cst.BaseExpression, sign: int, detached: bool):
    """(sign, term, detached) for each additive term, looking into `(a - b).detach()` and `.data`."""
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, (cst.Add, cst.Subtract)):
        yield from _signed_terms(expr.left, sign, detached)
        yield from _signed_terms(expr.right, sign if isinstance(expr.operator, cst.Add) else -sign, detached)
        return
    inner = _detached_operand(expr)
    if inner is not None:
        yield from _signed_terms(inner, sign, True)
        return
    yield sign, expr, detached


def _detached_operand(expr: cst.BaseExpression) -> cst.BaseExpression | None:
    """`a` for `a.detach()` and `a.data`."""
    if (
        isinstance(expr, cst.Call)
        and isinstance(expr.func, cst.Attribute)
        and expr.func.attr.value == "detach"
        and not expr.args
    ):
        return expr.func.value
    if isinstance(expr, cst.Attribute) and expr.attr.value == "data":
        return expr.value
    return None


def callers(module: ParsedModule, function: cst.FunctionDef) -> list[cst.Call]:
    """Calls of `function` in this module: `f(...)` for a module-level function, `self.f(...)`,
    `cls.f(...)` or `Owner.f(...)` for a method of class `Owner`."""
    name = function.name.value
    owner = module.grandparent(function)
    if not isinstance(owner, cst.ClassDef):
        return [call for call in _calls_by_name(module).get(name, []) if isinstance(call.func, cst.Name)]
    return [
        call
        for call in _calls_by_name(module).get(name, [])
        if isinstance(call.func, cst.Attribute)
        and isinstance(call.func.value, cst.Name)
        and call.func.value.value in ("self", "cls", owner.name.value)
    ]


def _calls_by_name(module: ParsedModule) -> dict[str, list[cst.Call]]:
    """The module's calls by the last name of their callee (`f` for `f(...)` and `self.f(...)`), built once per
    file (`module.fact`)."""
    return module.fact(_call_index)


def _call_index(module: ParsedModule) -> dict[str, list[cst.Call]]:
    index: dict[str, list[cst.Call]] = {}
    for node in module.parents:
        if isinstance(node, cst.Call):
            func = node.func
            name = (
                func.value
                if isinstance(func, cst.Name)
                else func.attr.value
                if isinstance(func, cst.Attribute)
                else None
            )
            if name is not None:
                index.setdefault(name, []).append(node)
    return index


def is_integer_cast(call: cst.CSTNode) -> bool:
    """`.long()`, `.int()`, `.bool()`, `.to(torch.int32)`, `.type(torch.uint8)`."""
    if not (isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute)):
        return False
    method = call.func.attr.value
    if method in INTEGER_CASTS:
        return not call.args
    return method in ("to", "type") and any(is_integer_dtype(a.value) for a in call.args)


def _is_float_cast(call: cst.CSTNode) -> bool:
    """`.float()`, `.half()`, `.to(x.dtype)`, `.to(x)`, `.type_as(x)`: an integer result made a float again."""
    if not (isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute)):
        return False
    method = call.func.attr.value
    return (
        method in CASTS
        and not is_integer_cast(call)
        and not (
            method == "to"
            and all(
                isinstance(a.value, cst.SimpleString) or (dotted_name(a.value) or "").endswith("device")
                for a in call.args
            )
        )
    )


def _class_facts(module: ParsedModule, function: cst.FunctionDef) -> tuple[set[str], set[str], set[str], set[str]]:
    """For the class that owns `function` (empty sets for a module-level function): attributes
    assigned an nn.Parameter, attributes built by another call, all assigned attributes, and the
    lookup layers (`self.emb = nn.Embedding(...)`: their input is an index). Read once per class."""
    owner = module.grandparent(function)
    if not isinstance(owner, cst.ClassDef):
        return set(), set(), set(), set()
    read = module.fact(_classes_read)
    if owner not in read:
        read[owner] = _read_class(module, owner)
    return read[owner]


def _classes_read(module: ParsedModule) -> dict[cst.ClassDef, tuple[set[str], set[str], set[str], set[str]]]:
    """The file's classes `_class_facts` has read so far: filled on demand, dropped with the file."""
    return {}


def _read_class(module: ParsedModule, owner: cst.ClassDef) -> tuple[set[str], set[str], set[str], set[str]]:
    parameters: set[str] = set()
    built: set[str] = set()
    assigned: set[str] = set()
    lookups: set[str] = set()
    for node in walk(owner.body):
        if (
            isinstance(node, cst.Call)
            and isinstance(node.func, cst.Attribute)
            and node.func.attr.value == "register_buffer"
            and node.args
        ):
            name = node.args[0].value
            if isinstance(name, cst.SimpleString) and isinstance(name.evaluated_value, str):
                assigned.add(name.evaluated_value)
            continue
        if not isinstance(node, (cst.Assign, cst.AnnAssign)) or node.value is None:
            continue
        targets = [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
        if isinstance(node.value, cst.Call):
            layer = (module.qualified_name(node.value.func) or "").rsplit(".", 1)[-1]
            if layer in ("Embedding", "EmbeddingBag") or (
                layer in ("ModuleList", "Sequential") and "Embedding" in code_of(node.value)
            ):
                lookups |= {dotted for t in targets if (dotted := dotted_name(t)) is not None}
        for target in targets:
            if isinstance(target, cst.Attribute) and dotted_name(target.value) == "self":
                assigned.add(target.attr.value)
                if isinstance(node.value, cst.Call) and not _is_factory_call(module, node.value):
                    factory = dotted_name(node.value.func) or ""
                    (parameters if factory.rsplit(".", 1)[-1] == "Parameter" else built).add(target.attr.value)
    return parameters, built, assigned, lookups


def _is_factory_call(module: ParsedModule, call: cst.Call) -> bool:
    qualified = module.qualified_name(call.func) or ""
    return qualified.startswith("torch.") and qualified.rsplit(".", 1)[-1] in FRESH_TENSOR_FACTORIES


class ValueFlow:
    """Data flow inside one function: what carries a gradient and which values reach a `return`."""

    def __init__(self, module: ParsedModule, function: cst.FunctionDef):
        self.module = module
        self.function = function
        self.nodes = [n for n in walk(function.body, into_functions=False) if not isinstance(n, cst.Lambda)]
        self._parameter_attributes, self._built_attributes, self._assigned_attributes, self.lookup_layers = (
            _class_facts(module, function)
        )
        self.params = {
            p.name.value
            for p in (*function.params.posonly_params, *function.params.params, *function.params.kwonly_params)
        }
        self.data_names = self._data_names()

    # --- what carries a gradient ----------------------------------------------------------------

    def carries_gradient(self, expr: cst.CSTNode) -> bool:
        """Whether `expr` reads the function's differentiable data: a tensor parameter, `self.<attr>`
        or a local computed from them; not a shape, a label/length/mask/index parameter, a Python
        number, a random draw, a `.detach()`/`.data` value or a local assigned under no_grad."""
        return self._depends_on(expr, self.data_names)

    def _data_names(self) -> set[str]:
        """Parameters (minus self/cls, labels and non-tensor annotations) and locals computed from
        them outside no_grad blocks, to a fixed point."""
        params = (
            list(self.function.params.posonly_params)
            + list(self.function.params.params)
            + list(self.function.params.kwonly_params)
        )
        names = {
            p.name.value
            for p in params
            if p.name.value not in ("self", "cls")
            and not NON_DATA_PARAMETER.search(p.name.value.lower())
            and annotation_kind(p.annotation) is not NON_TENSOR
            and not (p.default is not None and _is_literal(p.default))  # `bits=8`: a setting, not an input
        }
        return names_computed_from(self.module, self.function, names, self._depends_on, skip=self.module.under_no_grad)

    def _depends_on(self, expr: cst.CSTNode, names: set[str]) -> bool:
        stack = [expr]
        while stack:
            node = stack.pop()
            if isinstance(node, cst.Attribute):
                if node.attr.value in BLOCKING_ATTRIBUTES:
                    continue
                if isinstance(node.value, cst.Name) and node.value.value == "self":
                    parent = self.module.parents.get(node)
                    if not (isinstance(parent, cst.Call) and parent.func is node) and self._attribute_may_be_learned(
                        node
                    ):
                        return True
                    continue
                stack.append(node.value)
                continue
            if isinstance(node, cst.Call):
                name = dotted_name(node.func) or ""
                if name in BLOCKING_CALLS or (
                    isinstance(node.func, cst.Attribute) and node.func.attr.value in BLOCKING_METHODS
                ):
                    continue
                if self._is_torch_factory(node):
                    continue
            if isinstance(node, cst.Name):
                if node.value in names:
                    return True
                continue
            if isinstance(node, (cst.Lambda, cst.BaseComp, cst.Comparison)):
                continue  # a comparison's result is a bool tensor: no gradient
            if isinstance(node, cst.Subscript):
                stack.append(node.value)  # `table[i]`: the gradient reaches the table, not the index
                continue
            stack.extend(reversed(children(node)))
        return False

    def _attribute_may_be_learned(self, attribute: cst.Attribute) -> bool:
        """Whether `self.<attr>` may hold a learned tensor. Read as a value, it must be assigned an
        `nn.Parameter` in the class, or not be assigned there at all (inherited: `nn.Linear.weight`);
        read through it (`self.fc.weight`), it may also be a layer or any object a call built. Numbers,
        names, containers, registered buffers, tensor factories and samplers are not learned."""
        attr = attribute.attr.value
        if attr not in self._assigned_attributes:
            return True
        if attr in self._parameter_attributes:
            return True
        parent = self.module.parents.get(attribute)
        return isinstance(parent, cst.Attribute) and parent.value is attribute and attr in self._built_attributes

    def _is_torch_factory(self, call: cst.Call) -> bool:
        return _is_factory_call(self.module, call)

    def carries_elementwise(
        self,
        expr: cst.CSTNode,
        excluded: frozenset[str] = frozenset(),
        seen: set[str] | None = None,
        reduced: frozenset[str] = frozenset(),
    ) -> bool:
        """Whether `expr` holds a differentiable tensor elementwise: a data name reached through
        elementwise operations, not only through zero-gradient ops, integer casts, a learned scalar
        `self.<attr>`, the names in `excluded` or reductions of the names in `reduced`
        (`w.abs().mean()` beside `sign(w)` is a scale of the binarized value, not another term)."""
        seen = set() if seen is None else seen
        if isinstance(expr, cst.Call):
            callee = (
                expr.func.attr.value
                if isinstance(expr.func, cst.Attribute)
                else (self.module.qualified_name(expr.func) or "").rsplit(".", 1)[-1]
            )
            elementwise_pair = (
                callee in ("max", "min")
                and sum(1 for a in expr.args if a.keyword is None) >= 2
                and not isinstance(expr.args[1].value, cst.Integer)
            )
            if callee in REDUCTIONS and not elementwise_pair and (not reduced or _read_names(expr) & reduced):
                return False
            if callee in ZERO_GRADIENT_OPS or callee.rstrip("_") in ZERO_GRADIENT_OPS:
                return False
            if (
                callee in INTEGER_CASTS
                or callee in BLOCKING_METHODS
                or callee in BLOCKING_CALLS
                or self._is_torch_factory(expr)
            ):
                return False
            parts = [a.value for a in expr.args] + ([expr.func.value] if isinstance(expr.func, cst.Attribute) else [])
            return any(self.carries_elementwise(part, excluded, seen, reduced) for part in parts)
        if isinstance(expr, cst.Attribute):
            if expr.attr.value in BLOCKING_ATTRIBUTES or dotted_name(expr.value) == "self":
                return False
            return self.carries_elementwise(expr.value, excluded, seen, reduced)
        if isinstance(expr, cst.Name):
            if expr.value in excluded or expr.value not in self.data_names or expr.value in seen:
                return False
            seen.add(expr.value)
            if expr.value in self.params:
                return True
            return any(self.carries_elementwise(v, excluded, seen, reduced) for v in self.assigned_values(expr.value))
        if isinstance(expr, cst.Subscript):
            return self.carries_elementwise(expr.value, excluded, seen, reduced)
        if isinstance(expr, (cst.Lambda, cst.BaseComp, cst.Comparison)):
            return False
        return any(
            self.carries_elementwise(child, excluded, seen, reduced)
            for child in children(expr)
            if isinstance(child, cst.BaseExpression)
        )

    def assigned_values(self, name: str) -> list[cst.BaseExpression]:
        """The values this function assigns to the local `name` (`=`, annotated `=`, augmented)."""
        found = []
        for node in self.nodes:
            if isinstance(node, cst.Assign) and any(
                n.value == name for t in node.targets for n in assigned_names(t.target)
            ):
                found.append(node.value)
            elif (
                isinstance(node, (cst.AnnAssign, cst.AugAssign))
                and node.value is not None
                and any(n.value == name for n in assigned_names(node.target))
            ):
                found.append(node.value)
        return found

    # --- flow to the return ---------------------------------------------------------------------

    def reaches_output(
        self, source: cst.CSTNode, integer: bool = False, operand: cst.CSTNode | None = None
    ) -> cst.Return | None:
        """The `return` that `source`'s value reaches as a differentiable value, or None.

        The flow follows assignments, containers, arithmetic, views, layers and torch ops. It stops
        at an index or size position, a comparison, a Python number, `.detach()`/`.data`, an STE, a
        cast to an integer dtype, a product with another elementwise-differentiable term (a mask or
        sign factor: the other term keeps its gradient) and a sum with the op's own `operand`
        (`x - 2*pi*floor(x/2*pi)`, `v - spike * threshold`: the operand keeps gradient 1).
        An `integer` value (an integer cast, a one-hot) counts only once it is made a float again
        (`.float()`, `/`, a product with a data scale): returned as integers it is discrete by
        design. The scale and offset the operand is divided or shifted by (`s` in `round(x / s) * s`)
        are no such other term: multiplying by them dequantizes."""
        scale_names = scale_names_of(self, operand) if operand is not None else frozenset()
        operand_roots = _read_names(operand) if operand is not None else frozenset()
        primary = primary_names_of(self, operand) if operand is not None else frozenset()

        def binds(statement: cst.CSTNode, child: cst.CSTNode, integer: bool) -> set[str] | None:
            if (
                isinstance(statement, cst.AugAssign)
                and statement.value is child
                and not integer
                and isinstance(statement.operator, (cst.MultiplyAssign, cst.AddAssign, cst.SubtractAssign))
                and (isinstance(statement.operator, cst.MultiplyAssign) or _read_names(statement.target) & primary)
                and self.carries_elementwise(statement.target, scale_names, reduced=operand_roots)
            ):
                return set()  # `h *= mask`: a factor or offset of a differentiable term
            # Values written into objects are not followed: a dict of metrics, an index buffer of
            # pixel steps returned beside the output would read as the output itself.
            return written_names(self.module, statement, child, into_objects=False)

        def carries(parent: cst.CSTNode, child: cst.CSTNode, integer: bool) -> bool | None:
            return self._carries(parent, child, integer, scale_names, operand_roots, primary)

        def accepts(statement: cst.Return, integer: bool) -> bool:
            return not integer and not self._eval_only(statement)

        return reaches_return(self.module, self.function, source, carries, binds, state=integer, accepts=accepts)

    def _carries(
        self,
        parent: cst.CSTNode,
        child: cst.CSTNode,
        integer: bool,
        scale_names: frozenset[str],
        operand_roots,
        primary,
    ) -> bool | None:
        """Whether `child`'s value flows into `parent`'s value: None if not, else whether the
        result is still integer-typed."""
        if non_value_use(self.module, parent, child):
            return None  # a shape, an index, a condition, metadata: the one vocabulary the rules share
        if isinstance(parent, cst.BinaryOperation):
            if is_straight_through(self.module, parent):
                return None
            other = parent.right if parent.left is child else parent.left
            if (
                not integer
                and isinstance(parent.operator, cst.Multiply)
                and self.carries_elementwise(other, scale_names, reduced=operand_roots)
            ):
                return None  # a mask or sign factor of a differentiable term: that term keeps its gradient
            if isinstance(parent.operator, (cst.Add, cst.Subtract)) and _read_names(other) & primary:
                if normalized_code(other) in primary or self.carries_elementwise(
                    other, scale_names, reduced=operand_roots
                ):
                    return None  # the operand itself beside its rounded part (`x - 2*pi*floor(x/2*pi)`, `pos - pos.floor().long()`): slope 1
            if isinstance(parent.operator, cst.Divide):
                return False
            if isinstance(parent.operator, cst.Multiply) and integer and self.carries_gradient(other):
                return False  # dequantized by a data scale
            return integer
        if isinstance(parent, (cst.Comparison, cst.ComparisonTarget)):
            return None  # `(q == y).float().mean()`: an accuracy, not the activation
        if isinstance(
            parent,
            (cst.UnaryOperation, cst.Element, cst.StarredElement, cst.List, cst.Tuple, cst.DictElement, cst.Dict),
        ):
            return None if isinstance(parent, cst.UnaryOperation) and isinstance(parent.operator, cst.Not) else integer
        if isinstance(parent, cst.IfExp):
            return None if child is parent.test else integer
        if isinstance(parent, cst.Subscript):
            return integer if child is parent.value else None
        if isinstance(parent, cst.Attribute):
            if parent.attr.value in BLOCKING_ATTRIBUTES or parent.attr.value in BLOCKING_METHODS:
                return None
            call = self.module.parents.get(parent)
            if isinstance(call, cst.Call) and call.func is parent:
                if is_integer_cast(call):
                    return True if integer else None  # a float value cast to integers stops being the output
                if integer and _is_float_cast(call):
                    return False
                return integer if parent.attr.value in CARRYING_METHODS or _is_layer_call(parent) else None
            return integer
        if isinstance(parent, cst.Arg):
            call = self.module.parents[parent]  # a Call: the flow never enters a class's bases (walk skips classes)
            if (
                integer
                and isinstance(call, cst.Call)
                and not (self.module.qualified_name(call.func) or "").startswith("torch.")
            ):
                return None  # integers passed to a layer or a helper are indices, sizes or counts
            return integer if self._argument_carries(parent) else None
        if isinstance(parent, cst.Call):
            return integer  # the method was judged at its Attribute, each argument at its Arg
        return None

    def _argument_carries(self, arg: cst.Arg) -> bool:
        call = self.module.parents.get(arg)
        if not isinstance(call, cst.Call):
            return False
        func = call.func.value if isinstance(call.func, cst.Subscript) else call.func  # self.tables[i](idx)
        name = dotted_name(func) or ""
        if name in BLOCKING_CALLS or name in self.lookup_layers:
            return False
        qualified = self.module.qualified_name(func) or ""
        if isinstance(call.func, cst.Attribute):
            method = call.func.attr.value
            if not qualified.startswith("torch.") and not _is_layer_call(call.func):
                return method in ARGUMENT_CARRYING_METHODS or method in ("append", "extend", "insert")
        elif isinstance(func, cst.Name) and not qualified.startswith("torch.") and not self._defined_here(func.value):
            return False  # an imported helper: what it does with the value is not visible here
        if arg.keyword is not None:
            return (
                arg.keyword.value in ("input", "weight", "bias", "other", "tensors", "x")
                and arg.keyword.value not in NON_VALUE_KEYWORDS
            )
        short = name.rsplit(".", 1)[-1]
        if short in FRESH_TENSOR_FACTORIES:
            return False
        position = list(call.args).index(arg)
        return position not in NON_VALUE_POSITIONS.get(short, ())

    def _defined_here(self, name: str) -> bool:
        """A function or class this module defines (a layer class, a local helper) or a builtin container."""
        if name in ("list", "tuple", "dict", "sum", "max", "min", "sorted", "reversed", "zip", "map", "super"):
            return True
        return any(
            isinstance(statement, (cst.FunctionDef, cst.ClassDef)) and statement.name.value == name
            for statement in self.module.tree.body
        ) or any(isinstance(node, cst.FunctionDef) and node.name.value == name for node in self.nodes)

    def _eval_only(self, statement: cst.Return) -> bool:
        """A return that runs only when `self.training` is False: the hard value of a quantizer whose
        training branch uses a straight-through estimator."""
        for ancestor in self.module.ancestors(statement):
            if ancestor is self.function:
                break
            if isinstance(ancestor, cst.If):
                training = _tests_training(ancestor.test)
                in_body = any(a is ancestor.body for a in self.module.ancestors(statement))
                if (training == "training" and not in_body) or (training == "not training" and in_body):
                    return True
        # `if self.training: return ...` earlier in the same block
        block = self.module.grandparent(statement)
        if isinstance(block, cst.IndentedBlock):
            for sibling in block.body:
                if sibling is self.module.parents.get(statement):
                    break
                if (
                    isinstance(sibling, cst.If)
                    and _tests_training(sibling.test) == "training"
                    and any(isinstance(n, cst.Return) for n in walk(sibling.body, into_functions=False))
                ):
                    return True
        return False

    def loads(self, name: str) -> list[cst.Name]:
        """Where this function reads the local `name`."""
        return reads_of(self.module, self.function, name)


def scale_names_of(flow: ValueFlow, operand: cst.CSTNode) -> frozenset[str]:
    """The names a quantizer scales or shifts its input by before the op (`s` and `z` in
    `round(x / s + z)`, `round(clamp(h, lo, hi))` with `h = (x - z) / s`): the right-hand operands
    of its arithmetic, not the quantized data on the left. Only the operand's elementwise
    arithmetic is read, not what a reduction (`torch.norm(a - b)`) computes inside."""
    names: set[str] = set()
    pending, seen = [operand], set()
    while pending:
        expr = pending.pop()
        if isinstance(expr, cst.BinaryOperation):
            names |= _read_names(expr.right) - primary_names_of(flow, expr)
            pending.extend([expr.left, expr.right])
        elif isinstance(expr, cst.UnaryOperation):
            pending.append(expr.expression)
        elif isinstance(expr, cst.Call):
            callee = (
                expr.func.attr.value
                if isinstance(expr.func, cst.Attribute)
                else (dotted_name(expr.func) or "").rsplit(".", 1)[-1]
            )
            if callee not in REDUCTIONS:
                pending.extend(a.value for a in expr.args if a.keyword is None)
                if isinstance(expr.func, cst.Attribute):
                    pending.append(expr.func.value)
        elif isinstance(expr, cst.Name) and expr.value not in seen:
            seen.add(expr.value)
            pending.extend(flow.assigned_values(expr.value))
    return frozenset(names)


def primary_names_of(flow: ValueFlow, operand: cst.CSTNode) -> frozenset[str]:
    """The data an op quantizes: the leftmost name of its operand's arithmetic (`x` in
    `floor(x / (2 * pi))`, `mem` in `mem - threshold`, `h` in `clamp(h / s, 0, 255)`)."""
    expr = operand
    while True:
        if isinstance(expr, cst.BinaryOperation):
            expr = expr.left
        elif isinstance(expr, cst.UnaryOperation):
            expr = expr.expression
        elif isinstance(expr, cst.Subscript):
            expr = expr.value
        elif isinstance(expr, cst.Call):
            positional = [a.value for a in expr.args if a.keyword is None]
            if isinstance(expr.func, cst.Attribute) and not (flow.module.qualified_name(expr.func) or "").startswith(
                "torch."
            ):
                expr = expr.func.value  # `x.clamp(...)`, `(x / s).round()`
            elif positional:
                expr = positional[0]  # `torch.clamp(x / s, ...)`
            else:
                return frozenset()
        elif isinstance(expr, cst.Attribute):
            return frozenset(_read_names(expr))
        elif isinstance(expr, cst.Name):
            return frozenset({expr.value})
        else:
            return frozenset()


def _read_names(expr: cst.CSTNode) -> frozenset[str]:
    """The variables an expression reads (`x`, and `self.w` for an attribute of self; not attribute
    names or keywords)."""
    found: set[str] = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.Name):
            if node.value != "self":
                found.add(node.value)
        elif isinstance(node, cst.Attribute):
            if dotted_name(node.value) == "self":
                found.add(f"self.{node.attr.value}")
            else:
                stack.append(node.value)
        elif isinstance(node, cst.Arg):
            stack.append(node.value)
        elif not isinstance(node, (cst.Lambda, cst.BaseComp)):
            stack.extend(children(node))
    return frozenset(found)


def _is_literal(expr: cst.BaseExpression) -> bool:
    if isinstance(expr, cst.UnaryOperation):
        expr = expr.expression
    return isinstance(expr, (cst.BaseNumber, cst.BaseString)) or (
        isinstance(expr, cst.Name) and expr.value in ("True", "False")
    )


def _is_layer_call(func: cst.Attribute) -> bool:
    """`self.fc(h)`: a submodule call carries its input to its output."""
    return isinstance(func.value, cst.Name) and func.value.value == "self"


def _tests_training(test: cst.BaseExpression) -> str | None:
    text = "".join(code_of(test).split())
    if text == "self.training":
        return "training"
    if text == "notself.training":
        return "not training"
    return None


# --- values no gradient can flow through (AGL023, AGL003) ---------------------------------------
#
# Two questions about one value, answered from its definition and from its uses, for rules whose
# finding needs a gradient through that very value (a NaN made in backward, an activation):
# `holds_no_gradient`: nothing it is computed from can require grad; `feeds_only_non_differentiable`:
# nothing it flows into sends a gradient back. Unlike `ValueFlow.reaches_output`, a product with
# another differentiable term keeps the flow going (a NaN times anything is NaN).

# Functions that build a tensor from numbers, a shape or a random draw: they start no gradient. Wider than
# FRESH_TENSOR_FACTORIES (what `ValueFlow` stops at): window functions and index grids also start none.
GRADIENT_FREE_FACTORIES = FRESH_TENSOR_FACTORIES | frozenset(
    {
        "hann_window",
        "hamming_window",
        "blackman_window",
        "bartlett_window",
        "kaiser_window",
        "tril_indices",
        "triu_indices",
        "meshgrid",
        "cartesian_prod",
        "empty_strided",
    }
)
# Positions (of torch functions, counted without the receiver) that take indices, not values.
INDEX_POSITIONS = {
    **NON_VALUE_POSITIONS,
    "sparse_coo_tensor": {0, 2},
    "sparse_csr_tensor": {0, 1, 3},
    "index_add": {1},
    "index_put": {1},
}
# Ops whose result is integer indices (no gradient), as functions or methods.
INDEX_RESULTS = POSITION_RESULT_OPS | {"topk_indices"}
# Methods whose argument is written into the receiver: the receiver holds the value afterwards.
WRITING_METHODS = frozenset({"append", "extend", "insert", "add", "update", "copy_", "index_put_", "put_", "set_"})
FOLLOWED_CALLS = 2  # into a helper or constructor of this module, how many calls deep


def holds_no_gradient(module: ParsedModule, expr: cst.BaseExpression, depth: int = FOLLOWED_CALLS) -> bool:
    """Whether `expr`'s value provably depends on nothing that can require grad: numbers, shapes,
    dtypes, comparisons (booleans), integer casts, `.detach()`/`.data`, tensors made by factories
    (`arange`, `linspace`, `zeros_like`, `rand`, window functions) and torch ops of such values,
    counting only value positions (the indices of `sparse_coo_tensor`, a subscript's index and a
    gather's index carry none). A local is followed through every assignment to it (one under
    no_grad holds none); a parameter of a function this module calls holds none when every call
    here passes such a value (or leaves a literal default). `self.<attr>`, an unknown call and a
    parameter nobody here passes may require grad: False."""
    return _constant(module, expr, depth, set())


def _constant(module: ParsedModule, expr: cst.CSTNode, depth: int, seen: set) -> bool:
    if isinstance(expr, (cst.BaseNumber, cst.BaseString, cst.Comparison, cst.Ellipsis)):
        return True
    if isinstance(expr, cst.Name):
        return expr.value in ("None", "True", "False") or _name_constant(module, expr, depth, seen)
    if isinstance(expr, cst.Attribute):
        if expr.attr.value in BLOCKING_ATTRIBUTES:
            return True
        head = (dotted_name(expr) or "").split(".")[0]
        if head and head in module.imports:  # `math.pi`, `torch.float32`, `np.inf`
            return True
        return expr.attr.value in ("T", "mT", "H", "mH", "real", "imag") and _constant(module, expr.value, depth, seen)
    if isinstance(
        expr,
        (
            cst.UnaryOperation,
            cst.BinaryOperation,
            cst.BooleanOperation,
            cst.Tuple,
            cst.List,
            cst.Element,
            cst.StarredElement,
        ),
    ):
        if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Not):
            return True
        return all(
            _constant(module, child, depth, seen)
            for child in children(expr)
            if isinstance(child, (cst.BaseExpression, cst.Element, cst.StarredElement))
        )
    if isinstance(expr, cst.IfExp):
        return _constant(module, expr.body, depth, seen) and _constant(module, expr.orelse, depth, seen)
    if isinstance(expr, cst.Subscript):
        return _constant(module, expr.value, depth, seen)
    if isinstance(expr, cst.Call):
        return _call_constant(module, expr, depth, seen)
    return False


def _call_constant(module: ParsedModule, call: cst.Call, depth: int, seen: set) -> bool:
    qualified = module.qualified_name(call.func) or ""
    short = (
        qualified.rsplit(".", 1)[-1]
        if qualified
        else (call.func.attr.value if isinstance(call.func, cst.Attribute) else "")
    )
    is_method = (
        isinstance(call.func, cst.Attribute)
        and (dotted_name(call.func.value) or "").split(".")[0] not in module.imports
    )
    if (
        qualified in BLOCKING_CALLS
        or short in INDEX_RESULTS
        or (is_method and (short in BLOCKING_METHODS or is_integer_cast(call)))
    ):
        return True
    if not is_method and qualified.startswith("torch.") and short in GRADIENT_FREE_FACTORIES:
        return True
    if is_method and short in ("new_zeros", "new_ones", "new_full", "new_empty", "new_tensor"):
        return True
    if not is_method and not qualified.startswith(("torch.", "math.", "numpy.", "np.")):
        return False  # a helper or a layer: what it computes is not visible here
    if is_method and isinstance(call.func, cst.Attribute) and _is_layer_call(call.func):
        return False
    skipped = INDEX_POSITIONS.get(short, set())
    values = [call.func.value] if is_method and isinstance(call.func, cst.Attribute) else []
    values += [arg.value for index, arg in enumerate(a for a in call.args if a.keyword is None) if index not in skipped]
    values += [
        arg.value
        for arg in call.args
        if arg.keyword is not None
        and arg.keyword.value not in NON_VALUE_KEYWORDS | {"dtype", "device", "out", "keepdim", "dim"}
    ]
    return all(_constant(module, value, depth, seen) for value in values)


def _name_constant(module: ParsedModule, name: cst.Name, depth: int, seen: set) -> bool:
    function = module.enclosing_function(name)
    scope = function if function is not None and name.value in bindings(function) else module.tree
    if (scope, name.value) in seen:
        return True  # the other bindings decide
    seen.add((scope, name.value))
    binders = bindings(scope).get(name.value, [])
    if not binders:
        return False
    for binder in binders:
        if isinstance(binder, cst.Param):
            if binder.default is not None and _is_literal(binder.default):
                continue  # `cutoff=0.25`: a setting, as ValueFlow takes it
            if not isinstance(scope, cst.FunctionDef) or not _parameter_constant(module, scope, binder, depth, seen):
                return False
        elif isinstance(binder, (cst.Assign, cst.AugAssign, cst.AnnAssign)):
            if binder.value is None:
                continue
            if not module.under_no_grad(binder) and not _constant(module, binder.value, depth, seen):
                return False
        elif isinstance(binder, cst.For):
            if not _constant(module, binder.iter, depth, seen):
                return False
        else:
            return False
    return True


def _parameter_constant(
    module: ParsedModule, function: cst.FunctionDef, param: cst.Param, depth: int, seen: set
) -> bool:
    """Every call of `function` from another function of this module passes a constant for `param`
    (or leaves a literal default). Calls in module-level script code (`if __name__ == "__main__":`)
    are demonstrations on sample values, not the function's use: they are no evidence."""
    if depth == 0:
        return False
    calls = [call for call in callers(module, function) if module.enclosing_function(call) is not None]
    if not calls:
        return False
    positional = [p.name.value for p in (*function.params.posonly_params, *function.params.params)]
    if positional[:1] in (["self"], ["cls"]) and any(isinstance(c.func, cst.Attribute) for c in calls):
        positional = positional[1:]
    for call in calls:
        argument = _argument_for(call, positional, param.name.value)
        if argument is None:
            if (
                any(a.star for a in call.args)
                or param.default is None
                or not _constant(module, param.default, depth - 1, seen)
            ):
                return False
        elif not _constant(module, argument, depth - 1, seen):
            return False
    return True


def _argument_for(call: cst.Call, positional: list[str], name: str) -> cst.BaseExpression | None:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg.value
    plain = [a for a in call.args if a.keyword is None and not a.star]
    index = positional.index(name) if name in positional else -1
    return plain[index].value if 0 <= index < len(plain) else None


def feeds_only_non_differentiable(module: ParsedModule, expr: cst.BaseExpression, depth: int = FOLLOWED_CALLS) -> bool:
    """Whether every use of `expr`'s value ends where no gradient flows back into it: a comparison,
    an `if`/`assert` test, a subscript index or an index position (`gather`'s index, `where`'s
    condition), argmax/argmin/argsort, `.item()`/`.tolist()`/an integer cast, `.detach()`/`.data`,
    `.shape`, a new leaf `nn.Parameter(...)` (which detaches what it wraps), a call whose result is
    discarded, or no use at all. The value is followed through local names, arithmetic, views,
    containers and torch ops, into the parameters of helpers and of constructors this module
    defines (a class whose `__init__` wraps the argument in `nn.Parameter` detaches it). A value
    that reaches a `return` or `yield`, is stored in an attribute, a subscript or a container
    outside the function, or is backpropagated may carry gradient: False."""
    return _ends_in_sinks(module, expr, depth, set())


def _ends_in_sinks(module: ParsedModule, expr: cst.CSTNode, depth: int, seen: set) -> bool:
    pending = [expr]
    while pending:
        node = pending.pop()
        while True:
            parent = module.parents.get(node)
            step = _use_step(module, parent, node, depth, seen)
            if step is True:  # a sink: this path is done
                break
            if step is False:
                return False
            if isinstance(step, list):  # the value is now held by these names' loads
                pending.extend(step)
                break
            node = step
    return True


def _use_step(module: ParsedModule, parent: cst.CSTNode | None, node: cst.CSTNode, depth: int, seen: set):
    """True: `node`'s value stops here without gradient; False: it may carry gradient beyond what
    can be followed; a node: its value flows on into it; a list: into these loads of local names."""
    if parent is None or isinstance(
        parent, (cst.Return, cst.Yield, cst.Module, cst.FunctionDef, cst.Lambda, cst.BaseComp, cst.CompFor)
    ):
        return False
    if isinstance(parent, cst.Expr):
        return True  # a discarded value: a check, a print
    if non_value_use(module, parent, node):
        return True  # a shape, an index, a condition, metadata: the vocabulary the value-flow rules share
    if isinstance(
        parent,
        (cst.Comparison, cst.ComparisonTarget, cst.If, cst.While, cst.Assert, cst.Raise, cst.FormattedStringExpression),
    ):
        return True  # a truth value, a message
    if isinstance(parent, cst.IfExp):
        return True if node is parent.test else parent
    if isinstance(parent, cst.UnaryOperation):
        return True if isinstance(parent.operator, cst.Not) else parent
    if isinstance(
        parent, (cst.BinaryOperation, cst.Tuple, cst.List, cst.Element, cst.StarredElement, cst.BooleanOperation)
    ):
        return parent
    if isinstance(parent, (cst.Index, cst.Slice, cst.SubscriptElement)):
        return True
    if isinstance(parent, cst.Subscript):
        return parent  # node is the subscripted value
    if isinstance(parent, (cst.Assign, cst.AugAssign, cst.AnnAssign)):
        targets = [t.target for t in parent.targets] if isinstance(parent, cst.Assign) else [parent.target]
        names = [n for t in targets for n in assigned_names(t)]
        if any(not isinstance(t, (cst.Name, cst.Tuple, cst.List)) for t in targets):
            return False  # stored in an attribute or a subscript
        return _loads_of(module, parent, names, seen)
    if isinstance(parent, cst.Attribute):
        if parent.attr.value in BLOCKING_ATTRIBUTES:
            return True
        call = module.parents.get(parent)
        if isinstance(call, cst.Call) and call.func is parent:
            method = parent.attr.value
            if method in BLOCKING_METHODS or method in INDEX_RESULTS or is_integer_cast(call):
                return True
            if method in ("backward", "register_hook"):
                return False
            return call
        return parent
    if isinstance(parent, cst.Arg):
        return _argument_step(module, parent, depth, seen)
    if isinstance(parent, cst.Call):
        return parent
    return False


def _loads_of(module: ParsedModule, statement: cst.CSTNode, names: list[cst.Name], seen: set) -> list[cst.Name] | bool:
    """Where the function reads these names; False when a nested function or lambda reads one
    (a closure: what it does with the value is not followed)."""
    function = module.enclosing_function(statement)
    scope = function if function is not None else module.tree
    body = function.body if function is not None else module.tree
    loads = []
    for name in names:
        if (scope, name.value) in seen:
            continue
        seen.add((scope, name.value))
        for node in walk(body, into_functions=False):
            if isinstance(node, cst.Name) and node.value == name.value and _is_load(module, node):
                loads.append(node)
        nested = [n for n in walk(body, into_functions=False) if isinstance(n, (cst.FunctionDef, cst.Lambda))]
        if any(isinstance(n, cst.Name) and n.value == name.value for inner in nested for n in walk(inner)):
            return False
    return loads


def _is_load(module: ParsedModule, name: cst.Name) -> bool:
    parent = module.parents.get(name)
    if isinstance(parent, cst.Attribute) and parent.attr is name:
        return False
    if isinstance(parent, cst.AssignTarget) or (
        isinstance(parent, (cst.AugAssign, cst.AnnAssign, cst.For)) and parent.target is name
    ):
        return isinstance(parent, cst.AugAssign)  # `t *= 2` reads t
    if isinstance(parent, (cst.Tuple, cst.List, cst.Element)):
        holder = parent
        while isinstance(outer := module.parents.get(holder), (cst.Tuple, cst.List, cst.Element)):
            holder = outer
        if isinstance(module.parents.get(holder), cst.AssignTarget):
            return False
    if isinstance(parent, cst.Arg) and parent.keyword is name:
        return False
    return not isinstance(parent, (cst.Param, cst.FunctionDef, cst.ClassDef, cst.ImportAlias))


def _argument_step(module: ParsedModule, arg: cst.Arg, depth: int, seen: set):
    call = module.parents.get(arg)
    if not isinstance(call, cst.Call) or arg.star:
        return False
    qualified = module.qualified_name(call.func) or ""
    short = (
        qualified.rsplit(".", 1)[-1]
        if qualified
        else (call.func.attr.value if isinstance(call.func, cst.Attribute) else "")
    )
    if qualified in BLOCKING_CALLS or qualified in ("type", "repr", "id") or short in INDEX_RESULTS:
        return True
    if short == "Parameter":
        return True  # a new leaf tensor: the gradient stops at it
    if arg.keyword is not None and arg.keyword.value in NON_VALUE_KEYWORDS:
        return True
    is_method = (
        isinstance(call.func, cst.Attribute)
        and (dotted_name(call.func.value) or "").split(".")[0] not in module.imports
    )
    if arg.keyword is None and not is_method:
        index = [a for a in call.args if a.keyword is None].index(arg)
        if index in INDEX_POSITIONS.get(short, ()):
            return True
    if isinstance(call.func, cst.Attribute) and (
        is_method and short in WRITING_METHODS or (is_method and short.endswith("_") and short not in CARRYING_METHODS)
    ):
        receiver = call.func.value  # followed when it is a local of this function, not a caller's tensor
        function = module.enclosing_function(call)
        binders = (
            bindings(function).get(receiver.value, [])
            if isinstance(receiver, cst.Name) and function is not None
            else []
        )
        local = binders and not any(isinstance(b, cst.Param) for b in binders)
        return _loads_of(module, call, [receiver], seen) if local and isinstance(receiver, cst.Name) else False
    if isinstance(call.func, cst.Name) and depth > 0:
        target = (
            _defined_callable(module, call.func.value) if call.func.value != "cls" else _enclosing_class(module, call)
        )
        if isinstance(target, cst.ClassDef):
            init = next(
                (
                    s
                    for s in walk(target.body, into_functions=False)
                    if isinstance(s, cst.FunctionDef) and s.name.value == "__init__"
                ),
                None,
            )
            param = _parameter_of(init, call, arg, skip_self=True) if init is not None else None
            if init is None or param is None or not _ends_in_sinks_from_parameter(module, init, param, depth, seen):
                return False
            return True  # the instance keeps no differentiable copy of the argument
        if isinstance(target, cst.FunctionDef):
            param = _parameter_of(target, call, arg, skip_self=False)
            if param is not None and _ends_in_sinks_from_parameter(module, target, param, depth, seen):
                return True
    return call


def _enclosing_class(module: ParsedModule, node: cst.CSTNode) -> cst.ClassDef | None:
    """The class whose classmethod makes `cls(...)`."""
    return next((a for a in module.ancestors(node) if isinstance(a, cst.ClassDef)), None)


def _defined_callable(module: ParsedModule, name: str) -> cst.CSTNode | None:
    for statement in module.tree.body:
        if isinstance(statement, (cst.FunctionDef, cst.ClassDef)) and statement.name.value == name:
            return statement
    return None


def _parameter_of(function: cst.FunctionDef, call: cst.Call, arg: cst.Arg, skip_self: bool) -> str | None:
    positional = [p.name.value for p in (*function.params.posonly_params, *function.params.params)]
    if skip_self:
        positional = positional[1:]
    if arg.keyword is not None:
        return arg.keyword.value
    index = [a for a in call.args if a.keyword is None].index(arg)
    return positional[index] if index < len(positional) and not any(a.star for a in call.args) else None


def _ends_in_sinks_from_parameter(
    module: ParsedModule, function: cst.FunctionDef, name: str, depth: int, seen: set
) -> bool:
    """For a tensor argument: the uses of parameter `name`, except in the branches that run only
    for a non-tensor (`else` of `if isinstance(name, torch.Tensor)`)."""
    loads = [
        n
        for n in walk(function.body, into_functions=False)
        if isinstance(n, cst.Name)
        and n.value == name
        and _is_load(module, n)
        and not _only_for_non_tensors(module, n, name, function)
    ]
    return all(_ends_in_sinks(module, load, depth - 1, seen) for load in loads)


def _only_for_non_tensors(module: ParsedModule, node: cst.CSTNode, name: str, function: cst.FunctionDef) -> bool:
    child = node
    for ancestor in module.ancestors(node):
        if ancestor is function:
            return False
        if isinstance(ancestor, cst.If) and child is ancestor.orelse and _tests_tensor_type(ancestor.test, name):
            return True
        child = ancestor
    return False


def _tests_tensor_type(test: cst.BaseExpression, name: str) -> bool:
    """`isinstance(name, torch.Tensor)`, `isinstance(name, (Tensor, ...))`."""
    if not (isinstance(test, cst.Call) and dotted_name(test.func) == "isinstance" and len(test.args) == 2):
        return False
    subject, types = test.args[0].value, test.args[1].value
    type_names = (
        [dotted_name(e.value) for e in types.elements] if isinstance(types, cst.Tuple) else [dotted_name(types)]
    )
    return (
        isinstance(subject, cst.Name)
        and subject.value == name
        and any((t or "").endswith("Tensor") for t in type_names)
    )


# Decorators that register a function as an operator's implementation: autograd applies the
# operator's own derivative formula (or the one registered with it) and never records the body.
OPERATOR_REGISTRATIONS = frozenset(
    {
        "custom_op",
        "register_fake",
        "register_kernel",
        "impl_abstract",
        "register_decomposition",
        "register_meta",
        "register_autograd",
    }
)


def in_operator_implementation(module: ParsedModule, node: cst.CSTNode) -> bool:
    """Inside a function decorated as an operator's implementation (`@torch.library.custom_op`,
    `@torch.library.impl`, `@register_fake`, `@register_decomposition(aten.elu)`): its gradient is
    the operator's registered formula, so no gradient flows through the code of the body."""
    for ancestor in module.ancestors(node):
        if not isinstance(ancestor, cst.FunctionDef):
            continue
        for decorator in ancestor.decorators:
            expression = decorator.decorator.func if isinstance(decorator.decorator, cst.Call) else decorator.decorator
            qualified = module.qualified_name(expression) or ""
            short = qualified.rsplit(".", 1)[-1]
            if short in OPERATOR_REGISTRATIONS or qualified.startswith("torch.library."):
                return True
    return False


def in_function_forward(module: ParsedModule, node: cst.CSTNode) -> bool:
    """Inside `forward` (or `setup_context`) of a custom `torch.autograd.Function`: forward runs with
    recording off, so none of its ops is differentiated; the gradient is what backward returns."""
    function = module.enclosing_function(node)
    while function is not None:
        owner = module.grandparent(function)
        if (
            function.name.value in ("forward", "setup_context")
            and isinstance(owner, cst.ClassDef)
            and owner in function_model(module).by_node
        ):
            return True
        function = module.enclosing_function(function)
    return False


# --- one def-use walk, one vocabulary of non-value uses -----------------------------------------
#
# "Does this value flow into what the function returns, as a value?" is asked by several rules with
# their own sources (what starts the flow) and blockers (where their concern ends: a `.detach()` for a
# lost gradient, torch's own backward kernel for a missing once_differentiable). What is not a use of
# the value at all (a shape, an index, a condition, a message, metadata) and how a value travels
# through a function (assignments, tuples, containers, in-place writes, later reads) is one answer,
# here: `non_value_use` and `reaches_return`.

# Attributes and methods that read a tensor's metadata, not its values (`type` only without arguments:
# `x.type(torch.half)` is a cast).
METADATA = frozenset(
    {
        "shape",
        "dtype",
        "device",
        "ndim",
        "is_cuda",
        "requires_grad",
        "grad_fn",
        "layout",
        "size",
        "dim",
        "numel",
        "nelement",
        "stride",
        "storage_offset",
        "element_size",
        "data_ptr",
        "is_contiguous",
        "is_floating_point",
        "is_complex",
        "get_device",
        "type",
    }
)
# Functions whose arguments are read for a shape, a dtype, a count or a message: no value flows through them.
STRUCTURE_FUNCTIONS = frozenset(
    {
        "zeros",
        "ones",
        "empty",
        "full",
        "arange",
        "range",
        "len",
        "eye",
        "linspace",
        "logspace",
        "rand",
        "randn",
        "randint",
        "zeros_like",
        "ones_like",
        "empty_like",
        "new_zeros",
        "new_ones",
        "new_empty",
        "new_full",
        "Size",
        "print",
        "isinstance",
        "format",
        "str",
        "repr",
        "warn",
        "assert_",
    }
)
# Keywords that take a shape, a dim, an index, a mask, a target, a dtype or a device, never a value.
STRUCTURE_KEYWORDS = NON_VALUE_KEYWORDS | frozenset(
    {"dims", "shape", "out", "dtype", "device", "keepdim", "layout", "memory_format", "start", "length"}
)
# Positional arguments (of functions, not methods) that are indices, masks, sizes or dims.
STRUCTURE_POSITIONS = {**INDEX_POSITIONS, "narrow": {1, 2, 3}, "select": {1, 2}}


def non_value_use(module: ParsedModule, parent: cst.CSTNode, child: cst.CSTNode) -> bool:
    """Whether `parent` reads `child` only for its structure, not its values: a comparison, a truth
    test (`not`, `and`/`or`, a conditional's test, an `if`/`while`/`assert`), a subscript index or
    slice, a message (f-string), metadata (`.shape`, `.size()`, `.dtype`), or an argument that is a
    shape, dim, index, mask, target, dtype or device (by keyword, by position of a torch function, or
    of a function that reads only shapes: `zeros_like`, `len`, `print`)."""
    if isinstance(
        parent,
        (
            cst.Comparison,
            cst.ComparisonTarget,
            cst.Index,
            cst.Slice,
            cst.SubscriptElement,
            cst.BooleanOperation,
            cst.FormattedString,
            cst.FormattedStringExpression,
            cst.Assert,
        ),
    ):
        return True
    if isinstance(parent, cst.UnaryOperation):
        return isinstance(parent.operator, cst.Not)
    if isinstance(parent, (cst.IfExp, cst.If, cst.While)):
        return child is parent.test
    if isinstance(parent, cst.Attribute):
        if parent.value is not child or parent.attr.value not in METADATA:
            return False
        call = module.parents.get(parent)
        return parent.attr.value != "type" or (isinstance(call, cst.Call) and call.func is parent and not call.args)
    if isinstance(parent, cst.Arg):
        return _structure_argument(module, parent)
    return False


def _structure_argument(module: ParsedModule, arg: cst.Arg) -> bool:
    call = module.parents.get(arg)
    if not isinstance(call, cst.Call) or arg.star:
        return False
    if arg.keyword is not None:
        return arg.keyword.value in STRUCTURE_KEYWORDS
    name = dotted_name(call.func) or ""
    short = name.rsplit(".", 1)[-1] if name else (call.func.attr.value if isinstance(call.func, cst.Attribute) else "")
    if short in STRUCTURE_FUNCTIONS or (isinstance(call.func, cst.Attribute) and short in SHAPE_ARGUMENT_METHODS):
        return True
    function_form = not isinstance(call.func, cst.Attribute) or name.split(".")[0] in module.imports
    positional = [a for a in call.args if a.keyword is None]
    return function_form and positional.index(arg) in STRUCTURE_POSITIONS.get(short, ())


def written_names(
    module: ParsedModule,
    statement: cst.CSTNode,
    child: cst.CSTNode,
    exclude: frozenset[str] = frozenset(),
    into_objects: bool = True,
) -> set[str] | None:
    """The local names a statement makes hold `child`'s value, or None if it is no such statement:
    an assignment of it (`a, b = v`), a `for` over it, an element added to a list (`grads.append(v)`)
    and, with `into_objects`, a write into an object (`g[mask] = v` and `out.real = v` write into `g`
    and `out`; `buf.copy_(v)`, `g.mul_(s)` into the receiver). Names in `exclude` (a ctx object) are
    not followed."""

    def names(target: cst.BaseExpression) -> set[str]:
        if isinstance(target, (cst.Subscript, cst.Attribute)) and not into_objects:
            return set()
        while isinstance(target, (cst.Subscript, cst.Attribute)):
            target = target.value
        return {n.value for n in assigned_names(target)} - exclude

    if isinstance(statement, cst.Assign) and statement.value is child:
        return {name for t in statement.targets for name in names(t.target)}
    if isinstance(statement, (cst.AugAssign, cst.AnnAssign)) and statement.value is child:
        return names(statement.target)
    if isinstance(statement, (cst.For, cst.CompFor)) and statement.iter is child:
        return {n.value for n in assigned_names(statement.target)} - exclude
    if isinstance(statement, cst.Expr) and isinstance(child, cst.Call):
        method = child.func.attr.value if isinstance(child.func, cst.Attribute) else ""
        if isinstance(child.func, cst.Attribute) and (
            method in ("append", "extend", "insert") or (method.endswith("_") and into_objects)
        ):
            return names(child.func.value)
        return set()  # a call for its effect: what it writes is the rule's to say (an extension's buffers)
    return None


def reads_of(module: ParsedModule, function: cst.FunctionDef, name: str) -> list[cst.Name]:
    """Where `function` (not its nested functions) reads the local `name`."""
    return [
        node
        for node in walk(function.body, into_functions=False)
        if isinstance(node, cst.Name)
        and node.value == name
        and _is_load(module, node)
        and not (isinstance(parent := module.parents.get(node), cst.CompFor) and parent.target is node)
    ]


def names_computed_from(
    module: ParsedModule, function: cst.FunctionDef, seeds: set[str], depends, skip=None
) -> set[str]:
    """The rule's `seeds` (its sources: a backward's grad arguments, a layer's data parameters) and
    every local of `function` bound from a value for which `depends(value, names)` holds: by `=`,
    an augmented or annotated assignment, a `for` or a comprehension over it, to a fixed point.
    `skip(statement)`: bindings that do not count (one under no_grad)."""
    statements: list[tuple[cst.CSTNode, cst.BaseExpression, list[str]]] = []
    for node in walk(function.body, into_functions=False):
        if isinstance(node, cst.Assign):
            statements.append((node, node.value, [n.value for t in node.targets for n in assigned_names(t.target)]))
        elif isinstance(node, (cst.AugAssign, cst.AnnAssign)) and node.value is not None:
            statements.append((node, node.value, [n.value for n in assigned_names(node.target)]))
        elif isinstance(node, (cst.For, cst.CompFor)):
            statements.append((node, node.iter, [n.value for n in assigned_names(node.target)]))
    bindings = [
        (value, targets)
        for statement, value, targets in statements
        if targets and (skip is None or not skip(statement))
    ]
    names = set(seeds)
    changed = True
    while changed:
        changed = False
        for value, targets in bindings:
            if not names.issuperset(targets) and depends(value, names):
                names.update(targets)
                changed = True
    return names


def reaches_return(
    module: ParsedModule, function: cst.FunctionDef, source: cst.CSTNode, carries, binds=None, state=True, accepts=None
) -> cst.Return | None:
    """The `return` of `function` that `source`'s value reaches as a value, or None.

    The value climbs through the expressions that contain it while the rule's `carries(parent, child,
    state)` lets it (never through a `non_value_use`), and through the names a statement makes hold
    it (`binds(statement, child, state)`, by default `written_names`) on to every later read of those
    names. `state` travels with the value (ValueFlow: whether it is still integer-typed): `carries`
    returns the state after `parent`, or None where the flow stops; `accepts(return, state)` says
    whether reaching that `return` counts (by default every one does)."""
    binds = binds or (lambda statement, child, state: written_names(module, statement, child))
    pending, bound = [(source, state)], set()
    while pending:
        child, state = pending.pop()
        while True:
            parent = module.parents.get(child)
            if parent is None or parent is function:
                break
            if isinstance(parent, cst.Return):
                if accepts is None or accepts(parent, state):
                    return parent
                break
            names = binds(parent, child, state)
            if names is not None:
                for name in names:
                    if (name, state) not in bound:
                        bound.add((name, state))
                        pending.extend((read, state) for read in reads_of(module, function, name))
                break
            if isinstance(parent, (cst.BaseStatement, cst.BaseSmallStatement, cst.Lambda)) or non_value_use(
                module, parent, child
            ):
                break  # a raise, a `del`, a nested function, a shape, an index, a condition
            state = carries(parent, child, state)
            if state is None:
                break
            child = parent
    return None

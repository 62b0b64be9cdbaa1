"""AGL004 non-differentiable-activation: a step, sign, rounding or integer cast in the path to the output.

Such ops have a gradient of exactly zero almost everywhere, or cut the graph, so whatever feeds them
(the input, a weight) stops training and nothing raises. The rule follows the op's value through the
function (assignments, containers, arithmetic, layers, F.linear/conv arguments) and reports it when it
reaches what an `nn.Module.forward` or an activation/quantizer-like function returns.
"""

from __future__ import annotations

import re
from typing import Iterator

import libcst as cst

from ..confirm.harness import CannotBuildHarness, Harness, literal_call_arguments, literal_defaults
from ..ast_candidates import activation_with_a_flagged_op
from ..diagnostic import Severity
from ..module import ParsedModule
from ..rule import Finding, Rule
from ..syntax import assigned_names, children, code_of, disables_grad, dotted_name, walk

ZERO_GRADIENT_FUNCTIONS = frozenset({"sign", "sgn", "round", "floor", "ceil", "trunc", "fix", "heaviside"})
ZERO_GRADIENT_METHODS = ZERO_GRADIENT_FUNCTIONS | {name + "_" for name in ZERO_GRADIENT_FUNCTIONS}
INTEGER_CAST_METHODS = frozenset({"int", "long", "short", "byte", "char", "bool"})
INTEGER_DTYPES = frozenset(
    {"int", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "long", "short", "bool",
     "IntTensor", "LongTensor", "ShortTensor", "ByteTensor", "CharTensor", "BoolTensor"}
)
COMPARISON_METHODS = frozenset({"gt", "ge", "lt", "le", "greater", "greater_equal", "less", "less_equal"})
MASK_WRAPPERS = frozenset({"float", "half", "double", "bfloat16", "to", "type_as", "type", "unsqueeze", "view", "expand_as", "int", "long"})
FLOAT_CASTS = frozenset({"float", "half", "double", "bfloat16", "to", "type_as", "type"})
ORDERING = (cst.GreaterThan, cst.GreaterThanEqual, cst.LessThan, cst.LessThanEqual)
CONSTANT_FACTORIES = frozenset({"ones_like", "zeros_like", "full_like", "ones", "zeros", "full", "tensor", "as_tensor", "empty_like"})

# Methods whose receiver's value flows into their result (views, casts, arithmetic, reductions).
CARRYING_METHODS = frozenset(
    {"float", "double", "half", "bfloat16", "to", "type_as", "type", "view", "view_as", "reshape", "reshape_as",
     "flatten", "squeeze", "unsqueeze", "permute", "transpose", "t", "contiguous", "expand", "expand_as", "repeat",
     "clamp", "clip", "mul", "add", "sub", "div", "matmul", "mm", "bmm", "sum", "mean", "neg", "mul_", "add_",
     "sub_", "div_", "clamp_", "masked_fill", "cumsum", "flip", "roll", "chunk", "split", "unbind", "narrow",
     "squeeze_", "unsqueeze_", "sign", "round", "T", "mT"}
)
# Methods whose arguments (not just the receiver) are tensors that flow into the result.
ARGUMENT_CARRYING_METHODS = frozenset({"mul", "add", "sub", "div", "matmul", "mm", "bmm", "mul_", "add_", "sub_", "div_", "type_as", "expand_as", "view_as"})
# Functions whose positional arguments at these indices are indices, masks or sizes, not values.
NON_VALUE_POSITIONS = {
    "gather": {1, 2}, "index_select": {1, 2}, "scatter": {1, 2}, "scatter_add": {1, 2}, "take": {1},
    "take_along_dim": {1, 2}, "where": {0}, "masked_fill": {1}, "masked_select": {1}, "embedding": {0},
    "interpolate": {1, 2}, "pad": {1}, "one_hot": {1}, "bucketize": {1}, "searchsorted": {0},
    "quantize_per_tensor": {1, 2, 3}, "quantize_per_channel": {1, 2, 3, 4},
    # Loss functions: the target (and weights) carry no gradient back to the model.
    "cross_entropy": {1, 2}, "nll_loss": {1, 2}, "binary_cross_entropy": {1, 2}, "binary_cross_entropy_with_logits": {1, 2},
    "mse_loss": {1}, "l1_loss": {1}, "smooth_l1_loss": {1}, "huber_loss": {1}, "kl_div": {1}, "soft_margin_loss": {1},
    "margin_ranking_loss": {2}, "hinge_embedding_loss": {1}, "multilabel_soft_margin_loss": {1}, "cosine_embedding_loss": {2},
    "poisson_nll_loss": {1}, "gaussian_nll_loss": {1}, "ctc_loss": {1, 2, 3}, "multi_margin_loss": {1},
}
NON_VALUE_KEYWORDS = frozenset({"target", "weight_target", "labels", "size", "dim", "index", "mask", "num_classes"})
REDUCTIONS = frozenset({"mean", "sum", "norm", "amax", "amin", "max", "min", "std", "var", "prod", "median", "logsumexp"})
# Functions that make a new tensor from a shape, dtype or copied data: nothing flows through them.
FRESH_TENSOR_FACTORIES = frozenset(
    {"empty_like", "zeros_like", "ones_like", "full_like", "rand_like", "randn_like", "randint_like", "empty", "zeros",
     "ones", "full", "arange", "tensor", "as_tensor", "from_numpy"}
)
# Calls whose result is a Python number or a fresh tensor that does not carry gradient.
BLOCKING_CALLS = frozenset({"int", "float", "bool", "len", "range", "str", "round", "math.floor", "math.ceil", "print", "isinstance"})
BLOCKING_METHODS = frozenset({"detach", "detach_", "item", "tolist", "numpy", "cpu_numpy", "size", "dim", "numel", "nonzero", "argwhere", "data_ptr", "stride"})
BLOCKING_ATTRIBUTES = frozenset({"data", "shape", "dtype", "device", "ndim", "is_cuda", "requires_grad", "grad"})
# Inputs that never need a gradient: loss targets, labels, sequence lengths, masks, indices.
NON_DATA_PARAMETER = re.compile(r"(^|_)(targets?|labels?|y_true|tgt|gt|truth|lengths?|lens?|mask\w*|ids?|\w*_ids|index|indices|idx)($|_)")
_ACTIVATION_DEF = re.compile(
    r"def\s+(forward|\w*(act|quant|binar|ternar|discret|sign|round|step|spik|threshold|heaviside)\w*)\s*\(", re.IGNORECASE
)
_ZERO_GRADIENT_OP_NAMES = r"(sign|sgn|round|floor|ceil|trunc|fix|heaviside)"
# One pattern per kind of source (separate patterns search faster than one alternation).
_SOURCE_OPS = tuple(
    re.compile(pattern, re.MULTILINE)
    for pattern in (
        r"(?<!math)(?<!np)(?<!numpy)\." + _ZERO_GRADIENT_OP_NAMES + r"_?\s*\(",
        r"^\s*from\s+torch\s+import[^\n]*\b" + _ZERO_GRADIENT_OP_NAMES + r"\b",
        r"\bone_hot\s*\(",
        r"\bwhere\s*\([^\n]*(?:ones|zeros|full|tensor|,\s*-?\d)",
        r"\bscatter_?\s*\(",
        r"\.(int|long|short|byte|char|bool)\(\s*\)",
        r"\.(to|type)\([^)\n]*\b(u?int(8|16|32|64)|long|bool|short|\w*Tensor)\b",
        r"([<>]|==)[^\n]*\)\s*\.(float|half|double|bfloat16|to|type_as|type)\(",
        r"\.(gt|ge|lt|le|greater|less|greater_equal|less_equal)\(",
    )
)
ACTIVATION_NAME = re.compile(
    r"(^|_)(act|activ\w*|\w*quant\w*|binari[sz]\w*|binary|bin_?act\w*|ternari[sz]\w*|ternary|discreti[sz]\w*|sign|signum|round\w*|step|spik\w*|threshold\w*|heaviside)($|_)"
)


class NonDifferentiableActivation(Rule):
    code = "AGL004"
    name = "non-differentiable-activation"
    severity = Severity.ERROR
    summary = "a sign, rounding, step or integer cast feeds the output: its input gets zero or no gradient"

    @classmethod
    def triggered(cls, text: str) -> bool:
        """A forward or an activation-like function, and one of the ops this rule flags."""
        return _ACTIVATION_DEF.search(text) is not None and any(op.search(text) for op in _SOURCE_OPS)

    @classmethod
    def candidate(cls, tree) -> bool:
        return activation_with_a_flagged_op(tree, _activation_like)

    def check(self, module: ParsedModule) -> Iterator[Finding]:
        function_classes = {c.node for c in module.functions}
        for node in module.parents:
            if type(node) is cst.FunctionDef and _is_activation_context(module, node, function_classes):
                yield from _FunctionFlow(module, node).findings()

    def confirm_harness(self, module: ParsedModule, finding: Finding) -> Harness:
        """Run the activation (or the module's forward) on a probe with one backward, then again
        with a straight-through estimator at the flagged op: a graph cut, backward raising, or
        gradients that only the estimator lets through prove the op blocks them."""
        function: cst.FunctionDef = finding.subject
        owner = module.parents.get(module.parents.get(function))
        name = function.name.value
        top_level = owner if isinstance(owner, cst.ClassDef) else function
        if module.parents.get(top_level) is not module.tree:
            raise CannotBuildHarness(f"`{name}` is nested inside another function; the harness copies only top-level definitions")
        patched = _straight_through_source(module, top_level, finding.node)
        if top_level is function:
            defaults = literal_call_arguments(module, name)
            extra = defaults.split(", ")[1:] if defaults else literal_defaults(function, skip=1)
            arguments = ", ".join(["_agl_input", *extra])
            make = f"lambda namespace: (lambda _agl_input: namespace[{name!r}]({arguments}), None, None)"
            shown = f"{name}()"
        else:
            extra_inputs = len(function.params.params) - 2 - len(literal_defaults(function, skip=2, required_ok=True))
            arguments = literal_call_arguments(module, owner.name.value)
            if arguments is None:
                arguments = _layer_arguments(module, owner)
            make = (
                f"lambda namespace: _agl_module_call(namespace[{owner.name.value!r}]({arguments}), {name!r}, {extra_inputs})"
            )
            shown = f"{owner.name.value}.{name}()"
        main = "\n".join(
            [
                f"_agl_patched_source = {patched!r}",
                f"_agl_ste_recipe({make}, globals(), _agl_patched_source, {shown!r}, {' '.join(code_of(finding.node).split())[:60]!r})",
            ]
        )
        return Harness({top_level.name.value}, main)


def _straight_through_source(module: ParsedModule, statement: cst.CSTNode, source: cst.CSTNode) -> str | None:
    """`statement`'s code with the flagged op wrapped in a straight-through estimator of its operand."""
    operand = _operand(source)
    if operand is None:
        return None
    wrapped = cst.parse_expression("_agl_ste(__q__, __x__)")
    replacement = wrapped.with_changes(args=[cst.Arg(source), cst.Arg(operand)])

    class Replace(cst.CSTTransformer):
        def on_leave(self, original, updated):
            return replacement if original is source else updated

    return code_of(statement.visit(Replace()))


def _operand(source: cst.CSTNode) -> cst.BaseExpression | None:
    """The differentiable value an op quantizes: `x` in `torch.sign(x)`, `x.round()`, `(x > 0).float()`."""
    if not isinstance(source, cst.Call):
        return None
    func = source.func
    if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value in ("torch", "F"):
        if func.attr.value in ("one_hot",):
            return None
        if func.attr.value == "where":
            return source.args[0].value.left if isinstance(source.args[0].value, cst.Comparison) else None
        return source.args[0].value if source.args else None
    if isinstance(func, cst.Attribute):
        receiver = func.value
        if isinstance(receiver, cst.Comparison):
            return receiver.left
        return receiver
    return None


def _layer_arguments(module: ParsedModule, owner: cst.ClassDef) -> str:
    """Constructor arguments for a class built on a torch layer that nothing in the module builds
    with literals: small sizes that fit `_agl_module_inputs`."""
    for base in owner.bases:
        qualified = module.qualified_name(base.value) or ""
        if qualified.endswith(("Conv1d", "Conv2d", "Conv3d")):
            return "3, 4, 3"
        if qualified.endswith("Linear"):
            return "8, 4"
    return ""


def _is_activation_context(module: ParsedModule, function: cst.FunctionDef, function_classes) -> bool:
    """An `nn.Module`-style forward, or a function named like an activation or quantizer."""
    if any(disables_grad(d.decorator) for d in function.decorators):
        return False
    name = _snake_case(function.name.value)
    owner = module.parents.get(module.parents.get(function))
    if isinstance(owner, cst.ClassDef):
        if owner in function_classes:
            return False  # a custom Function supplies its own backward
        if name == "forward":
            return True
    elif module.enclosing_function(function) is not None:
        return False  # a local helper; its caller is what gets judged
    if not _activation_like(function.name.value) or _returns_integers(function):
        return False
    return not _only_called_from_functions(module, function, function_classes)


def _only_called_from_functions(module: ParsedModule, function: cst.FunctionDef, function_classes) -> bool:
    """A quantizer helper that only custom Functions call: their backward supplies the gradient."""
    name = function.name.value
    callers = [
        node
        for node in module.parents
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value == name
    ]
    return bool(callers) and all(
        any(ancestor in function_classes for ancestor in module.ancestors(call)) for call in callers
    )


def _returns_integers(function: cst.FunctionDef) -> bool:
    """A quantizer that returns integer codes (`q = round(x / s).to(torch.int8); return q, s`) is an
    export or kernel helper whose output is not meant to be differentiated."""
    dtype_params = {p.name.value for p in function.params.params if "dtype" in p.name.value}
    last_binding: dict[str, cst.BaseExpression] = {}
    for node in walk(function.body, into_functions=False):
        if isinstance(node, cst.Assign):
            for target in node.targets:
                if isinstance(target.target, cst.Name):
                    last_binding[target.target.value] = node.value
        elif isinstance(node, cst.Return) and node.value is not None:
            returned = node.value.elements if isinstance(node.value, cst.Tuple) else [node.value]
            for element in returned:
                value = element.value if isinstance(element, cst.Element) else element
                if isinstance(value, cst.Name):
                    value = last_binding.get(value.value, value)
                if _produces_integers(value, dtype_params):
                    return True
    return False


def _produces_integers(expr: cst.BaseExpression, dtype_params: set[str]) -> bool:
    """Whether a method chain (`x.round().to(torch.int32).reshape(s)`) casts to an integer type."""
    while isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute):
        method = expr.func.attr.value
        args = [a.value for a in expr.args]
        if method in INTEGER_CAST_METHODS or method == "astype" or "quantize_per" in method:
            return True
        if method in ("to", "type") and any(_is_integer_dtype(a) or (isinstance(a, cst.Name) and a.value in dtype_params) for a in args):
            return True
        expr = expr.func.value
        while isinstance(expr, cst.BinaryOperation):
            expr = expr.left
    return False


def _activation_like(name: str) -> bool:
    """`binarize`, `quantize_weight`, `SignActivation.forward`'s name, not `round` itself (an
    implementation of the op) nor test, sample-input and reference helpers that mention an op."""
    name = _snake_case(name)
    if name == "forward":
        return True
    if name.rstrip("_") in ZERO_GRADIENT_FUNCTIONS or name.startswith(NOT_ACTIVATIONS):
        return False
    return ACTIVATION_NAME.search(name) is not None


NOT_ACTIVATIONS = ("test_", "sample_", "reference_", "ref_", "_ref", "error_inputs", "_test")


def _snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


class _FunctionFlow:
    """Data flow inside one function: which non-differentiable values reach a `return`."""

    def __init__(self, module: ParsedModule, function: cst.FunctionDef):
        self.module = module
        self.function = function
        self.nodes = [n for n in walk(function.body, into_functions=False) if not isinstance(n, cst.Lambda)]
        self.data_names = self._data_names()
        self.lookup_layers = self._lookup_layers()

    def _lookup_layers(self) -> set[str]:
        """`self.emb` when the class assigns `self.emb = nn.Embedding(...)`: its input is an index."""
        owner = self.module.parents.get(self.module.parents.get(self.function))
        if not isinstance(owner, cst.ClassDef):
            return set()
        found = set()
        for node in walk(owner.body):
            if isinstance(node, cst.Assign) and isinstance(node.value, cst.Call):
                layer = (self.module.qualified_name(node.value.func) or "").rsplit(".", 1)[-1]
                lookup = layer in ("Embedding", "EmbeddingBag") or (
                    layer in ("ModuleList", "Sequential") and "Embedding" in code_of(node.value)
                )
                if lookup:
                    found |= {dotted_name(t.target) for t in node.targets} - {None}
        return found

    def findings(self) -> Iterator[Finding]:
        for node in self.nodes:
            description = self._source(node)
            if description and not self._under_no_grad(node) and self._reaches_return(node):
                yield Finding(node, _message(node, description), subject=self.function)

    # --- which expressions are non-differentiable sources -------------------------------------

    def _source(self, node: cst.CSTNode) -> str | None:
        if not isinstance(node, cst.Call):
            return None
        qualified = self.module.qualified_name(node.func) or ""
        op = _public_torch_op(qualified)
        operands = [a.value for a in node.args]
        if op in ZERO_GRADIENT_FUNCTIONS:
            return self._zero_gradient(op, operands)
        if op == "one_hot":
            if operands and self._depends_on_data(operands[0]):
                return "one_hot of an index has no gradient: the result is cut from the graph"
            return None
        if op == "where" and len(operands) == 3:
            if self._depends_on_data(operands[0]) and all(self._is_constant(b) for b in operands[1:]):
                return "torch.where with constant branches is a step: no gradient reaches the input"
            return None
        if not isinstance(node.func, cst.Attribute) or self._is_module_function(node.func):
            return None
        method, receiver = node.func.attr.value, node.func.value
        if method in ZERO_GRADIENT_METHODS:
            return self._zero_gradient(method, [receiver])
        if method in INTEGER_CAST_METHODS or (method in ("to", "type") and any(_is_integer_dtype(a) for a in operands)):
            # Only an inline factor counts as a mask here: `q = x.to(torch.int8)` then `q.float() * s`
            # is quantize-dequantize, the very bug.
            if self._depends_on_data(receiver) and not self._used_as_mask(node, through_names=False):
                return f"casting to an integer type (.{method}) cuts the result from the graph"
            return None
        if method in ("scatter", "scatter_") and len(operands) >= 3 and self._is_argmax_value(operands[1]) and self._is_constant(operands[2]):
            if self._depends_on_data(operands[1]):
                return "a one-hot scattered at an argmax has no gradient: the result is cut from the graph"
            return None
        if method in FLOAT_CASTS and self._is_comparison(receiver):
            if self._depends_on_data(receiver) and not self._used_as_mask(node):
                return "a comparison has no gradient: the result is cut from the graph"
        return None

    def _is_argmax_value(self, expr: cst.BaseExpression) -> bool:
        if isinstance(expr, cst.Name):
            values = self._assigned_values(expr.value)
            return bool(values) and all(_is_argmax(v) for v in values)
        return _is_argmax(expr)

    def _zero_gradient(self, op: str, subjects: list[cst.BaseExpression]) -> str | None:
        if not any(self._depends_on_data(s) for s in subjects):
            return None
        if self._scaled_by_own_input(subjects[0]) or self._signs_another_input(subjects[0]):
            return None
        if op.rstrip("_") == "heaviside":
            return "torch.heaviside has no derivative: backward raises"
        return f"{op} has a gradient of exactly zero almost everywhere"

    def _is_comparison(self, expr: cst.BaseExpression) -> bool:
        if isinstance(expr, cst.Comparison) and len(expr.comparisons) == 1:
            operator, right = expr.comparisons[0].operator, expr.comparisons[0].comparator
            if isinstance(operator, cst.Equal):  # `(x == x.max(-1, keepdim=True).values)`: a one-hot
                return any(_is_max(side) for side in (expr.left, right))
            return isinstance(operator, ORDERING)
        if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value in COMPARISON_METHODS:
            return _public_torch_op(self.module.qualified_name(expr.func) or "") is not None or not self._is_module_function(expr.func)
        return False

    def _is_module_function(self, func: cst.Attribute) -> bool:
        """`ops.round(a)`, `math.floor(x)`: a function reached through an imported name, not a tensor method."""
        return isinstance(func.value, cst.Name) and func.value.value in self.module.imports

    def _is_constant(self, expr: cst.BaseExpression) -> bool:
        if isinstance(expr, cst.BaseNumber):
            return True
        if isinstance(expr, cst.UnaryOperation):
            return self._is_constant(expr.expression)  # -1.0, -torch.ones_like(w)
        if isinstance(expr, cst.Call):
            name = (self.module.qualified_name(expr.func) or "").rsplit(".", 1)[-1]
            return name in CONSTANT_FACTORIES
        return False

    def _used_as_mask(self, expr: cst.CSTNode, through_names: bool = True) -> bool:
        """A comparison or integer cast multiplying data is a mask or a deliberate sign factor
        (`h * (ids != pad).float()`, `Q * X.diagonal().int()`), not an activation."""
        node = expr
        parent = self.module.parents.get(node)
        while True:
            if isinstance(parent, cst.Subscript) and parent.value is node:  # mask[..., None]
                node, parent = parent, self.module.parents.get(parent)
                continue
            if not (isinstance(parent, cst.Attribute) and parent.value is node and parent.attr.value in MASK_WRAPPERS):
                break
            call = self.module.parents.get(parent)
            if not (isinstance(call, cst.Call) and call.func is parent):
                break
            node, parent = call, self.module.parents.get(call)
        if isinstance(parent, cst.BinaryOperation) and isinstance(parent.operator, cst.Multiply):
            other = parent.right if parent.left is node else parent.left
            return self._depends_on_data(other)
        if isinstance(parent, cst.AugAssign) and isinstance(parent.operator, cst.MultiplyAssign):
            return self._depends_on_data(parent.target)
        if isinstance(parent, cst.Assign) and through_names:
            return any(
                self._name_used_as_mask(name.value) for target in parent.targets for name in assigned_names(target.target)
            )
        return False

    def _scaled_by_own_input(self, operand: cst.BaseExpression) -> bool:
        """`torch.sign(x) * torch.log1p(x.abs())` (symlog, signed powers): x keeps an elementwise
        differentiable path beside the locally constant sign, so the gradient is right.
        Dequantizing by a scale (`round(x / s) * s`) or XNOR's `alpha = w.abs().mean()` is no such path."""
        source = self.module.parents.get(operand)
        while source is not None and not isinstance(source, cst.Call):
            source = self.module.parents.get(source)
        roots = _data_roots(operand)
        if not roots:
            return False
        # `d - torch.round(d)`, `w = xs - x0` with `x0 = floor(xs)`: the fractional part, where the
        # input itself is the other term (gradient 1).
        if self._is_term(source, lambda other: self._transforms_elementwise(other, roots, set(), in_call=True)):
            return True
        return self._is_factor(source, lambda other: self._transforms_elementwise(other, roots, set()))

    def _signs_another_input(self, operand: cst.BaseExpression) -> bool:
        """`torch.sign(relevance_i - relevance_j) * (score_i - score_j)` in a ranking loss: the sign
        of one input orients another input, which keeps its gradient. (A learned scale `self.gamma`
        does not count: `sign(h) * self.gamma` is still a binarized activation.)"""
        source = self.module.parents.get(operand)
        while source is not None and not isinstance(source, cst.Call):
            source = self.module.parents.get(source)
        # Inputs are the parameters without defaults; `frac_bits=8` is a setting, not an input.
        inputs = {p.name.value for p in self.function.params.params if p.default is None} - {"self", "cls"}
        own = {name for name in inputs if _reads_any(operand, self._derived_from(name))}

        def other_input(other: cst.BaseExpression) -> bool:
            read = {name for name in inputs if _reads_any(other, self._derived_from(name))}
            return bool(read) and not (read & own)

        return bool(own) and self._is_factor(source, other_input, every_use=False)

    def _derived_from(self, name: str) -> set[str]:
        """`name` and the locals computed from it."""
        derived = {name}
        changed = True
        while changed:
            changed = False
            for node in self.nodes:
                if isinstance(node, cst.Assign) and _reads_any(node.value, derived):
                    for target in node.targets:
                        for bound in assigned_names(target.target):
                            if bound.value not in derived:
                                derived.add(bound.value)
                                changed = True
        return derived

    def _is_term(self, node: cst.CSTNode, other_ok, through_names: bool = True) -> bool:
        """Whether `node` is added to or subtracted from a term satisfying `other_ok`, directly or
        through a name one of whose uses is."""
        parent = self.module.parents.get(node)
        if isinstance(parent, cst.BinaryOperation) and isinstance(parent.operator, (cst.Add, cst.Subtract)):
            return other_ok(parent.right if parent.left is node else parent.left)
        if isinstance(parent, cst.Assign) and through_names:
            uses = [use for t in parent.targets for n in assigned_names(t.target) for use in self._loads(n.value)]
            return any(self._is_term(use, other_ok, through_names=False) for use in uses)
        return False

    def _is_factor(self, node: cst.CSTNode, other_ok, through_names: bool = True, every_use: bool = True) -> bool:
        """Whether `node` multiplies (or divides) a co-factor satisfying `other_ok`, directly or
        through a name every use (or, with `every_use=False`, one use) of which does."""
        parent = self.module.parents.get(node)
        if isinstance(parent, cst.BinaryOperation) and isinstance(parent.operator, (cst.Multiply, cst.Divide)):
            return other_ok(parent.right if parent.left is node else parent.left)
        if isinstance(parent, cst.Assign) and through_names:
            uses = [use for t in parent.targets for n in assigned_names(t.target) for use in self._loads(n.value)]
            verdicts = [self._is_factor(use, other_ok, through_names=False) for use in uses]
            return bool(uses) and (all(verdicts) if every_use else any(verdicts))
        return False

    def _transforms_elementwise(self, expr: cst.CSTNode, roots: set[str], seen: set[str], in_call: bool = False) -> bool:
        """Whether `expr` applies an elementwise function (`x.abs()`, `torch.log1p(x)`) to a root."""
        if isinstance(expr, cst.Call):
            callee = expr.func.attr.value if isinstance(expr.func, cst.Attribute) else (self.module.qualified_name(expr.func) or "").rsplit(".", 1)[-1]
            elementwise_pair = callee in ("max", "min") and sum(1 for a in expr.args if a.keyword is None) >= 2 and not isinstance(expr.args[1].value, cst.Integer)
            if (callee in REDUCTIONS and not elementwise_pair) or callee in ZERO_GRADIENT_METHODS or callee in INTEGER_CAST_METHODS:
                return False  # no elementwise gradient flows back through these
            return any(self._transforms_elementwise(child, roots, seen, True) for child in children(expr))
        text = dotted_name(expr) if isinstance(expr, (cst.Name, cst.Attribute)) else None
        if text in roots:
            return in_call
        if isinstance(expr, cst.Name) and expr.value not in seen:
            seen.add(expr.value)
            return any(self._transforms_elementwise(value, roots, seen, in_call) for value in self._assigned_values(expr.value))
        if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Power):
            in_call = True
        return any(self._transforms_elementwise(child, roots, seen, in_call) for child in children(expr))

    def _assigned_values(self, name: str) -> list[cst.BaseExpression]:
        return [
            node.value
            for node in self.nodes
            if isinstance(node, cst.Assign)
            and any(n.value == name for t in node.targets for n in assigned_names(t.target))
        ]

    def _name_used_as_mask(self, name: str) -> bool:
        # A mask also feeds its normaliser (`mask.sum()`) or a log line; one masking use shows the
        # intent, unless the value is also returned as it is (a spike train is output and mask).
        uses = self._loads(name)
        returned = any(_directly_returned(self.module, use) for use in uses)
        return not returned and any(self._used_as_mask(use, through_names=False) for use in uses)

    # --- data dependence -----------------------------------------------------------------------

    def _data_names(self) -> set[str]:
        """Parameters (minus self/cls) and locals computed from them, to a fixed point."""
        params = list(self.function.params.posonly_params) + list(self.function.params.params) + list(self.function.params.kwonly_params)
        names = {p.name.value for p in params if p.name.value not in ("self", "cls") and not NON_DATA_PARAMETER.search(p.name.value.lower())}
        assignments = [
            (name.value, node.value)
            for node in self.nodes
            if isinstance(node, (cst.Assign, cst.AugAssign, cst.AnnAssign)) and node.value is not None
            for target in (node.targets if isinstance(node, cst.Assign) else [node])
            for name in assigned_names(target.target)
        ]
        assignments += [
            (name.value, node.iter) for node in self.nodes if isinstance(node, cst.For) for name in assigned_names(node.target)
        ]
        changed = True
        while changed:
            changed = False
            for name, value in assignments:
                if name not in names and self._depends_on(value, names):
                    names.add(name)
                    changed = True
        return names

    def _depends_on_data(self, expr: cst.BaseExpression) -> bool:
        return self._depends_on(expr, self.data_names)

    def _depends_on(self, expr: cst.CSTNode, names: set[str]) -> bool:
        """Whether `expr` reads tensor data: a data name or `self.<attr>`, outside shape/size queries."""
        stack = [expr]
        while stack:
            node = stack.pop()
            if isinstance(node, cst.Attribute):
                if node.attr.value in BLOCKING_ATTRIBUTES:
                    continue
                if isinstance(node.value, cst.Name) and node.value.value == "self":
                    parent = self.module.parents.get(node)
                    if not (isinstance(parent, cst.Call) and parent.func is node):
                        return True
                    continue
                stack.append(node.value)
                continue
            if isinstance(node, cst.Call):
                name = dotted_name(node.func) or ""
                if name in BLOCKING_CALLS or (isinstance(node.func, cst.Attribute) and node.func.attr.value in BLOCKING_METHODS):
                    continue
            if isinstance(node, cst.Name):
                if node.value in names:
                    return True
                continue
            if isinstance(node, (cst.Lambda, cst.BaseComp)):
                continue
            stack.extend(reversed(children(node)))
        return False

    # --- flow to the return --------------------------------------------------------------------

    def _under_no_grad(self, node: cst.CSTNode) -> bool:
        for ancestor in self.module.ancestors(node):
            if ancestor is self.function:
                return False
            if isinstance(ancestor, cst.With) and any(disables_grad(item.item) for item in ancestor.items):
                return True
        return False

    def _reaches_return(self, source: cst.CSTNode) -> bool:
        pending = [source]
        tainted: set[str] = set()
        while pending:
            node = pending.pop()
            while True:
                parent = self.module.parents.get(node)
                if parent is None or parent is self.function:
                    break
                if isinstance(parent, cst.Return):
                    if not self._eval_only(parent):
                        return True
                    break
                names = self._bound_by(parent, node)
                if names is not None:
                    for name in names - tainted:
                        tainted.add(name)
                        pending.extend(self._loads(name))
                    break
                if not self._carries(parent, node):
                    break
                node = parent
        return False

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
        block = self.module.parents.get(self.module.parents.get(statement))
        if isinstance(block, cst.IndentedBlock):
            for sibling in block.body:
                if sibling is self.module.parents.get(statement) or sibling is statement:
                    break
                if isinstance(sibling, cst.If) and _tests_training(sibling.test) == "training" and any(
                    isinstance(n, cst.Return) for n in walk(sibling.body, into_functions=False)
                ):
                    return True
        return False

    def _bound_by(self, statement: cst.CSTNode, child: cst.CSTNode) -> set[str] | None:
        """Names a statement binds from `child`'s value; None if `statement` is not a binding of it."""
        if isinstance(statement, cst.Assign) and statement.value is child:
            return {n.value for t in statement.targets for n in assigned_names(t.target)}
        if isinstance(statement, (cst.AugAssign, cst.AnnAssign)) and statement.value is child:
            return {n.value for n in assigned_names(statement.target)}
        if isinstance(statement, cst.For) and statement.iter is child:
            return {n.value for n in assigned_names(statement.target)}
        if isinstance(statement, cst.Arg):
            call = self.module.parents.get(statement)
            if (
                isinstance(call, cst.Call)
                and isinstance(call.func, cst.Attribute)
                and call.func.attr.value in ("append", "extend", "insert")
                and isinstance(call.func.value, cst.Name)
            ):
                return {call.func.value.value}
        return None

    def _loads(self, name: str) -> list[cst.Name]:
        found = []
        for node in self.nodes:
            if isinstance(node, cst.Name) and node.value == name:
                parent = self.module.parents.get(node)
                if isinstance(parent, cst.Attribute) and parent.attr is node:
                    continue
                if isinstance(parent, (cst.AssignTarget,)) or (isinstance(parent, (cst.AugAssign, cst.AnnAssign, cst.For)) and parent.target is node):
                    continue
                if isinstance(parent, cst.Arg) and parent.keyword is node:
                    continue
                found.append(node)
        return found

    def _carries(self, parent: cst.CSTNode, child: cst.CSTNode) -> bool:
        """Whether `child`'s value flows into `parent`'s value."""
        if isinstance(parent, cst.BinaryOperation):
            return not _is_straight_through(self.module, parent)
        if isinstance(parent, (cst.Comparison, cst.ComparisonTarget)):
            return False  # `(q == y).float().mean()`: an accuracy, not the activation
        if isinstance(parent, (cst.UnaryOperation, cst.Element, cst.StarredElement, cst.List, cst.Tuple, cst.DictElement, cst.Dict)):
            return not (isinstance(parent, cst.UnaryOperation) and isinstance(parent.operator, cst.Not))
        if isinstance(parent, cst.IfExp):
            return child is not parent.test
        if isinstance(parent, cst.Subscript):
            return child is parent.value
        if isinstance(parent, cst.Attribute):
            if parent.attr.value in BLOCKING_ATTRIBUTES or parent.attr.value in BLOCKING_METHODS:
                return False
            call = self.module.parents.get(parent)
            if isinstance(call, cst.Call) and call.func is parent:
                return parent.attr.value in CARRYING_METHODS or _is_layer_call(parent)
            return True
        if isinstance(parent, cst.Arg):
            return self._argument_carries(parent)
        if isinstance(parent, cst.Call):
            return True  # the method was judged at its Attribute, each argument at its Arg
        return False

    def _argument_carries(self, arg: cst.CSTNode) -> bool:
        call = self.module.parents.get(arg)
        if not isinstance(call, cst.Call) or not isinstance(arg, cst.Arg):
            return False
        func = call.func.value if isinstance(call.func, cst.Subscript) else call.func  # self.tables[i](idx)
        name = dotted_name(func) or ""
        if name in BLOCKING_CALLS or name in self.lookup_layers:
            return False
        if arg.keyword is not None:
            return arg.keyword.value in ("input", "weight", "bias", "other", "tensors", "x") and arg.keyword.value not in NON_VALUE_KEYWORDS
        if isinstance(call.func, cst.Attribute):
            method = call.func.attr.value
            qualified = self.module.qualified_name(call.func) or ""
            if not qualified.startswith("torch.") and not _is_layer_call(call.func):
                return method in ARGUMENT_CARRYING_METHODS or method in ("append", "extend", "insert")
        short = name.rsplit(".", 1)[-1]
        if short in FRESH_TENSOR_FACTORIES:
            return False
        position = list(call.args).index(arg)
        return position not in NON_VALUE_POSITIONS.get(short, ())


def _reads_any(expr: cst.CSTNode, names: set[str]) -> bool:
    """Whether `expr` mentions one of `names` as a variable (not as an attribute name)."""
    for node in [expr, *walk(expr)]:
        if isinstance(node, cst.Attribute):
            continue
        if isinstance(node, cst.Name) and node.value in names:
            return True
    return False


def _directly_returned(module: ParsedModule, node: cst.CSTNode) -> bool:
    parent = module.parents.get(node)
    while isinstance(parent, (cst.Element, cst.Tuple, cst.List)):
        parent = module.parents.get(parent)
    return isinstance(parent, cst.Return)


def _is_argmax(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Call) and isinstance(expr.func, (cst.Attribute, cst.Name)) and (
        (dotted_name(expr.func) or "").rsplit(".", 1)[-1] in ("argmax", "argmin")
        or (isinstance(expr.func, cst.Attribute) and expr.func.attr.value in ("argmax", "argmin"))
    )


def _is_max(expr: cst.BaseExpression) -> bool:
    """`x.max(-1, keepdim=True).values`, `x.amax(-1, keepdim=True)`, `torch.max(x, 1, True)[0]`."""
    if isinstance(expr, cst.Attribute) and expr.attr.value == "values":
        expr = expr.value
    if isinstance(expr, cst.Subscript):
        expr = expr.value
    return isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value in ("max", "amax", "min", "amin")


def _tests_training(test: cst.BaseExpression) -> str | None:
    text = "".join(code_of(test).split())
    if text == "self.training":
        return "training"
    if text == "notself.training":
        return "not training"
    return None


def _public_torch_op(qualified: str) -> str | None:
    """`round` for `torch.round`, `one_hot` for `torch.nn.functional.one_hot`; None for private namespaces."""
    parts = qualified.split(".")
    if len(parts) == 2 and parts[0] == "torch":
        return parts[1]
    if qualified in ("torch.nn.functional.one_hot", "torch.special.round"):
        return parts[-1]
    return None


def _data_roots(expr: cst.BaseExpression) -> set[str]:
    """The names and `self.<attr>` chains an operand reads (`x`, `self.weight`)."""
    roots = set()
    for node in [expr, *walk(expr)]:
        if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name) and node.value.value == "self":
            roots.add(f"self.{node.attr.value}")
        elif isinstance(node, cst.Name) and node.value != "self":
            roots.add(node.value)
    return roots


def _is_layer_call(func: cst.Attribute) -> bool:
    """`self.fc(h)`: a submodule call carries its input to its output."""
    return isinstance(func.value, cst.Name) and func.value.value == "self"


def _is_straight_through(module: ParsedModule, operation: cst.BinaryOperation) -> bool:
    """`x + (q - x).detach()` and `q + p - p.detach()`: the straight-through estimator idiom."""
    top = operation
    while isinstance(module.parents.get(top), cst.BinaryOperation) and isinstance(module.parents[top].operator, (cst.Add, cst.Subtract)):
        top = module.parents[top]
    terms = list(_signed_terms(top, 1))
    added = {"".join(code_of(t).split()) for sign, t in terms if sign > 0}
    for sign, term in terms:
        if sign < 0 and _is_detach(term) and "".join(code_of(term.func.value).split()) in added:
            return True
    return False


def _signed_terms(expr: cst.BaseExpression, sign: int):
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, (cst.Add, cst.Subtract)):
        yield from _signed_terms(expr.left, sign)
        yield from _signed_terms(expr.right, sign if isinstance(expr.operator, cst.Add) else -sign)
    else:
        yield sign, expr.with_changes(lpar=(), rpar=()) if expr.lpar else expr


def _is_detach(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value == "detach"


def _is_integer_dtype(expr: cst.BaseExpression) -> bool:
    name = dotted_name(expr) or ""
    return name.rsplit(".", 1)[-1] in INTEGER_DTYPES and name.startswith(("torch.", "int", "long", "bool"))


def _message(node: cst.CSTNode, description: str) -> str:
    text = " ".join(code_of(node).split())
    if len(text) > 50:
        text = text[:47] + "..."
    return (
        f"`{text}` reaches the output: {description}, so what feeds it never trains; "
        f"use a straight-through estimator (x + (q - x).detach()) or a custom autograd.Function with a surrogate backward"
    )

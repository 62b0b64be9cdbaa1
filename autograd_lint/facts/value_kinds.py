"""Whether an expression in a Function's forward (or setup_context) is a tensor, a non-tensor, or unknown.

A heuristic that answers only when the source says so: forward's parameters are classified from their
annotations, defaults, the `.apply(...)` call sites' arguments and how forward itself uses them; other
expressions from literals, `torch.*` calls, tensor methods and attributes (`.shape`, `.size()`, `.item()`,
`.tolist()`, `.dim()`, `len()`...), arithmetic and the local names bound to them. Anything else is
UNKNOWN, and rules that must be precise treat UNKNOWN as "say nothing".
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from enum import Enum
from functools import cached_property

import libcst as cst

from ..core.context import per_file
from ..core.module import ParsedModule
from ..core.scopes import bindings
from ..core.syntax import code_of, dotted_name, is_integer_dtype, string_value, walk
from ..torch_api import ALIAS_ATTRIBUTES, INTEGER_RESULT_OPS, TENSOR_FUNCTION_MODULES
from .function_model import FunctionClass, Method, function_model
from .gradient_returns import TUPLE_RETURNING


class Kind(Enum):
    TENSOR = "tensor"
    NON_TENSOR = "non-tensor"  # a Python number, string, bool, shape, dtype, device, list...
    NONE = "None"
    UNKNOWN = "unknown"


TENSOR, NON_TENSOR, NONE, UNKNOWN = Kind.TENSOR, Kind.NON_TENSOR, Kind.NONE, Kind.UNKNOWN
# A value a class gives `self.<attr>` (a Kind for `register_buffer`), with the method it is written in.
AttributeValue = tuple["Kind | cst.BaseExpression", "cst.FunctionDef | None"]

# Tensor attributes and methods whose value is not a tensor.
NON_TENSOR_ATTRIBUTES = frozenset(
    {
        "shape",
        "dtype",
        "device",
        "ndim",
        "requires_grad",
        "is_cuda",
        "is_sparse",
        "is_quantized",
        "is_meta",
        "layout",
        "is_leaf",
        "names",
        "itemsize",
        "nbytes",
        "_version",
        "is_nested",
        "is_mkldnn",
    }
)
NON_TENSOR_METHODS = frozenset(
    {
        "size",
        "dim",
        "item",
        "tolist",
        "numel",
        "nelement",
        "stride",
        "data_ptr",
        "element_size",
        "is_contiguous",
        "is_floating_point",
        "is_complex",
        "storage_offset",
        "get_device",
        "ndimension",
        "untyped_storage",
        "storage",
        "__len__",
        "is_pinned",
        "is_set_to",
        "is_shared",
        "numpy",
        "dim_order",
    }
)
# Methods that only a tensor has (beyond those of numpy arrays and Python objects): using a
# parameter this way tells that forward receives a tensor there.
TENSOR_ONLY_METHODS = frozenset(
    {
        "view_as",
        "contiguous",
        "clone",
        "detach",
        "expand",
        "expand_as",
        "unsqueeze",
        "permute",
        "size",
        "dim",
        "numel",
        "new_zeros",
        "new_ones",
        "new_empty",
        "new_full",
        "new_tensor",
        "masked_fill",
        "masked_fill_",
        "index_select",
        "narrow",
        "unfold",
        "type_as",
        "float",
        "half",
        "double",
        "bfloat16",
        "is_contiguous",
        "data_ptr",
        "element_size",
        "requires_grad_",
        "detach_",
        "zero_",
        "copy_",
        "sigmoid",
        "relu",
        "softmax",
        "log_softmax",
        "mul_",
        "add_",
        "sub_",
        "div_",
        "clamp",
        "clamp_",
        "clamp_min",
        "clamp_max",
        "mm",
        "bmm",
        "matmul",
        "is_cuda",
        "requires_grad",
        "grad",
        "grad_fn",
        "is_leaf",
        "mT",
        "new",
        "stride",
        "sign",
        "t",
        "view",
        "exp",
        "log",
        "tanh",
        "abs",
        "sqrt",
        "rsqrt",
        "pow",
        "neg",
        "sin",
        "cos",
        "mul",
        "add",
        "sub",
        "div",
        "numpy",
        "norm",
        "gt",
        "lt",
        "ge",
        "le",
        "eq",
        "ne",
        "floor",
        "ceil",
        "reciprocal",
        "erf",
        "log1p",
        "expm1",
        "index_fill",
        "scatter_",
        "scatter_add",
        "masked_scatter",
        "bernoulli",
        "sigmoid_",
        "relu_",
    }
)
# torch functions whose first argument is not a tensor (sizes, values, seeds).
TORCH_CONSTRUCTORS = frozenset(
    {
        "tensor",
        "as_tensor",
        "asarray",
        "from_numpy",
        "full",
        "zeros",
        "ones",
        "empty",
        "arange",
        "linspace",
        "logspace",
        "rand",
        "randn",
        "randint",
        "randperm",
        "eye",
        "manual_seed",
        "device",
        "Size",
        "scalar_tensor",
        "empty_strided",
        "frombuffer",
        "is_tensor",
        "get_default_dtype",
        "no_grad",
        "enable_grad",
        "set_grad_enabled",
    }
)
# Torch functions (one level under `torch`) that return something other than a tensor.
NON_TENSOR_TORCH_FUNCTIONS = frozenset(
    {
        "is_tensor",
        "is_storage",
        "is_floating_point",
        "is_complex",
        "is_nonzero",
        "numel",
        "get_default_dtype",
        "is_grad_enabled",
        "is_inference_mode_enabled",
        "is_autocast_enabled",
        "get_autocast_dtype",
        "get_autocast_gpu_dtype",
        "get_autocast_cpu_dtype",
        "Size",
        "device",
        "dtype",
        "finfo",
        "iinfo",
        "Generator",
        "Stream",
        "Event",
        "set_grad_enabled",
        "no_grad",
        "enable_grad",
        "inference_mode",
        "promote_types",
        "result_type",
        "can_cast",
        "broadcast_shapes",
        "compile",
        "typename",
        "is_same_size",
        "get_device",
        "get_num_threads",
        "initial_seed",
        "seed",
        "manual_seed",
        "is_deterministic_algorithms_warn_only_enabled",
        "are_deterministic_algorithms_enabled",
        "is_anomaly_enabled",
        "is_warn_always_enabled",
        "get_device_module",
        "sym_int",
        "sym_float",
        "sym_max",
        "sym_min",
        "sym_not",
        "vmap",
        "cond",
    }
)
# Tensors that hold state rather than data (an RNG state): neither kind, so that rules say nothing.
STATE_TORCH_FUNCTIONS = frozenset({"get_rng_state"})
NON_TENSOR_BUILTINS = frozenset(
    {
        "len",
        "int",
        "float",
        "bool",
        "str",
        "list",
        "tuple",
        "dict",
        "set",
        "range",
        "isinstance",
        "abs",
        "round",
        "min",
        "max",
        "sum",
        "sorted",
    }
)
# `min`, `max`, `sum`, `abs`, `round` of non-tensors are non-tensors; of tensors, tensors.
_NUMERIC_BUILTINS = frozenset({"abs", "round", "min", "max", "sum"})

NON_TENSOR_ANNOTATIONS = frozenset(
    {
        "int",
        "float",
        "bool",
        "str",
        "complex",
        "list",
        "tuple",
        "dict",
        "set",
        "List",
        "Tuple",
        "Dict",
        "Sequence",
        "Set",
        "Callable",
        "Number",
        "SymInt",
        "torch.dtype",
        "dtype",
        "torch.device",
        "device",
        "torch.Size",
        "Size",
        "_size",
        "typing.List",
        "typing.Tuple",
        "typing.Sequence",
        "typing.Callable",
        "ProcessGroup",
        "dist.ProcessGroup",
        "torch.distributed.ProcessGroup",
        "torch.distributed.distributed_c10d.ProcessGroup",
    }
)
# Keywords under which torch.distributed (and the code built on it) takes a process group.
PROCESS_GROUP_KEYWORDS = frozenset({"group", "process_group", "pg"})
# torch.distributed functions whose first argument is a process group.
GROUP_QUERIES = frozenset(
    {"get_world_size", "get_rank", "get_process_group_ranks", "get_global_rank", "get_group_rank", "get_backend"}
)
# Methods of a process group (a tensor has none of them).
PROCESS_GROUP_METHODS = frozenset({"rank", "allreduce", "allgather", "broadcast", "barrier", "_get_backend_name"})
TENSOR_ANNOTATIONS = frozenset({"Tensor", "torch.Tensor", "torch.nn.Parameter", "Parameter", "nn.Parameter"})


def literal_kind(expr: cst.BaseExpression) -> Kind:
    """The kind of a literal, a container display or a comprehension; UNKNOWN for anything else."""
    if isinstance(expr, cst.Name):
        if expr.value == "None":
            return NONE
        if expr.value in ("True", "False"):
            return NON_TENSOR
        return UNKNOWN
    if isinstance(
        expr,
        (
            cst.BaseNumber,
            cst.BaseString,
            cst.List,
            cst.Tuple,
            cst.Dict,
            cst.Set,
            cst.ListComp,
            cst.SetComp,
            cst.DictComp,
            cst.Lambda,
        ),
    ):
        return NON_TENSOR
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.expression, cst.BaseNumber):
        return NON_TENSOR
    return UNKNOWN


def annotation_kind(annotation: cst.Annotation | None) -> Kind:
    """TENSOR for `Tensor` (and `Optional[Tensor]`), NON_TENSOR for `int`, `float`, `List[...]`..."""
    if annotation is None:
        return UNKNOWN
    expr = annotation.annotation
    if isinstance(expr, cst.SimpleString):  # a string annotation: 'torch.Tensor'
        text = (expr.evaluated_value or "").strip()
        return TENSOR if text in TENSOR_ANNOTATIONS else NON_TENSOR if text in NON_TENSOR_ANNOTATIONS else UNKNOWN
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.BitOr):  # `Tensor | None`
        sides = {annotation_kind(cst.Annotation(expr.left)), annotation_kind(cst.Annotation(expr.right))} - {NONE}
        return sides.pop() if len(sides) == 1 else UNKNOWN
    if isinstance(expr, cst.Name) and expr.value == "None":
        return NONE
    if isinstance(expr, cst.Subscript):
        head = dotted_name(expr.value) or ""
        if (
            head.rsplit(".", 1)[-1] == "Optional"
            and len(expr.slice) == 1
            and isinstance(expr.slice[0].slice, cst.Index)
        ):
            return annotation_kind(cst.Annotation(expr.slice[0].slice.value))
        return NON_TENSOR if head in NON_TENSOR_ANNOTATIONS else UNKNOWN
    name = dotted_name(expr) or ""
    if name in TENSOR_ANNOTATIONS:
        return TENSOR
    return NON_TENSOR if name in NON_TENSOR_ANNOTATIONS else UNKNOWN


def _mentions(node: cst.CSTNode, name: str) -> bool:
    if isinstance(node, cst.AugAssign):
        return True
    value = getattr(node, "value", None)
    return isinstance(value, cst.CSTNode) and any(
        isinstance(n, cst.Name) and n.value == name for n in (value, *walk(value))
    )


def _position_in(target: cst.BaseExpression, name: str) -> int | None:
    """The index of `name` in a flat unpacking target `a, b, c` (None when starred or nested)."""
    if not isinstance(target, (cst.Tuple, cst.List)):
        return None
    for index, element in enumerate(target.elements):
        if isinstance(element, cst.StarredElement):
            return None
        if isinstance(element.value, cst.Name) and element.value.value == name:
            return index
    return None


def _combine(kinds) -> Kind:
    """One kind if all agree (None ignored when something else is known), else UNKNOWN."""
    found = set(kinds)
    if len(found) > 1:
        found.discard(NONE)
    return found.pop() if len(found) == 1 else UNKNOWN


class ValueKinds:
    """Kinds of expressions inside one method of a Function (forward or setup_context)."""

    _follows_helpers = True

    def __init__(self, function_class: FunctionClass, method: Method, module=None):
        self.function_class = function_class
        self.method = method
        self.module = module
        self._local = bindings(method.node)
        self._params = {p.name.value: p for p in method.data_params}
        self._visiting: set[str] = set()
        self._assumed: dict[str, Kind] = {}

    @property
    def bindings(self) -> dict[str, list[cst.CSTNode]]:
        """The method's local bindings (scopes.bindings)."""
        return self._local

    # ---- forward's parameters ----

    @cached_property
    def parameter_kinds(self) -> dict[str, Kind]:
        """Each data parameter's kind. For setup_context, names unpacked from `inputs` take the kind of
        forward's parameter at that position. A Function is differentiable only through a tensor
        input, so when every other input is known not to be one (and forward takes no `*args`), the
        one left is a tensor."""
        forward = self.function_class.forward
        if self.method.name == "setup_context":
            return self._setup_context_kinds(forward)
        kinds = {name: self._parameter_kind(name) for name in self._params}
        undecided = [name for name, kind in kinds.items() if kind is UNKNOWN]
        has_tensor = any(kind is TENSOR for kind in kinds.values())
        if len(undecided) == 1 and not has_tensor and not isinstance(self.method.node.params.star_arg, cst.Param):
            kinds[undecided[0]] = TENSOR
        return kinds

    def _parameter_kind(self, name: str) -> Kind:
        return parameter_kind(self.function_class, self.method, name, self.module)

    def _setup_context_kinds(self, forward: Method | None) -> dict[str, Kind]:
        kinds: dict[str, Kind] = {}
        params = self.method.data_params
        if forward is None or len(params) < 2:
            return kinds
        inputs_name, output_name = params[0].name.value, params[1].name.value
        forward_kinds = ValueKinds(self.function_class, forward, self.module)
        forward_params = [p.name.value for p in forward.data_params]
        kinds[output_name] = forward_kinds.output_kind
        for node in walk(self.method.node.body, into_functions=False):
            if not (isinstance(node, cst.Assign) and isinstance(node.value, cst.Name)):
                continue
            targets = [t.target for t in node.targets]
            if node.value.value == inputs_name:
                for target in targets:
                    if isinstance(target, (cst.Tuple, cst.List)) and not any(
                        isinstance(e, cst.StarredElement) for e in target.elements
                    ):
                        for element, param in zip(target.elements, forward_params):
                            if isinstance(element.value, cst.Name):
                                kinds[element.value.value] = forward_kinds.parameter_kinds.get(param, UNKNOWN)
            elif node.value.value == output_name and forward_kinds.output_kind is not TENSOR:
                outputs = forward_kinds.returned_tuple_kinds
                for target in targets:
                    if isinstance(target, (cst.Tuple, cst.List)) and outputs and len(target.elements) == len(outputs):
                        for element, kind in zip(target.elements, outputs):
                            if isinstance(element.value, cst.Name):
                                kinds[element.value.value] = kind
        return kinds

    # ---- what forward returns ----

    @cached_property
    def returns(self) -> list[cst.BaseExpression]:
        return [
            n.value
            for n in walk(self.method.node.body, into_functions=False)
            if isinstance(n, cst.Return) and n.value is not None
        ]

    @cached_property
    def returned_names(self) -> set[str]:
        """Names forward returns, alone or as elements of a returned tuple."""
        found = set()
        for value in self.returns:
            elements = [e.value for e in value.elements] if isinstance(value, cst.Tuple) else [value]
            found |= {e.value for e in elements if isinstance(e, cst.Name) and e.value not in ("None", "True", "False")}
        return found

    @cached_property
    def output_names(self) -> set[str]:
        """Names that hold forward's output: those forward returns; in setup_context, the `output`
        parameter and the names unpacked from it."""
        if self.method.name != "setup_context":
            return self.returned_names
        params = self.method.data_params
        if len(params) < 2:
            return set()
        output = params[1].name.value
        found = {output}
        for node in walk(self.method.node.body, into_functions=False):
            if isinstance(node, cst.Assign) and isinstance(node.value, cst.Name) and node.value.value == output:
                for target in node.targets:
                    if isinstance(target.target, (cst.Tuple, cst.List)):
                        found |= {e.value.value for e in target.target.elements if isinstance(e.value, cst.Name)}
        return found

    def is_whole_output(self, name: str) -> bool:
        """Whether `name` is everything forward returns (every return is that bare name), or
        setup_context's `output` parameter: an output of a Function, so a tensor or tensors."""
        if self.method.name == "setup_context":
            params = self.method.data_params
            return len(params) >= 2 and name == params[1].name.value
        if not self.returns or not all(isinstance(v, cst.Name) and v.value == name for v in self.returns):
            return False
        # No binding of it may be something else (`out = x.shape; ...; return out`).
        others = [n for n in self._local.get(name, []) if not isinstance(n, cst.Param)]
        return all(self._binding_kind(name, n) not in (NON_TENSOR, NONE) for n in others)

    def is_unchanged_input(self, name: str) -> bool:
        """A data parameter (or, in setup_context, a name unpacked from `inputs`) that the method
        never rebinds: its value is the argument passed to apply."""
        nodes = self._local.get(name, [])
        if self.method.name == "setup_context":
            return len(nodes) == 1
        return all(isinstance(node, cst.Param) for node in nodes)

    @cached_property
    def output_kind(self) -> Kind:
        """TENSOR when every return gives one tensor."""
        kinds = [self.kind(value) for value in self.returns if not isinstance(value, cst.Tuple)]
        if len(kinds) != len(self.returns) or not kinds:
            return UNKNOWN
        return _combine(kinds)

    @cached_property
    def returned_tuple_kinds(self) -> list[Kind] | None:
        tuples = [v for v in self.returns if isinstance(v, cst.Tuple)]
        if len(tuples) != len(self.returns) or not tuples or len({len(t.elements) for t in tuples}) != 1:
            return None
        return [_combine(self.kind(t.elements[i].value) for t in tuples) for i in range(len(tuples[0].elements))]

    # ---- expressions ----

    def kind(self, expr: cst.BaseExpression) -> Kind:
        literal = literal_kind(expr)
        if literal is not UNKNOWN:
            return literal
        if isinstance(expr, cst.Name):
            return self._name_kind(expr.value)
        if isinstance(expr, cst.Attribute):
            return self._attribute_kind(expr)
        if isinstance(expr, cst.Call):
            return self._call_kind(expr)
        if isinstance(expr, cst.Subscript):
            base = self.kind(expr.value)
            if base is TENSOR:
                return TENSOR
            if self.is_shape(expr.value):
                return NON_TENSOR  # `x.shape[0]`, `x.size()[-2:]`
            return self._input_kind(expr)
        if isinstance(expr, cst.BinaryOperation):
            return self._arithmetic_kind([expr.left, expr.right])
        if isinstance(expr, cst.UnaryOperation):
            if isinstance(expr.operator, cst.Not):
                return NON_TENSOR
            return self.kind(expr.expression)
        if isinstance(expr, cst.Comparison):
            if any(isinstance(c.operator, (cst.Is, cst.IsNot, cst.In, cst.NotIn)) for c in expr.comparisons):
                return NON_TENSOR
            return self._arithmetic_kind([expr.left, *(c.comparator for c in expr.comparisons)])
        if isinstance(expr, cst.BooleanOperation):
            return UNKNOWN
        if isinstance(expr, cst.IfExp):
            return _combine([self.kind(expr.body), self.kind(expr.orelse)])
        if isinstance(expr, cst.FormattedString):
            return NON_TENSOR
        return UNKNOWN

    def is_integer(self, expr: cst.BaseExpression, depth: int = 0) -> bool:
        """Whether `expr` is an integer or bool tensor (no gradient, no grad_fn): an index from
        `argmax`/`argsort`/`nonzero`, a `.long()`/`.int()`/`.bool()` cast, a `dtype=torch.int32`
        constructor, a comparison mask, or a local bound only to such values."""
        if depth > 4:
            return False
        if isinstance(expr, cst.Comparison):
            return not any(isinstance(c.operator, (cst.Is, cst.IsNot, cst.In, cst.NotIn)) for c in expr.comparisons)
        if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.BitInvert):
            return self.is_integer(expr.expression, depth + 1)
        if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, (cst.BitAnd, cst.BitOr, cst.BitXor)):
            return self.is_integer(expr.left, depth + 1) and self.is_integer(expr.right, depth + 1)
        if isinstance(expr, cst.Name):
            nodes = self._local.get(expr.value, [])
            return bool(nodes) and all(
                isinstance(n, cst.Assign)
                and len(n.targets) == 1
                and isinstance(n.targets[0].target, cst.Name)
                and self.is_integer(n.value, depth + 1)
                for n in nodes
            )
        if not isinstance(expr, cst.Call):
            return False
        for arg in expr.args:
            if arg.keyword is not None and arg.keyword.value == "dtype":
                return is_integer_dtype(arg.value)
        func = expr.func
        name = func.attr.value if isinstance(func, cst.Attribute) else func.value if isinstance(func, cst.Name) else ""
        if name in INTEGER_RESULT_OPS:
            return isinstance(func, cst.Attribute)
        if name in ("to", "type") and expr.args and expr.args[0].keyword is None:
            return is_integer_dtype(expr.args[0].value)
        return False

    def input_index(self, expr: cst.BaseExpression) -> int | None:
        """i for `inputs[i]` in setup_context (a literal, non-negative index)."""
        params = self.method.data_params
        if self.method.name != "setup_context" or not params or not isinstance(expr, cst.Subscript):
            return None
        if not (isinstance(expr.value, cst.Name) and expr.value.value == params[0].name.value and len(expr.slice) == 1):
            return None
        index = expr.slice[0].slice
        if isinstance(index, cst.Index) and isinstance(index.value, cst.Integer):
            return int(index.value.value)
        return None

    def _input_kind(self, expr: cst.Subscript) -> Kind:
        """setup_context's `inputs[i]`: the kind of forward's i-th parameter."""
        index = self.input_index(expr)
        forward = self.function_class.forward
        if index is None or forward is None or index >= len(forward.data_params):
            return UNKNOWN
        return ValueKinds(self.function_class, forward, self.module).parameter_kinds.get(
            forward.data_params[index].name.value, UNKNOWN
        )

    def _arithmetic_kind(self, operands) -> Kind:
        kinds = [self.kind(o) for o in operands]
        if TENSOR in kinds:
            return TENSOR
        if kinds and all(k is NON_TENSOR for k in kinds):
            return NON_TENSOR
        return UNKNOWN

    def is_shape(self, expr: cst.BaseExpression) -> bool:
        """`x.shape`, `x.size()`, `x.stride()`: a torch.Size or tuple of ints."""
        if isinstance(expr, cst.Attribute) and expr.attr.value == "shape":
            return True
        return (
            isinstance(expr, cst.Call)
            and isinstance(expr.func, cst.Attribute)
            and expr.func.attr.value in ("size", "stride")
        )

    def _name_kind(self, name: str) -> Kind:
        if name in self._assumed:
            return self._assumed[name]
        nodes = self._local.get(name)
        if not nodes or name in self._visiting:
            return self.parameter_kinds.get(name, UNKNOWN) if not nodes else UNKNOWN
        self._visiting.add(name)
        try:
            # `x = x.contiguous()`: the bindings that read the name itself are judged with the
            # kind the others give it.
            reading = [n for n in nodes if not isinstance(n, cst.Param) and _mentions(n, name)]
            direct = [self._binding_kind(name, n) for n in nodes if n not in reading]
            if not reading:
                return _combine(direct)
            self._assumed[name] = _combine(direct)
            try:
                return _combine(direct + [self._binding_kind(name, n) for n in reading])
            finally:
                del self._assumed[name]
        finally:
            self._visiting.discard(name)

    def _binding_kind(self, name: str, node: cst.CSTNode) -> Kind:
        if isinstance(node, cst.Param):
            return self.parameter_kinds.get(name, UNKNOWN)  # UNKNOWN for ctx, cls, *args
        if isinstance(node, cst.Assign):
            for target in node.targets:
                if isinstance(target.target, cst.Name) and target.target.value == name:
                    return self.kind(node.value)
                if isinstance(target.target, (cst.Tuple, cst.List)):
                    if name in self.parameter_kinds:  # setup_context: `x, k = inputs`
                        return self.parameter_kinds[name]
                    position = _position_in(target.target, name)
                    if position is not None:
                        element = self._element_kind(node.value, position, len(target.target.elements))
                        if element is not UNKNOWN:
                            return element
                    return self._unpacked_kind(node.value)
            return UNKNOWN
        if isinstance(node, cst.AnnAssign):
            kind = annotation_kind(node.annotation)
            if kind is UNKNOWN and node.value is not None:
                return self.kind(node.value)
            return kind
        if isinstance(node, cst.AugAssign):  # `n += 1`: arithmetic on the name's other bindings
            return self._arithmetic_kind([node.target, node.value])
        return UNKNOWN

    def _element_kind(self, value: cst.BaseExpression, position: int, count: int) -> Kind:
        """The kind of element `position` of `a, b = value`: of a display (`n, s = x.size(0), x.item()`),
        of a shape's slice (`n, c = x.shape[:2]`), of what a module function returns as a tuple display."""
        if isinstance(value, (cst.Tuple, cst.List)):
            elements = value.elements
            if len(elements) == count and not any(isinstance(e, cst.StarredElement) for e in elements):
                return self.kind(elements[position].value)
            return UNKNOWN
        if isinstance(value, cst.Subscript) and self.is_shape(value.value):
            return NON_TENSOR
        if isinstance(value, cst.Call):
            helper = self._helper(value)
            if helper is not None:
                kinds = self._helper_kinds(value, helper)
                returned = kinds.returns
                tuples = [r for r in returned if isinstance(r, cst.Tuple) and len(r.elements) == count]
                if returned and len(tuples) == len(returned):
                    return _combine([kinds.kind(r.elements[position].value) for r in tuples])
        return UNKNOWN

    def _unpacked_kind(self, value: cst.BaseExpression) -> Kind:
        """The kind of each name in `a, b = value`."""
        if self.is_shape(value):
            return NON_TENSOR
        if isinstance(value, cst.Attribute) and value.attr.value == "saved_tensors":
            return UNKNOWN  # may hold None
        if isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute):
            attr = value.func.attr.value
            if attr in (
                "split",
                "chunk",
                "unbind",
                "sort",
                "topk",
                "max",
                "min",
                "kthvalue",
                "mode",
                "median",
                "tensor_split",
            ):
                receiver = value.func.value
                if self._is_torch_module(receiver) or self.kind(receiver) is TENSOR:
                    return TENSOR
        return UNKNOWN

    def _attribute_kind(self, expr: cst.Attribute) -> Kind:
        attr = expr.attr.value
        owner = self.kind(expr.value)
        if owner is TENSOR:
            if attr in NON_TENSOR_ATTRIBUTES:
                return NON_TENSOR
            if attr in ALIAS_ATTRIBUTES or attr in ("grad",):  # views of the tensor, or the tensor itself
                return TENSOR
            return UNKNOWN
        if attr in ("shape", "dtype", "device", "ndim") and owner is not NON_TENSOR:
            return NON_TENSOR  # whatever has a shape, the shape is not a tensor
        return UNKNOWN

    def _call_kind(self, call: cst.Call) -> Kind:
        func = call.func
        if isinstance(func, cst.Name):
            if func.value in _NUMERIC_BUILTINS:
                return self._arithmetic_kind([a.value for a in call.args if not a.star]) if call.args else UNKNOWN
            if func.value in NON_TENSOR_BUILTINS:
                return NON_TENSOR
            if func.value in _plain_classes_of(self.module) and func.value not in self._local:
                return NON_TENSOR  # an instance of one of the module's own (non-tensor) classes
            return self._helper_kind(call)
        if (
            isinstance(func, cst.Attribute)
            and isinstance(func.value, cst.Name)
            and func.value.value in (self.function_class.name, "cls")
        ):
            return self._helper_kind(call)
        if not isinstance(func, cst.Attribute):
            return UNKNOWN
        attr = func.attr.value
        receiver = func.value
        module_name = self._torch_module(receiver)
        if module_name is not None:
            if module_name == "torch" and attr in NON_TENSOR_TORCH_FUNCTIONS:
                return NON_TENSOR
            if attr in STATE_TORCH_FUNCTIONS:
                return UNKNOWN
            if (
                module_name in TENSOR_FUNCTION_MODULES
                and attr not in TUPLE_RETURNING
                and attr[:1].islower()
                and not attr.startswith("_")
            ):
                return TENSOR
            return UNKNOWN
        owner = self.kind(receiver)
        if owner is TENSOR:
            if attr in NON_TENSOR_METHODS:
                return NON_TENSOR
            if attr in TUPLE_RETURNING or attr in ("type", "register_hook", "backward", "apply_", "map_", "__array__"):
                return UNKNOWN
            return TENSOR
        if owner is NON_TENSOR and attr in NON_TENSOR_METHODS | {"numel", "index", "count"}:
            return NON_TENSOR
        if (
            attr in ("size", "dim", "item", "tolist", "numel", "stride", "data_ptr", "element_size")
            and owner is not NON_TENSOR
        ):
            return NON_TENSOR  # whoever answers these, the answer is a number or a shape
        return UNKNOWN

    def _helper_kind(self, call: cst.Call) -> Kind:
        """What a function of this module returns (one level deep, not what it calls in turn): the
        kinds its return statements agree on, read with its parameters' annotations only."""
        helper = self._helper(call)
        if helper is None:
            return UNKNOWN
        kinds = self._helper_kinds(call, helper)
        returned = kinds.returns
        if not returned or any(isinstance(n, (cst.Yield, cst.Await)) for n in walk(helper.body, into_functions=False)):
            return UNKNOWN
        return _combine([kinds.kind(value) for value in returned])

    def _helper_kinds(self, call: cst.Call, helper: cst.FunctionDef) -> _HelperKinds:
        """Kinds inside `helper`, its parameters bound to the kinds of what `call` passes."""
        params = [p.name.value for p in helper.params.params]
        if params and params[0] in ("self", "cls") and isinstance(call.func, cst.Attribute):
            params = params[1:]
        passed: dict[str, Kind] = {}
        positional = [a for a in call.args if a.keyword is None]
        if not any(a.star for a in call.args):
            for name, arg in zip(params, positional):
                passed[name] = self.kind(arg.value)
            for arg in call.args:
                if arg.keyword is not None:
                    passed[arg.keyword.value] = self.kind(arg.value)
        passed = {name: kind for name, kind in passed.items() if kind is not UNKNOWN}
        return _HelperKinds(
            self.function_class, Method(helper.name.value, helper, self.function_class), self.module, passed
        )

    def _helper(self, call: cst.Call) -> cst.FunctionDef | None:
        """The module function (or the Function's own helper method) `call` calls, when followed."""
        if self.module is None or not self._follows_helpers:
            return None
        return self._helpers.get(id(call))

    @cached_property
    def _helpers(self) -> dict[int, cst.FunctionDef]:
        """id(call) -> the module function it calls, for the method's calls (read once)."""
        return {id(site): found for site, found in function_model(self.module).called_functions(self.method)}

    def _torch_module(self, expr: cst.BaseExpression) -> str | None:
        """`torch`, `torch.nn.functional`... when `expr` names one of the torch modules whose
        functions are classified (through the module's imports: `F`, `torch.nn.functional as F`)."""
        dotted = dotted_name(expr)
        if dotted is None:
            return None
        if self.module is not None:
            qualified = self.module.qualified_name(expr) or dotted
        else:
            qualified = {"F": "torch.nn.functional"}.get(dotted, dotted)
        if qualified in TENSOR_FUNCTION_MODULES:
            return qualified
        if self._local.get(dotted.split(".")[0]):
            return None  # a local variable named like a module
        return None

    def _is_torch_module(self, expr: cst.BaseExpression) -> bool:
        return self._torch_module(expr) is not None


class _HelperKinds(ValueKinds):
    """Kinds inside a module function forward calls: its parameters take the kinds of the call's
    arguments (else their annotations), and the functions it calls are not followed."""

    _follows_helpers = False

    def __init__(self, function_class: FunctionClass, method: Method, module, passed: dict[str, Kind] | None = None):
        super().__init__(function_class, method, module)
        self._passed = passed or {}

    @cached_property
    def parameter_kinds(self) -> dict[str, Kind]:
        return {
            p.name.value: self._passed.get(p.name.value) or annotation_kind(p.annotation) for p in self.method.params
        }


def _plain_classes_of(module: ParsedModule | None) -> frozenset[str]:
    return module.fact(_plain_classes) if module is not None else frozenset()


# ---- forward's parameters, from annotations, defaults, call sites and use ----


def parameter_kind(function_class: FunctionClass, method: Method, name: str, module=None) -> Kind:
    """A data parameter's kind. The `.apply(...)` call sites decide when all of them tell (a site that
    omits the argument contributes the default); then forward's own use: a process group or another
    object forward treats as one (`group=pg`, `pg.rank()`) is not a tensor; then the annotation (a
    last resort: `im2col_step: torch.Tensor` that every call passes an int is an int); else, when the
    module has no call site, a non-tensor literal default; else a tensor-only use (`x.view(...)`,
    `torch.exp(x)`, `x @ w`). NONE only when every call site passes None."""
    params = method.data_params
    names = [p.name.value for p in params]
    if name not in names:
        return UNKNOWN
    index = names.index(name)
    param = params[index]
    used = used_as_tensor(method, name)
    passed = set(call_site_kinds(function_class, index, name, param, module))
    if passed and UNKNOWN not in passed:
        combined = _combine(passed)
        if combined is NON_TENSOR and used:
            return UNKNOWN
        if combined is not UNKNOWN:
            return combined
    if name in names_used_as_objects(method.node):
        return NON_TENSOR
    annotated = annotation_kind(param.annotation)
    if annotated is UNKNOWN and module is not None:
        annotated = _module_class_annotation_kind(param.annotation, module)
    if annotated is not UNKNOWN:
        return annotated
    if TENSOR in passed and NON_TENSOR not in passed:
        return TENSOR
    if not passed and param.default is not None and literal_kind(param.default) is NON_TENSOR and not used:
        return NON_TENSOR  # no call site in the module passes anything else
    return TENSOR if used and NON_TENSOR not in passed else UNKNOWN


def _module_class_annotation_kind(annotation: cst.Annotation | None, module) -> Kind:
    """NON_TENSOR for a parameter annotated with a class the module defines that is not a tensor
    subclass (an extension's state object: `state: Optional[MatmulState]`)."""
    if annotation is None:
        return UNKNOWN
    expr = annotation.annotation
    if (
        isinstance(expr, cst.Subscript)
        and (dotted_name(expr.value) or "").rsplit(".", 1)[-1] == "Optional"
        and len(expr.slice) == 1
    ):
        inner = expr.slice[0].slice
        expr = inner.value if isinstance(inner, cst.Index) else expr
    name = dotted_name(expr) or ""
    return NON_TENSOR if name in _plain_classes_of(module) else UNKNOWN


def _plain_classes(module) -> frozenset[str]:
    """Names of the module's classes that are not tensors (no `Tensor`/`Parameter` base)."""
    found = set()
    for class_def in module.classes:
        bases = {(dotted_name(arg.value) or "").rsplit(".", 1)[-1] for arg in class_def.bases}
        if not bases & {"Tensor", "Parameter"}:
            found.add(class_def.name.value)
    return frozenset(found)


@per_file
def names_used_as_objects(node: cst.FunctionDef) -> frozenset[str]:
    """Names the function uses as a process group: passed as `group=`, to `dist.get_world_size(...)`
    and the like, or asked `.rank()`. A tensor is never used so, though a group has `.size()` too."""
    found: set[str] = set()
    for child in walk(node.body, into_functions=False):
        if isinstance(child, cst.Call):
            for arg in child.args:
                if (
                    arg.keyword is not None
                    and arg.keyword.value in PROCESS_GROUP_KEYWORDS
                    and isinstance(arg.value, cst.Name)
                ):
                    found.add(arg.value.value)
            func = dotted_name(child.func) or ""
            if func.rsplit(".", 1)[-1] in GROUP_QUERIES and ("dist" in func or "distributed" in func):
                if child.args and child.args[0].keyword is None and isinstance(child.args[0].value, cst.Name):
                    found.add(child.args[0].value.value)
        elif (
            isinstance(child, cst.Attribute)
            and child.attr.value in PROCESS_GROUP_METHODS
            and isinstance(child.value, cst.Name)
        ):
            found.add(child.value.value)
    return frozenset(found)


def call_site_kinds(function_class: FunctionClass, index: int, name: str, param: cst.Param, module=None) -> list[Kind]:
    """The kind of the argument each `.apply(...)` call passes at this position (UNKNOWN for
    what cannot be told, the default's kind where a call omits it). Empty when a call's `*args`
    may cover the position. With the module, what is passed is read in the caller's own scope
    (CallerKinds: `x = torch.randn(...)`, `self.scale` set in `__init__`, the caller's defaults)."""
    kinds = []
    caller = _caller_kinds(module) if module is not None else None
    for call in function_class.apply_calls:
        starred = next((i for i, arg in enumerate(call.args) if arg.star), None)
        positional = [a for a in call.args[:starred] if a.keyword is None]
        if starred is not None and index >= len(positional):
            return []
        keyword = {a.keyword.value: a for a in call.args if a.keyword is not None}
        passed = positional[index] if index < len(positional) else keyword.get(name)
        if passed is not None:
            kinds.append(caller.kind(passed.value, call) if caller is not None else argument_kind(passed.value))
        elif param.default is not None:
            kinds.append(literal_kind(param.default))
        else:
            kinds.append(UNKNOWN)
    return kinds


def _caller_kinds(module: ParsedModule) -> CallerKinds:
    return module.fact(CallerKinds)


def argument_kind(expr: cst.BaseExpression, scope: cst.CSTNode | None = None) -> Kind:
    """What a call site passes, judged from the expression: literals, shapes and sizes,
    `int(...)`/`len(...)`, `torch.*` calls (tensors); with the caller's scope, a name bound there
    only by such expressions."""
    literal = literal_kind(expr)
    if literal is not UNKNOWN:
        return literal
    if isinstance(expr, cst.Attribute) and expr.attr.value in ("shape", "dtype", "device", "ndim"):
        return NON_TENSOR
    if isinstance(expr, cst.Call):
        func = expr.func
        if isinstance(func, cst.Name) and func.value in NON_TENSOR_BUILTINS - _NUMERIC_BUILTINS:
            return NON_TENSOR
        if isinstance(func, cst.Attribute) and func.attr.value in ("size", "dim", "item", "tolist", "numel", "stride"):
            return NON_TENSOR
        head, _, attr = (dotted_name(func) or "").rpartition(".")
        if (
            head == "torch"
            and attr not in NON_TENSOR_TORCH_FUNCTIONS
            and attr not in STATE_TORCH_FUNCTIONS
            and attr[:1].islower()
            and attr not in TUPLE_RETURNING
        ):
            return TENSOR
        if attr == "Parameter" and head in ("nn", "torch.nn"):
            return TENSOR
    if isinstance(expr, cst.Name) and scope is not None:
        nodes = bindings(scope).get(expr.value, [])
        values = [
            n.value
            for n in nodes
            if isinstance(n, cst.Assign) and len(n.targets) == 1 and isinstance(n.targets[0].target, cst.Name)
        ]
        if nodes and len(values) == len(nodes):
            return _combine(argument_kind(value) for value in values)
    return UNKNOWN


def used_as_tensor(method: Method, name: str) -> bool:
    """Whether forward uses the parameter in a way only a tensor supports (see _tensor_used_names)."""
    return name in _tensor_used_names(method)


def _tensor_used_names(method: Method) -> frozenset[str]:
    return _tensor_used_in(method.node)


@per_file
def _tensor_used_in(node: cst.FunctionDef) -> frozenset[str]:
    """Parameters of `method` used as only a tensor can be: a tensor-only method or attribute
    (`x.view_as`, `x.contiguous()`, `x.requires_grad`), the first argument of a `torch.*` op, an
    operand of `@`. Names the function rebinds are left out."""
    rebound = {n for n, nodes in bindings(node).items() if any(not isinstance(b, cst.Param) for b in nodes)}
    return frozenset(names_used_as_tensors(node) - rebound)


@per_file
def names_used_as_tensors(node: cst.FunctionDef) -> frozenset[str]:
    """Every name (parameter, local or loop variable) the function uses as only a tensor can be used."""
    found: set[str] = set()
    for child in walk(node.body, into_functions=False):
        if isinstance(child, cst.Attribute) and isinstance(child.value, cst.Name):
            if child.attr.value in TENSOR_ONLY_METHODS:
                found.add(child.value.value)
        elif (
            isinstance(child, cst.Call)
            and child.args
            and isinstance(child.args[0].value, cst.Name)
            and child.args[0].keyword is None
            and not child.args[0].star
        ):
            func = dotted_name(child.func) or ""
            head, _, attr = func.rpartition(".")
            if (
                head in ("torch", "F", "torch.nn.functional")
                and attr not in TORCH_CONSTRUCTORS
                and attr not in NON_TENSOR_TORCH_FUNCTIONS
            ):
                found.add(child.args[0].value.value)
        elif isinstance(child, cst.BinaryOperation) and isinstance(child.operator, cst.MatrixMultiply):
            found |= {side.value for side in (child.left, child.right) if isinstance(side, cst.Name)}
    return frozenset(found)


def value_kinds(function_class: FunctionClass, method: Method, module=None) -> ValueKinds:
    return ValueKinds(function_class, method, module)


# ---- what an `.apply(...)` call passes, read in the caller's scope ----

# Calls that build a tensor whatever their arguments (qualified names).
TENSOR_CONSTRUCTOR_NAMES = frozenset({"torch.nn.Parameter", "torch.nn.parameter.Parameter", "torch.Tensor"})


class CallerKinds:
    """The kind of what an `.apply(...)` call passes, read in the caller's own scope: literals and
    what folds to one (`dim ** 0.5` with `dim=16`), local and module-level names bound to non-tensors,
    the caller's parameters with a scalar annotation or a literal default, and `self.<attr>` set in the
    caller's class (`self.scale = scale` in `__init__` is a number; `self.weight = nn.Parameter(...)`
    or `register_buffer("weight", ...)` a tensor). UNKNOWN for anything the source does not settle."""

    MAX_DEPTH = 6

    def __init__(self, module: ParsedModule):
        self.module = module
        self._classes: dict[cst.ClassDef, dict[str, list[AttributeValue] | None]] = {}

    def kind(self, expr: cst.BaseExpression, at: cst.CSTNode) -> Kind:
        return self._kind(expr, self.module.enclosing_function(at), 0)

    def literal(self, expr: cst.BaseExpression, at: cst.CSTNode) -> str | None:
        """Source text of the literal `expr` evaluates to, when the module spells it out."""
        return self._fold(expr, self.module.enclosing_function(at), 0, defaults=True)

    def _kind(self, expr: cst.BaseExpression, scope: cst.FunctionDef | None, depth: int) -> Kind:
        kind = argument_kind(expr)
        if kind is not UNKNOWN or depth > self.MAX_DEPTH:
            return kind
        folded = self._fold(expr, scope, depth, defaults=False)
        if folded is not None:
            return NONE if folded == "None" else NON_TENSOR
        if isinstance(expr, cst.Name):
            nodes, where = self._bindings(expr.value, scope)
            return (
                _combine([self._binding_kind(node, expr.value, where, depth + 1) for node in nodes])
                if nodes
                else UNKNOWN
            )
        if isinstance(expr, cst.Attribute):
            found = self._attribute_values(expr, scope)
            if not found:
                return UNKNOWN
            return _combine(
                [value if isinstance(value, Kind) else self._kind(value, where, depth + 1) for value, where in found]
            )
        if isinstance(expr, cst.BinaryOperation):
            kinds = [self._kind(side, scope, depth + 1) for side in (expr.left, expr.right)]
            return TENSOR if TENSOR in kinds else NON_TENSOR if all(k is NON_TENSOR for k in kinds) else UNKNOWN
        if isinstance(expr, cst.UnaryOperation):
            return self._kind(expr.expression, scope, depth + 1)
        if isinstance(expr, cst.IfExp):
            return _combine([self._kind(expr.body, scope, depth + 1), self._kind(expr.orelse, scope, depth + 1)])
        if isinstance(expr, cst.Subscript) and argument_kind(expr.value) is NON_TENSOR and _is_size(expr.value):
            return NON_TENSOR  # `x.shape[0]`, `x.size()[-1]`
        if isinstance(expr, cst.Call):
            name = self.module.qualified_name(expr.func) or ""
            if name in TENSOR_CONSTRUCTOR_NAMES:
                return TENSOR
            head, _, attr = name.rpartition(".")
            if head == "math":
                return NON_TENSOR
            if (
                head in TENSOR_FUNCTION_MODULES
                and attr[:1].islower()
                and attr not in NON_TENSOR_TORCH_FUNCTIONS
                and attr not in TUPLE_RETURNING
            ):
                return TENSOR
        return UNKNOWN

    def _bindings(self, name: str, scope: cst.FunctionDef | None) -> tuple[list[cst.CSTNode], cst.FunctionDef | None]:
        if scope is not None and name in bindings(scope):
            return bindings(scope)[name], scope
        return bindings(self.module.tree).get(name, []), None

    def _binding_kind(self, node: cst.CSTNode, name: str, scope, depth: int) -> Kind:
        if isinstance(node, cst.Param):
            annotated = annotation_kind(node.annotation)
            if annotated is not UNKNOWN:
                return annotated
            if node.annotation is not None and "Tensor" in code_of(node.annotation.annotation):
                return UNKNOWN  # `offsets: Union[int, Tensor] = 0`: the default is one of two kinds
            return NON_TENSOR if node.default is not None and literal_kind(node.default) is NON_TENSOR else UNKNOWN
        if isinstance(node, cst.Assign) and all(isinstance(t.target, cst.Name) for t in node.targets):
            return self._kind(node.value, scope, depth)
        if isinstance(node, cst.AnnAssign):
            annotated = annotation_kind(node.annotation)
            return annotated if annotated is not UNKNOWN or node.value is None else self._kind(node.value, scope, depth)
        if isinstance(node, cst.AugAssign):
            kind = self._kind(node.value, scope, depth)
            return kind if kind is NON_TENSOR else UNKNOWN
        return UNKNOWN

    def _attribute_values(self, expr: cst.Attribute, scope: cst.FunctionDef | None) -> list[AttributeValue]:
        """Every value the caller's class gives `self.<attr>`, each with the method it is written in
        (a Kind stands for `register_buffer`/`register_parameter`); empty when it is not `self.<attr>`
        of a method, or the class never sets it (inherited, a property, set from outside)."""
        if scope is None or not isinstance(expr.value, cst.Name) or not scope.params.params:
            return []
        if scope.params.params[0].name.value != expr.value.value:
            return []
        block = self.module.parents.get(scope)
        class_def = self.module.parents.get(block) if block is not None else None
        if not isinstance(class_def, cst.ClassDef):
            return []
        return self._class_attributes(class_def).get(expr.attr.value) or []

    def _class_attributes(self, class_def: cst.ClassDef) -> dict[str, list[AttributeValue] | None]:
        """attr -> what the class's methods and body assign to `self.<attr>` (None for a method or
        property of that name), read once per class."""
        known = self._classes.get(class_def)
        if known is not None:
            return known
        found: dict[str, list[AttributeValue] | None] = {}

        def add(attr: str, value: Kind | cst.BaseExpression, method: cst.FunctionDef | None) -> None:
            values = found.setdefault(attr, [])
            if values is not None:  # None: a method or property of that name
                values.append((value, method))

        for statement in class_def.body.body:
            if isinstance(statement, cst.FunctionDef):
                found[statement.name.value] = None  # a method or property
                for attr, value, method in self._self_writes(statement):
                    add(attr, value, method)
            elif isinstance(statement, cst.SimpleStatementLine):
                for small in statement.body:
                    if isinstance(small, cst.Assign):
                        for target in small.targets:
                            if isinstance(target.target, cst.Name):
                                add(target.target.value, small.value, None)
        self._classes[class_def] = found
        return found

    @staticmethod
    def _self_writes(
        method: cst.FunctionDef,
    ) -> Iterator[tuple[str, Kind | cst.BaseExpression, cst.FunctionDef | None]]:
        """(attr, value, method) for each `self.<attr> = value` in the method; value is TENSOR for
        `register_buffer`/`register_parameter` and UNKNOWN for a tuple unpacking."""
        params = method.params.params
        if not params:
            return
        self_name = params[0].name.value
        for node in walk(method.body, into_functions=False):
            targets = []
            if isinstance(node, cst.Assign):
                targets = [(t.target, node.value) for t in node.targets]
            elif isinstance(node, (cst.AnnAssign, cst.AugAssign)) and node.value is not None:
                targets = [(node.target, node.value)]
            elif (
                isinstance(node, cst.Call)
                and isinstance(node.func, cst.Attribute)
                and node.func.attr.value in ("register_buffer", "register_parameter")
            ):
                name = string_value(node.args[0].value) if node.args else None
                if name:
                    yield name, TENSOR, None
            for target, value in targets:
                if (
                    isinstance(target, cst.Attribute)
                    and isinstance(target.value, cst.Name)
                    and target.value.value == self_name
                ):
                    yield target.attr.value, value, method
                elif isinstance(target, cst.Tuple):
                    for element in target.elements:
                        if isinstance(element.value, cst.Attribute):
                            yield element.value.attr.value, UNKNOWN, None

    def _fold(self, expr: cst.BaseExpression, scope: cst.FunctionDef | None, depth: int, defaults: bool) -> str | None:
        """The constant `expr` evaluates to; with `defaults`, parameters stand for their default (a
        value the harness may pass; not what every caller passes)."""
        if depth > self.MAX_DEPTH:
            return None
        if isinstance(expr, _LITERAL_NODES) or (isinstance(expr, cst.Name) and expr.value in ("None", "True", "False")):
            text = code_of(expr).strip()
            if _evaluate(text) is not _NOT_CONSTANT:
                return text
        if isinstance(expr, cst.Name):
            nodes, where = self._bindings(expr.value, scope)
            if len(nodes) != 1:
                return None
            node = nodes[0]
            if isinstance(node, cst.Param):
                return (
                    self._fold(node.default, where, depth + 1, defaults)
                    if defaults and node.default is not None
                    else None
                )
            if isinstance(node, cst.Assign) and all(isinstance(t.target, cst.Name) for t in node.targets):
                return self._fold(node.value, where, depth + 1, defaults)
            return None
        if isinstance(expr, cst.Attribute):
            found = self._attribute_values(expr, scope)
            if len(found) != 1 or isinstance(found[0][0], Kind):
                return None
            return self._fold(found[0][0], found[0][1], depth + 1, defaults)
        parts: list[cst.BaseExpression]
        if isinstance(expr, cst.BinaryOperation):
            parts = [expr.left, expr.right]
        elif isinstance(expr, cst.UnaryOperation):
            parts = [expr.expression]
        elif isinstance(expr, cst.Subscript) and len(expr.slice) == 1 and isinstance(expr.slice[0].slice, cst.Index):
            parts = [expr.value, expr.slice[0].slice.value]
        elif (
            isinstance(expr, cst.Call)
            and isinstance(expr.func, cst.Name)
            and expr.func.value in _FOLDABLE_CALLS
            and len(expr.args) == 1
        ):
            parts = [expr.args[0].value]
        else:
            return None
        folded = [self._fold(part, scope, depth + 1, defaults) for part in parts]
        if any(f is None for f in folded):
            return None
        if isinstance(expr, cst.BinaryOperation):
            text = f"({folded[0]}) {code_of(expr.operator).strip()} ({folded[1]})"
        elif isinstance(expr, cst.UnaryOperation):
            text = f"{code_of(expr.operator).strip()} ({folded[0]})"
        elif isinstance(expr, cst.Subscript):
            text = f"({folded[0]})[{folded[1]}]"
        else:
            assert isinstance(expr, cst.Call) and isinstance(expr.func, cst.Name)  # the last form the parts allow
            text = f"{expr.func.value}({folded[0]})"
        value = _evaluate(text)
        return repr(value) if value is not _NOT_CONSTANT else None


def _is_size(expr: cst.BaseExpression) -> bool:
    """`x.shape`, `x.size()`, `x.stride()`: a tuple of ints, whatever `x` is."""
    if isinstance(expr, cst.Attribute):
        return expr.attr.value == "shape"
    return (
        isinstance(expr, cst.Call)
        and isinstance(expr.func, cst.Attribute)
        and expr.func.attr.value in ("size", "stride")
    )


_FOLDABLE_CALLS = {"float": float, "int": int, "bool": bool, "str": str, "abs": abs, "round": round}
_CONSTANT_NODES = (
    ast.Expression,
    ast.Constant,
    ast.Tuple,
    ast.List,
    ast.BinOp,
    ast.UnaryOp,
    ast.Subscript,
    ast.Call,
    ast.Name,
    ast.Load,
    ast.operator,
    ast.unaryop,
    ast.Slice,
)
_NOT_CONSTANT = object()
# Nodes that may be a literal as written (the rest are folded from their parts).
_LITERAL_NODES = (cst.BaseNumber, cst.BaseString, cst.UnaryOperation, cst.Tuple, cst.List)


def _evaluate(text: str):
    """The value of a constant expression (literals, arithmetic, subscripts, `float(...)`), else _NOT_CONSTANT."""
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return _NOT_CONSTANT
    for node in ast.walk(tree):
        if not isinstance(node, _CONSTANT_NODES) or (isinstance(node, ast.Name) and node.id not in _FOLDABLE_CALLS):
            return _NOT_CONSTANT
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            exponent = node.right.value if isinstance(node.right, ast.Constant) else None
            if not isinstance(exponent, (int, float)) or abs(exponent) > 64:
                return _NOT_CONSTANT
    try:
        value = eval(compile(tree, "<constant>", "eval"), {"__builtins__": {}}, dict(_FOLDABLE_CALLS))  # noqa: S307 - only constants, checked above
    except Exception:  # noqa: BLE001 - 1 / 0, "a" * "b": not a constant we can use
        return _NOT_CONSTANT
    return value if value is None or isinstance(value, (int, float, str, bool, tuple, list)) else _NOT_CONSTANT


__all__ = [
    "Kind",
    "TENSOR",
    "NON_TENSOR",
    "NONE",
    "UNKNOWN",
    "ValueKinds",
    "value_kinds",
    "literal_kind",
    "annotation_kind",
    "argument_kind",
    "parameter_kind",
    "call_site_kinds",
    "used_as_tensor",
    "names_used_as_tensors",
    "CallerKinds",
]

"""The torch vocabulary every rule reasons with: ops, methods, casts and dtypes, each named once.

A rule that needs "a cast to an integer type" or "an op whose result is an index" imports it from here,
so that adding `torch.uint16` or `argwhere` teaches every rule at once. Names are bare (a method name,
or the last part of `torch.<name>`); where a set holds both spellings it says so.

How it is organised: one section per meaning, each a few frozensets with a comment saying what their names
have in common: ops that stop the gradient; casts; dtypes; ops by the kind of tensor they return (bool,
index, integer); views and aliases; reductions; tensor factories; modules and autograd entry points;
metadata. A wider set is the union of narrower ones (`CASTS`, `COMPARISON_METHODS`, `VIEW_METHODS`,
`FRESH_TENSOR_FACTORIES`), never a copy, so a name added to a narrow set reaches every union.

What stays in a rule or fact module: a set only it uses that says which ops one property survives (a value,
a dtype, a shape, an index: agl004 `INDEX_KEEPING_METHODS`, agl021 `SHAPE_KEEPING`, agl022
`DTYPE_KEEPING_METHODS`, agl023 `VALUE_PRESERVING`, reachability `DTYPE_PRESERVING`, gradient_reach
`CARRYING_METHODS`), tables keyed by op (argument positions, derivative domains), and the regexes over the
names users choose (each is one rule's own heuristic). Such a set moves here, named by what its names have in
common, when a second module needs it.
"""

from __future__ import annotations

# --- Ops that stop the gradient ---

# Ops whose derivative is zero almost everywhere (or undefined): what they feed stops training.
ZERO_GRADIENT_OPS = frozenset({"sign", "sgn", "round", "floor", "ceil", "trunc", "fix", "heaviside"})

# --- Casts ---

# Tensor methods that cast to an integer or bool dtype (`x.long()`): the result has no gradient.
INTEGER_CASTS = frozenset({"int", "long", "short", "byte", "char", "bool"})
# Tensor methods that cast to a float dtype, and those whose target dtype is an argument.
FLOAT_CASTS = frozenset({"float", "half", "double", "bfloat16"})
DTYPE_CASTS = frozenset({"to", "type", "type_as"})
# Every cast that may keep a float value (the dtype argument of `.to`/`.type` decides).
CASTS = FLOAT_CASTS | DTYPE_CASTS
# Tensor methods that cast to a half-precision float: from float64 they round away all but 11 (8) bits.
HALF_PRECISION_CASTS = frozenset({"half", "bfloat16"})
# dtypes a `.to(...)`/`.type(...)` rounds a float64 value to: the integers, bool and the 16- and 8-bit floats.
ROUNDING_DTYPES = frozenset(
    {"int8", "uint8", "int16", "short", "int32", "int", "int64", "long", "bool", "float16", "half", "bfloat16"}
)

# --- Dtypes ---

# `torch.<dtype>` names of integer and bool dtypes, and the legacy integer tensor types.
INTEGER_DTYPES = frozenset(
    {"int", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "long", "short", "bool"}
)
INTEGER_TENSOR_TYPES = frozenset({"IntTensor", "LongTensor", "ShortTensor", "ByteTensor", "CharTensor", "BoolTensor"})
# What `.to(X)`/`.type(X)` names when it makes an integer tensor.
INTEGER_DTYPE_NAMES = INTEGER_DTYPES | INTEGER_TENSOR_TYPES

# --- Ops by the kind of tensor they return ---

# Comparisons as methods/functions (`x.gt(0)`, `torch.lt(x, y)`), by direction; each gives a bool mask.
LESS_METHODS = frozenset({"lt", "le", "less", "less_equal"})
GREATER_METHODS = frozenset({"gt", "ge", "greater", "greater_equal"})
ORDERING_METHODS = LESS_METHODS | GREATER_METHODS
EQUALITY_METHODS = frozenset({"eq", "ne"})
COMPARISON_METHODS = ORDERING_METHODS | EQUALITY_METHODS
# Every op giving a bool tensor: the comparisons and these.
BOOL_RESULT_OPS = COMPARISON_METHODS | frozenset(
    {
        "isclose",
        "isnan",
        "isinf",
        "isfinite",
        "isin",
        "signbit",
        "logical_and",
        "logical_or",
        "logical_not",
        "logical_xor",
    }
)
# Ops whose result is positions in their input (or in a sorted sequence).
POSITION_RESULT_OPS = frozenset({"argmax", "argmin", "argsort", "argwhere", "nonzero", "searchsorted", "bucketize"})
# Ops whose result is integer indices or counts.
INDEX_RESULT_OPS = POSITION_RESULT_OPS | frozenset(
    {
        "multinomial",
        "randperm",
        "randint",
        "bincount",
        "count_nonzero",
        "unique_consecutive",
    }
)
# Every method or torch function whose result is an integer or bool tensor.
INTEGER_RESULT_OPS = INTEGER_CASTS | BOOL_RESULT_OPS | INDEX_RESULT_OPS

# --- Views and aliases ---

# Views that reorder the dimensions: a gradient for the result has them in the new order.
TRANSPOSE_METHODS = frozenset({"t", "transpose", "permute", "movedim", "moveaxis", "swapaxes", "swapdims"})
TRANSPOSE_ATTRIBUTES = frozenset({"T", "mT", "H", "mH"})
# Views to the shape their arguments give.
RESHAPE_METHODS = frozenset({"view", "reshape", "flatten"})
# Methods that return their receiver or a view of it (writing into the result writes the receiver).
VIEW_METHODS = (
    TRANSPOSE_METHODS
    | RESHAPE_METHODS
    | frozenset(
        {
            "view_as",
            "reshape_as",
            "expand",
            "expand_as",
            "contiguous",
            "squeeze",
            "unsqueeze",
            "unflatten",
            "narrow",
            "select",
            "diagonal",
            "as_strided",
            "unfold",
            "requires_grad_",
        }
    )
)
VIEW_ATTRIBUTES = TRANSPOSE_ATTRIBUTES | frozenset({"real", "imag"})
# Methods whose result may share the receiver's storage: the views, and the casts, moves and
# metadata changes that return the receiver itself when there is nothing to do.
ALIAS_METHODS = VIEW_METHODS | frozenset(
    {
        "detach",
        "to",
        "type",
        "type_as",
        "float",
        "double",
        "half",
        "bfloat16",
        "cpu",
        "cuda",
        "view_as_real",
        "view_as_complex",
        "align_as",
        "align_to",
        "rename",
        "refine_names",
        "resolve_conj",
        "resolve_neg",
        "conj",
        "adjoint",
        "positive",
        "__getitem__",
    }
)
ALIAS_ATTRIBUTES = VIEW_ATTRIBUTES | {"data"}

# --- Reductions ---

# Ops that reduce over dimensions (all of them unless `dim` is given); `max`/`min`/`median` also have other forms.
REDUCTIONS = frozenset(
    {"mean", "sum", "norm", "amax", "amin", "max", "min", "std", "var", "prod", "median", "logsumexp"}
)
# The same reductions skipping NaN, and `torch.linalg.vector_norm`.
NAN_SKIPPING_REDUCTIONS = frozenset({"nansum", "nanmean", "nanmedian"})
EVERY_REDUCTION = REDUCTIONS | NAN_SKIPPING_REDUCTIONS | frozenset({"vector_norm"})

# --- Tensor factories ---

# `torch.<name>` functions that make a new tensor from a shape, copied data or a random draw: nothing flows
# through them.
SHAPE_FACTORIES = frozenset({"empty", "zeros", "ones", "full", "arange", "linspace", "logspace", "eye"})
LIKE_FACTORIES = frozenset(
    {"empty_like", "zeros_like", "ones_like", "full_like", "rand_like", "randn_like", "randint_like"}
)
DATA_FACTORIES = frozenset({"tensor", "as_tensor", "from_numpy"})
RANDOM_FACTORIES = frozenset({"rand", "randn", "randint", "randperm", "bernoulli", "multinomial", "normal", "poisson"})
FRESH_TENSOR_FACTORIES = SHAPE_FACTORIES | LIKE_FACTORIES | DATA_FACTORIES | RANDOM_FACTORIES

# --- Modules and autograd entry points ---

# Modules whose public functions take and return tensors (`torch.exp`, `F.relu`, `torch.linalg.norm`).
TENSOR_FUNCTION_MODULES = ("torch", "torch.nn.functional", "torch.special", "torch.linalg", "torch.fft")
# Qualified names of the calls that run a backward pass.
AUTOGRAD_GRADIENT_CALLS = frozenset({"torch.autograd.grad", "torch.autograd.backward"})
# Qualified names of torch's Function base classes: a class deriving from one (or from such a class of
# the same module) is a custom Function.
TORCH_FUNCTION_BASES = frozenset(
    {"torch.autograd.Function", "torch.autograd.function.Function", "torch.autograd.function.InplaceFunction"}
)

# --- Metadata ---

# Tensor attributes that describe a tensor rather than hold its values.
METADATA_ATTRIBUTES = frozenset(
    {"shape", "dtype", "device", "ndim", "is_cuda", "requires_grad", "layout", "is_sparse", "is_quantized"}
)

"""The torch vocabulary every rule reasons with: ops, methods, casts and dtypes, each named once.

A rule that needs "a cast to an integer type" or "an op whose result is an index" imports it from here,
so that adding `torch.uint16` or `argwhere` teaches every rule at once. Names are bare (a method name,
or the last part of `torch.<name>`); where a set holds both spellings it says so.

How it is organised: one section per meaning, each a few frozensets with a comment saying what their names
have in common: ops that stop the gradient; casts; dtypes; ops by the kind of tensor they return (bool,
index, integer); views and aliases; metadata. A wider set is the union of narrower ones (`CASTS`,
`INTEGER_RESULT_OPS`, `ALIAS_METHODS`), never a copy, so a name added to a narrow set reaches every union.
Not here yet: the per-rule and per-fact lists that repeat some of these names, and the heuristics on the
names users choose; they move here when a second user needs them (issue 15).
"""

from __future__ import annotations

import libcst as cst

from .core.syntax import dotted_name

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

# --- Dtypes ---

# `torch.<dtype>` names of integer and bool dtypes, and the legacy integer tensor types.
INTEGER_DTYPES = frozenset(
    {"int", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "long", "short", "bool"}
)
INTEGER_TENSOR_TYPES = frozenset({"IntTensor", "LongTensor", "ShortTensor", "ByteTensor", "CharTensor", "BoolTensor"})
# What `.to(X)`/`.type(X)` names when it makes an integer tensor.
INTEGER_DTYPE_NAMES = INTEGER_DTYPES | INTEGER_TENSOR_TYPES

# --- Ops by the kind of tensor they return ---

# Ordering comparisons as methods/functions (`x.gt(0)`, `torch.lt(x, y)`); they give a bool mask.
ORDERING_METHODS = frozenset({"gt", "ge", "lt", "le", "greater", "greater_equal", "less", "less_equal"})
# Other ops giving a bool tensor.
BOOL_RESULT_OPS = ORDERING_METHODS | frozenset(
    {
        "eq",
        "ne",
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
# Ops whose result is integer indices or counts.
INDEX_RESULT_OPS = frozenset(
    {
        "argmax",
        "argmin",
        "argsort",
        "argwhere",
        "nonzero",
        "searchsorted",
        "bucketize",
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

# Methods that return their receiver or a view of it (writing into the result writes the receiver).
VIEW_METHODS = frozenset(
    {
        "view",
        "view_as",
        "reshape",
        "reshape_as",
        "expand",
        "expand_as",
        "contiguous",
        "t",
        "transpose",
        "permute",
        "squeeze",
        "unsqueeze",
        "flatten",
        "unflatten",
        "narrow",
        "select",
        "diagonal",
        "as_strided",
        "movedim",
        "moveaxis",
        "swapaxes",
        "swapdims",
        "unfold",
        "requires_grad_",
    }
)
VIEW_ATTRIBUTES = frozenset({"T", "mT", "H", "mH", "real", "imag"})
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

# --- Metadata ---

# Tensor attributes that describe a tensor rather than hold its values.
METADATA_ATTRIBUTES = frozenset(
    {"shape", "dtype", "device", "ndim", "is_cuda", "requires_grad", "layout", "is_sparse", "is_quantized"}
)


def is_integer_dtype(expr: cst.BaseExpression) -> bool:
    """A dtype argument that makes an integer or bool tensor: `torch.int32`, `torch.long`,
    `torch.bool`, `torch.LongTensor`, and Python's `int`/`bool` as torch reads them (`dtype=int`)."""
    name = dotted_name(expr) or ""
    head, _, last = name.rpartition(".")
    return (head == "torch" and last in INTEGER_DTYPE_NAMES) or name in ("int", "bool")

"""In-place writes to tensors, and which tracked tensor each one reaches.

Two layers. `statement_writes` lists what one statement writes in place, from its syntax alone:
`t.mul_(s)`, `torch.relu_(t)`, `F.relu(t, inplace=True)`, `t += s`, `t[i] = v`, `t.data = v`,
`torch.add(a, b, out=t)`, and the writes to a numpy array (`a += 1` on `a = t.numpy()`).
`AliasFlow` follows a function body statement by statement, knowing which names still refer to the
tracked tensors (a parameter, what `t.view(...)`, `t.data`, `t.contiguous()` or `t.numpy()` give back)
and which were rebound to new tensors (`t = t.clone()`, `t = t * s`), and reports the writes that reach
a tracked tensor.

Calls that may return their receiver unchanged (`contiguous`, `to`, `float`, `reshape`, `cpu`) count as
aliases: when they do, a later write reaches the original.

`CallTracking` lets a caller-side rule start tracking at a call (the result and the arguments of
`Fn.apply(...)`, AGL019/AGL020), add writes this module cannot see from syntax (a module built with
`inplace=True`) and stop at a call (`loss.backward()`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast, overload

import libcst as cst

from ..core.syntax import children, code_of, dotted_name, shortened
from ..torch_api import ALIAS_ATTRIBUTES, ALIAS_METHODS

# Tensor methods ending in `_` that change a flag or metadata, not the data.
NOT_DATA_WRITES = frozenset({"requires_grad_", "share_memory_", "detach_", "rename_", "retain_grad_"})
# Tensor methods and attributes whose result is the tensor itself or a view of its memory (or may be).
# Methods returning a tuple of views.
SPLIT_METHODS = frozenset(
    {"chunk", "split", "unbind", "tensor_split", "hsplit", "vsplit", "dsplit", "split_with_sizes"}
)
# `torch.<fn>(t, ...)` forms of the above (the first argument is the tensor).
ALIAS_FUNCTIONS = frozenset(
    {
        f"torch.{name}"
        for name in (
            "reshape",
            "flatten",
            "squeeze",
            "unsqueeze",
            "transpose",
            "t",
            "permute",
            "narrow",
            "select",
            "movedim",
            "moveaxis",
            "swapaxes",
            "swapdims",
            "diagonal",
            "as_strided",
            "view_as_real",
            "view_as_complex",
            "detach",
            "as_tensor",
            "asarray",
            "from_numpy",
            "adjoint",
            "conj",
            "positive",
        )
    }
    | {"numpy.asarray", "numpy.asanyarray"}
)
SPLIT_FUNCTIONS = frozenset(f"torch.{name}" for name in SPLIT_METHODS)
# Calls that write into their first argument without an `_` in their name.
WRITING_FUNCTIONS = frozenset(
    {
        "torch.distributed.all_reduce",
        "torch.distributed.broadcast",
        "torch.distributed.reduce",
        "torch.distributed.recv",
        "numpy.copyto",
        "numpy.put",
        "numpy.place",
        "numpy.putmask",
    }
)
# ndarray methods that write in place (on a tensor, `t.sort()` and `t.put(...)` return new tensors).
NUMPY_WRITE_METHODS = frozenset({"fill", "sort", "put", "itemset", "partition", "resize"})
# Collective communication calls write the tensor they are given (its first argument) in place,
# whatever wraps torch.distributed (`deepspeed.comm`, a project's `dist` module): named by the collective.
COLLECTIVE_WRITES = frozenset(
    {"all_reduce", "inference_all_reduce", "all_reduce_coalesced", "allreduce", "broadcast", "recv", "irecv"}
)
# Module names a collective is called through: its qualified name has one of these parts.
COMMUNICATION_MODULES = frozenset(
    {"distributed", "dist", "comm", "communication", "collectives", "mpu", "parallel_state"}
)

TENSOR, NUMPY, TENSORS = "tensor", "numpy", "tensors"


@dataclass(frozen=True)
class Alias:
    """What a name or expression refers to: the tracked `root`, as a tensor sharing its memory
    (`tensor`), a numpy array sharing it (`numpy`), or a tuple/list of such tensors (`tensors`)."""

    root: str
    kind: str = TENSOR
    # Reached through subscripts of the root (`args[0]`, `x[0]`): only a tensor if the root holds tensors.
    indexed: bool = False


@dataclass(frozen=True)
class InplaceWrite:
    node: cst.CSTNode  # what a finding points at: the call, the assigned target, the `out=` argument
    target: cst.BaseExpression  # the expression whose memory is written
    statement: cst.CSTNode  # the call, argument or statement to quote in messages
    # `t += v` / `t[i] = v` on a bare name: an in-place write only if the name holds a tensor or array.
    needs_array: bool = False
    # `xs[i] += v`: writes the element in place, also when `xs` is a list of tensors.
    augmented: bool = False
    # `a.sort()`, `a.fill(v)`: in place only on a numpy array (the tensor methods return new tensors).
    numpy_only: bool = False

    @property
    def text(self) -> str:
        """The write as written, shortened, for messages."""
        return shortened(code_of(self.statement), 50)


def is_inplace_method(name: str) -> bool:
    """`mul_`, `masked_fill_`, `copy_`, `__iadd__`, `__setitem__`: a tensor method that writes the receiver."""
    if name.startswith("__"):
        return name == "__setitem__" or (
            name.startswith("__i")
            and name.endswith("__")
            and name not in ("__init__", "__iter__", "__index__", "__int__", "__invert__")
        )
    return name.endswith("_") and not name.startswith("_") and name not in NOT_DATA_WRITES


def is_collective_write(name: str, qualified: str) -> bool:
    """`dist.all_reduce(t)`, `comm.broadcast(t, src)`: a collective through a communication module."""
    if name not in COLLECTIVE_WRITES:
        return False
    modules = qualified.split(".")[:-1]
    return any(part in COMMUNICATION_MODULES or part.endswith(("_comm", "_dist")) for part in modules)


Qualify = Callable[[cst.BaseExpression], "str | None"]


def call_writes(call: cst.Call, qualify: Qualify) -> Iterator[InplaceWrite]:
    """The expressions one call writes in place (not looking inside its arguments)."""
    func = call.func
    positional = [arg for arg in call.args if arg.keyword is None and not arg.star]
    if isinstance(func, cst.Attribute):
        name = func.attr.value
        qualified = qualify(func) or ""
        if qualified.startswith("torch.") or qualified.startswith("numpy."):
            first = positional[0].value if positional else None
            last = qualified.rsplit(".", 1)[-1]
            if first is not None and (
                qualified in WRITING_FUNCTIONS or (is_inplace_method(last) and not last.startswith("__"))
            ):
                yield InplaceWrite(call, first, call)
        elif is_collective_write(name, qualified):
            if positional:
                yield InplaceWrite(call, positional[0].value, call)
        elif is_inplace_method(name):
            yield InplaceWrite(call, func.value, call)
        elif name in NUMPY_WRITE_METHODS:
            yield InplaceWrite(call, func.value, call, numpy_only=True)
    elif isinstance(func, cst.Name) and positional:
        # `from torch.distributed import all_reduce`, `from torch import relu_`: an imported function.
        qualified = qualify(func) or ""
        last = qualified.rsplit(".", 1)[-1]
        if "." in qualified and (
            qualified in WRITING_FUNCTIONS
            or is_collective_write(last, qualified)
            or (qualified.startswith("torch.") and is_inplace_method(last) and not last.startswith("__"))
        ):
            yield InplaceWrite(call, positional[0].value, call)
    for arg in call.args:
        if arg.keyword is None:
            continue
        keyword = arg.keyword.value
        if keyword == "out":
            for element in arg.value.elements if isinstance(arg.value, (cst.Tuple, cst.List)) else [arg]:
                yield InplaceWrite(element, element.value, arg)
        elif keyword == "inplace" and isinstance(arg.value, cst.Name) and arg.value.value == "True" and positional:
            yield InplaceWrite(call, positional[0].value, call)
    # `F.relu(t, True)`, `F.leaky_relu(t, 0.2, True)`: `inplace` passed by position.
    qualified = qualify(func) or ""
    if qualified.startswith("torch.nn.functional.") and inplace_by_position(
        call, FUNCTIONAL_INPLACE_POSITION.get(qualified[20:])
    ):
        yield InplaceWrite(call, positional[0].value, call)


# Where `inplace` sits among the positional parameters of torch.nn.functional's activations and dropouts
# (after `input`), and of the `torch.nn` modules' constructors (checked against torch 2.13's signatures).
FUNCTIONAL_INPLACE_POSITION = {
    "relu": 1,
    "relu6": 1,
    "selu": 1,
    "silu": 1,
    "mish": 1,
    "hardsigmoid": 1,
    "hardswish": 1,
    "elu": 2,
    "celu": 2,
    "leaky_relu": 2,
    "hardtanh": 3,
    "threshold": 3,
    "rrelu": 4,
    "dropout": 3,
    "alpha_dropout": 3,
    "dropout1d": 3,
    "dropout2d": 3,
    "dropout3d": 3,
    "feature_alpha_dropout": 3,
}
MODULE_INPLACE_POSITION = {
    "ReLU": 0,
    "ReLU6": 0,
    "SELU": 0,
    "SiLU": 0,
    "Mish": 0,
    "Hardsigmoid": 0,
    "Hardswish": 0,
    "ELU": 1,
    "CELU": 1,
    "LeakyReLU": 1,
    "Hardtanh": 2,
    "Threshold": 2,
    "RReLU": 2,
    "Dropout": 1,
    "AlphaDropout": 1,
    "Dropout1d": 1,
    "Dropout2d": 1,
    "Dropout3d": 1,
    "FeatureAlphaDropout": 1,
}


def inplace_by_position(call: cst.Call, position: int | None) -> bool:
    """The literal `True` passed as the call's positional argument `position` (where `inplace` sits)."""
    if position is None or any(arg.star for arg in call.args):
        return False
    positional = [arg.value for arg in call.args if arg.keyword is None]
    if position >= len(positional):
        return False
    value = positional[position]
    return isinstance(value, cst.Name) and value.value == "True"


def _target_writes(target: cst.BaseExpression, statement: cst.CSTNode, augmented: bool) -> Iterator[InplaceWrite]:
    if isinstance(target, cst.Subscript):
        yield InplaceWrite(target, target.value, statement, augmented=augmented)
    elif isinstance(target, cst.Attribute) and target.attr.value == "data":
        yield InplaceWrite(target, target.value, statement)
    elif isinstance(target, cst.Name) and augmented:
        yield InplaceWrite(target, target, statement, needs_array=True)
    elif isinstance(target, (cst.Tuple, cst.List)) and not augmented:
        for element in target.elements:
            yield from _target_writes(element.value, statement, augmented)


def statement_writes(statement: cst.BaseSmallStatement) -> Iterator[InplaceWrite]:
    """Writes made by the statement itself (assignment targets); calls inside it come from `call_writes`."""
    if isinstance(statement, cst.AugAssign):
        yield from _target_writes(statement.target, statement, augmented=True)
    elif isinstance(statement, cst.Assign):
        for target in statement.targets:
            yield from _target_writes(target.target, statement, augmented=False)
    elif isinstance(statement, cst.AnnAssign) and statement.value is not None:
        yield from _target_writes(statement.target, statement, augmented=False)


Env = dict[str, Alias]


class CallTracking:
    """Hooks for following tensors that calls produce, in the function that makes them. The base class
    tracks nothing; rules override what they need."""

    def result(self, call: cst.Call) -> Alias | None:
        """What the call's value refers to, when it starts tracking (`Fn.apply(x)` -> its output)."""
        return None

    def tracked_after(self, call: cst.Call) -> Env:
        """Names that refer to tracked tensors once the call has run (the arguments passed to it)."""
        return {}

    def unpacked(self, call: cst.Call, count: int) -> list[Alias | None] | None:
        """For `a, b = call(...)`: what each unpacked name refers to, when the call starts tracking."""
        return None

    def writes(self, call: cst.Call) -> Iterator[InplaceWrite]:
        """In-place writes made by the call beyond those `call_writes` reads from its syntax."""
        return iter(())

    def stops(self, call: cst.Call) -> bool:
        """Whether nothing tracked matters once the call has run (a backward that consumed the graph)."""
        return False


_TERMINATING = (cst.Return, cst.Raise, cst.Continue, cst.Break)
_COMPREHENSIONS = (cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp)


class AliasFlow:
    """Follows a function body in order, with the names that refer to tracked tensors.

    Branches merge by union (a name that may still refer to a tracked tensor does), loops run their
    body twice, nested functions and classes are not entered. `found` lists every write reaching a
    tracked tensor as (write, alias), in the order met.
    """

    def __init__(
        self, function: cst.FunctionDef | cst.Module, roots: Env, qualify: Qualify, tracking: CallTracking | None = None
    ):
        self.qualify = qualify
        self.tracking = tracking
        self.found: list[tuple[InplaceWrite, Alias]] = []
        self._seen: set[int] = set()
        body = cst.IndentedBlock(body=function.body) if isinstance(function, cst.Module) else function.body
        self._block(body, dict(roots))

    # -- statements ---------------------------------------------------------------------------

    def _block(self, block: cst.BaseSuite, env: Env | None) -> Env | None:
        if env is None:
            return None
        if isinstance(block, cst.SimpleStatementSuite):
            return self._smalls(block.body, env)
        for statement in block.body:
            env = self._statement(statement, env)
            if env is None:
                return None
        return env

    def _smalls(self, smalls, env: Env) -> Env | None:
        for small in smalls:
            self._small(small, env)
            if isinstance(small, _TERMINATING):
                return None
        return env

    def _statement(self, statement: cst.CSTNode, env: Env) -> Env | None:
        if isinstance(statement, cst.SimpleStatementLine):
            return self._smalls(statement.body, env)
        if isinstance(statement, cst.If):
            self._expression(statement.test, env)
            taken = self._block(statement.body, dict(env))
            other = self._orelse(statement.orelse, dict(env))
            return _merge(taken, other)
        if isinstance(statement, (cst.For, cst.While)):
            if isinstance(statement, cst.For):
                self._expression(statement.iter, env)
            entry = dict(env)
            current: Env = dict(env)
            for _ in range(2):  # a second pass sees what the first bound (loop-carried aliases)
                if isinstance(statement, cst.For):
                    self._bind_loop(statement.target, statement.iter, current)
                else:
                    self._expression(statement.test, current)
                after = self._block(statement.body, dict(current))
                current = _merge(current, after) or dict(entry)
            exit_env = _merge(entry, current)
            return _merge(exit_env, self._orelse(statement.orelse, dict(exit_env))) if statement.orelse else exit_env
        if isinstance(statement, (cst.Try, cst.TryStar)):
            after_body = self._block(statement.body, dict(env))
            # A handler may start anywhere in the body: with what held before it or after it.
            handlers_entry = _merge(dict(env), after_body)
            outcome = (
                self._orelse(statement.orelse, after_body)
                if statement.orelse and after_body is not None
                else after_body
            )
            for handler in statement.handlers:
                entry = dict(handlers_entry)
                if handler.name is not None:
                    for name in _names(handler.name.name):
                        entry.pop(name, None)
                outcome = _merge(outcome, self._block(handler.body, entry))
            if statement.finalbody is not None:
                final = self._block(statement.finalbody.body, dict(outcome if outcome is not None else handlers_entry))
                outcome = final if outcome is not None else None
            return outcome
        if isinstance(statement, cst.With):
            for item in statement.items:
                self._expression(item.item, env)
                if item.asname is not None:
                    for name in _names(item.asname.name):
                        env.pop(name, None)
            return self._block(statement.body, env)
        if isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
            env.pop(statement.name.value, None)
            return env
        if isinstance(statement, cst.Match):
            self._expression(statement.subject, env)
            outcome = None
            for case in statement.cases:
                outcome = _merge(outcome, self._block(case.body, dict(env)))
            return _merge(outcome, env)
        return env

    def _orelse(self, orelse, env: Env) -> Env | None:
        if orelse is None:
            return env
        if isinstance(orelse, cst.If):
            return self._statement(orelse, env)
        return self._block(orelse.body, env)

    def _small(self, small: cst.BaseSmallStatement, env: Env) -> None:
        for child in children(small):
            if isinstance(child, cst.BaseExpression) and not isinstance(
                small, (cst.Assign, cst.AugAssign, cst.AnnAssign)
            ):
                self._expression(child, env)
        if isinstance(small, (cst.Assign, cst.AugAssign, cst.AnnAssign)):
            if small.value is not None:
                self._expression(small.value, env)
            targets = [t.target for t in small.targets] if isinstance(small, cst.Assign) else [small.target]
            for target in targets:
                for part in _subexpressions_of_target(target):
                    self._expression(part, env)
            for write in statement_writes(small):
                self._record(write, env)
            if isinstance(small, cst.Assign):
                for assign_target in small.targets:
                    self._bind(assign_target.target, small.value, env)
            elif isinstance(small, cst.AnnAssign) and small.value is not None:
                self._bind(small.target, small.value, env)
            # `t += v` keeps `t` the same tensor; `grads += (None,)` still holds the same gradients.
        elif isinstance(small, cst.Del):
            for name in _names(small.target):
                env.pop(name, None)

    # -- expressions --------------------------------------------------------------------------

    def _expression(self, expr: cst.CSTNode, env: Env) -> None:
        """Record the writes of every call in `expr` (comprehension variables bound as they iterate)."""
        stack = [(expr, env)]
        tracking, started, stopped = self.tracking, {}, False
        while stack:
            node, scope = stack.pop()
            kind = type(node)
            if kind in (cst.Lambda, cst.FunctionDef, cst.ClassDef):
                continue
            if kind in _COMPREHENSIONS:
                scope = dict(scope)
                # `kind` checked it (type() is faster than isinstance here)
                comp: cst.CompFor | None = cast(cst.BaseComp, node).for_in
                while comp is not None:
                    stack.append((comp.iter, scope))
                    self._bind_loop(comp.target, comp.iter, scope)
                    comp = comp.inner_for_in
            elif type(node) is cst.Call:
                for write in call_writes(node, self.qualify):
                    self._record(write, scope)
                if tracking is not None:
                    for write in tracking.writes(node):
                        self._record(write, scope)
                    started.update(tracking.tracked_after(node))
                    stopped = stopped or tracking.stops(node)
            elif type(node) is cst.NamedExpr:
                self._bind(node.target, node.value, scope)
            stack.extend(
                (child, scope) for child in reversed(children(node)) if child is not getattr(node, "for_in", None)
            )
        if stopped:
            env.clear()
        env.update(started)

    def _record(self, write: InplaceWrite, env: Env) -> None:
        alias = self.resolve(write.target, env)
        if alias is not None and alias.kind == TENSORS and write.augmented:
            alias = Alias(alias.root, TENSOR, indexed=True)  # `grads[0] *= 2` on a list of gradients
        if alias is None or alias.kind == TENSORS or id(write.node) in self._seen:
            return
        if write.numpy_only and alias.kind != NUMPY:
            return
        self._seen.add(id(write.node))
        self.found.append((write, alias))

    def resolve(self, expr: cst.BaseExpression, env: Env) -> Alias | None:
        """The tracked tensor `expr` refers to (itself or a view), if any."""
        if isinstance(expr, cst.Name):
            return env.get(expr.value)
        if isinstance(expr, cst.Attribute):
            tracked = env.get(dotted_name(expr) or "")
            if tracked is not None:
                return tracked  # a root that is an attribute (`self.weight` passed to a call)
            if expr.attr.value in ALIAS_ATTRIBUTES:
                return _as_tensor(self.resolve(expr.value, env))
            return None
        if isinstance(expr, cst.Subscript):
            base = self.resolve(expr.value, env)
            if base is None:
                return None
            if base.kind == TENSORS:
                if all(isinstance(e.slice, cst.Slice) for e in expr.slice):
                    return base  # `grads[1:]`
                return Alias(base.root, TENSOR, indexed=True)
            if all(_basic_index(e.slice) for e in expr.slice):
                return Alias(base.root, base.kind, indexed=True)
            return None  # advanced indexing copies
        if isinstance(expr, cst.IfExp):
            return self.resolve(expr.body, env) or self.resolve(expr.orelse, env)
        if isinstance(expr, cst.BooleanOperation):
            return self.resolve(expr.left, env) or self.resolve(expr.right, env)
        if isinstance(expr, cst.NamedExpr):
            return self.resolve(expr.value, env)
        if isinstance(expr, (cst.Tuple, cst.List)):
            found = [self.resolve(e.value, env) for e in expr.elements if not isinstance(e, cst.StarredElement)]
            aliases = [a for a in found if a is not None]
            return Alias(aliases[0].root, TENSORS) if aliases else None
        if isinstance(expr, cst.Call):
            return self._resolve_call(expr, env)
        return None

    def _resolve_call(self, call: cst.Call, env: Env) -> Alias | None:
        if self.tracking is not None:
            started = self.tracking.result(call)
            if started is not None:
                return started
        func = call.func
        positional = [arg.value for arg in call.args if arg.keyword is None and not arg.star]
        if isinstance(func, cst.Attribute):
            qualified = self.qualify(func) or ""
            if qualified.startswith("torch.") or qualified.startswith("numpy."):
                first = self.resolve(positional[0], env) if positional else None
                if first is None:
                    return None
                last = qualified.rsplit(".", 1)[-1]
                if qualified in ALIAS_FUNCTIONS:
                    return Alias(first.root, NUMPY if qualified.startswith("numpy.") else TENSOR, first.indexed)
                if qualified in SPLIT_FUNCTIONS:
                    return Alias(first.root, TENSORS)
                if is_inplace_method(last):
                    return first
                return None
            receiver = self.resolve(func.value, env)
            if receiver is None:
                return None
            name = func.attr.value
            if receiver.kind == TENSOR:
                if name == "numpy":
                    return Alias(receiver.root, NUMPY, receiver.indexed)
                if name in ALIAS_METHODS or is_inplace_method(name):
                    return receiver
                if name in SPLIT_METHODS:
                    return Alias(receiver.root, TENSORS)
            elif receiver.kind == NUMPY and name in ("view", "reshape", "ravel", "squeeze", "transpose", "swapaxes"):
                return receiver
            return None
        if isinstance(func, cst.Name) and func.value in ("list", "tuple") and len(positional) == 1:
            found = self.resolve(positional[0], env)
            return found if found is not None and found.kind == TENSORS else None
        return None

    def _bind(self, target: cst.BaseExpression, value: cst.BaseExpression | None, env: Env) -> None:
        """Bind the names of an assignment (or loop) target to what `value` refers to."""
        if isinstance(target, cst.Name):
            alias = self.resolve(value, env) if value is not None else None
            if alias is None:
                env.pop(target.value, None)
            else:
                env[target.value] = alias
            return
        if isinstance(target, (cst.Tuple, cst.List)):
            elements = [e.value for e in target.elements]
            values = None
            if (
                isinstance(value, (cst.Tuple, cst.List))
                and len(value.elements) == len(elements)
                and not any(isinstance(e, cst.StarredElement) for e in value.elements)
            ):
                values = [e.value for e in value.elements]
            parts = (
                self.tracking.unpacked(value, len(elements))
                if self.tracking is not None and isinstance(value, cst.Call)
                else None
            )
            if parts is not None:
                for element, alias in zip(elements, parts):
                    for name in _names(element):
                        env.pop(name, None)
                    if alias is not None and isinstance(element, cst.Name):
                        env[element.value] = alias
                return
            container = self.resolve(value, env) if value is not None and values is None else None
            for index, element in enumerate(elements):
                if values is not None:
                    self._bind(element, values[index], env)
                    continue
                for name in _names(element):
                    env.pop(name, None)
                if container is not None and container.kind == TENSORS:
                    alias = (
                        container
                        if isinstance(element, cst.StarredElement)
                        else Alias(container.root, TENSOR, indexed=True)
                    )
                    for name in _names(element):
                        env[name] = alias
            return
        # Attribute or subscript targets bind no name; assigning a tracked attribute root rebinds it.
        if isinstance(target, cst.Attribute):
            env.pop(dotted_name(target) or "", None)

    def _iterated(self, value, env: Env) -> list[Alias | None] | None:
        """For `for a, b in zip(xs, ys)` / `enumerate(xs)`: what each element of one item refers to."""
        if not isinstance(value, cst.Call) or not isinstance(value.func, cst.Name):
            return None
        args = [arg.value for arg in value.args if arg.keyword is None and not arg.star]
        element = lambda expr: _element_of(self.resolve(expr, env))  # noqa: E731
        if value.func.value == "zip":
            return [element(arg) for arg in args]
        if value.func.value == "enumerate" and args:
            return [None, element(args[0])]
        return None

    def _bind_loop(self, target: cst.BaseExpression, iterable: cst.BaseExpression, env: Env) -> None:
        """`for g in grads`, `for i, g in enumerate(grads)`, `for g, x in zip(grads, xs)`."""
        for name in _names(target):
            env.pop(name, None)
        if isinstance(target, cst.Name):
            alias = _element_of(self.resolve(iterable, env))
            if alias is not None:
                env[target.value] = alias
        elif isinstance(target, (cst.Tuple, cst.List)):
            iterated = self._iterated(iterable, env) or []
            for element, alias in zip([e.value for e in target.elements], iterated):
                if alias is not None and isinstance(element, cst.Name):
                    env[element.value] = alias


def _element_of(alias: Alias | None) -> Alias | None:
    if alias is None or alias.kind != TENSORS:
        return None
    return Alias(alias.root, TENSOR, indexed=True)


def _as_tensor(alias: Alias | None) -> Alias | None:
    return alias if alias is not None and alias.kind == TENSOR else None


def _basic_index(index: cst.BaseSlice) -> bool:
    """A slice, an integer literal, `...` or `None`: indexing that returns a view."""
    if not isinstance(index, cst.Index):  # a cst.Slice
        return True
    value = index.value
    if isinstance(value, cst.UnaryOperation):
        value = value.expression
    return isinstance(value, (cst.Integer, cst.Ellipsis)) or (isinstance(value, cst.Name) and value.value == "None")


basic_index = _basic_index


def _names(target: cst.CSTNode) -> list[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, cst.StarredElement):
        return _names(target.value)
    if isinstance(target, (cst.Tuple, cst.List)):
        return [name for element in target.elements for name in _names(element.value)]
    return []


def _subexpressions_of_target(target: cst.BaseExpression) -> list[cst.CSTNode]:
    """What evaluating an assignment target runs: `f(x)[i] = v` calls `f(x)`; a bare name runs nothing."""
    if isinstance(target, (cst.Subscript, cst.Attribute)):
        return [target]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [part for element in target.elements for part in _subexpressions_of_target(element.value)]
    return []


@overload
def _merge(first: Env, second: Env | None) -> Env: ...
@overload
def _merge(first: Env | None, second: Env | None) -> Env | None: ...
def _merge(first: Env | None, second: Env | None) -> Env | None:
    if first is None:
        return None if second is None else dict(second)
    if second is None:
        return dict(first)
    merged = dict(first)
    for name, alias in second.items():
        merged.setdefault(name, alias)
    return merged

"""AGL007 tensor-on-ctx: tensors kept as `ctx.name = tensor` instead of `ctx.save_for_backward`.

Reported only where keeping the tensor on ctx can do harm in this code:
- forward's output (or a tuple holding it): output -> grad_fn -> ctx -> output is a reference cycle;
- a differentiable input (backward returns a gradient for it), or a view/alias of one, that backward
  reads as a value: an in-place change after apply goes unnoticed (save_for_backward would raise);
- a tensor computed in forward that backward never reads: memory held for nothing until the graph dies.
Silent for what backward reads only for its shape, dtype or device (`zeros_like(ctx.x)`), inputs that
receive no gradient (frozen weights, index tensors), intermediates backward uses (nothing outside
forward can change them), and whatever is not surely a tensor (value_kinds).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.rule import Finding
from ..core.scopes import bindings
from ..core.syntax import code_of, dotted_name, is_none, shortened, walk
from ..facts.function_model import FunctionClass, Method
from ..facts.gradient_returns import returned_values
from ..facts.value_kinds import NON_TENSOR, NONE, TENSOR, ValueKinds
from ..torch_api import ALIAS_ATTRIBUTES, ALIAS_METHODS, LIKE_FACTORIES, METADATA_ATTRIBUTES
from .base import FunctionClassRule

INPUT, OUTPUT, INTERMEDIATE = "input", "output", "intermediate"
VALUE, METADATA = "value", "metadata"

# What reads only a tensor's metadata, never its values: torch_api's METADATA_ATTRIBUTES, these methods, and
# the first argument of a LIKE_FACTORIES call.
METADATA_METHODS = frozenset(
    {
        "size",
        "dim",
        "numel",
        "stride",
        "new_zeros",
        "new_empty",
        "new_ones",
        "new_full",
        "is_contiguous",
        "element_size",
        "get_device",
        "is_floating_point",
        "nelement",
        "ndimension",
    }
)


@dataclass(frozen=True)
class CtxTensor:
    function_class: FunctionClass
    method: Method
    attribute: str
    role: str  # INPUT, OUTPUT or INTERMEDIATE (an intermediate is reported only when backward never reads it)
    value: str  # the stored tensor's source
    source: str = ""  # for an input's view or alias: the input it shows


class TensorOnCtx(FunctionClassRule[CtxTensor]):
    code = "AGL007"
    name = "tensor-on-ctx"
    severity = Severity.WARNING
    summary = "a tensor is stored as ctx.name = ... instead of with save_for_backward"

    def check_class(self, function_class: FunctionClass, module: ParsedModule) -> Iterator[Finding[CtxTensor]]:
        reads: _BackwardReads | None = None
        for method in function_class.saving_methods():
            kinds: ValueKinds | None = None
            for target, value in _ctx_assignments(method):
                if kinds is None:
                    kinds = ValueKinds(function_class, method, module)
                reads = reads or _BackwardReads(module, function_class)
                subject = _harmful(kinds, reads, target.attr.value, value)
                if subject is not None:
                    yield Finding(target, *_message(subject), subject=subject)


def _ctx_assignments(method: Method) -> Iterator[tuple[cst.Attribute, cst.BaseExpression]]:
    """(`ctx.name` target, assigned value) pairs, element-wise for `ctx.a, ctx.b = a, b`."""
    ctx = method.ctx_name
    for node in walk(method.node.body, into_functions=False):
        if isinstance(node, cst.Assign):
            pairs: list[tuple[cst.BaseExpression, cst.BaseExpression]] = [(t.target, node.value) for t in node.targets]
        elif isinstance(node, cst.AnnAssign) and node.value is not None:
            pairs = [(node.target, node.value)]
        else:
            continue
        for target, value in pairs:
            if (
                isinstance(target, (cst.Tuple, cst.List))
                and isinstance(value, (cst.Tuple, cst.List))
                and len(target.elements) == len(value.elements)
            ):
                pairs.extend(
                    (t.value, v.value)
                    for t, v in zip(target.elements, value.elements)
                    if not isinstance(t, cst.StarredElement)
                )
            elif isinstance(target, cst.Attribute) and isinstance(target.value, cst.Name) and target.value.value == ctx:
                yield target, value


def _harmful(kinds: ValueKinds, reads: _BackwardReads, attribute: str, value: cst.BaseExpression) -> CtxTensor | None:
    """The stored tensor (an element, for a tuple or list) whose place on ctx does harm, most
    harmful first: an output, a differentiable input backward computes with, an unread intermediate."""
    if isinstance(value, (cst.Tuple, cst.List)):
        elements: list[tuple[int | None, cst.BaseExpression]] = [
            (i, e.value) for i, e in enumerate(value.elements) if not isinstance(e, cst.StarredElement)
        ]
        if any(isinstance(e, cst.StarredElement) for e in value.elements):
            elements = [(None, v) for _, v in elements]  # positions after a `*rest` are not known
    else:
        elements = [(None, value)]
    found = []
    for index, element in elements:
        role = _role(kinds, reads, element)
        if role is None:
            continue
        uses = reads.uses(attribute, index)
        shown = " ".join(code_of(element).split())
        if role == OUTPUT:
            found.append((0, CtxTensor(kinds.function_class, kinds.method, attribute, role, shown)))
        elif (
            role == INPUT
            and uses is not None
            and VALUE in uses
            and reads.differentiable(_input_position(kinds, element))
        ):
            source = _root_name(kinds, _aliased_input(kinds, element)) or ""
            found.append((1, CtxTensor(kinds.function_class, kinds.method, attribute, role, shown, source=source)))
        elif role == INTERMEDIATE and uses is not None and not uses:
            found.append((2, CtxTensor(kinds.function_class, kinds.method, attribute, role, shown)))
    if not found:
        return None
    first = min(priority for priority, _ in found)
    same = [stored for priority, stored in found if priority == first]
    if len(same) == 1:
        return same[0]
    # Several elements of one tuple do the same harm: name them all.
    return CtxTensor(
        same[0].function_class,
        same[0].method,
        attribute,
        same[0].role,
        "`, `".join(stored.value for stored in same),
        source="`, `".join(stored.source or stored.value for stored in same),
    )


def _role(kinds: ValueKinds, reads: _BackwardReads, value: cst.BaseExpression) -> str | None:
    """OUTPUT, INPUT (an input or a view/alias of one) or INTERMEDIATE when the value is surely a tensor.
    An input backward always returns a gradient for is one: torch accepts a gradient only for a tensor."""
    kind = kinds.kind(value)
    if kind in (NON_TENSOR, NONE):
        return None
    if isinstance(value, cst.Name):
        name = value.value
        if name in kinds.output_names and (kind is TENSOR or kinds.is_whole_output(name)):
            if kinds.is_integer(value) or name in _non_differentiable(kinds.method):
                return None  # an output without grad_fn (indices, masks): no cycle, nothing to check
            return OUTPUT
    if _aliased_input(kinds, value) is not None:
        return INPUT if kind is TENSOR or reads.always_differentiable(_input_position(kinds, value)) else None
    return INTERMEDIATE if kind is TENSOR else None


def _non_differentiable(method: Method) -> set[str]:
    """Names passed to `ctx.mark_non_differentiable(...)` in the method."""
    ctx = method.ctx_name
    found = set()
    for node in walk(method.node.body, into_functions=False):
        if (
            isinstance(node, cst.Call)
            and isinstance(node.func, cst.Attribute)
            and node.func.attr.value == "mark_non_differentiable"
        ):
            if isinstance(node.func.value, cst.Name) and node.func.value.value == ctx:
                found |= {a.value.value for a in node.args if isinstance(a.value, cst.Name)}
    return found


def _aliased_input(
    kinds: ValueKinds, value: cst.BaseExpression, seen: frozenset[str] = frozenset()
) -> cst.BaseExpression | None:
    """The input expression (a parameter name, or setup_context's `inputs[i]`) whose tensor `value`
    is or views: `x`, `x.t()`, `w.contiguous()`, a local bound only to such views of one input."""
    if kinds.input_index(value) is not None:
        return value
    if isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) and value.func.attr.value in ALIAS_METHODS:
        return _aliased_input(kinds, value.func.value, seen)
    if isinstance(value, cst.Attribute) and value.attr.value in ALIAS_ATTRIBUTES:
        return _aliased_input(kinds, value.value, seen)
    if not isinstance(value, cst.Name):
        return None
    name = value.value
    if name in seen:  # `x = x.contiguous()`: the name's other bindings say what it aliases
        return value
    if name in kinds.parameter_kinds and kinds.is_unchanged_input(name):
        return value
    sources: dict[str, cst.BaseExpression] = {}
    for node in kinds.bindings.get(name, []):
        if isinstance(node, cst.Param):
            if name not in kinds.parameter_kinds:
                return None
            sources[name] = value
        elif isinstance(node, cst.Assign) and len(node.targets) == 1 and isinstance(node.targets[0].target, cst.Name):
            source = _aliased_input(kinds, node.value, seen | {name})
            if source is None:
                return None
            sources[code_of(source).strip()] = source
        else:
            return None
    return next(iter(sources.values())) if len(sources) == 1 else None


def _input_position(kinds: ValueKinds, value: cst.BaseExpression) -> int | None:
    """The position among forward's inputs of the input `value` aliases, when known."""
    source = _aliased_input(kinds, value)
    if source is None:
        return None
    index = kinds.input_index(source)
    if index is not None:
        return index
    forward = kinds.function_class.forward
    names = [p.name.value for p in forward.data_params] if forward is not None else []
    root = _root_name(kinds, source)
    return names.index(root) if root in names else None


def _root_name(kinds: ValueKinds, expr: cst.BaseExpression | None) -> str | None:
    """The parameter a name aliases (setup_context: the name unpacked from `inputs` is forward's)."""
    if not isinstance(expr, cst.Name):
        return None
    if kinds.method.name != "setup_context":
        return expr.value
    forward = kinds.function_class.forward
    params = kinds.method.data_params
    if forward is None or not params:
        return None
    for node in kinds.bindings.get(expr.value, []):  # `x, w = inputs`
        if (
            isinstance(node, cst.Assign)
            and isinstance(node.value, cst.Name)
            and node.value.value == params[0].name.value
        ):
            target = node.targets[0].target
            if isinstance(target, (cst.Tuple, cst.List)):
                names = [e.value.value if isinstance(e.value, cst.Name) else None for e in target.elements]
                if expr.value in names and names.index(expr.value) < len(forward.data_params):
                    return forward.data_params[names.index(expr.value)].name.value
    return None


class _BackwardReads:
    """How backward (and jvp) read each ctx attribute: as a value, only for metadata, or not at all."""

    def __init__(self, module: ParsedModule, function_class: FunctionClass):
        self.module = module
        self.backward = function_class.backward
        # Where ctx is read after forward: backward (or vjp) and jvp.
        self.readers = [
            m for m in (self.backward, function_class.method("jvp")) if m is not None and m.ctx_name is not None
        ]
        self._reader: Method | None = None
        self._uses: dict[tuple[str, int | None], set[str]] | None = None
        self.escapes = False
        if self.backward is not None and self.backward.ctx_name is not None:
            self._read()

    def uses(self, attribute: str, index: int | None) -> set[str] | None:
        """VALUE/METADATA for the attribute (or its element `index`); None when unknowable (no
        backward here, or ctx passed on to other code)."""
        if self._uses is None or self.escapes:
            return None if self._uses is None else {VALUE}
        found = set(self._uses.get((attribute, None), set()))
        if index is not None:
            found |= self._uses.get((attribute, index), set())
        else:
            for (name, _), kinds in self._uses.items():
                if name == attribute:
                    found |= kinds
        return found

    def _readable_returns(self) -> list | None:
        """backward's returned values, one per `return`, or None when one of them cannot be read."""
        if self.backward is None:
            return None
        returns = [
            n
            for n in walk(self.backward.node.body, into_functions=False)
            if isinstance(n, cst.Return) and n.value is not None
        ]
        known = returned_values(self.backward)
        if not returns or len(known) != len(returns) or any(r.is_list for r in known):
            return None
        return known

    def differentiable(self, position: int | None) -> bool:
        """Whether backward may return a gradient at this input position (not a literal None on every return)."""
        known = self._readable_returns() if position is not None else None
        if known is None:
            return True
        return any(position < r.count and not self._is_none(r.elements[position]) for r in known)

    def always_differentiable(self, position: int | None) -> bool:
        """Whether every return of backward gives this input a gradient that is surely not None."""
        known = self._readable_returns() if position is not None else None
        if known is None:
            return False
        return all(position < r.count and self._surely_gradient(r.elements[position]) for r in known)

    def _surely_gradient(self, expr: cst.BaseExpression, depth: int = 0) -> bool:
        """Arithmetic, a method call on something other than ctx (`g.mm(w)`, `torch.mm(g, w)`), or a
        local bound only to such values: never None."""
        assert self.backward is not None  # asked only about the returns _readable_returns read
        if isinstance(expr, (cst.BinaryOperation, cst.UnaryOperation)):
            return True
        if isinstance(expr, cst.Call):
            func = expr.func
            return isinstance(func, cst.Attribute) and not (
                isinstance(func.value, cst.Name) and func.value.value == self.backward.ctx_name
            )
        if isinstance(expr, cst.Name) and depth < 4:
            nodes = bindings(self.backward.node).get(expr.value, [])
            return bool(nodes) and all(
                isinstance(n, cst.AugAssign)
                or (
                    isinstance(n, cst.Assign)
                    and len(n.targets) == 1
                    and isinstance(n.targets[0].target, cst.Name)
                    and self._surely_gradient(n.value, depth + 1)
                )
                for n in nodes
            )
        return False

    def _is_none(self, expr: cst.BaseExpression) -> bool:
        assert self.backward is not None  # asked only about the returns _readable_returns read
        if is_none(expr):
            return True
        if isinstance(expr, cst.Name):
            nodes = bindings(self.backward.node).get(expr.value, [])
            return bool(nodes) and all(
                isinstance(n, cst.Assign)
                and len(n.targets) == 1
                and isinstance(n.targets[0].target, cst.Name)
                and is_none(n.value)
                for n in nodes
            )
        return False

    def _read(self) -> None:
        self._uses = {}
        for reader in self.readers:
            self._reader = reader
            self._read_method(reader)

    def _read_method(self, reader: Method) -> None:
        assert self._uses is not None  # set by _read
        ctx = reader.ctx_name
        for node in walk(reader.node.body):
            if not (isinstance(node, cst.Name) and node.value == ctx):
                continue
            parent = self.module.parents.get(node)
            if isinstance(parent, cst.Attribute) and parent.value is node:
                if self._is_target(parent):
                    continue
                for index, kind in self._use(parent, 0):
                    self._uses.setdefault((parent.attr.value, index), set()).add(kind)
            elif not (isinstance(parent, cst.Attribute) and parent.attr is node) and not isinstance(parent, cst.Param):
                self.escapes = True  # ctx handed to other code: any attribute may be read there

    def _is_target(self, node: cst.CSTNode) -> bool:
        parent = self.module.parents.get(node)
        return isinstance(parent, (cst.AssignTarget, cst.Del)) or (
            isinstance(parent, cst.AnnAssign) and parent.target is node
        )

    def _use(self, node: cst.CSTNode, depth: int, index: int | None = None) -> Iterator[tuple[int | None, str]]:
        """(element index or None, VALUE/METADATA) for the expression `node` (a read of the attribute)."""
        parent = self.module.parents.get(node)
        if depth > 4:
            yield index, VALUE
            return
        if isinstance(parent, cst.Attribute) and parent.value is node:
            grand = self.module.parents.get(parent)
            if parent.attr.value in METADATA_ATTRIBUTES or (
                parent.attr.value in METADATA_METHODS and isinstance(grand, cst.Call) and grand.func is parent
            ):
                yield index, METADATA
                return
        if isinstance(parent, cst.Arg) and parent.keyword is None:
            call = self.module.parents.get(parent)
            if isinstance(call, cst.Call) and call.args and call.args[0] is parent:
                if (dotted_name(call.func) or "").rsplit(".", 1)[-1] in LIKE_FACTORIES:
                    yield index, METADATA
                    return
        if isinstance(parent, cst.Comparison) and all(
            isinstance(c.operator, (cst.Is, cst.IsNot)) for c in parent.comparisons
        ):
            yield index, METADATA
            return
        if isinstance(parent, cst.Subscript) and index is None and len(parent.slice) == 1:
            element = parent.slice[0].slice
            if isinstance(element, cst.Index) and isinstance(element.value, cst.Integer):
                yield from self._use(parent, depth + 1, int(element.value.value))
                return
        if isinstance(parent, cst.Assign) and parent.value is node and len(parent.targets) == 1:
            target = parent.targets[0].target
            if isinstance(target, cst.Name):
                yield from self._name_uses(target.value, parent, depth, index)
                return
            if (
                isinstance(target, (cst.Tuple, cst.List))
                and index is None
                and not any(isinstance(e, cst.StarredElement) for e in target.elements)
            ):
                for position, unpacked in enumerate(target.elements):
                    if isinstance(unpacked.value, cst.Name):
                        yield from self._name_uses(unpacked.value.value, parent, depth, position)
                    else:
                        yield position, VALUE
                return
        yield index, VALUE

    def _name_uses(
        self, name: str, binding: cst.CSTNode, depth: int, index: int | None
    ) -> Iterator[tuple[int | None, str]]:
        """The uses of a local bound from the attribute, as uses of the attribute."""
        for read in self._reads_of(name, binding):
            yield from self._use(read, depth + 1, index)

    def _reads_of(self, name: str, binding: cst.CSTNode) -> Iterator[cst.Name]:
        assert self._reader is not None  # set by _read
        for node in walk(self._reader.node.body):
            if not (isinstance(node, cst.Name) and node.value == name):
                continue
            parent = self.module.parents.get(node)
            if isinstance(parent, cst.Attribute) and parent.attr is node:
                continue
            if isinstance(parent, (cst.Arg,)) and parent.keyword is node:
                continue
            if isinstance(parent, (cst.AssignTarget, cst.Param)) or any(
                isinstance(a, cst.AssignTarget) for a in self._ancestors_until(node, binding)
            ):
                continue
            yield node

    def _ancestors_until(self, node: cst.CSTNode, stop: cst.CSTNode) -> Iterator[cst.CSTNode]:
        current = self.module.parents.get(node)
        while current is not None and not isinstance(current, (cst.BaseSmallStatement, cst.BaseCompoundStatement)):
            yield current
            current = self.module.parents.get(current)


def _message(stored: CtxTensor) -> tuple[str, str]:
    ctx = stored.method.ctx_name
    target = f"{ctx}.{stored.attribute}"
    fix = f"Use {ctx}.save_for_backward(...) and read it back from {ctx}.saved_tensors."
    if stored.role == OUTPUT:
        return (
            f"`{target}` keeps forward's output on ctx",
            f"Output -> grad_fn -> ctx -> output is a reference "
            f"cycle that only Python's cyclic garbage collector frees, so (GPU) memory grows between collections, "
            f"and in-place changes to the output go unchecked. {fix}",
        )
    if stored.role == INPUT:
        several = "`, `" in stored.value
        what = f"the input{'s' if several else ''} `{stored.value}`"
        if stored.source and stored.source != stored.value:
            what = f"`{stored.value}`, {'views' if several else 'a view'} of the input{'s' if several else ''} `{stored.source}`,"
        return (
            f"`{target}` keeps {shortened(what, 60)} on ctx, not in save_for_backward",
            f"Backward computes gradients with {what} kept on ctx: if the "
            f"caller changes {'one' if several else 'it'} in place before backward runs (an optimizer step between "
            "micro-batches, an in-place op on the activation), the gradients are silently computed from the new "
            "values where save_for_backward would raise, and saved-tensor hooks (activation offloading, "
            f"checkpointing) skip {'them' if several else 'it'}. {fix}",
        )
    return (
        f"`{target}` keeps a tensor computed in forward (`{shortened(stored.value, 30)}`) that backward never reads",
        "It holds that memory until the whole graph is freed. Delete the assignment (or save_for_backward it if "
        "backward needs it).",
    )

"""The confirm harness of AGL001 shared-state-in-backward; its recipe is runtime/agl001.py."""

from __future__ import annotations

import libcst as cst

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...core.syntax import code_of, walk
from ...facts.function_model import FunctionClass
from ...rules.agl001_shared_state_in_backward import SharedRead, _statement_of
from ..harness import Harness, apply_builders, finding_subject, function_class_code

EVIDENCE = r"two applications in one graph|between forward and backward"


def build(module: ParsedModule, finding: Finding) -> Harness:
    """The two-apply differential test and the drift test (see confirm/runtime/agl001.py),
    with the shared value written directly, as the module's writer would."""
    read = finding_subject(finding, SharedRead)
    function_class = read.function_class
    get, set_ = _accessors(module, read)
    if read.write is None:  # a closure variable: rebuilt as a real cell in a factory
        required, optional, definition = function_class_code(
            module, function_class, closure_access=(read.chain, get, set_)
        )
        accessors = ""
    else:
        required, optional, definition = function_class_code(module, function_class)
        required = required | {read.chain.split(".")[0]}
        accessors = f"def _agl_get():\n    return {get}\ndef _agl_set(value):\n    {set_}"
    known = _known_values(module, function_class, read)
    main = "\n".join(
        [
            definition,
            accessors,
            apply_builders(module, function_class),
            f"_agl_recipe.check_shared_state({function_class.name}.apply, _agl_builders, _agl_get, _agl_set, {get!r}, {known!r})",
        ]
    )
    return Harness(required, main, optional)


def _known_values(module: ParsedModule, function_class: FunctionClass, read: SharedRead) -> list:
    """Literals the module compares the shared value with in backward, or writes to it."""
    import ast

    found = []
    statement = _statement_of(module, read.node)
    candidates = list(walk(statement)) if statement is not None else []
    if read.write is not None and isinstance(read.write.node, cst.Assign):
        candidates.append(read.write.node.value)
    for node in candidates:
        if isinstance(node, (cst.SimpleString, cst.BaseNumber)):
            try:
                found.append(ast.literal_eval(code_of(node).strip()))
            except (ValueError, SyntaxError):
                continue
    return [value for value in dict.fromkeys(found) if isinstance(value, (str, int, float))][:8]


def _accessors(module: ParsedModule, read: SharedRead) -> tuple[str, str]:
    """Source for reading and for writing the shared value, in the harness's module namespace."""
    node = read.node
    if isinstance(node, cst.Call):  # getattr(Cls, "attr")
        owner, _, attr = read.chain.rpartition(".")
        return f"getattr({owner}, {attr!r})", f"setattr({owner}, {attr!r}, value)"
    parent = module.parents.get(node)
    if (
        isinstance(parent, cst.Subscript)
        and parent.value is node
        and len(parent.slice) == 1
        and isinstance(parent.slice[0].slice, cst.Index)
    ):
        key = code_of(parent.slice[0].slice.value).strip()
        appended = (
            read.write is not None
            and isinstance(read.write.node, cst.Call)
            and code_of(read.write.node.func).strip().endswith((".append", ".insert"))
        )
        if appended:
            return f"{read.chain}[{key}]", f"{read.chain}.append(value)"
        return f"{read.chain}[{key}]", f"{read.chain}[{key}] = value"
    if "." in read.chain:
        return read.chain, f"{read.chain} = value"
    if read.write is None:
        return read.chain, f"nonlocal {read.chain}; {read.chain} = value"
    return read.chain, f"globals()[{read.chain!r}] = value"

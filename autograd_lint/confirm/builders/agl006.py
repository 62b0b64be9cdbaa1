"""The confirm harness of AGL006 forward-called-directly; its recipe is runtime/agl006.py."""

from __future__ import annotations

import libcst as cst

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...core.syntax import code_of, short_code
from ...rules.agl006_forward_called_directly import DirectCall
from ..harness import Harness, finding_subject, function_class_code

EVIDENCE = r"grad_fn is \w+, not \w+Backward|raised AttributeError: 'NoneType' object has no attribute"


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Runs the call as written (ctx `None` as written, or a stand-in ctx; float64 leaf tensors for
    the other arguments) next to `Fn.apply` on the same inputs, and compares grad_fn and gradients
    (see confirm/runtime/agl006.py)."""
    direct = finding_subject(finding, DirectCall)
    function_class = direct.function_class
    required, optional, definition = function_class_code(module, function_class)
    arguments = [_argument(module, arg) for arg in direct.call.args]
    takes_ctx = direct.method == "backward" or (
        function_class.forward is not None and function_class.forward.ctx_name is not None
    )
    main = "\n".join(
        [
            definition,
            f"_agl_recipe.compare_direct_call({function_class.name}, {direct.method!r}, {arguments!r}, {takes_ctx!r}, "
            f"{short_code(direct.call)!r})",
        ]
    )
    return Harness(required, main, optional)


def _argument(module: ParsedModule, arg: cst.Arg) -> str | None:
    """A literal as written (`None`, `2.0`), or None for 'a tensor'."""
    import ast

    if arg.star or arg.keyword is not None:
        return None
    text = code_of(arg.value).strip()
    try:
        ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return text

"""The confirm harness of AGL023 where-nan-gradient; its recipe is runtime/agl023.py."""

from __future__ import annotations

import libcst as cst

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...core.syntax import code_of
from ...rules.agl023_where_nan_gradient import UNKNOWN_THRESHOLD, UnsafeWhere
from ..expression import expression_function
from ..harness import Harness, finding_subject

EVIDENCE = r"finite output but NaN gradient at x=-?[\d.e+]+: NaN \(selected branch: "


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Evaluate the selection on a probe that takes both branches and hits the unsafe op's singular
    points on the unselected side; compare its gradient with the selected branch's own."""
    found = finding_subject(finding, UnsafeWhere)
    selection = found.selection
    # The condition is the guarding comparison alone: the other parts of `(d2 > 0) & edge_mask`
    # are only known at run time, and where the comparison fails the whole condition does.
    guard = found.guard
    condition = guard.comparison.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    condition = cst.UnaryOperation(cst.BitInvert(), condition) if guard.negated else condition
    call = selection.call.deep_replace(selection.condition, condition)
    expression = cst.Tuple([cst.Element(e) for e in (call, condition, selection.when_true, selection.when_false)])
    code, required, optional = expression_function(
        module, selection.call, expression, found.variable, "_agl_where_parts", stand_in="_agl_x.new_tensor([0.75])"
    )
    probe = [-1000.0, -100.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 100.0, 1000.0]
    if guard.threshold != UNKNOWN_THRESHOLD:
        probe += [guard.threshold - 0.5, guard.threshold, guard.threshold + 0.5]
    shown = " ".join(code_of(call).split())
    main = "\n".join(
        ["import torch", code, f"_agl_recipe.check_where(_agl_where_parts, {sorted(set(probe))!r}, {shown!r})"]
    )
    return Harness(required, main, optional | {"torch"})

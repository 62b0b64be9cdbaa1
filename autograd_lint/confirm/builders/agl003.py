"""The confirm harness of AGL003 handwritten-piecewise-activation; its recipe is runtime/agl003.py."""

from __future__ import annotations

import libcst as cst

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...core.syntax import code_of
from ..expression import expression_function
from ..harness import CannotBuildHarness, Harness

EVIDENCE = r"-0\.0 for inputs|NaN output|NaN gradient"


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Evaluate the flagged expression on [-inf, -2, -0.5, 0.5, 2, inf] against torch.relu:
    -0.0 outputs, NaN outputs, NaN gradients for an inf upstream gradient."""
    node = finding.node
    expression = (
        cst.BinaryOperation(node.target, cst.Multiply(), node.value) if isinstance(node, cst.AugAssign) else node
    )
    if not isinstance(expression, cst.BaseExpression) or not isinstance(finding.subject, cst.BaseExpression):
        raise CannotBuildHarness("the finding carries no comparison operand to evaluate")
    # A threshold known only at run time (a learned one) stands at 0, relu's own.
    code, required, optional = expression_function(
        module, node, expression, finding.subject, "_agl_expression", stand_in="0.0"
    )
    shown = " ".join(code_of(expression).split())
    return Harness(required, f"{code}\n_agl_recipe.compare_with_relu(_agl_expression, {shown!r})", optional)

"""The confirm harness of AGL002 backward-arity-mismatch; its recipe is runtime/agl002.py."""

from __future__ import annotations

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...facts.function_model import FunctionClass
from ..harness import Harness, apply_builders, finding_subject, function_class_code

EVIDENCE = r"incorrect number of gradients \(expected \d+, got \d+\)"

# What torch raises for a backward with the wrong number of gradients.
TORCH_MESSAGES = ("incorrect number of gradients", "returned a gradient different than None")


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Run forward and backward for each call shape seen at the call sites; torch's own
    "incorrect number of gradients (expected N, got M)" is the evidence."""
    function_class = finding_subject(finding, FunctionClass)
    required, optional, definition = function_class_code(module, function_class)
    main = "\n".join(
        [
            definition,
            # Inputs whose backward fails on a shape (forward accepted a rank backward cannot handle) show nothing.
            apply_builders(module, function_class, with_backward=TORCH_MESSAGES),
            f"_agl_recipe.check_arity({function_class.name}.apply, _agl_builders, {TORCH_MESSAGES!r})",
        ]
    )
    return Harness(required, main, optional)

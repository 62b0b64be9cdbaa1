"""The confirm harness of AGL019 saved-tensor-mutated; its recipe is runtime/agl019.py."""

from __future__ import annotations

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...rules.agl019_saved_tensor_mutated import MutatedSaved
from ..harness import Harness, caller_harness, finding_subject

EVIDENCE = r"then `[^`]+`( \(standing in for the flagged write\))? on (its output|output \d+|argument \d+), then backward raised RuntimeError: one of the variables needed for gradient computation has been modified by an inplace operation: \[torch\.\w+ \[[\d, ]*\]\], which is output 0 of \w+, is at version \d+; expected version \d+ instead"


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Apply, the same in-place write on the same tensor (the user's own statement when it names
    nothing else), backward: torch's version-counter error is the proof; then the same sequence
    with a `.clone()` must run."""
    subject = finding_subject(finding, MutatedSaved)
    tracked = subject.caller.tracked
    name = tracked.function_class.name
    where = tracked.position if not tracked.is_output else ("output", tracked.output_index)
    recipe = f"_agl_recipe.check_saved_inplace({name}.apply, _agl_builders, {where!r}, {tracked.name!r}, {{replay}}, globals())"
    return caller_harness(module, subject.caller, recipe)

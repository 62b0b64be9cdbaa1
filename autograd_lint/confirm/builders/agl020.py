"""The confirm harness of AGL020 output-view-inplace; its recipe is runtime/agl020.py."""

from __future__ import annotations

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...rules.agl020_output_view_inplace import ViewWritten
from ..harness import Harness, caller_harness, finding_subject

EVIDENCE = r"\(the output is a view of an input\), then `[^`]+`( \(standing in for the flagged write\))? on the output raised RuntimeError: Output 0 of \w+ is a view and is being modified inplace\. This view was created inside a custom Function"


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Apply on non-leaf inputs, then the caller's write on the result: torch's view+inplace error is
    the proof; the same write on `.clone()` of the result must run."""
    subject = finding_subject(finding, ViewWritten)
    tracked = subject.caller.tracked
    recipe = f"_agl_recipe.check_output_view_inplace({tracked.function_class.name}.apply, _agl_builders, {tracked.name!r}, {{replay}}, globals())"
    return caller_harness(module, subject.caller, recipe)

"""The confirm harness of AGL009 inplace-input-without-mark-dirty; its recipe is runtime/agl009.py."""

from __future__ import annotations

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...facts.function_model import FunctionClass
from ..harness import CannotBuildHarness, Harness, finding_subject, recipe_harness

EVIDENCE = r"input \S+ \((a leaf requiring grad|of dtype \w+)\) (went from \[[^\]]*\] to \[[^\]]*\] where it changed|changed shape|kept its values), _version \d+ -> \d+, and forward never called ctx\.mark_dirty on it"


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Snapshot every input's values and `_version`, apply, compare; ctx.mark_dirty is watched so
    that only an undeclared change counts."""
    function_class = finding_subject(finding, FunctionClass)
    if function_class.forward is None:
        raise CannotBuildHarness(f"`{function_class.name}` defines no forward to apply")
    names = [p.name.value for p in function_class.forward.data_params]
    call = f"_agl_recipe.check_input_inplace({function_class.name}.apply, _agl_builders, {names!r})"
    return recipe_harness(module, function_class, call)

"""The confirm harness of AGL011 grad-for-non-tensor-input; its recipe is runtime/agl011.py."""

from __future__ import annotations

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...facts.function_model import FunctionClass
from ...facts.value_kinds import UNKNOWN
from ...rules.agl011_grad_for_non_tensor_input import NOT_A_TENSOR, NonTensorGradient
from ..harness import INPUTS_IMPORT, CannotBuildHarness, Harness, finding_subject, function_class_code, shared_inputs

EVIDENCE = r"then backward raised RuntimeError: function \w+Backward returned a gradient different than None at position \d+, but the corresponding forward input was not a Variable"

MAX_BUILDERS = 8  # call shapes tried at most


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Apply with the non-tensor exactly as a call site passes it, run backward; torch's own
    "returned a gradient different than None at position p" with the reported p is the proof. When forward
    rejects those inputs (an index, a mask, a batched shape), the shared inputs (declared, harvested or
    searched) that keep a non-tensor at that position."""
    subject = finding_subject(finding, NonTensorGradient)
    function_class = subject.function_class
    required, optional, definition = function_class_code(module, function_class)
    main = "\n".join(
        [
            definition,
            _builders(function_class, subject),
            INPUTS_IMPORT,
            f"_agl_recipe.check_non_tensor_grad({function_class.name}, _agl_builders, {subject.position + 1}, "
            f"{[p + 1 for p in subject.reported_before]!r}, lambda: {shared_inputs(module, function_class)})",
        ]
    )
    return Harness(required, main, optional)


def _builders(function_class: FunctionClass, subject: NonTensorGradient) -> str:
    """`_agl_builders` for the call shapes at which the input is not a tensor: non-tensors as the call
    passes them (or a stand-in when only their kind is known), tensors as float64 leaves; inputs of
    unknown kind are tried as tensors, then as ints and floats."""
    rows: list[tuple[str, str]] = []
    for shape in subject.shapes:
        for candidate in shape.inputs[subject.position].values:
            for variant in ("tensor", "1", "0.5"):
                unknown = [i for i, b in enumerate(shape.inputs) if b.kind is UNKNOWN and i > 0]
                if variant != "tensor" and not unknown:
                    break
                values: list[str | None] = []
                for index, bound in enumerate(shape.inputs):
                    if index == subject.position:
                        values.append(candidate)
                    elif bound.kind in NOT_A_TENSOR:
                        values.append(bound.values[0])
                    elif bound.kind is UNKNOWN and index in unknown and variant != "tensor":
                        values.append(variant)
                    else:
                        values.append(None)
                while values and shape.inputs[len(values) - 1].omitted:
                    values.pop()  # left out as at the call: torch binds the default itself
                args = ", ".join(
                    f"_agl_probes.leaf_tensor(shape, {i})" if v is None else v for i, v in enumerate(values)
                )
                label = (
                    f"{function_class.name}.apply(" + ", ".join("<tensor>" if v is None else v for v in values) + ")"
                )
                row = (label, f"_agl_builders.append(({label!r}, lambda shape: [{args}]))")
                if row not in rows:
                    rows.append(row)
    if not rows:
        raise CannotBuildHarness(f"no call shape of {function_class.name} to run")
    return "\n".join(["_agl_builders = []", *(line for _, line in rows[:MAX_BUILDERS])])

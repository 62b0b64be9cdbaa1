"""AGL002 backward-arity-mismatch: backward must return one gradient per forward input."""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.rule import Finding
from ..core.syntax import is_none, short_code
from ..facts.function_model import ForwardInputs, FunctionClass
from ..facts.gradient_returns import ReturnedValues, returned_values
from .base import FunctionClassRule


class BackwardArityMismatch(FunctionClassRule[FunctionClass]):
    code = "AGL002"
    name = "backward-arity-mismatch"
    severity = Severity.ERROR
    summary = "backward returns a different number of gradients than forward takes inputs"

    def check_class(self, function_class: FunctionClass, module: ParsedModule) -> Iterator[Finding[FunctionClass]]:
        yield from self._check_class(module, function_class)

    def _check_class(self, module: ParsedModule, function_class: FunctionClass) -> Iterator[Finding]:
        contract = function_class.gradient_contract()
        if contract is None or not function_class.backward_reachable:
            return  # no output can require grad (or nothing applies it): torch never counts the gradients
        backward = contract[1]
        expected = self._expected_counts(module, function_class, contract[2])
        for returned in returned_values(backward):
            problem = self._mismatch(returned, expected)
            if problem is not None:
                yield Finding(returned.node, *self._message(function_class, returned, *problem), subject=function_class)

    def _expected_counts(
        self, module: ParsedModule, function_class: FunctionClass, inputs: ForwardInputs
    ) -> list[tuple[int, int, cst.Call | None]]:
        """(lowest, highest) accepted counts, each with the call site it comes from.

        Without defaults, or with setup_context (which binds defaults first), it is the parameter
        count. A ctx-style forward with defaults expects what each `.apply(...)` call passes.
        """
        if inputs.setup_context_style or inputs.required == inputs.total:
            return [(inputs.total, inputs.total, None)]
        counts: list[tuple[int, int, cst.Call | None]] = []
        for call, args in function_class.apply_sites():
            if any(arg.star for arg in args):
                continue
            passed = len(args)
            if inputs.required <= passed <= inputs.total:
                counts.append((passed, passed, call))
        return counts or [(inputs.required, inputs.total, None)]

    @staticmethod
    def _mismatch(returned: ReturnedValues, expected) -> tuple[int, cst.Call | None] | None:
        got = returned.count
        for lowest, highest, call in expected:
            if got < lowest:
                return lowest, call
            if got > highest and not all(is_none(extra) for extra in returned.elements[highest:]):
                return highest, call
        return None

    @staticmethod
    def _message(
        function_class: FunctionClass, returned: ReturnedValues, expected: int, call: cst.Call | None
    ) -> tuple[str, str]:
        got = returned.count
        name = function_class.name
        message = (
            f"{name}.backward returns {got} value{'s' if got != 1 else ''} but forward takes "
            f"{expected} input{'s' if expected != 1 else ''}"
        )
        explanation = ""
        if call is not None:
            explanation = f"Counted at the call `{short_code(call, 60)}`"
            bound = next(
                (len(args) - len(call.args) for site, args in function_class.partial_applies if site is call), 0
            )
            if bound > 0:
                explanation += f" (after the {bound} argument{'s' if bound != 1 else ''} functools.partial binds first)"
            explanation += ". "
        explanation += (
            f"Torch raises 'function {name}Backward returned an incorrect number of gradients "
            f"(expected {expected}, got {got})'. "
        )
        if returned.is_list:
            explanation += "A list counts as one value: return a tuple."
        else:
            explanation += "Return one gradient per input, None for inputs that need none."
        return message, explanation

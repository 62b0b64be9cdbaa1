"""The kind of rule most rules are: one that judges each custom Function class on its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from ..core.module import ParsedModule
from ..core.rule import Finding, FunctionRule, Subject
from ..facts.function_model import FunctionClass


class FunctionClassRule(FunctionRule[Subject]):
    """The engine builds the module's Function model once and hands `check_class` each class in it (in
    source order), with the parsed file for what the rule asks beyond the class."""

    # Rules about backward's body, its gradients and its dtypes judge only the classes whose backward
    # autograd can call (`FunctionClass.backward_reachable`): an unreachable backward is never wrong.
    only_reachable_backward: ClassVar[bool] = False

    @classmethod
    def judges(cls, function_class: FunctionClass) -> bool:
        return function_class.backward_reachable or not cls.only_reachable_backward

    def check_class(self, function_class: FunctionClass, module: ParsedModule) -> Iterator[Finding[Subject]]:
        raise NotImplementedError

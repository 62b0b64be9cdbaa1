"""The contract every rule module fulfils."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Iterator

import libcst as cst

from .diagnostic import Severity
from .module import ParsedModule


@dataclass(frozen=True)
class Finding:
    """What a rule reports: the node to point at and the message. The engine adds positions."""

    node: cst.CSTNode
    message: str


class Rule:
    """One rule per module under `autograd_lint/rules/`; its page is `rules/<code>.md`."""

    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[Severity]
    summary: ClassVar[str]

    def check(self, module: ParsedModule) -> Iterator[Finding]:
        raise NotImplementedError

"""The contract every rule module fulfils."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import libcst as cst

from .diagnostic import Severity
from .module import ParsedModule
from .prefilter import defines_function_subclass, may_define_function_class

# How long a `message` may be (every fixture's is held to it): ruff keeps the message short and leaves
# the explanation to `ruff rule`. Code quoted from the linted source is cut short (syntax.short_code) so
# that messages about real code stay near it whatever the names in it.
MESSAGE_LIMIT = 100


@dataclass(frozen=True)
class Finding:
    """What a rule reports: the node to point at, the message and its explanation. The engine adds positions.

    `message` names the concrete thing wrong here (the class, method, input or call), in about
    MESSAGE_LIMIT characters at most; `explanation` is the consequence (torch's error text, the silently wrong
    gradient) and the fix, in sentences that read on after the message. `subject` is whatever the rule's
    confirm harness builder needs to rebuild the case (a Function class, the state read), kept out of the message.
    """

    node: cst.CSTNode
    message: str
    explanation: str
    subject: object = None


class Rule:
    """One rule per module under `autograd_lint/rules/`; its page is `rules/<code>.md`."""

    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[Severity]
    summary: ClassVar[str]

    @classmethod
    def triggered(cls, text: str) -> bool:
        """First prefilter stage, on the text: whether the file can contain a finding at all. Files
        no selected rule is triggered by are never parsed with libcst, so this must be a necessary
        condition of the rule's findings."""
        return True

    @classmethod
    def candidate(cls, tree: ast.AST) -> bool:
        """Second prefilter stage, on CPython's AST: whether any node could be reported."""
        return True

    def check(self, module: ParsedModule) -> Iterator[Finding]:
        raise NotImplementedError


class FunctionRule(Rule):
    """A rule about custom autograd.Function classes: it needs a file that defines one."""

    @classmethod
    def triggered(cls, text: str) -> bool:
        return may_define_function_class(text)

    @classmethod
    def candidate(cls, tree: ast.AST) -> bool:
        return defines_function_subclass(tree)


class NoqaRule(Rule):
    """A check of the noqa comments themselves. It needs no tree: `noqa.apply_noqa` computes it after the
    other rules ran, from their findings, so the engine never asks it to check a module."""

    @classmethod
    def triggered(cls, text: str) -> bool:
        return False

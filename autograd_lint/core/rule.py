"""The contract every rule module fulfils: what it declares, what it looks at, what it reports.

A rule declares its code, name, severity and summary, the text a file must contain for it to find anything
(`requires`, from which the prefilter is derived), and what it looks at: the whole module (`Rule.check`),
each node of some types (`NodeRule.check_node`), or each custom Function class
(`rules.base.FunctionClassRule`).
The engine parses a file once and walks it once, handing each rule only what it declared.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

import libcst as cst

from .diagnostic import Severity
from .module import ParsedModule
from .prefilter import FUNCTION_CLASS, TextCue, defines_function_subclass

# How long a `message` may be (every fixture's is held to it): ruff keeps the message short and leaves
# the explanation to `ruff rule`. Code quoted from the linted source is cut short (syntax.short_code) so
# that messages about real code stay near it whatever the names in it.
MESSAGE_LIMIT = 100

Subject = TypeVar("Subject")


@dataclass(frozen=True)
class Finding(Generic[Subject]):
    """What a rule reports: the node to point at, the message and its explanation. The engine adds positions.

    `message` names the concrete thing wrong here (the class, method, input or call), in about
    MESSAGE_LIMIT characters at most; `explanation` is the consequence (torch's error text, the silently wrong
    gradient) and the fix, in sentences that read on after the message. `subject` is what the rule's confirm
    harness builder needs to rebuild the case (a Function class, the state read), kept out of the message;
    its type is the rule's `Subject` parameter, which the builder of that rule receives.
    """

    node: cst.CSTNode
    message: str
    explanation: str
    subject: Subject


class Rule(Generic[Subject]):
    """A rule that looks at the whole module: `check` gets the parsed file. One per module under
    `autograd_lint/rules/`; its page is `rules/<code>.md`."""

    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[Severity]
    summary: ClassVar[str]
    # What a file's text must contain for the rule to find anything there: every cue (each one of a few
    # words or patterns). The prefilter skips parsing a file for a rule whose cues are not all in it, so
    # each must be a necessary condition of every finding of the rule, however loose.
    requires: ClassVar[tuple[TextCue, ...]] = ()

    @classmethod
    def text_cues(cls) -> tuple[TextCue, ...]:
        """Every cue the prefilter asks of the text: `requires`, and those of the rule's kind."""
        return cls.requires

    @classmethod
    def candidate(cls, tree: ast.AST) -> bool:
        """The prefilter's second stage, on CPython's AST (built anyway for the syntax check, far cheaper than
        libcst's tree), for a rule whose cues are too loose on their own: whether a node could be reported.
        It must not depend on `cls`: rules that inherit one check share its answer for a file."""
        return True

    def check(self, module: ParsedModule) -> Iterator[Finding[Subject]]:
        raise NotImplementedError


class NodeRule(Rule[Subject]):
    """A rule that judges nodes one at a time: the engine's single walk of the tree hands `check_node` every
    node whose type is in `node_types` (exact types, as libcst's concrete node classes)."""

    node_types: ClassVar[tuple[type[cst.CSTNode], ...]]

    def check_node(self, node: cst.CSTNode, module: ParsedModule) -> Iterator[Finding[Subject]]:
        raise NotImplementedError


class FunctionRule(Rule[Subject]):
    """A rule about custom autograd.Function classes that looks across the module (their `.apply` callers,
    say): it needs a file that defines one, and `check` gets the parsed file. A rule that judges each class
    on its own is a `rules.base.FunctionClassRule`."""

    @classmethod
    def text_cues(cls) -> tuple[TextCue, ...]:
        return (FUNCTION_CLASS, *cls.requires)

    @classmethod
    def candidate(cls, tree: ast.AST) -> bool:
        return defines_function_subclass(tree)


class NoqaRule(Rule[None]):
    """A check of the noqa comments themselves. It needs no tree: `noqa.apply_noqa` computes it after the
    other rules ran, from their findings, so the engine never asks it to check a module."""


class AuditRule(Rule[None]):
    """A code `autograd-lint audit` reports from running a Function under torch (confirm/audit.py); the engine
    never runs it, and it is in the registry for its selection, noqa, page and output formats."""

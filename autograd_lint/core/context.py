"""The file being linted, as the context the shared analyses memoize in.

Rules ask the same questions of the same nodes many times (a function's local bindings, a node's children).
The answers depend on the node alone, so they are kept, but only for the file they are about: each parsed
file owns a `FileContext`, the engine makes it the active one while the rules run on that file, and it is
dropped with the file. Nothing is cached across files or shared between threads (a ContextVar is per
thread), and code that runs outside a linted file (a test, a confirm builder) simply computes each answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from typing import Any, TypeVar

import libcst as cst

Answer = TypeVar("Answer")


class FileContext:
    """What is remembered about one file's nodes while it is linted."""

    def __init__(self) -> None:
        # A node's children in source order, filled once when the file is indexed (walks read it).
        self.children: dict[cst.CSTNode, list[cst.CSTNode]] = {}
        # Per memoized function, its answers by node.
        self.answers: dict[Callable[..., Any], dict[cst.CSTNode, Any]] = {}


_ACTIVE: ContextVar[FileContext | None] = ContextVar("autograd_lint_active_file", default=None)


def active_file() -> FileContext | None:
    return _ACTIVE.get()


@contextmanager
def activated(context: FileContext) -> Iterator[FileContext]:
    """Make `context` the active file's for the duration of the block (nested blocks restore the outer one)."""
    token = _ACTIVE.set(context)
    try:
        yield context
    finally:
        _ACTIVE.reset(token)


def per_file(question: Callable[[Any], Answer]) -> Callable[[Any], Answer]:
    """Memoize a question about one node (hashed by identity) in the active file's context. Callers must not
    mutate the answer: every rule that asks again gets the same object."""

    @wraps(question)
    def memoized(node: Any) -> Answer:
        context = _ACTIVE.get()
        if context is None:
            return question(node)
        answers = context.answers.get(memoized)
        if answers is None:
            answers = context.answers[memoized] = {}
        if node not in answers:
            answers[node] = question(node)
        answer: Answer = answers[node]
        return answer

    return memoized

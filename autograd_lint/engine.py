"""Lint one source text: parse once, run the selected rules on the shared model, apply noqa."""

from __future__ import annotations

import ast
import traceback

import libcst as cst

from .diagnostic import (
    INTERNAL_ERROR_CODE,
    INTERNAL_ERROR_NAME,
    SYNTAX_ERROR_CODE,
    SYNTAX_ERROR_NAME,
    UNSUPPRESSIBLE,
    Diagnostic,
    Severity,
)
from .module import ParsedModule
from .noqa import find_suppressions
from .rule import Rule
from .rules import RULES



def lint_text(
    source: str, path: str, codes: list[str], module_name: str | None = None, verbose: bool = False, prefilter: bool = True
) -> list[Diagnostic]:
    # Ask CPython first: libcst's native parser crashes the whole process on nesting that CPython
    # rejects cleanly ("too many nested parentheses"). Other CPython errors may only mean the code
    # is for a newer Python than this one (PEP 695 generics under 3.11): libcst decides those.
    tree, python_error, fatal = _python_parse(source, path)
    if fatal:
        return [python_error]
    # The cheap text triggers decide which rules can have anything to find; a file no selected rule
    # is triggered by is not parsed with libcst at all (the expensive step). A file CPython rejects
    # still is, to tell code for a newer Python from a real syntax error.
    if prefilter:
        codes = [code for code in codes if RULES[code].triggered(source)]
        if tree is not None:
            codes = [code for code in codes if RULES[code].candidate(tree)]
    if not codes and python_error is None:
        return []
    try:
        module = ParsedModule(source, path, module_name)
    except cst.ParserSyntaxError as error:
        if python_error is not None:
            return [python_error]  # CPython words and locates it better
        message = error.message.splitlines()[0] if error.message else "invalid syntax"
        return [_point(path, error.raw_line, error.raw_column + 1, SYNTAX_ERROR_CODE, SYNTAX_ERROR_NAME, f"SyntaxError: {message}")]
    except RecursionError:
        return [_point(path, 1, 1, SYNTAX_ERROR_CODE, SYNTAX_ERROR_NAME, "SyntaxError: file is nested too deeply to parse")]
    diagnostics: list[Diagnostic] = []
    for code in codes:
        rule: Rule = RULES[code]()
        try:
            for finding in rule.check(module):
                where = module.position(finding.node)
                diagnostics.append(
                    Diagnostic(
                        path=path,
                        line=where.start.line,
                        column=where.start.column + 1,
                        code=rule.code,
                        name=rule.name,
                        severity=rule.severity,
                        message=finding.message,
                        end_line=where.end.line,
                        end_column=where.end.column + 1,
                    )
                )
        except Exception as error:  # noqa: BLE001 - one rule's bug must not hide the others' findings
            message = f"rule {code} failed on this file: {type(error).__name__}: {error}"
            if verbose:
                message += "\n" + traceback.format_exc()
            diagnostics.append(_point(path, 1, 1, INTERNAL_ERROR_CODE, INTERNAL_ERROR_NAME, message))
    return _unsuppressed(source, diagnostics)


def _unsuppressed(source: str, diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    if not diagnostics:
        return diagnostics
    suppressions = find_suppressions(source)
    kept = {
        d for d in diagnostics if d.code in UNSUPPRESSIBLE or not suppressions.suppresses(d.code, d.line)
    }
    return sorted(kept, key=Diagnostic.sort_key)


def _python_parse(source: str, path: str) -> tuple[ast.AST | None, Diagnostic | None, bool]:
    """(CPython's AST, its syntax error, whether that error is fatal: something libcst must not be
    asked to parse)."""
    try:
        return ast.parse(source), None, False
    except SyntaxError as error:
        fatal = "too many nested" in (error.msg or "") or "null bytes" in (error.msg or "")
        diagnostic = _point(path, error.lineno or 1, max(error.offset or 1, 1), SYNTAX_ERROR_CODE, SYNTAX_ERROR_NAME, f"SyntaxError: {error.msg}")
        return None, diagnostic, fatal
    except (ValueError, RecursionError, MemoryError) as error:  # NUL bytes, pathological nesting
        reason = str(error) or type(error).__name__
        return None, _point(path, 1, 1, SYNTAX_ERROR_CODE, SYNTAX_ERROR_NAME, f"SyntaxError: {reason}"), True


def _point(path: str, line: int, column: int, code: str, name: str, message: str) -> Diagnostic:
    return Diagnostic(path, line, column, code, name, Severity.ERROR, message, line, column)

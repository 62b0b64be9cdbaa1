"""Lint one source text: prefilter, parse once, walk once, hand each selected rule what it looks at, apply noqa.

This is where the layers meet (the parsed file and the rule contract of `core/`, the Function model of
`facts/`, the rules), so it sits above all of them; the API and the command line call it. It imports them
(and libcst) only when a file is parsed: a run that parses nothing, pre-commit on files no rule is about,
starts without them.
"""

from __future__ import annotations

import ast
import gc
import re
import symtable
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from .core.diagnostic import (
    AUDIT_CODES,
    INTERNAL_ERROR_CODE,
    INTERNAL_ERROR_NAME,
    SPECIAL_RULES,
    SYNTAX_ERROR_CODE,
    SYNTAX_ERROR_NAME,
    Diagnostic,
    Severity,
)
from .core.noqa import NOQA_RULES, apply_noqa
from .core.prefilter import FilePrefilter
from .io.notebook import Notebook
from .io.reading import ModuleSource
from .regions import DEFAULT_LIMITS, FORKS, RegionLimits, RegionPlan, forked_map, plan_regions
from .rules import RULES
from .rules.text_cues import TEXT_CUES

if TYPE_CHECKING:
    import libcst as cst

    from .core.module import ParsedModule
    from .core.rule import Finding, NodeRule, Rule
    from .rules.base import FunctionClassRule


def lint_module(
    source: ModuleSource,
    path: str,
    codes: list[str],
    module_name: str | None = None,
    verbose: bool = False,
    prefilter: bool = True,
    jobs: int = 1,
) -> list[Diagnostic]:
    """The diagnostics of one file's module: its text, or a notebook's linted cells joined (always whole),
    reported in cells. Never raises, like `lint_text`."""
    regions = DEFAULT_LIMITS if source.notebook is None else None
    diagnostics = lint_text(source.text, path, codes, module_name, verbose, prefilter, regions, jobs)
    if source.notebook is None:
        return diagnostics
    return _in_cells(source.notebook, path, diagnostics)


def _in_cells(notebook: Notebook, path: str, diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Positions in the joined module become (cell, line in it), the one place this mapping happens, the
    lines that messages mention included; each cell left out for its syntax error is reported there."""
    located = []
    for d in diagnostics:
        cell, line = notebook.cell_position(d.line)
        end_cell, end_line = notebook.cell_position(max(d.end_line, d.line))
        end_column = d.end_column
        if end_cell != cell:  # cannot happen for a node of one cell; kept inside the start cell if it does
            end_line, end_column = line, d.column
        located.append(
            replace(
                d,
                cell=cell,
                line=line,
                end_line=end_line,
                end_column=end_column,
                message=notebook.cell_message(d.message),
                explanation=notebook.cell_message(d.explanation),
            )
        )
    for error in notebook.syntax_errors:
        syntax_error = _point(path, error.line, error.column, SYNTAX_ERROR_CODE, SYNTAX_ERROR_NAME, error.message)
        located.append(replace(syntax_error, cell=error.cell))
    return sorted(located, key=Diagnostic.sort_key)


def lint_text(
    source: str,
    path: str,
    codes: list[str],
    module_name: str | None = None,
    verbose: bool = False,
    prefilter: bool = True,
    regions: RegionLimits | None = DEFAULT_LIMITS,
    jobs: int = 1,
) -> list[Diagnostic]:
    """The diagnostics of one source text. Never raises: whatever goes wrong inside the linter becomes
    an AGL999 diagnostic for the rule (or the file) it happened in, and everything else still runs.
    A long text is linted in regions (`autograd_lint.regions`; None: never), with the same diagnostics,
    in `jobs` processes."""
    try:
        # The noqa checks (AGL100, AGL101) are not tree rules: they judge the comments once every rule has run.
        # The audit's codes come from running the code under torch (`autograd-lint audit`), never from here.
        rule_codes = [code for code in codes if code not in NOQA_RULES and code not in AUDIT_CODES]
        prefiltered = FilePrefilter(source, None)
        if prefilter and not any(prefiltered.admits_text(TEXT_CUES.get(code, ())) for code in rule_codes):
            # No rule's text cues are here (most files): when Python accepts the file there is nothing to say
            # but what the noqa checks find, and no tree is built, so no deep stack is needed either (starting
            # its thread cost three times what the rest of such a file's lint does).
            if _python_accepts(source):
                return _with_noqa(source, path, [], codes, verbose)
        with _cycle_collector_paused():
            return _on_deep_stack(
                _lint, source, path, codes, rule_codes, prefiltered, module_name, verbose, prefilter, regions, jobs
            )
    except Exception as error:  # noqa: BLE001 - a linter bug must cost this file's check, never the run
        return [_internal_error(path, "linting this file failed", error, verbose)]


def _lint(
    source: str,
    path: str,
    codes: list[str],
    rule_codes: list[str],
    prefiltered: FilePrefilter,
    module_name: str | None,
    verbose: bool,
    prefilter: bool,
    regions: RegionLimits | None,
    jobs: int,
) -> list[Diagnostic]:
    # libcst and the rules recurse over the tree, and what CPython accepts (a chain of ~3,000 binary
    # operators) is deeper than the default limit allows them: this thread's stack is large, and
    # the caller restores the limit.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), _DEEP_RECURSION_LIMIT))
    plan = None
    if regions is not None:
        with _callers_recursion_limit():  # the plan reads CPython's AST, whose verdict is the caller's
            plan = plan_regions(source, regions, jobs)
    found = None
    if plan is not None:
        found = _lint_regions(_RegionJob(plan, path, rule_codes, module_name, verbose, prefilter), jobs)
    if found is None:
        found = _lint_whole(source, path, rule_codes, module_name, verbose, prefilter, prefiltered)
    return _with_noqa(source, path, found, codes, verbose)


def _with_noqa(source: str, path: str, found: list[Diagnostic], codes: list[str], verbose: bool) -> list[Diagnostic]:
    try:
        return apply_noqa(source, path, found, codes, RULES)
    except Exception as error:  # noqa: BLE001 - without noqa, report everything rather than nothing
        return sorted(
            found + [_internal_error(path, "reading noqa comments failed", error, verbose)],
            key=Diagnostic.sort_key,
        )


def _lint_whole(
    source: str,
    path: str,
    codes: list[str],
    module_name: str | None,
    verbose: bool,
    prefilter: bool,
    prefiltered: FilePrefilter,
) -> list[Diagnostic]:
    # Ask CPython first, at the interpreter's own recursion limit and from a fresh stack (the same
    # verdict wherever lint_text is called from): libcst's native parser crashes the whole process
    # on nesting that CPython rejects cleanly ("too many nested parentheses"), and what CPython
    # cannot compile is code nobody runs. Other CPython errors may only mean the code is for a newer
    # Python than this one (PEP 695 generics under 3.11): libcst decides those.
    tree, python_error, fatal = _python_parse(source, path)
    if fatal and python_error is not None:
        return [python_error]
    return _lint_parsed(source, path, codes, module_name, verbose, prefilter, tree, python_error, prefiltered)


@dataclass
class _RegionJob:
    plan: RegionPlan
    path: str
    codes: list[str]
    module_name: str | None
    verbose: bool
    prefilter: bool
    file_imports: dict[str, str] = field(default_factory=dict)

    def lint(self, index: int) -> list[Diagnostic] | None:
        """The diagnostics of region `index` in its own statements; None when it could not be parsed or a
        rule failed on it (the whole file's lint reports that)."""
        region = self.plan.regions[index]
        tree, python_error, _ = _python_parse(region.source, self.path)
        if python_error is not None:
            return None
        diagnostics = _lint_parsed(
            region.source,
            self.path,
            self.codes,
            self.module_name,
            self.verbose,
            self.prefilter,
            tree,
            None,
            file_imports=self.file_imports,
            file_lines=region.file_lines,
        )
        del tree
        _free_what_the_lint_left()  # before the next region is parsed
        if any(d.code in (INTERNAL_ERROR_CODE, SYNTAX_ERROR_CODE) for d in diagnostics):
            return None
        return [d for d in diagnostics if region.owns(d.line)]  # a context statement's are its owner's


def _lint_regions(job: _RegionJob, jobs: int) -> list[Diagnostic] | None:
    """The diagnostics of the file the regions were cut from, each region parsed, linted and freed before the
    next, in `jobs` forked processes; None, for the whole file to be linted instead, when a region could not
    promise the whole file's diagnostics, or a region process died (a crash in native code)."""
    from .core.module import ParsedModule

    job.file_imports = ParsedModule(job.plan.import_source, job.path, job.module_name).imports
    count = len(job.plan.regions)
    if jobs > 1 and FORKS:
        results = forked_map(job.lint, count, min(jobs, count))
    else:
        results = [job.lint(index) for index in range(count)]
    if results is None or any(result is None for result in results):
        return None
    return [d for result in results for d in result or ()]


def _lint_parsed(
    source: str,
    path: str,
    codes: list[str],
    module_name: str | None,
    verbose: bool,
    prefilter: bool,
    tree: ast.AST | None,
    python_error: Diagnostic | None,
    prefiltered: FilePrefilter | None = None,
    file_imports: dict[str, str] | None = None,
    file_lines: Sequence[int] | None = None,
) -> list[Diagnostic]:
    diagnostics: list[Diagnostic] = []
    rules: list[Rule] = []
    python_tree = tree if isinstance(tree, ast.Module) else None
    if prefiltered is None:
        prefiltered = FilePrefilter(source, tree)
    prefiltered.tree = tree
    for code in codes:
        # A rule that cannot be loaded, or whose prefilter raises, is one AGL999; the others run.
        try:
            # A file no selected rule is admitted to is not parsed with libcst at all (the expensive step).
            # A file CPython rejects still is, to tell code for a newer Python from a real syntax error.
            # The text cues are asked before the rule module is imported, so a run that parses nothing
            # imports no rule (and so not libcst).
            if prefilter and not prefiltered.admits_text(TEXT_CUES.get(code, ())):
                continue
            rule_class = RULES[code]
            if prefilter and not prefiltered.admits(rule_class):
                continue
            rules.append(rule_class())
        except Exception as error:  # noqa: BLE001 - one rule's bug must not hide the others' findings
            diagnostics.append(_internal_error(path, f"rule {code} failed on this file", error, verbose))
    if not rules and python_error is None:
        return diagnostics
    # Imported by the first file that is parsed: a run that parses nothing starts without libcst.
    import libcst as cst

    from .core.module import ParsedModule

    try:
        try:
            module = ParsedModule(source, path, module_name, python_tree, file_imports, file_lines)
        except cst.ParserSyntaxError:
            if python_error is not None or not _BLANK_CONTINUATION.search(source):
                raise
            # A blank line that ends in a backslash: CPython joins it to the next line, libcst's
            # tokenizer rejects it. Without the backslash the line is blank and the code the same,
            # with every other line and column where it was.
            module = ParsedModule(
                _BLANK_CONTINUATION.sub(r"\1 ", source), path, module_name, python_tree, file_imports, file_lines
            )
    except cst.ParserSyntaxError as error:
        if python_error is not None:
            return [python_error]  # CPython words and locates it better
        # CPython accepts it, libcst does not (a libcst limit): the file is not checked, and saying
        # "syntax error" about valid code would be wrong.
        reason = error.message.splitlines()[0] if error.message else "invalid syntax"
        return diagnostics + [
            _point(
                path,
                1,
                1,
                INTERNAL_ERROR_CODE,
                INTERNAL_ERROR_NAME,
                f"libcst cannot parse this file, which Python accepts ({reason} at line {error.raw_line}); it was not checked",
            )
        ]
    except RecursionError:
        return [
            _point(path, 1, 1, SYNTAX_ERROR_CODE, SYNTAX_ERROR_NAME, "SyntaxError: file is nested too deeply to parse")
        ]
    for rule, outcome in run_rules(module, rules).items():
        for finding in outcome.findings:
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
                    explanation=finding.explanation,
                )
            )
        if outcome.error is not None:
            # What the rule found before it failed is kept: its findings are real, and the AGL999
            # says the rest of the file was not checked by it.
            diagnostics.append(_internal_error(path, f"rule {rule.code} failed on this file", outcome.error, verbose))
    global _trees_released
    module.release()
    _trees_released += 1
    return diagnostics


class RuleOutcome:
    """What one rule reported on one file, and the exception that stopped it there, if one did."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []
        self.error: Exception | None = None

    def collect(self, check: Callable[..., Iterable[Finding]], *arguments: object) -> None:
        """The findings of `check(*arguments)`, one of the rule's entry points."""
        if self.error is not None:
            return  # a rule that failed on this file is not asked about the rest of it
        try:
            for finding in check(*arguments):
                self.findings.append(finding)
        except Exception as error:  # noqa: BLE001 - one rule's bug must not hide the others' findings
            self.error = error


def run_rules(module: ParsedModule, rules: list[Rule]) -> dict[Rule, RuleOutcome]:
    """Each rule's findings on `module`, each rule given what it declared it looks at: the module, each node
    of its types (one walk of the tree for all of them), each Function class (one model for all of them)."""
    from .core.rule import NodeRule
    from .core.syntax import walk
    from .rules.base import FunctionClassRule

    outcomes = {rule: RuleOutcome() for rule in rules}
    by_node_type: dict[type[cst.CSTNode], list[NodeRule]] = {}
    class_rules: list[FunctionClassRule] = []
    with module.active():
        for rule in rules:
            if isinstance(rule, NodeRule):
                for node_type in rule.node_types:
                    by_node_type.setdefault(node_type, []).append(rule)
            elif isinstance(rule, FunctionClassRule):
                class_rules.append(rule)
            else:
                outcomes[rule].collect(rule.check, module)
        if by_node_type:
            for node in walk(module.tree):
                for node_rule in by_node_type.get(type(node), ()):
                    outcomes[node_rule].collect(node_rule.check_node, node, module)
        if class_rules:
            _run_class_rules(module, class_rules, outcomes)
    return outcomes


def _run_class_rules(module: ParsedModule, rules: list[FunctionClassRule], outcomes: dict[Rule, RuleOutcome]) -> None:
    from .facts.function_model import function_model

    try:
        function_classes = list(function_model(module))
    except Exception as error:  # noqa: BLE001 - the model's bug costs the rules that need it, not the others
        for rule in rules:
            outcomes[rule].error = error
        return
    for function_class in function_classes:
        for rule in rules:
            if rule.judges(function_class):
                outcomes[rule].collect(rule.check_class, function_class, module)


@contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while one file is linted. A parsed file is hundreds of
    thousands of small objects that live until the file is done and form no garbage cycles the lint needs
    freed, while each of the collector's full passes walks all of them: on one large file those passes made
    the run grow with the square of its size (4x the file, 5.9x the time; 3.8x without them)."""
    was_enabled = gc.isenabled()
    released_before = _trees_released
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
            # Left to the collector's own rare passes, a parsed file's leftovers were freed after the next large
            # file was parsed beside them (a worker held two or three trees at once): freed now, while they are
            # the only large thing in memory; a file that was not parsed leaves too little to be worth a pass.
            if _trees_released != released_before or gc.get_count()[0] > _GARBAGE_WORTH_COLLECTING:
                _free_what_the_lint_left()


def _free_what_the_lint_left() -> None:
    """Free the reference cycles a lint left (ParsedModule.release breaks the facts' own) and give the memory
    back. With the collector paused, everything allocated since the last pass is in its youngest generation, so
    a pass over that generation alone finds them; a full pass also walked every object the process held
    (libcst, the rules, the caller's own), 7 % of a cold run over torch's source."""
    gc.collect(0)
    _release_freed_memory()


# Objects the collector tracks, allocated and not freed while one file was linted: a parsed file leaves
# hundreds of thousands, CPython's syntax check alone a few.
_GARBAGE_WORTH_COLLECTING = 20_000
_trees_released = 0  # parsed files let go of (one deep call at a time: see _on_deep_stack)


def _release_freed_memory() -> None:
    """Give the C allocator's free memory back to the system (glibc's malloc_trim; nothing elsewhere). A freed
    tree's memory stayed in the process, too scattered for the next file's tree to reuse: over torch's source
    a worker grew to about 1.7 times the largest file's need, which is its peak now."""
    global _malloc_trim
    if _malloc_trim is None:
        import ctypes

        # the symbols the process already has (its C library among them): no search for a library file
        _malloc_trim = getattr(ctypes.CDLL(None), "malloc_trim", False)
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None  # glibc's malloc_trim once looked up, False where the C library has none


_BLANK_CONTINUATION = re.compile(r"^([ \t\f]*)\\(?=\r\n|\r|\n|\Z)", re.MULTILINE)


def _internal_error(path: str, what: str, error: BaseException, verbose: bool) -> Diagnostic:
    message = f"{what}: {type(error).__name__}: {error}".splitlines()[0]
    if verbose:
        message += "\n" + "".join(traceback.format_exception(error)).rstrip()
    return _point(path, 1, 1, INTERNAL_ERROR_CODE, INTERNAL_ERROR_NAME, message)


# libcst and the rules walk trees recursively. A thread with a 256 MiB stack (reserved, not used)
# and a recursion limit of 30,000 handles the deepest trees CPython's own parser accepts. The limit
# is raised by the thread and restored when it ends; CPython's own parses run at the caller's limit,
# so that what the interpreter would reject is a syntax error here too.
_DEEP_STACK_BYTES = 256 * 1024 * 1024
_DEEP_RECURSION_LIMIT = 30_000
_deep_lock = threading.Lock()
_callers_limit: int | None = None  # the recursion limit lint_text was called with, while a deep call runs


@contextmanager
def _callers_recursion_limit() -> Iterator[None]:
    raised = sys.getrecursionlimit()
    if _callers_limit is None or _callers_limit >= raised:
        yield
        return
    sys.setrecursionlimit(_callers_limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(raised)


_Result = TypeVar("_Result")


def _on_deep_stack(function: Callable[..., _Result], *args: object) -> _Result:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function(*args)
        except BaseException as error:  # noqa: BLE001 - re-raised in the calling thread
            outcome["error"] = error

    worker = threading.Thread(target=run, name="autograd-lint-deep", daemon=True)
    global _callers_limit
    with _deep_lock:  # the stack size and the recursion limit are per process: one deep call at a time
        previous_limit = _callers_limit = sys.getrecursionlimit()
        try:
            previous_stack = threading.stack_size(_DEEP_STACK_BYTES)  # applies to threads started from now
            try:
                worker.start()
            finally:
                threading.stack_size(previous_stack)
            worker.join()
        finally:
            sys.setrecursionlimit(previous_limit)
            _callers_limit = None
    if "error" in outcome:
        raise outcome["error"]
    value: _Result = outcome["value"]
    return value


def _python_parse(source: str, path: str) -> tuple[ast.AST | None, Diagnostic | None, bool]:
    """(CPython's AST, its syntax error, whether that error is fatal: something libcst must not be
    asked to parse)."""
    try:
        with _callers_recursion_limit():
            return ast.parse(source), None, False
    except SyntaxError as error:
        fatal = "too many nested" in (error.msg or "") or "null bytes" in (error.msg or "")
        diagnostic = _point(
            path,
            error.lineno or 1,
            max(error.offset or 1, 1),
            SYNTAX_ERROR_CODE,
            SYNTAX_ERROR_NAME,
            f"SyntaxError: {error.msg}",
        )
        return None, diagnostic, fatal
    except (ValueError, RecursionError, MemoryError) as error:  # NUL bytes, pathological nesting
        reason = str(error) or type(error).__name__
        return None, _point(path, 1, 1, SYNTAX_ERROR_CODE, SYNTAX_ERROR_NAME, f"SyntaxError: {reason}"), True


def _python_accepts(source: str) -> bool:
    """Whether CPython accepts `source`, asked of its symbol-table pass: the parser `_python_parse` uses, with
    the same errors, without building the Python objects of the tree (60 % of ast.parse's time). Asked from
    the caller's stack at its recursion limit less one (it accepted one level of nesting more than ast.parse
    from the same place, and the caller's stack is deeper than a deep call's): its own further checks (a
    duplicate argument) and its limit can only make it stricter, and a file it rejects is parsed, and
    judged, as before."""
    with _deep_lock:  # the recursion limit is per process: not while a deep call has it raised
        limit = sys.getrecursionlimit()
        try:
            sys.setrecursionlimit(limit - 1)
            symtable.symtable(source, "<file>", "exec")
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
            return False
        finally:
            sys.setrecursionlimit(limit)
    return True


def _point(path: str, line: int, column: int, code: str, name: str, message: str) -> Diagnostic:
    explanation = SPECIAL_RULES[code][2]
    return Diagnostic(path, line, column, code, name, Severity.ERROR, message, line, column, explanation)

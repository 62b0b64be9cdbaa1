"""One parsed file: the libcst tree, its parents, its imports, lazily its positions and the facts about it.

Everything here is computed once per file and shared by every rule, so no rule re-parses or re-walks
what another already needed.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from functools import cached_property
from typing import TypeVar

import libcst as cst
from libcst.metadata import CodePosition, CodeRange, MetadataWrapper, PositionProvider

from .context import FileContext, activated
from .lines import line_starts
from .scopes import bindings
from .syntax import disables_grad, dotted_name, read_children, walk

Fact = TypeVar("Fact")


# Positions: a (libcst positions of a statement's code generated alone, the line offset to the file, the column
# shift of each generated line or None for none).
_Located = tuple[Mapping[cst.CSTNode, CodeRange], int, list[int] | None]
# A top-level class this many lines long has its methods' positions computed one method at a time.
_LONG_STATEMENT_LINES = 1_000


def _python_statement_count(statement: cst.CSTNode) -> int:
    """How many of CPython's statements a libcst statement is (a line of `a; b` is two)."""
    return len(statement.body) if isinstance(statement, cst.SimpleStatementLine) else 1


def _code_lines(statement: cst.CSTNode, python_statement: ast.AST) -> tuple[int, int]:
    """(the line where a statement's code starts, its leading blank and comment lines included; the line of its
    first code: the `@` of its first decorator, on the line its expression starts), from CPython's lines."""
    content_line: int = getattr(python_statement, "lineno", 0)
    leading = len(getattr(statement, "leading_lines", ()))
    decorators = getattr(statement, "decorators", ())
    python_decorators = getattr(python_statement, "decorator_list", ())
    if decorators and python_decorators:
        content_line = python_decorators[0].lineno
        leading += len(decorators[0].leading_lines)
    return content_line - leading, content_line


class ParsedModule:
    def __init__(
        self,
        source: str,
        path: str,
        module_name: str | None = None,
        python_tree: ast.Module | None = None,
        file_imports: dict[str, str] | None = None,
        file_lines: Sequence[int] | None = None,
    ):
        """`source` may be a region of a larger file (`autograd_lint.regions`): then `file_imports` is the
        whole file's import table, which the region's own imports would not give, and `file_lines[i]` the
        file's line of the region's line i + 1, which `position` reports."""
        self.source = source
        self.path = path
        self.module_name = module_name
        self.tree = parse_in_pieces(source, python_tree)
        self.parents: dict[cst.CSTNode, cst.CSTNode] = {}
        self.imports: dict[str, str] = {}
        self.classes: list[cst.ClassDef] = []
        self._facts: dict[Callable, object] = {}
        self.context = FileContext()
        self._python_tree = python_tree  # CPython's AST of the same lines, when the caller has it
        self._located_statements: dict[cst.CSTNode, _Located | None] = {}
        self._file_lines = file_lines
        self._index(self.tree)
        if file_imports is not None:
            self.imports = dict(file_imports)

    def _index(self, root: cst.CSTNode) -> None:
        parents = self.parents
        table = self.context.children
        stack = [root]
        while stack:
            node = stack.pop()
            found = table[node] = read_children(node)
            for child in found:
                parents[child] = node
            stack.extend(reversed(found))
            # exact types: isinstance against libcst's ABCs is slow here
            if type(node) is cst.Import:
                self._record_import(node)
            elif type(node) is cst.ImportFrom:
                self._record_import_from(node)
            elif type(node) is cst.ClassDef:
                self.classes.append(node)
        self._record_module_aliases()

    def active(self) -> AbstractContextManager[FileContext]:
        """While the rules run on this file: the shared analyses memoize their answers about its nodes
        in its context (`core.context`), which goes with it."""
        return activated(self.context)

    def _record_import(self, node: cst.Import) -> None:
        for alias in node.names:
            full = dotted_name(alias.name)
            if not full:
                continue
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                self.imports[alias.asname.name.value] = full
            else:
                head = full.split(".")[0]
                self.imports[head] = head

    def _record_import_from(self, node: cst.ImportFrom) -> None:
        if isinstance(node.names, cst.ImportStar):
            return
        package = self._absolute_package(node)
        if package is None:
            return
        for alias in node.names:
            name = dotted_name(alias.name)
            if not name:
                continue
            local = name
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                local = alias.asname.name.value
            self.imports[local] = f"{package}.{name}" if package else name

    def _absolute_package(self, node: cst.ImportFrom) -> str | None:
        module = dotted_name(node.module) if node.module is not None else ""
        level = len(node.relative)
        if level == 0:
            return module
        if not self.module_name:
            return None
        parts = self.module_name.split(".")
        is_package = os.path.basename(self.path) == "__init__.py"
        base = parts if is_package else parts[:-1]
        if level - 1 > len(base):
            return None
        base = base[: len(base) - (level - 1)]
        return ".".join(base + ([module] if module else []))

    def _record_module_aliases(self) -> None:
        """`Function = torch.autograd.Function` at module level is an import in all but syntax."""
        for statement in self.tree.body:
            if not isinstance(statement, cst.SimpleStatementLine):
                continue
            for small in statement.body:
                if (
                    isinstance(small, cst.Assign)
                    and len(small.targets) == 1
                    and isinstance(small.targets[0].target, cst.Name)
                    and isinstance(small.value, (cst.Name, cst.Attribute))
                ):
                    head = (dotted_name(small.value) or "").split(".")[0]
                    qualified = self.qualified_name(small.value)
                    if head in self.imports and qualified is not None:
                        self.imports[small.targets[0].target.value] = qualified

    def qualified_name(self, expr: cst.BaseExpression) -> str | None:
        """The dotted name an expression refers to, with its head resolved through the imports."""
        dotted = dotted_name(expr)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        resolved = self.imports.get(head)
        if resolved is None:
            return dotted
        return f"{resolved}.{rest}" if rest else resolved

    @cached_property
    def _source_order(self) -> dict[cst.CSTNode, int]:
        return {node: index for index, node in enumerate(walk(self.tree))}

    def comes_before(self, first: cst.CSTNode, second: cst.CSTNode) -> bool:
        order = self._source_order
        return order.get(first, -1) < order.get(second, -1)

    def position(self, node: cst.CSTNode) -> CodeRange:
        """Where `node` is in the file: in its source, or for a region, at the file's lines."""
        where = self._source_position(node)
        lines = self._file_lines
        if lines is None:
            return where
        return CodeRange(
            CodePosition(lines[where.start.line - 1], where.start.column),
            CodePosition(lines[min(where.end.line, len(lines)) - 1], where.end.column),
        )

    def _source_position(self, node: cst.CSTNode) -> CodeRange:
        """Where `node` is in the source. libcst computes positions by generating the code of a whole tree,
        which for a large file costs more than parsing it, while a lint asks for a few nodes: so positions
        are computed for the top-level statement around the node alone, and shifted to the line where that
        statement's code starts (found through CPython's AST, and checked against the source text; the whole
        module's positions when that check fails)."""
        statement = self._top_level_statement(node)
        located = None
        if statement is not None:
            method = self._method_in_a_long_class(node, statement)
            if method is not None:
                located = self._statement_positions(method)
            if located is None:
                located = self._statement_positions(statement)
        if located is None:
            return self._module_positions[node]
        positions, line_offset, shifts = located
        where = positions[node]
        if not line_offset and shifts is None:
            return where
        start_shift = shifts[where.start.line - 1] if shifts else 0
        end_shift = shifts[min(where.end.line, len(shifts)) - 1] if shifts else 0
        return CodeRange(
            CodePosition(where.start.line + line_offset, where.start.column + start_shift),
            CodePosition(where.end.line + line_offset, where.end.column + end_shift),
        )

    def _method_in_a_long_class(self, node: cst.CSTNode, statement: cst.CSTNode) -> cst.FunctionDef | None:
        """The method `node` is in, when it is in a top-level class so long that generating its code for a few
        positions costs more than parsing it (torch's 450 KB test class): a function directly in the body of
        that class, or of classes nested there. None otherwise."""
        if not isinstance(statement, cst.ClassDef):
            return None
        first, after = self._statement_code_lines.get(statement), self._statement_code_lines_after.get(statement)
        if first is None or after is None or after - first < _LONG_STATEMENT_LINES:
            return None
        chain = [a for a in (node, *self.ancestors(node)) if isinstance(a, (cst.ClassDef, cst.FunctionDef))]
        chain.reverse()  # from the top-level class down
        for index, definition in enumerate(chain):
            if isinstance(definition, cst.FunctionDef):
                return definition if index and self._path_is_plain(chain[: index + 1]) else None
        return None

    def _path_is_plain(self, chain: Sequence[cst.CSTNode]) -> bool:
        """Whether each definition of `chain` is a statement directly in the body of the class before it."""
        for outer, inner in zip(chain, chain[1:]):
            block = self.parents.get(inner)
            if not isinstance(outer, cst.ClassDef) or block is not outer.body:
                return False
        return True

    @cached_property
    def _module_positions(self) -> Mapping[cst.CSTNode, CodeRange]:
        return MetadataWrapper(self.tree, unsafe_skip_copy=True).resolve(PositionProvider)

    def _top_level_statement(self, node: cst.CSTNode) -> cst.CSTNode | None:
        statement = None
        for ancestor in (node, *self.ancestors(node)):
            if ancestor is self.tree:
                return statement
            statement = ancestor
        return None

    def _statement_positions(self, statement: cst.CSTNode) -> _Located | None:
        if statement not in self._located_statements:
            self._located_statements[statement] = (
                self._locate(statement) if self.parents.get(statement) is self.tree else self._locate_method(statement)
            )
        return self._located_statements[statement]

    def _locate(self, statement: cst.CSTNode) -> _Located | None:
        first_line = self._statement_code_lines.get(statement)
        if first_line is None:
            return None
        alone = self.tree.with_changes(body=[statement], header=[], footer=[])
        line_start = self._line_offsets[first_line - 1] if first_line - 1 < len(self._line_offsets) else -1
        if line_start < 0 or not self.source.startswith(alone.code, line_start):
            return None
        return MetadataWrapper(alone, unsafe_skip_copy=True).resolve(PositionProvider), first_line - 1, None

    def _locate_method(self, method: cst.CSTNode) -> _Located | None:
        """Positions of a method's nodes from its code generated alone, at module level: each generated line must
        be the file's line less the method's indentation (code, comments) or the very same (the lines a string
        or a bracket continues on, which libcst writes as they are); their columns are shifted by what was
        left off. None when any line differs, or the method cannot be paired with CPython's."""
        python_method = self._python_definition(method)
        if python_method is None:
            return None
        first_line, content_line = _code_lines(method, python_method)
        offsets = self._line_offsets
        alone = self.tree.with_changes(body=[method], header=[], footer=[])
        code = alone.code
        generated = [code[start:end] for start, end in zip(line_starts(code), [*line_starts(code)[1:], len(code)])]
        if first_line < 1 or content_line > len(offsets) or first_line - 1 + len(generated) > len(offsets):
            return None

        def file_line(number: int) -> str:  # 1-based, with its line end
            return self.source[offsets[number - 1] : offsets[number] if number < len(offsets) else len(self.source)]

        content = file_line(content_line)
        indentation = content[: len(content) - len(content.lstrip(" \t"))]
        shifts = []
        for index, line in enumerate(generated):
            in_file = file_line(first_line + index)
            if in_file == indentation + line or (not line.strip("\r\n") and in_file.strip(" \t\r\n") == ""):
                shifts.append(len(indentation) if line.strip("\r\n") else 0)
            elif in_file == line:
                shifts.append(0)
            else:
                return None
        return MetadataWrapper(alone, unsafe_skip_copy=True).resolve(PositionProvider), first_line - 1, shifts

    def _python_definition(self, definition: cst.CSTNode) -> ast.AST | None:
        """CPython's node of a definition nested in top-level classes (`_method_in_a_long_class`): the statements
        of each body are paired in order, as `_statement_code_lines` pairs the module's."""
        path = [definition]
        while self.parents.get(path[0]) is not self.tree:
            block = self.parents.get(path[0])
            owner = self.parents.get(block) if block is not None else None
            if not isinstance(owner, cst.ClassDef):
                return None
            path.insert(0, owner)
        python_node = self._python_statements.get(path[0])
        for outer, inner in zip(path, path[1:]):
            if python_node is None or not isinstance(outer, cst.ClassDef):
                return None
            index = 0
            for statement in outer.body.body:
                if statement is inner:
                    break
                index += _python_statement_count(statement)
            body = getattr(python_node, "body", [])
            python_node = body[index] if index < len(body) else None
        expected = (ast.ClassDef,) if isinstance(definition, cst.ClassDef) else (ast.FunctionDef, ast.AsyncFunctionDef)
        if not isinstance(python_node, expected) or python_node.name != definition.name.value:  # type: ignore[attr-defined]
            return None
        return python_node

    @cached_property
    def _line_offsets(self) -> list[int]:
        """Where each line starts in the source, with CPython's and libcst's line ends."""
        return line_starts(self.source)

    @cached_property
    def _statement_code_lines(self) -> dict[cst.CSTNode, int]:
        """The line where each top-level statement's code (its leading blank and comment lines included)
        starts, from CPython's statement lines: empty when the two parsers' statements do not pair up."""
        lines: dict[cst.CSTNode, int] = {}
        for statement, first in self._python_statements.items():
            lines[statement] = _code_lines(statement, first)[0]
        return lines

    @cached_property
    def _statement_code_lines_after(self) -> dict[cst.CSTNode, int]:
        """For each top-level statement, the line the next one's code starts on (past the file's end for the last)."""
        starts = list(self._statement_code_lines.items())
        after = {statement: line for (statement, _), (_, line) in zip(starts, starts[1:])}
        if starts:
            after[starts[-1][0]] = len(self._line_offsets) + 1
        return after

    @cached_property
    def _python_statements(self) -> dict[cst.CSTNode, ast.stmt]:
        """Each top-level statement's first CPython statement (a line of `a; b` is two): empty when the two
        parsers' statements do not pair up."""
        if self._python_tree is None:
            try:
                self._python_tree = ast.parse(self.source)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                return {}
        python_statements = self._python_tree.body
        paired: dict[cst.CSTNode, ast.stmt] = {}
        index = 0
        for statement in self.tree.body:
            count = _python_statement_count(statement)
            if index + count > len(python_statements):
                return {}
            paired[statement] = python_statements[index]
            index += count
        return paired if index == len(python_statements) else {}

    def ancestors(self, node: cst.CSTNode) -> Iterator[cst.CSTNode]:
        parent = self.parents.get(node)
        while parent is not None:
            yield parent
            parent = self.parents.get(parent)

    def grandparent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        """The parent's parent: for a method, the ClassDef around its IndentedBlock."""
        parent = self.parents.get(node)
        return self.parents.get(parent) if parent is not None else None

    def single_assignment(self, expr: cst.BaseExpression) -> cst.BaseExpression:
        """The value a local name is bound to, when the enclosing function binds it exactly once; else `expr`."""
        function = self.enclosing_function(expr)
        if not isinstance(expr, cst.Name) or function is None:
            return expr
        values = bindings(function).get(expr.value, [])
        if (
            len(values) == 1
            and isinstance(values[0], cst.Assign)
            and len(values[0].targets) == 1
            and isinstance(values[0].targets[0].target, cst.Name)
        ):
            return values[0].value
        return expr

    def enclosing_function(self, node: cst.CSTNode) -> cst.FunctionDef | None:
        for ancestor in self.ancestors(node):
            if isinstance(ancestor, cst.FunctionDef):
                return ancestor
        return None

    def under_no_grad(self, node: cst.CSTNode) -> bool:
        """Whether `node` runs with gradient recording off: inside `with torch.no_grad():` (or
        inference_mode, set_grad_enabled(False)) or a function decorated with one."""
        for ancestor in self.ancestors(node):
            if isinstance(ancestor, cst.With) and any(disables_grad(item.item) for item in ancestor.items):
                return True
            if isinstance(ancestor, cst.FunctionDef) and any(disables_grad(d.decorator) for d in ancestor.decorators):
                return True
        return False

    def release(self) -> None:
        """Let go of the tree and everything computed about it, once the lint is done with this file. The facts
        hold the module and the module its facts: without this, only a pass of the cyclic collector over
        every node frees them (a long file's regions each paid one)."""
        self._facts.clear()
        self.context.answers.clear()
        self.context.children.clear()
        self.__dict__.clear()

    def fact(self, build: Callable[[ParsedModule], Fact]) -> Fact:
        """What `build` computes from this file (`facts.function_model.FunctionModel`, for one), built on the
        first request and shared by every rule after it. The analyses live above this module, in facts/, and
        ask for themselves through here, so the parsed file names none of them."""
        if build not in self._facts:
            self._facts[build] = build(self)
        return self._facts[build]  # type: ignore[return-value]


# A file at least this long is parsed in pieces of about this many characters (see parse_in_pieces).
PIECES_FROM = 16_000
PIECE_SIZE = 4_000


def parse_in_pieces(
    source: str, python_tree: ast.Module | None, piece_size: int = PIECE_SIZE, pieces_from: int = PIECES_FROM
) -> cst.Module:
    """libcst's tree of `source`, the same as `cst.parse_module(source)` gives, built from pieces of consecutive
    top-level statements parsed one at a time. libcst's parser needs far more memory for one long text than
    for the same text in pieces (a 1.3 MB module: 556 MB at its peak whole, 198 MB in pieces) and somewhat more
    time. The pieces start where CPython's AST says a top-level statement starts; comment lines a piece ends
    with, or starts with before its first statement, become that statement's leading lines, where libcst puts
    them in a whole parse. A file whose pieces do not agree on the newline and indentation libcst detects, or
    whose piece fails to parse, is parsed whole."""
    if python_tree is None or len(source) < pieces_from or len(python_tree.body) < 2:
        return cst.parse_module(source)
    starts = line_starts(source)
    cuts = [0]  # the first piece starts with the file, its header comments included
    previous_end = python_tree.body[0].end_lineno or 0
    for statement in python_tree.body[1:]:
        first_line = min([statement.lineno, *(d.lineno for d in getattr(statement, "decorator_list", ()))])
        if first_line > previous_end and first_line - 1 < len(starts):
            offset = starts[first_line - 1]
            if offset - cuts[-1] >= piece_size:
                cuts.append(offset)
        previous_end = max(previous_end, statement.end_lineno or statement.lineno)
    if len(cuts) < 2:
        return cst.parse_module(source)
    try:
        pieces = [cst.parse_module(source[start:end]) for start, end in zip(cuts, [*cuts[1:], len(source)])]
    except cst.ParserSyntaxError:
        return cst.parse_module(source)  # for the error at its place in the whole file
    first = pieces[0]
    if any(
        piece.default_newline != first.default_newline or piece.default_indent != first.default_indent
        for piece in pieces[1:]
    ):
        return cst.parse_module(source)
    body: list[cst.BaseStatement] = []
    carried: list[cst.EmptyLine] = []  # comment and blank lines waiting for the next statement
    for index, piece in enumerate(pieces):
        if index:
            carried.extend(piece.header)
        statements = list(piece.body)
        if statements and carried:
            statements[0] = statements[0].with_changes(leading_lines=[*carried, *statements[0].leading_lines])
            carried = []
        body.extend(statements)
        if index < len(pieces) - 1:
            carried.extend(piece.footer)
    last = pieces[-1]
    return first.with_changes(
        body=body, footer=[*carried, *last.footer], has_trailing_newline=last.has_trailing_newline
    )

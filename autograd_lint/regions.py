"""A long file cut into regions that are linted one at a time, each reporting exactly what the whole file's
lint reports in its statements.

libcst's tree of a file, its parents and the rules' facts take about 250 bytes of memory per byte of
source (a 13 MB file: 3.3 GB), and CPython's AST of it another 150. A region is a group of the file's
top-level statements that share nothing with the others through what the rules and facts look up across
statements, all of which goes by name: a module-level binding (a name bound outside functions and classes,
a top-level function or class), a class name at any depth (the Function model finds classes by name), a
name bound to `Cls.apply` or a partial of it anywhere (calls of it apply the class), a method or nested
function and its calls (`self.f(...)`, `cls.f(...)`, `f(...)`: `gradient_reach.callers`), the module's import
table. From CPython's AST, read in chunks, statements are connected to the statements that bind a name
they mention and those that mention a name they bind; the connected groups, packed in source order into
regions of about `RegionLimits.region_size` characters, are the regions.

Imports would connect everything (every statement mentions `torch`): a region gets, as context, a copy
of the import statement that binds each name it mentions, when every top-level binding of that name is
the same import text; a context statement's own diagnostics are its owner region's to report. The
module's import table (`ParsedModule.imports`: the file's imports at any depth and its module-level
aliases, the last one of a name winning) is the whole file's in every region.

What the rules read beyond the statements around a finding, and how it is kept:
- the first top-level statement that calls `.apply` outside nested scopes (`runtime_writes`: module-level
  writes after it run at training time): context in every region with statements after it;
- the whole text (`set_materialize_grads` anywhere, AGL011), the module's first autocast region (AGL022)
  and its first second derivative (AGL010): a file whose text mentions them is linted whole;
- `global` statements, star imports, `globals()`/`locals()`/`vars()`/`exec`/`eval`/`__import__`: what they
  bind or read cannot be told, the file is linted whole;
- positions, `comes_before` and the order of classes: each region keeps the file's statements in order,
  with their columns, and its positions are mapped back to the file's lines (`ParsedModule.file_lines`);
- the path, the module name and the package on disk: the file's, for every region.
A file with a syntax error, or one component that is most of it, is linted whole, as is every file under
`RegionLimits.regions_from` characters; so is one on which a region's parse or a rule fails (the engine).
"""

from __future__ import annotations

import ast
import gc
import re
import sys
from array import array
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .core.lines import line_starts
from .facts.second_derivatives import takes_second_derivatives


@dataclass(frozen=True)
class RegionLimits:
    # A file at least this long is linted in regions. Below it the whole file's trees cost at most about 130 MB
    # (250 bytes per byte), and the regions' extra CPython parses cost more time than they save (a 330 KB
    # module: 19 % slower in regions, 50 % less memory); at 1.3 MB they take the same time and 80 % less memory.
    regions_from: int = 512_000
    # Components are packed into regions of about this many characters: small enough that a region's tree
    # is a few tens of MB, large enough that the regions' parses, prefilters and import copies cost little.
    region_size: int = 64_000
    # A file with a component larger than this share of it is linted whole: cutting off the rest saves little.
    largest_share: float = 0.5


DEFAULT_LIMITS = RegionLimits()
Result = TypeVar("Result")

# Text the rules read from the whole module rather than from the statements around a finding.
_WHOLE_MODULE_TEXT = re.compile(r"set_materialize_grads|autocast")
# Names whose use may read or write module-level names without naming them.
_DYNAMIC_NAMES = frozenset({"globals", "locals", "vars", "exec", "eval", "__import__"})
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_SCOPES = (*_DEFINITIONS, ast.Lambda)  # what libcst's scopes are (`core.syntax.walk`)


@dataclass
class Region:
    """Statements of one file linted together: `source` is their text (and their context's), whole lines in
    the file's order; `file_lines[i]` is the file's line of the region's line i + 1; diagnostics on a line
    in `own_lines` ranges (first, last) are the region's to report."""

    source: str
    file_lines: array[int]  # compact: a long file has a million lines
    own_lines: list[tuple[int, int]]

    def owns(self, line: int) -> bool:
        index = bisect_right(self.own_lines, (line, float("inf"))) - 1
        return index >= 0 and self.own_lines[index][0] <= line <= self.own_lines[index][1]


@dataclass
class RegionPlan:
    regions: list[Region]
    import_source: str  # the file's import statements and module-level aliases, for its import table


@dataclass(slots=True)
class _Unit:
    """One or more top-level statements that share lines (`import a; x = 1`), with the comment and blank
    lines before them: the smallest piece of a file that is cut out whole."""

    text_start: int  # the first line of its text (leading comments included)
    first: int  # the line its code starts on (its first decorator)
    end: int
    names: _Names


class _Reading:
    """What a unit's statements mention and bind, while they are read."""

    def __init__(self) -> None:
        self.uses: set[str] = set()  # names mentioned anywhere in it
        self.binds: set[str] = set()  # names it binds at module level, not by an import
        self.imports: set[str] = set()  # names it binds at module level by an import
        self.defines: set[str] = set()  # class names at any depth, apply aliases
        self.inner_functions: set[str] = set()  # methods and nested functions
        self.method_calls: set[str] = set()  # `self.f` and `cls.f`
        self.import_texts: list[str] = []  # its import statements at any depth, in order
        self.alias_texts: list[str] = []  # its `name = dotted.name` statements
        self.applies_at_top = False  # calls `.apply` where runtime_writes looks for the first such statement
        self.dynamic = False


class _Names:
    """A `_Reading` once read: a file has one per statement, so its empty collections are one shared one."""

    __slots__ = tuple(vars(_Reading()))

    def __init__(self, read: _Reading) -> None:
        self.uses, self.binds, self.imports = _packed(read.uses), _packed(read.binds), _packed(read.imports)
        self.defines, self.inner_functions = _packed(read.defines), _packed(read.inner_functions)
        self.method_calls = _packed(read.method_calls)
        self.import_texts, self.alias_texts = tuple(read.import_texts), tuple(read.alias_texts)
        self.applies_at_top, self.dynamic = read.applies_at_top, read.dynamic


_NOTHING: frozenset[str] = frozenset()


def _packed(names: set[str]) -> frozenset[str]:
    return frozenset(names) or _NOTHING


def plan_regions(source: str, limits: RegionLimits = DEFAULT_LIMITS, jobs: int = 1) -> RegionPlan | None:
    """The regions of `source`, or None when the file is to be linted whole: shorter than `limits` say, with
    a syntax error, or where the regions could not promise the whole file's diagnostics. With `jobs` > 1
    the file is read in that many processes."""
    if len(source) < limits.regions_from:
        return None
    if _WHOLE_MODULE_TEXT.search(source) or takes_second_derivatives(source):
        return None
    starts = line_starts(source)
    units = _file_units(source, starts, jobs)
    if units is None or len(units) < 2:
        return None
    regions = _pack(units, _connect(units, source, starts), source, starts, limits)
    if regions is None or len(regions) < 2:
        return None
    return RegionPlan(regions, _import_source(units))


# Where a top-level statement may start: a line that starts with code at column 0.
_CODE_AT_COLUMN_0 = re.compile(r"^[^\s#)\]}]", re.MULTILINE)
# CPython's AST of the whole file takes about 150 bytes per byte of source (2 GB for 13 MB): the file is
# parsed in chunks of about this many characters, each read and dropped before the next.
_CHUNK_SIZE = 64_000
# A chunk that does not parse is parsed again twice as long, up to this: a statement longer than that (a
# 10 MB string of data) costs the plan little, and the file is linted whole.
_LONGEST_CHUNK = 16 * _CHUNK_SIZE


def _file_units(source: str, starts: list[int], jobs: int) -> list[_Unit] | None:
    """The file's units, its spans read in `jobs` forked processes (each span ends where a line starts with
    code at column 0: the span before it proves that line starts a statement by parsing up to it, and
    the span after it by parsing from it); read here, in one span, when one of them could not be."""
    units: list[_Unit] | None = None
    if jobs > 1 and FORKS:
        cuts = [0]
        for part in range(1, jobs):
            cut = _CODE_AT_COLUMN_0.search(source, max(cuts[-1] + 1, len(source) * part // jobs))
            if cut is not None and cut.start() < len(source):
                cuts.append(cut.start())
        spans = list(zip(cuts, [*cuts[1:], len(source)]))
        if len(spans) > 1:
            read = forked_map(lambda index: _units(source, starts, *spans[index]), len(spans), len(spans))
            if read is not None and all(span is not None for span in read):
                units = []
                for span in read:
                    assert span is not None
                    if units and span:
                        span[0].text_start = units[-1].end + 1
                    units += span
    if units is None:
        units = _units(source, starts, 0, len(source))
    if not units:
        return None
    units[-1].end = max(units[-1].end, len(starts))  # the file's last comment lines go with its last statement
    return units


def _units(source: str, starts: list[int], begin: int, stop: int) -> list[_Unit] | None:
    """The units of `source[begin:stop]`, read from CPython's AST of one chunk at a time; None when a chunk
    cannot be parsed (a syntax error, reported by the whole file's lint) or a statement binds or reads
    names it does not name (`global`, a star import, `globals()`). A chunk ends where a line starts
    with code at column 0. That line starts a top-level statement exactly when the chunk before it parses:
    a chunk cut inside a string, a bracket or a continued line does not, and one cut before an `else:` makes
    the next chunk fail; either is parsed again with more lines."""
    candidates = [match.start() for match in _CODE_AT_COLUMN_0.finditer(source, begin, stop)]
    candidates.append(stop)
    units: list[_Unit] = []
    while begin < stop:
        size = _CHUNK_SIZE
        while True:
            index = bisect_right(candidates, begin + size - 1)
            end = candidates[min(index, len(candidates) - 1)]
            try:
                tree = ast.parse(source[begin:end])
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                if end >= stop or size >= _LONGEST_CHUNK:
                    return None  # a syntax error, or a statement so long that the file is better linted whole
                size *= 2
                continue
            break
        line_offset = bisect_right(starts, begin) - 1  # lines before the chunk
        read_before = len(units)
        _add_units(units, tree, source[begin:end], line_offset)
        if any(unit.names.dynamic for unit in units[read_before:]):
            return None  # nothing to cut: the file is linted whole
        begin = end
    return units


FORKS = sys.platform.startswith("linux")  # where processes are forked (elsewhere spawned, without the plan)
_forked_function: Callable[[int], Any] | None = None  # what forked processes run: inherited, never pickled


def forked_map(function: Callable[[int], Result], count: int, processes: int) -> list[Result] | None:
    """`function(index)` for each index below `count`, in `processes` processes forked from this one (they
    inherit what `function` reads: it is never pickled, its results are); None when one of them died (a
    crash in native code). Only where FORKS."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    global _forked_function
    _forked_function = function
    try:
        context = multiprocessing.get_context("fork")
        # what a process inherits stays: the collector passes after each region need not walk it
        with ProcessPoolExecutor(max_workers=processes, mp_context=context, initializer=gc.freeze) as pool:
            return list(pool.map(_run_forked, range(count)))
    except BrokenProcessPool:
        return None
    finally:
        _forked_function = None


def _run_forked(index: int) -> Any:
    assert _forked_function is not None  # set before the fork
    return _forked_function(index)


def _add_units(units: list[_Unit], tree: ast.Module, text: str, line_offset: int) -> None:
    starts = line_starts(text)
    groups: list[tuple[int, int, list[ast.stmt]]] = []  # (first line, last line, statements sharing lines)
    for statement in tree.body:
        first = line_offset + min([statement.lineno, *(d.lineno for d in getattr(statement, "decorator_list", ()))])
        end = line_offset + (statement.end_lineno or statement.lineno)
        if groups and first <= groups[-1][1]:
            groups[-1] = (groups[-1][0], max(groups[-1][1], end), [*groups[-1][2], statement])
        else:
            groups.append((first, end, [statement]))
    for first, end, statements in groups:
        reading = _Reading()
        for statement in statements:
            _read(statement, reading, text, starts)
        units.append(_Unit(units[-1].end + 1 if units else 1, first, end, _Names(reading)))


def _read(statement: ast.stmt, names: _Reading, text: str, starts: list[int]) -> None:
    """What `statement` mentions and binds, into `names`."""
    # (node, inside a function, class or lambda: not at module level, past one that is not the statement:
    # where runtime_writes' walk of a top-level statement stops looking for `.apply`)
    if (
        type(statement) is ast.Assign
        and len(statement.targets) == 1
        and type(statement.targets[0]) is ast.Name
        and type(statement.value) in (ast.Name, ast.Attribute)
    ):
        names.alias_texts.append(_segment(statement, text, starts))
    stack: list[tuple[Any, bool, bool]] = [(statement, False, False)]
    while stack:
        node, nested, past_scope = stack.pop()
        kind = type(node)
        if kind is ast.Name:
            names.uses.add(node.id)
            if not nested and not isinstance(node.ctx, ast.Load):
                names.binds.add(node.id)
            if node.id in _DYNAMIC_NAMES:
                names.dynamic = True
        elif kind is ast.Attribute:
            value = node.value
            if type(value) is ast.Name and value.id in ("self", "cls"):
                names.method_calls.add(node.attr)
        elif kind is ast.Call:
            func = node.func
            if not past_scope and type(func) is ast.Attribute and func.attr == "apply":
                names.applies_at_top = True
        elif kind is ast.Import or kind is ast.ImportFrom:
            for alias in node.names:
                if alias.name == "*":
                    names.dynamic = True
                local = alias.asname or alias.name.split(".")[0]
                names.uses.add(local)
                if not nested:
                    names.imports.add(local)
            names.import_texts.append(_segment(node, text, starts))
        elif kind in _DEFINITIONS:
            if not nested:
                names.binds.add(node.name)
            elif kind is ast.ClassDef:
                names.defines.add(node.name)  # the Function model finds classes by name at any depth
            else:
                names.inner_functions.add(node.name)
        elif kind is ast.Global:
            names.dynamic = True
        elif kind is ast.ExceptHandler or kind is ast.MatchAs or kind is ast.MatchStar:
            if node.name:
                names.uses.add(node.name)
                if not nested:
                    names.binds.add(node.name)
        elif kind is ast.MatchMapping and node.rest:
            names.uses.add(node.rest)
            if not nested:
                names.binds.add(node.rest)
        if (kind is ast.Assign or kind is ast.AnnAssign) and node.value is not None and _applies(node.value):
            for target in node.targets if kind is ast.Assign else [node.target]:
                for name in ast.walk(target):
                    if type(name) is ast.Name:
                        names.defines.add(name.id)  # `f = Cls.apply`: calls of `f` anywhere apply Cls
        scope = kind in _SCOPES
        child_nested, child_past_scope = nested or scope, past_scope or (scope and node is not statement)
        fields = _NODE_FIELDS.get(kind)
        if fields is None:
            fields = _NODE_FIELDS[kind] = tuple(f for f in reversed(kind._fields) if f not in _LEAF_FIELDS)
        for field_name in fields:  # pushed last to first: popped in source order, the import table's order
            value = getattr(node, field_name)
            if type(value) is list:
                for child in reversed(value):
                    if isinstance(child, ast.AST):
                        stack.append((child, child_nested, child_past_scope))
            elif isinstance(value, ast.AST):
                stack.append((value, child_nested, child_past_scope))


# Fields that hold no name: a Name's load or store context, an operator.
_LEAF_FIELDS = frozenset({"ctx", "op", "ops"})
_NODE_FIELDS: dict[type, tuple[str, ...]] = {}  # per node type, its other fields, last to first


def _applies(value: ast.expr) -> bool:
    """`Cls.apply` or a call of something named `partial` (`partial(Cls.apply, a)`)."""
    if type(value) is ast.Attribute:
        return value.attr == "apply"
    if type(value) is ast.Call:
        func = value.func
        name = func.attr if type(func) is ast.Attribute else func.id if type(func) is ast.Name else ""
        return name == "partial"
    return False


class _Components:
    """Union-find over the units."""

    def __init__(self, count: int):
        self.parent = list(range(count))

    def find(self, index: int) -> int:
        root = index
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[index] != root:
            self.parent[index], index = root, self.parent[index]
        return root

    def join(self, indices: list[int]) -> None:
        roots = {self.find(index) for index in indices}
        if len(roots) > 1:
            first, *others = sorted(roots)
            for other in others:
                self.parent[other] = first


@dataclass
class _Connections:
    components: list[list[int]]  # unit indices of each component, in source order
    context_names: dict[str, list[int]]  # an import-bound name mentioned by others: the units that bind it


def _connect(units: list[_Unit], source: str, starts: list[int]) -> _Connections:
    keys: dict[str, list[int]] = {}  # a name bound at module level, a class's name, an apply alias: its units
    import_binders: dict[str, list[int]] = {}
    for index, unit in enumerate(units):
        for name in unit.names.binds | unit.names.defines:
            keys.setdefault(name, []).append(index)
        for name in unit.names.imports:
            import_binders.setdefault(name, []).append(index)
    context_names: dict[str, list[int]] = {}
    for name, binders in import_binders.items():
        if name in keys:
            keys[name].extend(binders)
        elif len({_code(units[i], source, starts) for i in binders}) == 1:
            context_names[name] = binders  # every binding the same import: a copy serves every use
        else:
            keys[name] = list(binders)
    inner: dict[str, list[int]] = {}  # methods and nested functions: their definitions
    for index, unit in enumerate(units):
        for name in unit.names.inner_functions:
            inner.setdefault(name, []).append(index)
    callers: dict[str, list[int]] = {}
    for index, unit in enumerate(units):
        for name in unit.names.uses:
            if name in keys:
                keys[name].append(index)
            if name in inner:
                callers.setdefault(name, []).append(index)
        for name in unit.names.method_calls:
            if name in inner:
                callers.setdefault(name, []).append(index)
    components = _Components(len(units))
    for members in keys.values():
        components.join(members)
    for name, calling in callers.items():
        components.join(calling + inner[name])  # `callers()`: calls of a method or nested function by name
    grouped: dict[int, list[int]] = {}
    for index in range(len(units)):
        grouped.setdefault(components.find(index), []).append(index)
    return _Connections(sorted(grouped.values()), context_names)


def _code(unit: _Unit, source: str, starts: list[int]) -> str:
    return source[starts[unit.first - 1] : _line_end(unit.end, source, starts)]


def _line_end(line: int, source: str, starts: list[int]) -> int:
    return starts[line] if line < len(starts) else len(source)


def _text_size(unit: _Unit, source: str, starts: list[int]) -> int:
    return _line_end(unit.end, source, starts) - starts[unit.text_start - 1]


def _pack(
    units: list[_Unit], connections: _Connections, source: str, starts: list[int], limits: RegionLimits
) -> list[Region] | None:
    sizes = [_text_size(unit, source, starts) for unit in units]
    largest = max(sum(sizes[i] for i in component) for component in connections.components)
    if largest > limits.largest_share * len(source):
        return None
    first_apply = next((index for index, unit in enumerate(units) if unit.names.applies_at_top), None)
    groups: list[list[int]] = [[]]
    filled = 0
    for component in connections.components:
        size = sum(sizes[i] for i in component)
        if groups[-1] and filled + size > limits.region_size:
            groups.append([])
            filled = 0
        groups[-1].extend(component)
        filled += size
    regions = []
    for own in groups:
        own.sort()
        regions.append(_region(units, own, _context(units, own, connections, first_apply), source, starts))
    return regions


def _context(units: list[_Unit], own: list[int], connections: _Connections, first_apply: int | None) -> set[int]:
    """The units a region's own units need beside them: for each import-bound name they mention, the
    nearest binding before its first mention (the first binding when none precedes); and the file's first
    top-level `.apply` statement, when the region has statements after it."""
    owned = set(own)
    context: set[int] = set()
    first_use: dict[str, int] = {}
    for index in own:
        for name in units[index].names.uses:
            if name in connections.context_names and name not in first_use:
                first_use[name] = index
    for name, index in first_use.items():
        binders = connections.context_names[name]
        before = bisect_right(binders, index) - 1
        if before >= 0 and binders[before] in owned:
            continue
        context.add(binders[max(before, 0)])
    if first_apply is not None and first_apply not in owned and own[-1] > first_apply:
        context.add(first_apply)
    return context - owned


def _region(units: list[_Unit], own: list[int], context: set[int], source: str, starts: list[int]) -> Region:
    pieces: list[str] = []
    file_lines = array("l")
    own_lines: list[tuple[int, int]] = []
    owned = set(own)
    for index in sorted(owned | context):
        unit = units[index]
        pieces.append(source[starts[unit.text_start - 1] : _line_end(unit.end, source, starts)])
        file_lines.extend(range(unit.text_start, unit.end + 1))
        if index in owned:
            own_lines.append((unit.text_start, unit.end))
    return Region("".join(pieces), file_lines, own_lines)


def _import_source(units: list[_Unit]) -> str:
    """The file's import statements at any depth, then its module-level `name = dotted.name` assignments, one
    a line: what `ParsedModule` builds its import table from, in the same order. Of identical import
    statements the last is kept: each name's last binding is the one the table holds."""
    texts = [text for unit in units for text in unit.names.import_texts]
    last = {text: index for index, text in enumerate(texts)}
    lines = [text for index, text in enumerate(texts) if last[text] == index]
    lines += [text for unit in units for text in unit.names.alias_texts]
    return "".join(line + "\n" for line in lines)


def _segment(node: ast.stmt, source: str, starts: list[int]) -> str:
    """`node`'s source text (CPython's columns count UTF-8 bytes)."""
    return source[
        _offset(node.lineno, node.col_offset, source, starts) : _offset(
            node.end_lineno or node.lineno, node.end_col_offset or 0, source, starts
        )
    ]


def _offset(line: int, byte_column: int, source: str, starts: list[int]) -> int:
    start = starts[line - 1]
    text = source[start : _line_end(line, source, starts)]
    if text.isascii():
        return start + byte_column
    return start + len(text.encode("utf-8")[:byte_column].decode("utf-8", errors="ignore"))

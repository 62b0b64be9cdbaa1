"""Jupyter notebooks (`.ipynb`): their code cells as one module, and the way back to cells.

A notebook runs its code cells in one namespace, so a Function defined in one cell and applied in another
is linted as one module: the code cells, joined in order. IPython syntax that is not Python (`%timeit`,
`!pip install`, `obj?`, `files = !ls`, automagics such as `pip install x`) is replaced by `pass` on the
same line, so every other line and column stays where the user sees it. A cell magic on the first line
skips the cell, as in ruff, unless its body is Python run in the notebook's namespace (`%%time`,
`%%timeit`, `%%capture`, `%%prun`): then only the magic line is replaced. A cell that still is not Python
is left out of the module and reported as its own syntax error; the other cells are linted.

Cells are numbered as in ruff and as the user counts them in Jupyter: 1-based, over all cells, markdown
included. Lines and columns are 1-based inside the cell.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from functools import cached_property

from ..core.lines import LINE_BREAK

NOTEBOOK_SUFFIX = ".ipynb"
_MODULE_LINE = re.compile(r"\bline (\d+)\b")


class NotebookError(ValueError):
    """The file is not a notebook autograd-lint can read; the message is one line for the user."""


def is_notebook(path: str) -> bool:
    return path.lower().endswith(NOTEBOOK_SUFFIX)


@dataclass(frozen=True)
class CodeCell:
    number: int  # 1-based over all cells
    source: str  # as the user wrote it
    lines: tuple[str, ...]  # what the linter parses: the source's lines with IPython syntax replaced
    first_line: int  # where the cell starts in the joined module; 0 when it is left out


@dataclass(frozen=True)
class CellSyntaxError:
    cell: int
    line: int
    column: int
    message: str


@dataclass(frozen=True)
class Notebook:
    source: str  # the linted cells joined: what the rules see
    cells: tuple[CodeCell, ...]  # every code cell, linted or not
    syntax_errors: tuple[CellSyntaxError, ...]
    text: str = ""  # the .ipynb file's JSON text
    source_key: str = "source"  # "input" in nbformat 3

    def file_position(self, cell: int, line: int, column: int) -> tuple[int, int] | None:
        """The .ipynb file's (line, column) of a cell's (line, column), all 1-based: where the character
        sits in the JSON text, the place a diff or a code-scanning view of the file shows."""
        code_cell, strings = self.cell(cell), self._source_strings.get(cell - 1)
        if code_cell is None or not strings:
            return None
        offset = sum(len(part) for part in _NEWLINE_KEEP.split(code_cell.source)[: 2 * (line - 1)]) + column - 1
        for index, (file_line, file_column, raw) in enumerate(strings):
            length = len(json.loads(f'"{raw}"'))
            if offset < length or index == len(strings) - 1:
                return _raw_position(file_line, file_column, raw, offset)
            offset -= length
        return None

    @cached_property
    def _source_strings(self) -> dict[int, list[tuple[int, int, str]]]:
        # Scanned only when a report asks for file positions (sarif, github, gitlab), not on every lint.
        return _source_strings(self.text, self.source_key)

    def cell(self, number: int) -> CodeCell | None:
        return next((cell for cell in self.cells if cell.number == number), None)

    def cell_source(self, number: int) -> str | None:
        cell = self.cell(number)
        return cell.source if cell is not None else None

    def cell_position(self, line: int) -> tuple[int, int]:
        """(cell, line in the cell) of a line of the joined module."""
        linted = [cell for cell in self.cells if cell.first_line]
        if not linted:
            return 1, line
        owner = linted[0]
        for cell in linted:
            if cell.first_line > line:
                break
            owner = cell
        # A position after the last line (an error at the end of the module) stays in the last cell.
        return owner.number, max(1, min(line - owner.first_line + 1, len(owner.lines) + 1))

    def cell_message(self, message: str) -> str:
        """A message that names another place by module line (`(line 20)`, `on line 7`), in cells."""

        def in_cell(match: re.Match) -> str:
            cell, line = self.cell_position(int(match.group(1)))
            return f"line {line} of cell {cell}"

        return _MODULE_LINE.sub(in_cell, message)

    def module_line(self, cell: int, line: int) -> int | None:
        """The joined module's line of a cell's line (the inverse of `cell_position`)."""
        for candidate in self.cells:
            if candidate.number == cell and candidate.first_line:
                return candidate.first_line + line - 1
        return None


def read_notebook(data: bytes | str) -> Notebook:
    """A notebook from its file's bytes (nbformat 4, or 3). Raises NotebookError for anything else."""
    try:
        document = json.loads(data)
    except json.JSONDecodeError as error:
        where = f"at line {error.lineno} column {error.colno}"
        raise NotebookError(f"not a notebook: invalid JSON: {error.msg} {where}") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise NotebookError(f"not a notebook: cannot decode as JSON text: {error}") from None
    except RecursionError:
        raise NotebookError("not a notebook: JSON nested too deeply") from None
    if not isinstance(document, dict):
        raise NotebookError(f"not a notebook: the JSON is {_kind(document)}, not an object")
    if _is_other_language(document):
        return Notebook("", (), ())  # an R or Julia notebook: nothing for a Python linter, as in ruff
    cells = []
    raw_cells = _raw_cells(document)
    key = "source" if document.get("nbformat", 4) >= 4 else "input"
    for number, raw_cell in enumerate(raw_cells, start=1):
        if not isinstance(raw_cell, dict):
            raise NotebookError(f"not a notebook: cell {number} is {_kind(raw_cell)}, not an object")
        if raw_cell.get("cell_type") != "code":
            continue
        source = _cell_source(raw_cell, number, key)
        code = _cell_code(source)
        if code is not None:
            cells.append((number, source, *code))
    text = data.decode(json.detect_encoding(data), "replace") if isinstance(data, bytes) else data
    return _joined(cells, text, key)


def _raw_cells(document: dict) -> list:
    version = document.get("nbformat", 4)
    if not isinstance(version, int) or isinstance(version, bool):
        raise NotebookError(f'not a notebook: "nbformat" is {_kind(version)}, not an integer')
    if version == 3:  # cells live in worksheets
        worksheets = document.get("worksheets")
        if not isinstance(worksheets, list) or not all(isinstance(w, dict) for w in worksheets):
            raise NotebookError('not a notebook: nbformat 3 without a "worksheets" list')
        cells = [cell for sheet in worksheets for cell in _list_field(sheet, "cells", "a worksheet")]
        return cells
    if version != 4:
        raise NotebookError(f"unsupported notebook format {version} (nbformat 4 and 3 are read)")
    return _list_field(document, "cells", "the notebook")


def _list_field(container: dict, key: str, owner: str) -> list:
    value = container.get(key)
    if not isinstance(value, list):
        what = "has no" if value is None else f"has {_kind(value)} as its"
        raise NotebookError(f'not a notebook: {owner} {what} "{key}" list')
    return value


def _cell_source(cell: dict, number: int, key: str) -> str:
    source = cell.get(key, "")
    if isinstance(source, str):
        return source
    if isinstance(source, list) and all(isinstance(part, str) for part in source):
        return "".join(source)
    what = f'cell {number}\'s "{key}" is {_kind(source)}'
    raise NotebookError(f"not a notebook: {what}, not a string or a list of strings")


def _is_other_language(document: dict) -> bool:
    metadata = document.get("metadata")
    info = metadata.get("language_info") if isinstance(metadata, dict) else None
    name = info.get("name") if isinstance(info, dict) else None
    return isinstance(name, str) and name.lower() != "python"


def _kind(value) -> str:
    if value is None:
        return "null"
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return kinds.get(type(value), type(value).__name__)


def _joined(cells: list[tuple], text: str, key: str) -> Notebook:
    """Each cell that is Python on its own joins the module; a cell that is not becomes its syntax error."""
    module_lines: list[str] = []
    code_cells = []
    errors = []
    for number, source, lines, error in cells:
        if error is not None:
            line, column, message = error
            errors.append(CellSyntaxError(number, line, column, message))
            code_cells.append(CodeCell(number, source, tuple(lines), 0))
            continue
        code_cells.append(CodeCell(number, source, tuple(lines), len(module_lines) + 1 if lines else 0))
        module_lines.extend(lines)
    source = "".join(line + "\n" for line in module_lines)
    return Notebook(source, tuple(code_cells), tuple(errors), text, key)


def _syntax_error(text: str) -> tuple[int, int, str] | None:
    try:
        ast.parse(text)
    except SyntaxError as error:
        return error.lineno or 1, max(error.offset or 1, 1), f"SyntaxError: {error.msg}"
    except (ValueError, RecursionError, MemoryError) as error:  # NUL bytes, pathological nesting
        return 1, 1, f"SyntaxError: {error or type(error).__name__}"
    return None


# --- where cells are in the file ------------------------------------------------------------------------

_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]|[^\s{}\[\],:"]+')


def _source_strings(text: str, key: str) -> dict[int, list[tuple[int, int, str]]]:
    """For each cell (0-based over all cells), where its source strings are in the file: a scan of the JSON
    text (already known to be valid) that follows the path `cells[i].<key>[j]` (`worksheets[w].cells[i]`
    in nbformat 3)."""
    found: dict[int, list[tuple[int, int, str]]] = {}
    stack: list[list] = []  # per open container: [kind, current key or index, the path up to it]
    path: tuple = ()
    pending_key = None
    cell_count = 0
    cell_index: dict[tuple, int] = {}  # the path of a cell -> its number over the whole notebook
    line, line_start = 1, 0
    position = 0
    for match in _JSON_TOKEN.finditer(text):
        newlines = text.count("\n", position, match.start())
        if newlines:
            line += newlines
            line_start = text.rfind("\n", position, match.start()) + 1
        position = match.start()
        token = match.group()
        top = stack[-1] if stack else None
        if token in "{[":
            here = path + ((top[1],) if top else ())
            is_cell = here[:-1] == ("cells",) or (len(here) == 4 and here[::2] == ("worksheets", "cells"))
            if top and top[0] == "[" and is_cell:
                cell_index[here] = cell_count
                cell_count += 1
            stack.append([token, None if token == "{" else 0, here])
            path = here
        elif token in "}]":
            stack.pop()
            path = stack[-1][2] if stack else ()
        elif top is None:  # never: the text is a valid JSON object, so every other token lies inside it
            continue
        elif token == ",":
            if top[0] == "[":
                top[1] += 1
            else:
                top[1] = None
        elif token == ":":
            top[1] = pending_key
        elif token.startswith('"'):
            if top and top[0] == "{" and top[1] is None:
                pending_key = json.loads(token)
                continue
            here = path + (top[1],)
            owner = here[:-1] if top[0] == "[" else here
            if owner and owner[-1] == key and owner[:-1] in cell_index:
                found.setdefault(cell_index[owner[:-1]], []).append((line, match.start() - line_start + 2, token[1:-1]))
    return found


def _raw_position(file_line: int, file_column: int, raw: str, offset: int) -> tuple[int, int]:
    """Where the `offset`-th decoded character of the JSON string `raw` (starting at file_line:file_column)
    is in the file: escapes (`\\n`, `\\"`, `\\u00e9`) take more than one column."""
    index = 0
    while offset > 0 and index < len(raw):
        if raw[index] == "\\":
            index += 6 if raw[index + 1 : index + 2] == "u" else 2
        else:
            index += 1
        offset -= 1
    return file_line, file_column + index


# --- IPython syntax ------------------------------------------------------------------------------------

_NEWLINE_KEEP = re.compile(r"(\r\n|\r|\n)")
# Cell magics whose body is Python run in the notebook's namespace; every other one (%%bash, %%html,
# %%writefile, ...) makes the cell something else, and the cell is skipped.
_PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun"})
_LINE_MAGIC = re.compile(r"[ \t]*(?:%|!)")
_HELP = re.compile(r"[ \t]*(?:\?{1,2}\S.*|[\w.*\[\]]+\?{1,2}[ \t]*)$")
_ASSIGNED_MAGIC = re.compile(r"(?P<target>[ \t]*[\w.\[\], ]+?[ \t]*=[ \t]*)(?:%|!)")
# IPython's automagics: `pip install torch` without the `%`, which ruff also recognises on a cell's first line.
_AUTOMAGICS = frozenset(
    "alias alias_magic autoawait autocall automagic bookmark cd code_wrap colors conda config debug dhist dirs "
    "doctest_mode edit env gui history killbgscripts load load_ext loadpy logoff logon logstart logstate logstop "
    "lsmagic macro magic mamba matplotlib micromamba notebook page pastebin pdb pdef pdoc pfile pinfo pinfo2 pip "
    "popd pprint precision prun psearch psource pushd pwd pycat pylab quickref recall rehashx reload_ext rerun "
    "reset reset_selective run save sc set_env sx system tb time timeit unalias unload_ext who who_ls whos xdel "
    "xmode".split()
)
_AUTOMAGIC = re.compile(rf"(?:{'|'.join(sorted(_AUTOMAGICS))})(?:[ \t]|$)")


def _cell_code(source: str) -> tuple[list[str], tuple[int, int, str] | None] | None:
    """(the lines the linter reads, their syntax error or None), or None for a cell that is not Python
    (`%%bash`). A cell that is Python as written is taken as written: IPython syntax is never Python."""
    lines = LINE_BREAK.split(source)
    if lines and lines[-1] == "":
        lines.pop()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and lines[first].lstrip().startswith("%%"):
        name = lines[first].lstrip()[2:].split(maxsplit=1)[0] if lines[first].strip() != "%%" else ""
        if name not in _PYTHON_CELL_MAGICS:
            return None
        lines[first] = "pass"
    elif _syntax_error("\n".join(lines) + "\n") is None:
        return lines, None
    lines = _without_ipython(lines)
    return lines, _syntax_error("\n".join(lines) + "\n")


def _without_ipython(lines: list[str]) -> list[str]:
    result = []
    continued = False  # the previous line was a magic ending in a backslash: IPython joins them
    for line, at_statement_start in zip(lines, _statement_starts(lines)):
        if continued:
            result.append("")
            continued = line.endswith("\\")
            continue
        replacement = _replace_ipython(line) if at_statement_start else None
        if replacement is None:
            result.append(line)
        else:
            result.append(replacement)
            continued = line.endswith("\\")
    return result


def _replace_ipython(line: str) -> str | None:
    indent = line[: len(line) - len(line.lstrip())]
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    if _LINE_MAGIC.match(line) or _HELP.match(line):
        return indent + "pass"
    assigned = _ASSIGNED_MAGIC.match(line)
    if assigned:  # `files = !ls`, `t = %timeit -o f()`: the name stays bound
        return assigned.group("target") + "None"
    if _AUTOMAGIC.match(stripped) and _balanced(stripped) and _syntax_error(stripped) is not None:
        return indent + "pass"
    return None


def _balanced(text: str) -> bool:
    """No bracket left open: `time = (` starts a statement over several lines, not an automagic."""
    return sum(text.count(c) for c in "([{") == sum(text.count(c) for c in ")]}") and not text.endswith(("\\", ":"))


def _statement_starts(lines: list[str]) -> list[bool]:
    """Whether each line starts a statement: not inside brackets, a triple-quoted string or after a
    backslash. Only such a line can be IPython syntax (`% b` may continue a multiplication)."""
    starts = []
    depth = 0
    quote = ""  # the open triple quote, if any
    continued = False
    for line in lines:
        starts.append(depth == 0 and not quote and not continued)
        if starts[-1] and (_LINE_MAGIC.match(line) or _HELP.match(line)):
            continued = line.endswith("\\")
            continue  # IPython text, not Python: its quotes and brackets mean nothing
        continued = False
        index = 0
        while index < len(line):
            if quote:
                end = line.find(quote, index)
                while end > 0 and _escaped(line, end):
                    end = line.find(quote, end + 1)
                if end < 0:
                    break
                index, quote = end + 3, ""
                continue
            char = line[index]
            if char == "#":
                break
            if char in "([{":
                depth += 1
            elif char in ")]}":
                depth = max(0, depth - 1)
            elif char in "'\"":
                if line.startswith(char * 3, index):
                    quote = char * 3
                    index += 3
                    continue
                end = line.find(char, index + 1)
                while end > 0 and _escaped(line, end):
                    end = line.find(char, end + 1)
                if end < 0:
                    break  # an unterminated string: the cell's syntax error, reported as such
                index = end
            index += 1
        else:
            continued = line.endswith("\\")
    return starts


def _escaped(line: str, index: int) -> bool:
    backslashes = len(line[:index]) - len(line[:index].rstrip("\\"))
    return backslashes % 2 == 1

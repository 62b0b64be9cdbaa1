"""The library API: lint source text or paths and get diagnostics back, no CLI involved."""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import Config
from .diagnostic import Diagnostic, FileError
from .discovery import discover
from .engine import lint_text
from .module import module_name_for_path
from .reading import SourceError, decode_source, read_source


@dataclass
class LintResult:
    diagnostics: list[Diagnostic] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    files_checked: int = 0


def lint_source(source: str | bytes, path: str = "<string>", config: Config | None = None, verbose: bool = False) -> list[Diagnostic]:
    """Diagnostics for one module's source. Bytes are decoded as Python would (BOM, coding cookie).

    Raises SourceError for bytes that cannot be decoded.
    """
    config = config or Config()
    text = decode_source(source) if isinstance(source, bytes) else source
    module_name = module_name_for_path(path) if not path.startswith("<") else None
    return lint_text(text, path, config.codes_for(path), module_name, verbose=verbose)


def lint_paths(paths: list[str], config: Config | None = None, verbose: bool = False) -> LintResult:
    """Diagnostics for every Python file under `paths`, sorted by path, line, column and code."""
    config = config or Config()
    result = LintResult()
    for path in discover(list(paths), config, result.errors):
        try:
            text = read_source(path)
        except SourceError as error:
            result.errors.append(FileError(path, str(error)))
            continue
        result.files_checked += 1
        result.diagnostics.extend(lint_text(text, path, config.codes_for(path), module_name_for_path(path), verbose=verbose))
    result.diagnostics.sort(key=Diagnostic.sort_key)
    result.errors.sort(key=lambda e: e.path)
    return result

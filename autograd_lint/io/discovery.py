"""Which files a run lints: Python files and notebooks under the given paths, minus excluded and git-ignored ones.

A file named explicitly is linted unless `force_exclude` is set (what pre-commit needs, since it names
every file); exclusion and `.gitignore` files apply to what the directory walk finds.

Inside a git repository (a `.git` at or above where the walk starts), the walk honours the
`.gitignore` files from the repository's root down, and `.git/info/exclude`. As in git, a deeper file
overrides a shallower one, the last matching pattern of a file wins, and nothing inside an ignored
directory can be re-included. Outside a repository `.gitignore` files mean nothing, as for git, ruff
and ripgrep. The global excludes file (`core.excludesFile`) is not read.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from pathlib import Path

import pathspec

from ..config import Config
from ..core.diagnostic import FileError

PYTHON_SUFFIXES = (".py", ".pyi", ".ipynb")  # notebooks too, as ruff lints them by default

# (directory the patterns are relative to, the patterns), outermost first.
_IgnoreChain = tuple[tuple[str, pathspec.GitIgnoreSpec], ...]


def discover(paths: list[str], config: Config, errors: list[FileError]) -> Iterator[str]:
    seen: set[str] = set()
    for path in paths:
        if os.path.isdir(path):
            found = iter(()) if config.force_exclude and config.is_force_excluded(path) else _walk(path, config, errors)
        elif os.path.lexists(path):
            found = iter(()) if config.force_exclude and config.is_force_excluded(path) else iter([path])
        else:
            errors.append(FileError(path, "no such file or directory"))
            continue
        for file in found:
            key = os.path.normcase(os.path.abspath(file))
            if key not in seen:
                seen.add(key)
                yield file


def _walk(top: str, config: Config, errors: list[FileError]) -> Iterator[str]:
    chains: dict[str, _IgnoreChain] = {}
    gitignore = config.respect_gitignore and git_root(top) is not None
    top_chain = _enclosing_ignores(top) if gitignore else ()

    def unlistable(error: OSError) -> None:  # a directory that cannot be listed is said, not skipped silently
        errors.append(
            FileError(os.path.normpath(error.filename or top), f"cannot list directory: {error.strerror or error}")
        )

    for directory, subdirectories, files in os.walk(top, onerror=unlistable):
        chain = chains.pop(directory, top_chain)
        if gitignore:
            chain = chain + _read_ignore_file(directory, os.path.join(directory, ".gitignore"))
        kept = []
        for name in sorted(subdirectories):
            path = os.path.join(directory, name)
            if (
                config.is_excluded(path)
                or os.path.isfile(os.path.join(path, "pyvenv.cfg"))
                or _ignored(path, True, chain)
            ):
                continue
            kept.append(name)
            chains[path] = chain
        subdirectories[:] = kept
        for name in sorted(files):
            path = os.path.join(directory, name)
            if name.endswith(PYTHON_SUFFIXES) and not config.is_excluded(path) and not _ignored(path, False, chain):
                yield os.path.normpath(path)  # `x.py`, not `./x.py`, as ruff and flake8 print it


def _ignored(path: str, is_directory: bool, chain: _IgnoreChain) -> bool:
    """Whether git would ignore this entry of the walk, judged on the entry itself.

    The walk only enters directories that are not ignored, or the one named on the command line.
    A match that the entry inherits from its parent directory (`generated/` matches everything
    under it) therefore comes from a directory the user named, and does not count.
    """
    verdict = None
    absolute = os.path.abspath(path)
    for base, spec in chain:
        relative = _below(absolute, base)
        if relative is None:
            continue
        result = spec.check_file(relative + "/" if is_directory else relative)
        if result.include is None:
            continue
        parent = posixpath.dirname(relative)
        if result.include and parent and spec.check_file(parent + "/").index == result.index:
            continue  # the same pattern matched the parent: inherited
        verdict = result.include
    return bool(verdict)


def _below(absolute: str, base: str) -> str | None:
    """`absolute` relative to `base`, with slashes, when it lies at or below it; both absolute and normalized
    (`os.path.relpath` did the same, splitting both paths on every call)."""
    if absolute == base:
        return "."
    prefix = base if base.endswith(os.sep) else base + os.sep
    if not os.path.normcase(absolute).startswith(os.path.normcase(prefix)):
        return None
    return absolute[len(prefix) :].replace(os.sep, "/")


def _read_ignore_file(base: str, file: str) -> _IgnoreChain:
    try:
        with open(file, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:  # absent or unreadable: nothing is ignored by it
        return ()
    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    return ((os.path.abspath(base), spec),) if spec.patterns else ()


def _enclosing_ignores(top: str) -> _IgnoreChain:
    """The ignore files above `top` that apply to it: from its git repository's root down to its parent."""
    top = os.path.abspath(top)
    root = git_root(top)
    if root is None:
        return ()
    chain = _read_ignore_file(root, os.path.join(root, ".git", "info", "exclude"))
    if root == top:
        return chain  # the walk reads top's own .gitignore
    parts = Path(os.path.relpath(top, root)).parts
    for depth in range(len(parts)):  # root, root/a, ... up to top's parent
        directory = os.path.join(root, *parts[:depth])
        chain += _read_ignore_file(directory, os.path.join(directory, ".gitignore"))
    return chain


def git_root(start: str) -> str | None:
    """The nearest directory at or above `start` that has a `.git` (directory, or file for worktrees)."""
    directory = os.path.abspath(start)
    while True:
        if os.path.exists(os.path.join(directory, ".git")):
            return directory
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent

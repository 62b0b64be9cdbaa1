"""Which files a run lints: Python files under the given paths, minus excluded directories.

A file named explicitly is always linted; exclusion applies to what the directory walk finds.
"""

from __future__ import annotations

import os
from typing import Iterator

from .config import Config
from .diagnostic import FileError

PYTHON_SUFFIXES = (".py", ".pyi")


def discover(paths: list[str], config: Config, errors: list[FileError]) -> Iterator[str]:
    seen: set[str] = set()
    for path in paths:
        if os.path.isdir(path):
            found = _walk(path, config)
        elif os.path.lexists(path):
            found = iter([path])
        else:
            errors.append(FileError(path, "no such file or directory"))
            continue
        for file in found:
            key = os.path.normcase(os.path.abspath(file))
            if key not in seen:
                seen.add(key)
                yield file


def _walk(top: str, config: Config) -> Iterator[str]:
    for directory, subdirectories, files in os.walk(top):
        subdirectories[:] = sorted(
            name
            for name in subdirectories
            if not config.is_excluded(os.path.join(directory, name))
            and not os.path.isfile(os.path.join(directory, name, "pyvenv.cfg"))
        )
        for name in sorted(files):
            path = os.path.join(directory, name)
            if name.endswith(PYTHON_SUFFIXES) and not config.is_excluded(path):
                yield os.path.normpath(path)  # `x.py`, not `./x.py`, as ruff and flake8 print it

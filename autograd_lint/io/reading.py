"""Turning a file's bytes into text the way Python itself would (BOM, coding cookie), or a clear error;
a notebook's bytes into its code cells joined (`notebook.py`)."""

from __future__ import annotations

import io
import os
import stat
import tokenize
from dataclasses import dataclass

from .notebook import Notebook, NotebookError, is_notebook, read_notebook


class SourceError(Exception):
    """A file that cannot be linted; the message is one line for the user."""


@dataclass(frozen=True)
class ModuleSource:
    """What the linter parses for one file: a Python file's text, or a notebook's code cells joined."""

    text: str
    notebook: Notebook | None = None

    def module_line(self, cell: int | None, line: int) -> int | None:
        """The line of `text` that a diagnostic's (cell, line) points at."""
        if self.notebook is None or cell is None:
            return line
        return self.notebook.module_line(cell, line)

    def reported_message(self, message: str) -> str:
        """A rule's message as the linter reports it for this file (a notebook's names cells' lines)."""
        return message if self.notebook is None else self.notebook.cell_message(message)

    def shown_text(self, cell: int | None) -> str:
        """The text a diagnostic's lines count in: the file's, or its cell's as the user wrote it."""
        if self.notebook is None or cell is None:
            return self.text
        return self.notebook.cell_source(cell) or ""


def module_source(path: str, data: bytes | str) -> ModuleSource:
    """The module behind a file's contents, by its suffix (`.ipynb` is a notebook). Raises SourceError."""
    if is_notebook(path):
        try:
            return ModuleSource((notebook := read_notebook(data)).source, notebook)
        except NotebookError as error:
            raise SourceError(str(error)) from None
    return ModuleSource(decode_source(data) if isinstance(data, bytes) else data)


def read_module_source(path: str) -> ModuleSource:
    return module_source(path, read_bytes(path))


def decode_source(data: bytes) -> str:
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:
        raise SourceError(f"cannot decode: {exc.msg}") from None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise SourceError(f"cannot decode as {exc.encoding}: {exc.reason} at byte {exc.start}") from None
    except LookupError:
        raise SourceError(f"unknown encoding {encoding!r} in coding declaration") from None
    except (UnicodeError, ValueError) as exc:  # codecs that fail otherwise (`# coding: undefined`)
        raise SourceError(f"cannot decode as {encoding}: {exc}") from None


def source_encoding(data: bytes) -> str:
    """The encoding Python reads `data` with (`utf-8-sig` with a BOM), to write a changed file back the same way."""
    try:
        return tokenize.detect_encoding(io.BytesIO(data).readline)[0]
    except SyntaxError as exc:
        raise SourceError(f"cannot decode: {exc.msg}") from None


def read_bytes(path: str) -> bytes:
    """The file's bytes. Only regular files are read: a FIFO would block the run forever and a device
    such as /dev/zero never ends, so they are refused (opening without blocking, then checking)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        if os.path.islink(path):
            raise SourceError(f"broken symbolic link (its target {os.readlink(path)!r} does not exist)") from None
        raise SourceError("file vanished before it could be read") from None
    except IsADirectoryError:
        raise SourceError("is a directory, not a Python file") from None
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            raise SourceError("is a directory, not a Python file")
        if not stat.S_ISREG(mode):
            raise SourceError(f"cannot read: not a regular file ({_file_kind(mode)})")
        if hasattr(os, "set_blocking"):
            os.set_blocking(descriptor, True)
        with os.fdopen(descriptor, "rb") as handle:
            descriptor = -1  # the file object owns it now
            return handle.read()
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}") from None
    finally:
        if descriptor >= 0:
            os.close(descriptor)


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"

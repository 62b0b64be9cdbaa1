"""Turning a file's bytes into text the way Python itself would (BOM, coding cookie), or a clear error."""

from __future__ import annotations

import io
import tokenize


class SourceError(Exception):
    """A file that cannot be linted; the message is one line for the user."""


def decode_source(data: bytes) -> str:
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:
        raise SourceError(f"cannot decode: {exc.msg}") from None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"cannot decode as {exc.encoding}: {exc.reason} at byte {exc.start}"
        ) from None
    except LookupError:
        raise SourceError(f"unknown encoding {encoding!r} in coding declaration") from None


def read_source(path: str) -> str:
    return decode_source(read_bytes(path))


def read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise SourceError("file vanished before it could be read") from None
    except IsADirectoryError:
        raise SourceError("is a directory, not a Python file") from None
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}") from None

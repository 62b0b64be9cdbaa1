"""Per-file result cache: a warm run reads and hashes files and parses nothing.

An entry is keyed by the file's bytes, its path, the linter (version and code) and the selected codes. Each
source file has one entry file, written atomically (temp file + rename), so concurrent runs never
see half an entry; an unreadable or corrupt entry is a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from ..core.diagnostic import Diagnostic, Severity
from ..version import __version__

DEFAULT_DIRECTORY = ".autograd_lint_cache"


@lru_cache(maxsize=1)
def linter_fingerprint() -> str:
    """The version and a hash of the linter's own code: an edited rule invalidates the cache even
    before the version is bumped (a development checkout, an editable install)."""
    digest = hashlib.blake2b(__version__.encode(), digest_size=16)
    package = Path(__file__).resolve().parents[1]  # the whole autograd_lint package, not only io/
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


class ResultCache:
    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    @staticmethod
    def key(path: str, data: bytes, codes: list[str]) -> str:
        digest = hashlib.blake2b(digest_size=20)
        for part in (linter_fingerprint(), os.path.abspath(path), ",".join(codes)):
            digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(data)
        return digest.hexdigest()

    def _entry(self, path: str) -> Path:
        name = hashlib.blake2b(os.path.abspath(path).encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
        return self.directory / name[:2] / f"{name}.json"

    def get(self, path: str, key: str) -> list[Diagnostic] | None:
        try:
            with open(self._entry(path), encoding="utf-8") as handle:
                entry = json.load(handle)
            if entry.get("key") != key:
                return None
            # The same file may be named differently in this run (`x.py`, `./x.py`, an absolute path).
            return [
                Diagnostic(**{**item, "path": path, "severity": Severity(item["severity"])})
                for item in entry["diagnostics"]
            ]
        except (OSError, ValueError, TypeError, KeyError):
            return None  # missing, corrupt or from another version: lint again

    def put(self, path: str, key: str, diagnostics: list[Diagnostic]) -> None:
        write_entry(self.directory, self._entry(path), {"key": key, "diagnostics": [d.to_dict() for d in diagnostics]})


def write_entry(directory: Path, entry: Path, content: dict) -> None:
    """Write one entry of the cache in `directory` atomically (temp file + rename); never fails."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        _mark_directory(directory)
        handle, temporary = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(json.dumps(content))
        os.replace(temporary, entry)
    except OSError:
        pass  # a read-only tree still lints; it just stays cold


def _mark_directory(directory: Path) -> None:
    ignore = directory / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# Created by autograd-lint\n*\n", encoding="utf-8")
        (directory / "CACHEDIR.TAG").write_text(
            "Signature: 8a477f597d28d172789f06886806bc55\n# autograd-lint result cache\n", encoding="utf-8"
        )

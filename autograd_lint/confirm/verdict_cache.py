"""Confirm verdicts cached beside the lint results, so that an unchanged finding is not run again.

An entry is keyed by the harness script (the copied definitions and the recipe), the project's sources
the harness may import (the module's top-level package, or the `.py` files beside a module outside any
package), the interpreter and its torch version, the run limits and the linter. Only `confirmed` and
`not-reproduced` are kept: an `inconclusive` verdict's cause (a timeout on a busy machine, a missing
dependency) may be gone on the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..facts.second_derivatives import package_root
from ..io.cache import linter_fingerprint, write_entry
from .runner import RunLimits, RunResult

CACHED_VERDICTS = ("confirmed", "not-reproduced")


class VerdictCache:
    def __init__(self, directory: str | os.PathLike, python: str, torch_version: str, limits: RunLimits):
        self.directory = Path(directory)
        context = hashlib.blake2b(digest_size=20)
        for part in (linter_fingerprint(), os.path.abspath(python), torch_version, repr(limits)):
            context.update(part.encode("utf-8", "surrogateescape") + b"\0")
        self._context = context
        self._project_digests: dict[str, str] = {}

    def key(self, script: str, module_path: str) -> str:
        digest = self._context.copy()
        digest.update(self._project_digest(module_path).encode() + b"\0")
        digest.update(script.encode("utf-8", "surrogateescape"))
        return digest.hexdigest()

    def get(self, key: str) -> RunResult | None:
        try:
            with open(self._entry(key), encoding="utf-8") as handle:
                entry = json.load(handle)
            result = RunResult(entry["verdict"], entry["evidence"], float(entry["seconds"]))
        except (OSError, ValueError, TypeError, KeyError):
            return None  # missing or corrupt: run it again
        return result if result.verdict in CACHED_VERDICTS else None

    def put(self, key: str, result: RunResult) -> None:
        if result.verdict in CACHED_VERDICTS:
            entry = {"verdict": result.verdict, "evidence": result.evidence, "seconds": result.seconds}
            write_entry(self.directory, self._entry(key), entry)

    def _entry(self, key: str) -> Path:
        return self.directory / "confirm" / key[:2] / f"{key}.json"

    def _project_digest(self, module_path: str) -> str:
        """A hash of the project sources a harness for `module_path` may import (once per run and folder)."""
        if module_path.startswith("<") or module_path == "-" or not os.path.exists(module_path):
            return ""
        top_package = package_root(module_path)
        folder = top_package or os.path.dirname(os.path.abspath(module_path))
        if folder not in self._project_digests:
            files = sorted(Path(folder).rglob("*.py")) if top_package else sorted(Path(folder).glob("*.py"))
            digest = hashlib.blake2b(digest_size=20)
            for file in files:
                try:
                    digest.update(str(file).encode("utf-8", "surrogateescape") + b"\0" + file.read_bytes())
                except OSError:
                    digest.update(str(file).encode("utf-8", "surrogateescape") + b"\0unreadable")
            self._project_digests[folder] = digest.hexdigest()
        return self._project_digests[folder]

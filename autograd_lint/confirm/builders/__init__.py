"""The harness builder of each rule, by code: `aglNNN.py` here serves rule AGLNNN.

A builder module defines `build(module, finding) -> Harness` (the code the harness runs, calling its recipe
`runtime/aglNNN.py` as `_agl_recipe`; CannotBuildHarness with the reason when it cannot) and `EVIDENCE`, a
regular expression the evidence of every confirmed finding of the rule matches (the tests hold the rule's
fixtures to it). Rules know nothing of confirm mode: the session finds the builder by the finding's code.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from types import ModuleType

_MODULE_NAME = re.compile(r"^agl\d{3}$")

BUILDER_CODES = frozenset(info.name.upper() for info in pkgutil.iter_modules(__path__) if _MODULE_NAME.match(info.name))


def builder_for(code: str) -> ModuleType | None:
    """The builder module of rule `code` (imported on first use), or None if the rule has none."""
    if code not in BUILDER_CODES:
        return None
    return importlib.import_module(f"{__name__}.{code.lower()}")

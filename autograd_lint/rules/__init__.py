"""Rule discovery: every `aglNNN_*.py` module here defines exactly one Rule subclass."""

from __future__ import annotations

import importlib
import pkgutil

from ..rule import Rule


def _discover() -> dict[str, type[Rule]]:
    found: dict[str, type[Rule]] = {}
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("agl"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        rules = [
            value
            for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, Rule) and value is not Rule and value.__module__ == module.__name__
        ]
        if len(rules) != 1:
            raise RuntimeError(f"{module.__name__} must define exactly one Rule, found {len(rules)}")
        found[rules[0].code] = rules[0]
    return dict(sorted(found.items()))


RULES: dict[str, type[Rule]] = _discover()

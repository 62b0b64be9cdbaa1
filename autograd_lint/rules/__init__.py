"""Rule discovery: every `aglNNN_*.py` module here defines exactly one Rule subclass.

Codes come from the module names, so selecting rules, validating a config or reading cached
results imports no rule (and so not libcst); a rule module is imported when it is first used.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator, Mapping

_MODULE_NAME = re.compile(r"^agl(\d{3})_\w+$")


class _Registry(Mapping):
    def __init__(self) -> None:
        self._modules = {
            f"AGL{match.group(1)}": info.name
            for info in pkgutil.iter_modules(__path__)
            if (match := _MODULE_NAME.match(info.name))
        }
        self._loaded: dict = {}

    def __getitem__(self, code: str):
        if code not in self._loaded:
            from ..core.rule import Rule

            module = importlib.import_module(f"{__name__}.{self._modules[code]}")
            rules = [
                value
                for value in vars(module).values()
                if isinstance(value, type)
                and issubclass(value, Rule)
                and value is not Rule
                and value.__module__ == module.__name__
            ]
            if len(rules) != 1 or rules[0].code != code:
                raise RuntimeError(f"{module.__name__} must define exactly one Rule, with code {code}")
            self._loaded[code] = rules[0]
        return self._loaded[code]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._modules))

    def __len__(self) -> int:
        return len(self._modules)


RULES = _Registry()

# Rules outside the default selection, as ruff keeps some rules opt-in: on the real repositories of the
# ecosystem check (benchmarks/ecosystem.py) fewer than 90 % of their diagnostics are true. `--select`,
# `extend-select` or `ALL` enables them. A rule that reports nothing there stays in the default set.
# The noqa checks (AGL100, AGL101) are opt-in as in ruff (RUF100, PGH004): they judge the comments, not the code.
OPT_IN = frozenset({"AGL001", "AGL003", "AGL004", "AGL005", "AGL007", "AGL008", "AGL010", "AGL100", "AGL101"})

# Opt-in rules that the default selection still runs on a module whose package (or the module itself,
# outside a package) takes second derivatives: their findings matter only there.
SECOND_DERIVATIVE_RULES = frozenset({"AGL010"})


def default_selection() -> list[str]:
    """The codes a run selects when nothing is configured: every rule but the opt-in ones."""
    return [code for code in RULES if code not in OPT_IN]

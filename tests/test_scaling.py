"""Linting one module grows linearly with its size: counted in Python function calls, not timed.

A step that revisits the whole module for each Function class (or each call site) makes the count grow with
the square of the number of classes. Counting calls is deterministic and independent of the machine's speed.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

from autograd_lint.engine import lint_text
from autograd_lint.rules import RULES

GENERATED = Path(__file__).resolve().parents[1] / "benchmarks" / "generated.py"


def _generated():
    spec = importlib.util.spec_from_file_location("generated", GENERATED)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _calls_to_lint(source: str) -> int:
    """Function calls (Python and builtin) made while linting `source` with every rule (the engine's own
    thread included)."""
    count = 0

    def profile(frame, event, argument):
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        lint_text(source, "generated.py", list(RULES), "generated")
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    return count


def test_work_grows_linearly_with_the_number_of_function_classes_in_a_module():
    copies = _generated().copies
    lint_text(copies(2), "warm.py", list(RULES), "warm")  # rule modules imported, per-type tables filled
    small, large = _calls_to_lint(copies(40)), _calls_to_lint(copies(160))
    # Four times the classes: four times the calls, less the fixed part (3.996 today). The per-class walks
    # of the module this test was written against gave 6.1 (the apply wrappers) and 4.21 (AGL015's lookup of
    # `Class.function` through the module's statements).
    assert large / small < 4.1, (small, large)

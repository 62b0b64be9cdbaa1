"""Linting any program returns diagnostics and never raises, nor reports an internal error.

Bounded for CI (derandomized, so every run checks the same programs; no deadline, since a loaded
machine is slow). The long run is `python -m benchmarks.fuzz_stress` (100,000 programs).
"""

from __future__ import annotations

import fuzzing
from hypothesis import HealthCheck, given, settings

from autograd_lint import lint_source
from autograd_lint.core.diagnostic import INTERNAL_ERROR_CODE


def bounded(examples: int):
    return settings(
        max_examples=examples, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )


@bounded(40)
@given(fuzzing.STRATEGIES["grammar"])
def test_programs_from_the_grammar(source):
    assert fuzzing.check(source) is None


@bounded(8)  # from_node is slow to generate (about a second a program)
@given(fuzzing.STRATEGIES["node"])
def test_programs_from_libcst_nodes(source):
    assert fuzzing.check(source) is None


@bounded(40)
@given(fuzzing.STRATEGIES["shaped"])
def test_generated_code_inside_a_function_and_an_activation(source):
    assert fuzzing.check(source) is None


@bounded(120)
@given(fuzzing.STRATEGIES["mutated"])
def test_mutated_fixtures(source):
    assert fuzzing.check(source) is None
    # The production path (prefilter on) reports nothing the full run does not, and loses nothing.
    full = [d for d in fuzzing.lint_text(source, "fuzz.py", fuzzing.ALL_CODES, "fuzz", prefilter=False)]
    assert fuzzing.lint_text(source, "fuzz.py", fuzzing.ALL_CODES, "fuzz", prefilter=True) == full


def test_check_catches_an_internal_error(monkeypatch):
    """The fuzz tests above can fail: an exception in a rule is what `check` reports."""
    from autograd_lint.rules import RULES

    def explode(self, function_class, module):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(RULES["AGL002"], "check_class", explode)
    problem = fuzzing.check(fuzzing.shape("x = 1\n", 0b1111))
    assert problem is not None and "rule AGL002 failed on this file: ZeroDivisionError: planted" in problem
    assert "Traceback" in problem  # verbose: the traceback comes with it


def test_lint_source_of_arbitrary_text_never_raises():
    for text in ["", "\x00", "\ufeff", "\r", "\x0c", "(" * 300, "def", "class F(Function):\n\tdef f(", "'''", "\\\n"]:
        diagnostics = lint_source(text)
        assert all(d.code != INTERNAL_ERROR_CODE for d in diagnostics), (text, diagnostics)

"""The rule contract as the engine honours it: each rule gets what it declared it looks at, once; the prefilter
is derived from the declarations; the analyses memoize per file; the README's worked example is a working rule."""

from __future__ import annotations

import ast
import re
import textwrap
import types
from pathlib import Path

import libcst as cst
import pytest

from autograd_lint.core import context, syntax
from autograd_lint.core.diagnostic import Severity
from autograd_lint.core.module import ParsedModule
from autograd_lint.core.prefilter import (
    FUNCTION_CLASS,
    FilePrefilter,
    TextCue,
    calls,
    defines_function_subclass,
    required_words,
)
from autograd_lint.core.rule import Finding, FunctionRule, NodeRule, Rule
from autograd_lint.core.scopes import bindings
from autograd_lint.engine import lint_text, run_rules
from autograd_lint.rules import RULES
from autograd_lint.rules.base import FunctionClassRule

README = Path(__file__).resolve().parents[1] / "README.md"

TWO_CLASSES = textwrap.dedent(
    """\
    import torch
    from torch.autograd import Function

    class Applied(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g.contiguous()

    class Marked(Function):
        @staticmethod
        def forward(ctx, x):
            out = x * 2
            ctx.mark_non_differentiable(out)
            return out

        @staticmethod
        def backward(ctx, g):
            return g.contiguous()

    def double(x):
        return Applied.apply(x) * 2
    """
)


def _worked_example() -> type[Rule]:
    """The rule module of the README's worked example, loaded as `autograd_lint.rules.agl025_...` would be."""
    text = README.read_text(encoding="utf-8")
    start = text.index("A worked example:")
    code = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert code is not None
    module = types.ModuleType("autograd_lint.rules.agl025_grad_not_contiguous")
    module.__package__ = "autograd_lint.rules"
    exec(compile(code.group(1), "README.md", "exec"), module.__dict__)
    return module.GradNotContiguous


@pytest.fixture
def worked_example(monkeypatch):
    rule = _worked_example()
    monkeypatch.setitem(RULES._modules, rule.code, "agl025_grad_not_contiguous")
    monkeypatch.setitem(RULES._loaded, rule.code, rule)
    return rule


def test_the_readme_worked_example_is_a_working_rule(worked_example):
    found = lint_text(TWO_CLASSES, "two.py", ["AGL025"])
    # Only Applied: the rule declared only_reachable_backward, and no output of Marked can require grad.
    assert [(d.code, d.line, d.column, d.message) for d in found] == [
        ("AGL025", 11, 16, "Applied.backward returns a contiguous() copy")
    ]
    assert found[0].severity is Severity.WARNING


def test_the_worked_examples_cue_keeps_a_file_without_contiguous_from_being_parsed(worked_example, monkeypatch):
    parsed = []
    original = ParsedModule.__init__

    def counting(self, *args, **kwargs):
        parsed.append(args[1])
        original(self, *args, **kwargs)

    monkeypatch.setattr(ParsedModule, "__init__", counting)
    assert lint_text(TWO_CLASSES.replace("g.contiguous()", "g"), "plain.py", ["AGL025"]) == []
    assert parsed == []
    assert lint_text(TWO_CLASSES, "two.py", ["AGL025"]) != []
    assert parsed == ["two.py"]
    # Without the prefilter the file is parsed, and the rule finds nothing in it either.
    assert lint_text(TWO_CLASSES.replace("g.contiguous()", "g"), "plain.py", ["AGL025"], prefilter=False) == []
    assert parsed == ["two.py", "plain.py"]


class _Recorder:
    """What the engine handed to each planted rule."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []


RECORDER = _Recorder()


class _EveryName(NodeRule[None]):
    code, name, severity, summary = "AGL980", "every-name", Severity.WARNING, "test rule"
    node_types = (cst.Name,)

    def check_node(self, node, module):
        RECORDER.calls.append((self.code, node))
        return iter(())


class _EveryCall(NodeRule[None]):
    code, name, severity, summary = "AGL981", "every-call", Severity.WARNING, "test rule"
    node_types = (cst.Call,)

    def check_node(self, node, module):
        RECORDER.calls.append((self.code, node))
        if isinstance(node.func, cst.Attribute) and node.func.attr.value == "contiguous":
            raise ZeroDivisionError("planted")
        yield Finding(node, "a call", "", None)


class _EveryClass(FunctionClassRule[None]):
    code, name, severity, summary = "AGL982", "every-class", Severity.WARNING, "test rule"

    def check_class(self, function_class, module):
        RECORDER.calls.append((self.code, function_class.name))
        assert context.active_file() is module.context  # the analyses memoize in this file's context
        return iter(())


class _ReachableClasses(_EveryClass):
    code = "AGL983"
    only_reachable_backward = True


class _WholeModule(FunctionRule[None]):
    code, name, severity, summary = "AGL984", "whole-module", Severity.WARNING, "test rule"

    def check(self, module):
        RECORDER.calls.append((self.code, module.path))
        return iter(())


def test_each_rule_gets_what_it_declared_once(monkeypatch):
    RECORDER.calls.clear()
    module = ParsedModule(TWO_CLASSES, "two.py")
    rules = [_EveryName(), _EveryCall(), _EveryClass(), _ReachableClasses(), _WholeModule()]
    outcomes = run_rules(module, rules)
    nodes = list(syntax.walk(module.tree))
    names = [node for node in nodes if type(node) is cst.Name]
    calls_made = [node for node in nodes if type(node) is cst.Call]
    assert [node for code, node in RECORDER.calls if code == "AGL980"] == names
    # The call rule raised at the first `.contiguous()` call: it was asked nothing more in this file, what it
    # found before is kept, and the error is its own; the other rules ran to the end.
    first_contiguous = next(i for i, c in enumerate(calls_made) if "contiguous" in cst.Module([]).code_for_node(c))
    assert [node for code, node in RECORDER.calls if code == "AGL981"] == calls_made[: first_contiguous + 1]
    assert [f.node for f in outcomes[rules[1]].findings] == calls_made[:first_contiguous]
    assert isinstance(outcomes[rules[1]].error, ZeroDivisionError)
    assert [name for code, name in RECORDER.calls if code == "AGL982"] == ["Applied", "Marked"]
    assert [name for code, name in RECORDER.calls if code == "AGL983"] == ["Applied"]
    assert [path for code, path in RECORDER.calls if code == "AGL984"] == ["two.py"]
    assert all(outcome.error is None for rule, outcome in outcomes.items() if rule is not rules[1])
    assert context.active_file() is None  # nothing stays active after the file


def test_the_prefilter_is_derived_from_the_declarations():
    assert _WholeModule.text_cues() == (FUNCTION_CLASS,)
    assert _EveryName.text_cues() == ()
    where = RULES["AGL023"]
    assert where.text_cues()[0] == calls("masked_fill", "masked_fill_", "where")
    prefilter = FilePrefilter("y = torch.where(x > 0, x.log(), 0)\n", None)
    assert prefilter.admits(where)
    assert not FilePrefilter("y = torch.clamp(x, 0)\n", None).admits(where)
    assert not prefilter.admits(RULES["AGL002"])  # no Function class in the text


# (source, whether the Function model finds a Function class there): the prefilter's AST check must say
# yes wherever the model does, and no for the look-alikes that filled torch's parsed files.
FUNCTION_CLASS_SPELLINGS = [
    ("from torch.autograd import Function\nclass A(Function): pass\n", True),
    ("import torch\nclass A(torch.autograd.Function): pass\n", True),
    ("import torch.autograd as ag\nclass A(ag.function.InplaceFunction): pass\n", True),
    ("from torch import autograd\nclass A(autograd.Function): pass\n", True),
    ("from torch.autograd import Function as Fn\nclass A(Fn): pass\n", True),
    ("import torch\nFn = torch.autograd.Function\nclass A(Fn): pass\n", True),
    # a subclass written before its base, a class inside a function
    ("import torch\nclass B(A): pass\nclass A(torch.autograd.Function): pass\n", True),
    ("def f():\n    from torch.autograd import Function\n    class A(Function): pass\n", True),
    ("from .function import Function\nclass A(Function): pass\n", True),  # resolved from the package
    ("class UserFunctionVariable(BaseUserFunctionVariable): pass\n", False),
    ("from torch.autograd import Function\nclass FunctionSchema: pass\n", False),
    ("class A(Function): pass\n", False),  # a Function imported from nowhere: not torch's
    ("import torch\nclass A(torch.nn.Module): pass\n", False),
]


@pytest.mark.parametrize(("source", "is_function_class"), FUNCTION_CLASS_SPELLINGS)
def test_the_function_class_check_decides_as_the_model(source, is_function_class):
    from autograd_lint.facts.function_model import function_model

    module = ParsedModule(source, "pkg/mod.py", "pkg.mod")
    with module.active():
        found = bool(function_model(module))
    relative_import_unresolved = source.startswith("from .")
    assert found == (is_function_class and not relative_import_unresolved)
    assert defines_function_subclass(ast.parse(source)) == is_function_class


def test_the_text_cues_read_before_a_rule_is_imported_are_the_rules_own():
    from autograd_lint.rules.text_cues import TEXT_CUES

    assert set(TEXT_CUES) == set(RULES)
    stale = [code for code in RULES if TEXT_CUES[code] != RULES[code].text_cues()]
    assert stale == [], "run `python -m autograd_lint.rules.text_cues` and `ruff format`"


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        (r"\b(?:where|masked_fill)\s*\(", ("masked_fill", "where")),
        (r"class\s+\w+\s*\([^)]*Function|=\s*[\w.]*Function\b|\bFunction\s+as\s+\w", ("Function",)),
        (r"def\s+forward\s*\(", ("forward",)),
        (r"a(?:long|short)b", ("long", "short")),  # the most selective: its shortest word the longest
        (r"(?:ab)+c", ("ab",)),  # a part repeated at least once must occur
        (r"x?(?:ab)*y", ("y",)),  # optional and starred parts require nothing
        (r"(?i)where", ()),  # case-insensitive: no word the text must hold as written
        (r"[^a]\w+", ()),
        (r"[<>]=", ("<", ">")),
    ],
)
def test_the_words_every_match_of_a_pattern_contains(pattern, words):
    assert required_words(re.compile(pattern)) == words


def test_every_match_of_a_cue_contains_one_of_its_guards():
    # The guards are a necessary condition: a file none of them is in cannot match (fixtures and the package
    # itself hold many matches of every cue).
    from autograd_lint.rules.text_cues import TEXT_CUES

    root = README.parent
    texts = [
        path.read_text(encoding="utf-8")
        for folder in ("fixtures", "autograd_lint")
        for path in (root / folder).rglob("*.py")
    ]
    cues = {cue for cues in TEXT_CUES.values() for cue in cues} | {FUNCTION_CLASS}
    matches = [
        (match.group(0), guards)
        for cue in cues
        for pattern, guards in zip(cue.patterns, cue.pattern_guards)
        if guards
        for text in texts
        for match in pattern.finditer(text)
    ]
    assert len(matches) > 1000
    assert [found for found, guards in matches if not any(guard in found for guard in guards)] == []


def test_a_cue_shared_by_rules_is_searched_once_per_file():
    searched = []

    class CountingPattern:
        def search(self, text):
            searched.append(text)
            return None

    cue = TextCue("counted", patterns=(CountingPattern(),), pattern_guards=((),))  # type: ignore[arg-type]

    class First(Rule[None]):
        requires = (cue,)

    class Second(Rule[None]):
        requires = (cue,)

    prefilter = FilePrefilter("text", None)
    assert not prefilter.admits(First) and not prefilter.admits(Second)
    assert searched == ["text"]


def test_memoized_answers_live_in_the_file_they_are_about():
    module = ParsedModule("def f(a):\n    b = a\n    return b\n", "f.py")
    function = module.tree.body[0]
    assert context.active_file() is None
    assert bindings(function) is not bindings(function)  # outside a linted file: computed each time
    with module.active():
        first = bindings(function)
        assert bindings(function) is first
        assert set(first) == {"a", "b"}
        other = ParsedModule("def f(a):\n    return a\n", "g.py")
        with other.active():
            assert bindings(other.tree.body[0]) is not first
            assert set(bindings(other.tree.body[0])) == {"a"}
        assert bindings(function) is first  # the outer file's context is back
    assert context.active_file() is None
    assert bindings.__wrapped__ is not None and len(module.context.answers[bindings]) == 1  # type: ignore[attr-defined]

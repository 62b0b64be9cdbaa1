"""Linting a long file in regions (`autograd_lint.regions`) reports exactly what linting it whole reports.

The threshold and the region size are forced low (`RegionLimits`) so that small modules are cut: every test
compares the diagnostics of the regions with the whole file's, and checks that the file was really cut (or,
for what the regions cannot promise, that it was not).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autograd_lint.core.diagnostic import SYNTAX_ERROR_CODE
from autograd_lint.engine import lint_module, lint_text
from autograd_lint.io.reading import module_source
from autograd_lint.regions import RegionLimits, plan_regions
from autograd_lint.rules import RULES

ROOT = Path(__file__).resolve().parent.parent
CODES = sorted(RULES)
SMALL = RegionLimits(regions_from=0, region_size=200, largest_share=1.0)

FUNCTION = """\
class {name}(Function):
    @staticmethod
    def forward(ctx, x, s):
        ctx.s = s
        return x * s

    @staticmethod
    def backward(ctx, g):
        return g * ctx.s, None


"""

# Evidence in other statements than the class it is about: a call site that modifies what forward saved
# (AGL019), a subclass elsewhere applied (the base's backward arity, AGL002), forward called from a function
# (AGL006) and the same silenced by noqa, an unused noqa (AGL100); independent classes between them.
MODULE = (
    "import torch\nfrom torch.autograd import Function\n\n\n"
    + """\
class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        out = x.exp()
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * out


"""
    + FUNCTION.format(name="Filler0")
    + "import torch\n\n\n"  # the same import again: equivalent, it connects nothing
    + """\
def caller(x):
    y = Exp.apply(x)
    y.add_(1)
    return y


class Base(Function):
    @staticmethod
    def forward(ctx, x, w):
        return x * w

    @staticmethod
    def backward(ctx, g):
        return g


"""
    + FUNCTION.format(name="Filler1")
    + """\
class Child(Base):
    pass


def use_child(x, w):
    return Child.apply(x, w)


def direct(x):
    return Exp.forward(None, x)


def silenced(x):
    return Exp.forward(None, x)  # noqa: AGL006


def unused(x):  # noqa: AGL004
    return x
"""
)


def both_ways(source: str, limits: RegionLimits = SMALL) -> tuple[list, list]:
    whole = lint_text(source, "m.py", CODES, "m", regions=None)
    return whole, lint_text(source, "m.py", CODES, "m", regions=limits)


def line_of(source: str, text: str) -> int:
    return source.splitlines().index(text) + 1


def test_evidence_in_other_statements_is_reported_the_same_in_regions():
    plan = plan_regions(MODULE, SMALL)
    assert plan is not None and len(plan.regions) >= 4

    # A class and the statements that tell about it share a region; the independent classes do not.
    def owner(line: int) -> int:
        (index,) = [i for i, region in enumerate(plan.regions) if region.owns(line)]
        return index

    exp, caller, direct = (line_of(MODULE, t) for t in ("class Exp(Function):", "def caller(x):", "def direct(x):"))
    assert owner(exp) == owner(caller) == owner(direct)
    base, child = line_of(MODULE, "class Base(Function):"), line_of(MODULE, "class Child(Base):")
    assert owner(base) == owner(child)
    filler0 = line_of(MODULE, "class Filler0(Function):")
    assert owner(filler0) != owner(exp)
    whole, regions = both_ways(MODULE)
    assert regions == whole
    assert {(d.code, d.line) for d in whole} == {
        ("AGL019", line_of(MODULE, "    y.add_(1)")),
        ("AGL002", line_of(MODULE, "        return g")),
        ("AGL006", line_of(MODULE, "    return Exp.forward(None, x)")),
        ("AGL100", line_of(MODULE, "def unused(x):  # noqa: AGL004")),
    }


def test_regions_linted_in_forked_processes_report_the_same(monkeypatch):
    """`-j 2` on one long file: its regions are shared among forked processes (regions.forked_map)."""
    import autograd_lint.engine as engine

    whole, regions = both_ways(MODULE)
    results = []
    original = engine.forked_map
    monkeypatch.setattr(engine, "forked_map", lambda *args: results.append(original(*args)) or results[0])
    assert lint_text(MODULE, "m.py", CODES, "m", regions=SMALL, jobs=2) == regions == whole
    assert len(results[0]) == len(plan_regions(MODULE, SMALL).regions)


@pytest.mark.parametrize(
    "middle",
    [
        "",
        # the middle of the file inside a string whose lines start at column 0: a span cut there does not parse
        'TEXT = """\n' + "".join(f"line{n} = {n}\n" for n in range(40)) + '"""\n\n\n',
        # or before an `else:`
        "if torch:\n" + "".join(f"    pass{n} = {n}\n" for n in range(40)) + "else:\n    pass\n\n\n",
    ],
    ids=["statements", "inside a string", "before else"],
)
def test_a_file_read_in_forked_processes_is_planned_the_same(middle):
    half = len(MODULE) // 2
    cut = MODULE.index("\n\n\n", half) + 3
    source = MODULE[:cut] + middle + MODULE[cut:]
    one, two = plan_regions(source, SMALL), plan_regions(source, SMALL, jobs=2)
    assert one is not None and two is not None
    assert [(r.source, list(r.file_lines), r.own_lines) for r in one.regions] == [
        (r.source, list(r.file_lines), r.own_lines) for r in two.regions
    ]
    assert one.import_source == two.import_source


def test_a_region_process_that_dies_leaves_the_file_to_the_whole_lint(monkeypatch):
    import os

    import autograd_lint.engine as engine

    original = engine._RegionJob.lint

    def dies_on_the_second(job, index):
        if index == 1:
            os._exit(1)  # as a crash in native code would
        return original(job, index)

    monkeypatch.setattr(engine._RegionJob, "lint", dies_on_the_second)
    whole = lint_text(MODULE, "m.py", CODES, "m", regions=None)
    linted_whole = []
    original_whole = engine._lint_whole
    monkeypatch.setattr(engine, "_lint_whole", lambda *args: linted_whole.append(1) or original_whole(*args))
    assert lint_text(MODULE, "m.py", CODES, "m", regions=SMALL, jobs=2) == whole
    assert linted_whole == [1]


def test_a_context_import_is_not_reported_twice():
    """AGL005 on the legacy import is the owner region's; the copies of it in others are context."""
    source = "from torch.autograd import Function\n\n\n" + "".join(FUNCTION.format(name=f"F{n}") for n in range(6))
    source += "class Legacy(Function):\n    def forward(self, x):\n        return x\n\n    def backward(self, g):\n        return g\n\n\nLegacy()(1)\n"
    plan = plan_regions(source, SMALL)
    assert plan is not None and len(plan.regions) >= 3
    whole, regions = both_ways(source)
    assert regions == whole and whole


def test_positions_and_messages_name_the_files_lines():
    """A message that names another line (AGL013: "replaces what line N saved") names the file's line."""
    twice = """\
class Twice(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.save_for_backward(x * 2)
        return x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g


"""
    source = "from torch.autograd import Function\n\n\n" + FUNCTION.format(name="A") * 1 + twice
    source += "".join(FUNCTION.format(name=f"B{n}") for n in range(4)) + twice.replace("Twice", "Again")
    plan = plan_regions(source, SMALL)
    assert plan is not None and len(plan.regions) >= 3
    whole, regions = both_ways(source)
    assert regions == whole
    first = line_of(source, "        ctx.save_for_backward(x)")
    assert any(d.code == "AGL013" and f"line {first}" in d.message for d in whole)
    assert any(d.code == "AGL013" and d.line > first + 40 for d in whole)


@pytest.mark.parametrize(
    "line",
    [
        "from torch import *",  # what it binds cannot be told
        "def set_global():\n    global SCALE\n    SCALE = 2",
        "NAMES = globals()",
        "exec('x = 1')",
    ],
)
def test_what_regions_cannot_promise_is_linted_whole(line):
    source = MODULE + "\n\n" + line + "\n"
    assert plan_regions(source, SMALL) is None
    whole, regions = both_ways(source)
    assert regions == whole


@pytest.mark.parametrize(
    "text",
    ["ctx.set_materialize_grads(False)", "torch.autocast('cuda')", "loss.backward(create_graph=True)"],
)
def test_what_rules_read_from_the_whole_text_makes_the_file_linted_whole(text):
    """AGL011 reads `set_materialize_grads` anywhere in the text, AGL022 the module's first autocast, AGL010
    its first second derivative: a file that mentions them is not cut."""
    source = MODULE + f"\n\ndef train(loss, ctx):\n    {text}\n"
    assert plan_regions(source, SMALL) is None


@pytest.mark.parametrize(
    "text",
    [
        "create_graph = True",
        "gradgradcheck",
        "hessian (f, x)",
        "vhp(",
        "jacrev(jacrev(",
        "grad (\n  torch.func.grad(f)",
    ],
)
def test_the_quick_look_for_second_derivatives_misses_none(text):
    """`takes_second_derivatives` looks for words every match contains before its slow pattern."""
    from autograd_lint.facts.second_derivatives import _SECOND_DERIVATIVE, takes_second_derivatives

    assert _SECOND_DERIVATIVE.search(text) is not None and takes_second_derivatives("x = 1\n" + text)


def test_a_syntax_error_is_reported_by_the_whole_file():
    source = MODULE + "\n\ndef broken(:\n    pass\n"
    assert plan_regions(source, SMALL) is None
    whole, regions = both_ways(source)
    assert regions == whole and [d.code for d in whole] == [SYNTAX_ERROR_CODE]


def test_a_notebook_is_linted_whole(tmp_path, monkeypatch):
    import json

    import autograd_lint.engine as engine

    cells = [{"cell_type": "code", "metadata": {}, "outputs": [], "source": MODULE, "execution_count": None}]
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    planned = []
    monkeypatch.setattr(engine, "plan_regions", lambda *args: planned.append(args))
    monkeypatch.setattr(engine, "DEFAULT_LIMITS", SMALL)
    found = lint_module(module_source(str(path), path.read_bytes()), str(path), CODES, "n")
    assert planned == [] and {d.code for d in found} >= {"AGL019", "AGL002", "AGL006"}


def buggy_fixtures() -> list[Path]:
    """The first buggy fixture of each rule: realistic modules with findings."""
    found = []
    for folder in sorted((ROOT / "fixtures").iterdir()):
        buggy = sorted(folder.glob("buggy_*.py"))
        if buggy:
            found.append(buggy[0])
    return found


def test_most_fixtures_are_cut():
    """What the test below compares is mostly regions (AGL017's and AGL022's read the whole text)."""
    cut = [path for path in buggy_fixtures() if plan_regions(path.read_text(encoding="utf-8"), SMALL) is not None]
    assert len(cut) >= len(buggy_fixtures()) - 3


@pytest.mark.parametrize("path", buggy_fixtures(), ids=lambda p: p.parent.name)
def test_fixtures_cut_in_regions_report_the_same(path):
    source = path.read_text(encoding="utf-8")
    whole, regions = both_ways(source)
    assert regions == whole


def test_the_largest_region_does_not_grow_with_the_file():
    """The N-copies module (benchmarks/generated.py): the regions' count grows with N, the largest region's
    text does not, so neither does the largest tree in memory (issue 17: linear in the size of one file)."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from generated import MODULE as MODULE_COPY
    from generated import copies

    limits = RegionLimits(regions_from=0, region_size=4_000, largest_share=0.5)
    small, large = plan_regions(copies(100), limits), plan_regions(copies(400), limits)
    assert small is not None and large is not None
    assert 3.5 <= len(large.regions) / len(small.regions) <= 4.5
    # a region's text: at most its size, plus the component that crossed it, plus the imports it copies
    bound = limits.region_size + 2 * len(MODULE_COPY.format(index=399))
    assert max(len(r.source) for r in small.regions + large.regions) <= bound
    # each copy's class and wrapper are owned by one region, and all of the file's statements by some region
    owned = sorted(line for r in large.regions for first, last in r.own_lines for line in range(first, last + 1))
    assert owned == list(range(1, copies(400).count("\n") + 2))


def test_regions_check_script_runs_on_a_folder(tmp_path):
    """benchmarks/regions_check.py, the equality check over real code, on two files (one cut, one not)."""
    import subprocess
    import sys

    (tmp_path / "long.py").write_text(MODULE)
    (tmp_path / "star.py").write_text(MODULE + "\nfrom torch import *\n")
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "regions_check.py"),
            "--from",
            "0",
            "--size",
            "200",
            "-j",
            "1",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("2 files compared, 1 cut in regions (")
    assert result.stdout.strip().endswith("2 equal")

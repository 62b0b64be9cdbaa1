"""Confirm mode, for real: harnesses run under torch in child processes.

Every marked finding in the buggy fixtures of AGL001-AGL004 must be confirmed with evidence a user
would accept; the recipes must say `not-reproduced` on correct code; hostile harnesses must end in a
clean `inconclusive` without leaving files or processes behind.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from snippets import EVERY_RULE

from autograd_lint import lint_source
from autograd_lint.confirm.builders import BUILDER_CODES, builder_for
from autograd_lint.confirm.harness import runtime_prelude
from autograd_lint.confirm.runner import RUNTIME_NAME, RunLimits, install_runtime, run_harness
from autograd_lint.confirm.session import confirm_diagnostics

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
BUGGY = sorted(p for p in FIXTURES.rglob("*.py") if p.name.startswith("buggy_") or p.parent.name == "motivating")
LIMITS = RunLimits(sys.executable, timeout=60)

# What the evidence must show, per rule (torch's own words or the measured numbers): its builder's EVIDENCE.
EVIDENCE = {code: re.compile(builder_for(code).EVIDENCE) for code in BUILDER_CODES}


@pytest.fixture(scope="module")
def fixture_verdicts():
    # The noqa checks judge comments: there is nothing to run (test_agl101 checks that verdict).
    diagnostics = [
        d for path in BUGGY for d in lint_source(path.read_text(), str(path), EVERY_RULE) if d.code in BUILDER_CODES
    ]
    return confirm_diagnostics(diagnostics, LIMITS, jobs=os.cpu_count() or 2)


# Findings the harness cannot run yet, each for a reason of the harness, not of the finding (the static
# rule is right; a maintainer reads the reason in the verdict). They must stay inconclusive with that
# reason: a harness that learns to run one fails this list until the entry is removed.
KNOWN_INCONCLUSIVE = {
    # numpy is not a dependency of autograd-lint[confirm] (torch 2.13 does not need it either).
    ("agl010/buggy_spline_warp_numpy_helper.py", 36, "AGL010"): "No module named 'numpy'",
    # The harness guesses a float for an argument forward uses as a tensor only through a helper or an
    # attribute call (`weight.t()`, `F.linear(x, weight)`); forward accepts a tensor there, backward fails.
    ("agl022/buggy_dense_gelu_block.py", 10, "AGL022"): "failed without autocast too",
    ("agl022/buggy_trainer_amp_context.py", 11, "AGL022"): "failed without autocast too",
}


def test_every_buggy_fixture_finding_is_confirmed_with_evidence(fixture_verdicts):
    assert len(fixture_verdicts) >= 50
    failures = []
    for diagnostic, result in sorted(fixture_verdicts.items(), key=lambda item: item[0].sort_key()):
        known = KNOWN_INCONCLUSIVE.get(
            (Path(diagnostic.path).relative_to(FIXTURES).as_posix(), diagnostic.line, diagnostic.code)
        )
        if known is not None:
            if result.verdict != "inconclusive" or known not in result.evidence:
                failures.append(
                    f"{diagnostic.path}:{diagnostic.line} {diagnostic.code}: expected inconclusive ({known}), got {result.verdict}: {result.evidence}"
                )
            continue
        if result.verdict != "confirmed" or not EVIDENCE[diagnostic.code].search(result.evidence):
            failures.append(
                f"{diagnostic.path}:{diagnostic.line} {diagnostic.code}: {result.verdict}: {result.evidence}"
            )
    assert failures == []


def test_arity_evidence_quotes_torchs_numbers(fixture_verdicts):
    for diagnostic, result in fixture_verdicts.items():
        if diagnostic.code == "AGL002":
            expected = re.search(r"\(expected (\d+), got (\d+)\)", diagnostic.explanation).groups()
            assert f"(expected {expected[0]}, got {expected[1]})" in result.evidence


def run_recipe(code: str, timeout: float = 60) -> tuple[str, str]:
    """Run `code` as a harness script: the runtime's probes are `_agl_probes`, each rule's recipe module is
    there by its name (`agl002.check_arity(...)`)."""
    recipes = ", ".join(sorted(rule.lower() for rule in BUILDER_CODES))
    script = f"{runtime_prelude()}\nfrom {RUNTIME_NAME} import {recipes}\n{textwrap.dedent(code)}"
    result = run_harness(script, RunLimits(sys.executable, timeout=timeout))
    return result.verdict, result.evidence


CORRECT_FUNCTION = """
import torch
class Scale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.alpha = alpha
        return x * alpha
    @staticmethod
    def backward(ctx, g):
        return g * ctx.alpha, None
"""


def test_recipes_do_not_confirm_correct_code():
    arity = run_recipe(
        CORRECT_FUNCTION
        + "agl002.check_arity(Scale.apply, [('Scale.apply(x, 2.0)', lambda s: [_agl_probes.leaf_tensor(s), 2.0])],"
        + " ['incorrect number'])",
    )
    assert arity[0] == "not-reproduced"
    shared = run_recipe(
        CORRECT_FUNCTION
        + "STATE = {'alpha': 0.5}\n"
        + "agl001.check_shared_state(Scale.apply, [('Scale.apply(x, 2.0)', lambda s: [_agl_probes.leaf_tensor(s), 2.0])],"
        + " lambda: STATE['alpha'], lambda v: STATE.update(alpha=v), \"STATE['alpha']\")",
    )
    assert shared[0] == "not-reproduced"
    relu = run_recipe("import torch\nagl003.compare_with_relu(torch.relu, 'torch.relu(x)')")
    assert relu[0] == "not-reproduced"
    ste = run_recipe(
        "import torch\n"
        "def ste_round(x):\n    return x + (x.round() - x).detach()\n"
        "agl004.compare_with_straight_through(lambda ns: (ns['ste_round'], None, None), globals(), None, 'ste_round()',"
        " 'x.round()')",
    )
    assert ste[0] == "not-reproduced"


def test_missing_torch_is_inconclusive_with_the_reason(tmp_path):
    no_torch = tmp_path / "python-without-torch"
    no_torch.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    no_torch.chmod(0o755)
    source = FIXTURES / "motivating" / "case_c_arity.py"
    diagnostics = lint_source(source.read_text(), str(source))
    verdicts = confirm_diagnostics(diagnostics, RunLimits(str(no_torch), timeout=30))
    (result,) = verdicts.values()
    assert result.verdict == "inconclusive" and "no torch in" in result.evidence


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """A temp root of this test's own, so that other runs' harness directories cannot interfere."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def hostile(body: str, root: Path, timeout: float = 4, memory_mb: int = 4096):
    result = run_harness(textwrap.dedent(body), RunLimits(sys.executable, timeout=timeout, memory_mb=memory_mb))
    assert os.listdir(root) == []  # the harness's temp directory is gone
    return result


def harness_processes(root: Path) -> list[str]:
    """Running processes whose command line names a harness under this test's temp root."""
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(root) in line]


@pytest.mark.parametrize(
    "name, body, reason",
    [
        ("infinite loop", "while True:\n    pass\n", "timeout"),
        (
            "huge allocation",
            "block = bytearray(64 * 1024 ** 3)\n",
            "memory limit: the harness needed more than 4096 MB (MemoryError)",
        ),
        ("os._exit", "import os\nos._exit(3)\n", "status 3"),
        ("megabytes of output", "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", "output limit"),
        ("SIGKILL of itself", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", "SIGKILL"),
        ("exception", "raise ValueError('boom')\n", "ValueError: boom"),
    ],
)
def test_hostile_harness_ends_inconclusive(name, body, reason, private_tmp):
    result = hostile(body, private_tmp)
    assert result.verdict == "inconclusive"
    assert reason in result.evidence
    assert harness_processes(private_tmp) == []


def test_forked_children_are_killed_with_the_harness(private_tmp):
    body = "import os, time\nif os.fork() == 0:\n    while True:\n        time.sleep(0.1)\ntime.sleep(60)\n"
    result = hostile(body, private_tmp, timeout=2)
    assert result.verdict == "inconclusive" and "timeout" in result.evidence
    assert harness_processes(private_tmp) == []


def test_a_child_that_outlives_a_finished_harness_is_killed(private_tmp):
    body = "import os, time\nif os.fork() == 0:\n    time.sleep(30)\n    os._exit(0)\n"
    result = hostile(
        runtime_prelude() + "\n" + body + "_agl_probes.report('not-reproduced', 'parent done')\n",
        private_tmp,
        timeout=10,
    )
    assert result.verdict == "not-reproduced"
    assert harness_processes(private_tmp) == []


def test_files_written_in_the_working_directory_do_not_survive(private_tmp):
    result = hostile("open('left_behind.txt', 'w').write('x')\nraise SystemExit(0)\n", private_tmp)
    assert result.verdict == "inconclusive"
    assert not Path("left_behind.txt").exists()


def test_hostile_module_does_not_stop_the_other_verdicts(tmp_path):
    hostile_module = tmp_path / "hostile.py"
    hostile_module.write_text(
        textwrap.dedent(
            """
            import torch
            from torch.autograd import Function

            class Hang(Function):
                @staticmethod
                def forward(ctx, x, scale):
                    while True:
                        pass

                @staticmethod
                def backward(ctx, g):
                    return g
            """
        )
    )
    good = FIXTURES / "motivating" / "case_c_arity.py"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "autograd_lint",
            "--confirm",
            "--confirm-timeout",
            "15",
            "--output-format",
            "json",
            str(hostile_module),
            str(good),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    entries = json.loads(proc.stdout)
    verdicts = {Path(e["path"]).name: e["confirm"] for e in entries}
    assert verdicts["hostile.py"]["verdict"] == "inconclusive" and "timeout" in verdicts["hostile.py"]["evidence"]
    assert verdicts["case_c_arity.py"]["verdict"] == "confirmed"
    assert set(verdicts["case_c_arity.py"]) == {"verdict", "evidence", "seconds"}


def test_harness_never_contains_the_main_block():
    from autograd_lint.confirm.session import _script_for
    from autograd_lint.core.module import ParsedModule

    path = FIXTURES / "motivating" / "case_a_grad_decay.py"
    source = path.read_text()
    assert '__name__ == "__main__"' in source
    (diagnostic,) = lint_source(source, str(path), EVERY_RULE)
    script = _script_for(ParsedModule(source, str(path)), diagnostic)
    assert "__main__" not in script.split("# ---- the user's definitions")[1]
    definitions, recipe = script.split("# ---- the user's definitions")[1].split("# ---- the recipe")
    # the Function is defined; its wrapper is not, it is only handed to the input harvest as a driver
    assert "class GradDecay" in definitions and "def grad_decay" not in definitions
    assert "[('grad_decay', 2)]" in recipe


# --- the runtime package and the builder registry ----------------------------------------------------

RUNTIME = Path(__file__).resolve().parent.parent / "autograd_lint" / "confirm" / "runtime"


def test_the_runtime_imports_only_the_standard_library_torch_and_itself():
    outside = []
    for path in sorted(RUNTIME.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                continue
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            outside += [
                f"{path.name}: {name}"
                for name in names
                if name.split(".")[0] not in (*sys.stdlib_module_names, "torch")
            ]
    assert outside == []


def test_the_runtime_imports_in_an_isolated_interpreter_with_only_its_folder_and_the_standard_library(tmp_path):
    install_runtime(str(tmp_path))
    modules = sorted(path.stem for path in RUNTIME.glob("agl*.py"))
    assert len(modules) == len(BUILDER_CODES) == 24
    # The interpreter's own sys.path, less every site-packages folder (where autograd-lint, torch and libcst are).
    code = (
        f"import sys; sys.path[:] = [{str(tmp_path)!r}, *(p for p in sys.path if not p.endswith(('site-packages', 'dist-packages')))]\n"
        f"import importlib\n"
        f"for name in {['probes', *modules]!r}:\n"
        f"    importlib.import_module('{RUNTIME_NAME}.' + name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in ('autograd_lint', 'torch', 'libcst')))\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == "[]\n"


def test_a_harness_runs_its_recipe_with_an_interpreter_that_lacks_autograd_lint(tmp_path):
    # `python -S`: no site-packages, so neither autograd-lint nor torch; the probes still report.
    bare = tmp_path / "python-without-site-packages"
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    script = runtime_prelude("agl002") + (
        "\nimport sys\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'autograd_lint', 'torch', 'libcst'})\n"
        "_agl_probes.report('not-reproduced', f'{_agl_recipe.__name__} {_agl_recipe.check_arity.__name__} {loaded}')\n"
    )
    result = run_harness(script, RunLimits(str(bare), timeout=30))
    assert (result.verdict, result.evidence) == ("not-reproduced", f"{RUNTIME_NAME}.agl002 check_arity []")


def test_names_the_module_defines_do_not_clash_with_the_runtime(tmp_path):
    # Before the runtime was a package, its helpers shared the harness's namespace with the user's code.
    module = tmp_path / "clashing.py"
    module.write_text(
        textwrap.dedent(
            """
        import torch

        probes = report = leaf_tensor = run_forward = run_backward = check_arity = "the user's own"
        agl002 = INPUT_SHAPES = None


        class ScaleGrad(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, scale):
                ctx.scale = scale
                return x * scale

            @staticmethod
            def backward(ctx, grad):
                return grad * ctx.scale
        """
        )
    )
    diagnostics = lint_source(module.read_text(), str(module))
    assert [d.code for d in diagnostics] == ["AGL002"]
    (result,) = confirm_diagnostics(diagnostics, LIMITS).values()
    assert result.verdict == "confirmed" and EVIDENCE["AGL002"].search(result.evidence), result.evidence


def test_every_rule_but_the_noqa_and_audit_checks_has_a_builder_with_evidence_and_a_runtime_recipe():
    from autograd_lint.core.rule import AuditRule, NoqaRule
    from autograd_lint.rules import RULES

    with_findings = {code for code in RULES if not issubclass(RULES[code], (NoqaRule, AuditRule))}
    assert BUILDER_CODES == with_findings
    probes = _defined_names(RUNTIME / "probes.py")
    for code in sorted(BUILDER_CODES):
        builder = builder_for(code)
        assert callable(builder.build) and re.compile(builder.EVIDENCE).pattern
        # What the harness code it writes calls exists in the runtime (else only a harness would notice).
        recipe = _defined_names(RUNTIME / f"{code.lower()}.py")
        source = Path(builder.__file__).read_text()
        assert set(re.findall(r"_agl_recipe\.(\w+)", source)) - recipe == set(), code
        assert set(re.findall(r"_agl_probes\.(\w+)", source)) - probes == set(), code
    assert builder_for("AGL100") is None


def _defined_names(path: Path) -> set[str]:
    return {node.name for node in ast.parse(path.read_text()).body if isinstance(node, ast.FunctionDef)}

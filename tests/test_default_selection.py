"""The default selection: every rule but the opt-in ones, and AGL010 where the package takes second derivatives."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from autograd_lint import lint_paths, lint_source
from autograd_lint.config import Config
from autograd_lint.facts.second_derivatives import SecondDerivativeScope, package_root, takes_second_derivatives
from autograd_lint.rules import OPT_IN, RULES, SECOND_DERIVATIVE_RULES, default_selection

# A backward that calls a compiled extension: AGL010 at line 10, column 16 (the extension call).
KERNEL_FUNCTION = textwrap.dedent("""\
    import torch
    import my_ext

    class Fused(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return my_ext.forward(x)
        @staticmethod
        def backward(ctx, grad):
            return my_ext.backward(grad)
    """)
GRADIENT_PENALTY = textwrap.dedent("""\
    import torch

    def penalty(critic, x):
        x.requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
        return ((g.norm(dim=1) - 1) ** 2).mean()
    """)


def codes(diagnostics) -> list[str]:
    return [d.code for d in diagnostics]


def test_default_selection_is_the_rules_outside_opt_in():
    assert set(default_selection()) == set(RULES) - OPT_IN
    assert SECOND_DERIVATIVE_RULES <= OPT_IN
    assert "AGL002" in default_selection() and "AGL004" in OPT_IN


@pytest.mark.parametrize(
    "source, expected",
    [
        ("loss.backward(create_graph=True)", True),
        ("g = torch.autograd.grad(y, x, create_graph = True)[0]", True),
        ("torch.autograd.gradgradcheck(fn, (x,))", True),
        ("h = torch.func.hessian(f)(x)", True),
        ("torch.autograd.functional.hvp(f, x, v)", True),
        ("d2 = grad(grad(f))(x)", True),
        ("j = jacfwd(jacrev(f))(x)", True),
        ("loss.backward(create_graph=False)", False),
        ("g = torch.autograd.grad(y, x)", False),
        ("h = compute_hessian_free(x)", False),
        ("j = jacrev(f)(x)", False),
    ],
)
def test_what_counts_as_taking_second_derivatives(source, expected):
    assert takes_second_derivatives(source) is expected
    assert takes_second_derivatives(source.encode()) is expected


def test_lint_source_runs_agl010_only_where_the_module_takes_second_derivatives():
    assert codes(lint_source(KERNEL_FUNCTION, "ops.py")) == []
    with_penalty = KERNEL_FUNCTION + "\n" + GRADIENT_PENALTY
    assert [(d.code, d.line, d.column) for d in lint_source(with_penalty, "ops.py")] == [("AGL010", 10, 16)]
    assert codes(lint_source(KERNEL_FUNCTION, "ops.py", Config(select=("AGL010",)))) == ["AGL010"]
    assert codes(lint_source(KERNEL_FUNCTION, "ops.py", Config(extend_select=("AGL010",)))) == ["AGL010"]
    # An explicit selection is exactly what it says: no conditional rules are added to it.
    assert codes(lint_source(with_penalty, "ops.py", Config(select=("AGL002",)))) == []
    assert codes(lint_source(with_penalty, "ops.py", Config(ignore=("AGL010",)))) == []


@pytest.fixture
def package(tmp_path):
    """pkg/ops/fused.py defines the Function; pkg/train/gan.py (same top-level package) takes a gradient penalty."""
    for folder in ("pkg", "pkg/ops", "pkg/train"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "pkg/ops/fused.py").write_text(KERNEL_FUNCTION)
    (tmp_path / "standalone.py").write_text(KERNEL_FUNCTION)
    return tmp_path


def test_a_package_that_takes_second_derivatives_elsewhere_gets_agl010(package, monkeypatch):
    monkeypatch.chdir(package)
    assert codes(lint_paths(["."]).diagnostics) == []
    (package / "pkg/train/gan.py").write_text(GRADIENT_PENALTY)
    found = [(d.path, d.code) for d in lint_paths(["."]).diagnostics]
    assert found == [("pkg/ops/fused.py", "AGL010")]  # standalone.py is outside the package
    # The same when the module is linted alone, as pre-commit passes only the changed files.
    assert codes(lint_paths(["pkg/ops/fused.py"]).diagnostics) == ["AGL010"]


def test_package_root_is_the_top_level_package(package):
    assert package_root(str(package / "pkg/ops/fused.py")) == str(package / "pkg")
    assert package_root(str(package / "standalone.py")) is None
    scope = SecondDerivativeScope()
    assert scope.covers(str(package / "standalone.py"), GRADIENT_PENALTY) is True
    assert scope.covers(str(package / "pkg/ops/fused.py"), KERNEL_FUNCTION) is False


def test_the_cli_default_run_and_select_all(package):
    (package / "pkg/train/gan.py").write_text(GRADIENT_PENALTY)
    run = [sys.executable, "-m", "autograd_lint", "--no-cache", "-q", "--output-format", "text"]
    default = subprocess.run(run + ["."], cwd=package, capture_output=True, text=True)
    assert default.returncode == 1
    assert [line.split(": ")[0] + " " + line.split(": ")[1].split()[0] for line in default.stdout.splitlines()] == [
        "pkg/ops/fused.py:10:16 AGL010"
    ]
    every = subprocess.run(run + ["--select", "ALL", "."], cwd=package, capture_output=True, text=True)
    assert sorted(line.split(":")[0] for line in every.stdout.splitlines()) == ["pkg/ops/fused.py", "standalone.py"]


def test_the_package_is_read_for_second_derivatives_only_when_the_selection_depends_on_it(package, monkeypatch):
    from autograd_lint.facts import second_derivatives

    read = []
    original = second_derivatives._any_module_takes_them
    monkeypatch.setattr(second_derivatives, "_any_module_takes_them", lambda root: read.append(root) or original(root))
    monkeypatch.chdir(package)
    lint_paths(["pkg/ops/fused.py"], Config(select=("ALL",)))
    lint_paths(["pkg/ops/fused.py"], Config(select=("AGL002",)))
    assert read == []  # an explicit selection is what it says: the package does not change it
    lint_paths(["pkg/ops/fused.py"])
    assert read == [str(package / "pkg")]

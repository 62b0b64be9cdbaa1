"""`autograd-lint audit`: every custom Function gradchecked under real torch, through the library and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixture_markers import expected_audit_verdicts

from autograd_lint.cli import main
from autograd_lint.config import Config
from autograd_lint.confirm.audit import audit_paths
from autograd_lint.confirm.runner import RunLimits

ROOT = Path(__file__).resolve().parent.parent
# Realistic modules (helpers, module wrappers, demos) whose Functions carry the verdict the audit must give.
AUDIT_FIXTURES = ROOT / "fixtures" / "audit"

IMPORTS = "import torch\n\n\n"
MISSING_FACTOR = """\
class MissingFactor(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x * x * w

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        return grad * x * w, grad * x * x


"""
SCALE = """\
class Scale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x * factor

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


"""
ROUND_STE = """\
class RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


"""
FIVE_D = """\
class FiveD(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        if x.dim() != 5:
            raise ValueError("expected a 5-d input")
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        return grad * 2


"""
SCALE_CALLER = """\
def scaled(x):
    return Scale.apply(x, 3.0)
"""
OPS = IMPORTS + MISSING_FACTOR + SCALE + ROUND_STE + FIVE_D + SCALE_CALLER
# Correct, with a Python number among its inputs (a literal at the call site).
CLEAN = IMPORTS + SCALE + SCALE_CALLER
WRONG = IMPORTS + MISSING_FACTOR


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audit")
    (folder / "ops.py").write_text(OPS)
    report = audit_paths([str(folder)], Config(), RunLimits(sys.executable, timeout=60), jobs=2)
    return folder, {function.name: function for function in report.functions}, report


def test_every_function_gets_one_verdict_at_its_backward(audited):
    _, functions, report = audited
    assert [(f.name, f.verdict, f.line, f.column) for f in report.functions] == [
        ("MissingFactor", "wrong-gradient", 11, 9),
        ("Scale", "verified", 23, 9),
        ("RoundSTE", "ste", 33, 9),
        ("FiveD", "inconclusive", 45, 9),
    ]
    assert report.counts() == {"verified": 1, "wrong-gradient": 1, "ste": 1, "inconclusive": 1}


def test_a_missing_factor_names_the_input_and_the_errors(audited):
    _, functions, _ = audited
    wrong = functions["MissingFactor"]
    assert wrong.wrong_input == "x"
    # backward gives x*w where the derivative is 2*x*w: half of it missing, whatever the inputs.
    assert wrong.max_rel == pytest.approx(0.5, abs=1e-6)
    assert wrong.max_abs > 0.05
    assert wrong.detail == (
        "MissingFactor.apply(<tensor>, <tensor>): the gradient of `x` differs from the numerical one (inputs: declared)"
    )


def test_the_reproduction_script_reproduces_the_wrong_gradient_on_its_own(audited):
    folder, functions, _ = audited
    script = folder / "reproduce.py"
    script.write_text(functions["MissingFactor"].reproduction)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=folder)
    assert proc.returncode == 1
    assert "GradcheckError: Jacobian mismatch for output 0 with respect to input 0" in proc.stderr


def test_a_non_tensor_argument_is_not_differentiated_and_second_order_is_checked(audited):
    _, functions, _ = audited
    assert functions["Scale"].detail == (
        "Scale.apply(<tensor>, 3.0): gradcheck passed for x and gradgradcheck (inputs: call site)"
    )


def test_a_rounding_straight_through_estimator_is_ste(audited):
    _, functions, _ = audited
    assert functions["RoundSTE"].detail == (
        "RoundSTE.apply(<tensor>): forward is piecewise constant in x: identity backward (straight-through estimator)"
        " (inputs: declared)"
    )


def test_a_forward_that_rejects_the_synthesized_inputs_is_inconclusive_with_the_reason(audited):
    _, functions, _ = audited
    assert functions["FiveD"].detail == (
        "forward failed on every synthesized input; last error: ValueError: expected a 5-d input"
        " (inputs: declared, then searched (8 tries): forward accepted none)"
    )


def invoke(args: list[str]):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_cli_reports_a_wrong_gradient_in_json_and_exits_1(tmp_path, monkeypatch):
    (tmp_path / "wrong.py").write_text(WRONG)
    monkeypatch.chdir(tmp_path)
    result = invoke(["audit", "--output-format", "json", "wrong.py"])
    assert result.exit_code == 1, result.stderr
    (entry,) = json.loads(result.stdout)
    assert (entry["code"], entry["name"], entry["path"], entry["line"], entry["column"]) == (
        "AGL200",
        "gradient-mismatch",
        "wrong.py",
        11,
        9,
    )
    assert entry["message"].startswith("MissingFactor.backward: wrong gradient for `x` (max abs error ")
    assert "torch.autograd.gradcheck(function, inputs)" in entry["explanation"]
    assert result.stderr.splitlines()[-1] == (
        "Audited 1 Function in 1 files: 0 verified, 1 wrong-gradient, 0 ste, 0 inconclusive."
    )


def test_cli_honours_ignore_and_noqa_for_agl200(tmp_path, monkeypatch):
    silenced = WRONG.replace("def backward(ctx, grad):", "def backward(ctx, grad):  # noqa: AGL200")
    (tmp_path / "silenced.py").write_text(silenced)
    (tmp_path / "wrong.py").write_text(WRONG)
    monkeypatch.chdir(tmp_path)
    result = invoke(["audit", "-j", "2", "--ignore", "AGL200", "--show-progress", "."])
    assert (result.exit_code, result.stdout) == (0, "")
    # Not a terminal: --show-progress prints the counter as lines (the first and the last at least).
    progress = [line for line in result.stderr.splitlines() if line.startswith("audit: ")]
    assert progress[0].startswith("audit: 0/2 Functions audited, ") and progress[-1].startswith("audit: 2/2 ")
    assert result.stderr.endswith("0 verified, 2 wrong-gradient, 0 ste, 0 inconclusive.\n")
    result = invoke(["audit", "silenced.py"])
    assert (result.exit_code, result.stdout) == (0, "")


def test_cli_rejects_an_interpreter_that_cannot_run_harnesses(tmp_path):
    result = invoke(["audit", "--python", "/nonexistent/python", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr == "autograd-lint: error: audit cannot run with --python /nonexistent/python: no such file\n"


def test_a_clean_module_exits_0_in_a_real_process(tmp_path):
    (tmp_path / "clean.py").write_text(CLEAN)
    proc = subprocess.run(
        [sys.executable, "-m", "autograd_lint", "audit", "--show-verdicts", "clean.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "clean.py:11:9: Scale: verified: Scale.apply(<tensor>, 3.0): gradcheck passed for x and gradgradcheck"
        " (inputs: call site)",
        "Audited 1 Function in 1 files: 1 verified, 0 wrong-gradient, 0 ste, 0 inconclusive.",
    ]


@pytest.fixture(scope="module")
def fixture_verdicts():
    report = audit_paths([str(AUDIT_FIXTURES)], Config(), RunLimits(sys.executable, timeout=60), jobs=2)
    return {(Path(f.path).name, f.name): (f.verdict, f.detail) for f in report.functions}


AUDIT_FIXTURE_FILES = sorted(AUDIT_FIXTURES.glob("*.py"))


def test_every_audit_fixture_function_carries_its_verdict():
    expected = {path.name: expected_audit_verdicts(path.read_text()) for path in AUDIT_FIXTURE_FILES}
    every = {verdict for verdicts in expected.values() for verdict in verdicts.values()}
    assert every == {"verified", "wrong-gradient", "ste"}
    assert sum(len(verdicts) for verdicts in expected.values()) >= 60


@pytest.mark.parametrize("path", AUDIT_FIXTURE_FILES, ids=lambda p: p.name)
def test_audit_fixtures_get_the_verdicts_their_markers_name(fixture_verdicts, path):
    expected = expected_audit_verdicts(path.read_text())
    got = {name: verdict for (file, name), (verdict, _) in fixture_verdicts.items() if file == path.name}
    assert got.keys() == expected.keys(), "every audited Function is marked, every marked one audited"
    wrong = {
        name: (expected[name], fixture_verdicts[path.name, name]) for name in expected if got[name] != expected[name]
    }
    assert wrong == {}


def test_an_undifferentiated_input_the_code_does_not_show_is_retried_as_a_number(fixture_verdicts):
    # RMSNorm's eps comes from `self.eps`: synthesized as a tensor it broadcasts per element and forward's
    # math is no longer the one backward differentiates.
    verdict, detail = fixture_verdicts["audit_reductions.py", "RMSNormFunction"]
    assert (verdict, detail) == (
        "verified",
        "RMSNormFunction.apply(<tensor>, <tensor>, <tensor>): gradcheck passed for x, weight (with `eps` a number,"
        " not a synthesized tensor) and gradgradcheck (inputs: declared)",
    )


@pytest.mark.parametrize(
    ("file", "name", "verdict", "why"),
    [
        # Each recheck that the synthesized inputs needed, named in the verdict's detail.
        (
            "audit_activations.py",
            "SharpSoftplusForgetsBeta",
            "wrong-gradient",
            "(with `beta` 2: at 1 it hid the error)",
        ),
        ("audit_indexing.py", "ScatterRowsInto", "verified", "gradcheck passed for base, src and gradgradcheck"),
        ("audit_linear_layers.py", "Im2ColAssignsOverlaps", "wrong-gradient", "(with the last dimension 6: at 3"),
        ("audit_losses.py", "MaskedMSELoss", "verified", "(with `mask` a bool mask, not a synthesized tensor)"),
        (
            "audit_losses.py",
            "ClampedBinaryCrossEntropy",
            "verified",
            "(with inputs in (0, 1): forward clamps the synthesized ones into its domain)",
        ),
        ("audit_losses.py", "FocalLossRecomputed", "verified", "backward's result is not differentiable"),
        ("audit_reductions.py", "LayerNormWeightIgnoresIncoming", "wrong-gradient", "the gradient of `weight`"),
    ],
)
def test_what_synthesized_inputs_hide_is_rechecked(fixture_verdicts, file, name, verdict, why):
    got, detail = fixture_verdicts[file, name]
    assert (got, why in detail) == (verdict, True), detail


DEVICE_FUNCTIONS = """\
import os

import torch


class OnGpu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return (x.cuda() * 2).cpu()

    @staticmethod
    def backward(ctx, grad):
        return grad * 2


class SeesNoGpu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        if os.environ.get("CUDA_VISIBLE_DEVICES") != "" or os.environ.get("AUTOGRAD_LINT_DEVICE") != "cpu":
            raise RuntimeError("a GPU is visible")
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        return grad * 2
"""


def test_cli_device_cpu_hides_the_gpu_and_a_function_needing_cuda_is_inconclusive(tmp_path, monkeypatch):
    (tmp_path / "gpu.py").write_text(DEVICE_FUNCTIONS)
    monkeypatch.chdir(tmp_path)
    result = invoke(["audit", "-j", "2", "--device", "cpu", "--show-verdicts", "gpu.py"])
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr.splitlines() == [
        "gpu.py:12:9: OnGpu: inconclusive: needs a CUDA device (gpu.py:8 initializes CUDA; confirm ran on the CPU)",
        "gpu.py:24:9: SeesNoGpu: verified: SeesNoGpu.apply(<tensor>): gradcheck passed for x and gradgradcheck"
        " (inputs: declared)",
        "Audited 2 Functions in 1 files: 1 verified, 0 wrong-gradient, 0 ste, 1 inconclusive.",
    ]


def test_cli_device_cuda_reaches_the_child_that_cannot_initialize_cuda_here(tmp_path, monkeypatch):
    import torch

    from autograd_lint.confirm import audit as audit_module

    # This torch is a CPU build: the preflight runs under the harnesses' limits with the device asked for.
    assert torch.version.cuda is None
    monkeypatch.setattr(audit_module, "run_scripts", lambda *args, **kwargs: pytest.fail("a harness ran"))
    (tmp_path / "gpu.py").write_text(DEVICE_FUNCTIONS)
    result = invoke(["audit", "--device", "cuda", str(tmp_path)])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"autograd-lint: error: audit cannot run with --device cuda: {sys.executable} cannot initialize CUDA "
        "(AssertionError: Torch not compiled with CUDA enabled)\n"
    )


def test_cli_caches_verdicts_so_an_unchanged_function_is_not_audited_again(tmp_path, monkeypatch):
    from autograd_lint.confirm import session

    (tmp_path / "ops.py").write_text(OPS)
    monkeypatch.chdir(tmp_path)
    first = invoke(["audit", "-j", "2", "--show-verdicts", "ops.py"])
    assert first.exit_code == 1
    ran = []
    real_run_harness = session.run_harness
    monkeypatch.setattr(
        session, "run_harness", lambda script, limits: ran.append(script) or real_run_harness(script, limits)
    )
    audited = lambda: [script for script in ran if "_agl_recipe.audit(" in script]  # noqa: E731 - not the preflight
    second = invoke(["audit", "-j", "2", "--show-verdicts", "ops.py"])
    # FiveD is inconclusive (its forward rejects every input): such a verdict is never kept, so it runs again.
    assert len(audited()) == 1 and "FiveD.apply" in audited()[0]
    assert (second.exit_code, second.stdout, second.stderr) == (first.exit_code, first.stdout, first.stderr)
    (tmp_path / "ops.py").write_text(
        OPS.replace("return grad * x * w, grad * x * x", "return 2 * grad * x * w, grad * x * x")
    )
    ran.clear()
    third = invoke(["audit", "-j", "2", "--show-verdicts", "ops.py"])
    assert third.exit_code == 0
    assert "ops.py:11:9: MissingFactor: verified: " in third.stderr
    # The file changed, and with it the project digest every Function's key holds: all four run again.
    assert len(audited()) == 4
    ran.clear()
    invoke(["audit", "--no-cache", "ops.py"])
    assert len(audited()) == 4


def test_a_sampling_forward_is_a_straight_through_estimator_not_an_auxiliary_loss(fixture_verdicts):
    # Seeded alike, forward is flat in x at gradcheck's step, yet a large change of x changes what it samples.
    assert fixture_verdicts["audit_quantizers.py", "StochasticBinarize"] == (
        "ste",
        "StochasticBinarize.apply(<tensor>): forward is piecewise constant in x: elementwise surrogate backward"
        " (straight-through estimator) (inputs: declared)",
    )


def test_a_double_backward_through_an_intermediate_saved_in_forward_is_not_a_wrong_gradient(fixture_verdicts):
    # log_probs is computed in forward, where autograd does not record: gradgradcheck fails, as it does for
    # every custom Function saving an intermediate, but backward's values are right.
    verdict, detail = fixture_verdicts["audit_losses.py", "CrossEntropy"]
    assert verdict == "verified"
    assert detail.endswith(
        "gradcheck passed for logits; second order not checked: forward saves an intermediate tensor for backward,"
        " which double backward cannot differentiate through (inputs: harvested from _demo_ce_ok())"
    )


def test_a_low_rank_derivative_counts_as_a_shared_scale_only_when_outputs_move_with_other_elements():
    import torch

    from autograd_lint.confirm.runtime.audit import _straight_through

    x = torch.tensor([0.7, -0.4, 1.1, -0.9, 0.3, -1.2], dtype=torch.float64)
    identity = torch.eye(6, dtype=torch.float64)
    # sign(x) * mean|x|: every output moves with every element, rank 1.
    shared_scale = torch.outer(x.sign(), x.sign()) / 6
    assert _straight_through(0.0, identity, shared_scale)
    # A ReLU's derivative with a backward that inverts its mask: as low in rank, but diagonal.
    relu = torch.diag((x > 0).to(torch.float64))
    inverted = torch.diag((x <= 0).to(torch.float64))
    assert not _straight_through(0.0, inverted, relu)


UNCHECKABLE = """\
import torch
import torch.distributed as dist


class AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class NewEmptyTensorOp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, new_shape):
        ctx.shape = x.shape
        return x.new_empty(new_shape)

    @staticmethod
    def backward(ctx, grad):
        return NewEmptyTensorOp.apply(grad, ctx.shape), None
"""


def test_gradients_a_run_cannot_show_are_inconclusive_not_verdicts(tmp_path):
    # In a one-process group every collective is an identity; `new_empty` (an op for tensors without
    # elements) returns memory nothing wrote, which no gradient describes.
    (tmp_path / "ops.py").write_text(UNCHECKABLE)
    report = audit_paths([str(tmp_path)], Config(), RunLimits(sys.executable, timeout=60), jobs=2)
    verdicts = {f.name: (f.verdict, f.detail) for f in report.functions}
    verdict, detail = verdicts["AllReduceSum"]
    assert verdict == "inconclusive"
    assert "ran in a one-process group (world size 1), where collectives change no values: verified there" in detail
    # Which check first trips over the garbage depends on what the memory held: never a verdict.
    assert verdicts["NewEmptyTensorOp"][0] == "inconclusive"


# A library whose model-parallel state is None by design (one process) and a communication backend that stays
# None until its initializer runs: the audit gives the backend a stand-in, never the library's None state.
PARALLEL_LIBRARY = """\
mpu = None
backend = None


def tensor_parallel_size():
    if mpu is None:
        return 1
    return mpu.get_tensor_model_parallel_world_size()


def all_reduce(tensor, group=None):
    return backend.all_reduce(tensor, group=group)


def get_world_size(group=None):
    return backend.get_world_size(group)
"""

PARALLEL_OPS = """\
import torch

import parallel_library


class SplitAcrossRanks(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        size = parallel_library.tensor_parallel_size()
        ctx.size = size
        return x * size

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.size
"""


def test_a_librarys_parallel_state_that_is_none_by_design_is_left_alone(tmp_path):
    (tmp_path / "parallel_library.py").write_text(PARALLEL_LIBRARY)
    (tmp_path / "ops.py").write_text(PARALLEL_OPS)
    report = audit_paths([str(tmp_path / "ops.py")], Config(), RunLimits(sys.executable, timeout=60), jobs=1)
    assert [(f.name, f.verdict) for f in report.functions] == [("SplitAcrossRanks", "verified")]

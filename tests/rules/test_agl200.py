"""AGL200 gradient-mismatch: the audit's verdict for each snippet, from really running it under torch.

The linter never reports AGL200 (`autograd-lint audit` does), so these tables are audited, all in one run:
a VALID snippet reports nothing, an INVALID one exactly its `# AGL200:col` marker (at `def backward`).
"""

from __future__ import annotations

import sys
import textwrap

import pytest
from snippets import marked_positions

from autograd_lint.config import Config
from autograd_lint.confirm.audit import audit_diagnostics, audit_paths
from autograd_lint.confirm.runner import RunLimits
from autograd_lint.report.pages import rule_page

VALID = [
    # correct, with a Python number among the inputs
    """\
        import torch


        class Scale(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, factor):
                ctx.factor = factor
                return x * factor

            @staticmethod
            def backward(ctx, grad):
                return grad * ctx.factor, None


        def scaled(x):
            return Scale.apply(x, 3.0)
    """,
    # a straight-through estimator: round in forward, identity backward
    """\
        import torch


        class RoundSTE(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return torch.round(x)

            @staticmethod
            def backward(ctx, grad):
                return grad
    """,
    # sign with a clipped-identity backward
    """\
        import torch


        class SignSTE(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x.sign()

            @staticmethod
            def backward(ctx, grad):
                (x,) = ctx.saved_tensors
                return grad * (x.abs() <= 1).to(grad.dtype)
    """,
    # defined for positive inputs only: NaN on negative ones, retried with positive inputs
    """\
        import torch


        class Log(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x.log()

            @staticmethod
            def backward(ctx, grad):
                (x,) = ctx.saved_tensors
                return grad / x
    """,
    # forward rejects every synthesized input: inconclusive, never a finding
    """\
        import torch


        class FiveD(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                if x.dim() != 5:
                    raise ValueError("expected a 5-d input")
                return x * 2

            @staticmethod
            def backward(ctx, grad):
                return grad
    """,
    # a gradient-reversal layer (domain adaptation): identity forward, negated and scaled gradient by design
    """\
        import torch
        from torch.autograd import Function


        class GradientReverse(Function):
            @staticmethod
            def forward(ctx, x, alpha):
                ctx.alpha = alpha
                return x.view_as(x)

            @staticmethod
            def backward(ctx, grad):
                return grad.neg() * ctx.alpha, None


        def reverse(x):
            return GradientReverse.apply(x, 0.5)
    """,
    # a gradient taken from a guide input that forward ignores (fairseq's LogSumExpMoE uses the posterior)
    """\
        import torch


        class LogSumExpGuided(torch.autograd.Function):
            @staticmethod
            def forward(ctx, logp, posterior, dim=-1):
                ctx.save_for_backward(posterior)
                ctx.dim = dim
                return torch.logsumexp(logp, dim=dim)

            @staticmethod
            def backward(ctx, grad_output):
                (posterior,) = ctx.saved_tensors
                return grad_output.unsqueeze(ctx.dim) * posterior, None, None
    """,
    # a quantizer whose scale follows the largest element, with a straight-through backward (DeepSpeed's)
    """\
        import torch


        class SymQuantizer(torch.autograd.Function):
            @staticmethod
            def forward(ctx, input, num_bits):
                q_range = 2**num_bits
                scale = 2 * input.abs().amax() / q_range
                return (input / scale).round().clamp(-q_range // 2, q_range // 2 - 1) * scale

            @staticmethod
            def backward(ctx, grad_output):
                return grad_output.clone(), None


        def quantize(x):
            return SymQuantizer.apply(x, 4)
    """,
    # a binary quantizer scaled by the mean magnitude, identity backward (DeepSpeed's, XNOR-Net's): forward's
    # numerical Jacobian is the dense rank-1 derivative of the shared scale, with no element's own part
    """\
        import torch


        class BinaryQuantizer(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                alpha = x.abs().mean()
                return torch.sign(x) * alpha

            @staticmethod
            def backward(ctx, grad_output):
                return grad_output
    """,
    # a ternary quantizer: threshold 0.7 * mean |x|, scaled by the mean magnitude of the kept elements,
    # clipped-identity backward
    """\
        import torch


        class TernaryQuantizer(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                delta = 0.7 * x.abs().mean()
                kept = (x.abs() > delta).to(x.dtype)
                alpha = (x.abs() * kept).sum() / kept.sum()
                return torch.sign(x) * kept * alpha

            @staticmethod
            def backward(ctx, grad_output):
                (x,) = ctx.saved_tensors
                return grad_output * (x.abs() <= 1).to(grad_output.dtype)
    """,
    # a jvp (forward mode) checked with gradcheck(check_forward_ad=True): right
    """\
        import torch


        class ExpJvp(torch.autograd.Function):
            @staticmethod
            def forward(x):
                return x.exp()

            @staticmethod
            def setup_context(ctx, inputs, output):
                (x,) = inputs
                ctx.save_for_backward(output)
                ctx.save_for_forward(output)

            @staticmethod
            def backward(ctx, grad):
                (out,) = ctx.saved_tensors
                return grad * out

            @staticmethod
            def jvp(ctx, x_t):
                (out,) = ctx.saved_tensors
                return x_t * out
    """,
    # a vmap staticmethod checked against a loop over the batch: right
    """\
        import torch


        class SquareVmap(torch.autograd.Function):
            @staticmethod
            def forward(x):
                return x * x

            @staticmethod
            def setup_context(ctx, inputs, output):
                ctx.save_for_backward(inputs[0])

            @staticmethod
            def backward(ctx, grad):
                (x,) = ctx.saved_tensors
                return 2 * grad * x

            @staticmethod
            def vmap(info, in_dims, x):
                return SquareVmap.apply(x), in_dims[0]
    """,
    # generate_vmap_rule = True: the generated rule checked the same way
    """\
        import torch


        class SquareGenerated(torch.autograd.Function):
            generate_vmap_rule = True

            @staticmethod
            def forward(x):
                return x * x

            @staticmethod
            def setup_context(ctx, inputs, output):
                ctx.save_for_backward(inputs[0])

            @staticmethod
            def backward(ctx, grad):
                (x,) = ctx.saved_tensors
                return 2 * grad * x
    """,
    # an auxiliary loss attached to the graph: forward ignores it, backward gives it a gradient (Megatron's)
    """\
        import torch


        class AuxLossScaler(torch.autograd.Function):
            @staticmethod
            def forward(ctx, output, aux_loss):
                ctx.save_for_backward(aux_loss)
                return output

            @staticmethod
            def backward(ctx, grad_output):
                (aux_loss,) = ctx.saved_tensors
                return grad_output, torch.ones_like(aux_loss)
    """,
]

INVALID = [
    # a comparison in forward (leaky ReLU), yet forward is not flat: an identity backward is wrong
    """\
        import torch


        class LeakyRelu(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return torch.where(x > 0, x, 0.1 * x)

            @staticmethod
            def backward(ctx, grad):  # AGL200:9
                return grad
    """,
    # a missing factor
    """\
        import torch


        class Cube(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x**3

            @staticmethod
            def backward(ctx, grad):  # AGL200:9
                (x,) = ctx.saved_tensors
                return grad * x**2
    """,
    # the incoming gradient is never multiplied in
    """\
        import torch


        class Square(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * x

            @staticmethod
            def backward(ctx, grad):  # AGL200:9
                (x,) = ctx.saved_tensors
                return 2 * x
    """,
    # a sign error on one branch
    """\
        import torch


        class Piecewise(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return torch.where(x > 0, x * x, -x)

            @staticmethod
            def backward(ctx, grad):  # AGL200:9
                (x,) = ctx.saved_tensors
                return grad * torch.where(x > 0, 2 * x, torch.ones_like(x))
    """,
    # a jvp with an extra factor 2: backward is right, forward mode is not
    """\
        import torch


        class ExpWrongJvp(torch.autograd.Function):
            @staticmethod
            def forward(x):
                return x.exp()

            @staticmethod
            def setup_context(ctx, inputs, output):
                ctx.save_for_backward(output)
                ctx.save_for_forward(output)

            @staticmethod
            def backward(ctx, grad):  # AGL200:9
                (out,) = ctx.saved_tensors
                return grad * out

            @staticmethod
            def jvp(ctx, x_t):
                (out,) = ctx.saved_tensors
                return 2 * x_t * out
    """,
    # a vmap staticmethod that mixes the batch elements (sums over the batch dim)
    """\
        import torch


        class SquareWrongVmap(torch.autograd.Function):
            @staticmethod
            def forward(x):
                return x * x

            @staticmethod
            def setup_context(ctx, inputs, output):
                ctx.save_for_backward(inputs[0])

            @staticmethod
            def backward(ctx, grad):  # AGL200:9
                (x,) = ctx.saved_tensors
                return 2 * grad * x

            @staticmethod
            def vmap(info, in_dims, x):
                return x * x.sum(0, keepdim=True), in_dims[0]
    """,
    # backward draws random numbers of its own (AGL016): the values are close, but no two runs agree
    """\
        import torch


        class NoisyBackward(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2

            @staticmethod
            def backward(ctx, grad):  # AGL200:9
                return grad * 2 + 1e-7 * torch.randn_like(grad)
    """,
]


def _page_example(heading: str) -> str:
    section = rule_page("AGL200").split(heading + "\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """(line, column) of every AGL200 per snippet file name, from one audit of every snippet."""
    folder = tmp_path_factory.mktemp("agl200")
    sources = {f"valid_{i}.py": s for i, s in enumerate(VALID)} | {f"invalid_{i}.py": s for i, s in enumerate(INVALID)}
    sources |= {"page_bad.py": _page_example("## Bad"), "page_fix.py": _page_example("## Fix")}
    for name, source in sources.items():
        (folder / name).write_text(textwrap.dedent(source))
    report = audit_paths([str(folder)], Config(), RunLimits(sys.executable, timeout=60), jobs=2)
    found: dict[str, list[tuple[int, int]]] = {name: [] for name in sources}
    for diagnostic in audit_diagnostics(report, Config()):
        found[diagnostic.path.rsplit("/", 1)[-1]].append((diagnostic.line, diagnostic.column))
    return found, {f.path.rsplit("/", 1)[-1]: f.verdict for f in report.functions}, report


@pytest.mark.parametrize("index", range(len(VALID)))
def test_valid_snippets_report_nothing(audited, index):
    found, *_ = audited
    assert found[f"valid_{index}.py"] == []


@pytest.mark.parametrize("index", range(len(INVALID)))
def test_invalid_snippets_report_exactly(audited, index):
    found, verdicts, _ = audited
    assert found[f"invalid_{index}.py"] == marked_positions("AGL200", INVALID[index])
    assert verdicts[f"invalid_{index}.py"] == "wrong-gradient"


def test_valid_snippets_get_the_verdict_they_are_there_for(audited):
    _, verdicts, _ = audited
    assert [verdicts[f"valid_{i}.py"] for i in range(len(VALID))] == [
        "verified",
        "ste",
        "ste",
        "verified",
        "inconclusive",
        "ste",
        "ste",
        "ste",
        "ste",
        "ste",
        "verified",
        "verified",
        "verified",
        "ste",
    ]


def test_the_rule_pages_bad_example_is_a_wrong_gradient_at_its_marker_and_the_fix_is_verified(audited):
    found, verdicts, _ = audited
    assert found["page_bad.py"] == [(line, 9) for line, *_ in _markers(_page_example("## Bad"))]
    assert (verdicts["page_bad.py"], verdicts["page_fix.py"]) == ("wrong-gradient", "verified")


def _markers(source: str):
    from fixture_markers import expected_markers

    return expected_markers(source)


def test_forward_mode_and_vmap_rules_are_checked_where_declared(audited):
    *_, report = audited
    details = {f.name: f.detail for f in report.functions}
    assert details["ExpJvp"].endswith(
        ": gradcheck passed for x, forward mode (jvp) and gradgradcheck (inputs: declared)"
    )
    assert details["SquareVmap"].endswith(": gradcheck passed for x, vmap and gradgradcheck (inputs: declared)")
    assert details["ExpWrongJvp"] == (
        "ExpWrongJvp.apply(<tensor>): forward-mode check of jvp: GradcheckError: Jacobian computed with forward mode"
        " mismatch for output 0 with respect to input 0, (inputs: declared)"
    )
    assert details["SquareWrongVmap"].startswith(
        "SquareWrongVmap.apply(<tensor>): vmap check: output 0 under torch.func.vmap differs from forward run per"
        " batch element (max abs error "
    )
    messages = {d.message for d in audit_diagnostics(report, Config())}
    assert "ExpWrongJvp.jvp: forward-mode gradient differs from the numerical one" in messages
    assert "SquareWrongVmap: its vmap rule gives other values than forward per batch element" in messages


def test_a_backward_giving_another_gradient_each_run_is_reported_as_not_reentrant(audited):
    *_, report = audited
    (function,) = [f for f in report.functions if f.name == "NoisyBackward"]
    assert function.detail.startswith(
        "NoisyBackward.apply(<tensor>): gradcheck: GradcheckError: Backward is not reentrant"
    )
    (diagnostic,) = [d for d in audit_diagnostics(report, Config()) if d.message.startswith("NoisyBackward")]
    assert diagnostic.message == "NoisyBackward.backward: gives another gradient each time for the same inputs"

"""AGL101 blanket-noqa: a bare `# noqa` is reported only where it hides a finding of a rule that ran."""

from __future__ import annotations

import pytest
from snippets import checked, marked_positions, reported_positions
from test_noqa import with_comment

from autograd_lint import lint_source


def test_blanket_noqa_is_reported_where_it_hides_a_finding_and_not_silenced_by_itself():
    assert checked(with_comment("# noqa"), select="ALL") == [
        ("AGL101", 11, 31, 37, "`# noqa` without codes hides AGL002 here"),
    ]
    assert checked(with_comment("# type: ignore  # NOQA"), select="AGL002,AGL101") == [
        ("AGL101", 11, 47, 53, "`# noqa` without codes hides AGL002 here"),
    ]
    assert checked("# autograd-lint: noqa: AGL101\n" + with_comment("# noqa"), select="ALL") == []


def test_a_blanket_noqa_that_hides_nothing_of_ours_is_left_to_other_tools():
    assert checked("import os  # noqa\nx = 1  # type: ignore  # NOQA\n", select="ALL") == []
    # AGL002 is not selected: the bare noqa hides nothing this run reports.
    assert checked(with_comment("# noqa"), select="AGL101") == []


def test_confirm_says_there_is_nothing_to_run_for_a_noqa_finding(tmp_path):
    import sys

    from autograd_lint import Config
    from autograd_lint.confirm.runner import RunLimits
    from autograd_lint.confirm.session import confirm_diagnostics

    path = tmp_path / "m.py"
    path.write_text(with_comment("# noqa"))
    (finding,) = lint_source(path.read_text(), str(path), Config(select="AGL002,AGL101"))
    verdict = confirm_diagnostics([finding], RunLimits(sys.executable))[finding]
    assert (verdict.verdict, verdict.evidence) == (
        "inconclusive",
        "harness could not be built: AGL101 is about a noqa comment: there is nothing to run under torch",
    )


SCALE = """\
        import torch


        class Scale(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, scale):
                ctx.scale = scale
                return x * scale

            @staticmethod
            def backward(ctx, g):
"""

VALID = [
    # codes named: of this tool or of another
    SCALE + "                return g * ctx.scale  # noqa: AGL002\n",
    SCALE + "                return g * ctx.scale, None  # noqa: E501\n",
    # a bare noqa on a line where nothing of this linter is reported: another tool's
    """\
        import os  # noqa
        x = 1  # type: ignore  # NOQA
    """,
    # the file-level switch without codes
    """\
        # autograd-lint: noqa
        import torch


        class Scale(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, scale):
                return x * scale

            @staticmethod
            def backward(ctx, g):
                return g  # noqa
    """,
    # a file with a syntax error
    """\
        x = 1  # noqa
        def f(:
    """,
]

INVALID = [
    # a bare noqa hiding a wrong number of gradients
    SCALE + "                return g * ctx.scale  # noqa  # AGL101:31\n",
    # upper case, after another tool's comment
    SCALE + "                return g * ctx.scale  # type: ignore  # NOQA  # AGL101:47\n",
    # a bare noqa hiding a non-tensor save
    """\
        import torch


        class Pow(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, k):
                ctx.save_for_backward(x, k.shape)  # noqa  # AGL101:44
                return x ** 2

            @staticmethod
            def backward(ctx, g):
                x, _ = ctx.saved_tensors
                return 2 * x * g, None
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL101", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL101", source) == marked_positions("AGL101", source)

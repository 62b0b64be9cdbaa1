"""AGL100 unused-noqa: which `# noqa: CODES` comments are reported, where, and with what message."""

from __future__ import annotations

import pytest
from snippets import checked, marked_positions, reported_positions
from test_noqa import with_comment


def test_unused_noqa_reports_the_directive_with_its_unused_and_unknown_codes():
    source = with_comment("# noqa: AGL002, AGL001, F401, AGL555")
    assert checked(source, select="ALL") == [
        ("AGL100", 11, 31, 67, "unused `noqa` directive (unused: `AGL001`; unknown: `AGL555`)"),
    ]


def test_unused_noqa_on_a_line_without_findings():
    assert checked("x = 1\ny = 2  # noqa: AGL002 - kept from an old version\n", select="AGL0,AGL100") == [
        ("AGL100", 2, 8, 22, "unused `noqa` directive (unused: `AGL002`)"),
    ]
    # in a file without any finding, however the code is spelled
    assert checked("y = 2  # NOQA: agl002\n", select="AGL0,AGL100") == [
        ("AGL100", 1, 8, 22, "unused `noqa` directive (unused: `AGL002`)"),
    ]
    assert checked("y = 2  # noqa: F401\nz = 3  # noqa\n", select="ALL") == []


def test_a_used_noqa_is_not_reported():
    assert checked(with_comment("# noqa: AGL002"), select="ALL") == []
    assert checked(with_comment("# noqa: AGL00"), select="ALL") == []  # a prefix that matched


@pytest.mark.parametrize(
    "config",
    [
        {"extend_select": "AGL100"},  # AGL001 is opt-in: not selected, so the comment may be for another run
        {"select": "ALL", "ignore": "AGL001"},
        {"select": "ALL", "per_file_ignores": {"*.py": "AGL001"}},
    ],
)
def test_noqa_for_a_rule_that_did_not_run_is_not_judged(config):
    assert checked(with_comment("# noqa: AGL002, AGL001"), **config) == []


def test_other_tools_codes_and_unsuppressible_codes_are_not_judged():
    assert checked("x = 1  # noqa: F401, E501, BLE001\ny = 2  # noqa: AGL000, AGL999\n", select="ALL") == []


def test_unused_noqa_is_silenced_by_its_own_code_or_a_file_level_noqa():
    assert checked("x = 1  # noqa: AGL002, AGL100\n", select="ALL") == []
    assert checked("# autograd-lint: noqa: AGL100\nx = 1  # noqa: AGL002\n", select="ALL") == []


def test_unused_noqa_is_not_computed_for_a_file_with_a_syntax_error():
    assert checked("x = 1  # noqa: AGL002\ndef f(:\n", select="ALL") == [
        ("AGL000", 2, 7, 7, "SyntaxError: invalid syntax"),
    ]


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
    # a noqa that silences the finding on its line
    SCALE + "                return g * ctx.scale  # noqa: AGL002\n",
    # a prefix that matched a finding
    SCALE + "                return g * ctx.scale  # noqa: AGL00\n",
    # other tools' codes
    """\
        import os  # noqa: F401
        x = 1  # noqa: E501, BLE001
    """,
    # codes that are never silenced, and the noqa rules' own codes
    """\
        x = 1  # noqa: AGL000, AGL999
        y = 2  # noqa: AGL100, AGL101
    """,
    # a bare noqa (AGL101's) and the file-level switch
    """\
        # autograd-lint: noqa
        import os  # noqa
        y = 2  # noqa: AGL002
    """,
    # a file with a syntax error was not fully checked
    """\
        x = 1  # noqa: AGL002
        def f(:
    """,
]

INVALID = [
    # the finding was fixed, the comment stayed
    """\
        import torch


        class Scale(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, scale):
                ctx.scale = scale
                return x * scale

            @staticmethod
            def backward(ctx, g):
                return g * ctx.scale, None  # noqa: AGL002  # AGL100:37
    """,
    # a misspelled code never silenced anything
    """\
        import torch

        y = torch.ones(2)  # noqa: AGL02  # AGL100:20
    """,
    # one used code and one unused code on the line
    SCALE + "                return g * ctx.scale  # noqa: AGL002, AGL013  # AGL100:31\n",
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL100", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL100", source) == marked_positions("AGL100", source)

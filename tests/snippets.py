"""Source and helpers shared by the behaviour tests."""

import os
import textwrap

from fixture_markers import expected_markers

from autograd_lint import lint_source
from autograd_lint.config import Config

# Tests of what a rule finds select every rule: the opt-in ones are outside the default selection.
EVERY_RULE = Config(select=("ALL",))

# One AGL002 finding at line 11, column 9 (the `return`).
SNIPPET = """\
import torch
from torch.autograd import Function

class Scale(Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x * scale
    @staticmethod
    def backward(ctx, g):
        return g * ctx.scale
"""

MESSAGE = "Scale.backward returns 1 value but forward takes 2 inputs"
EXPLANATION = (
    "Torch raises 'function ScaleBackward returned an incorrect number of gradients (expected 2, got 1)'. "
    "Return one gradient per input, None for inputs that need none."
)

# Two findings at lines 8 and 17: a string sort of line numbers would put 17 first.
TWO_FINDINGS = """\
from torch.autograd import Function
class A(Function):
    @staticmethod
    def forward(ctx, x, y):
        return x
    @staticmethod
    def backward(ctx, g):
        return g


class B(Function):
    @staticmethod
    def forward(ctx, x, y, z):
        return x
    @staticmethod
    def backward(ctx, g):
        return g, None
"""


def checked(source: str, path: str = "m.py", **config) -> list[tuple[str, int, int, int, str]]:
    """(code, line, column, end column, message) of every finding under the Config built from `config`."""
    return [(d.code, d.line, d.column, d.end_column, d.message) for d in lint_source(source, path, Config(**config))]


def parse_text_output(stdout: str) -> list[tuple[str, int, int, str]]:
    """(normalised path, line, column, code) of every text-format diagnostic line."""
    found = []
    for line in stdout.splitlines():
        location, _, rest = line.partition(": ")
        path, line_no, column = location.rsplit(":", 2)
        found.append((os.path.normpath(path), int(line_no), int(column), rest.split(" ", 1)[0]))
    return found


# The snippet tables of tests/rules/test_aglNNN.py: VALID snippets report nothing of the rule, INVALID ones
# report exactly the `# AGLnnn:col` markers they carry (fixture_markers), with every rule selected so a
# snippet also shows that the other rules leave the rule's cases alone.
def reported_positions(code: str, source: str) -> list[tuple[int, int]]:
    """(line, column) of every `code` finding in the dedented `source`, linted with every rule selected."""
    diagnostics = lint_source(textwrap.dedent(source), "snippet.py", EVERY_RULE)
    return sorted((d.line, d.column) for d in diagnostics if d.code == code)


def marked_positions(code: str, source: str) -> list[tuple[int, int]]:
    """(line, column) of every `# code:col` marker in the dedented `source`; each must give its column."""
    markers = [(line, column) for line, marked, column in expected_markers(textwrap.dedent(source)) if marked == code]
    assert markers, f"an INVALID snippet carries no {code} marker"
    assert all(column is not None for _, column in markers), f"a {code} marker gives no column"
    return sorted(markers)

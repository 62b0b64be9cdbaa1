"""Source and helpers shared by the behaviour tests."""

import os

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


def parse_text_output(stdout: str) -> list[tuple[str, int, int, str]]:
    """(normalised path, line, column, code) of every text-format diagnostic line."""
    found = []
    for line in stdout.splitlines():
        location, _, rest = line.partition(": ")
        path, line_no, column = location.rsplit(":", 2)
        found.append((os.path.normpath(path), int(line_no), int(column), rest.split(" ", 1)[0]))
    return found

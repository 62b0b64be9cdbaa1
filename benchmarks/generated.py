"""Generated modules for scaling measurements: the same small module with one Function class, N times over.

`benchmarks/compare.py` times the series, `tests/test_scaling.py` counts the work it takes: a step that is
quadratic in the number of classes or call sites in one module shows in both.
"""

from __future__ import annotations

# 17 lines: a Function class, the module-level wrapper that applies it, and a blank separator.
MODULE = """\
import torch
from torch.autograd import Function


class Scale{index}(Function):
    @staticmethod
    def forward(ctx, x, s):
        ctx.save_for_backward(x)
        ctx.s = s
        return x * s

    @staticmethod
    def backward(ctx, g):
        return g * ctx.s, None


def scale{index}(x, s):
    return Scale{index}.apply(x, s)
"""


def copies(count: int) -> str:
    """`count` copies of MODULE in one source text, each class and wrapper with its own name."""
    return "\n\n".join(MODULE.format(index=index) for index in range(count))

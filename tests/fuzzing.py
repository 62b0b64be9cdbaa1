"""Program generators for the "never crash" fuzzing, shared by tests/test_fuzz.py (bounded, in CI) and
benchmarks/fuzz_stress.py (100,000 programs, on every core).

Four sources of programs:
- `grammar`: hypothesmith.from_grammar(), any program CPython compiles, built from the grammar;
- `node`: hypothesmith.from_node(), programs built from libcst's node types;
- `shaped`: generated statements and expressions placed where the rules look, in a custom
  autograd.Function (forward, backward, setup_context, class body, `.apply` call) and in an
  nn.Module / activation's forward, so that the rules' analyses run on them, not only the parser;
- `mutated`: the bundled fixtures (real buggy and clean Function code) with lines deleted,
  duplicated, swapped, re-indented, truncated or with one name replaced by another.

`check(source)` lints one program with every rule and the prefilter off, and returns the problem
(an exception or an AGL999 diagnostic) or None.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import hypothesmith
from hypothesis import strategies as st

from autograd_lint.core.diagnostic import INTERNAL_ERROR_CODE, Diagnostic
from autograd_lint.engine import lint_text
from autograd_lint.rules import RULES

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FIXTURE_SOURCES = tuple(path.read_text(encoding="utf-8") for path in sorted(FIXTURES.rglob("*.py")))
ALL_CODES = list(RULES)

# --- shaped programs -------------------------------------------------------------------------------

FUNCTION_TEMPLATE = """\
import torch
import torch.nn as nn
from torch.autograd import Function

STATE = {{"scale": 1.0}}


class Fuzz(torch.autograd.Function):
{class_body}
    @staticmethod
    def forward(ctx, x, scale):
{forward_body}
        ctx.save_for_backward(x)
        return x * scale

    @staticmethod
    def backward(ctx, grad_output):
{backward_body}
        return {backward_return}


class Act(nn.Module):
    def forward(self, x):
{module_body}
        return {module_return}


def fuzz_activation(x):
    return {module_return}


y = Fuzz.apply({apply_args})
"""


def _indent(code: str, spaces: int) -> str:
    pad = " " * spaces
    lines = code.splitlines() or ["pass"]
    return "\n".join(pad + line if line.strip() else line for line in lines) or pad + "pass"


_RETURNS = (
    "grad_output",
    "grad_output, None",
    "x * (x > 0).float()",
    "torch.sign(x)",
    "x.round()",
    "STATE['scale'] * grad_output",
    "(grad_output,)",
    "[grad_output, None]",
    "None",
    "grad_output * ctx.scale",
    "x.clamp(min=0)",
    "torch.where(x > 0, x, 0.0)",
)
_APPLY_ARGS = ("x", "x, 2.0", "x, 2.0, 3.0", "*args", "x, scale=2", "**kw")


def shape(body: str, variant: int) -> str:
    """`body` (a generated module) placed in the slots of a Function and an activation that `variant`'s
    bits choose (at least one), with return expressions and `.apply` arguments it also chooses."""
    slots = ("class_body", "forward_body", "backward_body", "module_body")
    chosen = {slot for bit, slot in enumerate(slots) if variant >> bit & 1} or {slots[variant % 4]}
    pieces = {
        slot: _indent(
            body if slot in chosen else ("scale = 1.0" if slot == "class_body" else "pass"),
            4 if slot == "class_body" else 8,
        )
        for slot in slots
    }
    pieces["backward_return"] = _RETURNS[(variant >> 4) % len(_RETURNS)]
    pieces["module_return"] = _RETURNS[(variant >> 8) % len(_RETURNS)]
    pieces["apply_args"] = _APPLY_ARGS[(variant >> 12) % len(_APPLY_ARGS)]
    return FUNCTION_TEMPLATE.format(**pieces)


def truncate(source: str, variant: int) -> str:
    """`source` cut at a point `variant` chooses: an unfinished program."""
    return source[: variant % (len(source) + 1)]


_GRAMMAR_BODY = hypothesmith.from_grammar(auto_target=False)  # built once: building it is slow


@st.composite
def shaped_programs(draw) -> str:
    body = draw(_GRAMMAR_BODY)
    return shape(body, draw(st.integers(min_value=0, max_value=1 << 16)))


# --- mutated fixtures ------------------------------------------------------------------------------

_OPERATIONS = ("delete", "duplicate", "swap", "indent", "dedent", "truncate", "rename", "insert")


def _mutate(source: str, operations: list[tuple[str, int, int, int]]) -> str:
    lines = source.splitlines(keepends=True)
    for operation, a, b, c in operations:
        if not lines:
            break
        i, j = a % len(lines), b % len(lines)
        if operation == "delete":
            del lines[i]
        elif operation == "duplicate":
            lines.insert(j, lines[i])
        elif operation == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif operation == "indent":
            lines[i] = "    " + lines[i]
        elif operation == "dedent":
            lines[i] = lines[i][4:] if lines[i].startswith("    ") else lines[i].lstrip()
        elif operation == "truncate":
            text = "".join(lines)
            return text[: (a * 7919 + b) % (len(text) + 1)]
        elif operation == "rename":
            words = [
                w
                for w in "".join(lines).replace("(", " ").replace(")", " ").replace(".", " ").split()
                if w.isidentifier()
            ]
            if len(words) >= 2:
                old, new = words[a % len(words)], words[c % len(words)]
                lines[i] = lines[i].replace(old, new)
        elif operation == "insert":
            snippet = (
                "return grad_output\n",
                "ctx.mark_dirty(x)\n",
                "x.add_(1)\n",
                "global STATE\n",
                "yield x\n",
                "return x, None, None\n",
                "lambda: (yield)\n",
                "del ctx\n",
                "async def f(): pass\n",
            )[c % 9]
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            lines.insert(i, indent + snippet)
    return "".join(lines)


@st.composite
def mutated_fixtures(draw) -> str:
    source = draw(st.sampled_from(FIXTURE_SOURCES))
    index = st.integers(min_value=0, max_value=10_000)
    operations = draw(st.lists(st.tuples(st.sampled_from(_OPERATIONS), index, index, index), min_size=1, max_size=6))
    return _mutate(source, operations)


STRATEGIES = {
    "grammar": hypothesmith.from_grammar(),
    "node": hypothesmith.from_node(),
    "shaped": shaped_programs(),
    "mutated": mutated_fixtures(),
}


def check(source: str) -> str | None:
    """None if linting `source` with every rule returns diagnostics without an internal error; else
    what went wrong (the exception's traceback, or the AGL999 messages)."""
    try:
        diagnostics = lint_text(source, "fuzz.py", ALL_CODES, "fuzz", verbose=True, prefilter=False)
    except BaseException:  # noqa: BLE001 - lint_text must never raise; anything it raises is the bug
        return "lint_text raised:\n" + traceback.format_exc()
    if not isinstance(diagnostics, list) or not all(isinstance(d, Diagnostic) for d in diagnostics):
        return f"lint_text returned {type(diagnostics).__name__}, not a list of Diagnostic"
    internal = [d for d in diagnostics if d.code == INTERNAL_ERROR_CODE]
    if internal:
        return "\n\n".join(d.message for d in internal)
    return None

"""Each rule's text cues (`Rule.text_cues()`), copied here so that the prefilter can ask them of a file without
importing the rule modules, and with them libcst and the facts: a run that parses nothing (pre-commit on a few
files no rule is about) starts without them. Generated from the rules: after changing a rule's `requires`, run
`python -m autograd_lint.rules.text_cues` (then `ruff format`); tests/test_engine.py fails while the two differ.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..core.prefilter import FUNCTION_CLASS, TextCue

# --- generated: start ---
TEXT_CUES: dict[str, tuple[TextCue, ...]] = {
    "AGL001": (FUNCTION_CLASS,),
    "AGL002": (FUNCTION_CLASS,),
    "AGL003": (
        TextCue(
            "a comparison next to a multiplication, or assigned to a name or returned by a function that is a factor",
            substrings=(),
            patterns=(
                re.compile("\\*=?\\s*\\([^()\\n]*?(?<![-<>=!])[<>]=?(?![<>])[^()\\n]*\\)", 40),
                re.compile(
                    "\\([^()\\n]*?(?<![-<>=!])[<>]=?(?![<>])[^()\\n]*\\)(?:\\s*\\.\\s*(?:float|half|double|bfloat16|to|type_as|type)\\([^()\\n]*(?:\\([^()\\n]*\\))?[^()\\n]*\\))?\\s*\\*",
                    40,
                ),
                re.compile(
                    "\\.(?:gt|ge|lt|le|greater|less|greater_equal|less_equal)\\([^\\n]*\\*|\\*[^\\n]*\\.(?:gt|ge|lt|le|greater|less|greater_equal|less_equal)\\(",
                    40,
                ),
                re.compile(
                    "mul_?\\([^\\n]*(?:<|(?<!-)>|\\.(?:gt|ge|lt|le|greater|less|greater_equal|less_equal)\\()|multiply\\(",
                    40,
                ),
                re.compile("^[ \\t]*\\w+[ \\t]*=(?!=)[^\\n]*?(?<![-<>=!])[<>]=?(?![<>])", 40),
                re.compile(
                    "^[ \\t]*\\w+[ \\t]*=(?!=)[^\\n]*?\\.(?:gt|ge|lt|le|greater|less|greater_equal|less_equal)\\(", 40
                ),
                re.compile("^[ \\t]*\\w+[ \\t]*=[ \\t]*\\((?:[^()\\n]|\\([^()\\n]*\\))*$", 40),
                re.compile("^[ \\t]*return[ \\t]+\\(?[ \\t]*[\\w.\\[\\]]+[ \\t]*[<>]=?[ \\t]*[\\w.(-]", 40),
            ),
            pattern_guards=(
                ("*",),
                ("(",),
                ("ge", "greater", "greater_equal", "gt", "le", "less", "less_equal", "lt"),
                ("mul",),
                ("=",),
                ("ge", "greater", "greater_equal", "gt", "le", "less", "less_equal", "lt"),
                ("=",),
                ("return",),
            ),
            follow_ups=(
                "",
                "",
                "",
                "",
                "the assigned name is a factor of a product",
                "the assigned name is a factor of a product",
                "the name assigned a comparison is a factor of a product",
                "the module function is a factor of a product",
            ),
        ),
    ),
    "AGL004": (
        TextCue(
            "a forward method",
            substrings=(),
            patterns=(re.compile("def\\s+forward\\s*\\(", 32),),
            pattern_guards=(("forward",),),
        ),
        TextCue(
            "one of the ops this rule flags",
            substrings=(),
            patterns=(
                re.compile("(?<!math)(?<!np)(?<!numpy)\\.(ceil|fix|floor|heaviside|round|sgn|sign|trunc)_?\\s*\\(", 40),
                re.compile(
                    "^\\s*from\\s+torch\\s+import[^\\n]*\\b(ceil|fix|floor|heaviside|round|sgn|sign|trunc)\\b", 40
                ),
                re.compile("\\bone_hot\\s*\\(", 40),
                re.compile("\\bwhere\\s*\\([^\\n]*(?:ones|zeros|full|tensor|,\\s*-?\\d)", 40),
                re.compile("\\bscatter_?\\s*\\(", 40),
                re.compile("\\.(int|long|short|byte|char|bool)\\(\\s*\\)", 40),
                re.compile("\\.(to|type)\\([^)\\n]*\\b(u?int(8|16|32|64)|long|bool|short|\\w*Tensor)\\b", 40),
                re.compile("([<>]|==)[^\\n]*\\)\\s*\\.(float|half|double|bfloat16|to|type_as|type)\\(", 40),
                re.compile("\\.(gt|ge|lt|le|greater|less|greater_equal|less_equal)\\(", 40),
            ),
            pattern_guards=(
                ("ceil", "fix", "floor", "heaviside", "round", "sgn", "sign", "trunc"),
                ("import",),
                ("one_hot",),
                ("where",),
                ("scatter",),
                ("bool", "byte", "char", "int", "long", "short"),
                ("Tensor", "bool", "int", "long", "short"),
                ("bfloat16", "double", "float", "half", "to", "type", "type_as"),
                ("ge", "greater", "greater_equal", "gt", "le", "less", "less_equal", "lt"),
            ),
        ),
    ),
    "AGL005": (FUNCTION_CLASS,),
    "AGL006": (FUNCTION_CLASS,),
    "AGL007": (FUNCTION_CLASS,),
    "AGL008": (FUNCTION_CLASS,),
    "AGL009": (FUNCTION_CLASS,),
    "AGL010": (
        FUNCTION_CLASS,
        TextCue(
            "a construct that leaves autograd, a save or a ctx attribute written",
            substrings=(),
            patterns=(
                re.compile(
                    "\\.(numpy|item|tolist|detach|data)\\b|no_grad|inference_mode|set_grad_enabled|numpy|\\]\\s*\\(|_(C|cuda|ext|cpp|cext|kernels?)\\b|load|save_for_backward|\\w\\.\\w+\\s*=[^=]",
                    32,
                ),
            ),
            pattern_guards=(
                (
                    ".",
                    "]",
                    "_",
                    "data",
                    "detach",
                    "inference_mode",
                    "item",
                    "load",
                    "no_grad",
                    "numpy",
                    "save_for_backward",
                    "set_grad_enabled",
                    "tolist",
                ),
            ),
        ),
    ),
    "AGL011": (FUNCTION_CLASS,),
    "AGL012": (FUNCTION_CLASS,),
    "AGL013": (FUNCTION_CLASS,),
    "AGL014": (FUNCTION_CLASS,),
    "AGL015": (FUNCTION_CLASS,),
    "AGL016": (FUNCTION_CLASS,),
    "AGL017": (
        FUNCTION_CLASS,
        TextCue("set_materialize_grads", substrings=("set_materialize_grads",), patterns=(), pattern_guards=()),
    ),
    "AGL018": (FUNCTION_CLASS,),
    "AGL019": (FUNCTION_CLASS,),
    "AGL020": (FUNCTION_CLASS,),
    "AGL021": (FUNCTION_CLASS,),
    "AGL022": (
        FUNCTION_CLASS,
        TextCue("autocast or custom_bwd", substrings=("autocast", "custom_bwd"), patterns=(), pattern_guards=()),
    ),
    "AGL023": (
        TextCue(
            "a call of masked_fill, masked_fill_, where",
            substrings=(),
            patterns=(re.compile("\\b(?:masked_fill|masked_fill_|where)\\s*\\(", 32),),
            pattern_guards=(("masked_fill", "masked_fill_", "where"),),
        ),
        TextCue(
            "an unsafe op, a division or a power",
            substrings=(),
            patterns=(
                re.compile(
                    "\\b(?:acos|arccos|arcsin|arctanh|asin|atanh|exp|exp2|expm1|log|log10|log1p|log2|reciprocal|rsqrt|sqrt|pow)\\s*\\(|/|\\*\\*",
                    32,
                ),
            ),
            pattern_guards=(
                (
                    "**",
                    "/",
                    "acos",
                    "arccos",
                    "arcsin",
                    "arctanh",
                    "asin",
                    "atanh",
                    "exp",
                    "exp2",
                    "expm1",
                    "log",
                    "log10",
                    "log1p",
                    "log2",
                    "pow",
                    "reciprocal",
                    "rsqrt",
                    "sqrt",
                ),
            ),
        ),
    ),
    "AGL024": (
        FUNCTION_CLASS,
        TextCue(
            "a torch.func transform",
            substrings=(),
            patterns=(
                re.compile("torch\\.func\\b|functorch|vmap|make_dual|from\\s+torch\\s+import[^)]*?\\bfunc\\b", 32),
            ),
            pattern_guards=(("functorch", "import", "make_dual", "torch.func", "vmap"),),
        ),
    ),
    "AGL100": (),
    "AGL101": (),
    "AGL200": (),
}
# --- generated: end ---


def rendered() -> str:
    """This module's text with the table rebuilt from the rules' declarations."""
    from . import RULES

    lines = ["TEXT_CUES: dict[str, tuple[TextCue, ...]] = {"]
    for code in RULES:
        cues = RULES[code].text_cues()
        lines.append(f"    {code!r}: ({''.join(_cue(cue) + ', ' for cue in cues)}),")
    lines.append("}")
    text = Path(__file__).read_text(encoding="utf-8")
    head, rest = text.split("# --- generated: start ---\n", 1)
    _, tail = rest.split("# --- generated: end ---\n", 1)
    return f"{head}# --- generated: start ---\n" + "\n".join(lines) + f"\n# --- generated: end ---\n{tail}"


def _cue(cue: TextCue) -> str:
    if cue == FUNCTION_CLASS:
        return "FUNCTION_CLASS"
    patterns = "".join(f"re.compile({pattern.pattern!r}, {pattern.flags}), " for pattern in cue.patterns)
    follow_ups = f", follow_ups={cue.follow_ups!r}" if any(cue.follow_ups) else ""
    return (
        f"TextCue({cue.description!r}, substrings={cue.substrings!r}, patterns=({patterns}), "
        f"pattern_guards={cue.pattern_guards!r}{follow_ups})"
    )


if __name__ == "__main__":
    Path(__file__).write_text(rendered(), encoding="utf-8")

"""Inputs that real Functions accept (confirm/harness.py's declarations, confirm/runtime/inputs.py's search),
shared by confirm and the audit: an index used as `x[:, idx]`, a mask for `masked_fill`, a gain forward calls
`.squeeze()` on, a 3-D input split into heads, jaxtyping shapes, a 5-D input only the module's own demo
passes. Each used to leave confirm inconclusive (forward rejected every synthesized input); each now runs
forward, under real torch.
"""

from __future__ import annotations

import sys
import time

import pytest
import torch

from autograd_lint.api import lint_source
from autograd_lint.config import Config
from autograd_lint.confirm.audit import audit_paths
from autograd_lint.confirm.harness import argument_declarations, harvest_drivers
from autograd_lint.confirm.runner import RunLimits
from autograd_lint.confirm.runtime import inputs
from autograd_lint.confirm.session import confirm_diagnostics
from autograd_lint.core.module import ParsedModule
from autograd_lint.facts.function_model import function_model

LIMITS = RunLimits(sys.executable, timeout=60)

# Each backward forgets the gradient of its second input (AGL002): torch says so once forward has run.
BUGGY = '"""Realistic Functions whose forward rejects plain float inputs; each backward forgets one gradient (AGL002)."""\nimport torch\nfrom torch import Tensor\n\ntry:\n    from jaxtyping import Float\nexcept ImportError:  # the annotations only document shapes here\n\n    class Float:\n        def __class_getitem__(cls, item):\n            return Tensor\n\n\nclass RowGather(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, x, idx):\n        ctx.save_for_backward(idx)\n        ctx.shape = x.shape\n        return x[:, idx]\n\n    @staticmethod\n    def backward(ctx, grad):\n        (idx,) = ctx.saved_tensors\n        grad_x = grad.new_zeros(ctx.shape).index_add_(1, idx, grad)\n        return grad_x\n\n\nclass MaskedScores(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, scores, keep):\n        ctx.save_for_backward(keep)\n        return scores.masked_fill(keep, 0.0)\n\n    @staticmethod\n    def backward(ctx, grad):\n        (keep,) = ctx.saved_tensors\n        return grad.masked_fill(keep, 0.0)\n\n\nclass ChannelGain(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, x, gain):\n        b, c, t = x.shape\n        g = gain.squeeze().view(1, c, 1)\n        ctx.save_for_backward(g)\n        return x * g\n\n    @staticmethod\n    def backward(ctx, grad):\n        (g,) = ctx.saved_tensors\n        return grad * g\n\n\nclass SplitHeads(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, x, heads):\n        b, n, d = x.shape\n        return x.view(b, n, heads, d // heads).transpose(1, 2).contiguous()\n\n    @staticmethod\n    def backward(ctx, grad):\n        b, h, n, e = grad.shape\n        return grad.transpose(1, 2).reshape(b, n, h * e)\n\n\nclass TokenProject(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, x: Float[Tensor, "b n 4"], w: Float[Tensor, "4 k"]):\n        b, n, _ = x.shape\n        flat = x.reshape(b * n, 4)\n        ctx.save_for_backward(flat, w)\n        return (flat @ w).view(b, n, -1)\n\n    @staticmethod\n    def backward(ctx, grad):\n        flat, w = ctx.saved_tensors\n        return (grad.reshape(flat.shape[0], -1) @ w.t()).view(*grad.shape[:2], -1)\n\n\ndef gather_rows(x, idx):\n    return RowGather.apply(x, idx)\n\n\ndef masked(scores, keep):\n    return MaskedScores.apply(scores, keep)\n\n\ndef gain(x, g):\n    return ChannelGain.apply(x, g)\n\n\ndef split_heads(x):\n    return SplitHeads.apply(x, 2)\n\n\ndef project(x, w):\n    return TokenProject.apply(x, w)\n\n\nclass Volume(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, x, scale):\n        if x.dim() != 5:\n            raise ValueError("expected a 5-d input (N, C, D, H, W)")\n        ctx.scale = scale\n        return x * scale\n\n    @staticmethod\n    def backward(ctx, grad):\n        return grad * ctx.scale\n\n\ndef volume(x, scale):\n    return Volume.apply(x, scale)\n\n\ndef _demo():\n    x = torch.randn(1, 2, 3, 2, 2, requires_grad=True)\n    volume(x, 1.5).sum().backward()\n\n\nif __name__ == "__main__":\n    raise SystemExit("the __main__ block ran")\n'

# The same Functions with complete backwards; ChannelGain's gradient for `gain` lacks the factor x.
CORRECT = (
    BUGGY.replace("        return grad_x\n", "        return grad_x, None\n")
    .replace("        return grad.masked_fill(keep, 0.0)\n", "        return grad.masked_fill(keep, 0.0), None\n")
    .replace(
        "        ctx.save_for_backward(g)\n        return x * g",
        "        ctx.save_for_backward(g)\n        ctx.gain_shape = gain.shape\n        return x * g",
    )
    .replace("        return grad * ctx.scale\n", "        return grad * ctx.scale, None\n")
    .replace("        return grad * g\n", "        return grad * g, grad.sum(dim=(0, 2)).view(ctx.gain_shape)\n")
    .replace(
        "        return grad.transpose(1, 2).reshape(b, n, h * e)\n",
        "        return grad.transpose(1, 2).reshape(b, n, h * e), None\n",
    )
    .replace(
        "        return (grad.reshape(flat.shape[0], -1) @ w.t()).view(*grad.shape[:2], -1)\n",
        "        g = grad.reshape(flat.shape[0], -1)\n        return (g @ w.t()).view(*grad.shape[:2], -1), flat.t() @ g\n",
    )
    # Saving x itself (not its reshaped copy) keeps the second derivative through it.
    .replace("ctx.save_for_backward(flat, w)", "ctx.save_for_backward(x, w)")
    .replace("flat, w = ctx.saved_tensors", "x, w = ctx.saved_tensors\n        flat = x.reshape(-1, 4)")
)


def _declarations(source: str, name: str):
    module = ParsedModule(source, "ops.py")
    (function_class,) = [c for c in function_model(module) if c.name == name]
    return argument_declarations(module, function_class)


def test_declarations_read_type_hints_jaxtyping_shapes_defaults_and_names():
    source = (
        "import torch\nfrom typing import Optional\nfrom torch import Tensor\n"
        "class Attend(torch.autograd.Function):\n"
        "    @staticmethod\n"
        '    def forward(ctx, q: Float[Tensor, "b n 64"], bias: Optional[torch.Tensor], heads: int,\n'
        "                token_ids, attn_mask, *, scale=0.5):\n"
        "        pass\n"
    )
    assert _declarations(source, "Attend") == (
        [
            [
                {"kind": "tensor", "dtype": "float", "dims": ["b", "n", 64], "value": None},
                {"kind": "tensor", "value": None},
                {"kind": "int", "value": None},
                {"hint": "index", "value": None},
                {"hint": "mask", "value": None},
            ]
        ],
        "declared",
    )


def test_declarations_at_call_sites_resolve_names_bound_to_literals():
    source = (
        "import torch\nBLOCK = 64\n"
        "class Pool(torch.autograd.Function):\n"
        "    @staticmethod\n"
        "    def forward(ctx, x, block, reduce, scale, keep_prob):\n"
        "        pass\n"
        "def pool(x, scale, keep_prob=0.9):\n"
        "    reduce = 'mean'\n"
        "    return Pool.apply(x, BLOCK, reduce, scale, keep_prob)\n"
    )
    # A caller's parameter is its callers' to give: its numeric default says only that it is a float.
    assert _declarations(source, "Pool") == (
        [
            [
                {"value": None},
                {"value": "64"},
                {"value": "'mean'"},
                {"value": None},
                {"value": None, "kind": "float"},
            ]
        ],
        "call site",
    )


def test_a_none_default_the_caller_replaces_is_not_what_reaches_apply():
    source = (
        "import torch\n"
        "class Segment(torch.autograd.Function):\n"
        "    @staticmethod\n"
        "    def forward(ctx, x, ids, n):\n"
        "        pass\n"
        "def segment(x, ids, n=None, out=None):\n"
        "    if n is None:\n"
        "        n = int(ids.max()) + 1\n"
        "    return Segment.apply(x, ids, n) if out is None else Segment.apply(x, ids, out)\n"
    )
    calls, _ = _declarations(source, "Segment")
    # `n` is computed when left out; `out` is passed as it came, None included.
    assert [call[2] for call in calls] == [{"value": None}, {"value": "None"}]


def test_drivers_are_the_modules_own_argument_free_callers_and_wrappers_never_its_main_block():
    module = ParsedModule(BUGGY, "ops.py")
    (volume,) = [c for c in function_model(module) if c.name == "Volume"]
    drivers, code = harvest_drivers(module, volume)
    assert drivers == [("_demo", 0), ("volume", 2)]  # the demo first, then the wrapper called with 2 tensors
    # What _demo needs beyond the class's own definitions: the wrapper and _demo itself.
    assert [line for line in code.splitlines() if line.startswith("def ")] == ["def volume(x, scale):", "def _demo():"]
    assert "__main__" not in code
    (gather,) = [c for c in function_model(module) if c.name == "RowGather"]
    # A wrapper needs arguments: it gets tensors, as many as its required parameters.
    assert harvest_drivers(module, gather) == (
        [("gather_rows", 2)],
        "\n\ndef gather_rows(x, idx):\n    return RowGather.apply(x, idx)\n",
    )


def _search(forward_code: str, call: list[dict]):
    namespace: dict = {"torch": torch}
    exec(f"def forward(*args):\n{forward_code}", namespace)
    return inputs.search(namespace["forward"], call, time.monotonic() + 30)


@pytest.mark.parametrize(
    ("forward_code", "call", "expected"),
    [
        # torch's error asks for a bool mask: the second argument becomes one, shaped like the first.
        ("    x, keep = args\n    return x.masked_fill(keep, 0.0)\n", [{}, {}], ["tensor", "mask"]),
        # `idx` says index: a long tensor whose values are below every size of x, on the first try.
        ("    x, idx = args\n    return x[:, idx]\n", [{}, {"hint": "index"}], ["tensor", "index"]),
        # A float where forward needs a tensor (the held-out module's `'float' object has no attribute 'squeeze'`).
        ("    x, scale = args\n    return x * scale.squeeze()\n", [{}, {"kind": "float"}], ["tensor", "tensor"]),
        # Unpacking three sizes, then a view that needs the heads to divide the last one.
        (
            "    x, heads = args\n    b, n, d = x.shape\n    return x.view(b, n, heads, d // heads)\n",
            [{}, {"value": "2"}],
            ["tensor", "literal"],
        ),
        # A padding mask over the leading dims: (B, T) for a (B, T, C) input, unsqueezed by forward.
        (
            "    x, pad = args\n    return x.masked_fill(pad.unsqueeze(-1), 0.0)\n",
            [{}, {"hint": "mask"}],
            ["tensor", "mask"],
        ),
        # Graph-batching offsets added in place to local indices (`idx += offsets[:, None]`), then used to index:
        # the written index needs the rank of the sum, the offsets an integer dtype, the sum a range x has.
        (
            "    x, idx, offsets = args\n    idx += offsets.unsqueeze(1)\n    return x.index_select(0, idx.reshape(-1))\n",
            [{}, {"hint": "index"}, {}],
            ["tensor", "index", "index"],
        ),
        # Index values must stay below the size of the dimension gather reads.
        (
            "    x, idx = args\n    return x.gather(1, idx.unsqueeze(1).expand(-1, x.shape[1]))\n",
            [{}, {}],
            ["tensor", "index"],
        ),
    ],
)
def test_the_search_finds_inputs_forward_accepts_and_is_deterministic(forward_code, call, expected):
    found = _search(forward_code, call)
    assert found["found"] == "searched", found
    assert [arg["kind"] for arg in found["state"]["args"]] == expected
    assert 1 <= found["tries"] <= inputs.MAX_TRIES
    assert _search(forward_code, call) == found


def test_the_search_gives_up_within_its_bound_with_the_last_error():
    found = _search("    (x,) = args\n    raise ValueError('expected a 5-d input')\n", [{}])
    assert found["found"] is None
    assert found["error"] == "ValueError: expected a 5-d input"
    assert found["tries"] == 8  # every rank from 1 to 4, with distinct and with equal sizes


@pytest.mark.parametrize(
    ("error", "state", "first"),
    [
        ("too many indices for tensor of dimension 2", [{"kind": "tensor", "rank": 2}], {"kind": "tensor", "rank": 3}),
        (
            "expected scalar type Long but found Double",
            [{"kind": "tensor", "rank": 2}] * 2,
            {"kind": "index", "rank": 1},
        ),
        (
            "'float' object has no attribute 'squeeze'",
            [{"kind": "tensor", "rank": 3}, {"kind": "float"}],
            {"kind": "tensor", "rank": 3},
        ),
        # Held-out modules: `x.shape[1]` of a 1-D tensor, index_select's dtype, a count passed to new_zeros.
        ("tuple index out of range", [{"kind": "tensor", "rank": 1}], {"kind": "tensor", "rank": 2}),
        (
            "index_select(): Expected dtype int32 or int64 for index",
            [{"kind": "tensor", "rank": 2}] * 2,
            {"kind": "index", "rank": 1},
        ),
        (
            "new_zeros() takes 1 positional argument but 2 were given",
            [{"kind": "tensor", "rank": 2}] * 2,
            {"kind": "int"},
        ),
        (  # the audit's backward: a LayerNorm's weight gradient has the shape the weight was meant to have
            "Function LayerNormBackward returned an invalid gradient at index 1 - got [3] but expected shape "
            "compatible with [3, 3]",
            [{"kind": "tensor", "rank": 2}] * 3,
            {"kind": "tensor", "rank": 1, "shape": [3]},
        ),
    ],
)
def test_torchs_error_says_what_to_change(error, state, first):
    moves = inputs.guided_moves({"args": state, "aligned": False, "float32": False}, RuntimeError(error), None)
    changed = [move["args"][i] for move in moves[:1] for i in range(len(state)) if move["args"][i] != state[i]]
    assert changed == [first]


def test_an_empty_range_gets_distinct_ascending_ints():
    # `x[:, :, start:end]` with start == end == 2 reduced over an empty dimension.
    state = {
        "args": [{"kind": "tensor", "rank": 4}, {"kind": "int"}, {"kind": "int"}],
        "aligned": False,
        "float32": False,
    }
    error = IndexError("max(): Expected reduction dim 2 to have non-zero size.")
    (move,) = inputs.guided_moves(state, error, None)
    assert move["args"][1:] == [{"kind": "int", "number": 1}, {"kind": "int", "number": 2}]
    assert inputs.build_state(move)[1:] == [1, 2]


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "buggy.py").write_text(BUGGY)
    (folder / "correct").mkdir()
    (folder / "correct" / "ops.py").write_text(CORRECT)
    return folder


def test_confirm_runs_forward_on_searched_and_declared_inputs(modules):
    path = str(modules / "buggy.py")
    diagnostics = lint_source(BUGGY, path, Config())
    verdicts = confirm_diagnostics(diagnostics, LIMITS, jobs=2)
    found = {d.message.split(".")[0]: (r.verdict, r.evidence) for d, r in verdicts.items()}
    expected_calls = {
        "RowGather": ("RowGather.apply(<tensor [2, 3]>, <index [2]>)", "searched (1 try)"),
        "MaskedScores": ("MaskedScores.apply(<tensor [2, 3]>, <mask [2, 3]>)", "searched (2 tries)"),
        "ChannelGain": ("ChannelGain.apply(<tensor [2, 3, 4]>, <tensor [1, 3, 1]>)", "searched (3 tries)"),
        "SplitHeads": ("SplitHeads.apply(<tensor [2, 3, 4]>, 2)", "searched (2 tries)"),
        "TokenProject": ("TokenProject.apply(<tensor>, <tensor>)", "declared"),  # the jaxtyping shapes
        # No rank up to 4 fits: the arguments _demo() passes (its `__main__` block never runs).
        "Volume": ("Volume.apply(<tensor [1, 2, 3, 2, 2] float32>, 1.5)", "harvested from _demo()"),
    }
    assert set(found) == set(expected_calls)
    for name, (call, origin) in expected_calls.items():
        verdict, evidence = found[name]
        assert verdict == "confirmed", evidence
        assert evidence == (
            f"{call} then backward raised RuntimeError: function {name}Backward returned an incorrect number of "
            f"gradients (expected 2, got 1) (inputs: {origin})"
        )


def test_the_audit_checks_gradients_on_the_same_inputs(modules):
    report = audit_paths([str(modules / "correct")], Config(), LIMITS, jobs=2)
    verdicts = {f.name: (f.verdict, f.detail) for f in report.functions}
    assert {name: verdict for name, (verdict, _) in verdicts.items()} == {
        "RowGather": "verified",
        "MaskedScores": "verified",
        "ChannelGain": "wrong-gradient",
        "SplitHeads": "verified",
        "TokenProject": "verified",
        "Volume": "verified",
    }
    assert verdicts["ChannelGain"][1] == (
        "ChannelGain.apply(<tensor [2, 3, 4]>, <tensor [1, 3, 1]>): the gradient of `gain` differs from the numerical one "
        "(inputs: searched (3 tries))"
    )
    assert verdicts["Volume"][1] == (
        "Volume.apply(<tensor [1, 2, 3, 2, 2] float32>, 1.5): gradcheck passed for x and gradgradcheck "
        "(inputs: harvested from _demo())"
    )
    assert verdicts["RowGather"][1] == (
        "RowGather.apply(<tensor [2, 3]>, <index [2]>): gradcheck passed for x and gradgradcheck (inputs: searched (1 try))"
    )


# forward accepts the declared (2, 3, 3) weight too (a batched matmul); backward's `flat.t() @ g` does not.
BATCHED_PROJECT = """\
import torch


class Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        b, n, d = x.shape
        ctx.save_for_backward(x, weight)
        return (x.reshape(b * n, d) @ weight).view(b, n, -1)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        flat = x.reshape(-1, x.shape[-1])
        g = grad.reshape(flat.shape[0], -1)
        return (g @ weight.t()).view(x.shape), flat.t() @ g
"""


def test_the_audit_searches_for_inputs_backward_accepts_too(tmp_path):
    (tmp_path / "project.py").write_text(BATCHED_PROJECT)
    (function,) = audit_paths([str(tmp_path)], Config(), LIMITS).functions
    assert (function.verdict, function.detail) == (
        "verified",
        "Project.apply(<tensor [4, 4, 4]>, <tensor [4, 4]>): gradcheck passed for x, weight and gradgradcheck "
        "(inputs: searched (3 tries))",
    )

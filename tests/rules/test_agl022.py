"""AGL022 amp-missing-custom-fwd: static cases and the confirm recipe under real torch."""

from __future__ import annotations

import textwrap

import pytest
from snippets import marked_positions, reported_positions
from test_confirm import run_recipe

from autograd_lint import Config, lint_source


def agl022(source: str) -> list[tuple[int, int]]:
    found = lint_source(textwrap.dedent(source), "case.py", Config(select=("AGL022",)))
    return [(d.line, d.column) for d in found]


def linear(
    forward_decorators: str = "",
    backward_decorators: str = "",
    returned: str = "x @ w.t()",
    backward_body: str = "return g @ w, g.t() @ x",
    imports: str = "",
    use: str = 'with torch.autocast("cpu", dtype=torch.bfloat16):\n    y = Lin.apply(x, w)',
) -> str:
    return (
        "import torch\n"
        + imports
        + "\n\nclass Lin(torch.autograd.Function):\n    @staticmethod\n"
        + "".join(f"    {d}\n" for d in forward_decorators.split(";") if d)
        + "    def forward(ctx, x, w):\n        ctx.save_for_backward(x, w)\n"
        + f"        return {returned}\n\n    @staticmethod\n"
        + "".join(f"    {d}\n" for d in backward_decorators.split(";") if d)
        + "    def backward(ctx, g):\n        x, w = ctx.saved_tensors\n"
        + textwrap.indent(backward_body, " " * 8)
        + "\n\n\ndef step(x, w):\n"
        + textwrap.indent(use, "    ")
        + "\n    y.float().sum().backward()\n"
    )


def forward_line(source: str) -> int:
    return source.splitlines().index("    def forward(ctx, x, w):") + 1


@pytest.mark.parametrize(
    "imports, use",
    [
        ("", 'with torch.autocast("cpu", dtype=torch.bfloat16):\n    y = Lin.apply(x, w)'),
        ("", "with torch.cuda.amp.autocast():\n    y = Lin.apply(x, w)"),
        ("from torch import autocast", 'with autocast("cuda"):\n    y = Lin.apply(x, w)'),
        ("from torch.amp import autocast", 'with autocast("cuda", enabled=True):\n    y = Lin.apply(x, w)'),
        (
            "",
            "y = Lin.apply(x, w)\n\n@torch.autocast('cpu')\ndef other(x):\n    return x",
        ),  # the module runs autocast elsewhere
        ("", "fn = Lin.apply\ny = fn(x, w)\nwith torch.autocast('cpu'):\n    pass"),
        # An autocast built once and entered by name, or entered through an ExitStack.
        (
            "import contextlib",
            "amp = torch.autocast('cpu') if x.is_cuda else contextlib.nullcontext()\nwith amp:\n    y = Lin.apply(x, w)",
        ),
        (
            "import contextlib",
            "with contextlib.ExitStack() as stack:\n    stack.enter_context(torch.autocast('cpu'))\n    y = Lin.apply(x, w)",
        ),
    ],
)
def test_matmul_function_in_a_module_running_autocast_is_flagged(imports, use):
    source = linear(imports=imports, use=use)
    assert agl022(source) == [(forward_line(source), 9)]


@pytest.mark.parametrize(
    "returned",
    [
        "x @ w.t()",
        "torch.mm(x, w.t()) * 0.5",
        "torch.nn.functional.linear(x, w).view(-1)",
        "(x.matmul(w.t())).transpose(0, 1)",
        "torch.einsum('ij,kj->ik', x, w)",
        "torch.nn.functional.gelu(x @ w.t())",
        "(x @ w.t()).relu()",
        "torch.sigmoid(torch.mm(x, w.t()))",
    ],
)
def test_returned_low_precision_results_are_flagged(returned):
    assert len(agl022(linear(returned=returned))) == 1


def test_returned_name_assigned_from_a_matmul_is_flagged():
    source = linear(returned="out")
    source = source.replace("        return out", "        out = x @ w.t()\n        return out")
    assert len(agl022(source)) == 1


def test_custom_fwd_without_custom_bwd_is_flagged_at_backward():
    source = linear(forward_decorators='@torch.amp.custom_fwd(device_type="cpu")')
    line = source.splitlines().index("    def backward(ctx, g):") + 1
    (finding,) = lint_source(source, "case.py", Config(select=("AGL022",)))
    assert (finding.line, finding.column) == (line, 9)
    assert finding.message == "Lin.backward lacks custom_bwd while forward has custom_fwd without cast_inputs"
    assert "Add `@torch.amp.custom_bwd(device_type=...)` to backward." in finding.explanation


def test_custom_bwd_without_custom_fwd_is_flagged_even_without_autocast():
    source = linear(backward_decorators='@torch.amp.custom_bwd(device_type="cuda")', use="y = Lin.apply(x, w)")
    (finding,) = lint_source(source, "case.py", Config(select=("AGL022",)))
    assert (finding.line, finding.column) == (forward_line(source), 9)
    assert finding.message == "Lin.backward has custom_bwd but forward has no custom_fwd"
    assert "_fwd_used_autocast" in finding.explanation


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(
            forward_decorators='@torch.amp.custom_fwd(device_type="cpu")',
            backward_decorators='@torch.amp.custom_bwd(device_type="cpu")',
        ),
        dict(forward_decorators="@torch.cuda.amp.custom_fwd;", backward_decorators="@torch.cuda.amp.custom_bwd"),
        dict(
            forward_decorators="@custom_fwd(cast_inputs=torch.float32)", imports="from torch.cuda.amp import custom_fwd"
        ),
        dict(
            forward_decorators='@amp.custom_fwd(device_type="cuda", cast_inputs=torch.float16)',
            imports="from torch import amp",
        ),
        dict(returned="x @ w.t() + w[0]"),  # float32 tensor added: output promoted
        dict(returned="x * w"),  # elementwise
        dict(returned="(x @ w.t()).float()"),
        dict(backward_body="g = g.to(w.dtype)\nreturn g @ w, g.t() @ x"),
        dict(backward_body="return g.float() @ w, g.t().float() @ x"),
        dict(backward_body="return g * w.sum(), g * x.sum()"),  # no matmul in backward
        dict(use="y = Lin.apply(x, w)"),  # no autocast in the module
        dict(use="with torch.autocast('cuda', enabled=False):\n    y = Lin.apply(x, w)"),
    ],
)
def test_safe_shapes_are_silent(kwargs):
    assert agl022(linear(**kwargs)) == []


def test_forward_turning_autocast_off_is_silent():
    source = linear().replace(
        "        return x @ w.t()", "        with torch.autocast('cpu', enabled=False):\n            return x @ w.t()"
    )
    assert agl022(source) == []


def test_function_never_applied_here_is_silent():
    source = linear(use="with torch.autocast('cpu'):\n    y = x @ w")
    assert agl022(source) == []


DECORATED = """
import torch
class Lin(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x @ w.t()
    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w, g.t() @ x
"""
BUILDERS = (
    "[('Lin.apply(<tensor>, <tensor>)', lambda s: [_agl_probes.leaf_tensor(s, 0), _agl_probes.leaf_tensor(s, 1)])]"
)


def test_recipe_confirms_the_undecorated_version_and_not_the_decorated_one():
    verdict, evidence = run_recipe(DECORATED + f"agl022.check_amp(Lin.apply, {BUILDERS})")
    assert verdict == "not-reproduced", evidence
    assert "output bfloat16" in evidence and "input grads float32" in evidence
    undecorated = DECORATED.replace('    @torch.amp.custom_fwd(device_type="cpu")\n', "").replace(
        '    @torch.amp.custom_bwd(device_type="cpu")\n', ""
    )
    verdict, evidence = run_recipe(undecorated + f"agl022.check_amp(Lin.apply, {BUILDERS})")
    assert verdict == "confirmed", evidence
    assert "expected m1 and m2 to have the same dtype, but got: c10::BFloat16 != float" in evidence


def test_recipe_on_cast_inputs_and_on_a_promoting_bias_is_not_reproduced():
    cast = DECORATED.replace(
        '@torch.amp.custom_fwd(device_type="cpu")',
        '@torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)',
    )
    cast = cast.replace('    @torch.amp.custom_bwd(device_type="cpu")\n', "")
    verdict, evidence = run_recipe(cast + f"agl022.check_amp(Lin.apply, {BUILDERS})")
    assert verdict == "not-reproduced" and "output float32" in evidence, evidence
    biased = DECORATED.replace('    @torch.amp.custom_fwd(device_type="cpu")\n', "").replace(
        '    @torch.amp.custom_bwd(device_type="cpu")\n', ""
    )
    biased = biased.replace("return x @ w.t()", "return x @ w.t() + w[0]").replace(
        "return g @ w, g.t() @ x", "return g @ w, g.t() @ x + g.sum(0)"
    )
    verdict, evidence = run_recipe(biased + f"agl022.check_amp(Lin.apply, {BUILDERS})")
    assert verdict == "not-reproduced" and "output float32" in evidence, evidence


def test_recipe_confirms_custom_bwd_without_custom_fwd():
    half = DECORATED.replace('    @torch.amp.custom_fwd(device_type="cpu")\n', "")
    verdict, evidence = run_recipe(half + f"agl022.check_amp(Lin.apply, {BUILDERS})")
    assert verdict == "confirmed" and "'LinBackward' object has no attribute '_fwd_used_autocast'" in evidence, evidence


def test_function_managing_autocast_itself_is_silent():
    restoring = linear(backward_body='with torch.autocast("cpu", **ctx.autocast_kwargs):\n    return g @ w, g.t() @ x')
    assert agl022(restoring) == []
    checking = linear().replace(
        "        return x @ w.t()",
        "        if torch.is_autocast_enabled():\n            w = w.to(torch.get_autocast_dtype('cpu'))\n        return x @ w.t()",
    )
    assert "is_autocast_enabled" in checking and agl022(checking) == []


def test_autocast_only_inside_another_functions_backward_does_not_count():
    source = linear(use="y = Lin.apply(x, w)") + textwrap.dedent(
        """\

        class Recompute(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.autocast_kwargs = {"dtype": torch.get_autocast_dtype("cpu")}
                return x.clone()

            @staticmethod
            def backward(ctx, g):
                with torch.autocast("cpu", **ctx.autocast_kwargs):
                    return g.clone()
        """
    )
    assert agl022(source) == []


def test_an_autocast_built_disabled_does_not_count():
    use = "off = torch.autocast('cpu', enabled=False)\nwith off:\n    y = Lin.apply(x, w)"
    assert agl022(linear(use=use)) == []


def test_an_activation_autocast_runs_in_float32_promotes_the_output():
    assert agl022(linear(returned="torch.exp(x @ w.t())")) == []
    assert agl022(linear(returned="torch.nn.functional.softplus(x @ w.t())")) == []


SETUP_CONTEXT_MM = """
import torch

class MM(torch.autograd.Function):
    @staticmethod
    {fwd}
    def forward(a, b):
        return a @ b

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    {bwd}
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return g @ b.t(), a.t() @ g
"""


def test_custom_bwd_on_a_setup_context_function_is_flagged_even_with_custom_fwd():
    source = SETUP_CONTEXT_MM.format(
        fwd='@torch.amp.custom_fwd(device_type="cpu")', bwd='@torch.amp.custom_bwd(device_type="cpu")'
    )
    (diagnostic,) = lint_source(source, "case.py", Config(select=("AGL022",)))
    assert (diagnostic.line, diagnostic.column) == (7, 9)
    assert (
        "takes no ctx (setup_context style)" in diagnostic.message
        and "cast_inputs=torch.float32" in diagnostic.explanation
    )
    casting = SETUP_CONTEXT_MM.format(fwd='@torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)', bwd="")
    assert agl022(casting) == []


def test_recipe_confirms_custom_bwd_on_a_setup_context_function():
    source = SETUP_CONTEXT_MM.format(
        fwd='@torch.amp.custom_fwd(device_type="cpu")', bwd='@torch.amp.custom_bwd(device_type="cpu")'
    )
    builders = "[('MM.apply(<tensor>, <tensor>)', lambda s: [_agl_probes.leaf_tensor((3, 3)), _agl_probes.leaf_tensor((3, 3))])]"
    verdict, evidence = run_recipe(source + f"\nagl022.check_amp(MM.apply, {builders})\n")
    assert verdict == "confirmed" and "_fwd_used_autocast" in evidence, evidence


def test_casting_only_the_returned_gradients_comes_too_late():
    late = linear(backward_body="gx = g @ w\ngw = g.t() @ x\nreturn gx.to(x.dtype), gw.to(w.dtype)")
    assert agl022(late) == [(forward_line(late), 9)]
    inside = linear(backward_body="return g @ w.to(g.dtype), g.t() @ x.to(g.dtype)")
    assert agl022(inside) == []


def test_a_forward_that_picks_its_own_dtype_is_silent():
    source = linear(
        returned="x.half() @ w.t().half()",
        backward_body="gx = g @ w.half()\nreturn gx.float(), (g.t() @ x.half()).float()",
    )
    assert agl022(source) == []
    matching = linear(
        returned="torch.nn.functional.linear(x, w.to(x.dtype))"
    )  # same dtype as the input: autocast still decides
    assert agl022(matching) == [(forward_line(matching), 9)]


VALID = [
    # custom_fwd with cast_inputs
    """\
        import torch
        from torch.amp import custom_bwd, custom_fwd


        class Linear(torch.autograd.Function):
            @staticmethod
            @custom_fwd(device_type="cpu", cast_inputs=torch.float32)
            def forward(ctx, x, w):
                ctx.save_for_backward(x, w)
                return x @ w.t()

            @staticmethod
            @custom_bwd(device_type="cpu")
            def backward(ctx, g):
                x, w = ctx.saved_tensors
                return g @ w, g.t() @ x


        def step(x, w):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return Linear.apply(x, w)
    """,
    # an elementwise Function: autocast leaves it in float32
    """\
        import torch


        class Swish(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * torch.sigmoid(x)

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                s = torch.sigmoid(x)
                return g * s * (1 + x * (1 - s))


        def step(x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return Swish.apply(x)
    """,
    # a matmul plus a float32 bias: the add promotes the output back
    """\
        import torch


        class Affine(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w, bias):
                ctx.save_for_backward(x, w)
                return x @ w.t() + bias

            @staticmethod
            def backward(ctx, g):
                x, w = ctx.saved_tensors
                return g @ w, g.t() @ x, g.sum(0)


        def step(x, w, b):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return Affine.apply(x, w, b)
    """,
    # backward casts the gradient before its matmuls
    """\
        import torch


        class Linear(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w):
                ctx.save_for_backward(x, w)
                return x @ w.t()

            @staticmethod
            def backward(ctx, g):
                x, w = ctx.saved_tensors
                g = g.to(x.dtype)
                return g @ w.to(g.dtype), g.t() @ x


        def step(x, w):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return Linear.apply(x, w)
    """,
    # a module that never turns autocast on
    """\
        import torch


        class Linear(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w):
                ctx.save_for_backward(x, w)
                return x @ w.t()

            @staticmethod
            def backward(ctx, g):
                x, w = ctx.saved_tensors
                return g @ w, g.t() @ x


        def step(x, w):
            return Linear.apply(x, w)
    """,
]

INVALID = [
    # a matmul Function applied under autocast without custom_fwd
    """\
        import torch


        class Linear(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w):  # AGL022:9
                ctx.save_for_backward(x, w)
                return x @ w.t()

            @staticmethod
            def backward(ctx, g):
                x, w = ctx.saved_tensors
                return g @ w, g.t() @ x


        def train_step(x, w, target):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = (Linear.apply(x, w) - target).float().pow(2).mean()
            loss.backward()
    """,
    # a linear through a view and an activation autocast runs in its input's dtype
    """\
        import torch
        import torch.nn.functional as F


        class Projection(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, proj):  # AGL022:9
                ctx.save_for_backward(x, proj)
                return F.gelu(F.linear(x, proj).view(x.shape[0], -1))

            @staticmethod
            def backward(ctx, g):
                x, proj = ctx.saved_tensors
                return g @ proj, g.t() @ x


        @torch.autocast("cpu", dtype=torch.bfloat16)
        def project(x, w):
            return Projection.apply(x, w)
    """,
    # custom_bwd alone casts nothing on the way in
    """\
        import torch
        from torch.amp import custom_bwd


        class MatMul(torch.autograd.Function):
            @staticmethod
            def forward(ctx, a, b):  # AGL022:9
                ctx.save_for_backward(a, b)
                return torch.mm(a, b)

            @staticmethod
            @custom_bwd(device_type="cpu")
            def backward(ctx, g):
                a, b = ctx.saved_tensors
                return g.mm(b.t()), a.t().mm(g)


        def step(a, b):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return MatMul.apply(a, b)
    """,
]


@pytest.mark.parametrize("source", VALID)
def test_valid_snippets_report_nothing(source):
    assert reported_positions("AGL022", source) == []


@pytest.mark.parametrize("source", INVALID)
def test_invalid_snippets_report_exactly(source):
    assert reported_positions("AGL022", source) == marked_positions("AGL022", source)

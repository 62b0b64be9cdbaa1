"""Confirm on code shaped like real repositories' (benchmarks/confirm_real.py measures the real ones), under
real torch, through the command line.

A compiled extension the package does not have (`from pkg import _C`) is a missing dependency; a top package
inside a namespace package (`nslib/core/` imported as `nslib.core`) imports from above the namespace folder,
a folder without `__init__.py` is a package where the module's imports say so, and the project's folder
(its pyproject.toml) is on sys.path too;
an AGL023 `torch.where` on an object the harness cannot build (`self.vec`) or on locals it cannot know
evaluates with one-value stand-ins for them; a forward that calls its argument and takes `*args` gets a function and a tensor from the search; a state
object only the module's functional wrapper builds comes from calling the wrapper on tensors;
an AGL002 harness whose backward never ran is inconclusive, not `not-reproduced`; collectives run in a
one-process gloo group (started where torch is asked for its default group, or given to a process-group
argument), and what does not reproduce there runs again in a two-process group (a forked twin as rank 1), where
collectives change values; what neither shows is inconclusive with both runs; a
model-parallel state argument (`mpu`) gets a stand-in that answers from that group, and so do a library's module
globals left None until its initializer runs (a communication backend, model-parallel state); a forward that calls a GPU
API its device abstraction leaves None on the CPU needs a CUDA device, whatever the inputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from autograd_lint.cli import main

ROOT = Path(__file__).resolve().parent.parent

PROJECT = {
    "pyproject.toml": "[tool.autograd-lint]\n",
    "geom/__init__.py": "",
    # `_C` is the package's compiled extension, never built here.
    "geom/render.py": """
        import torch

        from geom import _C


        class Blend(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, scale):
                ctx.scale = scale
                return _C.blend(x)

            @staticmethod
            def backward(ctx, grad_output):
                return grad_output * ctx.scale
        """,
    # An object built from a tensor the harness cannot know: its attributes stand in.
    "geom/axis.py": """
        import torch


        class Axis:
            def __init__(self, data):
                self.data = data

            @property
            def vec(self):
                return self.data[..., 1:]

            def direction(self):
                length = self.vec.norm(dim=-1)
                return torch.where(length[..., None] != 0, self.vec / length[..., None], self.vec * 0)
        """,
    # Locals the harness cannot know (`data`, `low`) reshaped against the guarded one: they stand in as one value.
    "geom/histogram.py": """
        import torch


        def normalize(data, eps=1e-8):
            low, _ = data.min(dim=-1)
            high, _ = data.max(dim=-1)
            spread = (high - low).unsqueeze(-1)
            return torch.where(spread > eps, (data - low.unsqueeze(-1)) / spread, 0)
        """,
    # `nslib` has no __init__.py: a namespace package, imported by its full name.
    "nslib/core/__init__.py": "",
    "nslib/core/utils.py": "ONE = 1.0\n",
    "nslib/core/ops.py": """
        import torch

        from nslib.core.utils import ONE


        class ScaleGrad(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, scale):
                ctx.scale = scale * ONE
                return x.clone()

            @staticmethod
            def backward(ctx, grad_output):
                return grad_output * ctx.scale
        """,
    # `experimental/` has no __init__.py either, inside the package: its module imports the package by name.
    "nslib/core/experimental/attn.py": """
        import torch

        from nslib.core.utils import ONE


        class Attn(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, scale):
                ctx.scale = scale * ONE
                return x.clone()

            @staticmethod
            def backward(ctx, grad_output):
                return grad_output * ctx.scale
        """,
    # No __init__.py at all: the relative import says that `ops` is a package.
    "plugins/ops/helpers.py": "SCALE = 2.0\n",
    "plugins/ops/fused.py": """
        import torch

        from .helpers import SCALE


        class Fused(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, y):
                return x * SCALE + y

            @staticmethod
            def backward(ctx, grad_output):
                return grad_output * SCALE
        """,
    # A script beside the package imports it by name, as it would run from the project's folder.
    "geom/const.py": "GAIN = 1.0\n",
    "experiments/gain.py": """
        import torch

        from geom.const import GAIN


        class Gain(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, y):
                return x * GAIN + y

            @staticmethod
            def backward(ctx, grad_output):
                return grad_output * GAIN
        """,
    # Activation checkpointing: forward calls its first argument on the rest.
    "tools/recompute.py": """
        import torch


        class Recompute(torch.autograd.Function):
            @staticmethod
            def forward(ctx, run_function, *args):
                ctx.run_function = run_function
                ctx.save_for_backward(*args)
                with torch.no_grad():
                    return run_function(*args)

            @staticmethod
            def backward(ctx, grad_output):
                inputs = [t.detach().requires_grad_() for t in ctx.saved_tensors]
                with torch.enable_grad():
                    output = ctx.run_function(*inputs)
                grad_output.mul_(2)
                torch.autograd.backward(output, grad_output)
                return (None, *(t.grad for t in inputs))
        """,
    # Its first argument is a settings object: on tensors backward fails, on numbers forward returns one.
    "tools/broadcast.py": """
        from torch.autograd import Function


        class Broadcast(Function):
            @staticmethod
            def forward(ctx, options, x, tag):
                ctx.options = options
                return x

            @staticmethod
            def backward(ctx, grad_output):
                return grad_output * ctx.options.gain()
        """,
    # Only its functional wrapper knows the state object it takes.
    "tools/quant.py": """
        from dataclasses import dataclass

        import torch


        @dataclass
        class QuantState:
            scale: float = 0.5


        class QuantMatmul(torch.autograd.Function):
            @staticmethod
            def forward(ctx, a, b, state):
                weight = b * state.scale
                ctx.a = a
                ctx.state = state
                ctx.save_for_backward(weight)
                return a @ weight.t()

            @staticmethod
            def backward(ctx, grad_output):
                (weight,) = ctx.saved_tensors
                return grad_output @ weight, (grad_output.t() @ ctx.a) * ctx.state.scale, None


        def quant_matmul(a, b, state=None):
            state = state or QuantState()
            return QuantMatmul.apply(a, b, state)
        """,
    # A collective on its argument, in place: in the one-process group it keeps the values, not the version.
    "tools/allreduce.py": """
        import torch
        import torch.distributed as dist


        class AllReduce(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, process_group):
                dist.all_reduce(x, group=process_group)
                return x

            @staticmethod
            def backward(ctx, grad_output):
                return grad_output, None
        """,
    # A reduction skipped where the group has one process, as real code does: it shows in two.
    "tools/bypass_reduce.py": """
        import torch
        import torch.distributed as dist


        class ReduceFromParallelRegion(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, group):
                if dist.get_world_size(group) == 1:
                    return x
                dist.all_reduce(x, group=group)
                return x

            @staticmethod
            def backward(ctx, grad_output):
                return grad_output, None
        """,
    # A reduction only groups of more than two processes run: no group the harness starts shows it.
    "tools/large_groups_only.py": """
        import torch
        import torch.distributed as dist


        class ReduceInLargeGroups(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, group):
                if dist.get_world_size(group) <= 2:
                    return x
                dist.all_reduce(x, group=group)
                return x

            @staticmethod
            def backward(ctx, grad_output):
                return grad_output, None
        """,
    # Collectives on torch's default group, in forward and in a backward one gradient short.
    "tools/scaled_reduce.py": """
        import torch
        import torch.distributed as dist


        class ScaledAllReduce(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, scale):
                ctx.scale = scale
                out = x * scale
                dist.all_reduce(out)
                return out

            @staticmethod
            def backward(ctx, grad_output):
                grad = grad_output * ctx.scale
                dist.all_reduce(grad)
                return grad
        """,
    # A model-parallel state argument (Megatron's `mpu` convention): at world size 1 backward returns early,
    # one gradient for four inputs.
    "tools/domino.py": """
        import torch
        import torch.distributed as dist


        class CopyToModelParallelRegion(torch.autograd.Function):
            @staticmethod
            def forward(ctx, mpu, input_, handles, handle_id):
                ctx.mpu = mpu
                ctx.handles = handles
                ctx.handle_id = handle_id
                return input_

            @staticmethod
            def backward(ctx, grad_output):
                if ctx.mpu.get_tensor_model_parallel_world_size() == 1:
                    return grad_output
                handle = dist.all_reduce(grad_output, group=ctx.mpu.get_tensor_model_parallel_group(), async_op=True)
                ctx.handles[ctx.handle_id] = handle
                return None, grad_output, None, None
        """,
    # A library's communication facade (as DeepSpeed's deepspeed.comm): its backend is None until the library's
    # initializer runs, and its reduce-op enum is its own.
    "commlib/__init__.py": "",
    "commlib/comm.py": """
        import enum


        class ReduceOp(enum.Enum):
            SUM = 0
            MAX = 3


        backend = None


        def init_distributed():
            global backend
            raise RuntimeError("needs a launcher")


        def get_world_size(group=None):
            assert backend is not None, "backend not set, call init_distributed()"
            return backend.get_world_size(group)


        def inference_all_reduce(tensor, op=ReduceOp.SUM, group=None):
            return backend.inference_all_reduce(tensor, op, group)
        """,
    "tools/row_parallel.py": """
        import torch

        from commlib import comm as dist


        class RowParallel(torch.autograd.Function):
            @staticmethod
            def forward(ctx, group, input_):
                dist.inference_all_reduce(input_, group=group)
                return input_

            @staticmethod
            def backward(ctx, grad_output):
                return None, grad_output
        """,
    # Model-parallel state kept in a module global, None until a setup function runs; the reduction is skipped
    # on one process.
    "tools/compression.py": """
        import torch

        from commlib import comm as dist

        g_mpu = None


        def setup(mpu):
            global g_mpu
            g_mpu = mpu


        def _reduce(input_):
            group = g_mpu.get_model_parallel_group()
            if dist.get_world_size(group=group) == 1:
                return input_
            dist.inference_all_reduce(input_, group=group)
            return input_


        class ReduceFromModelParallelRegion(torch.autograd.Function):
            @staticmethod
            def forward(ctx, input_):
                return _reduce(input_)

            @staticmethod
            def backward(ctx, grad_output):
                return grad_output
        """,
    # A device abstraction whose CPU flavour has no streams (DeepSpeed's CPU accelerator: `Stream = None`).
    "tools/accelerator.py": """
        class CpuAccelerator:
            Stream = None

            def current_device_name(self):
                return "cpu"


        def get_accelerator():
            return CpuAccelerator()
        """,
    "tools/offload.py": """
        import torch

        from tools.accelerator import get_accelerator


        class OffloadedLinear(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, weight):
                stream = get_accelerator().Stream(device=get_accelerator().current_device_name())
                ctx.stream = stream
                ctx.save_for_backward(x, weight)
                return x @ weight

            @staticmethod
            def backward(ctx, grad_output):
                x, weight = ctx.saved_tensors
                return grad_output @ weight.t()
        """,
    # Held-out shapes: segment ids with a count the wrapper computes, a count forward passes to new_zeros.
    "graph/__init__.py": "",
    "graph/readout.py": """
        import torch


        class SegmentMean(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, segment_ids, num_segments: int):
                out = x.new_zeros(num_segments, x.shape[1]).index_add_(0, segment_ids, x)
                counts = torch.bincount(segment_ids, minlength=num_segments).clamp(min=1)
                ctx.save_for_backward(segment_ids, counts)
                return out / counts.unsqueeze(1)

            @staticmethod
            def backward(ctx, grad_out):
                segment_ids, counts = ctx.saved_tensors
                grad = grad_out / counts.unsqueeze(1)
                return grad.index_select(0, segment_ids), None, grad.sum()


        def segment_mean(x, segment_ids, num_segments=None):
            if num_segments is None:
                num_segments = int(segment_ids.max()) + 1
            return SegmentMean.apply(x, segment_ids, num_segments)
        """,
    # Rows `start:end` of an (N, C, H, W) map: equal ints make the slice empty; backward unpacks what the
    # first save_for_backward kept, which the second replaced.
    "graph/rows.py": """
        import torch


        class RowMax(torch.autograd.Function):
            @staticmethod
            def forward(ctx, features, batch_idx, start: int, end: int):
                crop = features.index_select(0, batch_idx)[:, :, start:end, :]
                pooled, argmax = crop.max(dim=2)
                ctx.save_for_backward(batch_idx, argmax)
                ctx.shape, ctx.start = features.shape, start
                ctx.save_for_backward(argmax, pooled)
                return pooled

            @staticmethod
            def backward(ctx, grad):
                batch_idx, argmax = ctx.saved_tensors
                n, c, h, w = ctx.shape
                crop = grad.new_zeros(batch_idx.shape[0], c, h, w)
                crop.scatter_(2, (argmax + ctx.start).unsqueeze(2), grad.unsqueeze(2))
                return grad.new_zeros(ctx.shape).index_add_(0, batch_idx, crop), None, None, None
        """,
    # A bool mask the caller flips after apply saved it; local indices shifted in place by graph offsets.
    "graph/masks.py": """
        import torch


        class MaskedScores(torch.autograd.Function):
            @staticmethod
            def forward(ctx, scores, attn_mask):
                ctx.save_for_backward(attn_mask)
                return scores.masked_fill(~attn_mask, -1e4)

            @staticmethod
            def backward(ctx, g):
                (attn_mask,) = ctx.saved_tensors
                return g * attn_mask, None


        def causal_scores(scores):
            t = scores.shape[-1]
            mask = torch.ones(t, t, dtype=torch.bool).tril()
            out = MaskedScores.apply(scores, mask)
            mask.logical_not_()
            return out, mask


        class OffsetGather(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, local_idx, offsets):
                local_idx += offsets.unsqueeze(1)
                flat = local_idx.reshape(-1)
                ctx.save_for_backward(flat)
                ctx.n = x.shape[0]
                return x.index_select(0, flat)

            @staticmethod
            def backward(ctx, g):
                (flat,) = ctx.saved_tensors
                return g.new_zeros(ctx.n, g.shape[1]).index_add_(0, flat, g), None, None
        """,
    # einsum names its operand by position; forward accepts a 1-D index that backward cannot use.
    "graph/pairs.py": """
        import torch


        class Bilinear(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x1, x2, weight):
                ctx.save_for_backward(x1, x2, weight)
                return torch.einsum("bi,oij,bj->bo", x1, weight, x2)

            @staticmethod
            def backward(ctx, gy):
                x1, x2, weight = ctx.saved_tensors
                return torch.einsum("bo,oij,bj->bi", gy, weight, x2), torch.einsum("bo,oij,bi->bj", gy, weight, x1)


        class RelPosBias(torch.autograd.Function):
            @staticmethod
            def forward(ctx, table, rel_index):
                ctx.save_for_backward(rel_index)
                ctx.buckets = table.shape[0]
                return table[rel_index].permute(2, 0, 1)

            @staticmethod
            def backward(ctx, grad):
                (rel_index,) = ctx.saved_tensors
                g = grad.permute(1, 2, 0).reshape(-1, grad.shape[0])
                return g.new_zeros(ctx.buckets, g.shape[1]).index_add_(0, rel_index.reshape(-1), g)
        """,
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    for name, text in PROJECT.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


@pytest.fixture(scope="module")
def verdicts(project):
    """{(path, line, code): confirm verdict} of one CliRunner run over the project."""
    cwd = os.getcwd()
    os.chdir(project)
    try:
        result = CliRunner().invoke(
            main,
            ["check", "--select", "ALL", "--confirm", "--no-cache", "--output-format", "json", "-j", "2", "."],
            catch_exceptions=False,
        )
    finally:
        os.chdir(cwd)
    assert result.exit_code == 1, result.stderr
    return {(d["path"], d["line"], d["code"]): d["confirm"] for d in json.loads(result.stdout)}


def test_a_compiled_extension_the_package_lacks_is_a_missing_dependency(verdicts):
    assert verdicts[("geom/render.py", 14, "AGL002")]["verdict"] == "inconclusive"
    assert verdicts[("geom/render.py", 14, "AGL002")]["evidence"] == (
        "missing dependency: No module named 'geom._C' (imported by geom/render.py)"
    )


def test_a_package_inside_a_namespace_package_imports_by_its_full_name(verdicts):
    assert verdicts[("nslib/core/ops.py", 14, "AGL002")] | {"seconds": 0} == {
        "verdict": "confirmed",
        "evidence": "ScaleGrad.apply(<tensor>, <tensor>) then backward raised RuntimeError: function "
        "ScaleGradBackward returned an incorrect number of gradients (expected 2, got 1) (inputs: declared)",
        "seconds": 0,
    }


@pytest.mark.parametrize(
    ("path", "function"),
    [("nslib/core/experimental/attn.py", "Attn"), ("plugins/ops/fused.py", "Fused"), ("experiments/gain.py", "Gain")],
)
def test_a_module_in_a_folder_without_init_imports_as_its_imports_say(verdicts, path, function):
    (verdict,) = [v for (where, _, code), v in verdicts.items() if where == path and code == "AGL002"]
    assert verdict["verdict"] == "confirmed"
    assert verdict["evidence"].startswith(f"{function}.apply(<tensor>, <tensor>) then backward raised RuntimeError: ")


def test_a_where_on_attributes_of_an_object_the_harness_cannot_build_is_confirmed(verdicts):
    assert verdicts[("geom/axis.py", 14, "AGL023")]["verdict"] == "confirmed"
    assert verdicts[("geom/axis.py", 14, "AGL023")]["evidence"].endswith(
        "finite output but NaN gradient at x=0: NaN (selected branch: 0)"
    )


def test_a_where_on_locals_the_harness_cannot_know_is_confirmed_per_probe_point(verdicts):
    assert verdicts[("geom/histogram.py", 8, "AGL023")]["verdict"] == "confirmed"
    assert verdicts[("geom/histogram.py", 8, "AGL023")]["evidence"].endswith(
        "finite output but NaN gradient at x=0: NaN (selected branch: 0)"
    )


def test_a_forward_that_calls_its_argument_gets_a_function_and_its_varargs_a_tensor(verdicts):
    assert verdicts[("tools/recompute.py", 17, "AGL008")]["verdict"] == "confirmed"
    assert verdicts[("tools/recompute.py", 17, "AGL008")]["evidence"].startswith(
        "Recompute.apply(<function>, <tensor [2, 3]>), then backward with an explicit upstream gradient"
    )
    assert verdicts[("tools/recompute.py", 17, "AGL008")]["evidence"].endswith("(inputs: searched (2 tries))")


def test_an_arity_harness_whose_backward_never_ran_is_inconclusive(verdicts):
    assert verdicts[("tools/broadcast.py", 12, "AGL002")]["verdict"] == "inconclusive"
    assert verdicts[("tools/broadcast.py", 12, "AGL002")]["evidence"] == (
        "backward never ran to the end: Broadcast.apply(<tensor>, <tensor>, <tensor>): backward raised "
        "AttributeError: 'Tensor' object has no attribute 'gain'; Broadcast.apply(<tensor>, 1, 1): no output "
        "requires grad; Broadcast.apply(<tensor>, 0.5, 0.5): no output requires grad (inputs: declared)"
    )


def test_a_state_object_only_the_wrapper_builds_is_harvested_by_calling_the_wrapper(verdicts):
    verdict = verdicts[("tools/quant.py", 15, "AGL007")]
    assert verdict["verdict"] == "confirmed"
    assert verdict["evidence"].startswith("QuantMatmul.apply(<tensor [4, 4]>, <tensor [4, 4]>, <QuantState>): ")
    assert verdict["evidence"].endswith("(inputs: harvested from quant_matmul(<tensor>, <tensor>))")


def test_a_collective_on_a_process_group_argument_writes_its_input(verdicts):
    assert verdicts[("tools/allreduce.py", 8, "AGL009")]["verdict"] == "confirmed"
    assert verdicts[("tools/allreduce.py", 8, "AGL009")]["evidence"] == (
        "AllReduce.apply(<tensor>, <process group>): input `x` (a leaf requiring grad) kept its values, "
        "_version 0 -> 1, and forward never called ctx.mark_dirty on it (inputs: declared)"
    )


def test_a_reduction_skipped_at_world_size_1_is_confirmed_in_a_two_process_group(verdicts):
    assert verdicts[("tools/bypass_reduce.py", 10, "AGL009")]["verdict"] == "confirmed"
    assert verdicts[("tools/bypass_reduce.py", 10, "AGL009")]["evidence"] == (
        "in a two-process group (world size 2): ReduceFromParallelRegion.apply(<tensor>, <process group>): "
        "input `x` (a leaf requiring grad) went from [-1.22, -0.9578, 0.7094, 1.171, -0.895, 1.041, ...] to "
        "[-2.44, -1.916, 1.419, 2.341, -1.79, 2.082, ...] where it changed, _version 0 -> 1, and forward never "
        "called ctx.mark_dirty on it (inputs: declared)"
    )


def test_what_neither_group_reproduces_is_inconclusive_with_both_runs(verdicts):
    assert verdicts[("tools/large_groups_only.py", 10, "AGL009")]["verdict"] == "inconclusive"
    assert verdicts[("tools/large_groups_only.py", 10, "AGL009")]["evidence"] == (
        "not reproduced in a one-process group (world size 1), where collectives change no values: "
        "ReduceInLargeGroups.apply(<tensor>, <process group>): every input unchanged (inputs: declared); "
        "at world size 2: inconclusive: not reproduced in a two-process group either (world size 2, the same "
        "inputs on both ranks): ReduceInLargeGroups.apply(<tensor>, <process group>): every input unchanged "
        "(inputs: declared)"
    )


def test_collectives_on_the_default_group_start_the_one_process_group(verdicts):
    assert verdicts[("tools/scaled_reduce.py", 17, "AGL002")]["verdict"] == "confirmed"
    assert verdicts[("tools/scaled_reduce.py", 17, "AGL002")]["evidence"] == (
        "ScaledAllReduce.apply(<tensor>, <tensor>) then backward raised RuntimeError: function "
        "ScaledAllReduceBackward returned an incorrect number of gradients (expected 2, got 1) (inputs: declared)"
    )


def test_a_namespace_package_and_a_missing_extension_in_a_real_process(project):
    proc = subprocess.run(
        [sys.executable, "-m", "autograd_lint", "--confirm", "--no-cache", "--output-format", "json", "geom", "nslib"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
    )
    assert proc.returncode == 1, proc.stderr
    found = {(d["path"], d["code"]): d["confirm"]["verdict"] for d in json.loads(proc.stdout)}
    assert found == {
        ("geom/render.py", "AGL002"): "inconclusive",
        ("geom/axis.py", "AGL023"): "confirmed",
        ("geom/histogram.py", "AGL023"): "confirmed",
        ("nslib/core/ops.py", "AGL002"): "confirmed",
        ("nslib/core/experimental/attn.py", "AGL002"): "confirmed",
    }


def test_a_model_parallel_state_argument_gets_a_stand_in_answering_from_the_one_process_group(verdicts):
    assert verdicts[("tools/domino.py", 16, "AGL002")] | {"seconds": 0} == {
        "verdict": "confirmed",
        "evidence": "CopyToModelParallelRegion.apply(<parallel state>, <tensor>, <tensor>, <tensor>) then backward "
        "raised RuntimeError: function CopyToModelParallelRegionBackward returned an incorrect number of gradients "
        "(expected 4, got 1) (inputs: declared)",
        "seconds": 0,
    }


def test_a_gpu_api_a_cpu_only_run_lacks_needs_a_cuda_device(verdicts):
    assert verdicts[("tools/offload.py", 17, "AGL002")] | {"seconds": 0} == {
        "verdict": "inconclusive",
        "evidence": "needs a CUDA device (forward failed on every synthesized input; last error: TypeError: "
        "'NoneType' object is not callable at tools/offload.py:9 "
        "`stream = get_accelerator().Stream(device=get_accelerator().current_device_name())`: "
        "a GPU API that is None on the CPU)",
        "seconds": 0,
    }


def test_a_librarys_unset_communication_backend_stands_in_as_torch_distributed(verdicts):
    assert verdicts[("tools/row_parallel.py", 9, "AGL009")] | {"seconds": 0} == {
        "verdict": "confirmed",
        "evidence": "RowParallel.apply(<process group>, <tensor>): input `input_` (a leaf requiring grad) kept its "
        "values, _version 0 -> 1, and forward never called ctx.mark_dirty on it (inputs: declared)",
        "seconds": 0,
    }


def test_held_out_shapes_segment_ids_a_computed_count_and_an_empty_row_range(verdicts):
    # AGL011 runs the shared inputs when the call's own values fail: the count is an int (its hint), not the
    # wrapper's None default, which the wrapper replaces before the call.
    assert verdicts[("graph/readout.py", 16, "AGL011")] | {"seconds": 0} == {
        "verdict": "confirmed",
        "evidence": "SegmentMean.apply(<tensor [2, 3]>, <index [2]>, 2) then backward raised RuntimeError: function "
        "SegmentMeanBackward returned a gradient different than None at position 3, but the corresponding forward "
        "input was not a Variable (inputs: searched (1 try))",
        "seconds": 0,
    }
    # Equal ints made rows 2:2 empty ("Expected reduction dim 2 to have non-zero size"): 1 and 2 instead;
    # backward unpacks what the first save kept, and runs with only that call's tensors saved.
    assert verdicts[("graph/rows.py", 11, "AGL013")] | {"seconds": 0} == {
        "verdict": "confirmed",
        "evidence": "RowMax.apply(<tensor [2, 3, 4, 5]>, <index [2]>, 1, 2): forward called save_for_backward 2 "
        "times (2 + 2 tensors) and grad_fn.saved_tensors holds 2; backward raised RuntimeError: scatter(): Expected "
        "dtype int32/int64 for index (with only call 1's tensors saved it runs) (inputs: searched (4 tries))",
        "seconds": 0,
    }


def test_an_unset_model_parallel_global_stands_in_and_its_reduction_shows_in_two_processes(verdicts):
    assert verdicts[("tools/compression.py", 24, "AGL009")]["verdict"] == "confirmed"
    assert verdicts[("tools/compression.py", 24, "AGL009")]["evidence"].startswith(
        "in a two-process group (world size 2): ReduceFromModelParallelRegion.apply(<tensor>): input `input_` (a leaf "
        "requiring grad) went from [-1.22, -0.9578, 0.7094, 1.171, -0.895, 1.041, ...] to [-2.44, -1.916, 1.419, "
    )


def test_held_out_shapes_einsum_operands_and_inputs_backward_accepts(verdicts):
    # "for operand 1": the weight, the second argument the failing line names, becomes 3-D.
    assert verdicts[("graph/pairs.py", 13, "AGL002")] | {"seconds": 0} == {
        "verdict": "confirmed",
        "evidence": "Bilinear.apply(<tensor [4, 4]>, <tensor [4, 4]>, <tensor [4, 4, 4]>) then backward raised "
        "RuntimeError: function BilinearBackward returned an incorrect number of gradients (expected 3, got 2) "
        "(inputs: searched (3 tries))",
        "seconds": 0,
    }
    # Forward takes a 3-D table with a 1-D index; only a 2-D index gets backward to torch's count.
    assert verdicts[("graph/pairs.py", 27, "AGL002")] | {"seconds": 0} == {
        "verdict": "confirmed",
        "evidence": "RelPosBias.apply(<tensor [4, 4]>, <index [4, 4]>) then backward raised RuntimeError: function "
        "RelPosBiasBackward returned an incorrect number of gradients (expected 2, got 1) (inputs: searched (8 tries))",
        "seconds": 0,
    }


def test_held_out_shapes_a_saved_bool_mask_and_indices_shifted_in_place(verdicts):
    # The mask stays bool when the recipe makes the argument a non-leaf (it was `* 1`, a long tensor).
    verdict = verdicts[("graph/masks.py", 20, "AGL019")]
    assert verdict["verdict"] == "confirmed"
    assert verdict["evidence"].startswith(
        "MaskedScores.apply(<tensor [4, 4]>, <mask [4, 4]>), then `mask.logical_not_()` on argument 1, then backward "
        "raised RuntimeError: one of the variables needed for gradient computation has been modified by an inplace "
        "operation: [CPUBoolType [4, 4]] is at version 1; expected version 0 instead."
    )
    assert verdict["evidence"].endswith(
        "with a .clone() at the call the same sequence runs (inputs: harvested from causal_scores(<tensor>))"
    )
    assert verdicts[("graph/masks.py", 27, "AGL009")] | {"seconds": 0} == {
        "verdict": "confirmed",
        "evidence": "OffsetGather.apply(<tensor [4, 4]>, <index [4, 4]>, <index [4]>): input `local_idx` (of dtype "
        "int64) went from [1, 0, 1, 0, 1, 0, ...] to [2, 1, 2, 1, 2, 1, ...] where it changed, _version 0 -> 1, and "
        "forward never called ctx.mark_dirty on it (inputs: searched (6 tries))",
        "seconds": 0,
    }

# Runtime helpers for confirm harnesses. This file is not imported by autograd-lint: its text is
# copied into every harness, which runs in a child process with only torch available. Every name
# starts with `_agl_` so that it cannot clash with the user's code pasted next to it.
import math as _agl_math
import os as _agl_os
import sys as _agl_sys


def _agl_report(verdict, evidence, _send=globals().pop("_agl_channel", None)):
    """The verdict, on the result pipe the runner's bootstrap handed over as `_agl_channel` (taken out of
    the module's namespace here); the process ends at once, whatever called this. Run by hand, outside
    autograd-lint, a harness prints its verdict instead."""
    for stream in (_agl_sys.stdout, _agl_sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a stream the code under test closed or replaced
            pass
    if _send is None:
        print("verdict:", verdict, "-", evidence, flush=True)
        _agl_os._exit(0)
    try:
        _send(verdict, evidence)
    except OSError as exc:  # the code under test closed the pipe: no verdict, and stderr says why
        _agl_os.write(2, f"autograd-lint: the result pipe is gone: {exc}\n".encode())
        _agl_os._exit(71)
    _agl_os._exit(0)


_AGL_COPY_PREFIX = "<autograd-lint copy of "


def _agl_run_definitions(source, path, namespace):
    """Run the user's copied top-level definitions in `namespace`. A module missing from this
    interpreter (other than torch, which the runner reports) is inconclusive with its name and the
    file that imports it, apart from a forward that fails on the synthesized inputs."""
    import linecache

    filename = _AGL_COPY_PREFIX + path + ">"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # for inspect.getsource
    try:
        exec(compile(source, filename, "exec", dont_inherit=True), namespace)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "torch":
            raise
        _agl_report("inconclusive", _agl_missing_dependency(exc))


def _agl_missing_dependency(exc):
    """`missing dependency: No module named 'x' (imported by pkg/ops.py)`, naming the last file of the
    project or of a library in the traceback (the user's module for its copied code)."""
    import os

    importer, harness_file = None, _agl_missing_dependency.__code__.co_filename
    root = globals().get("_agl_project_root")
    frame = exc.__traceback__
    while frame is not None:
        filename = frame.tb_frame.f_code.co_filename
        if filename.startswith(_AGL_COPY_PREFIX):
            importer = filename[len(_AGL_COPY_PREFIX):-1]
        elif not filename.startswith("<") and filename != harness_file:
            inside = root and os.path.abspath(filename).startswith(os.path.join(root, ""))
            importer = os.path.relpath(filename, root) if inside else filename
        frame = frame.tb_next
    return f"missing dependency: {exc}" + (f" (imported by {importer})" if importer else "")


def _agl_fmt(tensor, limit=6):
    values = tensor.detach().flatten().tolist()[:limit]
    text = ", ".join("-0.0" if (v == 0 and _agl_math.copysign(1.0, v) < 0) else f"{v:.4g}" for v in values)
    return "[" + text + (", ..." if tensor.numel() > limit else "") + "]"


def _agl_leaf(shape, seed=0):
    import torch

    # Both signs, away from zero, so that piecewise backwards take every branch.
    generator = torch.Generator().manual_seed(seed)
    magnitude = torch.rand(shape, generator=generator, dtype=torch.float64) + 0.25
    sign = torch.where(torch.rand(shape, generator=generator) < 0.5, -1.0, 1.0).to(torch.float64)
    return (magnitude * sign).requires_grad_(True)


def _agl_tensors(value):
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _agl_tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _agl_tensors(item)]
    return []


def _agl_backward(output):
    """Backward from every float output that requires grad, with a fixed upstream gradient of both
    signs and several magnitudes (so clamps and branches in backward are exercised); False if no
    output requires grad."""
    import torch

    # Each output's upstream pattern depends on its position among all outputs, so that a run where
    # an output starts requiring grad does not shift the others' patterns.
    indexed = [(i, t) for i, t in enumerate(_agl_tensors(output)) if t.requires_grad and t.is_floating_point()]
    if not indexed:
        return False
    def pattern(o, index):  # -2..2 in steps, never 0, both signs nearby, different per output
        k = torch.arange(o.numel(), dtype=torch.float64) + 3 * index
        return (((k * 7) % 10 - 4.5) / 2.25).reshape(o.shape).to(o.dtype)

    sum((o * pattern(o, i)).sum() for i, o in indexed).backward()
    return True


_AGL_SHAPES = [(3, 3), (3,), (2, 3, 3), (2, 3, 8, 8), (4,), (1,)]


def _agl_forward(apply, builders, shapes=None, every_shape=False):
    """Every (label, args, output) for which forward runs: each call variant with the first input
    shape it accepts (with `every_shape`, each shape it accepts). Inconclusive if forward fits no
    variant at all."""
    runs, error = [], None
    for label, build in builders:
        for shape in shapes or _AGL_SHAPES:
            try:
                args = build(shape)
                output = apply(*args)
            except ModuleNotFoundError as exc:  # no input shape can help: say what to install
                _agl_report("inconclusive", _agl_missing_dependency(exc))
            except Exception as exc:  # noqa: BLE001 - the user's forward rejecting this input
                error = f"{type(exc).__name__}: {exc}"
                continue
            runs.append((label, build, shape, output))
            if not every_shape:
                break
    if not runs:
        _agl_report("inconclusive", f"forward failed on every synthesized input; last error: {error}")
    return runs

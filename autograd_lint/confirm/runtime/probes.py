"""What every confirm recipe shares: the verdict channel, the user's copied definitions, synthesized
inputs, forward and backward runs.

This package runs inside the harness, in a child process whose interpreter (`--python`) may not have
autograd-lint installed: the runner copies it next to the harness as `autograd_lint_runtime`, so it
imports only the standard library, torch (inside functions, so that a missing torch is reported by the
runner) and itself, never the rest of autograd_lint. One module per rule (`agl002.py`, ...) holds that
rule's recipe; `confirm/builders/` writes the call to it.
"""

import math
import os
import re
import sys

# The device harnesses build their tensors on: the runner sets it in the harness's environment only
# (--device); a harness run by hand uses the CPU.
DEVICE = os.environ.get("AUTOGRAD_LINT_DEVICE", "cpu")
# What torch, the driver and Triton raise where code needs a GPU and none is visible (--device cpu hides them).
NEEDS_CUDA_ERRORS = (
    "Torch not compiled with CUDA enabled",
    "Found no NVIDIA driver",
    "No CUDA GPUs are available",
    "no CUDA-capable device is detected",
    "0 active drivers",  # Triton launching a kernel without a GPU
    "cannot be accessed from Triton",  # a CPU tensor handed to a Triton kernel
    "with arguments from the 'CPU' backend",  # an extension's operator with no CPU kernel
    "a GPU API that is None on the CPU",  # GPU_API_MISSING (gpu_api_missing)
)
GPU_API_MISSING = NEEDS_CUDA_ERRORS[-1]
# What code that runs collectives raises where it gets no process group it can use: torch's default group is
# started on demand (`harness_group`), and a library's unset backend or parallel state gets a stand-in
# (`_fill_unset_distributed_slots`), but state its initializer builds otherwise (Megatron's parallel_state
# module asserts it was initialized) or an argument the harness could not tell is a group does not.
NEEDS_PROCESS_GROUP = re.compile(
    r"process group|init_process_group|group should not be None|has no attribute "
    r"'\w*(?:all_?reduce|all_?gather|all_to_all|reduce_scatter|world_size|process_group|parallel_group)\w*'"
)

# The evidence of a finding not reproduced in a one-process group begins so: the runner reruns it at world size 2.
NOT_REPRODUCED_IN_ONE_PROCESS = (
    "not reproduced in a one-process group (world size 1), where collectives change no values: "
)

# Set by `start`, before the user's definitions run.
_channel = None
_project_root = None
_harness_script = None
# Where the Function's inputs came from (`declared`, `call site`, `searched (N tries)`), set by inputs.py and
# added to every verdict's evidence; None for harnesses that do not call a Function on synthesized inputs.
inputs_origin: str | None = None
# What `start` found imported: `_fill_unset_distributed_slots` looks only at what the code under test imported.
_modules_before_the_code_under_test: set = set()
# Whether this process started the harness's group (`harness_group`).
group_started = False
# The ranks of that group (the runner's --world size for this harness): 1, or 2 where a finding did not
# reproduce at 1 (runner.WORLD_SIZE_VARIABLE).
WORLD_SIZE = int(os.environ.get("AUTOGRAD_LINT_WORLD_SIZE", "1"))  # runner.WORLD_SIZE_VARIABLE
# A collective that waits longer on the other rank (it took another path) fails rather than hang the harness.
GROUP_TIMEOUT_SECONDS = 5
# In the other rank of a two-process group, a copy of this process that reports nothing (`harness_group`).
is_twin = False
_RUNTIME_FOLDER = os.path.dirname(os.path.abspath(__file__))


def start(channel, project_root=None, harness_script=None, project_folder=None):
    """Take the result channel the runner's bootstrap handed to the harness script as `_agl_channel` (the
    script pops it out of its namespace and passes it here, before the user's code runs), and put the
    project root first on sys.path (the project's folder, where its pyproject.toml is, after it), so that the
    copied code imports the project as its own tests do."""
    global _channel, _project_root, _harness_script
    _channel, _project_root = channel, project_root
    _harness_script = os.path.abspath(harness_script) if harness_script else None
    if project_folder:
        sys.path.insert(0, project_folder)
    if project_root:
        sys.path.insert(0, project_root)
    _use_device()
    _start_group_on_demand()
    _modules_before_the_code_under_test.update(sys.modules)  # torch's own imports among them (sympy, ...)


def _use_device():
    """With --device cuda, tensors made without a device (the harness's inputs, and the user's) are made
    on the GPU. With --device cpu, code that initializes CUDA ends the harness with `inconclusive: needs a
    CUDA device` and where it did so: no verdict comes from a run that cannot take place on this device."""
    try:
        import torch
    except ImportError:
        return  # the harness reports a missing torch itself
    if DEVICE == "cuda":
        torch.set_default_device("cuda")
        return

    def refuse_cuda(*args, **kwargs):
        report(
            "inconclusive", f"needs a CUDA device ({_caller_outside_torch()} initializes CUDA; confirm ran on the CPU)"
        )

    torch.cuda._lazy_init = refuse_cuda  # what every path to CUDA (.cuda(), device="cuda", torch.cuda.*) calls


def harness_group():
    """torch.distributed's default group, started if none is: gloo, of WORLD_SIZE ranks. At world size 1 this
    process is the only rank, with an in-memory store (no rendezvous): its collectives really run (in-place
    writes, the autograd of the collective ops), as identities, so the in-place, arity and view bugs around
    them show, not what a collective changes across ranks. At world size 2 (the runner's rerun of a finding
    that did not reproduce at 1) this process forks its twin at this point, which goes on as rank 1 with
    the same state and the same inputs, so that both call the same collectives and each reduction changes
    the values; only rank 0 reports. Gloo binds 127.0.0.1: the namespace sandbox's loopback is up for it."""
    global group_started, is_twin
    from datetime import timedelta

    import torch.distributed as dist

    if not dist.is_initialized():
        timeout = timedelta(seconds=GROUP_TIMEOUT_SECONDS)
        if WORLD_SIZE == 1:
            dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
        else:
            folder = os.environ.get("TMPDIR") or os.getcwd()
            store_path = os.path.join(folder, f"autograd-lint-group-{os.getpid()}")
            rank = 1 if os.fork() == 0 else 0
            if rank == 1:
                _become_twin()
            store = dist.FileStore(store_path, WORLD_SIZE)
            dist.init_process_group("gloo", store=store, rank=rank, world_size=WORLD_SIZE, timeout=timeout)
        group_started = True
    return dist.group.WORLD


def _become_twin():
    """In the forked rank 1: no output, and no descriptor of rank 0's (the result pipe among them), so that
    the runner hears from rank 0 alone and knows its end when rank 0's pipe closes."""
    global is_twin
    is_twin = True
    quiet = os.open(os.devnull, os.O_RDWR)
    for stream in (0, 1, 2):
        os.dup2(quiet, stream)
    os.closerange(3, _highest_descriptor() + 1)


def _highest_descriptor():
    try:
        return max(int(name) for name in os.listdir("/proc/self/fd"))
    except (OSError, ValueError):
        return 1023


class ParallelState:
    """Stands in for a model-parallel state object, the convention Megatron's `mpu`/parallel_state set and
    DeepSpeed and others follow: every `get_..._group()` is the harness's group, and every
    `get_..._world_size()` and `get_..._rank()` its size and this process's rank, so that code takes the path
    it takes on one device (world size 1) or on two."""

    def __getattr__(self, name):
        if not PARALLEL_STATE_QUERY.fullmatch(name):
            raise AttributeError(name)
        if name.endswith(("_group", "_groups")):
            return lambda *args, **kwargs: harness_group()
        if "world_size" in name:
            return lambda *args, **kwargs: harness_group().size()
        if "rank" in name:
            return lambda *args, **kwargs: harness_group().rank()
        raise AttributeError(name)

    def __repr__(self):
        return "<parallel state>"


def _start_group_on_demand():
    """Where code under test asks torch for the default process group and none was started (torch would
    raise `Default process group has not been initialized, please make sure to call init_process_group.`),
    the one-process group is started and the call goes on: in forward, backward or the input search alike,
    with no rerun. A process that never asks never starts one."""
    try:
        import torch.distributed as dist
        from torch.distributed import distributed_c10d
    except ImportError:
        return
    lookup = getattr(distributed_c10d, "_get_default_group", None)
    if not dist.is_available() or lookup is None:
        return

    def default_group():
        if not dist.is_initialized():
            harness_group()
        return lookup()

    distributed_c10d._get_default_group = default_group  # what every group=None collective and query calls
    _collectives_count_their_writes(dist, distributed_c10d)


# torch.distributed's collectives that write their first argument (a tensor, or a list of tensors) in place.
WRITING_COLLECTIVES = (
    "all_reduce",
    "broadcast",
    "reduce",
    "all_gather",
    "all_gather_into_tensor",
    "_all_gather_base",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "_reduce_scatter_base",
    "all_to_all",
    "all_to_all_single",
    "scatter",
    "recv",
    "irecv",
)


def _collectives_count_their_writes(*modules):
    """Each collective advances the version counter of the tensors it writes, as torch's in-place operators
    do (their schemas mark them written; gloo's eager path leaves the counter alone): in the one-process group
    an all_reduce keeps the values, and only the counter shows that forward wrote its input, or a tensor
    saved for backward."""
    import functools
    import inspect

    import torch

    for name in WRITING_COLLECTIVES:
        collective = getattr(modules[0], name, None)
        if collective is None:
            continue
        written_name = next(iter(inspect.signature(collective).parameters))

        def counted(*args, _collective=collective, _written_name=written_name, **kwargs):
            result = _collective(*args, **kwargs)
            for tensor in tensors_in(args[0] if args else kwargs.get(_written_name)):
                torch.autograd.graph.increment_version(tensor)
            return result

        functools.update_wrapper(counted, collective)
        for module in modules:
            if getattr(module, name, None) is collective:
                setattr(module, name, counted)


def _end_group():
    """Destroy the one-process group this process started (the verdict is known, the process ends)."""
    try:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001, S110 - code under test that left the group unusable: the process ends anyway
        pass


# A device abstraction's GPU-only member (DeepSpeed's CPU accelerator has `Stream = None`), called or read on
# the failing line of the code under test.
_GPU_API = re.compile(r"\b(?:cuda\w*|Stream|Event|current_stream|default_stream|synchronize|get_accelerator)\b")
_NONE_USED = re.compile(r"'NoneType' object (?:is not callable|has no attribute)")


def gpu_api_missing(exc):
    """For an exception that says a GPU API is None on this CPU-only run, the error with the failing line of
    the code under test (its text marked GPU_API_MISSING, which `report` turns into `needs a CUDA device`);
    None otherwise. No input can help such a forward."""
    import linecache
    import traceback

    if DEVICE != "cpu" or not _NONE_USED.search(str(exc)):
        return None
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not _is_harness_code(frame.filename) and os.path.join("site-packages", "torch", "") not in frame.filename
    ]
    if not frames:
        return None
    frame = frames[-1]
    line = (frame.line or linecache.getline(frame.filename, frame.lineno or 0)).strip()
    if not _GPU_API.search(line):
        return None
    where = frame.filename[len(_COPY_PREFIX) : -1] if frame.filename.startswith(_COPY_PREFIX) else frame.filename
    return f"{type(exc).__name__}: {exc} at {where}:{frame.lineno} `{line}`: {GPU_API_MISSING}"


def _caller_outside_torch():
    """`file:line` of the innermost frame of the code under test (neither torch, nor the harness, nor this
    package): the user's copied module by its path."""
    import traceback

    torch_folder = os.path.join("site-packages", "torch", "")
    for frame in reversed(traceback.extract_stack()[:-2]):
        filename = frame.filename
        if filename.startswith(_COPY_PREFIX):
            return f"{filename[len(_COPY_PREFIX) : -1]}:{frame.lineno}"
        if not filename.startswith("<") and torch_folder not in filename and not _is_harness_code(filename):
            return f"{filename}:{frame.lineno}"
    return "the code under test"


def report(verdict, evidence, with_origin=True):
    """The verdict, on the result channel `start` was given; the process ends at once, whatever called this.
    The evidence ends with where the inputs came from, unless `with_origin` is false (the audit's JSON, a
    missing dependency) or the code needs a GPU: no input changes that.
    Run by hand (`PYTHONPATH` naming a folder that holds a copy of this package as autograd_lint_runtime,
    see runner.install_runtime), a harness prints its verdict instead."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a stream the code under test closed or replaced
            pass
    if verdict == "inconclusive" and DEVICE == "cpu" and any(error in str(evidence) for error in NEEDS_CUDA_ERRORS):
        evidence = f"needs a CUDA device ({evidence})"
    elif verdict == "inconclusive" and NEEDS_PROCESS_GROUP.search(str(evidence)):
        evidence = f"needs a torch.distributed process group ({evidence})"
    if is_twin:
        os._exit(0)  # rank 0 reports
    if group_started:
        _end_group()
        if verdict == "not-reproduced":  # across ranks, the collectives it ran could have changed values
            verdict = "inconclusive"
            evidence = (
                f"{NOT_REPRODUCED_IN_ONE_PROCESS}{evidence}"
                if WORLD_SIZE == 1
                else f"not reproduced in a two-process group either (world size 2, the same inputs on both ranks): {evidence}"
            )
    if with_origin and inputs_origin and not str(evidence).startswith("needs a CUDA device"):
        evidence = f"{evidence} (inputs: {inputs_origin})"
    if _channel is None:
        print("verdict:", verdict, "-", evidence, flush=True)
        os._exit(0)
    try:
        _channel(verdict, evidence)
    except OSError as exc:  # the code under test closed the pipe: no verdict, and stderr says why
        os.write(2, f"autograd-lint: the result pipe is gone: {exc}\n".encode())
        os._exit(71)
    os._exit(0)


_COPY_PREFIX = "<autograd-lint copy of "


def run_definitions(source, path, namespace):
    """Run the user's copied top-level definitions in `namespace`. A module missing from this
    interpreter (other than torch, which the runner reports) is inconclusive with its name and the
    file that imports it, apart from a forward that fails on the synthesized inputs."""
    import linecache

    filename = _COPY_PREFIX + path + ">"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # for inspect.getsource
    try:
        exec(compile(source, filename, "exec", dont_inherit=True), namespace)
    except ImportError as exc:
        if missing_module(exc) is None:
            raise
        report("inconclusive", missing_dependency(exc))
    _fill_unset_distributed_slots(namespace)


def _fill_unset_distributed_slots(namespace):
    """Module globals that a library leaves None until its distributed initializer runs, and that its
    functions call collectives or parallel-state queries on, get stand-ins working on the harness's group:
    DeepSpeed's `deepspeed.comm` keeps its backend in `cdb` (set by `deepspeed.init_distributed()`), its
    compression layers their model-parallel state in `g_mpu`. Read from the functions' bytecode (a load of
    the global, then of the attribute), in the copied module and the modules it imported, never torch's or
    the standard library's. Only where no initializer ran: a global that holds a value is left alone."""
    import dis
    import sysconfig

    try:
        import torch.distributed as dist
    except ImportError:
        return
    if not dist.is_available():
        return
    skipped = tuple(
        os.path.join(os.path.abspath(folder), "")
        for folder in {
            sysconfig.get_paths()["stdlib"],
            os.path.dirname(os.path.dirname(dist.__file__)),
            _RUNTIME_FOLDER,
        }
    )

    def scanned(name, module):
        file = getattr(module, "__file__", None)  # None for built-in modules and namespace packages
        if name in _modules_before_the_code_under_test or not isinstance(file, str):
            return False
        return not os.path.abspath(file).startswith(skipped)

    namespaces = [namespace] + [vars(module) for name, module in list(sys.modules.items()) if scanned(name, module)]
    for globals_ in namespaces:
        unset = {name for name, value in globals_.items() if value is None and not name.startswith("__")}
        if not unset:
            continue
        read: dict[str, set[str]] = {}  # slot -> the attributes functions of this module read from it
        for value in list(globals_.values()):
            code = getattr(value, "__code__", None)
            if code is None or getattr(value, "__globals__", None) is not globals_:
                continue
            for slot, attribute in _attributes_of_globals(code, dis):
                if slot in unset:
                    read.setdefault(slot, set()).add(attribute)
        for slot, attributes in read.items():
            # A backend is called by torch's own names (`all_reduce`, `get_world_size`); a model-parallel state
            # object answers named groups (`get_tensor_model_parallel_world_size`). A library's parallel state
            # may be None by design (DeepSpeed's `groups.mpu`: None means one process), so only the module
            # under test's gets a stand-in.
            if sum(_collective(attribute, dist) is not None for attribute in attributes) >= 2:
                globals_[slot] = DistributedBackend()
            elif globals_ is namespace and any(PARALLEL_STATE_QUERY.fullmatch(a) for a in attributes):
                globals_[slot] = ParallelState()


def _attributes_of_globals(code, dis):
    """(global, attribute) for each `global.attribute` in `code` and the functions nested in it."""
    previous = None
    for instruction in dis.get_instructions(code):
        if previous is not None and instruction.opname in ("LOAD_ATTR", "LOAD_METHOD"):
            yield previous, instruction.argval
        previous = instruction.argval if instruction.opname == "LOAD_GLOBAL" else None
    for constant in code.co_consts:
        if hasattr(constant, "co_code"):
            yield from _attributes_of_globals(constant, dis)


# What a model-parallel state object answers (ParallelState).
PARALLEL_STATE_QUERY = re.compile(r"get_\w*(?:_group|_groups|world_size|rank)")


def _collective(name, dist):
    """torch.distributed's function `name` stands for: itself, or the one it ends with (DeepSpeed's
    `inference_all_reduce` is an all_reduce); None if none."""

    def is_function(api):  # not a class (`dist.group`, `dist.ReduceOp`)
        value = getattr(dist, api, None)
        return not api.startswith("_") and callable(value) and not isinstance(value, type)

    if is_function(name):
        return name
    ends = [api for api in dir(dist) if name.endswith("_" + api) and is_function(api)]
    return max(ends, key=len) if ends else None


class DistributedBackend:
    """Stands in for a library's communication backend object left unset (`_fill_unset_distributed_slots`):
    each method is torch.distributed's function of that name, or of the name it ends with, on the harness's
    group (started on demand), with a library's own reduce-op enum (`ReduceOp.SUM`) read as torch's."""

    def __getattr__(self, name):
        import enum

        import torch.distributed as dist

        target = _collective(name, dist)
        if target is None:
            raise AttributeError(name)
        function = getattr(dist, target)

        def as_torch(value):
            if isinstance(value, enum.Enum) and hasattr(dist.ReduceOp, value.name):
                return getattr(dist.ReduceOp, value.name)
            return value

        def call(*args, **kwargs):
            if target not in ("is_initialized", "is_available"):
                harness_group()
            return function(*map(as_torch, args), **{key: as_torch(value) for key, value in kwargs.items()})

        return call

    def __repr__(self):
        return "<distributed backend>"


def missing_module(exc):
    """The module an ImportError says this interpreter lacks, other than torch (which the runner reports):
    `x` for `No module named 'x'`, and `pkg._C` for `cannot import name '_C' from 'pkg'` where the package
    has no such submodule (a compiled extension that was not built); None for another import error."""
    import importlib.util

    if isinstance(exc, ModuleNotFoundError):
        name = exc.name or ""
        return name if name and name.split(".")[0] != "torch" else None
    attribute = re.match(r"cannot import name '(\w+)' from '([\w.]+)'", str(exc))
    if attribute is None:
        return None
    name, package = attribute.group(1), sys.modules.get(attribute.group(2))
    if package is None or not hasattr(package, "__path__") or package.__name__.split(".")[0] == "torch":
        return None
    submodule = f"{package.__name__}.{name}"
    try:
        found = importlib.util.find_spec(submodule)
    except (ImportError, ValueError):
        found = None
    return submodule if found is None else None


def missing_dependency(exc):
    """`missing dependency: No module named 'x' (imported by pkg/ops.py)`, naming the last file of the
    project or of a library in the traceback (the user's module for its copied code); the harness script,
    this package and importlib (`import_module`) are not the importer."""
    importer, root = None, _project_root
    frame = exc.__traceback__
    while frame is not None:
        filename = frame.tb_frame.f_code.co_filename
        if filename.startswith(_COPY_PREFIX):
            importer = filename[len(_COPY_PREFIX) : -1]
        elif not filename.startswith("<") and not _is_harness_code(filename) and not _is_importlib(filename):
            inside = root and os.path.abspath(filename).startswith(os.path.join(root, ""))
            importer = os.path.relpath(filename, root) if inside else filename
        frame = frame.tb_next
    missing = missing_module(exc)
    text = str(exc) if isinstance(exc, ModuleNotFoundError) or missing is None else f"No module named '{missing}'"
    return f"missing dependency: {text}" + (f" (imported by {importer})" if importer else "")


def _is_importlib(filename):
    import importlib

    return os.path.dirname(os.path.abspath(filename)) == os.path.dirname(os.path.abspath(importlib.__file__))


def _is_harness_code(filename):
    path = os.path.abspath(filename)
    return path == _harness_script or os.path.dirname(path) == _RUNTIME_FOLDER


def show_values(tensor, limit=6):
    values = tensor.detach().flatten().tolist()[:limit]
    text = ", ".join("-0.0" if (v == 0 and math.copysign(1.0, v) < 0) else f"{v:.4g}" for v in values)
    return "[" + text + (", ..." if tensor.numel() > limit else "") + "]"


def leaf_tensor(shape, seed=0):
    import torch

    # Both signs, away from zero, so that piecewise backwards take every branch.
    # Drawn on the CPU, whatever the device, so that every device gets the same values.
    generator = torch.Generator().manual_seed(seed)
    magnitude = torch.rand(shape, generator=generator, dtype=torch.float64, device="cpu") + 0.25
    negative = torch.rand(shape, generator=generator, device="cpu") < 0.5
    return torch.where(negative, -magnitude, magnitude).to(DEVICE).requires_grad_(True)


def tensors_in(value):
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in tensors_in(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in tensors_in(item)]
    return []


def run_backward(output):
    """Backward from every float output that requires grad, with a fixed upstream gradient of both
    signs and several magnitudes (so clamps and branches in backward are exercised); False if no
    output requires grad."""
    import torch

    # Each output's upstream pattern depends on its position among all outputs, so that a run where
    # an output starts requiring grad does not shift the others' patterns.
    indexed = [(i, t) for i, t in enumerate(tensors_in(output)) if t.requires_grad and t.is_floating_point()]
    if not indexed:
        return False

    def pattern(o, index):  # -2..2 in steps, never 0, both signs nearby, different per output
        k = torch.arange(o.numel(), dtype=torch.float64) + 3 * index
        return (((k * 7) % 10 - 4.5) / 2.25).reshape(o.shape).to(o.dtype)

    sum((o * pattern(o, i)).sum() for i, o in indexed).backward()
    return True


INPUT_SHAPES = [(3, 3), (3,), (2, 3, 3), (2, 3, 8, 8), (4,), (1,)]


def run_forward(apply, builders, shapes=None, every_shape=False):
    """Every (label, args, output) for which forward runs: each call variant with the first input
    shape it accepts (with `every_shape`, each shape it accepts). Inconclusive if forward fits no
    variant at all."""
    runs, error, needs_cuda = [], None, None
    for label, build in builders:
        for shape in shapes or INPUT_SHAPES:
            try:
                args = build(shape)
                output = apply(*args)
            except ImportError as exc:
                if missing_module(exc) is not None:  # no input can help: say what to install
                    report("inconclusive", missing_dependency(exc), with_origin=False)
                error = f"{type(exc).__name__}: {exc}"
                continue
            except Exception as exc:  # noqa: BLE001 - the user's forward rejecting this input
                error = gpu_api_missing(exc) or f"{type(exc).__name__}: {exc}"
                if needs_cuda is None and any(text in error for text in NEEDS_CUDA_ERRORS):
                    needs_cuda = error  # the input that got furthest: what it lacks is a GPU, not another input
                continue
            runs.append((label, build, shape, output))
            if not every_shape:
                break
    if not runs:
        report("inconclusive", f"forward failed on every synthesized input; last error: {needs_cuda or error}")
    return runs

"""The inputs a Function's forward runs on, shared by every confirm recipe and the audit.

*Declared*: what the code says about each positional argument, written by confirm/harness.py as one
dict per argument and per call shape: `value` (the literal written at an `.apply` call site, or bound to
the name written there, or forward's default), `kind` (from a type hint: tensor, int, float, bool),
`dtype` and `dims` (from a jaxtyping annotation, `Float[Tensor, "b n d"]`), `hint` (index or mask, from
the name or an integer/bool hint). An argument forward names or annotates as a process group gets the
harness's process group (probes.harness_group) where nothing else is written for it.

*Searched*: when forward rejects every declared input, a bounded, seeded search over dtype (float, long,
bool), rank (1..4) and sizes, with relations between the arguments (one batch size, index values below
the smallest size of the tensors they could index, masks shaped like the first tensor), each step
guided by torch's error for the last one. It runs in a forked child, so that the forward calls it makes
leave nothing behind (class attributes, closure cells, the RNG) for the recipe that runs next.
"""

import ast
import json
import os
import random
import re
import select
import signal
import time

from . import probes

MAX_TRIES = 30
SEARCH_SECONDS = 4.0
# Sizes by axis position: distinct, so that a transpose or a wrong axis shows; all equal once sizes must align.
SIZES = (2, 3, 4, 5)
ALIGNED_SIZE = 4
MAX_RANK = 4
_PYTHON_KINDS = ("int", "float", "bool", "literal", "none")


# ---- declared -------------------------------------------------------------------------------------------------


def declared_builders(class_name, calls):
    """(label, build(shape) -> args) per call shape in `calls` (lists of argument dicts). Arguments after the
    first that nothing declares may be tensors or Python numbers (a world size, a scale): each call shape is
    tried with tensors there, then ints, then floats."""
    builders = []
    for call in calls:
        open_positions = [i for i, arg in enumerate(call) if i > 0 and _is_unknown(arg)]
        for variant in ("tensor", "int", "float"):
            if variant != "tensor" and not open_positions:
                break
            chosen = [dict(arg, kind=variant) if i in open_positions else arg for i, arg in enumerate(call)]
            label = f"{class_name}.apply({', '.join(_shown(arg) for arg in chosen)})"
            builders.append((label, _declared_build(chosen)))
    return builders


def _is_unknown(arg):
    return arg.get("value") is None and arg.get("kind") is None and not arg.get("dims") and not arg.get("dtype")


def _shown(arg):
    if arg.get("value") is not None:
        return arg["value"]
    kind = arg.get("kind")
    if kind == "process_group":
        return "<process group>"
    if kind == "parallel_state":
        return "<parallel state>"
    if kind in ("int", "float", "bool"):
        return repr(_PYTHON_DEFAULTS[kind])
    dtype = arg.get("dtype")
    return "<index>" if dtype == "long" else "<mask>" if dtype == "bool" else "<tensor>"


_PYTHON_DEFAULTS = {"int": 1, "float": 0.5, "bool": True}


def _declared_build(call):
    sizes = _symbol_sizes(call)

    def build(shape):
        shapes = [_declared_shape(arg, shape, sizes) for arg in call]
        float_sizes = [s for arg, s in zip(call, shapes) if s is not None and arg.get("dtype") in (None, "float")]
        bound = min((size for s in float_sizes for size in s), default=shape[0] if shape else 2)
        args = []
        for position, arg in enumerate(call):
            if arg.get("value") is not None:
                args.append(ast.literal_eval(arg["value"]))
            elif arg.get("kind") == "process_group":
                args.append(probes.harness_group())
            elif arg.get("kind") == "parallel_state":
                args.append(probes.ParallelState())
            elif arg.get("kind") in _PYTHON_DEFAULTS:
                args.append(_PYTHON_DEFAULTS[arg["kind"]])
            elif arg.get("dtype") == "long":
                args.append(index_tensor(shapes[position], bound, position))
            elif arg.get("dtype") == "bool":
                args.append(mask_tensor(shapes[position], position))
            else:
                args.append(probes.leaf_tensor(shapes[position], position))
        return args

    return build


def _symbol_sizes(call):
    """A size for each jaxtyping dimension name, shared by every argument that names it (`b` is one batch size)."""
    sizes: dict = {}
    for arg in call:
        for dim in arg.get("dims") or ():
            if isinstance(dim, str) and dim not in sizes:
                sizes[dim] = SIZES[len(sizes) % len(SIZES)] + len(sizes) // len(SIZES)
    return sizes


def _declared_shape(arg, shape, sizes):
    dims = arg.get("dims")
    if dims is None:
        return tuple(shape)
    return tuple(sizes[d] if isinstance(d, str) else d for d in dims)


# ---- tensors --------------------------------------------------------------------------------------------------


def index_tensor(shape, bound, seed=0):
    """A long tensor of `shape` whose values are below `bound` (valid for any dimension at least that large)."""
    import torch

    count = 1
    for size in shape:
        count *= size
    values = (torch.arange(count, device="cpu") * 7 + seed) % max(int(bound), 1)
    return values.reshape(shape).to(probes.DEVICE)


def mask_tensor(shape, seed=0):
    """A bool tensor of `shape` with both values (the first element True, the second False where there is one)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(shape, generator=generator, device="cpu") < 0.5
    flat = mask.view(-1)
    if flat.numel() > 0:
        flat[0] = True
    if flat.numel() > 1:
        flat[1] = False
    return mask.to(probes.DEVICE)


# ---- what the recipe gets -------------------------------------------------------------------------------------


def builders_for(class_name, apply, calls, origin, drivers=(), driver_code="", namespace=None, with_backward=False):
    """The (label, build(shape) -> args) the recipe gets: the declared ones when forward accepts one of them,
    else the arguments the module's own code passes (`drivers`: functions of `namespace` that call the
    Function, run with `.apply` intercepted), else the search's find, ahead of the declared ones. Sets the
    origin the verdict's evidence names (probes.inputs_origin): `call site` or `declared`, `harvested from
    f()`, or `searched (N tries)`. With `with_backward` (the audit), inputs count as accepted only where
    backward runs too, or (a tuple of texts) raises an error with one of those texts."""
    calls = _with_process_groups(apply, calls)
    builders = declared_builders(class_name, calls)
    probes.inputs_origin = origin
    if not calls or not _can_fork():
        return builders
    answer = _in_child(lambda: _probe(apply, builders, calls[0], drivers, driver_code, namespace or {}, with_backward))
    if not answer or answer.get("found") == "declared":
        return builders
    if answer.get("found") == "harvested":
        driver, tensors = answer["driver"], answer["tensors"]
        probes.inputs_origin = f"harvested from {driver}({', '.join(['<tensor>'] * tensors)})"
        if answer["arguments"] is not None:
            recorded = _load(answer["arguments"])
            label = f"{class_name}.apply({', '.join(shown(_fresh(value)) for value in recorded)})"
            return [(label, lambda shape: [_fresh(value) for value in recorded]), *builders]
        # Arguments that are not tensors or numbers (a state object the wrapper builds) do not cross from the
        # child: the wrapper runs again here, up to `.apply`, for each build.
        run = _replayer(apply, namespace or {}, driver_code, driver, tensors)
        label = f"{class_name}.apply({', '.join(shown(value) for value in run())})"
        return [(label, lambda shape: run()), *builders]
    tries = answer.get("tries", 0)
    if answer.get("found") != "searched":
        probes.inputs_origin = f"{origin}, then searched ({tries} tries): forward accepted none"
        return builders
    state = answer["state"]
    probes.inputs_origin = f"searched ({tries} {'try' if tries == 1 else 'tries'})"
    label = f"{class_name}.apply({', '.join(shown(value) for value in build_state(state))})"
    return [(label, lambda shape: build_state(state)), *builders]


def _with_process_groups(apply, calls):
    """`calls` with forward's process-group arguments (named `group`, `process_group`, `pg`, `..._group`, or
    annotated ProcessGroup) given the harness's group, in place of None or nothing, and its model-parallel
    state arguments (`mpu`, `parallel_state`, `..._mpu`) a stand-in answering from that group, in place of
    anything but a literal."""
    import inspect

    try:
        function_class = apply.__self__
        parameters = list(inspect.signature(function_class.forward).parameters.values())
    except (AttributeError, TypeError, ValueError):
        return calls
    if "setup_context" not in vars(function_class):
        parameters = parameters[1:]  # ctx
    groups = {
        i
        for i, parameter in enumerate(parameters)
        if re.fullmatch(r"pg|group|process_group|\w+_group", parameter.name)
        or "ProcessGroup" in str(parameter.annotation)
    }
    states = {i for i, parameter in enumerate(parameters) if re.fullmatch(r"\w*mpu|\w*parallel_state", parameter.name)}

    def given(i, arg):
        if i in groups and arg.get("value") in (None, "None"):
            return {"kind": "process_group"}
        if i in states and arg.get("value") in (None, "None"):
            return {"kind": "parallel_state"}
        return arg

    return [[given(i, arg) for i, arg in enumerate(call)] for call in calls]


def _can_fork():
    if not hasattr(os, "fork"):
        return False
    if probes.group_started:  # gloo's threads do not survive a fork: the child's collectives would hang
        return False
    if probes.DEVICE != "cpu":
        import torch

        # A child forked after CUDA started cannot use it.
        return not torch.cuda.is_initialized()
    return True


def _in_child(work):
    """`work()`'s JSON answer, computed in a forked child (quiet, single-threaded, its verdicts discarded);
    None if the child ends without one or outlives the search's time."""
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return None
    if pid == 0:
        try:
            os.close(read_end)
            quiet = os.open(os.devnull, os.O_WRONLY)
            os.dup2(quiet, 1)
            os.dup2(quiet, 2)
            probes._channel = lambda verdict, evidence: None  # code under test ending the run: no answer
            import torch

            torch.set_num_threads(1)
            answer = json.dumps(work())
            os.write(write_end, answer.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    deadline = time.monotonic() + SEARCH_SECONDS + 2  # the search stops itself by then; a hung forward does not
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_end], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    try:
        return json.loads(b"".join(chunks).decode()) if chunks else None
    except ValueError:
        return None


def _probe(apply, builders, call, drivers, driver_code, namespace, with_backward):
    """In the child: "declared" if forward accepts a declared input, else what a driver passes, else the
    search's outcome."""
    started = time.monotonic()
    for _label, build in builders:
        for shape in probes.INPUT_SHAPES:
            if time.monotonic() - started > SEARCH_SECONDS:
                return {"found": None, "tries": 0}
            try:
                _run(apply, build(shape), with_backward)
                return {"found": "declared"}
            except ImportError as exc:
                if probes.missing_module(exc) is not None:  # no input can help: the recipe names what to install
                    return {"found": "declared"}
                continue
            except Exception:  # noqa: BLE001, S112 - the user's forward rejecting a declared input
                continue
    harvested = harvest(apply, drivers, driver_code, namespace, started + SEARCH_SECONDS, with_backward)
    if harvested is not None:
        return harvested
    return search(apply, call, started + SEARCH_SECONDS, with_backward)


def _run(apply, args, with_backward):
    """Forward on `args` (and backward from its outputs, `with_backward`); raises what they raise, but for a
    backward error whose message has one of the texts `with_backward` lists (what the recipe looks for)."""
    output = apply(*args)
    if not with_backward:
        return
    try:
        probes.run_backward(output)
    except Exception as exc:
        if with_backward is True or not any(text in str(exc) for text in with_backward):
            raise


# ---- searched -------------------------------------------------------------------------------------------------


# Arguments the search never retypes: what the parameter's name says they are.
_FIXED_KINDS = ("process_group", "parallel_state")


def initial_state(call):
    """The search's first candidate: the declared arguments, with name hints (an index, a mask) taken."""
    args = []
    for arg in call:
        if arg.get("value") is not None:
            args.append({"kind": "literal", "value": arg["value"]})
        elif arg.get("kind") in ("int", "float", "bool", *_FIXED_KINDS):
            args.append({"kind": arg["kind"]})
        else:
            dtype = arg.get("dtype") or arg.get("hint") and {"index": "long", "mask": "bool"}[arg["hint"]]
            dims = arg.get("dims")
            kind = {"long": "index", "bool": "mask"}.get(dtype or "", "tensor")
            state = {"kind": kind, "rank": 1 if kind == "index" else 2}
            if dims is not None:
                state["rank"] = max(1, min(len(dims), MAX_RANK))
            args.append(state)
    return {"args": args, "aligned": False, "float32": False}


def search(apply, call, deadline, with_backward=False):
    """{"found": "searched", "state", "tries"} for the first candidate forward accepts, else {"found": None,
    "tries", "error"}. Deterministic: the same candidates in the same order on every run."""
    chooser = random.Random(16)
    state = initial_state(call)
    seen = set()
    pending: list = []
    error = None
    tries = 0
    while tries < MAX_TRIES and time.monotonic() < deadline:
        key = json.dumps(state, sort_keys=True)
        if key not in seen:
            seen.add(key)
            tries += 1
            args = None
            try:
                args = build_state(state)
                _run(apply, args, with_backward)
                return {"found": "searched", "state": state, "tries": tries}
            except Exception as exc:  # noqa: BLE001 - the user's forward rejecting this candidate
                error = f"{type(exc).__name__}: {exc}"
                if probes.gpu_api_missing(exc):
                    break  # no input gives a CPU-only run the GPU API forward calls
                pending = [*guided_moves(state, exc, args), *pending]
        state = None
        while pending and state is None:
            candidate = pending.pop(0)
            if json.dumps(candidate, sort_keys=True) not in seen:
                state = candidate
        # Random candidates once the error's answers are spent; few arguments have few candidates.
        for _ in range(MAX_TRIES):
            if state is not None:
                break
            candidate = _random_state(call, chooser)
            if json.dumps(candidate, sort_keys=True) not in seen:
                state = candidate
        if state is None:
            break
    return {"found": None, "tries": tries, "error": error}


def _random_state(call, chooser):
    state = initial_state(call)
    for arg in state["args"]:
        if arg["kind"] in ("literal", *_FIXED_KINDS):
            continue
        arg.clear()
        arg["kind"] = chooser.choice(("tensor", "tensor", "tensor", "index", "mask", "int", "float"))
        if arg["kind"] in ("tensor", "index", "mask"):
            arg["rank"] = chooser.randint(1, MAX_RANK)
    if state["args"] and state["args"][0]["kind"] not in ("literal", *_FIXED_KINDS):
        state["args"][0] = {"kind": "tensor", "rank": chooser.randint(1, MAX_RANK)}
    state["aligned"] = chooser.random() < 0.5
    return state


def _shape(state, arg):
    if "shape" in arg:
        return tuple(arg["shape"])
    rank = arg.get("rank", 2)
    return (ALIGNED_SIZE,) * rank if state["aligned"] else SIZES[:rank]


def _main_shape(state):
    for arg in state["args"]:
        if arg["kind"] == "tensor":
            return _shape(state, arg)
    return SIZES[:2]


def build_state(state):
    """The arguments a search candidate stands for: float tensors (leaves), index tensors whose values are
    below the smallest size of the float tensors, masks shaped like the first float tensor (or like its
    `leading` dims), Python values."""
    import torch

    main = _main_shape(state)
    float_shapes = [_shape(state, arg) for arg in state["args"] if arg["kind"] == "tensor"]
    bound = min((size for shape in float_shapes for size in shape), default=2)
    if state.get("small_index"):  # index arithmetic (`idx + offset`) must stay in range too
        bound = min(bound, 2)
    args = []
    for position, arg in enumerate(state["args"]):
        kind = arg["kind"]
        if kind == "literal":
            args.append(ast.literal_eval(arg["value"]))
        elif kind == "none":
            args.append(None)
        elif kind == "process_group":
            args.append(probes.harness_group())
        elif kind == "parallel_state":
            args.append(probes.ParallelState())
        elif kind in _PYTHON_DEFAULTS:
            args.append(arg.get("number", _PYTHON_DEFAULTS[kind] if kind != "int" else 2))
        elif kind == "index":
            rank = arg.get("rank", 1)
            shape = tuple(arg["shape"]) if "shape" in arg else (main[:rank] if rank <= len(main) else main)
            args.append(index_tensor(shape, bound, position))
        elif kind == "mask":
            shape = tuple(arg["shape"]) if "shape" in arg else main[: arg.get("leading", len(main))]
            args.append(mask_tensor(shape, position))
        elif kind == "callable":
            args.append(doubling)
        elif kind == "list":
            args.append([])
        else:
            tensor = probes.leaf_tensor(_shape(state, arg), position)
            if state["float32"]:
                tensor = tensor.detach().to(torch.float32).requires_grad_(True)
            args.append(tensor)
    return args


def doubling(*args, **kwargs):
    """The function a search candidate passes where forward calls an argument (a layer to run, a loss):
    twice its first tensor argument, so that what forward computes from the result still depends on it."""
    import torch

    for value in args:
        if isinstance(value, torch.Tensor):
            return 2 * value
    return args[0] if args else None


# ---- what torch's error says to change ---------------------------------------------------------------------


def _changed(state, positions, **changes):
    """A copy of `state` with `changes` made to the arguments at `positions` (`kind` clears their shape)."""
    new = json.loads(json.dumps(state))
    for position in positions:
        arg = new["args"][position]
        if "kind" in changes and changes["kind"] != arg["kind"]:
            arg.clear()
        arg.update(changes)
    return new


def culprits(exc, args, count):
    """Positions of the arguments the failing line of the code under test reads (by identity with its local
    variables, or by name), innermost frame outside torch and this runtime first; every position if none."""
    return sorted(read_in_order(exc, args)) or list(range(count))


def read_in_order(exc, args):
    """The positions of the arguments the failing line of the code under test reads (innermost frame outside
    torch and this runtime), in the order the line names them; [] if it names none."""
    import linecache

    if not args:
        return []
    torch_folder = os.path.join("site-packages", "torch", "")
    frame = exc.__traceback__
    found: list = []
    while frame is not None:
        code = frame.tb_frame.f_code
        filename = code.co_filename
        if torch_folder not in filename and os.path.dirname(os.path.abspath(filename)) != probes._RUNTIME_FOLDER:
            line = linecache.getline(filename, frame.tb_lineno)
            local = frame.tb_frame.f_locals
            hits: list = []
            for name in re.findall(r"[A-Za-z_]\w*", line):
                for p, a in enumerate(args):
                    if name in local and local[name] is a and p not in hits:
                        hits.append(p)
            if hits:
                found = hits
        frame = frame.tb_next
    return found


def guided_moves(state, exc, args):
    """Candidates that answer this error, most specific first (torch 2.x messages)."""
    text = str(exc)
    kinds = [arg["kind"] for arg in state["args"]]
    suspects = [p for p in culprits(exc, args, len(kinds)) if kinds[p] not in _FIXED_KINDS]
    # Never retype the first tensor into an index or a mask: it is the data.
    retypable = [p for p in suspects if p > 0 and kinds[p] in ("tensor", "index", "mask")]
    tensors = [p for p in suspects if kinds[p] == "tensor"] or [p for p, k in enumerate(kinds) if k == "tensor"]
    moves = []
    if re.search(r"boolean mask|to be a bool|must be bool|expected a boolean|condition .* bool", text, re.I):
        moves += [_changed(state, [p], kind="mask") for p in retypable if kinds[p] != "mask"]
    if re.search(
        r"scalar type Long|dtype int64|indices must be long|tensors used as indices|'indices' to have|"
        r"index tensor|Expected .*Long|must be an integer tensor|Int or Long|int32 or int64|int32/int64",
        text,
        re.I,
    ):
        moves += [_changed(state, [p], kind="index", rank=1) for p in retypable if kinds[p] != "index"]
    match = re.search(r"returned an invalid gradient at index (\d+) - got \[([\d, ]*)\] but expected shape", text)
    if match and int(match.group(1)) < len(kinds) and kinds[int(match.group(1))] in ("tensor", "index"):
        # Backward's gradient has the shape the input was meant to have (a LayerNorm's weight: the last dim).
        sizes = [int(n) for n in match.group(2).split(",") if n.strip()]
        if sizes and len(sizes) <= MAX_RANK:
            moves.append(_changed(state, [int(match.group(1))], kind="tensor", rank=len(sizes), shape=sizes))
    match = re.search(r"too many indices for tensor of dimension (\d+)", text)
    if match:
        low = [p for p in tensors if state["args"][p].get("rank", 2) == int(match.group(1))] or tensors
        moves += [_changed(state, [p], rank=min(int(match.group(1)) + 1, MAX_RANK)) for p in low]
    if "tuple index out of range" in text:  # `x.shape[k]` past a tensor's rank
        moves += [_changed(state, [p], rank=min(state["args"][p].get("rank", 2) + 1, MAX_RANK)) for p in tensors]
    match = re.search(
        r"number of subscripts in the equation \((\d+)\) does not match the number of dimensions \(\d+\) "
        r"for operand (\d+)",
        text,
    )
    if match:  # einsum's operand K: the K-th argument the line names, else each tensor it reads
        rank = min(int(match.group(1)), MAX_RANK)
        named = read_in_order(exc, args)
        operand = int(match.group(2))
        if operand < len(named) and kinds[named[operand]] == "tensor":
            moves.append(_changed(state, [named[operand]], rank=rank))
        moves += [_changed(state, [p], rank=rank) for p in tensors]
    match = re.search(r"output with shape \[([\d, ]*)\] doesn't match the broadcast shape \[([\d, ]*)\]", text)
    if match and args:  # an in-place op whose other operand has more dims than the tensor it writes
        written = [int(n) for n in match.group(1).split(",") if n.strip()]
        wanted = min(len(match.group(2).split(",")), MAX_RANK)
        shaped = [p for p in suspects if kinds[p] in ("tensor", "index") and hasattr(args[p], "shape")]
        targets = [p for p in shaped if list(args[p].shape) == written]
        others = [p for p in shaped if p not in targets and args[p].dim() > 1]
        moves += [_changed(state, [p], rank=args[p].dim() - 1) for p in others]
        moves += [_changed(state, [p], rank=wanted) for p in targets]
    if re.search(r"result type (?:Float|Double) can't be cast to the desired output type (?:Long|Int)", text):
        moves += [
            _changed(state, [p], kind="index", rank=state["args"][p].get("rank", 2))
            for p in retypable
            if kinds[p] == "tensor"
        ]
    if re.search(
        r"index out of range in self|is out of bounds for dimension|out of bounds for size", text
    ) and not state.get("small_index"):
        moves.append(dict(json.loads(json.dumps(state)), small_index=True))
    match = re.search(r"values to unpack \(expected (\d+)", text)
    if match:
        moves += [_changed(state, [p], rank=min(int(match.group(1)), MAX_RANK)) for p in tensors]
    match = re.search(r"Dimension out of range \(expected to be in range of \[-(\d+), \d+\], but got (-?\d+)\)", text)
    if match:
        wanted = min(max(int(match.group(2)) + 1, -int(match.group(2))), MAX_RANK)
        moves += [_changed(state, [p], rank=wanted) for p in tensors]
        moves += [_changed(state, tensors, rank=wanted)]
    match = re.search(r"(\d)D (?:\(batched\) )?input|(\d)-dimensional|(\d)D tensor|got (\d)D", text)
    if match and "expected" in text.lower():
        ranks = {int(n) for n in re.findall(r"(\d)(?:D|-dimensional)", text)}
        for rank in sorted({r for r in ranks if 1 <= r <= MAX_RANK}, reverse=True):
            moves += [_changed(state, [p], rank=rank) for p in tensors]
    match = re.search(
        r"number of sizes provided \((\d+)\) must be greater or equal to the number of dimensions in the tensor \((\d+)\)",
        text,
    )
    if match:  # an expand written for a lower rank
        fewer = int(match.group(2)) - int(match.group(1))
        moves += [
            _changed(state, [p], rank=max(1, state["args"][p].get("rank", 2) - fewer))
            for p in suspects
            if kinds[p] in ("tensor", "index")
        ]
    match = re.search(r"shape '\[([-\d, ]+)\]' is invalid for input of size", text)
    if match:
        sizes = [int(s) for s in match.group(1).split(",") if s.strip()]
        if sizes and all(0 < s <= 64 for s in sizes) and len(sizes) <= MAX_RANK:
            moves += [_changed(state, [p], shape=sizes) for p in tensors]
    if re.search(
        r"must match the size|cannot be multiplied|size mismatch|Sizes of tensors must match|inconsistent|"
        r"same (?:shape|size)|shape mismatch|is invalid for input of size|expected size|cannot be broadcast|"
        r"does not match|doesn't match|not broadcastable|does not broadcast",
        text,
        re.I,
    ):
        main_rank = len(_main_shape(state))
        masks = [p for p, k in enumerate(kinds) if k == "mask" and "leading" not in state["args"][p]]
        if masks and main_rank > 1:  # a padding mask over the leading dims, (B, T) of (B, T, C)
            moves.append(_changed(state, masks, leading=main_rank - 1))
        ranks = {state["args"][p].get("rank", 2) for p in tensors}
        aligned = dict(json.loads(json.dumps(state)), aligned=True)
        moves.append(aligned)
        if len(ranks) > 1:
            main = state["args"][tensors[0]].get("rank", 2)
            moves.append(_changed(aligned, [p for p, k in enumerate(kinds) if k == "tensor"], rank=main))
        for rank in range(1, MAX_RANK + 1):
            moves.append(_changed(aligned, [p for p, k in enumerate(kinds) if k == "tensor"], rank=rank))
    match = re.search(
        r"'(float|int|NoneType|bool)' object (?:has no attribute|is not subscriptable|is not iterable)|"
        r"must be Tensor, not (float|int|NoneType|bool)|type '(float|int|NoneType)' has no len|"
        r"expected Tensor as element \d+ in argument \d+, but got (float|int|NoneType)|"
        r"unsupported operand type.*'(NoneType)'",
        text,
    )
    if match:
        python_kind = next(g for g in match.groups() if g)
        kind = {"NoneType": "none", "float": "float", "int": "int", "bool": "bool"}[python_kind]
        literal_kind = {"none": type(None), "float": float, "int": int, "bool": bool}[kind]
        matching = [
            p
            for p, a in enumerate(state["args"])
            if a["kind"] == kind or (a["kind"] == "literal" and type(ast.literal_eval(a["value"])) is literal_kind)
        ]
        chosen = [p for p in suspects if p in matching] or matching
        rank = state["args"][tensors[0]].get("rank", 2) if tensors else 2
        moves += [_changed(state, [p], kind="tensor", rank=rank) for p in chosen]
        moves += [_changed(state, [p], kind="tensor", rank=1, shape=[1]) for p in chosen]
    if re.search(r"'\w+' object is not callable", text):  # forward calls it: a function, even in first place
        moves += [_changed(state, [p], kind="callable") for p in suspects if kinds[p] != "callable"]
    if re.search(
        r"unsupported operand type\(s\) for \+=: '\w+' and '(?:list|tuple)'|object has no attribute 'append'", text
    ):
        moves += [_changed(state, [p], kind="list") for p in suspects if p > 0 and kinds[p] != "list"]
    if re.search(
        r"cannot be interpreted as an integer|converted to an index|must be int, not Tensor|"
        r"Boolean value of Tensor with more than one|converted to Python scalars|cannot be converted to Scalar|"
        r"integer argument expected|must be tuple of ints|takes \d+ positional arguments? but \d+ were given",
        text,
    ):
        numbers = [p for p in suspects if p > 0 and kinds[p] in ("tensor", "index", "mask", "float")]
        moves += [_changed(state, [p], kind="int") for p in numbers]
    if re.search(r"to have non-zero size|of 0 elements|zero-size|must be non-empty|empty tensor", text, re.I):
        # Equal numbers make empty ranges (`x[:, start:end]`): distinct ascending ones, 1, 2, ...
        numbers = [p for p, k in enumerate(kinds) if k == "int"]
        ascending = json.loads(json.dumps(state))
        for order, p in enumerate(numbers):
            ascending["args"][p]["number"] = order + 1
        if numbers:
            moves.append(ascending)
    if re.search(
        r"scalar type (?:Float|Double) but found|same dtype|should be the same|Double and Float|"
        r"type \(double\) and bias type \(float\)|expected both vectors to have same dtype",
        text,
        re.I,
    ):
        moves.append(dict(json.loads(json.dumps(state)), float32=not state["float32"]))
    return moves


# ---- harvested ------------------------------------------------------------------------------------------------


class _Recorded(BaseException):  # a BaseException, so that the driver's own `except Exception` lets it through
    def __init__(self, args):
        super().__init__()
        self.arguments = args


def harvest(apply, drivers, driver_code, namespace, deadline, with_backward=False):
    """{"found": "harvested", "driver", "tensors", "arguments"} for the first driver (a test, a demo, a main
    the module defines, or a wrapper called with `tensors` tensors) that reaches `Cls.apply` with positional
    arguments forward then accepts; None if none does. The driver stops at that call: `.apply` is replaced by
    a recorder for the run. `arguments` is None where one of them is an object, which cannot be sent."""
    function_class = getattr(apply, "__self__", None)
    if function_class is None or not drivers:
        return None
    try:  # the drivers' definitions, beside the Function's (this child's namespace only)
        exec(compile(driver_code, probes._COPY_PREFIX + "drivers>", "exec", dont_inherit=True), namespace)
    except BaseException:  # noqa: BLE001 - a driver's import or definition failing: nothing to harvest
        return None

    for name, tensors in drivers:
        driver = namespace.get(name)
        if not callable(driver) or time.monotonic() > deadline:
            continue
        try:
            arguments = _recorded_call(function_class, driver, tensors)
        except Exception:  # noqa: BLE001, S112 - a driver that fails before reaching apply
            continue
        if arguments is None:
            continue
        try:  # taken before forward runs on them: what the driver passed
            snapshot = [_snapshot(value) for value in arguments]
        except TypeError:  # an object argument: the parent runs the driver again (_replayer)
            snapshot = None
        try:
            _run(apply, arguments if snapshot is None else [_fresh(value) for value in snapshot], with_backward)
        except Exception:  # noqa: BLE001, S112 - the recorded call fails outside its driver
            continue
        dumped = None if snapshot is None else _dump(snapshot)
        return {"found": "harvested", "driver": name, "tensors": tensors, "arguments": dumped}
    return None


def _recorded_call(function_class, driver, tensors):
    """The positional arguments `driver` (called with `tensors` float leaf tensors of one shape) passes to
    `function_class.apply`, which is replaced for the call; None if it returns without calling it."""

    def record(*args, **kwargs):
        if kwargs:
            raise TypeError("keyword arguments to apply are not recorded")
        raise _Recorded(list(args))

    own = vars(function_class).get("apply")
    function_class.apply = record
    try:
        driver(*[probes.leaf_tensor((ALIGNED_SIZE, ALIGNED_SIZE), seed) for seed in range(tensors)])
    except _Recorded as recorded:
        return recorded.arguments
    finally:
        if own is None:
            del function_class.apply  # the inherited classmethod again
        else:
            function_class.apply = own
    return None


def _replayer(apply, namespace, driver_code, name, tensors):
    """A function that runs the driver `name` in this process up to `.apply` and returns the arguments it
    passes (fresh objects on each call)."""
    exec(compile(driver_code, probes._COPY_PREFIX + "drivers>", "exec", dont_inherit=True), namespace)
    function_class = apply.__self__
    return lambda: _recorded_call(function_class, namespace[name], tensors)


def _snapshot(value):
    import torch

    if isinstance(value, torch.Tensor):
        return ("tensor", value.detach().clone(), value.requires_grad)
    if value is None or isinstance(value, (bool, int, float, str)):
        return ("value", value, False)
    raise TypeError(f"a {type(value).__name__} argument is not recorded")


def _fresh(recorded):
    kind, value, requires_grad = recorded
    if kind != "tensor":
        return value
    copy = value.clone().to(probes.DEVICE)
    return copy.requires_grad_(True) if requires_grad and copy.is_floating_point() else copy


def shown(value):
    """How a found argument reads in the evidence: `<tensor [2, 3]>`, `<index [2]>`, `<mask [2, 3]>` (with the
    dtype where it is not the harness's float64 or long), or the value."""
    import torch

    if callable(value) and not isinstance(value, torch.Tensor):
        return "<function>"
    if value is None or isinstance(value, (bool, int, float, str, list, tuple)):
        return repr(value)
    if not isinstance(value, torch.Tensor):
        return f"<{type(value).__name__}>"  # an object a driver built
    kind = "mask" if value.dtype == torch.bool else "tensor" if value.is_floating_point() else "index"
    usual = value.dtype in (torch.bool, torch.float64, torch.int64)
    return f"<{kind} {list(value.shape)}{'' if usual else ' ' + str(value.dtype).replace('torch.', '')}>"


def _dump(arguments):
    import base64
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(arguments, buffer)
    return base64.b64encode(buffer.getvalue()).decode()


def _load(text):
    import base64
    import io

    import torch

    return torch.load(io.BytesIO(base64.b64decode(text)), weights_only=True)

# Runtime helpers for confirm harnesses. This file is not imported by autograd-lint: its text is
# copied into every harness, which runs in a child process with only torch available. Every name
# starts with `_agl_` so that it cannot clash with the user's code pasted next to it.
import json as _agl_json
import math as _agl_math
import sys as _agl_sys


def _agl_report(verdict, evidence):
    _agl_sys.stdout.write("\nAGL_CONFIRM " + _agl_json.dumps({"verdict": verdict, "evidence": evidence}) + "\n")
    _agl_sys.stdout.flush()
    _agl_sys.exit(0)


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


def _agl_forward(apply, builders):
    """Every (label, args, output) for which forward runs: each call variant with the first input
    shape it accepts. Inconclusive if forward fits no variant at all."""
    runs, error = [], None
    for label, build in builders:
        for shape in _AGL_SHAPES:
            try:
                args = build(shape)
                output = apply(*args)
            except Exception as exc:  # noqa: BLE001 - the user's forward rejecting this input
                error = f"{type(exc).__name__}: {exc}"
                continue
            runs.append((label, build, shape, output))
            break
    if not runs:
        _agl_report("inconclusive", f"forward failed on every synthesized input; last error: {error}")
    return runs


def _agl_arity_recipe(apply, builders, patterns):
    """Run forward and backward for every call shape; torch's own message is the proof."""
    observed = []
    for label, _, _, output in _agl_forward(apply, builders):
        try:
            _agl_backward(output)
        except Exception as exc:  # noqa: BLE001
            message = f"{type(exc).__name__}: {exc}"
            if any(p in message for p in patterns):
                _agl_report("confirmed", f"{label} then backward raised {message}")
            observed.append(f"{label}: backward raised {message}")
            continue
        observed.append(f"{label}: backward ran without error")
    clean = [o for o in observed if o.endswith("without error")]
    if clean:
        _agl_report("not-reproduced", "; ".join(clean))
    _agl_report("inconclusive", "backward failed for another reason: " + "; ".join(observed))


def _agl_values_like(current, known=()):
    """Two distinct values of the same kind as the module's own, near it, so that whatever else
    the code assumes about it (its sign, its order against another bound) still holds. `known` are
    the literals the module itself compares it with or writes to it (for strings and enums)."""
    import torch

    choices = [v for v in dict.fromkeys([current, *known]) if isinstance(v, type(current))]
    if isinstance(current, str):
        return (choices[0], choices[1]) if len(choices) >= 2 else None

    if isinstance(current, bool):
        return True, False
    if isinstance(current, torch.Tensor):
        base = float(current.detach().flatten()[0]) if current.numel() else 0.0
        first, second = (0.5 * base, 1.5 * base) if base else (0.3, 0.7)
        return (torch.full_like(current, first, dtype=torch.float64), torch.full_like(current, second, dtype=torch.float64))
    if isinstance(current, (int, float)) and current:
        return 0.5 * current, 1.5 * current
    if current is None or isinstance(current, (int, float)):
        return 0.3, 0.7
    return None


def _agl_shared_state_recipe(apply, builders, get, set_, shown, known=()):
    """Two applications with different values in one graph, and a value changed before backward,
    each compared with an isolated run of the first value."""
    import torch

    try:
        current = get()
    except Exception as exc:  # noqa: BLE001
        current = None
    values = _agl_values_like(current, known)
    if values is None:
        _agl_report("inconclusive", f"{shown} holds a {type(current).__name__}, not a number the harness can vary")
    first, second = values
    set_(first)
    runs = _agl_forward(apply, builders)
    for label, build, shape, output in runs:
        try:
            _agl_backward(output)
            break
        except Exception as exc:  # noqa: BLE001 - try the next call variant
            error = f"{type(exc).__name__}: {exc}"
    else:
        _agl_report("inconclusive", f"backward failed on every synthesized input: {error}")

    def first_input_grad(setting_values, change_before_backward=None):
        outputs, leaves = [], []
        for index, value in enumerate(setting_values):
            set_(value)
            args = build(shape)
            leaves.append(args[0])
            outputs.append(apply(*args))
        if change_before_backward is not None:
            set_(change_before_backward)
        if not _agl_backward(outputs):
            _agl_report("inconclusive", "the output does not require grad, so backward never runs")
        grad = leaves[0].grad
        return torch.zeros_like(leaves[0]) if grad is None else grad

    def differs(a, b):
        # The first input's gradient comes from its own application only: same value, same bits.
        return not torch.allclose(a, b, rtol=1e-9, atol=0.0, equal_nan=True)

    def where_different(a, b):
        index = ((a - b).abs() > 0) | (a.isnan() != b.isnan())
        return _agl_fmt(a[index]), _agl_fmt(b[index])

    isolated = first_input_grad([first])
    together = first_input_grad([first, second])
    if differs(isolated, together):
        got, expected = where_different(together, isolated)
        _agl_report(
            "confirmed",
            f"two applications in one graph ({shown} = {first} then {second}): the first input's gradient is "
            f"{got} where it is {expected} when applied alone; backward used the value written for the "
            f"second application",
        )
    drifted = first_input_grad([first], change_before_backward=second)
    if differs(isolated, drifted):
        got, expected = where_different(drifted, isolated)
        _agl_report(
            "confirmed",
            f"{shown} changed from {first} to {second} between forward and backward: gradient "
            f"{got} instead of {expected}",
        )
    _agl_report("not-reproduced", f"gradients did not depend on when {shown} was written ({_agl_fmt(isolated)} in every run)")


def _agl_relu_recipe(function, shown):
    """Probe [-inf, -2, -0.5, 0.5, 2, inf] against torch.relu: -0.0, NaN outputs, NaN gradients."""
    import torch

    probe = [-_agl_math.inf, -2.0, -0.5, 0.5, 2.0, _agl_math.inf]
    x = torch.tensor(probe, dtype=torch.float64, requires_grad=True)
    try:
        y = function(x)
    except Exception as exc:  # noqa: BLE001
        _agl_report("inconclusive", f"evaluating {shown} on the probe failed: {type(exc).__name__}: {exc}")
    reference = torch.relu(x.detach())
    problems = []
    signed_zero = [p for p, v, r in zip(probe, y.detach().tolist(), reference.tolist()) if v == 0 and _agl_math.copysign(1, v) < 0 and _agl_math.copysign(1, r) > 0]
    if signed_zero:
        problems.append(f"-0.0 for inputs {signed_zero} (torch.relu gives 0.0)")
    nan_out = [(p, r) for p, v, r in zip(probe, y.detach().tolist(), reference.tolist()) if _agl_math.isnan(v) and not _agl_math.isnan(r)]
    if nan_out:
        problems.append("NaN output for " + ", ".join(f"input {p} (torch.relu gives {r})" for p, r in nan_out))
    upstream = torch.tensor([1.0, _agl_math.inf, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    if y.requires_grad:
        y.backward(upstream)
        reference_x = x.detach().clone().requires_grad_(True)
        torch.relu(reference_x).backward(upstream)
        nan_grad = [p for p, g, r in zip(probe, x.grad.tolist(), reference_x.grad.tolist()) if _agl_math.isnan(g) and not _agl_math.isnan(r)]
        if nan_grad:
            problems.append(f"NaN gradient at inputs {nan_grad} for an inf upstream gradient (torch.relu gives 0.0)")
    if problems:
        _agl_report("confirmed", f"{shown} on {probe}: " + "; ".join(problems))
    _agl_report("not-reproduced", f"{shown} matched torch.relu on {probe}: no -0.0, no NaN")


def _agl_ste(quantized, x):
    """Straight-through estimator: the value of `quantized`, the gradient of `x`."""
    import torch

    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return quantized
    return x + (quantized.to(x.dtype) - x).detach()


def _agl_gradients(make, namespace):
    """Build the call from `namespace`, run forward and backward: ({name: grad}, error, cut)."""
    import torch

    torch.manual_seed(0)
    call, candidates, parameters = make(namespace)
    if candidates is None:
        candidates = [[torch.tensor([-2.0, -0.5, 0.3, 0.5, 2.0], dtype=torch.float64, requires_grad=True)]]
        parameters = []
    for index, inputs in enumerate(candidates):
        try:
            output = call(*inputs)
            break
        except Exception:  # noqa: BLE001 - try the next input layout; re-raised after the last
            if index == len(candidates) - 1:
                raise
    try:
        ran = _agl_backward(output)
    except Exception as exc:  # noqa: BLE001
        return None, f"{type(exc).__name__}: {exc}", False
    if not ran:
        return None, None, True
    named = [(f"input{i}" if len(inputs) > 1 else "input", t) for i, t in enumerate(inputs) if getattr(t, "requires_grad", False)]
    named += list(parameters)
    return {name: (None if t.grad is None else t.grad.detach().clone()) for name, t in named}, None, False


def _agl_ste_recipe(make, namespace, patched_source, shown, op):
    """The flagged code as written, and with a straight-through estimator at the flagged op."""
    import torch

    try:
        grads, error, cut = _agl_gradients(make, namespace)
    except Exception as exc:  # noqa: BLE001
        _agl_report("inconclusive", f"forward failed on the synthesized input: {type(exc).__name__}: {exc}")
    if error is not None:
        _agl_report("confirmed", f"backward through {shown} raised {error}")
    if cut:
        _agl_report("confirmed", f"graph cut: no output of {shown} requires grad (no grad_fn), so nothing before `{op}` gets a gradient")
    dead = [f"{name}.grad is None" for name, g in grads.items() if g is None]
    if patched_source is not None:
        patched = dict(namespace)
        try:
            exec(compile(patched_source, "<straight-through>", "exec"), patched)
            ste_grads, ste_error, _ = _agl_gradients(make, patched)
        except Exception as exc:  # noqa: BLE001
            ste_grads, ste_error = None, f"{type(exc).__name__}: {exc}"
        if ste_grads is not None:
            changed = []
            for name, g in grads.items():
                s = ste_grads.get(name)
                if s is None or g is None:
                    continue
                if not torch.allclose(g, s, rtol=1e-6, atol=1e-12):
                    index = (g - s).abs() > 1e-12
                    changed.append(f"{name}.grad is {_agl_fmt(g[index], 4)} as written but {_agl_fmt(s[index], 4)} with a straight-through estimator")
            if changed or dead:
                _agl_report("confirmed", f"`{op}` in {shown} blocks the gradient: " + "; ".join(dead + changed))
            _agl_report("not-reproduced", f"gradients through {shown} are the same with a straight-through estimator at `{op}`")
    zero = [f"{name}.grad is zero at {int((g == 0).sum())} of {g.numel()} entries" for name, g in grads.items() if g is not None and (g == 0).sum() * 2 >= g.numel()]
    if dead or zero:
        _agl_report("confirmed", f"after backward through {shown}: " + "; ".join(dead + zero))
    _agl_report("not-reproduced", f"every input and parameter of {shown} received a nonzero gradient")


def _agl_module_call(module, method, extra_inputs):
    """(bound method, candidate input lists, named parameters) for a module built in the harness."""
    candidates = []
    for x in _agl_module_inputs(module):
        candidates.append([x] + [x.detach().clone().requires_grad_(x.is_floating_point()) for _ in range(extra_inputs)])
    return getattr(module, method), candidates, list(module.named_parameters())


def _agl_module_inputs(module):
    """Input batches shaped for the module's first layer with a known input size, in its dtype:
    (batch, features) and (batch, sequence, features) for a Linear layer."""
    import torch

    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)

    def leaf(shape):
        return _agl_leaf(shape).to(dtype).detach().requires_grad_(True)

    for layer in module.modules():
        if isinstance(layer, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
            spatial = (8,) * (int(type(layer).__name__[-2]))
            return [leaf((2, layer.in_channels, *spatial))]
        if isinstance(layer, torch.nn.Linear):
            return [leaf((4, layer.in_features)), leaf((2, 4, layer.in_features))]
        if isinstance(layer, torch.nn.Embedding):
            return [torch.randint(0, layer.num_embeddings, (4, 5))]
    return [
        torch.tensor([-2.0, -0.5, 0.3, 0.5, 2.0], dtype=dtype, requires_grad=True),
        _agl_leaf((4, 5)).to(dtype).detach().requires_grad_(True),
    ]

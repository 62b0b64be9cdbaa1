"""The confirm recipe of AGL004 non-differentiable-activation: gradients as written and with a straight-through
estimator.
"""

from .probes import leaf_tensor, report, run_backward, show_values


def straight_through(quantized, x):
    """Straight-through estimator: the value of `quantized`, the gradient of `x`."""
    import torch

    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return quantized
    return x + (quantized.to(x.dtype) - x).detach()


def _gradients(make, namespace):
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
        ran = run_backward(output)
    except Exception as exc:  # noqa: BLE001
        return None, f"{type(exc).__name__}: {exc}", False
    if not ran:
        return None, None, True
    named = [
        (f"input{i}" if len(inputs) > 1 else "input", t)
        for i, t in enumerate(inputs)
        if getattr(t, "requires_grad", False)
    ]
    named += list(parameters)
    return {name: (None if t.grad is None else t.grad.detach().clone()) for name, t in named}, None, False


def compare_with_straight_through(make, namespace, patched_source, shown, op):
    """The flagged code as written, and with a straight-through estimator at the flagged op."""
    import torch

    try:
        grads, error, cut = _gradients(make, namespace)
    except Exception as exc:  # noqa: BLE001
        report("inconclusive", f"forward failed on the synthesized input: {type(exc).__name__}: {exc}")
    if error is not None:
        report("confirmed", f"backward through {shown} raised {error}")
    if cut:
        report(
            "confirmed",
            f"graph cut: no output of {shown} requires grad (no grad_fn), so nothing before `{op}` gets a gradient",
        )
    dead = [f"{name}.grad is None" for name, g in grads.items() if g is None]
    if patched_source is not None:
        patched = dict(namespace)
        try:
            exec(compile(patched_source, "<straight-through>", "exec"), patched)
            ste_grads, _, _ = _gradients(make, patched)
        except Exception:  # noqa: BLE001 - a straight-through rewrite that fails to run proves nothing
            ste_grads = None
        if ste_grads is not None:
            changed = []
            for name, g in grads.items():
                s = ste_grads.get(name)
                if s is None or g is None:
                    continue
                if not torch.allclose(g, s, rtol=1e-6, atol=1e-12):
                    index = (g - s).abs() > 1e-12
                    changed.append(
                        f"{name}.grad is {show_values(g[index], 4)} as written but {show_values(s[index], 4)} with a straight-through estimator"
                    )
            if changed or dead:
                report("confirmed", f"`{op}` in {shown} blocks the gradient: " + "; ".join(dead + changed))
            report(
                "not-reproduced", f"gradients through {shown} are the same with a straight-through estimator at `{op}`"
            )
    zero = [
        f"{name}.grad is zero at {int((g == 0).sum())} of {g.numel()} entries"
        for name, g in grads.items()
        if g is not None and (g == 0).sum() * 2 >= g.numel()
    ]
    if dead or zero:
        report("confirmed", f"after backward through {shown}: " + "; ".join(dead + zero))
    report("not-reproduced", f"every input and parameter of {shown} received a nonzero gradient")


def module_call(module, method, extra_inputs):
    """(bound method, candidate input lists, named parameters) for a module built in the harness."""
    candidates = []
    for x in module_inputs(module):
        candidates.append([x] + [x.detach().clone().requires_grad_(x.is_floating_point()) for _ in range(extra_inputs)])
    return getattr(module, method), candidates, list(module.named_parameters())


def module_inputs(module):
    """Input batches shaped for the module's first layer with a known input size, in its dtype:
    (batch, features) and (batch, sequence, features) for a Linear layer."""
    import torch

    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)

    def leaf(shape):
        return leaf_tensor(shape).to(dtype).detach().requires_grad_(True)

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
        leaf_tensor((4, 5)).to(dtype).detach().requires_grad_(True),
    ]

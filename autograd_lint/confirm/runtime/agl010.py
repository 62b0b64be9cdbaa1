"""The confirm recipe of AGL010 missing-once-differentiable: a gradient penalty through the Function, its
second-order gradient from autograd against central finite differences of the first-order gradient.
"""

from .probes import report, run_forward, show_values, tensors_in


def _penalty(apply, args, leaves, create_graph):
    """sum(grad(L, x)**2) over the inputs, with L = sum(out**2 / 2 + w * out) for a fixed pattern w (so that
    the upstream gradient out + w depends on x without being special, like a unit-norm output's)."""
    import torch

    outputs = [o for o in tensors_in(apply(*args)) if o.requires_grad and o.is_floating_point()]
    if not outputs:
        return None

    def weights(o, index):
        k = torch.arange(o.numel(), dtype=o.dtype) + 3 * index
        return (((k * 7) % 10 - 4.5) / 2.25).reshape(o.shape)

    loss = sum((o * o / 2 + weights(o, i) * o).sum() for i, o in enumerate(outputs))
    grads = torch.autograd.grad(loss, leaves, create_graph=create_graph, allow_unused=True)
    terms = [(g * g).sum() for g in grads if g is not None]
    return sum(terms) if terms else None


def _penalty_finite_differences(apply, build, shape, leaves, eps=1e-6):
    """d penalty / d leaf, element by element, by central differences (first-order backward only)."""
    import torch

    estimates = []
    for index in range(len(leaves)):
        flat = torch.zeros(leaves[index].numel(), dtype=torch.float64)
        for j in range(flat.numel()):
            values = []
            for step in (eps, -eps):
                args = build(shape)
                moved = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
                with torch.no_grad():
                    moved[index].view(-1)[j] += step
                values.append(float(_penalty(apply, args, moved, False)))
            flat[j] = (values[0] - values[1]) / (2 * eps)
        estimates.append(flat.reshape(leaves[index].shape))
    return estimates


def check_double_backward(apply, builders):
    import torch

    observed = []
    for label, build, shape, _ in run_forward(apply, builders):
        args = build(shape)
        leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
        try:
            penalty = _penalty(apply, args, leaves, True)
        except Exception as exc:  # noqa: BLE001
            observed.append(f"{label}: first-order backward raised {type(exc).__name__}: {exc}")
            continue
        if penalty is None:
            observed.append(f"{label}: no output or gradient to penalise")
            continue
        expected = _penalty_finite_differences(apply, build, shape, leaves)
        scale = 1.0 + max(float(e.abs().max()) for e in expected)
        if not penalty.requires_grad:
            if all(float(e.abs().max()) < 1e-6 * scale for e in expected):
                observed.append(f"{label}: the penalty does not depend on the inputs")
                continue
            try:
                torch.autograd.grad(penalty, leaves, allow_unused=True)
                message = "the gradient penalty has no graph"
            except RuntimeError as exc:
                message = f"RuntimeError: {exc}"
            report(
                "confirmed",
                f"{label}: the first-order gradient (create_graph=True) cannot be differentiated again, so a gradient "
                f"penalty gets no gradient: torch raises {message}; central finite differences of that gradient give "
                f"{show_values(expected[0])}",
            )
        second = torch.autograd.grad(penalty, leaves, allow_unused=True)
        for index, (got, want) in enumerate(zip(second, expected)):
            got = torch.zeros_like(want) if got is None else got.detach().reshape(want.shape)
            error = float((got - want).abs().max())
            if error > 1e-4 * scale:
                report(
                    "confirmed",
                    f"{label}: gradient penalty sum(grad(L, x)**2) with L = sum(out**2 / 2 + w * out): second-order gradient for input {index} "
                    f"{show_values(got)} where central finite differences of the first-order gradient give {show_values(want)} "
                    f"(max error {error:.3g}), no error raised",
                )
        observed.append(f"{label}: second-order gradient matches finite differences")
    if any(o.endswith("matches finite differences") for o in observed):
        report("not-reproduced", "; ".join(observed))
    report("inconclusive", "; ".join(observed) or "nothing to differentiate")

"""The confirm recipe of AGL023 where-nan-gradient: where's gradient against the selected branch's own gradient
on a probe.
"""

import math

from .probes import report


def check_where(parts, probe, shown):
    """`parts(x)` returns (where(...), cond, value where true, value where false) for the probe x.
    Confirmed when where's gradient is NaN at an input whose selected branch has a finite gradient
    and the output is finite."""
    import torch

    x = torch.tensor(probe, dtype=torch.float64, requires_grad=True)

    def elementwise(value):
        # One value per probe point: `theta[..., None]` gives the probe's values with a trailing axis.
        value = torch.as_tensor(value)
        return value.reshape(x.shape) if value.numel() == x.numel() else value.broadcast_to(x.shape)

    try:
        y, cond, when_true, when_false = parts(x)
        y = torch.as_tensor(y)
        if not y.requires_grad:
            report("inconclusive", f"{shown} does not depend on the probe through autograd")
        (where_grad,) = torch.autograd.grad(y.sum(), x, allow_unused=True)
    except Exception as exc:  # noqa: BLE001
        report("inconclusive", f"evaluating {shown} on the probe failed: {type(exc).__name__}: {exc}")
    if where_grad is None:
        where_grad = torch.zeros_like(x)

    def branch_grad(value):
        # The branch alone, elementwise: what the gradient is where that branch is selected.
        value = torch.as_tensor(value, dtype=torch.float64)
        if not value.requires_grad:
            return torch.zeros_like(x)
        (grad,) = torch.autograd.grad(elementwise(value).sum(), x, allow_unused=True, retain_graph=True)
        return torch.zeros_like(x) if grad is None else grad

    cond = elementwise(cond)
    correct = torch.where(cond, branch_grad(when_true), branch_grad(when_false))
    values = elementwise(y.detach())
    bad = [
        (p, c)
        for p, g, c, v in zip(probe, where_grad.tolist(), correct.tolist(), values.tolist())
        if math.isnan(g) and math.isfinite(c) and math.isfinite(v)
    ]
    if bad:
        points = ", ".join(f"x={p:g}: NaN (selected branch: {c:.4g})" for p, c in bad[:6])
        report("confirmed", f"{shown} on {probe}: finite output but NaN gradient at {points}")
    report("not-reproduced", f"{shown} on {probe}: no NaN gradient where the selected branch's gradient is finite")

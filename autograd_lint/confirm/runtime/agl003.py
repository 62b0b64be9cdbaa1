"""The confirm recipe of AGL003 handwritten-piecewise-activation: the expression against torch.relu on a probe
with infinities.
"""

import math

from .probes import report


def compare_with_relu(function, shown):
    """Probe [-inf, -2, -0.5, 0.5, 2, inf] against torch.relu: -0.0, NaN outputs, NaN gradients."""
    import torch

    probe = [-math.inf, -2.0, -0.5, 0.5, 2.0, math.inf]
    x = torch.tensor(probe, dtype=torch.float64, requires_grad=True)
    try:
        y = function(x)
    except Exception as exc:  # noqa: BLE001
        report("inconclusive", f"evaluating {shown} on the probe failed: {type(exc).__name__}: {exc}")
    reference = torch.relu(x.detach())
    problems = []
    signed_zero = [
        p
        for p, v, r in zip(probe, y.detach().tolist(), reference.tolist())
        if v == 0 and math.copysign(1, v) < 0 and math.copysign(1, r) > 0
    ]
    if signed_zero:
        problems.append(f"-0.0 for inputs {signed_zero} (torch.relu gives 0.0)")
    nan_out = [
        (p, r) for p, v, r in zip(probe, y.detach().tolist(), reference.tolist()) if math.isnan(v) and not math.isnan(r)
    ]
    if nan_out:
        problems.append("NaN output for " + ", ".join(f"input {p} (torch.relu gives {r})" for p, r in nan_out))
    upstream = torch.tensor([1.0, math.inf, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    if y.requires_grad:
        y.backward(upstream)
        reference_x = x.detach().clone().requires_grad_(True)
        torch.relu(reference_x).backward(upstream)
        if x.grad is not None and reference_x.grad is not None:  # always: y requires grad only through x
            nan_grad = [
                p
                for p, g, r in zip(probe, x.grad.tolist(), reference_x.grad.tolist())
                if math.isnan(g) and not math.isnan(r)
            ]
            if nan_grad:
                problems.append(
                    f"NaN gradient at inputs {nan_grad} for an inf upstream gradient (torch.relu gives 0.0)"
                )
    if problems:
        report("confirmed", f"{shown} on {probe}: " + "; ".join(problems))
    report("not-reproduced", f"{shown} matched torch.relu on {probe}: no -0.0, no NaN")

"""The confirm recipe of AGL016 rng-in-backward: two backward passes over one forward, under different seeds."""

from .probes import INPUT_SHAPES, report, show_values, tensors_in


def _rng_gradients(outputs, leaves, seed):
    import torch

    torch.manual_seed(seed)
    total = sum(o.sum() for o in outputs)
    grads = torch.autograd.grad(total, leaves, retain_graph=True, allow_unused=True)
    return [None if g is None else g.detach().clone() for g in grads]


def check_rng_backward(apply, builders, shown):
    """Forward once (seed 0); backward twice on the retained graph, under seeds 1 and 2. A backward
    that reuses forward's randomness is a function of what forward saved and the upstream gradient,
    so both passes agree; one that draws again does not. With a dropout-style output, the positions
    where the output is zero are compared with those where the gradient is zero."""
    import torch

    error = None
    for label, build in builders:
        for shape in INPUT_SHAPES:
            torch.manual_seed(0)
            args = build(shape)
            args = [
                a.detach().abs().requires_grad_() if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                for a in args
            ]
            try:
                output = apply(*args)
            except Exception as exc:  # noqa: BLE001 - the user's forward rejecting this input
                error = f"{type(exc).__name__}: {exc}"
                continue
            outputs = [t for t in tensors_in(output) if t.requires_grad and t.is_floating_point()]
            leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
            if not outputs or not leaves:
                report("inconclusive", f"{label}: no output requires grad, so backward cannot run")
            try:
                first = _rng_gradients(outputs, leaves, 1)
                second = _rng_gradients(outputs, leaves, 2)
            except Exception as exc:  # noqa: BLE001
                report("inconclusive", f"{label}: backward raised {type(exc).__name__}: {exc}")
            if any(g is not None and not bool(torch.isfinite(g).all()) for g in first + second):
                error = f"{label}: non-finite gradients ({show_values(next(g for g in first if g is not None))})"
                break  # this call shape gives NaN (a probability of 1, say): try the next one
            for index, (a, b) in enumerate(zip(first, second)):
                if a is None or b is None or torch.equal(a, b):
                    continue
                differ = int((a != b).sum())
                evidence = (
                    f"{label}: two backward passes over the same forward (seeds 1 and 2) gave different gradients "
                    f"for input {index}: {differ} of {a.numel()} elements differ ({show_values(a)} vs {show_values(b)})"
                )
                out = outputs[0]
                if out.shape == a.shape and bool((out == 0).any()):
                    dropped = out.detach() == 0
                    mismatch = int((dropped != (a == 0)).sum())
                    evidence += (
                        f"; forward's output is zero at {int(dropped.sum())} positions, the gradient at {int((a == 0).sum())}, "
                        f"and they disagree at {mismatch}"
                    )
                report("confirmed", evidence + f" (backward calls `{shown}`)")
            report("not-reproduced", f"{label}: backward gave identical gradients under seeds 1 and 2")
    report("inconclusive", f"no call shape gave finite gradients; last: {error}")

"""The confirm recipe of AGL018 float-output-not-marked: the mask output requires grad, and the gradient sent
to it is dropped.
"""

from typing import Any

from .probes import report, run_forward, show_values


def check_unmarked_output(function, builders, index):
    """Apply the Function, check that output `index` is floating and requires grad; then use it in a
    loss and show that backward receives a nonzero gradient for it and drops it (the inputs'
    gradients are the same with and without that term)."""
    import torch

    seen = []

    def backward(ctx, *grads):
        seen.append(grads)
        return function.backward(ctx, *grads)

    # A subclass under the same name, so that torch's messages name the user's Function.
    _AglSpy: Any = type(function.__name__, (function,), {"backward": staticmethod(backward)})

    for label, build, shape, output in run_forward(_AglSpy.apply, builders):
        outputs = output if isinstance(output, tuple) else (output,)
        if index >= len(outputs) or not isinstance(outputs[index], torch.Tensor):
            continue
        flagged = outputs[index]
        if not flagged.is_floating_point() or not flagged.requires_grad:
            report(
                "not-reproduced",
                f"{label}: output {index} has dtype {flagged.dtype} and requires_grad={flagged.requires_grad}",
            )

        def input_grads(with_flagged):
            args = build(shape)
            outs = _AglSpy.apply(*args)
            outs = outs if isinstance(outs, tuple) else (outs,)
            loss = sum(
                o.sum()
                for i, o in enumerate(outs)
                if i != index and isinstance(o, torch.Tensor) and o.requires_grad and o.is_floating_point()
            )
            if with_flagged:
                loss = loss + (outs[index] * 3.0).sum()
            if not isinstance(loss, torch.Tensor):
                return None
            leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
            grads = torch.autograd.grad(loss, leaves, allow_unused=True)
            return [torch.zeros_like(leaf) if g is None else g for leaf, g in zip(leaves, grads)]

        seen.clear()
        try:
            without = input_grads(False)
            seen.clear()
            with_mask = input_grads(True)
        except Exception as exc:  # noqa: BLE001
            report(
                "confirmed",
                f"{label}: output {index} ({show_values(flagged)}) has dtype {flagged.dtype} and requires_grad=True (backward then raised {type(exc).__name__}: {exc})",
            )
        received = [g[index] for g in seen if index < len(g) and g[index] is not None]
        sent = f"backward received a gradient {show_values(received[0])} for it" if received else "backward was called"
        dropped = (
            without is not None and with_mask is not None and all(torch.equal(a, b) for a, b in zip(without, with_mask))
        )
        ending = (
            ", and the inputs' gradients are identical with and without it in the loss: the gradient is dropped"
            if dropped
            else ""
        )
        report(
            "confirmed",
            f"{label}: output {index} ({show_values(flagged)}) has dtype {flagged.dtype} and requires_grad=True; "
            f"with `3 * output[{index}]` in the loss {sent}{ending}",
        )
    report("inconclusive", f"no call produced output {index} as a tensor")

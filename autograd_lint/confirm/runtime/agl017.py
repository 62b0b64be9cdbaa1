"""The confirm recipe of AGL017 materialize-grads-none: backward from one output at a time, as written and
materialized.
"""

from .probes import report, run_forward, tensors_in


def _one_output_backward(apply, build, shape, index):
    """Forward on fresh leaves, then backward from output `index` only; the error text or None."""
    import torch

    output = apply(*build(shape))
    outputs = [t for t in tensors_in(output) if t.requires_grad and t.is_floating_point()]
    if index >= len(outputs):
        return None, len(outputs)
    try:
        torch.autograd.backward([outputs[index].sum()])
    except (TypeError, AttributeError) as exc:
        return f"{type(exc).__name__}: {exc}", len(outputs)
    return None, len(outputs)


def check_materialize_grads(apply, builders, grad, position):
    """For every output other than the one whose gradient is `grad` (position `position`), backward
    from that output alone, so that `grad` arrives as None; then the same with set_materialize_grads
    ignored (torch's default: zeros), which must run."""
    import torch

    observed = []
    for label, build, shape, output in run_forward(apply, builders):
        count = len([t for t in tensors_in(output) if t.requires_grad and t.is_floating_point()])
        if count < 2:
            observed.append(f"{label} returned {count} output(s) that require grad")
            continue
        for index in [i for i in range(count) if i != position]:
            error, _ = _one_output_backward(apply, build, shape, index)
            if error is None or "NoneType" not in error:
                observed.append(f"{label}: backward from output {index} only ran" + (f" ({error})" if error else ""))
                continue
            original = torch.autograd.function.FunctionCtx.set_materialize_grads
            torch.autograd.function.FunctionCtx.set_materialize_grads = lambda self, value: original(self, True)  # type: ignore[method-assign]  # patched on purpose
            try:
                materialized, _ = _one_output_backward(apply, build, shape, index)
            finally:
                torch.autograd.function.FunctionCtx.set_materialize_grads = original  # type: ignore[method-assign]  # torch's own back
            contrast = "runs" if materialized is None else f"also fails ({materialized})"
            report(
                "confirmed",
                f"{label}, backward from output {index} only (so `{grad}` is None) raised {error}; "
                f"with gradients materialized (torch's default) the same backward {contrast}",
            )
    report("not-reproduced", "; ".join(observed) or "no run")

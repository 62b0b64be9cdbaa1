"""The confirm recipe of AGL013 save-for-backward-twice: forward as written against forward with every
save_for_backward call's tensors kept (the fix); torch's saved_tensors count, backward's error or the
gradients are the proof.
"""

from .probes import report, run_backward, run_forward, show_values, tensors_in

ACCUMULATE = "accumulate"


def _save_twice_run(apply, build, shape, keep=None):
    """(calls' tensor counts, len(grad_fn.saved_tensors), leaf grads or the backward error), with every call
    saving as written (`keep` None), all the calls' tensors saved together (ACCUMULATE), or only call
    number `keep` (0-based) saving."""
    import torch
    from torch.autograd.function import FunctionCtx

    original = FunctionCtx.save_for_backward
    counts = []

    def save(ctx, *tensors):
        counts.append(len(tensors))
        if keep == ACCUMULATE:  # what one call with all the tensors would have saved
            tensors = getattr(ctx, "_agl_saved", ()) + tensors
            ctx._agl_saved = tensors
        elif keep is not None and len(counts) - 1 != keep:
            return
        original(ctx, *tensors)

    FunctionCtx.save_for_backward = save  # type: ignore[method-assign]  # patched on purpose
    try:
        args = build(shape)
        output = apply(*args)
    finally:
        FunctionCtx.save_for_backward = original  # type: ignore[method-assign]  # torch's own back
    nodes = [t.grad_fn for t in tensors_in(output) if t.grad_fn is not None]
    saved = len(nodes[0].saved_tensors) if nodes else None
    leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    try:
        run_backward(output)
    except Exception as exc:  # noqa: BLE001
        return counts, saved, f"{type(exc).__name__}: {exc}"
    return counts, saved, [leaf.grad for leaf in leaves]


def check_save_twice(apply, builders):
    observed = []
    for label, build, shape, _ in run_forward(apply, builders):
        counts, saved, written = _save_twice_run(apply, build, shape)
        if len(counts) < 2:
            observed.append(f"{label}: forward called save_for_backward {len(counts)} time(s) on this input")
            continue
        _, _, fixed = _save_twice_run(apply, build, shape, ACCUMULATE)
        calls = " + ".join(str(c) for c in counts)
        lost = f"{label}: forward called save_for_backward {len(counts)} times ({calls} tensors) and grad_fn.saved_tensors holds {saved}"
        if isinstance(written, str) and not isinstance(fixed, str):
            report("confirmed", f"{lost}; backward raised {written} (with all tensors saved in one call it runs)")
        if isinstance(written, str):  # backward written for what an earlier call saved, which the last replaced
            for call in range(len(counts) - 1):
                if not isinstance(_save_twice_run(apply, build, shape, call)[2], str):
                    report(
                        "confirmed",
                        f"{lost}; backward raised {written} (with only call {call + 1}'s tensors saved it runs)",
                    )
        if (
            isinstance(written, str)
            and saved is not None
            and saved < sum(counts)
            and ("unpack" in written or "index out of range" in written)
        ):
            report("confirmed", f"{lost}; backward raised {written}")
        if isinstance(written, str):
            observed.append(f"{lost}; backward fails either way: {written}")
            continue
        if isinstance(fixed, str):  # backward expects exactly what the last call saves
            observed.append(f"{lost}; backward runs as written (it does not fit all the tensors: {fixed})")
            continue
        for index, (got, want) in enumerate(zip(written, fixed)):
            if (got is None) != (want is None) or (got is not None and not _torch_close(got, want)):
                shown = lambda g: "None" if g is None else show_values(g)  # noqa: E731
                report(
                    "confirmed",
                    f"{lost}; backward ran but input {index}'s gradient is {shown(got)}, and {shown(want)} with all tensors saved in one call",
                )
        observed.append(f"{lost}; the gradients equal those with all tensors saved in one call")
    if any("saved_tensors holds" in o and "fails either way" in o for o in observed):
        report("inconclusive", "; ".join(observed))
    report("not-reproduced", "; ".join(observed))


def _torch_close(a, b):
    import torch

    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True))

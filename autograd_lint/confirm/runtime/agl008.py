"""The confirm recipe of AGL008 inplace-grad-output: does backward write into the gradients it is given?"""

from .probes import report, run_forward, show_values, tensors_in


def _upstream(output, index):
    """A contiguous upstream gradient of both signs for one output (never 0)."""
    import torch

    k = torch.arange(output.numel(), dtype=torch.float64) + 3 * index
    return (((k * 7) % 10 - 4.5) / 2.25).reshape(output.shape).to(output.dtype)


def check_grad_output_inplace(apply, builders):
    """(1) backward with explicit contiguous upstream gradients: the caller's tensors must come back
    unchanged; (2) backward from `.sum()`, whose gradient is expanded: torch refuses in-place writes."""
    import torch

    observed = []
    for label, build, shape, output in run_forward(apply, builders):
        outputs = [t for t in tensors_in(output) if t.requires_grad and t.is_floating_point()]
        if not outputs:
            observed.append(f"{label}: no output requires grad")
            continue
        upstream = [_upstream(o, i) for i, o in enumerate(outputs)]
        before = [u.clone() for u in upstream]
        try:
            torch.autograd.backward(outputs, upstream)
        except Exception as exc:  # noqa: BLE001
            observed.append(f"{label}: backward with explicit gradients raised {type(exc).__name__}: {exc}")
        else:
            for index, (now, was) in enumerate(zip(upstream, before)):
                differs = (now != was) & ~(now.isnan() & was.isnan())
                if bool(differs.any()):
                    report(
                        "confirmed",
                        f"{label}, then backward with an explicit upstream gradient for output {index}: backward "
                        f"changed the caller's upstream gradient from {show_values(was)} to {show_values(now)}",
                    )
            observed.append(f"{label}: explicit upstream gradients unchanged")
        try:
            summed = [t for t in tensors_in(apply(*build(shape))) if t.requires_grad and t.is_floating_point()]
            sum(o.sum() for o in summed).backward()
        except Exception as exc:  # noqa: BLE001
            message = f"{type(exc).__name__}: {exc}"
            if "more than one element of the written-to tensor" in message:
                report("confirmed", f"{label}, then .sum().backward() raised {message}")
            observed.append(f"{label}: .sum().backward() raised {message}")
        else:
            observed.append(f"{label}: .sum().backward() ran")
    if any(o.endswith(("unchanged", ".sum().backward() ran")) for o in observed):
        report("not-reproduced", "; ".join(observed))
    report("inconclusive", "backward never ran cleanly: " + "; ".join(observed))

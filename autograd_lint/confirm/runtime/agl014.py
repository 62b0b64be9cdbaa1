"""The confirm recipe of AGL014 tensors-in-containers: what autograd tracked of the tensors inside containers."""

from .probes import INPUT_SHAPES, leaf_tensor, report, run_backward, run_forward, tensors_in


def _contained(value, top=True):
    """The tensors autograd does not see: everything inside a list or dict, and inside a tuple that
    is itself inside the output (the top-level tuple's own tensors are tracked)."""
    import torch

    if isinstance(value, torch.Tensor):
        return [] if top else [value]
    if isinstance(value, tuple) and top:
        return [t for item in value if not isinstance(item, torch.Tensor) for t in _contained(item, top=False)]
    if isinstance(value, (list, tuple, dict)):
        return tensors_in(value)
    return []


def _container_name(value):
    if isinstance(value, tuple):
        inner = [item for item in value if isinstance(item, (list, tuple, dict))]
        return "a " + type(inner[0]).__name__ + " inside its output tuple" if inner else "a tuple"
    return "a " + type(value).__name__


def check_container_output(apply, builders):
    """Forward returns a container: its tensors should not require grad, and backward from one of
    them raises torch's own 'does not require grad' error."""
    observed = []
    for label, _, _, output in run_forward(apply, builders):
        hidden = [t for t in _contained(output) if t.is_floating_point()]
        if not hidden:
            observed.append(f"{label} returned {type(output).__name__} with no floating tensor inside a container")
            continue
        untracked = [t for t in hidden if not t.requires_grad]
        if not untracked:
            observed.append(f"{label}: the tensors inside the returned container require grad")
            continue
        try:
            untracked[0].sum().backward()
            error = "backward ran"
        except RuntimeError as exc:
            error = f"backward from the first raised RuntimeError: {exc}"
        report(
            "confirmed",
            f"{label} returned {_container_name(output)}: {len(untracked)} of the {len(hidden)} tensors in it have "
            f"requires_grad=False and grad_fn=None although the inputs require grad; {error}",
        )
    report("not-reproduced", "; ".join(observed))


def check_container_input(apply, label, count, build):
    """Tensors passed inside a container: the output should not require grad, or backward should
    leave their .grad None while a tensor passed directly gets one."""
    import torch

    error = None
    for shape in INPUT_SHAPES:
        inner = [leaf_tensor(shape, 10 + k) for k in range(count)]
        args, kwargs = build(shape, inner)
        try:
            output = apply(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the user's forward rejecting this input
            error = f"{type(exc).__name__}: {exc}"
            continue
        break
    else:
        report("inconclusive", f"forward failed on every synthesized input; last error: {error}")
    tracked = [t for t in tensors_in(output) if t.requires_grad]
    if not tracked:
        report(
            "confirmed",
            f"{label}: the {count} tensors inside the container require grad, but the output has "
            f"requires_grad=False (grad_fn=None): autograd never saw them",
        )
    try:
        run_backward(output)
    except RuntimeError as exc:
        report("inconclusive", f"{label}: backward raised RuntimeError: {exc}")
    missing = sum(1 for t in inner if t.grad is None)
    if missing:
        direct = [t for t in args if isinstance(t, torch.Tensor) and t.requires_grad]
        also = ""
        if direct:
            also = "; the tensor passed directly got " + ("a gradient" if direct[0].grad is not None else "none either")
        report(
            "confirmed",
            f"{label} then backward: {missing} of the {count} tensors inside the container have .grad None{also}",
        )
    report("not-reproduced", f"{label}: every tensor inside the container received a gradient")

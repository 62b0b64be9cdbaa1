"""The confirm recipe of AGL011 grad-for-non-tensor-input: apply with the non-tensor as the call site passes
it, run backward; torch's own "different than None at position p" with the reported p is the proof.
"""

from typing import Any

from .probes import INPUT_SHAPES, report, run_backward, run_forward


def _masked_apply(function, positions):
    """`function.apply` with the gradients at `positions` (1-based) replaced by None after the user's
    backward ran: used only when torch stops at an earlier position that is reported separately."""
    import torch

    attr = "vjp" if function.vjp is not torch.autograd.Function.vjp else "backward"
    original = getattr(function, attr)

    def backward(ctx, *grads):
        result = original(ctx, *grads)
        if isinstance(result, tuple):
            result = tuple(None if i + 1 in positions else g for i, g in enumerate(result))
        return result

    spy: Any = type(function.__name__, (function,), {attr: staticmethod(backward)})
    return spy.apply


def _forward_runs(apply, builders):
    for _, build in builders:
        for shape in INPUT_SHAPES:
            try:
                apply(*build(shape))
                return True
            except Exception:  # noqa: BLE001, S112 - the user's forward rejecting this input
                continue
    return False


def _non_tensor_at(builders, position):
    """`builders` whose arguments keep a non-tensor at `position` (1-based): a tensor there is not the case
    the finding is about, so those builds fail."""
    import torch

    def keeping(build):
        def checked(shape):
            args = build(shape)
            if len(args) >= position and isinstance(args[position - 1], torch.Tensor):
                raise TypeError(
                    f"these inputs put a tensor at position {position}, where the finding is about a non-tensor"
                )
            return args

        return checked

    return [(label, keeping(build)) for label, build in builders]


def check_non_tensor_grad(function, builders, position, reported_before, shared_inputs=None):
    """Run forward and backward for each call shape (the shared inputs where forward rejects every one);
    confirmed when torch names this position."""
    wanted = f"returned a gradient different than None at position {position},"
    if shared_inputs is not None and not _forward_runs(function.apply, builders):
        builders = _non_tensor_at(shared_inputs(), position)
    observed = []
    passes = [()] + ([tuple(reported_before)] if reported_before else [])
    for masked in passes:
        apply = _masked_apply(function, masked) if masked else function.apply
        note = (
            f" (the gradient at position {', '.join(map(str, masked))}, reported separately, replaced by None)"
            if masked
            else ""
        )
        for label, _, _, output in run_forward(apply, builders):
            try:
                ran = run_backward(output)
            except Exception as exc:  # noqa: BLE001
                message = f"{type(exc).__name__}: {exc}"
                if wanted in message:
                    report("confirmed", f"{label}{note} then backward raised {message}")
                observed.append(f"{label}{note}: backward raised {message}")
                continue
            observed.append(f"{label}{note}: " + ("backward ran without error" if ran else "no output requires grad"))
    clean = [o for o in observed if o.endswith("without error")]
    if clean:
        report("not-reproduced", "; ".join(clean))
    report("inconclusive", "; ".join(observed))

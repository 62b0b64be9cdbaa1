"""The confirm recipe of AGL015 autograd-inside-forward: apply with inputs that require grad; torch's own error
is the proof.
"""

from .probes import INPUT_SHAPES, report


def check_autograd_in_forward(apply, builders, shown):
    """Run `.apply` on leaf tensors that require grad (grad mode on, as in training): forward runs
    under no-grad, so the autograd call inside it raises 'does not require grad'."""
    import torch

    observed, other = [], []
    for label, build in builders:
        for shape in INPUT_SHAPES:
            args = build(shape)
            try:
                with torch.enable_grad():
                    apply(*args)
            except Exception as exc:  # noqa: BLE001 - the error is the evidence, or a shape mismatch
                message = f"{type(exc).__name__}: {exc}"
                if "does not require grad" in message:
                    report(
                        "confirmed",
                        f"{label} with inputs that require grad raised {message} (forward runs `{shown}` with grad mode off)",
                    )
                other.append(f"{label}: {message}")
                continue
            observed.append(f"{label} ran without error")
            break
    if observed:
        report("not-reproduced", "; ".join(observed))
    report("inconclusive", "forward failed for another reason: " + "; ".join(other[-2:]))

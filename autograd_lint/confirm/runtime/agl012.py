"""The confirm recipe of AGL012 save-for-backward-non-tensor: apply with inputs that require grad, grad mode
on; torch's own TypeError is the proof.
"""

from .probes import INPUT_SHAPES, report


def check_save_non_tensor(apply, builders):
    """Each call shape with float64 inputs that require grad; the same call under no_grad shows
    why inference-only tests pass."""
    import torch

    observed, error = [], None
    for label, build in builders:
        for shape in INPUT_SHAPES:
            try:
                with torch.enable_grad():
                    apply(*build(shape))
            except Exception as exc:  # noqa: BLE001
                message = f"{type(exc).__name__}: {exc}"
                if "save_for_backward can only save variables" in message:
                    quiet = ""
                    try:
                        with torch.no_grad():
                            apply(*build(shape))
                        quiet = " (under torch.no_grad() the same call runs without error)"
                    except Exception:  # noqa: BLE001
                        pass
                    report("confirmed", f"{label} with inputs that require grad raised {message}{quiet}")
                error = message
                continue
            observed.append(f"{label}: forward ran and saved without error")
            break
    if observed:
        report("not-reproduced", "; ".join(observed))
    report("inconclusive", f"forward failed on every synthesized input; last error: {error}")

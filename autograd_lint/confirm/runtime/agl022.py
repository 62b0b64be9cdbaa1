"""The confirm recipe of AGL022 amp-missing-custom-fwd: forward under CPU bfloat16 autocast, backward after the
block.
"""

from .probes import DEVICE, INPUT_SHAPES, report, run_backward, tensors_in


def _amp_float32(args):
    import torch

    return [
        a.detach().float().requires_grad_(a.requires_grad)
        if isinstance(a, torch.Tensor) and a.is_floating_point()
        else a
        for a in args
    ]


def check_amp(apply, builders):
    """Run forward on float32 inputs inside `torch.autocast(DEVICE, dtype=torch.bfloat16)` and backward
    after the block, as a training step does; the same call without autocast must run (else the
    failure is not autocast's)."""
    import torch

    plain, other = [], []
    for label, build in builders:
        for shape in INPUT_SHAPES:
            try:
                output = apply(*_amp_float32(build(shape)))
                run_backward(output)
            except Exception as exc:  # noqa: BLE001 - this input does not fit forward
                if "_fwd_used_autocast" in str(exc):
                    report(
                        "confirmed",
                        f"{label} on float32 inputs {list(shape)}, no autocast: backward raised {type(exc).__name__}: {exc} (custom_bwd without custom_fwd)",
                    )
                other.append(f"{label}: {type(exc).__name__}: {exc}")
                continue
            args = _amp_float32(build(shape))
            with torch.autocast(DEVICE, dtype=torch.bfloat16):
                output = apply(*args)
            dtypes = sorted({str(t.dtype).replace("torch.", "") for t in tensors_in(output)})
            try:
                run_backward(output)
            except Exception as exc:  # noqa: BLE001 - the failure is the evidence
                report(
                    "confirmed",
                    f"{label} on float32 inputs {list(shape)}: forward and backward run without autocast, but with forward inside "
                    f"torch.autocast({DEVICE!r}, dtype=torch.bfloat16) (output {'/'.join(dtypes)}) backward after the block raised "
                    f"{type(exc).__name__}: {exc}",
                )
            grads = sorted(
                {
                    str(a.grad.dtype).replace("torch.", "")
                    for a in args
                    if isinstance(a, torch.Tensor) and a.grad is not None
                }
            )
            plain.append(
                f"{label}: forward under bfloat16 autocast (output {'/'.join(dtypes)}), backward after it ran (input grads {'/'.join(grads)})"
            )
            break
    if plain:
        report("not-reproduced", "; ".join(plain))
    report("inconclusive", "forward or backward failed without autocast too: " + "; ".join(other[-2:]))

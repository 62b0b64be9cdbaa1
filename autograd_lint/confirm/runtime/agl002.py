"""The confirm recipe of AGL002 backward-arity-mismatch: forward and backward per call shape; torch's own
message is the proof.
"""

from .probes import report, run_backward, run_forward


def check_arity(apply, builders, patterns):
    """Run forward and backward for every call shape; torch's own message is the proof."""
    observed = []
    for label, _, _, output in run_forward(apply, builders):
        try:
            ran = run_backward(output)
        except Exception as exc:  # noqa: BLE001
            message = f"{type(exc).__name__}: {exc}"
            if any(p in message for p in patterns):
                report("confirmed", f"{label} then backward raised {message}")
            observed.append(f"{label}: backward raised {message}")
            continue
        # No output requiring grad (forward returned a non-tensor argument): backward never ran, which proves nothing.
        observed.append(f"{label}: " + ("backward ran without error" if ran else "no output requires grad"))
    clean = [o for o in observed if o.endswith("without error")]
    if clean:
        report("not-reproduced", "; ".join(clean))
    report("inconclusive", "backward never ran to the end: " + "; ".join(observed))

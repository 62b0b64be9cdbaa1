# Confirm recipe for AGL002 backward-arity-mismatch: forward and backward per call shape; torch's own message is the proof.
# Runtime code with only torch available, copied into every harness after probes.py (see harness.PROBES).


def _agl_arity_recipe(apply, builders, patterns):
    """Run forward and backward for every call shape; torch's own message is the proof."""
    observed = []
    for label, _, _, output in _agl_forward(apply, builders):
        try:
            _agl_backward(output)
        except Exception as exc:  # noqa: BLE001
            message = f"{type(exc).__name__}: {exc}"
            if any(p in message for p in patterns):
                _agl_report("confirmed", f"{label} then backward raised {message}")
            observed.append(f"{label}: backward raised {message}")
            continue
        observed.append(f"{label}: backward ran without error")
    clean = [o for o in observed if o.endswith("without error")]
    if clean:
        _agl_report("not-reproduced", "; ".join(clean))
    _agl_report("inconclusive", "backward failed for another reason: " + "; ".join(observed))

"""The confirm recipe of AGL021 bad-grad-shape: forward and backward on non-square inputs; torch's own shape
message is the proof.
"""

from .probes import report, run_backward, run_forward

# Every dimension different, so that a transposed or reduced gradient never matches by accident.
_GRAD_SHAPE_SHAPES = [(3, 4), (2, 3, 4), (2, 3, 4, 5), (5,), (4, 3)]


def check_grad_shape(apply, builders, index):
    """Run each call shape on inputs of several ranks; confirmed when torch rejects the gradient
    returned for input `index` (0-based, as torch counts)."""
    marker = f"returned an invalid gradient at index {index} - got"
    observed = []
    for label, _, shape, output in run_forward(apply, builders, _GRAD_SHAPE_SHAPES, every_shape=True):
        where = f"{label} with inputs of shape {list(shape)}"
        try:
            ran = run_backward(output)
        except Exception as exc:  # noqa: BLE001
            message = f"{type(exc).__name__}: {exc}"
            if marker in message:
                report("confirmed", f"{where} then backward raised {message}")
            observed.append(f"{where}: backward raised {message}")
            continue
        observed.append(f"{where}: backward ran without error" if ran else f"{where}: no output requires grad")
    clean = [o for o in observed if o.endswith("without error")]
    if clean:
        report("not-reproduced", "; ".join(clean[:3]))
    report("inconclusive", "; ".join(observed[:3]))

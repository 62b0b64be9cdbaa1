"""The confirm recipe of AGL020 output-view-inplace: apply, then the caller's in-place write on the result."""

from .agl019 import inplace_write
from .probes import INPUT_SHAPES, report


def check_output_view_inplace(apply, builders, name, replay, namespace):
    """Tensor inputs as non-leaves (as a caller's activations are), apply, write into the output in place:
    torch's view+inplace error is the proof. The same write on `.clone()` of the output must then run."""
    import torch

    observed, error = [], None
    for label, build in builders:
        for shape in INPUT_SHAPES:

            def run():
                args = [a * 1 if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in build(shape)]
                return apply(*args)

            try:
                output = run()
            except Exception as exc:  # noqa: BLE001 - forward rejecting this input shape
                error = f"{type(exc).__name__}: {exc}"
                continue
            if not isinstance(output, torch.Tensor):
                observed.append(f"{label}: the output is not a tensor")
                break
            facts = "the output is a view of an input" if output._is_view() else "the output is not a view"
            try:
                how = inplace_write(output, name, replay, namespace)
            except Exception as exc:  # noqa: BLE001
                message = f"{type(exc).__name__}: {exc}"
                if "is a view and is being modified inplace" not in message:
                    observed.append(f"{label}: the write raised {message}")
                    break
                try:
                    inplace_write(run().clone(), name, replay, namespace)
                    fixed = "; on the output's .clone() the same write runs"
                except Exception as again:  # noqa: BLE001
                    fixed = f"; on the output's .clone() it still raised {type(again).__name__}"
                how = getattr(exc, "_agl_write", "the write")
                report("confirmed", f"{label} ({facts}), then {how} on the output raised {message}{fixed}")
            observed.append(f"{label}: {how} on the output ran ({facts})")
            break
    if not observed:
        report("inconclusive", f"forward failed on every synthesized input; last error: {error}")
    if any(" on the output ran (" in o for o in observed):
        report("not-reproduced", "; ".join(observed))
    report("inconclusive", "; ".join(observed))

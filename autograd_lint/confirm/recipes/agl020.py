# Confirm recipe for AGL020 output-view-inplace: apply, then the caller's in-place write on the result.
# Runtime code with only torch available, copied into every harness after probes.py (see harness.PROBES).
# `_agl_inplace_write` comes from recipes/agl019.py (every recipe file is pasted into every harness).


def _agl_output_view_recipe(apply, builders, name, replay, namespace):
    """Tensor inputs as non-leaves (as a caller's activations are), apply, write into the output in place:
    torch's view+inplace error is the proof. The same write on `.clone()` of the output must then run."""
    import torch

    observed, error = [], None
    for label, build in builders:
        for shape in _AGL_SHAPES:

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
                how = _agl_inplace_write(output, name, replay, namespace)
            except Exception as exc:  # noqa: BLE001
                message = f"{type(exc).__name__}: {exc}"
                if "is a view and is being modified inplace" not in message:
                    observed.append(f"{label}: the write raised {message}")
                    break
                try:
                    _agl_inplace_write(run().clone(), name, replay, namespace)
                    fixed = "; on the output's .clone() the same write runs"
                except Exception as again:  # noqa: BLE001
                    fixed = f"; on the output's .clone() it still raised {type(again).__name__}"
                how = getattr(exc, "_agl_write", "the write")
                _agl_report("confirmed", f"{label} ({facts}), then {how} on the output raised {message}{fixed}")
            observed.append(f"{label}: {how} on the output ran ({facts})")
            break
    if not observed:
        _agl_report("inconclusive", f"forward failed on every synthesized input; last error: {error}")
    if any(" on the output ran (" in o for o in observed):
        _agl_report("not-reproduced", "; ".join(observed))
    _agl_report("inconclusive", "; ".join(observed))

"""The confirm recipe of AGL005 legacy-function-api: replay the legacy shape; torch's own exception, or
constructor arguments that change nothing, is the proof.
"""

from .probes import INPUT_SHAPES, report, run_backward, show_values, tensors_in

_LEGACY_CALL = "Legacy autograd function with non-static forward method is deprecated"
_NO_BACKWARD = "You must implement either the backward or vjp method"


def _legacy_run(call, builders, label):
    """(label, error text or None, output, leaves) for the first input shape forward accepts; the
    error is from forward or from backward."""
    import warnings

    last = None
    for build_label, build in builders:
        for shape in INPUT_SHAPES:
            args = build(shape)
            leaves = [a for a in args if hasattr(a, "requires_grad") and a.requires_grad]
            shown = label + build_label[build_label.index("(") :]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    output = call(*args)
            except Exception as exc:  # noqa: BLE001
                message = f"{type(exc).__name__}: {exc}"
                if any(p in message for p in (_LEGACY_CALL, "has no attribute")):
                    return shown, message, None, leaves
                last = message
                continue
            try:
                ran = run_backward(output)
            except Exception as exc:  # noqa: BLE001
                return shown + " then backward", f"{type(exc).__name__}: {exc}", output, leaves
            return shown + (" then backward" if ran else ""), None, output, leaves
    report("inconclusive", f"forward failed on every synthesized input; last error: {last}")


def check_legacy_api(cls, kind, make, init_args, make_other, other_args, attribute, builders):
    name = cls.__name__
    instance_label = f"{name}({init_args or ''})"

    def instance():
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return make()
        except Exception as exc:  # noqa: BLE001
            report("inconclusive", f"{instance_label} raised {type(exc).__name__}: {exc}")

    if kind == "instance-call":
        shown, error, _, _ = _legacy_run(instance(), builders, instance_label)
        if error and _LEGACY_CALL in error:
            report("confirmed", f"{shown} raised {error}")
        report("not-reproduced", f"{shown} " + (f"raised {error}" if error else "ran without error"))

    if kind == "no-backward":
        shown, error, output, _ = _legacy_run(cls.apply, builders, f"{name}.apply")
        if error and _NO_BACKWARD in error:
            report("confirmed", f"{shown} raised {error}")
        if error:
            report("inconclusive", f"{shown} raised {error}")
        report("not-reproduced", f"{shown} ran without error (no output requires grad or a backward exists)")

    if kind == "instance-state":
        shown, error, _, _ = _legacy_run(cls.apply, builders, f"{name}.apply")
        if error and f"has no attribute '{attribute}'" in error:
            report("confirmed", f"{shown} raised {error}")
        report("not-reproduced", f"{shown} " + (f"raised {error}" if error else "ran without error"))

    # "init" and "instance-apply": what the constructor stores never reaches forward/backward.
    shown, error, output, leaves = _legacy_run(instance().apply, builders, instance_label + ".apply")
    if error and "has no attribute" in error:
        report("confirmed", f"{shown} raised {error}")
    if error:
        report("inconclusive", f"{shown} raised {error}")
    if make_other is not None:
        other_label = f"{name}({other_args}).apply"
        _, other_error, other_output, other_leaves = _legacy_run(make_other().apply, builders, other_label)
        if other_error is None:
            same_output = all(
                a.shape == b.shape and bool((a == b).all())
                for a, b in zip(tensors_in(output), tensors_in(other_output))
            )
            grads = [leaf.grad for leaf in leaves]
            other_grads = [leaf.grad for leaf in other_leaves]
            same_grads = all(
                (a is None and b is None) or (a is not None and b is not None and bool((a == b).all()))
                for a, b in zip(grads, other_grads)
            )
            if same_output and same_grads:
                shown_grad = show_values(grads[0]) if grads and grads[0] is not None else "None"
                report(
                    "confirmed",
                    f"{shown} and {other_label}(...) give identical outputs and gradients (grad {shown_grad}): "
                    f"the constructor arguments are ignored",
                )
            if kind == "instance-apply":
                report("not-reproduced", f"{shown} and {other_label}(...) differ: the constructor arguments are used")
    if kind == "init":
        call_shown, call_error, _, _ = _legacy_run(instance(), builders, instance_label)
        if call_error and _LEGACY_CALL in call_error:
            report("confirmed", f"{shown} ran, but calling the instance, {call_shown}, raised {call_error}")
    report("not-reproduced", f"{shown} ran without error")

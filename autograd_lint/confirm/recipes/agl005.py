# Confirm recipe for AGL005 legacy-function-api: replay the legacy shape; torch's own exception, or constructor
# arguments that change nothing, is the proof.
# Runtime code with only torch available, copied into every harness after probes.py (see harness.PROBES).

_AGL_LEGACY_CALL = "Legacy autograd function with non-static forward method is deprecated"
_AGL_NO_BACKWARD = "You must implement either the backward or vjp method"


def _agl_legacy_run(call, builders, label):
    """(label, error text or None, output, leaves) for the first input shape forward accepts; the
    error is from forward or from backward."""
    import warnings

    last = None
    for build_label, build in builders:
        for shape in _AGL_SHAPES:
            args = build(shape)
            leaves = [a for a in args if hasattr(a, "requires_grad") and a.requires_grad]
            shown = label + build_label[build_label.index("("):]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    output = call(*args)
            except Exception as exc:  # noqa: BLE001
                message = f"{type(exc).__name__}: {exc}"
                if any(p in message for p in (_AGL_LEGACY_CALL, "has no attribute")):
                    return shown, message, None, leaves
                last = message
                continue
            try:
                ran = _agl_backward(output)
            except Exception as exc:  # noqa: BLE001
                return shown + " then backward", f"{type(exc).__name__}: {exc}", output, leaves
            return shown + (" then backward" if ran else ""), None, output, leaves
    _agl_report("inconclusive", f"forward failed on every synthesized input; last error: {last}")


def _agl_legacy_recipe(cls, kind, make, init_args, make_other, other_args, attribute, builders):
    name = cls.__name__
    instance_label = f"{name}({init_args or ''})"

    def instance():
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return make()
        except Exception as exc:  # noqa: BLE001
            _agl_report("inconclusive", f"{instance_label} raised {type(exc).__name__}: {exc}")

    if kind == "instance-call":
        shown, error, _, _ = _agl_legacy_run(instance(), builders, instance_label)
        if error and _AGL_LEGACY_CALL in error:
            _agl_report("confirmed", f"{shown} raised {error}")
        _agl_report("not-reproduced", f"{shown} " + (f"raised {error}" if error else "ran without error"))

    if kind == "no-backward":
        shown, error, output, _ = _agl_legacy_run(cls.apply, builders, f"{name}.apply")
        if error and _AGL_NO_BACKWARD in error:
            _agl_report("confirmed", f"{shown} raised {error}")
        if error:
            _agl_report("inconclusive", f"{shown} raised {error}")
        _agl_report("not-reproduced", f"{shown} ran without error (no output requires grad or a backward exists)")

    if kind == "instance-state":
        shown, error, _, _ = _agl_legacy_run(cls.apply, builders, f"{name}.apply")
        if error and f"has no attribute '{attribute}'" in error:
            _agl_report("confirmed", f"{shown} raised {error}")
        _agl_report("not-reproduced", f"{shown} " + (f"raised {error}" if error else "ran without error"))

    # "init" and "instance-apply": what the constructor stores never reaches forward/backward.
    shown, error, output, leaves = _agl_legacy_run(instance().apply, builders, instance_label + ".apply")
    if error and "has no attribute" in error:
        _agl_report("confirmed", f"{shown} raised {error}")
    if error:
        _agl_report("inconclusive", f"{shown} raised {error}")
    if make_other is not None:
        other_label = f"{name}({other_args}).apply"
        _, other_error, other_output, other_leaves = _agl_legacy_run(make_other().apply, builders, other_label)
        if other_error is None:
            same_output = all(
                a.shape == b.shape and bool((a == b).all()) for a, b in zip(_agl_tensors(output), _agl_tensors(other_output))
            )
            grads = [l.grad for l in leaves]
            other_grads = [l.grad for l in other_leaves]
            same_grads = all(
                (a is None and b is None) or (a is not None and b is not None and bool((a == b).all()))
                for a, b in zip(grads, other_grads)
            )
            if same_output and same_grads:
                shown_grad = _agl_fmt(grads[0]) if grads and grads[0] is not None else "None"
                _agl_report(
                    "confirmed",
                    f"{shown} and {other_label}(...) give identical outputs and gradients (grad {shown_grad}): "
                    f"the constructor arguments are ignored",
                )
            if kind == "instance-apply":
                _agl_report("not-reproduced", f"{shown} and {other_label}(...) differ: the constructor arguments are used")
    if kind == "init":
        call_shown, call_error, _, _ = _agl_legacy_run(instance(), builders, instance_label)
        if call_error and _AGL_LEGACY_CALL in call_error:
            _agl_report("confirmed", f"{shown} ran, but calling the instance, {call_shown}, raised {call_error}")
    _agl_report("not-reproduced", f"{shown} ran without error")

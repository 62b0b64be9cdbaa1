"""The confirm recipe of AGL019 saved-tensor-mutated: apply, the caller's in-place write, backward."""

from .probes import INPUT_SHAPES, report, run_backward


def inplace_write(target, name, replay, namespace):
    """Write into `target` in place: the user's own statement (`replay`, with `name` bound to target) when
    it runs on its own, else `target.mul_(1)` (same values, one more version). Returns what ran; an
    exception from the write carries it as `_agl_write`."""
    how = f"`{name}.mul_(1)` (standing in for the flagged write)"
    try:
        if replay is not None:
            scope = dict(namespace)
            scope[name] = target
            try:
                exec(replay, scope)  # noqa: S102 - the user's own statement, in the confirm sandbox
                return f"`{replay}`"
            except NameError:
                pass
            except Exception:
                how = f"`{replay}`"
                raise
        target.mul_(1)
        return how
    except Exception as exc:
        exc._agl_write = how  # type: ignore[attr-defined]  # a tag agl020 reads back
        raise


def check_saved_inplace(apply, builders, position, name, replay, namespace):
    """`position` None or ("output", None): write into the output; ("output", i): into element i of the
    returned tuple; an int: into the argument at that position (a non-leaf, as a caller's activation is).
    Backward must then fail on the saved tensor's version; with a clone() at the call it must run."""
    import torch

    observed, error = [], None
    output_index = position[1] if isinstance(position, tuple) else None
    if isinstance(position, tuple):
        position = None
    role = f"argument {position}" if position is not None else "its output"
    if output_index is not None:
        role = f"output {output_index}"
    for label, build in builders:
        for shape in INPUT_SHAPES:

            def run(clone):
                args = list(build(shape))
                if position is not None:
                    if position >= len(args) or not isinstance(args[position], torch.Tensor):
                        raise LookupError(f"argument {position} is not a tensor in {label}")
                    args[position] = args[position].clone()  # same dtype (a mask stays bool), not a leaf
                    target = args[position]
                    passed = [a.clone() if clone and i == position else a for i, a in enumerate(args)]
                    output = apply(*passed)
                else:
                    output = apply(*args)
                    if output_index is not None:
                        outputs = list(output)
                        if clone:
                            outputs[output_index] = outputs[output_index].clone()
                        output, target = tuple(outputs), outputs[output_index]
                    else:
                        if clone:
                            output = output.clone()
                        target = output
                return output, target

            try:
                output, target = run(False)
            except Exception as exc:  # noqa: BLE001 - forward rejecting this input shape
                error = f"{type(exc).__name__}: {exc}"
                continue
            if not isinstance(target, torch.Tensor):
                observed.append(f"{label}: {role} is not a tensor")
                break
            try:
                how = inplace_write(target, name, replay, namespace)
            except Exception as exc:  # noqa: BLE001
                observed.append(f"{label}: the in-place write on {role} raised {type(exc).__name__}: {exc}")
                break
            try:
                run_backward(output)
            except Exception as exc:  # noqa: BLE001
                message = f"{type(exc).__name__}: {exc}"
                if "modified by an inplace operation" not in message:
                    observed.append(f"{label}: backward raised {message}")
                    break
                fixed = ""
                try:
                    output, target = run(True)
                    inplace_write(target, name, replay, namespace)
                    run_backward(output)
                    fixed = "; with a .clone() at the call the same sequence runs"
                except Exception as again:  # noqa: BLE001
                    fixed = f"; with a .clone() at the call it still raised {type(again).__name__}"
                report(
                    "confirmed",
                    f"{label}, then {how} on {role}, then backward raised {message}{fixed}",
                )
            observed.append(f"{label}: {how} on {role}, then backward ran")
            break
    if not observed:
        report("inconclusive", f"forward failed on every synthesized input; last error: {error}")
    if any(o.endswith("backward ran") for o in observed):
        report("not-reproduced", "; ".join(observed))
    report("inconclusive", "; ".join(observed))

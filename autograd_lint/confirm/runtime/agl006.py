"""The confirm recipe of AGL006 forward-called-directly: the call as written next to `.apply` on the same
inputs; a grad_fn that is not `<F>Backward` (and the gradients each gives) is the proof.
"""

from .probes import INPUT_SHAPES, leaf_tensor, report, run_backward, show_values, tensors_in


class _stand_in_ctx:
    """What a caller's own ctx object offers: enough of FunctionCtx for forward to run."""

    def __init__(self):
        self.saved_tensors = ()
        self.needs_input_grad = (True,) * 16

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors

    def mark_dirty(self, *args):
        pass

    def mark_non_differentiable(self, *args):
        pass

    def set_materialize_grads(self, value):
        pass


def _direct_arguments(arguments, takes_ctx, shape):
    values = []
    for index, text in enumerate(arguments):
        if takes_ctx and index == 0:
            values.append(None if text == "None" else _stand_in_ctx())
        elif text is not None:
            values.append(eval(text))  # a literal as written at the call site
        else:
            values.append(leaf_tensor(shape, index))
    return values


def _input_grads(values):
    import torch

    return [v.grad for v in values if isinstance(v, torch.Tensor) and v.requires_grad]


def compare_direct_call(cls, method, arguments, takes_ctx, shown):
    import torch

    name = cls.__name__
    if method == "backward":
        try:
            for shape in INPUT_SHAPES:
                cls.backward(*_direct_arguments(arguments, takes_ctx, shape))
                break
        except Exception as exc:  # noqa: BLE001
            report("confirmed", f"{shown} raised {type(exc).__name__}: {exc}")
        report(
            "inconclusive", f"{shown} ran outside autograd; what it bypasses depends on how the caller uses its result"
        )

    error = None
    for shape in INPUT_SHAPES:
        direct = _direct_arguments(arguments, takes_ctx, shape)
        try:
            output = cls.forward(*direct)
        except Exception as exc:  # noqa: BLE001
            error = f"{type(exc).__name__}: {exc}"
            continue
        break
    else:
        applied = _direct_arguments(arguments, takes_ctx, INPUT_SHAPES[0])[1 if takes_ctx else 0 :]
        try:
            cls.apply(*applied)
        except Exception:  # noqa: BLE001 - forward fails either way: nothing to compare
            report("inconclusive", f"forward failed on every synthesized input; last error: {error}")
        report("confirmed", f"{shown} raised {error}, while {name}.apply on the same inputs runs")

    outputs = [t for t in tensors_in(output) if t.is_floating_point()]
    if not outputs:
        report("inconclusive", f"{shown} returned no floating-point tensor")
    grad_fn = outputs[0].grad_fn
    found = type(grad_fn).__name__ if grad_fn is not None else "None"
    if found == f"{name}Backward":
        report("not-reproduced", f"{shown}: the output's grad_fn is {found}")
    try:
        ran = run_backward(output)
    except Exception as exc:  # noqa: BLE001
        report(
            "confirmed",
            f"{shown}: the output's grad_fn is {found}, not {name}Backward, and backward through it raised {type(exc).__name__}: {exc}",
        )
    direct_grads = _input_grads(direct)
    applied = _direct_arguments(arguments, takes_ctx, shape)[1 if takes_ctx else 0 :]
    try:
        run_backward(cls.apply(*applied))
        applied_grads = _input_grads(applied)
    except Exception as exc:  # noqa: BLE001
        applied_grads = None
        through_apply = f"; through {name}.apply backward raised {type(exc).__name__}: {exc}"
    if applied_grads is not None:
        first_direct = direct_grads[0] if direct_grads else None
        first_applied = applied_grads[0] if applied_grads else None
        shown_direct = show_values(first_direct) if first_direct is not None else "None"
        shown_applied = show_values(first_applied) if first_applied is not None else "None"
        differ = (first_direct is None) != (first_applied is None) or (
            first_direct is not None and first_applied is not None and not torch.allclose(first_direct, first_applied)
        )
        through_apply = (
            f"; input 0 gets grad {shown_direct} from the direct call but {shown_applied} through {name}.apply"
            + ("" if differ else " (equal here: autograd's derivative of forward matches the custom backward)")
        )
    cut = "" if ran else " (no output requires grad: the graph is cut)"
    report("confirmed", f"{shown}: the output's grad_fn is {found}, not {name}Backward{cut}{through_apply}")

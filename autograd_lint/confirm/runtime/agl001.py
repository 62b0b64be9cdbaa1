"""The confirm recipe of AGL001 shared-state-in-backward: two applications in one graph, and a value changed
before backward.
"""

from .probes import report, run_backward, run_forward, show_values


def _values_like(current, known=()):
    """Two distinct values of the same kind as the module's own, near it, so that whatever else
    the code assumes about it (its sign, its order against another bound) still holds. `known` are
    the literals the module itself compares it with or writes to it (for strings and enums)."""
    import torch

    choices = [v for v in dict.fromkeys([current, *known]) if isinstance(v, type(current))]
    if isinstance(current, str):
        return (choices[0], choices[1]) if len(choices) >= 2 else None

    if isinstance(current, bool):
        return True, False
    if isinstance(current, torch.Tensor):
        base = float(current.detach().flatten()[0]) if current.numel() else 0.0
        first, second = (0.5 * base, 1.5 * base) if base else (0.3, 0.7)
        return (
            torch.full_like(current, first, dtype=torch.float64),
            torch.full_like(current, second, dtype=torch.float64),
        )
    if isinstance(current, (int, float)) and current:
        return 0.5 * current, 1.5 * current
    if current is None or isinstance(current, (int, float)):
        return 0.3, 0.7
    return None


def check_shared_state(apply, builders, get, set_, shown, known=()):
    """Two applications with different values in one graph, and a value changed before backward,
    each compared with an isolated run of the first value."""
    import torch

    try:
        current = get()
    except Exception:  # noqa: BLE001
        current = None
    values = _values_like(current, known)
    if values is None:
        report("inconclusive", f"{shown} holds a {type(current).__name__}, not a number the harness can vary")
    first, second = values
    set_(first)
    runs = run_forward(apply, builders)
    for label, build, shape, output in runs:
        try:
            run_backward(output)
            break
        except Exception as exc:  # noqa: BLE001 - try the next call variant
            error = f"{type(exc).__name__}: {exc}"
    else:
        report("inconclusive", f"backward failed on every synthesized input: {error}")

    def first_input_grad(setting_values, change_before_backward=None):
        outputs, leaves = [], []
        for index, value in enumerate(setting_values):
            set_(value)
            args = build(shape)
            leaves.append(args[0])
            outputs.append(apply(*args))
        if change_before_backward is not None:
            set_(change_before_backward)
        if not run_backward(outputs):
            report("inconclusive", "the output does not require grad, so backward never runs")
        grad = leaves[0].grad
        return torch.zeros_like(leaves[0]) if grad is None else grad

    def differs(a, b):
        # The first input's gradient comes from its own application only: same value, same bits.
        return not torch.allclose(a, b, rtol=1e-9, atol=0.0, equal_nan=True)

    def where_different(a, b):
        index = ((a - b).abs() > 0) | (a.isnan() != b.isnan())
        return show_values(a[index]), show_values(b[index])

    isolated = first_input_grad([first])
    together = first_input_grad([first, second])
    if differs(isolated, together):
        got, expected = where_different(together, isolated)
        report(
            "confirmed",
            f"two applications in one graph ({shown} = {first} then {second}): the first input's gradient is "
            f"{got} where it is {expected} when applied alone; backward used the value written for the "
            f"second application",
        )
    drifted = first_input_grad([first], change_before_backward=second)
    if differs(isolated, drifted):
        got, expected = where_different(drifted, isolated)
        report(
            "confirmed",
            f"{shown} changed from {first} to {second} between forward and backward: gradient "
            f"{got} instead of {expected}",
        )
    report(
        "not-reproduced", f"gradients did not depend on when {shown} was written ({show_values(isolated)} in every run)"
    )

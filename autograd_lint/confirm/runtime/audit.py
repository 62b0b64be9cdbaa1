"""The gradient audit's recipe (`autograd-lint audit`): gradcheck, in float64, of one Function on the inputs
confirm's builders synthesize, then gradgradcheck unless backward is once-differentiable.

The outcome travels as a `confirmed` report whose evidence is a JSON object (`verdict`: verified,
wrong-gradient, ste or inconclusive, and the details); an `inconclusive` report (forward rejecting every
synthesized input, a missing dependency, the runner's limits) is the runner's own.
"""

import json
from contextlib import contextmanager

from . import probes
from .probes import report, run_forward, tensors_in

EPSILON = 1e-6  # gradcheck's default finite-difference step
ATOL, RTOL = 1e-5, 1e-3  # gradcheck's default tolerances
# Inputs forward accepts that are tried in turn while backward rejects them (a bias of the wrong rank).
MAX_CANDIDATES = 6
# An input at least this share of whose elements move no output (their numerical Jacobian column is zero) is one
# forward is piecewise constant in.
PIECEWISE_CONSTANT_SHARE = 0.9
# A numerical Jacobian of at most this rank per element is a shared scale's only (sign(x) * mean|x|): no
# element's own derivative is in it.
LOW_RANK_SHARE = 0.5
# _agrees_smoothed: the step of its central differences (of the input's largest magnitude), how many seeded
# directions it tries and the relative error it allows (rounding to int8 leaves a few percent at that step).
SMOOTHING_STEP = 0.25
SMOOTHING_DIRECTIONS = 3
SMOOTHED_RTOL = 0.1
# A central difference at least this many times backward's largest gradient (and 1) crossed a rounding step.
JUMP_FACTOR = 10
# _with_longer_last_dimension: the largest first float tensor it doubles the last dimension of.
LONGER_CHECK_MAX_ELEMENTS = 64
# The share of the entries where backward and central differences differ that must be flat or jumps.
QUANTIZED_SHARE = 0.5
# What a synthesized tensor backward does not differentiate is replaced with when it may be a number (an eps, a
# scale): neither 0 nor 1, so that a factor it should bring still shows.
UNDIFFERENTIATED_NUMBER = 0.5
GRAD_OUTPUT_SCALE = 2.5  # the incoming gradient backward must scale its result with (neither 0 nor 1)
RNG_SEED = 0
# How far two backward runs on the same inputs may differ (a GPU's atomic adds in another order), far below a
# gradient drawn from other random numbers.
NONDETERMINISM_TOLERANCE = (
    1e-10  # every forward call starts from it, so that a random forward draws the same mask each time
)


def audit(apply, builders, names, step_ops_in_forward, once_differentiable, declared_checks=()):
    """Report the audit's outcome for `apply` (`Cls.apply`); `names` are forward's inputs (for the message),
    `step_ops_in_forward` whether forward's text uses round/sign/floor/comparisons (a straight-through
    estimator is then possible), `once_differentiable` whether backward is decorated so, `declared_checks`
    what the class's declarations ask for beyond gradcheck: `jvp` (forward mode), `vmap`."""
    apply = _OnCopies(apply)
    # A forward that rejects negative inputs (`if (rate <= 0).any(): raise`) accepts them made positive.
    positive = [(label, lambda shape, build=build: _positive(build(shape))) for label, build in builders]
    positive_builds = {build for _, build in positive}
    tried = []
    for label, build, shape, _ in run_forward(apply, builders + positive, every_shape=True)[:MAX_CANDIDATES]:
        args, outcome = _check_in_domain(apply, _float64(build(shape)), names, step_ops_in_forward)
        if build in positive_builds:
            outcome = {**outcome, "detail": outcome["detail"] + " (with positive inputs: forward rejects the others)"}
        tried.append((label, args, outcome))
        if not tried[-1][2]["detail"].startswith(("forward failed", "backward failed")):
            break
    else:  # every input forward accepted failed there or in backward: say so for the first one
        tried = tried[:1]
    label, args, outcome = tried[-1]
    if outcome["verdict"] == "wrong-gradient" and outcome.get("order") == 1:
        # A kink hit by chance fails at one point only: the same inputs moved away from zero must fail too.
        shifted = _check(apply, _shifted(args), names, step_ops_in_forward)
        if shifted["verdict"] == "verified":
            outcome = {**shifted, "detail": shifted["detail"] + " (after a retry with inputs moved off a kink)"}
            args = _shifted(args)
    synthesized = not (probes.inputs_origin or "").startswith("harvested") or label != builders[0][0]
    if outcome["verdict"] == "wrong-gradient" and outcome.get("order") == 1 and synthesized:
        args, outcome = _with_numbers(apply, args, outcome, names, step_ops_in_forward)
    if outcome["verdict"] == "wrong-gradient" and outcome.get("order") == 1 and synthesized:
        args, outcome = _in_clamped_domain(apply, args, outcome, names, step_ops_in_forward)
    if outcome["verdict"] == "verified":
        args, outcome = _with_ones_changed(apply, args, outcome, names, step_ops_in_forward)
    if outcome["verdict"] == "verified" and synthesized:
        args, outcome = _with_longer_last_dimension(apply, args, outcome, names, step_ops_in_forward)
    # Whatever the garbage happened to hold decided the verdict (zeros look flat, a repeat looks reentrant).
    if outcome["verdict"] != "inconclusive" and _reads_uninitialized_memory(apply, args, outcome.get("inputs", ())):
        outcome = {
            "verdict": "inconclusive",
            "detail": "forward's output or backward's gradient is memory nothing wrote (new_empty, torch.empty): "
            f"no gradient to check on these inputs ({outcome['verdict']}: {outcome['detail']})",
        }
    if outcome["verdict"] == "verified" and "jvp" in declared_checks:
        outcome = _check_forward_mode(apply, args, outcome)
    if outcome["verdict"] == "verified" and "vmap" in declared_checks:
        outcome = _check_vmap(apply, args, outcome)
    if outcome["verdict"] == "verified" and not once_differentiable:
        outcome = _check_second_order(apply, args, outcome)
    if probes.group_started and outcome["verdict"] in ("verified", "wrong-gradient"):
        # At world size 1 every collective is an identity: gradients there say nothing of a real group's.
        outcome = {
            "verdict": "inconclusive",
            "detail": f"ran in a one-process group (world size 1), where collectives change no values: "
            f"{outcome['verdict']} there ({outcome['detail']})",
        }
    outcome["call"] = label
    outcome["arguments"] = [_source_of(value) for value in args]
    outcome["origin"] = probes.inputs_origin
    report("confirmed", json.dumps(outcome), with_origin=False)


def _check_in_domain(apply, args, names, step_ops_in_forward):
    """(the inputs checked, the outcome): NaN from log/sqrt/pow of negatives means the Function's domain is
    the positive numbers, so those inputs are tried made positive; NaN there too (`log(1 - p)`, `acos(x)`)
    means probabilities or cosines, so they are tried in (0, 1)."""
    outcome = _check(apply, args, names, step_ops_in_forward)
    if outcome["verdict"] != "domain":
        return args, outcome
    positive = _positive(args)
    outcome = _check(apply, positive, names, step_ops_in_forward)
    if outcome["verdict"] != "domain":
        return positive, {
            **outcome,
            "detail": outcome["detail"] + " (with positive inputs: NaN on the synthesized ones)",
        }
    unit = _in_unit_interval(args)
    outcome = _check(apply, unit, names, step_ops_in_forward)
    if outcome["verdict"] == "domain":
        return args, {
            "verdict": "inconclusive",
            "detail": "NaN in forward, also with positive inputs and inputs in (0, 1)",
        }
    detail = outcome["detail"] + " (with inputs in (0, 1): NaN on the synthesized and the positive ones)"
    return unit, {**outcome, "detail": detail}


def _with_numbers(apply, args, outcome, names, step_ops_in_forward):
    """A synthesized float tensor that backward gives no gradient for may stand for a Python number the code
    does not show (`self.eps`, a scale), or for a bool mask (`(pred - target) * mask`, whose backward may
    leave out a factor mask * mask that only a 0/1 mask makes 1): it changes forward's math, so that a right
    backward seems wrong. The wrong gradient stands unless it disappears with those inputs made numbers, or
    made masks."""
    differentiated = set(outcome.get("inputs", []))
    positions = [p for p, v in enumerate(args) if _is_float_tensor(v) and p not in differentiated]
    if not positions:
        return args, outcome
    shown = ", ".join(f"`{_name(names, p)}`" for p in positions)
    numbers = [UNDIFFERENTIATED_NUMBER if p in positions else v for p, v in enumerate(args)]
    masks = [v.detach() > 0 if p in positions else v for p, v in enumerate(args)]
    for changed, what in ((numbers, "a number"), (masks, "a bool mask")):
        retried = _check(apply, changed, names, step_ops_in_forward)
        if retried["verdict"] in ("verified", "ste"):
            return changed, {
                **retried,
                "detail": retried["detail"] + f" (with {shown} {what}, not a synthesized tensor)",
            }
    return args, outcome


def _with_ones_changed(apply, args, outcome, names, step_ops_in_forward):
    """A number argument of 1 (a synthesized scale, a repeat count, a group size, a default `beta=1.0`) hides a
    factor backward forgot to multiply by: the verified inputs are checked again with those numbers 2, and a
    wrong gradient there is the verdict (one that forward rejects, or that fails otherwise, changes nothing)."""
    positions = [p for p, v in enumerate(args) if type(v) in (int, float) and v == 1]
    if not positions:
        return args, outcome
    twos = [type(v)(2) if p in positions else v for p, v in enumerate(args)]
    retried = _check(apply, _float64(twos), names, step_ops_in_forward)
    if retried["verdict"] != "wrong-gradient":
        return args, outcome
    shown = ", ".join(f"`{_name(names, p)}`" for p in positions)
    return _float64(twos), {**retried, "detail": retried["detail"] + f" (with {shown} 2: at 1 it hid the error)"}


def _with_longer_last_dimension(apply, args, outcome, names, step_ops_in_forward):
    """A synthesized shape may make a window, a group or an overlap trivial (an unfold whose kernel spans the
    whole input, so that a backward that assigns where windows overlap never meets an overlap): the verified
    inputs are checked again with the float tensors that share the first one's last dimension twice as long
    there (for a small first tensor only: a large one's windows are not trivial, and doubling it costs). A wrong gradient there is the verdict; forward or backward rejecting that shape changes nothing."""
    import torch

    floats = [v for v in args if _is_float_tensor(v) and v.dim() > 0]
    if not floats or floats[0].numel() > LONGER_CHECK_MAX_ELEMENTS:
        return args, outcome
    size = floats[0].shape[-1]
    longer = [
        torch.cat([v.detach(), v.detach() * 0.5 + 0.125], dim=-1).requires_grad_(True)
        if _is_float_tensor(v) and v.dim() > 0 and v.shape[-1] == size
        else v
        for v in args
    ]
    retried = _check(apply, longer, names, step_ops_in_forward)
    if retried["verdict"] != "wrong-gradient" or retried.get("order") != 1:
        return args, outcome
    retried_shifted = _check(apply, _shifted(longer), names, step_ops_in_forward)
    if retried_shifted["verdict"] != "wrong-gradient":
        return args, outcome
    detail = retried["detail"] + f" (with the last dimension {2 * size}: at {size} it hid the error)"
    return longer, {**retried, "detail": detail}


# What a forward clamps its input into its domain with (`p.clamp(eps, 1 - eps)` before a log).
CLAMP_OPS = ("clamp", "clamp_min", "clamp_max", "clip")


def _in_clamped_domain(apply, args, outcome, names, step_ops_in_forward):
    """A forward that clamps its input into a domain (`torch.log(p.clamp(eps, 1 - eps))`, a sqrt of
    `x.clamp_min(eps)`) with a backward that ignores the clamp is right inside that domain: when forward run
    with the clamps taken away gives NaN or infinity on these inputs, they are outside it, and the wrong
    gradient stands only if it stays with inputs in (0, 1) and with positive inputs too (and is shown there).
    A clamp that is the math itself (a ReLU's `clamp(min=0)`) leaves forward finite without it, so its wrong
    gradient stands."""
    if not _clamps_into_domain(apply, args):
        return args, outcome
    wrong_inside = None  # the evidence from inside the domain, where nothing is clamped flat
    # Inputs in (0, 1) are inside a probability's domain and a positive number's alike: tried first.
    for moved, where in ((_in_unit_interval(args), "inputs in (0, 1)"), (_positive(args), "positive inputs")):
        retried = _check(apply, moved, names, step_ops_in_forward)
        detail = retried["detail"] + f" (with {where}: forward clamps the synthesized ones into its domain)"
        if retried["verdict"] in ("verified", "ste"):
            return moved, {**retried, "detail": detail}
        if retried["verdict"] == "wrong-gradient" and wrong_inside is None:
            wrong_inside = moved, {**retried, "detail": detail}
    return wrong_inside or (args, outcome)


def _clamps_into_domain(apply, args):
    import torch

    patched = [(owner, name, getattr(owner, name)) for owner in (torch, torch.Tensor) for name in CLAMP_OPS]
    patched += [(torch.Tensor, name + "_", getattr(torch.Tensor, name + "_")) for name in CLAMP_OPS]
    try:
        with torch.no_grad():
            clamped = tensors_in(apply(*args))
        for owner, name, _ in patched:
            setattr(owner, name, lambda x, *rest, **options: x)
        with torch.no_grad():
            unclamped = tensors_in(apply(*args))
    except Exception:  # noqa: BLE001 - forward failing without its clamps: no sign of a domain
        return False
    finally:
        for owner, name, original in patched:
            setattr(owner, name, original)
    return any(
        o.is_floating_point() and bool(torch.isfinite(c).all()) and not bool(torch.isfinite(o).all())
        for c, o in zip(clamped, unclamped)
    )


class _OnCopies:
    """`apply` called on copies of the float tensors that require grad: a forward that writes into its input
    (with mark_dirty) may not write into a leaf, and the caller's tensor stays as it was."""

    def __init__(self, apply):
        self.apply = apply
        self.function_class = getattr(apply, "__self__", None)  # the class whose apply this is (`Cls.apply`)

    def __call__(self, *args):
        return self.apply(
            *[value.clone() if _is_float_tensor(value) and value.requires_grad else value for value in args]
        )


def _is_float_tensor(value):
    import torch

    return isinstance(value, torch.Tensor) and value.is_floating_point()


def _float64(args):
    import torch

    return [
        value.detach().to(torch.float64).requires_grad_(True)
        if isinstance(value, torch.Tensor) and value.is_floating_point()
        else value
        for value in args
    ]


def _mapped(args, change):
    import torch

    return [
        change(value.detach()).requires_grad_(True)
        if isinstance(value, torch.Tensor) and value.is_floating_point()
        else value
        for value in args
    ]


def _shifted(args):
    return _mapped(args, lambda x: x * 1.1 + 0.05 * x.sign())


def _positive(args):
    return _mapped(args, lambda x: x.abs() + 0.1)


def _in_unit_interval(args):
    """Each value moved into (0.05, 0.95), in the same order: probabilities away from 0 and 1."""
    return _mapped(args, lambda x: 0.05 + 0.9 * x.sigmoid())


@contextmanager
def _seeded():
    """Every forward call draws the same random numbers (on the device too), and leaves the RNG as it was."""
    import torch

    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if probes.DEVICE == "cuda" else []):
        torch.manual_seed(RNG_SEED)
        yield


def _differentiable(apply, args, positions, kept=None):
    """f(*inputs at `positions`) -> the float outputs that require grad, as gradcheck differentiates them
    (or those at the positions `kept`: under forward-mode AD no output requires grad). Every tensor is
    cloned first, so that a forward that writes into its input (with mark_dirty) never writes into a leaf,
    nor into the caller's tensor."""
    import torch

    def function(*inputs):
        call = [value.clone() if isinstance(value, torch.Tensor) else value for value in args]
        for position, tensor in zip(positions, inputs):
            call[position] = tensor.clone()
        with _seeded():
            outputs = tensors_in(apply(*call))
        if kept is not None:
            return tuple(outputs[index] for index in kept)
        return tuple(o for o in outputs if o.is_floating_point() and o.requires_grad)

    return function


def _check(apply, args, names, step_ops_in_forward):
    """One gradcheck: {"verdict", "detail", ...}; verdict `domain` asks the caller to retry with positive inputs."""
    import torch

    candidates = [i for i, v in enumerate(args) if isinstance(v, torch.Tensor) and v.is_floating_point()]
    inputs = [args[i] for i in candidates]
    function = _differentiable(apply, args, candidates)
    try:
        outputs = function(*inputs)
    except Exception as exc:  # noqa: BLE001 - the user's forward rejecting these inputs
        return {"verdict": "inconclusive", "detail": f"forward failed: {type(exc).__name__}: {exc}"}
    if not outputs:
        return {"verdict": "inconclusive", "detail": "no output requires grad: nothing to check"}
    if any(torch.isnan(o).any() for o in outputs):
        return {"verdict": "domain", "detail": "NaN in forward"}
    try:
        grads = torch.autograd.grad(outputs, inputs, [torch.ones_like(o) for o in outputs], allow_unused=True)
    except Exception as exc:  # noqa: BLE001 - backward raising is another rule's finding, not a wrong value
        return {"verdict": "inconclusive", "detail": f"backward failed: {type(exc).__name__}: {exc}"}
    # An input whose gradient backward declares as None is not differentiable by design (a scale, a mask).
    positions = [p for p, g in zip(candidates, grads) if g is not None]
    if not positions:
        return {"verdict": "inconclusive", "detail": "backward returns no gradient for any input"}
    inputs = [args[p] for p in positions]
    function = _differentiable(apply, args, positions)
    try:
        analytical = torch.autograd.functional.jacobian(function, tuple(inputs))
    except Exception as exc:  # noqa: BLE001
        return {"verdict": "inconclusive", "detail": f"backward failed: {type(exc).__name__}: {exc}"}
    numerical = _numerical_jacobian(function, inputs)
    if any(torch.isnan(n).any() for n in numerical):
        return {"verdict": "domain", "detail": "NaN in the numerical Jacobian"}
    checked = ", ".join(_name(names, p) for p in positions)
    mismatches = []
    for index, position in enumerate(positions):
        a = torch.cat([per_output[index].reshape(-1, inputs[index].numel()) for per_output in analytical])
        n = numerical[index]
        if torch.allclose(a, n, rtol=RTOL, atol=ATOL, equal_nan=False):
            continue
        error = (a - n).abs()
        max_abs = float(error.max())
        max_rel = float((error / n.abs().clamp_min(ATOL)).max())
        # The share of the input's elements that do not move any output: the forward is flat there.
        constant = float((n.abs() <= ATOL).all(dim=0).double().mean())
        mismatches.append((position, max_abs, max_rel, constant, a, n))
    if not mismatches:
        unscaled = _not_scaling_with_grad_output(function, inputs)
        if unscaled is not None:
            index, max_abs, max_rel = unscaled
            if all(_passes_through(n) for n in numerical):
                return {
                    "verdict": "ste",
                    "detail": f"forward passes the input through and backward changes its gradient "
                    f"({_name(names, positions[index])}: not in proportion, a gradient clipper): by design",
                    "inputs": positions,
                }
            return {
                "verdict": "wrong-gradient",
                "order": 1,
                "input": _name(names, positions[index]),
                "max_abs": max_abs,
                "max_rel": max_rel,
                "detail": f"the gradient of `{_name(names, positions[index])}` does not scale with the incoming "
                f"gradient (backward given {GRAD_OUTPUT_SCALE} times the gradient)",
                "inputs": positions,
            }
        try:
            torch.autograd.gradcheck(
                function, tuple(inputs), eps=EPSILON, atol=ATOL, rtol=RTOL, nondet_tol=NONDETERMINISM_TOLERANCE
            )
        except Exception as exc:  # noqa: BLE001 - gradcheck's other checks (reentrancy, undefined grads)
            if "Backward is not reentrant" in str(exc):
                # Backward draws its own random numbers (a dropout mask drawn again): each run another gradient.
                return {
                    "verdict": "wrong-gradient",
                    "order": 1,
                    "check": "reentrant",
                    "detail": f"gradcheck: {_first_line(exc)}",
                    "inputs": positions,
                }
            return {"verdict": "inconclusive", "detail": f"gradcheck: {_first_line(exc)}"}
        return {"verdict": "verified", "detail": f"gradcheck passed for {checked}", "inputs": positions}
    flat = all(bool((n.abs() <= ATOL).all()) for *_, n in mismatches)
    # Flat at gradcheck's step, yet moved by a large change of the input: forward samples or steps on it.
    samples = flat and all(_moves_output(function, inputs, positions.index(m[0])) for m in mismatches)
    if (
        samples
        or (step_ops_in_forward and all(_straight_through(constant, a, n) for _, _, _, constant, a, n in mismatches))
        or (step_ops_in_forward and _rounding_as_identity(apply, args, positions, analytical))
        or (
            step_ops_in_forward
            and all(_flat_or_jumps_where_differing(m[4], m[5]) for m in mismatches)
            and all(_agrees_smoothed(function, inputs, positions.index(m[0]), m[4]) for m in mismatches)
        )
    ):
        kinds = ", ".join(f"{_name(names, p)}: {_surrogate_kind(a)}" for p, _, _, _, a, _ in mismatches)
        return {
            "verdict": "ste",
            "detail": f"forward is piecewise constant in {kinds} backward (straight-through estimator)",
            "inputs": positions,
        }
    if all(_passes_through(n) for *_, n in mismatches) and all(
        _passes_through_other_shapes(function, inputs, positions.index(m[0])) for m in mismatches
    ):
        shown = ", ".join(f"{_name(names, m[0])}: {_gradient_change(m[4])}" for m in mismatches)
        return {
            "verdict": "ste",
            "detail": f"forward passes the input through and backward changes its gradient ({shown}): "
            "a gradient-reversal or gradient-scaling layer by design",
            "inputs": positions,
        }
    if flat:
        ignored = ", ".join(f"`{_name(names, m[0])}`" for m in mismatches)
        return {
            "verdict": "ste",
            "detail": f"forward's output does not depend on {ignored} and backward gives it a gradient: "
            "an auxiliary loss attached to the graph by design",
            "inputs": positions,
        }
    guide = _input_only_backward_reads(apply, args, positions, inputs, analytical)
    if guide is not None:
        return {
            "verdict": "ste",
            "detail": f"backward reads `{_name(names, guide)}`, which forward's output does not depend on: "
            "a surrogate gradient by design",
            "inputs": positions,
        }
    if step_ops_in_forward:  # name an input whose gradient is wrong, not a quantized one's straight-through one
        mismatches = [
            m for m in mismatches if not _agrees_smoothed(function, inputs, positions.index(m[0]), m[4])
        ] or mismatches
    position, max_abs, max_rel, *_ = max(mismatches, key=lambda m: m[1])
    return {
        "verdict": "wrong-gradient",
        "order": 1,
        "input": _name(names, position),
        "max_abs": max_abs,
        "max_rel": max_rel,
        "detail": f"the gradient of `{_name(names, position)}` differs from the numerical one",
        "inputs": positions,
        "wrong_inputs": [_name(names, p) for p, *_ in mismatches],
    }


def _reads_uninitialized_memory(apply, args, positions):
    """Whether forward's outputs or backward's gradients hold memory nothing wrote (`x.new_empty(shape)`, an
    op meant for empty tensors): with torch's deterministic mode filling such memory with NaN, they hold NaN,
    where the inputs hold none. Such values are garbage that differs from run to run, not a gradient."""
    import torch

    if not positions:
        return False
    inputs = [args[p] for p in positions]
    function = _differentiable(apply, args, positions)
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True  # type: ignore[attr-defined]
    try:
        outputs = function(*inputs)
        if any(torch.isnan(o).any() for o in outputs):
            return True
        grads = torch.autograd.grad(outputs, inputs, [torch.ones_like(o) for o in outputs], allow_unused=True)
        return any(g is not None and bool(torch.isnan(g).any()) for g in grads)
    except Exception:  # noqa: BLE001 - an op deterministic mode refuses: no answer, the verdict stands
        return False
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.utils.deterministic.fill_uninitialized_memory = fill  # type: ignore[attr-defined]


def _not_scaling_with_grad_output(function, inputs):
    """(input index, max abs error, max relative error) where backward's gradient, given GRAD_OUTPUT_SCALE
    times the incoming gradient, is not that many times its gradient for ones; None if it is everywhere.
    A Jacobian compared row by row meets incoming gradients of 1 only, which a backward that forgets to
    multiply by it gets right for a scalar output (a loss)."""
    import torch

    def gradients(scale):
        outputs = function(*inputs)
        grads = torch.autograd.grad(outputs, inputs, [torch.full_like(o, scale) for o in outputs], allow_unused=True)
        return [torch.zeros_like(x) if g is None else g.detach() for x, g in zip(inputs, grads)]

    for index, (once, scaled) in enumerate(zip(gradients(1.0), gradients(GRAD_OUTPUT_SCALE))):
        expected = GRAD_OUTPUT_SCALE * once
        if not torch.allclose(scaled, expected, rtol=RTOL, atol=ATOL):
            error = (scaled - expected).abs()
            return index, float(error.max()), float((error / expected.abs().clamp_min(ATOL)).max())
    return None


def _check_forward_mode(apply, args, outcome):
    """gradcheck of the declared jvp (forward-mode AD) against the numerical derivative."""
    import torch
    from torch.autograd.gradcheck import GradcheckError

    positions = outcome["inputs"]
    inputs = tuple(args[p] for p in positions)
    outputs = tensors_in(apply(*args))
    kept = [index for index, o in enumerate(outputs) if o.is_floating_point() and o.requires_grad]
    function = _differentiable(apply, args, positions, kept)
    try:
        torch.autograd.gradcheck(
            function, inputs, eps=EPSILON, atol=ATOL, rtol=RTOL, check_forward_ad=True, check_backward_ad=False
        )
    except GradcheckError as exc:
        return {
            "verdict": "wrong-gradient",
            "order": 1,
            "check": "jvp",
            "detail": f"forward-mode check of jvp: {_first_line(exc)}",
            "inputs": positions,
        }
    except Exception as exc:  # noqa: BLE001 - jvp raising, forward AD unsupported by an op forward uses
        return {**outcome, "detail": outcome["detail"] + f"; jvp not checked: {_first_line(exc)}"}
    return {**outcome, "detail": outcome["detail"] + ", forward mode (jvp)"}


VMAP_SCALES = (1.0, 0.8, 1.25)  # the batch vmap runs over: the inputs, scaled (a positive input stays positive)


def _check_vmap(apply, args, outcome):
    """`torch.func.vmap` over a batch of the differentiated inputs against forward run on each in a loop:
    the declared vmap staticmethod (or the generated rule) must give what the loop gives."""
    import torch

    positions = outcome["inputs"]

    def single(*inputs):
        call = [value.detach().clone() if isinstance(value, torch.Tensor) else value for value in args]
        for position, tensor in zip(positions, inputs):
            call[position] = tensor
        return tuple(tensors_in(apply(*call)))

    variants = [[args[p].detach() * scale for p in positions] for scale in VMAP_SCALES]
    try:
        looped = [single(*variant) for variant in variants]
        mapped = torch.func.vmap(single)(*[torch.stack(batch) for batch in zip(*variants)])
    except Exception as exc:  # noqa: BLE001 - a forward vmap cannot run (data-dependent control flow, .item())
        return {**outcome, "detail": outcome["detail"] + f"; vmap not checked: {_first_line(exc)}"}
    for index, got in enumerate(mapped):
        expected = torch.stack([outputs[index] for outputs in looped])
        if got.shape != expected.shape or not torch.allclose(got, expected, rtol=RTOL, atol=ATOL):
            shown = (
                f"shape {list(got.shape)}, expected {list(expected.shape)}"
                if got.shape != expected.shape
                else f"max abs error {float((got - expected).abs().max()):.3g}"
            )
            return {
                "verdict": "wrong-gradient",
                "order": 1,
                "check": "vmap",
                "scales": VMAP_SCALES,
                "detail": f"vmap check: output {index} under torch.func.vmap differs from forward run per "
                f"batch element ({shown})",
                "inputs": positions,
            }
    return {**outcome, "detail": outcome["detail"] + ", vmap"}


def _check_second_order(apply, args, outcome):
    """gradgradcheck on the inputs gradcheck verified; a backward whose result is not differentiable is
    left as it is (that is AGL010's finding, not a wrong value)."""
    import torch
    from torch.autograd.gradcheck import GradcheckError

    positions = outcome["inputs"]
    function = _differentiable(apply, args, positions)
    try:
        torch.autograd.gradgradcheck(function, tuple(args[p] for p in positions), eps=EPSILON, atol=ATOL, rtol=RTOL)
    except GradcheckError as exc:
        if not _backward_is_differentiable(function, tuple(args[p] for p in positions)):
            return {
                **outcome,
                "detail": outcome["detail"] + "; second order not checked: backward's result is not "
                "differentiable (it leaves autograd)",
            }
        if _saves_intermediates(apply, args, positions):
            return {
                **outcome,
                "detail": outcome["detail"] + "; second order not checked: forward saves an intermediate tensor "
                "for backward, which double backward cannot differentiate through",
            }
        return {
            "verdict": "wrong-gradient",
            "order": 2,
            "detail": f"gradgradcheck: {_first_line(exc)}",
            "inputs": positions,
        }
    except Exception as exc:  # noqa: BLE001
        return {**outcome, "detail": outcome["detail"] + f"; second order not checked: {_first_line(exc)}"}
    return {**outcome, "detail": outcome["detail"] + " and gradgradcheck"}


def _backward_is_differentiable(function, inputs):
    """Whether any gradient backward returns under create_graph requires grad: one computed outside autograd
    (`torch.autograd.grad` without create_graph, a no_grad block, numpy) is not, and double backward through
    it is not defined: AGL010's finding, not a wrong value."""
    import torch

    try:
        outputs = function(*inputs)
        grads = torch.autograd.grad(
            outputs,
            inputs,
            [torch.ones_like(o, requires_grad=True) for o in outputs],
            create_graph=True,
            allow_unused=True,
        )
    except Exception:  # noqa: BLE001 - backward failing under create_graph: let gradgradcheck's error stand
        return True
    return any(g is not None and g.requires_grad for g in grads)


def _saves_intermediates(apply, args, positions):
    """Whether forward keeps for backward (with save_for_backward or as a ctx attribute) a float tensor that is
    neither an input nor an output: computed where autograd does not record, it has no path to the inputs,
    so double backward misses whatever backward derives from it (a LayerNorm's saved mean and rstd). That
    is how torch's custom Functions work unless forward returns it as an output, not a wrong value."""
    call = [
        value.detach().clone().requires_grad_(position in positions) if _is_float_tensor(value) else value
        for position, value in enumerate(args)
    ]
    # Inputs not differentiated are saved as they are; the differentiated ones and the outputs require grad.
    undifferentiated = {v.data_ptr() for p, v in enumerate(call) if _is_float_tensor(v) and p not in positions}
    try:
        nodes = {o.grad_fn for o in tensors_in(apply(*call)) if o.grad_fn is not None}
    except Exception:  # noqa: BLE001
        return False
    kept = []
    for node in nodes:
        try:
            kept += list(getattr(node, "saved_tensors", ()))
        except RuntimeError:  # freed or never saved
            pass
        kept += tensors_in(list(getattr(node, "__dict__", {}).values()))
    return any(_is_float_tensor(t) and not t.requires_grad and t.data_ptr() not in undifferentiated for t in kept)


def _numerical_jacobian(function, inputs):
    """Central differences, one matrix (outputs' elements x input's elements) per input. The inputs keep
    requiring grad (so that the same outputs count as differentiable); only the nudges are unrecorded."""
    import torch

    base = [x.detach().clone().requires_grad_(True) for x in inputs]
    matrices = []
    for x in base:
        columns = []
        flat = x.view(-1)
        for element in range(flat.numel()):
            original = float(flat[element])
            with torch.no_grad():
                flat[element] = original + EPSILON
            plus = _flat(function(*base))
            with torch.no_grad():
                flat[element] = original - EPSILON
            minus = _flat(function(*base))
            with torch.no_grad():
                flat[element] = original
            columns.append((plus - minus) / (2 * EPSILON))
        matrices.append(torch.stack(columns, dim=1))
    return matrices


def _flat(outputs):
    import torch

    return torch.cat([o.detach().reshape(-1).to(torch.float64) for o in outputs])


# What a straight-through estimator takes as the identity in forward when it differentiates it.
ROUNDING_OPS = ("round", "floor", "ceil", "trunc", "sign")


def _rounding_as_identity(apply, args, positions, analytical):
    """Whether backward's Jacobian is that of forward run with every round/floor/ceil/trunc/sign taken as the
    identity in the derivative (`x + (round(x) - x).detach()`): the straight-through estimator of a
    quantizer whose other inputs get their gradient through it too (LSQ's learned step size)."""
    import torch

    function_class = getattr(apply, "function_class", None)
    if function_class is None:
        return False
    patched = [(owner, name, getattr(owner, name)) for owner in (torch, torch.Tensor) for name in ROUNDING_OPS]

    def surrogate(*inputs):
        call = [value.detach().clone() if isinstance(value, torch.Tensor) else value for value in args]
        for position, tensor in zip(positions, inputs):
            call[position] = tensor
        context = _ForwardContext()
        with _seeded():
            new_style = function_class.setup_context is not torch.autograd.Function.setup_context
            outputs = tensors_in(function_class.forward(*call) if new_style else function_class.forward(context, *call))
        return tuple(
            o
            for o in outputs
            if o.is_floating_point() and o.requires_grad and all(o is not n for n in context.non_differentiable)
        )

    rounded = []

    def straight_through(original):
        def identity_in_derivative(x, *rest, **options):
            rounded.append(True)
            return x + (original(x, *rest, **options) - x).detach()

        return identity_in_derivative

    try:
        for owner, name, original in patched:
            setattr(owner, name, straight_through(original))
        with torch.enable_grad():
            expected = torch.autograd.functional.jacobian(surrogate, tuple(args[p] for p in positions))
    except Exception:  # noqa: BLE001 - a forward that cannot run outside apply: no surrogate to compare with
        return False
    finally:
        for owner, name, original in patched:
            setattr(owner, name, original)
    if len(expected) != len(analytical):
        return False
    # Where forward really rounds, a constant factor on an input's whole gradient is a surrogate's choice too
    # (LSQ scales its step size's gradient by 1 / sqrt(numel * Qp)).
    return all(
        torch.allclose(a, e, rtol=RTOL, atol=ATOL) or (bool(rounded) and _scaled_copy(a, e))
        for per_output, expected_output in zip(analytical, expected)
        for a, e in zip(per_output, expected_output)
    )


def _scaled_copy(analytical, expected):
    """Whether `analytical` is `expected` times one positive constant (and `expected` is not zero)."""
    import torch

    norm = float((expected * expected).sum())
    if norm <= ATOL * ATOL:
        return False
    factor = float((analytical * expected).sum()) / norm
    return factor > 0 and torch.allclose(analytical, factor * expected, rtol=RTOL, atol=ATOL)


class _ForwardContext:
    """What an old-style forward may call on ctx, when it is run outside apply."""

    def __init__(self):
        self.non_differentiable: tuple = ()
        self.saved_tensors: tuple = ()

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors

    def mark_non_differentiable(self, *tensors):
        self.non_differentiable = tensors

    def mark_dirty(self, *tensors):
        pass

    def set_materialize_grads(self, value):
        pass

    def save_for_forward(self, *tensors):
        pass


def _agrees_smoothed(function, inputs, index, analytical):
    """Whether backward's gradient for input `index` is the derivative of forward with its rounding averaged
    out: central differences over a step far wider than an 8-bit or half-precision quantizer's (a quarter of the
    input's largest magnitude), along a few seeded directions. The straight-through estimator of a quantizer
    that rounds inside a call the audit cannot see into (a library's int8 kernel) agrees; a missing factor, a
    wrong transpose or a sign error does not."""
    import torch

    value = inputs[index].detach()
    step = SMOOTHING_STEP * max(float(value.abs().max()), 1.0)
    generator = torch.Generator().manual_seed(0)

    def outputs_at(moved_value):
        moved = list(inputs)
        moved[index] = moved_value.requires_grad_(True)
        return torch.cat([o.detach().reshape(-1) for o in function(*moved)])

    for _ in range(SMOOTHING_DIRECTIONS):
        direction = torch.randn(value.shape, generator=generator, dtype=value.dtype)
        try:
            numerical = (outputs_at(value + step * direction) - outputs_at(value - step * direction)) / (2 * step)
        except Exception:  # noqa: BLE001 - forward rejecting the moved value: no agreement shown
            return False
        expected = analytical @ direction.reshape(-1)
        if numerical.shape != expected.shape or not torch.allclose(
            numerical, expected, rtol=SMOOTHED_RTOL, atol=SMOOTHED_RTOL * float(expected.abs().max())
        ):
            return False
    return True


def _flat_or_jumps_where_differing(analytical, numerical):
    """Whether forward is flat (a zero central difference) or jumps (one far larger than backward's largest
    gradient) at most of the entries where backward's gradient differs from the numerical one, as a quantizer's
    rounding is (the others: the shared scale it rounds to, which moves smoothly). A forward smooth wherever they
    differ (a leaky ReLU's negative slope with the wrong sign) is no quantizer there, however small that slope
    is next to the other gradients."""
    differs = (analytical - numerical).abs() > ATOL + RTOL * numerical.abs()
    jump = JUMP_FACTOR * max(1.0, float(analytical.abs().max()))
    at = numerical[differs].abs()
    return at.numel() > 0 and float(((at <= ATOL) | (at >= jump)).double().mean()) >= QUANTIZED_SHARE


def _moves_output(function, inputs, index):
    """Whether forward's output changes when input `index` changes by a lot, though not by gradcheck's
    step: forward samples or steps on it (a stochastic binarization), rather than ignoring it."""
    import torch

    changed = list(inputs)
    changed[index] = (inputs[index].detach() * -1.5 + 0.25).requires_grad_(True)
    try:
        return not all(torch.equal(a, b) for a, b in zip(function(*inputs), function(*changed)))
    except Exception:  # noqa: BLE001 - forward rejecting the changed value: no sign it depends on it
        return False


def _input_only_backward_reads(apply, args, positions, inputs, analytical):
    """The position of a tensor input that forward's output ignores but backward's gradients change with, if
    there is one: a guide for the gradient passed in on purpose (`LogSumExpMoE(logp, posterior)` takes its
    gradient from `posterior`), so the gradient differs from forward's derivative by design."""
    import torch

    outputs = _differentiable(apply, args, positions)(*inputs)
    for guide, value in enumerate(args):
        if guide in positions or not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        changed = list(args)
        changed[guide] = value * -1.5 + 0.25
        function = _differentiable(apply, changed, positions)
        try:
            same_output = all(torch.allclose(a, b) for a, b in zip(function(*inputs), outputs))
            other = torch.autograd.functional.jacobian(function, tuple(inputs))
        except Exception:  # noqa: BLE001 - forward rejecting the changed value: no guide found this way
            continue
        if same_output and not all(
            torch.allclose(a, b)
            for per_output, other_output in zip(analytical, other)
            for a, b in zip(per_output, other_output)
        ):
            return guide
    return None


def _straight_through(constant, analytical, numerical):
    """Whether backward's gradient for one input is a straight-through estimator's (forward has step ops):
    forward is flat in almost every element, or backward is an identity or clipped identity while forward's
    derivative is only that of a scale many elements share: a quantizer `sign(x) * mean|x|` (XNOR-Net,
    DeepSpeed's binary and ternary ones), per row or per tensor, or one whose scale follows the largest
    element. That derivative has rank at most the number of scales, never an element's own (diagonal) part."""
    import torch

    if constant >= PIECEWISE_CONSTANT_SHARE:
        return True
    if _surrogate_kind(analytical) not in ("identity", "clipped identity") or numerical.shape[0] != numerical.shape[1]:
        return False
    rank = int(torch.linalg.matrix_rank(numerical, atol=ATOL, rtol=RTOL))
    # An elementwise forward (a ReLU whose backward inverts the mask) is diagonal: low rank where it is flat,
    # but each output moves with its own element only, not with a shared scale.
    moving = numerical.abs() > ATOL
    rows = moving.any(dim=1)
    shared = (moving & ~torch.eye(numerical.shape[0], dtype=torch.bool)).any(dim=1)
    return rank <= LOW_RANK_SHARE * numerical.shape[1] and bool(shared.sum() * 2 >= rows.sum() > 0)


def _passes_through(numerical):
    """Whether forward returns this input unchanged (its numerical Jacobian is the identity). Such a Function
    exists only to give the input another gradient: the gradient-reversal layer of domain adaptation
    (`-alpha * grad`), a gradient multiplier or clipper. A factor missing from any other forward's derivative
    is a wrong gradient, not this."""
    import torch

    size = numerical.shape[1]
    return numerical.shape[0] == size and torch.allclose(numerical, torch.eye(size, dtype=numerical.dtype), atol=ATOL)


def _passes_through_other_shapes(function, inputs, index):
    """Whether forward also returns input `index` unchanged when its last dimension is twice as long (and
    rejecting that shape leaves it undecided): a gradient-reversal layer passes any input through, while a
    reduction over groups the synthesized shape happened to make of one element each does not."""
    import torch

    original = inputs[index].detach()
    if original.dim() == 0:
        return True
    longer = list(inputs)
    longer[index] = torch.cat([original, original * 0.5 + 0.125], dim=-1).requires_grad_(True)
    try:
        outputs = function(*longer)
    except Exception:  # noqa: BLE001 - forward rejecting the longer input: nothing learned
        return True
    return any(o.shape == longer[index].shape and torch.equal(o.detach(), longer[index].detach()) for o in outputs)


def _gradient_change(analytical):
    """How backward changes a passed-through input's gradient: `x-0.5` for a constant factor, else its kind."""
    import torch

    if analytical.shape[0] == analytical.shape[1]:
        scale = float(torch.diagonal(analytical).mean())
        if torch.allclose(analytical, scale * torch.eye(analytical.shape[0], dtype=analytical.dtype), atol=ATOL):
            return f"x{scale:g}"
    return _surrogate_kind(analytical)


def _surrogate_kind(matrix):
    import torch

    if matrix.shape[0] == matrix.shape[1] and torch.count_nonzero(matrix - torch.diag(torch.diagonal(matrix))) == 0:
        diagonal = torch.diagonal(matrix)
        if bool(((diagonal - 1).abs() <= ATOL).all()):
            return "identity"
        if bool((((diagonal - 1).abs() <= ATOL) | (diagonal.abs() <= ATOL)).all()):
            return "clipped identity"
        return "elementwise surrogate"
    return "surrogate"


def _name(names, position):
    return names[position] if position < len(names) else f"input {position}"


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _source_of(value):
    """Python source that rebuilds `value` exactly (tensors as float64 literals), for the reproduction script."""
    import torch

    if isinstance(value, torch.Tensor):
        return f"torch.tensor({value.detach().tolist()!r}, dtype={value.dtype})"
    return repr(value)

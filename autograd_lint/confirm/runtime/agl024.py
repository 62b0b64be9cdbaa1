"""The confirm recipe of AGL024 functorch-incompatible: run the module's torch.func transform over `.apply`."""

from .probes import INPUT_SHAPES, report

_FUNCTORCH_MESSAGES = (
    "must override the setup_context staticmethod",
    "but it does not have vmap support",
    "You must implement the jvp function for custom autograd.Function",
)


def _functorch_call(apply, args, transform):
    """Run torch.func.<transform> over `apply` the way user code does: vmap over a leading batch
    dimension of every tensor argument, the others with respect to the first argument."""
    import torch
    import torch.func as tf

    rest = args[1:]

    def first_output(t):
        out = apply(t, *rest)
        return out[0] if isinstance(out, (tuple, list)) else out

    def scalar(t):
        return first_output(t).sum()

    x = args[0]
    if transform == "vmap":
        in_dims = tuple(0 if isinstance(a, torch.Tensor) else None for a in args)
        batched = [torch.stack([a, a * 0.5]) if isinstance(a, torch.Tensor) else a for a in args]
        return tf.vmap(apply, in_dims=in_dims)(*batched)
    if transform in ("grad", "grad_and_value", "hessian"):
        return getattr(tf, transform)(scalar)(x)
    if transform in ("jacrev", "jacfwd"):
        return getattr(tf, transform)(first_output)(x)
    if transform == "vjp":
        out, pullback = tf.vjp(first_output, x)  # type: ignore[misc]  # torch types vjp without an overload on has_aux
        return pullback(torch.ones_like(out))
    if transform == "jvp":
        return tf.jvp(first_output, (x,), (torch.ones_like(x),))
    if transform == "linearize":
        return tf.linearize(first_output, x)[1](torch.ones_like(x))
    if transform == "forward_ad":
        import torch.autograd.forward_ad as fwAD

        with fwAD.dual_level():
            return fwAD.unpack_dual(first_output(fwAD.make_dual(x, torch.ones_like(x)))).tangent
    raise ValueError(transform)


def check_functorch(apply, builders, transform):
    """The plain call must run; then torch.func.<transform> over it. Torch's refusal is the proof."""
    import torch

    plain, other = [], []
    for label, build in builders:
        for shape in INPUT_SHAPES:
            args = [a.detach() if isinstance(a, torch.Tensor) else a for a in build(shape)]
            try:
                apply(*args)
            except Exception as exc:  # noqa: BLE001 - this input does not fit forward
                other.append(f"{label}: {type(exc).__name__}: {exc}")
                continue
            try:
                _functorch_call(apply, args, transform)
            except Exception as exc:  # noqa: BLE001 - the refusal is the evidence
                message = f"{type(exc).__name__}: {exc}"
                if any(m in message for m in _FUNCTORCH_MESSAGES):
                    report(
                        "confirmed",
                        f"{label} on inputs {list(shape)} runs plainly, but under torch.func.{transform} raised {message}",
                    )
                other.append(f"{label} under torch.func.{transform}: {message}")
                continue
            plain.append(f"{label} on inputs {list(shape)} ran under torch.func.{transform}")
            break
    if plain:
        report("not-reproduced", "; ".join(plain))
    report("inconclusive", "the call failed for another reason: " + "; ".join(other[-2:]))

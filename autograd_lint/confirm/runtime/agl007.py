"""The confirm recipe of AGL007 tensor-on-ctx: measures what keeping a tensor as a ctx attribute costs."""

from .probes import report, run_backward, run_forward, show_values, tensors_in


def _ctx_node(output):
    nodes = [t.grad_fn for t in tensors_in(output) if t.grad_fn is not None]
    return nodes[0] if nodes else None


def _ctx_storages(value):
    return {t.untyped_storage().data_ptr() for t in tensors_in(value) if t.layout == _torch_strided()}


def _torch_strided():
    import torch

    return torch.strided


def _ctx_cycle(apply, build, shape, attribute):
    """With gc disabled: does grad_fn (the ctx) outlive `del out`, and does gc.collect() free it?"""
    import gc
    import weakref

    gc.collect()
    gc.disable()
    try:
        output = apply(*build(shape))
        node = _ctx_node(output)
        if node is None:
            return None
        ref = weakref.ref(node)
        del node, output
        alive = ref() is not None
    finally:
        gc.enable()
    gc.collect()
    return alive and ref() is None


def _ctx_run(apply, build, shape, attribute, mutate):
    """Leaf gradients, with each tensor input passed as a non-leaf copy; with `mutate`, the inputs
    and outputs that share memory with ctx.<attribute> are changed in place (under no_grad) between
    apply and backward. None when no input or output shares its memory."""
    import torch

    args = build(shape)
    leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    passed = [a * 1 if isinstance(a, torch.Tensor) and a.requires_grad else a for a in args]
    output = apply(*passed)
    if mutate:
        node = _ctx_node(output)
        held = _ctx_storages(getattr(node, attribute, None))
        targets = [
            t
            for t in [p for p in passed if isinstance(p, torch.Tensor)] + tensors_in(output)
            if _ctx_storages(t) & held
        ]
        if not targets:
            return None
        with torch.no_grad():
            for tensor in targets:
                if tensor.is_floating_point():
                    tensor.mul_(-2.5).add_(0.375)
    try:
        run_backward(output)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return [leaf.grad for leaf in leaves]


def check_tensor_on_ctx(apply, builders, attribute, role):
    import torch

    observed = []
    runs = [(label, build, shape) for label, build, shape, _ in run_forward(apply, builders)]
    for label, build, shape in runs:
        output = apply(*build(shape))
        node = _ctx_node(output)
        held = getattr(node, attribute, None) if node is not None else None
        if not isinstance(held, torch.Tensor) and not any(isinstance(h, torch.Tensor) for h in tensors_in(held)):
            observed.append(f"{label}: forward stored no tensor as ctx.{attribute}")
            continue
        # 1. The output on ctx: a reference cycle.
        is_output = bool(_ctx_storages(held) & _ctx_storages(output))
        if is_output and _ctx_cycle(apply, build, shape, attribute):
            report(
                "confirmed",
                f"{label}: with gc disabled, the output's grad_fn survived `del out` and only gc.collect() freed it: "
                f"ctx.{attribute} closes a reference cycle through the output (save_for_backward frees it at once)",
            )
        # 2. The in-place version check that save_for_backward would have done.
        reference = _ctx_run(apply, build, shape, attribute, mutate=False)
        mutated = _ctx_run(apply, build, shape, attribute, mutate=True)
        if not isinstance(reference, str) and isinstance(mutated, list):
            for index, (want, got) in enumerate(zip(reference, mutated)):
                if (
                    want is not None
                    and got is not None
                    and not (want.shape == got.shape and bool(torch.allclose(want, got, equal_nan=True)))
                ):
                    report(
                        "confirmed",
                        f"{label}: changing the tensor stored as ctx.{attribute} in place after apply (`.mul_(-2.5).add_(0.375)`) raised no error but changed "
                        f"input {index}'s gradient from {show_values(want)} to {show_values(got)}: a ctx attribute is not version-checked "
                        "(with save_for_backward torch raises 'one of the variables needed for gradient computation has been "
                        "modified by an inplace operation')",
                    )
        # 3. Held after backward, when saved tensors are freed.
        if isinstance(reference, str):
            observed.append(f"{label}: backward raised {reference}")
            continue
        run_backward(output)
        held = getattr(node, attribute, None)
        tensors = [h for h in tensors_in(held) if isinstance(h, torch.Tensor)]
        if tensors:
            size = sum(t.numel() * t.element_size() for t in tensors)
            shapes = ", ".join(str(list(t.shape)) for t in tensors)
            report(
                "confirmed",
                f"{label}: after backward, grad_fn still holds ctx.{attribute} ({tensors[0].dtype} {shapes}, {size} bytes) for as "
                "long as the output lives; backward freed the tensors saved with save_for_backward",
            )
        observed.append(f"{label}: ctx.{attribute} was released by backward")
    report("not-reproduced", "; ".join(observed) or "no run")

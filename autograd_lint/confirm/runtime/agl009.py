"""The confirm recipe of AGL009 inplace-input-without-mark-dirty: compare every input before and after apply."""

from .probes import INPUT_SHAPES, report, show_values


def check_input_inplace(apply, builders, names):
    """Snapshot each tensor input's values and `_version`, apply, compare. ctx.mark_dirty is watched:
    only a change to an input forward did not declare counts."""
    import torch
    from torch.autograd.function import FunctionCtx

    marked: list[torch.Tensor] = []
    declare = FunctionCtx.mark_dirty

    def spy(self, *args, **kwargs):
        marked.extend(args)
        return declare(self, *args, **kwargs)

    FunctionCtx.mark_dirty = spy  # type: ignore[method-assign]  # patched on purpose
    observed, error = [], None
    for label, build in builders:
        for shape in INPUT_SHAPES:
            try:
                args = build(shape)
            except Exception as exc:  # noqa: BLE001
                error = f"{type(exc).__name__}: {exc}"
                continue
            inputs = [(i, a) for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
            before = {i: (a.detach().clone(), a._version) for i, a in inputs}
            del marked[:]
            try:
                apply(*args)
            except Exception as exc:  # noqa: BLE001 - the user's forward rejecting this input
                error = f"{type(exc).__name__}: {exc}"
                if marked and "a leaf Variable that requires grad has been used in an in-place operation" in error:
                    observed.append(f"{label}: forward marked its input dirty and torch refused the leaf ({error})")
                    break
                continue
            for i, now in inputs:
                if any(now is m for m in marked):
                    continue
                was, version = before[i]
                current = now.detach()
                if current.shape != was.shape:
                    change = f"changed shape from {list(was.shape)} to {list(current.shape)}"
                else:
                    differs = (current != was) & ~(current.isnan() & was.isnan())
                    change = (
                        f"went from {show_values(was[differs])} to {show_values(current[differs])} where it changed"
                        if bool(differs.any())
                        else ""
                    )
                if change or now._version != version:
                    name = f"`{names[i]}`" if i < len(names) else str(i)
                    kind = "a leaf requiring grad" if now.requires_grad else f"of dtype {str(now.dtype)[6:]}"
                    report(
                        "confirmed",
                        f"{label}: input {name} ({kind}) {change or 'kept its values'}, "
                        f"_version {version} -> {now._version}, and forward never called ctx.mark_dirty on it",
                    )
            observed.append(f"{label}: every input unchanged")
            break
    if observed:
        report("not-reproduced", "; ".join(observed))
    report("inconclusive", f"forward failed on every synthesized input; last error: {error}")

"""AGL016 rng-in-backward: backward draws new random numbers where it should reuse forward's.

When forward draws a random mask or noise and backward draws again (to save memory, or by copying
forward's code), the two draws differ: the gradient is masked differently from the output, silently.
Reported only when forward draws randomness too and backward does not restore a saved RNG state or
seed a generator (`fork_rng` + `set_rng_state`, `manual_seed`, `generator=`).
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.rule import Finding
from ..core.scopes import bindings
from ..core.syntax import dotted_name, short_code, walk
from ..facts.function_model import FunctionClass, Method, function_model
from .base import FunctionClassRule

RANDOM_FUNCTIONS = frozenset(
    {
        "rand",
        "rand_like",
        "randn",
        "randn_like",
        "randint",
        "randint_like",
        "randperm",
        "bernoulli",
        "multinomial",
        "normal",
        "poisson",
        "dropout",
        "dropout1d",
        "dropout2d",
        "dropout3d",
        "alpha_dropout",
        "feature_alpha_dropout",
        "gumbel_softmax",
        "rrelu",
        "native_dropout",
    }
)
PYTHON_RANDOM = frozenset(
    {
        "random",
        "uniform",
        "gauss",
        "normalvariate",
        "choice",
        "choices",
        "shuffle",
        "sample",
        "randint",
        "randrange",
        "getrandbits",
    }
)
NUMPY_RANDOM = frozenset(
    {
        "rand",
        "randn",
        "randint",
        "random",
        "uniform",
        "normal",
        "binomial",
        "choice",
        "permutation",
        "shuffle",
        "random_sample",
        "standard_normal",
    }
)
# In-place samplers on a tensor (`torch.empty_like(g).uniform_()`, `mask.bernoulli_(p)`).
RANDOM_METHODS = frozenset(
    {
        "uniform_",
        "normal_",
        "bernoulli_",
        "bernoulli",
        "exponential_",
        "geometric_",
        "cauchy_",
        "log_normal_",
        "random_",
    }
)
# `torch.nn` modules that draw on every call in training mode (a module built in forward or backward is).
RANDOM_MODULES_CLASSES = frozenset(
    {"Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout", "RReLU"}
)
# Sampling methods of a `torch.distributions` object.
DISTRIBUTION_SAMPLES = frozenset({"sample", "rsample", "sample_n"})
# Calls that make the following draws reproducible: restoring or seeding a generator.
RNG_CONTROL = frozenset(
    {
        "fork_rng",
        "set_rng_state",
        "set_rng_state_all",
        "manual_seed",
        "manual_seed_all",
        "seed",
        "set_state",
        "default_rng",
        "RandomState",
    }
)


class RngInBackward(FunctionClassRule[tuple[FunctionClass, cst.Call]]):
    code = "AGL016"
    name = "rng-in-backward"
    severity = Severity.ERROR
    summary = "backward draws fresh randomness instead of reusing forward's mask or RNG state"
    only_reachable_backward = True

    def check_class(
        self, function_class: FunctionClass, module: ParsedModule
    ) -> Iterator[Finding[tuple[FunctionClass, cst.Call]]]:
        backward = function_class.own_methods.get("backward") or function_class.own_methods.get("vjp")
        if backward is None or _controls_rng(module, backward.node):
            return
        draws = [
            (node, node)
            for node in walk(backward.node.body)
            if isinstance(node, cst.Call) and _random_call(module, node, backward.node)
        ]
        draws += [
            (call, drawn)
            for call, helper in function_model(module).called_functions(backward)
            if (drawn := _draw_in(module, helper))
        ]
        if not draws or not _forward_draws(module, function_class):
            return
        for call, drawn in draws:
            yield Finding(call, *_message(function_class, backward, call, drawn), subject=(function_class, drawn))


def _message(function_class: FunctionClass, backward: Method, call: cst.Call, drawn: cst.Call) -> tuple[str, str]:
    through = f" (which calls `{short_code(drawn)}`)" if drawn is not call else ""
    return (
        f"{function_class.name}.{backward.name} draws new random numbers with `{short_code(call, 40)}`",
        f"`{short_code(call)}`{through} draws again although forward "
        f"drew its own: the two draws differ, so the gradient is masked or scaled differently from the output "
        f"(silently wrong gradients). Save forward's mask with ctx.save_for_backward (or its RNG state, restored "
        f"under torch.random.fork_rng) and reuse it.",
    )


def _random_call(module: ParsedModule, node: cst.CSTNode, function: cst.FunctionDef | None = None) -> bool:
    """A call that draws from the global RNG (not one given an explicit generator): a torch/numpy/random
    sampler, a dropout-type `torch.nn` module called (`nn.Dropout(p)(x)`, or `drop(x)` with `drop` bound
    to one in `function`), a `torch.distributions` object's `.sample()`."""
    if not isinstance(node, cst.Call):
        return False
    constructed = _constructed(node.func, function) or _stored_on_ctx(module, node.func, function)
    if constructed is not None and _is_torch_class(module, constructed, "torch.nn.", RANDOM_MODULES_CLASSES):
        return True
    if isinstance(node.func, cst.Attribute) and node.func.attr.value in DISTRIBUTION_SAMPLES:
        source = _constructed(node.func.value, function)
        if source is not None and (module.qualified_name(source.func) or "").startswith("torch.distributions."):
            return True
    if any(arg.keyword is not None and arg.keyword.value in ("generator", "random_state") for arg in node.args):
        return False
    if any(arg.keyword is not None and arg.keyword.value == "training" and _is_false(arg.value) for arg in node.args):
        return False
    positional = [arg.value for arg in node.args if arg.keyword is None]
    if "dropout" in (dotted_name(node.func) or "") and len(positional) >= 3 and _is_false(positional[2]):
        return False  # F.dropout(x, p, False)
    func = node.func
    head = (module.qualified_name(func.value) or "") if isinstance(func, cst.Attribute) else ""
    attr = (
        func.attr.value if isinstance(func, cst.Attribute) else (module.qualified_name(func) or "").rpartition(".")[2]
    )
    if isinstance(func, cst.Name):
        head = (module.qualified_name(func) or "").rpartition(".")[0]
    if head in ("torch", "torch.nn.functional", "torch.random") and attr in RANDOM_FUNCTIONS:
        return True
    if head == "numpy.random" and attr in NUMPY_RANDOM:
        return True
    if head == "random" and attr in PYTHON_RANDOM:
        return True
    if isinstance(func, cst.Attribute) and attr in RANDOM_METHODS:
        return head not in ("torch", "numpy.random", "random") and not head.startswith(("torch.distributions", "numpy"))
    return False


def _constructed(expr: cst.BaseExpression, function: cst.FunctionDef | None) -> cst.Call | None:
    """The call `expr` is (`nn.Dropout(p)` in `nn.Dropout(p)(x)`), or the one call a local name of
    `function` is bound to (`drop = nn.Dropout(p)`)."""
    if isinstance(expr, cst.Call):
        return expr
    if isinstance(expr, cst.Name) and function is not None:
        nodes = bindings(function).get(expr.value, [])
        if len(nodes) == 1 and isinstance(nodes[0], cst.Assign) and isinstance(nodes[0].value, cst.Call):
            return nodes[0].value
    return None


def _stored_on_ctx(module: ParsedModule, expr: cst.BaseExpression, function: cst.FunctionDef | None) -> cst.Call | None:
    """`ctx.drop(g)` where a method of the same class set `ctx.drop = nn.Dropout(p)` (the only value it gets)."""
    if function is None or not (
        isinstance(expr, cst.Attribute) and isinstance(expr.value, cst.Name) and function.params.params
    ):
        return None
    if expr.value.value != function.params.params[0].name.value:
        return None  # not the method's ctx (its first parameter)
    owner = next((a for a in module.ancestors(function) if isinstance(a, cst.ClassDef)), None)
    if owner is None:
        return None
    values = [
        node.value
        for method in owner.body.body
        if isinstance(method, cst.FunctionDef)
        for node in walk(method.body)
        if isinstance(node, cst.Assign)
        for target in node.targets
        if isinstance(target.target, cst.Attribute)
        and target.target.attr.value == expr.attr.value
        and isinstance(target.target.value, cst.Name)
        and method.params.params
        and target.target.value.value == method.params.params[0].name.value
    ]
    return values[0] if len(values) == 1 and isinstance(values[0], cst.Call) else None


def _is_torch_class(module: ParsedModule, call: cst.Call, prefix: str, names: frozenset[str]) -> bool:
    qualified = module.qualified_name(call.func) or ""
    return qualified.startswith(prefix) and qualified.rsplit(".", 1)[-1] in names


def _is_false(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Name) and expr.value == "False"


def _controls_rng(module: ParsedModule, function: cst.FunctionDef) -> bool:
    for node in walk(function.body):
        if isinstance(node, cst.Call):
            name = module.qualified_name(node.func) or ""
            if name.rsplit(".", 1)[-1] in RNG_CONTROL:
                return True
    return False


def _draw_in(module: ParsedModule, function: cst.FunctionDef) -> cst.Call | None:
    """The first draw from the global RNG in `function`, unless it seeds or restores the RNG."""
    if _controls_rng(module, function):
        return None
    return next(
        (node for node in walk(function.body) if isinstance(node, cst.Call) and _random_call(module, node, function)),
        None,
    )


def _forward_draws(module: ParsedModule, function_class: FunctionClass) -> bool:
    """Forward (or setup_context) draws randomness, itself or in a helper it calls."""
    for name in ("forward", "setup_context"):
        method = function_class.method(name)
        if method is None:
            continue
        if any(_random_call(module, node, method.node) for node in walk(method.node.body)):
            return True
        if any(_draw_in(module, helper) for _, helper in function_model(module).called_functions(method)):
            return True
    return False

"""`autograd-lint audit`: every custom Function in the tree, flagged or not, gradchecked under torch.

One harness per Function (confirm's sandbox and runner, its builders' synthesized inputs), running
runtime/audit.py; a verdict per Function: `verified`, `wrong-gradient` (reported as AGL200
gradient-mismatch at its backward), `ste` (a straight-through estimator by design) or `inconclusive`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import libcst as cst

from ..config import Config
from ..core.diagnostic import (
    GRADIENT_MISMATCH_CODE,
    GRADIENT_MISMATCH_NAME,
    Diagnostic,
    FileError,
    Severity,
)
from ..core.module import ParsedModule
from ..core.noqa import Suppressions, find_suppressions
from ..core.syntax import ORDERING_OPERATORS, dotted_name, walk
from ..facts.function_model import FunctionClass, function_model
from ..io.discovery import discover
from ..io.module_names import module_name_for_path
from ..io.reading import SourceError, read_module_source
from ..rules.agl024_functorch_incompatible import _has_generate_vmap_rule as generates_vmap_rule
from ..torch_api import (
    DTYPE_CASTS,
    HALF_PRECISION_CASTS,
    INTEGER_CASTS,
    ORDERING_METHODS,
    ROUNDING_DTYPES,
    ZERO_GRADIENT_OPS,
)
from .harness import CannotBuildHarness, Harness, _import_root, apply_builders, build_script, function_class_code
from .runner import RunLimits, RunResult
from .session import run_scripts
from .verdict_cache import VerdictCache

AUDIT_VERDICTS = ("verified", "wrong-gradient", "ste", "inconclusive")
# Calls in forward after which the output is piecewise constant in the input: a straight-through estimator's cue.
STEP_OPS = ZERO_GRADIENT_OPS | INTEGER_CASTS | HALF_PRECISION_CASTS | ORDERING_METHODS
# A called function whose name says it quantizes (`int8_vectorwise_quant`, `quantize_per_tensor`, `fake_quant`),
# and not only dequantizes: it rounds, wherever its code is.
_QUANTIZER_NAME = re.compile(r"(?<!de)quant", re.IGNORECASE)


@dataclass(frozen=True)
class AuditedFunction:
    """One Function's verdict; `reproduction` is a standalone script for a wrong gradient."""

    path: str
    name: str
    line: int  # where its backward is defined (1-based line and column)
    column: int
    end_line: int
    end_column: int
    verdict: str
    detail: str
    seconds: float = 0.0
    wrong_input: str | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    check: str | None = None  # what failed beyond backward's values: `jvp`, `vmap`, `reentrant` (random backward)
    reproduction: str | None = None


@dataclass
class AuditReport:
    functions: list[AuditedFunction] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    files_checked: int = 0

    def counts(self) -> dict[str, int]:
        return {verdict: sum(f.verdict == verdict for f in self.functions) for verdict in AUDIT_VERDICTS}


@dataclass(frozen=True)
class _Target:
    path: str
    module: ParsedModule
    function_class: FunctionClass
    position: tuple[int, int, int, int]


def audit_paths(
    paths: list[str],
    config: Config,
    limits: RunLimits,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
    cache: VerdictCache | None = None,
) -> AuditReport:
    """A verdict for every Function with a forward and a backward in the Python files under `paths`; with
    `cache`, a Function whose harness (its code, the recipe) and project sources are unchanged since a run
    that gave it a verdict gets that verdict again without running (`progress` counts the others)."""
    report = AuditReport()
    targets: list[_Target] = []
    for path in sorted(discover(paths, config, report.errors)):
        if not path.endswith(".py"):
            continue  # a stub has no code to run; a notebook's cells are not audited yet
        try:
            source = read_module_source(path)
            module = ParsedModule(source.text, path, module_name_for_path(path))
        except SourceError as error:
            report.errors.append(FileError(path, str(error)))
            continue
        except cst.ParserSyntaxError:
            continue  # the linter reports it (AGL000); there is nothing to run
        report.files_checked += 1
        for function_class in function_model(module):
            backward = function_class.backward
            if function_class.forward is None or backward is None or function_class.export_only:
                continue
            where = module.position(backward.node.name)
            end = module.position(backward.node.name).end
            targets.append(
                _Target(
                    path, module, function_class, (where.start.line, where.start.column + 1, end.line, end.column + 1)
                )
            )
    scripts: list[tuple[_Target, str]] = []
    for target in targets:
        try:
            scripts.append((target, _script(target.module, target.function_class)))
        except CannotBuildHarness as reason:
            report.functions.append(
                _result(target, RunResult("inconclusive", f"harness could not be built: {reason}", 0.0))
            )
    to_run: list[tuple[tuple[_Target, str | None], str]] = []
    for target, script in scripts:
        key = cache.key(script, target.path) if cache is not None else None
        cached = cache.get(key) if cache is not None and key is not None else None
        if cached is not None:
            report.functions.append(_result(target, cached))
        else:
            to_run.append(((target, key), script))

    def record(item: tuple[_Target, str | None], result: RunResult) -> None:
        target, key = item
        report.functions.append(_result(target, result))
        if cache is not None and key is not None:
            cache.put(key, result)

    run_scripts(to_run, limits, jobs, record, progress)
    report.functions.sort(key=lambda f: (f.path, f.line, f.column, f.name))
    return report


def _script(module: ParsedModule, function_class: FunctionClass) -> str:
    required, optional, definition = function_class_code(module, function_class)
    forward, backward = function_class.forward, function_class.backward
    assert forward is not None and backward is not None
    names = [param.name.value for param in forward.data_params]
    once = any(name.rsplit(".", 1)[-1] == "once_differentiable" for name in backward.decorators)
    call = (
        f"_agl_recipe.audit({function_class.name}.apply, _agl_builders, {names!r}, "
        f"{_uses_step_ops(forward.node)!r}, {once!r}, {_declared_checks(function_class)!r})"
    )
    harness = Harness(
        required, "\n".join([definition, apply_builders(module, function_class, with_backward=True), call]), optional
    )
    return build_script(module, harness, "audit")


def _declared_checks(function_class: FunctionClass) -> list[str]:
    """The checks beyond gradcheck what the class declares asks for: `jvp` (forward mode) when it defines
    jvp, `vmap` when it defines a vmap staticmethod or sets `generate_vmap_rule = True` (read as AGL024 reads
    it, on the class or a base)."""
    checks = ["jvp"] if function_class.method("jvp") is not None else []
    if function_class.method("vmap") is not None or generates_vmap_rule(function_class):
        checks.append("vmap")
    return checks


def _uses_step_ops(function: cst.FunctionDef) -> bool:
    """forward rounds, takes a sign, casts to an integer or half-precision type, calls a quantizer or compares:
    piecewise constant somewhere."""
    for node in walk(function.body):
        if isinstance(node, cst.Call):
            # `torch.round(x)`, `x.round()` and `(x / scale).round()` alike: the called name decides
            func = node.func
            name = func.attr.value if isinstance(func, cst.Attribute) else (dotted_name(func) or "").split(".")[-1]
            if name in STEP_OPS or _QUANTIZER_NAME.search(name) or (name in DTYPE_CASTS and _to_rounding_dtype(node)):
                return True
        elif isinstance(node, cst.Comparison) and any(
            isinstance(target.operator, ORDERING_OPERATORS) for target in node.comparisons
        ):
            return True
    return False


def _to_rounding_dtype(cast: cst.Call) -> bool:
    """`x.to(torch.int8)`, `x.to(dtype=torch.float16)`, `x.type(torch.bfloat16)`."""
    return any((dotted_name(argument.value) or "").split(".")[-1] in ROUNDING_DTYPES for argument in cast.args)


def _result(target: _Target, result: RunResult) -> AuditedFunction:
    line, column, end_line, end_column = target.position
    # The runner's own verdict (forward rejected every input, a limit, an import error) is inconclusive.
    inconclusive = AuditedFunction(
        target.path,
        target.function_class.name,
        line,
        column,
        end_line,
        end_column,
        "inconclusive",
        result.evidence,
        result.seconds,
    )
    if result.verdict != "confirmed":
        return inconclusive
    try:
        outcome = json.loads(result.evidence)
        verdict, detail = str(outcome["verdict"]), str(outcome["detail"])
    except (ValueError, TypeError, KeyError):
        return replace(inconclusive, detail=f"unexpected answer: {result.evidence[:200]}")
    if verdict not in AUDIT_VERDICTS:
        return replace(inconclusive, detail=f"unexpected verdict {verdict!r}: {detail}")
    origin = f" (inputs: {outcome['origin']})" if outcome.get("origin") else ""
    found = replace(inconclusive, verdict=verdict, detail=f"{outcome.get('call', '')}: {detail}{origin}")
    if verdict != "wrong-gradient":
        return found
    return replace(
        found,
        wrong_input=outcome.get("input"),
        max_abs=outcome.get("max_abs"),
        max_rel=outcome.get("max_rel"),
        check=outcome.get("check"),
        reproduction=_reproduction(target, outcome),
    )


def _reproduction(target: _Target, outcome: dict) -> str:
    """A standalone script: the module imported as its tests would, the audit's exact inputs, gradcheck."""
    name = target.function_class.name
    root = _import_root(target.path) or os.path.dirname(os.path.abspath(target.path))
    module_name = target.module.module_name or os.path.splitext(os.path.basename(target.path))[0]
    check = "gradgradcheck" if outcome.get("order") == 2 else "gradcheck"
    arguments = ",\n    ".join(outcome.get("arguments", []))
    positions = outcome.get("inputs", [])
    run = f"torch.autograd.{check}(function, inputs)\n"
    against = f"{name}.backward against torch.autograd.{check}"
    if outcome.get("check") == "jvp":
        run = "torch.autograd.gradcheck(function, inputs, check_forward_ad=True, check_backward_ad=False)\n"
        against = f"{name}.jvp against torch.autograd.gradcheck(check_forward_ad=True)"
    elif outcome.get("check") == "vmap":
        run = (
            f"batch = [torch.stack([x * scale for scale in {tuple(outcome.get('scales', ()))!r}]) for x in inputs]\n"
            "mapped = torch.func.vmap(function)(*batch)\n"
            "looped = [function(*row) for row in zip(*batch)]\n"
            "for index, got in enumerate(mapped if isinstance(mapped, tuple) else (mapped,)):\n"
            "    expected = torch.stack([o[index] if isinstance(o, tuple) else o for o in looped])\n"
            "    torch.testing.assert_close(got, expected)\n"
        )
        against = f"{name} under torch.func.vmap against a loop over the batch"
    return (
        f"# {against} ({target.path}), as `autograd-lint audit` ran it\n"
        "import sys\n\n"
        "import torch\n\n"
        f"sys.path.insert(0, {root!r})\n"
        f"from {module_name} import {name}\n\n"
        f"arguments = [\n    {arguments},\n]\n\n\n"
        "def function(*inputs):\n"
        "    call = list(arguments)\n"
        f"    for position, tensor in zip({positions!r}, inputs):\n"
        "        call[position] = tensor.clone()\n"
        f"    return {name}.apply(*call)\n\n\n"
        f"inputs = tuple(arguments[p].requires_grad_() for p in {positions!r})\n"
        f"{run}"
    )


def audit_diagnostics(report: AuditReport, config: Config) -> list[Diagnostic]:
    """An AGL200 for each wrong gradient, where the selection (and per-file ignores) keep the code and no
    noqa comment on the backward's line silences it."""
    diagnostics = []
    suppressions: dict[str, Suppressions | None] = {}
    for function in report.functions:
        if function.verdict != "wrong-gradient" or GRADIENT_MISMATCH_CODE not in config.codes_for(function.path):
            continue
        if function.path not in suppressions:
            try:
                suppressions[function.path] = find_suppressions(read_module_source(function.path).text)
            except SourceError:
                suppressions[function.path] = None
        found = suppressions[function.path]
        if found is not None and found.suppresses(GRADIENT_MISMATCH_CODE, function.line):
            continue
        diagnostics.append(_diagnostic(function))
    return sorted(diagnostics, key=Diagnostic.sort_key)


def _diagnostic(function: AuditedFunction) -> Diagnostic:
    if function.max_abs is not None:
        message = (
            f"{function.name}.backward: wrong gradient for `{function.wrong_input}` "
            f"(max abs error {function.max_abs:.3g}, relative {function.max_rel:.3g})"
        )
    elif function.check == "jvp":
        message = f"{function.name}.jvp: forward-mode gradient differs from the numerical one"
    elif function.check == "reentrant":
        message = f"{function.name}.backward: gives another gradient each time for the same inputs"
    elif function.check == "vmap":
        message = f"{function.name}: its vmap rule gives other values than forward per batch element"
    else:
        message = f"{function.name}.backward: its own gradient is wrong (gradgradcheck fails)"
    consequence = {
        "jvp": "The jvp's result is not the derivative of forward, so every forward-mode gradient (torch.func.jvp, "
        "jacfwd) through this Function is silently wrong.",
        "vmap": "Under torch.func.vmap (and so jacrev, per-sample gradients) this Function computes something "
        "else than forward does, silently.",
    }.get(
        function.check or "",
        "Backward's result is not the derivative of forward, so every gradient through this Function is "
        "silently wrong.",
    )
    explanation = (
        f"The audit ran {function.detail}. {consequence} Reproduce it with this script:\n\n{function.reproduction}"
    )
    return Diagnostic(
        function.path,
        function.line,
        function.column,
        GRADIENT_MISMATCH_CODE,
        GRADIENT_MISMATCH_NAME,
        Severity.ERROR,
        message,
        function.end_line,
        function.end_column,
        explanation,
    )


def audit_summary(report: AuditReport) -> str:
    counts = report.counts()
    total = len(report.functions)
    parts = ", ".join(f"{counts[verdict]} {verdict}" for verdict in AUDIT_VERDICTS)
    return f"Audited {total} Function{'' if total == 1 else 's'} in {report.files_checked} files: {parts}."
